"""The Azure Monitor workbook that ``azd up`` deploys (issue 23), against the app's real log lines.

``infra/app/workbook.bicep`` builds the workbook's JSON as a Bicep object: each query item's KQL is a file
``infra/app/queries/wb-*.kql`` loaded with ``loadTextContent`` (``{{name}}`` placeholders filled by ``replace``), and
``string()`` serializes the whole. Here

- the Bicep is parsed by pycep and evaluated as Azure would (``loadTextContent``, ``replace``, ``union``,
  ``string``), for the parameters ``main.bicep`` passes it, into the ``serializedData`` that is deployed: valid JSON,
  ``Notebook/1.0``, one query item per file, each on the workspace over the TimeRange parameter, and its text the
  file's, so that no KQL is written in the Bicep (or drifts from the file);
- every query is parsed by duckdb-kql and run on DuckDB, as deployed, against ``tests/reference/logs/`` (the lines
  ``tests/reference/logs/capture.py`` captured from the local stack), with what it must find there: the three
  sessions capture.py started, the nightly run that stopped alice's, the notifications to a receiver that is down,
  the 404 and the 400; and, on copies of those lines changed for the purpose, what it must find then;
- checkov has nothing to report on the workbook's Bicep, and reports a broken copy as a parse error.

duckdb-kql runs a subset of KQL: the queries bin by ``bin(TimeGenerated, 1h)`` and leave rendering to the workbook
item's ``visualization`` (no ``render``, no ``make-series``, which duckdb-kql does not run: hours without data are
gaps in a chart rather than zeros). How the queries are tested and its limits: docs/operations.md, "How the queries
are tested".
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb_kql
import pytest

from tests.artifacts import test_alerts as alerts  # modules: their tests are not collected twice
from tests.artifacts import test_infra as infra

QUERIES = alerts.QUERIES
WORKBOOK = infra.INFRA / "app" / "workbook.bicep"
MAINTENANCE = alerts.ROOT / "arr_core" / "services" / "maintenance.py"

WORKBOOK_QUERIES = {"wb-sessions-started", "wb-sessions-running", "wb-session-minutes", "wb-cleanup-runs",
                    "wb-notifications", "wb-deliveries-failed", "wb-http-errors"}
# The rates capture.py ran the app with (ARR_RATE_STANDARD_PER_HOUR, ARR_RATE_PREMIUM_PER_HOUR).
RATES = {"arrRateStandardPerHour": "3.0", "arrRatePremiumPerHour": "12.0", "arrCurrency": "EUR"}
VISUALIZATIONS = {"timechart", "barchart", "table", "piechart", "areachart", "linechart", "tiles"}
KQL_PIPE = re.compile(r"\|\s*(where|summarize|extend|project|join|order|top|take)\b")


# -- the workbook, evaluated as Azure would -------------------------------------------------------------------------

BICEP_ESCAPE = re.compile(r"\\(u\{[0-9A-Fa-f]+\}|.)")


def unescape(text: str) -> str:
    """A Bicep string literal's escapes (pycep keeps them as written): \\n \\r \\t \\\\ \\' \\$ \\u{...}."""
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code.startswith("u{"):
            return chr(int(code[2:-1], 16))
        return {"n": "\n", "r": "\r", "t": "\t"}.get(code, code)
    return BICEP_ESCAPE.sub(one, text)


@dataclass
class WorkbookBicep(infra.Bicep):
    """test_infra's evaluator, with what workbook.bicep uses besides: file loading, replace, string() as JSON, and
    string literals unescaped."""

    root: Path = infra.INFRA

    def symbol(self, name: str) -> Any:
        found = super().symbol(name)
        return unescape(found) if found is name else found  # not a symbol: a literal

    def value(self, node: Any) -> Any:
        if isinstance(node, dict) and "interpolation" in node:
            return "".join(unescape(part) if isinstance(part, str) else str(self.value(part["expression"]))
                           for part in node["interpolation"])
        return super().value(node)

    def function(self, call: dict[str, Any]) -> Any:
        kind, args = call["type"], call.get("parameters") or {}
        if kind == "load_text_content":
            return (self.root / Path(self.path).parent / self.value(args["file_path"])).read_text(encoding="utf-8")
        if kind == "replace":
            return self.value(args["original_string"]).replace(self.value(args["old_string"]),
                                                               self.value(args["new_string"]))
        if kind == "string":
            converted = self.value(args["value_to_convert"])
            return json.dumps(converted, default=str) if isinstance(converted, dict | list) else str(converted)
        return super().function(call)


@dataclass
class Deployed:
    """The workbook resource as deployed for given parameters of main.bicep."""

    module: infra.Module
    body: WorkbookBicep
    resource: dict[str, Any]
    content: dict[str, Any]  # serializedData, parsed

    @property
    def query_items(self) -> list[dict[str, Any]]:
        return [item for item in self.content["items"] if item["type"] == 3]

    def query(self, name: str) -> str:
        """The deployed KQL of a query file's item (item ``x`` for ``wb-x.kql``)."""
        [item] = [i for i in self.query_items if i["name"] == name.removeprefix("wb-")]
        return item["content"]["query"]


def deployed(trees: dict[str, Any], **params: Any) -> Deployed:
    deployment = infra.deploy(trees, **{**infra.REQUIRED_PARAMS, **params})
    module = deployment.modules["workbook"]
    body = WorkbookBicep(trees, module.body.path, module.body.args)
    [(_, deploy, config)] = list(body.resources("Microsoft.Insights/workbooks"))
    assert deploy and module.deployed
    resource = body.value(config)
    return Deployed(module, body, resource, json.loads(resource["properties"]["serializedData"]))


@pytest.fixture(scope="module")
def trees() -> dict[str, Any]:
    return infra.parse_bicep(infra.INFRA)


@pytest.fixture(scope="module")
def workbook(trees: dict[str, Any]) -> Deployed:
    return deployed(trees, **RATES)


@pytest.fixture(scope="module")
def traces() -> list[dict[str, Any]]:
    return alerts.shifted(alerts.load("apptraces.jsonl"))


@pytest.fixture(scope="module")
def con(traces: list[dict[str, Any]]) -> Any:
    return alerts.engine(traces)


def captured_time(traces: list[dict[str, Any]], text: str, operation: str | None = None) -> datetime:
    """When the first captured line with ``text`` was written (by ``operation``, if given)."""
    first = min(r["TimeGenerated"] for r in traces
                if text in r["Message"] and (operation is None or r["OperationName"] == operation))
    return first.astimezone(UTC).replace(tzinfo=None)  # as DuckDB's TIMESTAMP gives it back


def summed(rows: list[dict[str, Any]], column: str, **where: Any) -> int:
    """A column summed over the hourly bins of the rows that match ``where`` (the capture may straddle an hour)."""
    return sum(r[column] for r in rows if all(r[k] == v for k, v in where.items()))


# -- where the queries are ---------------------------------------------------------------------------------------

def test_every_workbook_query_is_a_file_loaded_by_the_workbook() -> None:
    files = {p.stem for p in QUERIES.glob("wb-*.kql")}
    assert files == WORKBOOK_QUERIES
    bicep = WORKBOOK.read_text()
    loaded = re.findall(r"loadTextContent\('queries/([\w-]+)\.kql'\)", bicep)
    assert sorted(loaded) == sorted(files)  # each once, and nothing else (the alert queries are alerts.bicep's)
    for name in files:  # each placeholder is filled where the file is loaded
        for placeholder in set(re.findall(r"\{\{(\w+)\}\}", (QUERIES / f"{name}.kql").read_text())):
            assert re.search(rf"loadTextContent\('queries/{name}\.kql'\).*'\{{\{{{placeholder}\}}\}}'", bicep), \
                f"{name}.kql: {{{{{placeholder}}}}} is not replaced in workbook.bicep"


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return []


def _loads_a_file(node: Any) -> bool:
    """``loadTextContent(...)``, possibly inside ``replace(...)`` calls."""
    call = node.get("function", {}) if isinstance(node, dict) else {}
    if call.get("type") == "load_text_content":
        return True
    return call.get("type") == "replace" and _loads_a_file(call["parameters"]["original_string"])


def test_no_kql_is_written_in_the_bicep(trees: dict[str, Any]) -> None:
    """Every ``query:`` of workbook.bicep loads a file, and no string of it is a KQL pipeline: no inline drift."""
    tree = trees["app/workbook.bicep"]
    assert "error" not in tree, tree
    items = tree["variables"]["workbookContent"]["value"]["items"]
    queries = [item["content"]["function"]["parameters"]["arg_2"]["query"] for item in items if item["type"] == 3]
    assert len(queries) == len(WORKBOOK_QUERIES)
    assert all(_loads_a_file(query) for query in queries), queries
    inline = [s for s in _strings(tree) if KQL_PIPE.search(s)]
    assert inline == []


# -- the workbook as deployed ------------------------------------------------------------------------------------

def test_the_deployed_workbook_is_notebook_json_with_one_query_item_per_file(workbook: Deployed) -> None:
    content = workbook.content
    assert content["version"] == "Notebook/1.0"
    names = [item["name"] for item in content["items"]]
    assert len(names) == len(set(names))
    [parameters] = [item for item in content["items"] if item["type"] == 9]
    [time_range] = parameters["content"]["parameters"]
    assert time_range["name"] == "TimeRange" and time_range["type"] == 4 and time_range["isRequired"]
    workspace_id = str(infra.Resource("Microsoft.OperationalInsights/workspaces",
                                      workbook.module.body.args["logAnalyticsName"]).get("id"))
    assert content["fallbackResourceIds"] == [workspace_id]
    assert sorted(f"wb-{item['name']}" for item in workbook.query_items) == sorted(WORKBOOK_QUERIES)
    for item in workbook.query_items:
        query = item["content"]
        assert query["version"] == "KqlItem/1.0" and query["queryType"] == 0  # Logs
        assert query["resourceType"] == "microsoft.operationalinsights/workspaces"
        assert query["crossComponentResources"] == [workspace_id]
        assert query["timeContextFromParameter"] == "TimeRange"
        assert query["visualization"] in VISUALIZATIONS and query["title"]
        # The file's text, as it is, but its placeholders: what the tests below run is what is deployed.
        file_text = (QUERIES / f"wb-{item['name']}.kql").read_text()
        filled = alerts.query_text(f"wb-{item['name']}", rateStandardPerHour="3.0", ratePremiumPerHour="12.0")
        assert query["query"] == filled
        assert "{{" not in query["query"] and (file_text == filled) == ("{{" not in file_text)
    [text] = [item for item in content["items"] if item["type"] == 1]
    assert "/api/dashboard" in text["content"]["json"] and "\\n" not in text["content"]["json"]
    minutes = next(i for i in workbook.query_items if i["name"] == "session-minutes")
    assert "EUR" in minutes["content"]["title"]


def test_azd_up_deploys_one_shared_workbook_on_the_workspace(trees: dict[str, Any], workbook: Deployed) -> None:
    defaults = infra.deploy(trees, **infra.REQUIRED_PARAMS)
    module = defaults.modules["workbook"]
    assert module.deployed  # always, whatever the parameters
    assert module.body.args["logAnalyticsName"] == defaults.output("monitoring", "logAnalyticsName")
    assert module.body.args["appUri"] == defaults.output("api", "uri")
    assert module.body.args["rateStandardPerHour"] == "" and module.body.args["ratePremiumPerHour"] == ""
    assert workbook.module.body.args["rateStandardPerHour"] == "3.0"
    assert workbook.module.body.args["ratePremiumPerHour"] == "12.0"
    resource = workbook.resource
    assert resource["kind"] == "shared"
    properties = resource["properties"]
    assert properties["category"] == "workbook" and properties["version"] == "Notebook/1.0"
    assert properties["sourceId"] == infra.Resource("Microsoft.OperationalInsights/workspaces",
                                                    workbook.module.body.args["logAnalyticsName"]).get("id")
    assert properties["displayName"] == "arr-sessions (dev)"
    assert resource["tags"] == {"azd-env-name": "dev", "hidden-title": "arr-sessions (dev)"}
    # A GUID made of the resource group and the environment's token: every `azd up` updates the same workbook, and
    # another environment has its own.
    assert resource["name"] == deployed(trees).resource["name"]
    assert resource["name"] != deployed(trees, environmentName="prod").resource["name"]
    assert WORKBOOK.read_text().count("name: guid(resourceGroup().id, 'arr-sessions-workbook', resourceToken)") == 1


def test_without_rates_the_minutes_query_estimates_no_cost(trees: dict[str, Any], con: Any) -> None:
    text = deployed(trees).query("wb-session-minutes")
    assert 'todouble("")' in text
    rows = alerts.run(con, text)
    assert len(rows) == 3
    assert all(r["CostIfStandard"] is None and r["CostIfPremium"] is None for r in rows)  # never a made-up 0.00


def test_the_workbook_bicep_parses_and_checkov_reports_nothing(tmp_path: Path) -> None:
    """checkov has no check for a workbook, but it must parse it; a broken copy fails both the parser and checkov."""
    for name, broken in (("good", False), ("broken", True)):
        folder = tmp_path / name
        (folder / "app").mkdir(parents=True)
        shutil.copytree(QUERIES, folder / "app" / "queries")
        text = WORKBOOK.read_text()
        if broken:
            text = text.replace("  kind: 'shared'\n", "  kind {\n", 1)  # a missing ':'
            assert text != WORKBOOK.read_text()
        (folder / "app" / "workbook.bicep").write_text(text)
        tree = infra.parse_bicep(folder)["app/workbook.bicep"]
        report = infra.checkov(folder)
        summary = report.get("summary", report)
        if broken:
            assert "error" in tree
            assert summary["parsing_errors"] == 1
        else:
            assert "error" not in tree, tree
            assert summary["parsing_errors"] == 0 and summary["failed"] == 0
            assert summary.get("skipped", 0) == 0


# -- the queries, parsed and run ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(WORKBOOK_QUERIES))
def test_each_workbook_query_parses(name: str, workbook: Deployed) -> None:
    text = workbook.query(name)
    assert duckdb_kql.parse(text).ok
    assert duckdb_kql.validate(text) == []


def test_every_text_a_workbook_query_matches_is_in_the_captured_lines(traces: list[dict[str, Any]]) -> None:
    messages = [r["Message"] for r in traces]
    for name in sorted(WORKBOOK_QUERIES):
        text = "\n".join(line for line in (QUERIES / f"{name}.kql").read_text().splitlines()
                         if not line.startswith("//"))
        for literal in re.findall(r'(?:startswith|has)\s+"([^"]+)"', text):
            assert any(literal in m for m in messages), f"{name}: no captured line has {literal!r}"
        for pattern in re.findall(r'extract\(@"((?:[^"]|"")*)"', text):
            assert any(re.search(pattern, m) for m in messages), f"{name}: {pattern!r} matches no line"


def test_sessions_started_counts_the_three_starts_of_the_capture(workbook: Deployed, con: Any) -> None:
    rows = alerts.run(con, workbook.query("wb-sessions-started"))
    # alice, bob and carol, each by POST /api/sessions; the start with a bad body (400) created nothing.
    assert {r["StartedBy"] for r in rows} == {"StartSession"}
    assert summed(rows, "Sessions") == 3


def test_sessions_running_is_the_most_a_cleanup_run_saw(workbook: Deployed, con: Any,
                                                        traces: list[dict[str, Any]]) -> None:
    rows = alerts.run(con, workbook.query("wb-sessions-running"))
    assert max(r["Sessions"] for r in rows) == 3  # alice, bob and carol, kept until bob's lease ran out
    quiet = [{**r, "Message": re.sub(r"kept \d+", "kept 0", r["Message"])} for r in traces]
    assert max(r["Sessions"] for r in alerts.run(alerts.engine(quiet), workbook.query("wb-sessions-running"))) == 1


def test_session_minutes_and_cost_end_each_session_where_it_ended(workbook: Deployed, con: Any,
                                                                   traces: list[dict[str, Any]]) -> None:
    rows = {r["Session"]: r for r in alerts.run(con, workbook.query("wb-session-minutes"))}
    ids = alerts.session_ids(traces)
    alice, carol = ids["cleanup"], ids["caller"]
    [bob] = set(rows) - {alice, carol}
    assert len(rows) == 3 and {r["StartedBy"] for r in rows.values()} == {"StartSession"}
    assert rows[alice]["EndedBy"] == "lease_cleanup"  # the nightly run stopped it
    assert rows[alice]["Ended"] == captured_time(traces, f"/sessions/{alice}/:stop")
    assert rows[carol]["EndedBy"] == "StopSession"  # stopped by hand
    # bob's one-minute lease ran out: ARR ended it, and the run that reconciled it asked ARR about it alone, before
    # bob's own stop (which found it ended) came.
    assert rows[bob]["EndedBy"] == "lease_cleanup"
    assert rows[bob]["Ended"] == captured_time(traces, f"/sessions/{bob} ->", "lease_cleanup")
    assert rows[bob]["Ended"] < captured_time(traces, f"/sessions/{bob}/:stop")
    for session, row in rows.items():
        started = captured_time(traces, f"/sessions/{session} -> 201", "StartSession")
        assert row["Started"] == started
        minutes = math.ceil((row["Ended"] - started).total_seconds() / 60)
        assert row["Minutes"] == minutes >= 1
        assert row["CostIfStandard"] == round(minutes / 60 * 3.0, 2)
        assert row["CostIfPremium"] == round(minutes / 60 * 12.0, 2)


def test_a_session_without_an_end_counts_until_now(workbook: Deployed, traces: list[dict[str, Any]]) -> None:
    carol = alerts.session_ids(traces)["caller"]
    running = [r for r in traces if carol not in r["Message"] or "/:stop" not in r["Message"]]
    row = next(r for r in alerts.run(alerts.engine(running), workbook.query("wb-session-minutes"))
               if r["Session"] == carol)
    assert row["Ended"] is None and row["EndedBy"] is None
    since = datetime.now(UTC).replace(tzinfo=None) - row["Started"]
    assert math.ceil(since.total_seconds() / 60) - 1 <= row["Minutes"] <= math.ceil(since.total_seconds() / 60)


def test_cleanup_runs_show_what_they_stopped_and_why(workbook: Deployed, con: Any,
                                                     traces: list[dict[str, Any]]) -> None:
    rows = alerts.run(con, workbook.query("wb-cleanup-runs"))
    # Of the captured runs, two acted: the lease run that closed bob's ended session, then the nightly run.
    assert [(r["Mode"], r["Stopped"], r["Kept"], r["Reconciled"]) for r in rows] == [("nightly", 1, 1, 0),
                                                                                   ("lease", 0, 2, 1)]
    night, lease = rows
    assert json.loads(night["StoppedSessions"]) == [alerts.session_ids(traces)["cleanup"]]
    assert night["Why"].startswith("nightly shutdown") and lease["Why"].startswith("lease")
    assert lease["StoppedSessions"] is None and night["Warnings"] is None
    assert len([r for r in traces if r["Message"].startswith("cleanup (")]) > len(rows)  # quiet runs left out


def test_a_failed_stop_shows_in_its_run(workbook: Deployed, traces: list[dict[str, Any]]) -> None:
    """A run whose stop failed: its errors count and the warning the app logs (maintenance.py's own format)."""
    source = MAINTENANCE.read_text()
    assert 'log.warning("cleanup of %s failed: %s", decision.session_id, exc)' in source
    run = next(r for r in traces if r["Message"].startswith("cleanup (lease): stopped 0, kept 3"))
    failed = "cleanup of %s failed: %s" % ("arr-x", "ARR answered 503")  # noqa: UP031  (the app's format)
    changed = [{**r, "Message": r["Message"].replace("errors 0", "errors 1")} if r is run else r for r in traces]
    changed.append({**run, "Message": failed, "SeverityLevel": 2})
    rows = alerts.run(alerts.engine(changed), workbook.query("wb-cleanup-runs"))
    [row] = [r for r in rows if r["OperationId"] == run["OperationId"]]
    assert row["Errors"] == 1 and row["Stopped"] == 0 and json.loads(row["Warnings"]) == [failed]


def test_notifications_count_each_attempt_by_outcome(workbook: Deployed, con: Any,
                                                     traces: list[dict[str, Any]]) -> None:
    rows = alerts.run(con, workbook.query("wb-notifications"))
    attempts = [r for r in traces if r["Message"].startswith("notification delivery (")]
    assert {r["Outcome"] for r in rows} == {"retry"}  # alice's receiver never listened
    assert summed(rows, "Attempts") == len(attempts) == 5
    first = attempts[0]
    delivered = [{**r, "Message": "notification delivery (attempt 1): delivered"} if r is first else r for r in traces]
    rows = alerts.run(alerts.engine(delivered), workbook.query("wb-notifications"))
    assert summed(rows, "Attempts", Outcome="delivered") == 1 and summed(rows, "Attempts", Outcome="retry") == 4


def test_failed_deliveries_name_the_event_and_the_reason(workbook: Deployed, con: Any,
                                                         traces: list[dict[str, Any]]) -> None:
    [row] = alerts.run(con, workbook.query("wb-deliveries-failed"))
    assert row["EventId"].endswith(".Ready") and row["Attempts"] == 5
    assert any("no address of the receiver accepted a connection" in r for r in json.loads(row["Reasons"]))
    answered = f"notification {row['EventId']}: receiver answered 204 (delivered)"
    rows = alerts.run(alerts.engine([*traces, {**traces[-1], "Message": answered}]),
                      workbook.query("wb-deliveries-failed"))
    assert [r["Attempts"] for r in rows] == [5]  # a delivered attempt is no failure


def test_http_errors_by_route(workbook: Deployed, traces: list[dict[str, Any]]) -> None:
    requests = alerts.shifted(alerts.load("apprequests.jsonl"))
    rows = alerts.run(alerts.engine(traces, requests), workbook.query("wb-http-errors"))
    # capture.py's step 6: a session that does not exist, a start with a bad body.
    assert [(r["Class"], r["Function"], r["Route"], r["ResultCode"], r["Requests"]) for r in rows] == [
        ("4xx", "GetSession", "/api/sessions/{id}", "404", 1), ("4xx", "StartSession", "/api/sessions", "400", 1)]
    stop = next(r for r in requests if r["Name"] == "StopSession")
    failing = [*requests, *({**stop, "ResultCode": "503", "Success": False} for _ in range(2))]
    rows = alerts.run(alerts.engine(traces, failing), workbook.query("wb-http-errors"))
    assert (rows[0]["Class"], rows[0]["Function"], rows[0]["Route"], rows[0]["Requests"]) == (
        "5xx", "StopSession", "/api/sessions/{id}/stop", 2)
