"""The running app against its own served OpenAPI document, with schemathesis and every check on.

This is schemathesis' own command line, ``st run <document>`` (run as a subprocess, so that what passes here is what
a user reproduces with the same command and the config file the test writes, ``config_file()``): every phase
(examples, coverage, fuzzing, stateful), every generation mode (schema-valid and schema-violating data), 300
examples per operation, a fixed seed so that a failure reproduces. The operations run against the ARR emulator and
Azurite, with a function key, so starts and stops are real and a request without the key is refused (the
``ignored_auth`` check).

Every check runs on every operation, but ``positive_data_acceptance`` ("schema-valid data is accepted") on the
operations of ``POSITIVE_DATA_EXCLUDED``, each with its reason (nothing else is excluded). There the app refuses
with a 400 naming the field what OpenAPI 2.0 cannot state: rules across fields (``from`` before ``to`` and at most
400 days apart; at most one of ``leaseMinutes`` and ``extendByMinutes``), the keys of a body's object, the host and
address rules of callback URLs, and a setting's bound (``ARR_MAX_LEASE_MINUTES``); the descriptions say them in
words. The document states the rest (formats, patterns, bounds; tests/artifacts/test_document_rules.py holds each pattern
to the app's check), so the other ten operations run with every check. Each refusal above is tested on its own:
tests/unit/test_queries.py (times, spans), tests/integration/test_http_api.py (the extend body, the lease limit),
tests/unit/test_views.py (labels), tests/unit/test_notifications.py (callback URLs).

One rule across parameters goes the other way: StartSession with ``payload=ignore`` does not read its body, so a
schema-violating body is accepted then; schemathesis_hooks.py drops ``negative_data_rejection``'s failure for exactly
that request. The exclusions are schemathesis' per-operation configuration (``[[operations]]`` in the config file),
which also selects every check (``[checks] enabled = true``): ``--checks all`` on the command line would override
the operations' settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Azurite, Emulator, Host, function_app_env, start_host, stop, untraced

CASES_PER_OPERATION = 300  # ~5 100-6 900 cases in 80-150 s (measured, under make test's coverage too)
SEED = 20261127
# The operations for which positive_data_acceptance is off, each with the rule OpenAPI 2.0 cannot state (the
# module's docstring says more); every other operation runs with every check.
POSITIVE_DATA_EXCLUDED = {
    "StartSession": "the keys of the labels object in the body (2.0 has no patternProperties or propertyNames); "
                    "callbackUrl's host and address (one that httpx and IDNA can read, DNS labels of 1-63 "
                    "characters; never a link-local or metadata address; https and a public address in Azure); "
                    "leaseMinutes above ARR_MAX_LEASE_MINUTES, a setting (the document states ARR's 1440)",
    "ExtendSession": "across fields: at most one of leaseMinutes and extendByMinutes, and one of them or keepAlive; "
                     "a lease above ARR_MAX_LEASE_MINUTES, a setting",
    "ListHistory": "across parameters: from before to (which defaults to now), at most 400 days apart; a "
                   "continuationToken only as this app issued it, for the same filters and order",
    "GetUsage": "across parameters: from before to (which defaults to now), at most 400 days apart",
    "AddOverride": "across fields: sessionId or labels, one of the two; until in the future and at most 31 days "
                   "ahead (the document states ISO 8601 only: 2.0 has no bounds for a date-time)",
    "SubscribeSessionChanges": "notificationUrl's host and address (one that httpx and IDNA can read, DNS labels of "
                               "1-63 characters; never a link-local or metadata address; https and a public address "
                               "in Azure)",
    "SubscribeStopWarnings": "notificationUrl's host and address, as SubscribeSessionChanges",
    "CreateSchedule": "timeZone is a zone name of the tzdata package (about 600: the document gives a string); across "
                      "fields: weekdays or monthly, one of the two; fallbacks other than size and each other; "
                      "durationMinutes plus 15 within ARR_MAX_LEASE_MINUTES, a setting (the document states 1440)",
    "ReplaceSchedule": "the body's rules of CreateSchedule",
    "CreateQuota": "timeZone is a zone name of the tzdata package (the document gives a string); across fields: "
                   "requestedBy or labels, one of the two; the keys of the labels object (2.0 has no "
                   "patternProperties or propertyNames)",
}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch"}
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")  # StartSession's payload=ignore: see its docstring


def config_file() -> str:
    """schemathesis.toml: the hook, every check, and positive_data_acceptance off for each operation above."""
    lines = ["# Written by tests/integration/test_schemathesis.py: every check on every operation, but",
             "# positive_data_acceptance where OpenAPI 2.0 cannot state the app's rules.", "",
             f"hooks = {json.dumps(str(HOOKS))}", "", "[checks]", "enabled = true"]
    for operation_id, reason in POSITIVE_DATA_EXCLUDED.items():
        lines += ["", f"# {operation_id}: {reason}.", "[[operations]]", f'include-operation-id = "{operation_id}"',
                  "checks.positive_data_acceptance.enabled = false"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def app_settings() -> dict[str, str]:
    return {"ARR_NIGHTLY_SHUTDOWN_AT": "22:00", "ARR_TIME_ZONE": "Europe/Amsterdam", "ARR_RATE_STANDARD_PER_HOUR": "3"}


@pytest.fixture(scope="module")
def fuzz_host(emulator_process: Emulator, azurite: Azurite, table_name: str,
              app_settings: dict[str, str]) -> Iterator[Host]:
    """The app for the fuzzer, without coverage's tracer: every line it runs here other tests measure, and the
    tracer doubled the fuzz's time (the slowest test of make test)."""
    emulator_process.reset(startupSeconds=0)
    host = start_host(function_app_env(emulator_process, azurite, table_name, **app_settings), "function_app",
                      "--no-timers", measured=False)
    yield host
    stop(host.process)


def test_api_conforms_to_its_openapi_document_with_every_check(fuzz_host: Host, tmp_path: Path) -> None:
    """No failure and no error from any check on any operation of the document, positive_data_acceptance off only
    where POSITIVE_DATA_EXCLUDED says; elsewhere no schema-valid request was refused."""
    report = tmp_path / "schemathesis.json"
    config = tmp_path / "schemathesis.toml"
    config.write_text(config_file())
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config),
               "run", f"{fuzz_host.url}/api/openapi.json",
               "--include-path-regex", "^/",  # every path: by default the document's own URL is left out
               "--max-examples", str(CASES_PER_OPERATION), "--seed", str(SEED), "--workers", "1",
               "--header", f"x-functions-key: {fuzz_host.key}", "--request-timeout", "60",
               "--report", "json", "--report-json-path", str(report)]
    started = time.monotonic()
    # The fuzzer is not the code under test: it runs without coverage's tracer (make test measures the app's host).
    run = subprocess.run(command, cwd=tmp_path, env=untraced(dict(os.environ)), capture_output=True, text=True,
                         timeout=900, check=False)
    elapsed = time.monotonic() - started
    output = run.stdout[-20000:] + run.stderr[-5000:] + f"\n{config.name}:\n{config.read_text()}"
    assert report.exists(), output
    summary = json.loads(report.read_text())
    cases = summary["test_cases"]["generated"]
    print(f"schemathesis {summary['schemathesis_version']}: {cases} generated cases in {elapsed:.0f} s, "
          f"{CASES_PER_OPERATION} examples per operation, seed {SEED}, phases {summary['phases']}")
    document = httpx.get(f"{fuzz_host.url}/api/openapi.json").json()
    labels = {op["operationId"]: f"{method.upper()} {path}" for path, ops in document["paths"].items()
              for method, op in ops.items() if method in HTTP_METHODS}
    refused = {name: sum(phase["rejected"] for phase in summary["valid_rates"].get(label, {}).values())
               for name, label in labels.items()}
    print(f"schema-valid requests refused with a 400 where positive_data_acceptance is off: "
          f"{ {name: refused[name] for name in POSITIVE_DATA_EXCLUDED} }; failures dropped by the hook (a body "
          f"StartSession did not read): {summary['filtered']}")
    assert (summary["failures"], summary["errors"], run.returncode) == ([], [], 0), output
    assert {name: count for name, count in refused.items() if count and name not in POSITIVE_DATA_EXCLUDED} == {}
    assert set(POSITIVE_DATA_EXCLUDED) <= set(labels), set(POSITIVE_DATA_EXCLUDED) - set(labels)
    assert summary["warnings"]["unmatched_filter"] == [], summary["warnings"]  # each [[operations]] names one
    operations = len(labels)
    assert summary["operations"]["tested"] == summary["operations"]["total"] == operations, summary["operations"]
    assert all(phase["status"] in ("success", "skip") for phase in summary["phases"].values()), summary["phases"]
    assert summary["phases"]["coverage"]["status"] == summary["phases"]["fuzzing"]["status"] == "success"
    assert summary["phases"]["stateful"]["status"] == "success"
    assert cases >= CASES_PER_OPERATION * 10, cases


def test_the_hosts_own_answers_are_problems(fuzz_host: Host) -> None:
    """What the host answers before any function runs has the shape of the app's errors: 401 without a valid key,
    404 for no route (a trailing newline included), 405 with ``Allow`` for a method the route lacks (HEAD too: the
    Functions host does not map HEAD onto GET functions)."""
    with httpx.Client(base_url=fuzz_host.url, timeout=30) as http:
        answers = {
            401: [http.get("/api/sessions"), http.get("/api/sessions", headers={"x-functions-key": "wrong"})],
            404: [http.get("/api/nothing-here", headers={"x-functions-key": fuzz_host.key}), http.get("/elsewhere"),
                  http.get("/api/sessions%0A", headers={"x-functions-key": fuzz_host.key})],
            405: [http.put("/api/health"), http.request("TRACE", "/api/health"), http.head("/api/health")],
        }
    for status, responses in answers.items():
        for response in responses:
            assert response.status_code == status, (response.request.method, response.request.url)
            assert response.headers["content-type"].startswith("application/problem+json")
            if response.request.method != "HEAD":
                assert response.json()["status"] == status and response.json()["title"]
    assert {r.headers["allow"] for r in answers[405]} == {"GET"}
