"""Query models: what a function accepts and what the OpenAPI document lists come from one class."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest

from arr_core.api.views import StartSessionRequest
from arr_core.errors import InvalidInput
from blueprints import queries
from blueprints.openapi import openapi_document
from blueprints.queries import CleanupQuery, HistoryQuery, ListQuery, StartQuery, StopQuery, UsageQuery, parse_query

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MODELS = [HistoryQuery, UsageQuery, CleanupQuery, ListQuery, StartQuery, StartSessionRequest, StopQuery]


def get(**params: str) -> func.HttpRequest:
    return func.HttpRequest("GET", "http://127.0.0.1:7071/api/x", body=b"", params=params)


def refused(model: type, **params: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_query(get(**params), model)
    return caught.value


def test_defaults_and_unknown_names_are_ignored() -> None:
    """``code`` (the function key) rides on every link: it and other unknown names never fail a request."""
    query = parse_query(get(code="secret", colour="blue"), HistoryQuery)
    assert (query.top, query.status, query.size, query.continuation_token, query.order) == (100, None, None, None,
                                                                                            "oldest")
    assert query.window(NOW) == (NOW - timedelta(days=7), NOW)
    assert parse_query(get(), UsageQuery).window(NOW) == (NOW - timedelta(days=30), NOW)
    cleanup = parse_query(get(), CleanupQuery)
    assert (cleanup.dry_run, cleanup.mode) == (False, "lease")


def test_values_are_coerced_from_text() -> None:
    query = parse_query(get(top="25", status="Ready, Stopped", size="Premium", requestedBy="ana"), HistoryQuery)
    assert (query.top, query.status, query.size, query.requested_by) == (
        25, frozenset({"Ready", "Stopped"}), "Premium", "ana")
    assert parse_query(get(dryRun="true", mode="nightly"), CleanupQuery).dry_run is True
    assert parse_query(get(order="newest"), HistoryQuery).order == "newest"
    assert parse_query(get(requestedBy="ana", reason="not here"), StopQuery).requested_by == "ana"
    assert parse_query(get(dryRun="0"), CleanupQuery).dry_run is False
    assert parse_query(get(status="ready,STARTING"), ListQuery).status == frozenset({"Ready", "Starting"})
    assert refused(ListQuery, status="").errors == [("status", queries.EMPTY_MESSAGE)]  # empty: not "no filter"


def test_times_keep_an_unencoded_plus_and_default_to_utc() -> None:
    """``from=2026-11-01T10:00:00+02:00`` typed into a URL arrives with a space for the plus."""
    query = parse_query(get(**{"from": "2026-11-01T10:00:00 02:00", "to": "2026-11-02T00:00:00"}), HistoryQuery)
    assert query.window(NOW) == (datetime(2026, 11, 1, 8, 0, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))
    end_only = parse_query(get(to="2026-11-10"), UsageQuery)
    assert end_only.window(NOW) == (datetime(2026, 10, 11, tzinfo=UTC), datetime(2026, 11, 10, tzinfo=UTC))


@pytest.mark.parametrize(("model", "params", "field"), [
    (HistoryQuery, {"top": "0"}, "top"),
    (HistoryQuery, {"top": "1001"}, "top"),
    (HistoryQuery, {"top": "\uff11"}, "top"),  # a fullwidth digit is not a number here
    (HistoryQuery, {"status": "Ready,Paused"}, "status"),
    (HistoryQuery, {"size": "Huge"}, "size"),
    (HistoryQuery, {"requestedBy": "x" * 257}, "requestedBy"),
    (HistoryQuery, {"requestedBy": "a\u202eb"}, "requestedBy"),
    (HistoryQuery, {"continuationToken": "t" * 2049}, "continuationToken"),
    (HistoryQuery, {"order": "latest"}, "order"),
    (HistoryQuery, {"order": ""}, "order"),
    (StopQuery, {"requestedBy": "x" * 257}, "requestedBy"),
    (StopQuery, {"requestedBy": "a\u0007b"}, "requestedBy"),
    (HistoryQuery, {"from": "yesterday"}, "from"),
    (HistoryQuery, {"from": "1999-01-01"}, "from"),
    (HistoryQuery, {"to": "2300-01-01"}, "to"),
    (HistoryQuery, {"to": "2200-01-01T00:00:00Z"}, "to"),  # the year as written: 2019 to 2199
    (HistoryQuery, {"from": "2018-12-31T23:59:59-01:00"}, "from"),
    (UsageQuery, {"groupBy": "colour"}, "groupBy"),
    (CleanupQuery, {"dryRun": "maybe"}, "dryRun"),
    (CleanupQuery, {"mode": "all"}, "mode"),
    (ListQuery, {"status": "Stopped"}, "status"),
    (StartQuery, {"payload": "keep"}, "payload"),
    (StartSessionRequest, {"leaseMinutes": "1441"}, "leaseMinutes"),
    (StartSessionRequest, {"labels": '["a"]'}, "labels"),
    (StartSessionRequest, {"labels": "{"}, "labels"),
])
def test_a_value_that_does_not_fit_is_refused_naming_its_parameter(model: type, params: dict[str, str],
                                                                   field: str) -> None:
    error = refused(model, **params)
    assert [name.split(".")[0] for name, _ in error.errors] == [field]


def test_the_window_refuses_a_reversed_or_too_long_span() -> None:
    reversed_ = parse_query(get(**{"from": "2026-11-02", "to": "2026-11-01"}), HistoryQuery)
    with pytest.raises(InvalidInput, match="before"):
        reversed_.window(NOW)
    too_long = parse_query(get(**{"from": "2025-01-01", "to": "2026-11-01"}), UsageQuery)
    with pytest.raises(InvalidInput, match="400 days"):
        too_long.window(NOW)


def test_labels_come_as_json_text_in_a_query() -> None:
    start = parse_query(get(labels='{"team":"viz"}', leaseMinutes="30", keepAlive="true"), StartSessionRequest)
    assert (start.labels, start.lease_minutes, start.keep_alive) == ({"team": "viz"}, 30, True)
    assert start.model_fields_set == {"labels", "lease_minutes", "keep_alive"}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_documented_parameters_are_the_parsed_ones(model: type) -> None:
    """Each documented parameter's enum, bounds and pattern accept what the parser accepts: one source."""
    documented = {p["name"]: p for p in queries.query_parameters(model)}
    assert set(documented) == {f.alias or name for name, f in model.model_fields.items()}
    for name, parameter in documented.items():
        assert parameter["in"] == "query" and parameter["type"] in ("string", "integer", "boolean")
        assert parameter["description"] and parameter["x-ms-summary"]
        for value in parameter.get("enum", ()):
            parse_query(get(**{name: str(value).lower() if isinstance(value, bool) else str(value)}), model)
        if "maximum" in parameter:
            parse_query(get(**{name: str(parameter["maximum"])}), model)
            refused(model, **{name: str(parameter["maximum"] + 1)})


def test_the_served_document_lists_each_route_from_its_model() -> None:
    paths = openapi_document("https://app.example/api/")["paths"]
    names = {(path, method): [p["name"] for p in op["parameters"] if p["in"] == "query"]
             for path, ops in paths.items() for method, op in ops.items() if not method.startswith("x-")}
    assert names[("/history", "get")] == ["from", "to", "requestedBy", "size", "status", "top", "order",
                                          "continuationToken"]
    assert names[("/usage", "get")] == ["from", "to", "groupBy"]
    assert names[("/cleanup", "post")] == ["dryRun", "mode"]
    assert names[("/sessions", "get")] == ["status"]
    assert names[("/sessions/{id}/stop", "post")] == ["requestedBy"]
    assert names[("/sessions", "post")] == ["size", "leaseMinutes", "sessionId", "requestedBy", "reason", "labels",
                                            "keepAlive", "callbackUrl", "payload"]
    status = next(p for p in paths["/history"]["get"]["parameters"] if p["name"] == "status")
    assert status["pattern"] == "^(Requested|Starting|Ready|Stopped|Expired|Error)(,(Requested|Starting|Ready|" \
                                "Stopped|Expired|Error))*$"
    history_from = paths["/history"]["get"]["parameters"][0]
    usage_from = paths["/usage"]["get"]["parameters"][0]
    assert (history_from["description"], usage_from["description"]) == (
        f"Start, inclusive ({queries.TIME_RULE}); before `to` and at most 400 days before it; default 7 days before "
        "`to`.",
        f"Start, inclusive ({queries.TIME_RULE}); before `to` and at most 400 days before it; default 30 days before "
        "`to`.")
