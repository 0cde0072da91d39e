"""The HTTP contract's models (arr_core/api/views.py) on their own: what a request body may and may not be (sizes,
lease bounds, ids, labels and their limits, free text, callback URLs, camelCase names, no unknown fields), and how
the answers are written (camelCase, ``self`` and ``from``, nulls kept)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from arr_core.api.views import (
    MAX_TEXT,
    CleanupAction,
    CleanupReport,
    CleanupRun,
    ExtendSessionRequest,
    Problem,
    SessionLinks,
    SessionView,
    StartSessionRequest,
    StopSessionRequest,
    SubscriptionRequest,
    UsageReport,
    UsageRow,
)
from arr_core.arr.validation import MAX_LEASE_MINUTES
from arr_core.domain.notifications import MAX_URL_CHARS

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def refusal(model: type[BaseModel], body: Any) -> list[tuple[str, ...]]:
    """The locations pydantic names for ``body`` (as the HTTP layer reports them), which must be refused."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return [tuple(str(part) for part in error["loc"]) for error in caught.value.errors()]


# -- StartSessionRequest -----------------------------------------------------------------------------------------

def test_an_empty_start_is_valid_every_field_optional() -> None:
    start = StartSessionRequest.model_validate({})
    assert start.model_dump() == {"size": None, "lease_minutes": None, "session_id": None, "requested_by": None,
                                  "reason": None, "labels": None, "keep_alive": None, "callback_url": None}


def test_a_full_start_in_camel_case_and_its_round_trip() -> None:
    body = {"size": "Premium", "leaseMinutes": 90, "sessionId": "my-session_1", "requestedBy": "ci@example",
            "reason": "nightly build", "labels": {"team": "viz", "build.id": "42"}, "keepAlive": True,
            "callbackUrl": "https://hooks.example/ready"}
    start = StartSessionRequest.model_validate(body)
    assert (start.size, start.lease_minutes, start.session_id, start.keep_alive) == ("Premium", 90, "my-session_1",
                                                                                     True)
    assert start.labels == {"team": "viz", "build.id": "42"}
    assert start.model_dump(by_alias=True) == body


def test_snake_case_names_are_accepted_too() -> None:
    """populate_by_name: Python callers (the CLI, the tests) may build the models with their own names."""
    start = StartSessionRequest.model_validate({"lease_minutes": 5, "session_id": "s1", "keep_alive": False})
    assert (start.lease_minutes, start.session_id, start.keep_alive) == (5, "s1", False)


@pytest.mark.parametrize("field", ["colour", "LeaseMinutes", "lease-minutes", "maxLeaseTime", "sessionID"])
def test_an_unknown_field_is_refused_by_its_name(field: str) -> None:
    """A misspelled field is a 400, never silently ignored (a lease that would be the default instead)."""
    assert refusal(StartSessionRequest, {field: 1}) == [(field,)]


@pytest.mark.parametrize(("given", "kept"), [("Standard", "Standard"), ("standard", "Standard"),
                                             ("PREMIUM", "Premium"), ("premium", "Premium")])
def test_the_size_is_standard_or_premium_in_any_case(given: str, kept: str) -> None:
    assert StartSessionRequest.model_validate({"size": given}).size == kept


@pytest.mark.parametrize("size", ["medium", "Big", "", 1, "Standard "])
def test_another_size_is_refused(size: Any) -> None:
    assert refusal(StartSessionRequest, {"size": size}) == [("size",)]


@pytest.mark.parametrize("minutes", [0, 1, 30, MAX_LEASE_MINUTES, "30"])
def test_the_lease_is_from_0_to_the_maximum_in_whole_minutes(minutes: Any) -> None:
    assert StartSessionRequest.model_validate({"leaseMinutes": minutes}).lease_minutes == int(minutes)


@pytest.mark.parametrize("minutes", [-1, MAX_LEASE_MINUTES + 1, 10**9, 1.5, "thirty", "", [], None])
def test_a_lease_out_of_bounds_or_not_whole_minutes_is_refused(minutes: Any) -> None:
    if minutes is None:  # null is "not given": the setting's default applies
        assert StartSessionRequest.model_validate({"leaseMinutes": None}).lease_minutes is None
        return
    assert refusal(StartSessionRequest, {"leaseMinutes": minutes}) == [("leaseMinutes",)]


@pytest.mark.parametrize(("model", "field"), [(StartSessionRequest, "leaseMinutes"),
                                              (ExtendSessionRequest, "leaseMinutes"),
                                              (ExtendSessionRequest, "extendByMinutes")])
@pytest.mark.parametrize("flag", [True, False])
def test_true_or_false_is_no_number_of_minutes(model: type[BaseModel], field: str, flag: bool) -> None:
    """JSON's true was read as a lease of 1 minute (pydantic's lax mode): a flow that sent a boolean by mistake
    started a session that ARR stopped a minute after Ready."""
    assert refusal(model, {field: flag}) == [(field,)]


def test_the_lease_maximum_is_a_day() -> None:
    assert MAX_LEASE_MINUTES == 1440


@pytest.mark.parametrize("session_id", ["a", "A-Z_0-9", "x" * 256])
def test_a_session_id_is_letters_digits_dash_underscore_up_to_256(session_id: str) -> None:
    assert StartSessionRequest.model_validate({"sessionId": session_id}).session_id == session_id


@pytest.mark.parametrize("session_id", ["", "x" * 257, "has space", "slash/es", "dot.s", "ümlaut", "a\n", "../x"])
def test_another_session_id_is_refused(session_id: str) -> None:
    assert refusal(StartSessionRequest, {"sessionId": session_id}) == [("sessionId",)]


@pytest.mark.parametrize("field", ["requestedBy", "reason"])
def test_free_text_is_up_to_256_characters_of_any_script(field: str) -> None:
    for text in ("a" * MAX_TEXT, "Zoë – 東京 👩‍🔬", ""):
        assert getattr(StartSessionRequest.model_validate({field: text}), field if field == "reason"
                       else "requested_by") == text
    assert MAX_TEXT == 256
    assert refusal(StartSessionRequest, {field: "a" * (MAX_TEXT + 1)}) == [(field,)]


@pytest.mark.parametrize("text", ["line\nbreak", "tab\there", "nul\x00", "bell\x07", "del\x7f", "c1\x85",
                                  "rtl\u202eoverride", "isolate\u2066x\u2069"])
def test_free_text_with_control_or_bidi_characters_is_refused(text: str) -> None:
    """They would hide or reorder what an operator later reads in history or on the dashboard."""
    with pytest.raises(ValidationError, match=r"must not contain control characters \(found U\+[0-9A-F]{4}\)"):
        StartSessionRequest.model_validate({"reason": text})
    with pytest.raises(ValidationError):
        StopSessionRequest.model_validate({"reason": text})


def test_labels_up_to_32_with_keys_of_up_to_64_safe_characters() -> None:
    labels = {f"k{i}": f"v{i}" for i in range(32)}
    assert StartSessionRequest.model_validate({"labels": labels}).labels == labels
    key = "A-z_0.9:" + "k" * 56
    assert len(key) == 64
    assert StartSessionRequest.model_validate({"labels": {key: "v" * MAX_TEXT}}).labels == {key: "v" * MAX_TEXT}


def test_a_33rd_label_is_refused() -> None:
    assert refusal(StartSessionRequest, {"labels": {f"k{i}": "v" for i in range(33)}}) == [("labels",)]


@pytest.mark.parametrize("key", ["", "k" * 65, "with space", "slash/", "ä", "emoji👍", "a=b"])
def test_a_label_key_outside_its_pattern_is_refused(key: str) -> None:
    locations = refusal(StartSessionRequest, {"labels": {key: "v"}})
    assert locations and all(loc[0] == "labels" for loc in locations)


@pytest.mark.parametrize("value", ["v" * (MAX_TEXT + 1), "new\nline", 5, None, ["a"], {"nested": "x"}])
def test_a_label_value_that_is_not_short_plain_text_is_refused(value: Any) -> None:
    locations = refusal(StartSessionRequest, {"labels": {"team": value}})
    assert locations and all(loc[:2] == ("labels", "team") for loc in locations)


@pytest.mark.parametrize("labels", [["team"], "team=viz", 1])
def test_labels_must_be_an_object(labels: Any) -> None:
    assert refusal(StartSessionRequest, {"labels": labels}) == [("labels",)]


def test_a_callback_url_is_1_to_2048_characters() -> None:
    url = "https://hooks.example/" + "p" * (MAX_URL_CHARS - len("https://hooks.example/"))
    assert StartSessionRequest.model_validate({"callbackUrl": url}).callback_url == url
    assert MAX_URL_CHARS == 2048
    assert refusal(StartSessionRequest, {"callbackUrl": url + "p"}) == [("callbackUrl",)]
    assert refusal(StartSessionRequest, {"callbackUrl": ""}) == [("callbackUrl",)]


def test_keep_alive_is_a_boolean() -> None:
    assert StartSessionRequest.model_validate({"keepAlive": "true"}).keep_alive is True  # from a query string
    assert refusal(StartSessionRequest, {"keepAlive": "perhaps"}) == [("keepAlive",)]


def test_the_body_must_be_an_object() -> None:
    for body in ([], "text", 3, None):
        with pytest.raises(ValidationError):
            StartSessionRequest.model_validate(body)


# -- ExtendSessionRequest and StopSessionRequest ----------------------------------------------------------------

@pytest.mark.parametrize("body", [{"leaseMinutes": 60}, {"extendByMinutes": 15}, {"lease_minutes": 1},
                                  {"extendByMinutes": MAX_LEASE_MINUTES}])
def test_an_extension_is_at_most_one_of_a_new_total_or_minutes_to_add(body: dict[str, int]) -> None:
    extension = ExtendSessionRequest.model_validate(body)
    assert (extension.lease_minutes is None) != (extension.extend_by_minutes is None)
    assert extension.changes_lease and extension.keep_alive is None


def test_a_change_may_set_keep_alive_alone_or_with_a_lease_and_say_who_and_why() -> None:
    """Before, {"keepAlive": false} was refused ("Extra inputs are not permitted"): a running session could be
    neither saved from tonight's shutdown nor released to it."""
    alone = ExtendSessionRequest.model_validate({"keepAlive": False, "requestedBy": "ana", "reason": "demo over"})
    assert (alone.keep_alive, alone.requested_by, alone.reason, alone.changes_lease) == (False, "ana", "demo over",
                                                                                         False)
    both = ExtendSessionRequest.model_validate({"extendByMinutes": 30, "keepAlive": True})
    assert (both.extend_by_minutes, both.keep_alive, both.changes_lease) == (30, True, True)


@pytest.mark.parametrize(("body", "message"), [
    ({"leaseMinutes": 60, "extendByMinutes": 15}, "give at most one of leaseMinutes and extendByMinutes"),
    ({"leaseMinutes": 60, "extendByMinutes": 15, "keepAlive": True}, "give at most one of leaseMinutes and "
                                                                      "extendByMinutes"),
    ({}, "give leaseMinutes, extendByMinutes or keepAlive"),
    ({"leaseMinutes": None, "extendByMinutes": None, "keepAlive": None}, "give leaseMinutes, extendByMinutes or "
                                                                         "keepAlive"),
    ({"requestedBy": "ana", "reason": "why not"}, r"requestedBy and reason alone change nothing"),
])
def test_an_extension_with_both_leases_or_no_change_is_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ExtendSessionRequest.model_validate(body)


@pytest.mark.parametrize(("body", "field"), [
    ({"leaseMinutes": 0}, "leaseMinutes"),  # a start may ask 0 (ARR's own default); an extension may not
    ({"leaseMinutes": MAX_LEASE_MINUTES + 1}, "leaseMinutes"),
    ({"extendByMinutes": 0}, "extendByMinutes"),
    ({"extendByMinutes": -5}, "extendByMinutes"),
    ({"extendByMinutes": MAX_LEASE_MINUTES + 1}, "extendByMinutes"),
    ({"extendByMinutes": 5, "force": True}, "force"),
    ({"keepAlive": "maybe"}, "keepAlive"),  # ("yes" too, as the HTTP layer reads bodies strictly)
    ({"keepAlive": True, "requestedBy": "r" * (MAX_TEXT + 1)}, "requestedBy"),
    ({"keepAlive": True, "reason": "a\u202eb"}, "reason"),
])
def test_an_extension_out_of_bounds_or_with_other_fields_is_refused(body: dict[str, Any], field: str) -> None:
    assert (field,) in refusal(ExtendSessionRequest, body)


def test_a_stop_takes_a_reason_and_who_asks() -> None:
    assert StopSessionRequest.model_validate({}).reason is None
    assert StopSessionRequest.model_validate({"reason": "done"}).reason == "done"
    asked = StopSessionRequest.model_validate({"reason": "done", "requestedBy": "ana"})
    assert (asked.reason, asked.requested_by) == ("done", "ana")
    assert refusal(StopSessionRequest, {"reason": "r" * (MAX_TEXT + 1)}) == [("reason",)]
    assert refusal(StopSessionRequest, {"requestedBy": "r" * (MAX_TEXT + 1)}) == [("requestedBy",)]
    assert refusal(StopSessionRequest, {"force": True}) == [("force",)]


# -- SubscriptionRequest -----------------------------------------------------------------------------------------

def test_a_subscription_needs_its_notification_url() -> None:
    assert refusal(SubscriptionRequest, {}) == [("notificationUrl",)]
    subscription = SubscriptionRequest.model_validate({"notificationUrl": "https://flow.example/cb",
                                                       "statuses": ["Ready", "Stopped"], "sessionId": "s1",
                                                       "requestedBy": "me"})
    assert subscription.statuses == ["Ready", "Stopped"]
    assert subscription.session_id == "s1" and subscription.requested_by == "me"


@pytest.mark.parametrize(("body", "field"), [
    ({"statuses": ["Ready", "Paused"]}, "statuses"),
    ({"statuses": ["Ready"] * 9}, "statuses"),
    ({"statuses": "Ready"}, "statuses"),
    ({"sessionId": "not an id"}, "sessionId"),
    ({"requestedBy": "x" * (MAX_TEXT + 1)}, "requestedBy"),
    ({"notificationUrl": ""}, "notificationUrl"),
    ({"notificationUrl": "https://x.example/" + "p" * MAX_URL_CHARS}, "notificationUrl"),
    ({"callbackUrl": "https://x.example/"}, "callbackUrl"),
])
def test_a_subscription_out_of_its_limits_is_refused(body: dict[str, Any], field: str) -> None:
    body = {"notificationUrl": "https://flow.example/cb", **body}
    locations = refusal(SubscriptionRequest, body)
    assert locations and all(loc[0] == field for loc in locations)


def test_a_subscription_hears_about_at_most_every_status() -> None:
    every = ["Starting", "Ready", "Stopped", "Expired", "Error"]
    assert SubscriptionRequest.model_validate({"notificationUrl": "u", "statuses": every}).statuses == every


# -- answers -----------------------------------------------------------------------------------------------------

def session_view(**changes: Any) -> SessionView:
    fields: dict[str, Any] = {
        "id": "s1", "status": "Ready", "size": "Standard", "lease_minutes": 30, "elapsed_minutes": 3,
        "remaining_minutes": 27, "hostname": None, "handshake_port": None, "arr_inspector_port": None,
        "teraflops": None, "created_at": NOW, "ready_at": None, "ended_at": None, "requested_by": None,
        "reason": None, "labels": {}, "keep_alive": False, "billed_minutes": None, "error": None,
        "links": SessionLinks.model_validate({"self": "/s1", "ready": "/s1/ready", "stop": "/s1/stop"})}
    return SessionView(**{**fields, **changes})


def test_a_session_is_written_in_camel_case_with_every_null_kept() -> None:
    written = session_view().model_dump(mode="json", by_alias=True)
    assert written["links"] == {"self": "/s1", "ready": "/s1/ready", "stop": "/s1/stop"}
    assert written["leaseMinutes"] == 30 and written["arrInspectorPort"] is None
    assert "readyAt" in written and written["readyAt"] is None  # unknown values are null, never missing
    assert written["createdAt"] == "2026-03-01T12:00:00Z"
    assert not [key for key in written if "_" in key]


def test_a_session_view_has_no_field_left_out() -> None:
    """Unlike the requests' optional fields, an answer's must all be given (a forgotten one is a bug)."""
    fields = session_view().model_dump()
    del fields["hostname"]
    with pytest.raises(ValidationError, match="hostname"):
        SessionView(**fields)


@pytest.mark.parametrize("status", ["Paused", "ready "])
def test_a_session_status_outside_the_five_is_refused(status: str) -> None:
    with pytest.raises(ValidationError):
        session_view(status=status)


def test_the_usage_report_writes_from_not_from_() -> None:
    total = UsageRow(key="total", sessions=2, billed_minutes=90, estimated_cost=None)
    report = UsageReport.model_validate({"from": NOW, "to": NOW, "currency": "EUR", "rows": [total], "total": total})
    written = report.model_dump(mode="json", by_alias=True)
    assert written["from"] == "2026-03-01T12:00:00Z" and "from_" not in written
    assert written["total"] == {"key": "total", "sessions": 2, "billedMinutes": 90, "estimatedCost": None}


def test_a_cleanup_run_keeps_the_stops_and_errors_and_counts_the_rest() -> None:
    act = CleanupAction(id="s1", reason="lease over")
    report = CleanupReport(ran_at=NOW, dry_run=False, mode="lease", stopped=[act], kept=[act, act],
                           reconciled=[act] * 3, errors=[CleanupAction(id="s2", reason="503")])
    assert report.deferred == []
    run = CleanupRun.of(report)
    assert (run.kept, run.reconciled, run.deferred) == (2, 3, 0)
    assert run.stopped == [act] and [e.id for e in run.errors] == ["s2"]


def test_a_problem_allows_extensions_and_writes_camel_case() -> None:
    problem = Problem.model_validate({"title": "Bad request", "status": 400, "correlationId": "cv.1",
                                      "retryAfterSeconds": 5})
    written = problem.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert written == {"type": "about:blank", "title": "Bad request", "status": 400, "correlationId": "cv.1",
                       "retryAfterSeconds": 5}
    with pytest.raises(ValidationError):
        Problem.model_validate({"title": "t", "status": 400, "sessionStatus": "Paused"})
