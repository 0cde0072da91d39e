"""The HTTP API end to end, as Logic Apps and webhooks use it: local host + ARR emulator + Azurite, real sockets."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from azure.data.tables import TableClient

from conftest import Azurite, Emulator, Host, function_app_env, start_host, stop


@pytest.fixture(scope="module")
def app_settings() -> dict[str, str]:
    return {"ARR_MAX_LEASE_MINUTES": "240", "ARR_POLL_SECONDS": "3", "ARR_NIGHTLY_SHUTDOWN_AT": "22:00",
            "ARR_TIME_ZONE": "Europe/Amsterdam"}  # timers are off: the nightly time only shows in ListSessions




def session_record(table: TableClient, session_id: str) -> dict[str, Any]:
    index = table.get_entity("id", session_id)
    return dict(table.get_entity(index["RecordPartition"], index["RecordRow"]))


def session_events(table: TableClient, session_id: str) -> list[dict[str, Any]]:
    index = table.get_entity("id", session_id)
    row = index["RecordRow"]
    return [dict(e) for e in table.query_entities(
        "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
        parameters={"pk": index["RecordPartition"], "lo": f"{row}~e", "hi": f"{row}~f"})]


def follow_like_a_logic_app(http: httpx.Client, response: httpx.Response, emulator: Emulator,
                            max_polls: int = 20) -> tuple[httpx.Response, int]:
    """Poll Location while 202, honouring Retry-After by advancing the emulator's clock instead of sleeping."""
    polls = 0
    while response.status_code == 202:
        assert polls < max_polls
        location = response.headers["Location"]
        retry_after = int(response.headers["Retry-After"])
        emulator.advance(retry_after)
        response = http.get(location)
        polls += 1
    return response, polls


def test_logic_app_flow_start_poll_extend_stop(http: httpx.Client, emulator: Emulator, table: TableClient,
                                               app_host: Host) -> None:
    """Start (202 + absolute Location, never with the caller's code) -> poll to 200 -> extend -> stop -> read;
    history is written."""
    started_at = datetime.now(timezone.utc)
    r = http.post("/api/sessions", params={"code": app_host.key},
                  json={"size": "Standard", "leaseMinutes": 30, "requestedBy": "flow@contoso",
                        "reason": "design review", "labels": {"team": "viz"}, "keepAlive": False})
    assert r.status_code == 202, r.text
    assert r.headers["Location"].startswith(app_host.url + "/api/sessions/")
    assert r.headers["Location"].endswith("/ready") and app_host.key not in r.text + str(r.headers)
    assert r.headers["Retry-After"] == "3"
    view = r.json()
    session_id = view["id"]
    assert view["status"] == "Starting" and view["remainingMinutes"] is None and view["hostname"] is None
    assert view["requestedBy"] == "flow@contoso" and view["labels"] == {"team": "viz"}
    assert set(view["links"]) == {"self", "ready", "stop"}

    ready, polls = follow_like_a_logic_app(http, r, emulator)
    assert ready.status_code == 200 and polls >= 1
    body = ready.json()
    assert body["status"] == "Ready" and body["hostname"] and body["handshakePort"] and body["remainingMinutes"] == 30

    emulator.advance(120)
    extended = http.patch(f"/api/sessions/{session_id}", json={"extendByMinutes": 15})
    assert extended.status_code == 200, extended.text
    assert extended.json()["leaseMinutes"] == 45 and extended.json()["elapsedMinutes"] == 2
    assert http.patch(f"/api/sessions/{session_id}", json={"leaseMinutes": 60}).json()["leaseMinutes"] == 60

    stopped = http.post(f"/api/sessions/{session_id}/stop", json={"reason": "review done"})
    assert stopped.status_code == 200 and stopped.json()["status"] == "Stopped"
    again = http.post(f"/api/sessions/{session_id}/stop", json={})
    assert again.status_code == 200 and again.json()["status"] == "Stopped"
    read = http.get(f"/api/sessions/{session_id}").json()
    assert read["status"] == "Stopped" and read["endedAt"] is not None and read["billedMinutes"] == 2

    record = session_record(table, session_id)
    assert record["Status"] == "Stopped" and record["RequestedBy"] == "flow@contoso"
    assert record["LeaseMinutes"] == 60 and record["StopReason"] == "review done"
    assert record["CreatedAt"] >= started_at and record["ReadyAt"] >= record["CreatedAt"]
    assert record["EndedAt"] >= record["ReadyAt"]
    types = [e["Type"] for e in sorted(session_events(table, session_id), key=lambda e: e["Seq"])]
    assert types[0] == "requested" and "extended" in types and types.count("stopped") == 1
    assert [e["ToStatus"] for e in session_events(table, session_id) if e["Type"] == "status"] == \
        ["Starting", "Ready", "Stopped"]


def test_session_ended_before_ready_fails_the_poll(http: httpx.Client, emulator: Emulator) -> None:
    """A session that ends while Starting makes the monitor answer 409 with its status."""
    r = http.post("/api/sessions", json={"leaseMinutes": 10})
    session_id = r.json()["id"]
    assert http.post(f"/api/sessions/{session_id}/stop").status_code == 200
    ready = http.get(f"/api/sessions/{session_id}/ready")
    assert ready.status_code == 409
    assert ready.headers["content-type"].startswith("application/problem+json")
    assert ready.json()["sessionStatus"] == "Stopped"


def test_capacity_error_reaches_the_monitor_with_arrs_error(http: httpx.Client, emulator: Emulator) -> None:
    """A session ARR fails (no capacity) ends the poll with 409 and ARR's error."""
    emulator.reset(capacity=0)
    r = http.post("/api/sessions", json={"leaseMinutes": 10})
    emulator.advance(10)
    ready = http.get(r.headers["Location"])
    assert ready.status_code == 409
    assert ready.json()["sessionStatus"] == "Error" and ready.json()["arrError"]["code"] == "NoCapacity"


def test_50_concurrent_duplicates_start_exactly_one_session(http: httpx.Client, emulator: Emulator) -> None:
    """50 racing starts with one Idempotency-Key: one ARR session, and every answer names it."""
    key = f"webhook-{uuid.uuid4()}"

    def start(_: int) -> httpx.Response:
        return http.post("/api/sessions", json={"leaseMinutes": 20}, headers={"Idempotency-Key": key})

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(start, range(50)))
    assert all(r.status_code == 202 for r in responses), {r.status_code for r in responses}
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    sessions = emulator.state()["sessions"]
    assert len(sessions) == 1 and sessions[0]["id"] in ids
    assert emulator.state()["requests"]["create"] == 1
    different = http.post("/api/sessions", json={"leaseMinutes": 25}, headers={"Idempotency-Key": key})
    assert different.status_code == 409
    spaced = http.post("/api/sessions", json={"leaseMinutes": 5}, headers={"Idempotency-Key": "order 42 / retry"})
    assert spaced.status_code == 202


def test_repeated_session_id(http: httpx.Client, emulator: Emulator) -> None:
    """The same sessionId with the same settings is the same session; with other settings a 409."""
    session_id = f"mine-{uuid.uuid4().hex[:8]}"
    first = http.post("/api/sessions", json={"sessionId": session_id, "leaseMinutes": 15, "size": "premium"})
    second = http.post("/api/sessions", json={"sessionId": session_id, "leaseMinutes": 15, "size": "Premium"})
    assert first.status_code == second.status_code == 202
    assert second.json()["id"] == session_id and second.json()["size"] == "Premium"
    conflict = http.post("/api/sessions", json={"sessionId": session_id, "leaseMinutes": 16, "size": "Premium"})
    assert conflict.status_code == 409 and conflict.json()["errors"][0]["field"] == "sessionId"
    assert len(emulator.state()["sessions"]) == 1


def test_query_parameters_win_and_payload_can_be_ignored(http: httpx.Client, emulator: Emulator) -> None:
    """Webhook senders that cannot shape their body use the query; ?payload=ignore skips the body."""
    r = http.post("/api/sessions", params={"leaseMinutes": "12", "size": "Premium", "requestedBy": "hook",
                                           "payload": "ignore"},
                  content=b"<xml>not json at all</xml>", headers={"Content-Type": "application/xml"})
    assert r.status_code == 202, r.text
    assert r.json()["leaseMinutes"] == 12 and r.json()["size"] == "Premium" and r.json()["requestedBy"] == "hook"
    r = http.post("/api/sessions", params={"leaseMinutes": "14"}, json={"leaseMinutes": 40, "reason": "q wins"})
    assert r.json()["leaseMinutes"] == 14 and r.json()["reason"] == "q wins"


@pytest.mark.parametrize(("kwargs", "status", "field"), [
    ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "body"),
    ({"content": b"[1,2]", "headers": {"Content-Type": "application/json"}}, 400, "body"),
    ({"json": {"leaseMinutes": "30"}}, 400, "leaseMinutes"),
    ({"json": {"leaseMinutes": 30.5}}, 400, "leaseMinutes"),
    ({"json": {"leaseMinutes": 1441}}, 400, "leaseMinutes"),
    ({"json": {"leaseMinutes": 241}}, 400, "leaseMinutes"),
    ({"json": {"leaseMinutes": -1}}, 400, "leaseMinutes"),
    ({"json": {"size": "Tiny"}}, 400, "size"),
    ({"json": {"sessionId": "../x"}}, 400, "sessionId"),
    ({"json": {"sessionId": "x" * 257}}, 400, "sessionId"),
    ({"json": {"sessionId": "séance"}}, 400, "sessionId"),
    ({"json": {"colour": "red"}}, 400, "colour"),
    ({"json": {"keepAlive": "yes"}}, 400, "keepAlive"),
    ({"json": {"labels": {"a": 1}}}, 400, "labels.a"),
    ({"json": {}, "headers": {"Idempotency-Key": ""}}, 400, "Idempotency-Key"),
    ({"json": {}, "headers": {"Idempotency-Key": "clé".encode()}}, 400, "Idempotency-Key"),
    ({"json": {}, "headers": {"Idempotency-Key": "k" * 256}}, 400, "Idempotency-Key"),
    ({"content": b"leaseMinutes=5", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415, None),
    ({"content": b"{" + b" " * 70_000 + b"}", "headers": {"Content-Type": "application/json"}}, 413, None),
])
def test_bad_input_is_a_problem_naming_the_field(http: httpx.Client, emulator: Emulator, table: TableClient,
                                                 kwargs: dict[str, Any], status: int, field: str | None) -> None:
    """Bad input: the right 4xx, problem+json naming the field, nothing sent to ARR or written to history."""
    before = len(list(table.query_entities("Kind eq 'session'")))
    r = http.post("/api/sessions", **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == status and problem["title"]
    if field is not None:
        assert field in [e["field"] for e in problem["errors"]], problem
    assert emulator.state()["requests"]["create"] == 0 and emulator.state()["requests"]["token"] == 0
    assert len(list(table.query_entities("Kind eq 'session'"))) == before


@pytest.mark.parametrize(("body", "field"), [({}, "body"), ({"leaseMinutes": 20, "extendByMinutes": 5}, "body"),
                                            ({"requestedBy": "ana", "reason": "no change"}, "body"),
                                            ({"keepAlive": "yes"}, "keepAlive"),
                                            ({"leaseMinutes": 5}, "leaseMinutes"),
                                            ({"extendByMinutes": 500}, "extendByMinutes"),
                                            ({"leaseMinutes": "x"}, "leaseMinutes")])
def test_extend_refuses_bad_leases(http: httpx.Client, emulator: Emulator, body: dict[str, Any], field: str) -> None:
    """Extend needs a change (at most one lease field, or keepAlive), a larger lease, and one within the
    configured maximum."""
    session_id = http.post("/api/sessions", json={"leaseMinutes": 10}).json()["id"]
    r = http.patch(f"/api/sessions/{session_id}", json=body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if field != "body":
        assert field in [e["field"] for e in r.json()["errors"]]
    assert emulator.state()["requests"]["update"] == 0


def test_unknown_session_is_404(http: httpx.Client, emulator: Emulator) -> None:
    """Neither ARR nor history knows it: 404 problem, for get, ready, stop and extend."""
    assert http.get("/api/sessions/nope-nope").status_code == 404
    assert http.get("/api/sessions/nope-nope/ready").status_code == 404
    assert http.post("/api/sessions/nope-nope/stop").status_code == 404
    assert http.patch("/api/sessions/nope-nope", json={"leaseMinutes": 20}).status_code == 404


def test_list_sessions_merges_history(http: httpx.Client, emulator: Emulator) -> None:
    """ListSessions shows ARR's active sessions with history's fields; ?status narrows it."""
    a = http.post("/api/sessions", json={"leaseMinutes": 10, "requestedBy": "alice"}).json()["id"]
    http.post("/api/sessions", json={"leaseMinutes": 10, "requestedBy": "bob"})
    emulator.advance(10)
    http.get(f"/api/sessions/{a}")
    c = http.post("/api/sessions", json={"leaseMinutes": 10}).json()["id"]
    listed = http.get("/api/sessions").json()["sessions"]
    assert len(listed) == 3
    assert {s["requestedBy"] for s in listed} == {"alice", "bob", None}
    amsterdam = ZoneInfo("Europe/Amsterdam")
    nights = [(datetime.now(amsterdam) + timedelta(days=d)).replace(hour=22, minute=0, second=0, microsecond=0)
              .isoformat() for d in (0, 1)]
    answer = http.get("/api/sessions").json()
    assert answer["nightlyShutdown"]["timeZone"] == "Europe/Amsterdam" and answer["nightlyShutdown"]["nextAt"] in nights
    starting = http.get("/api/sessions", params={"status": "Starting"}).json()["sessions"]
    assert [s["id"] for s in starting] == [c]
    assert http.get("/api/sessions", params={"status": "Stopped"}).status_code == 400


def test_a_stop_names_who_asked_in_its_body_or_query(http: httpx.Client, emulator: Emulator,
                                                     table: TableClient) -> None:
    """Before, the stop's body had only reason ({"requestedBy": ...} was a 400) and nobody was recorded: stoppedBy
    and the stop event's actor were null for every caller's stop."""
    session_id = http.post("/api/sessions", json={"leaseMinutes": 10, "requestedBy": "flow"}).json()["id"]
    emulator.advance(10)
    stopped = http.post(f"/api/sessions/{session_id}/stop", json={"reason": "done", "requestedBy": "ana@contoso"})
    assert stopped.status_code == 200, stopped.text
    assert (stopped.json()["status"], stopped.json()["stoppedBy"]) == ("Stopped", "ana@contoso")
    assert http.get(f"/api/sessions/{session_id}").json()["stoppedBy"] == "ana@contoso"
    events = http.get(f"/api/sessions/{session_id}/events").json()["events"]
    assert [(e["actor"], e["detail"]["reason"]) for e in events if e["type"] == "stopped"] == [("ana@contoso", "done")]
    assert session_record(table, session_id)["StoppedBy"] == "ana@contoso"

    hooked = http.post("/api/sessions", json={"leaseMinutes": 10}).json()["id"]
    by_query = http.post(f"/api/sessions/{hooked}/stop", params={"requestedBy": "webhook"})
    assert (by_query.status_code, by_query.json()["stoppedBy"]) == (200, "webhook")
    too_long = http.post(f"/api/sessions/{hooked}/stop", params={"requestedBy": "x" * 257})
    assert too_long.status_code == 400 and too_long.json()["errors"][0]["field"] == "requestedBy"


def test_keep_alive_changes_after_the_start(http: httpx.Client, emulator: Emulator, table: TableClient) -> None:
    """Before, PATCH {"keepAlive": false} was a 400 ("Extra inputs are not permitted"): a running session could be
    neither saved from tonight's shutdown nor released to it. Now the change is kept, with an event saying who and
    why; with a lease both happen; an ended session is a 409."""
    session_id = http.post("/api/sessions", json={"leaseMinutes": 10}).json()["id"]
    emulator.advance(10)
    saved = http.patch(f"/api/sessions/{session_id}",
                       json={"keepAlive": True, "requestedBy": "ana", "reason": "demo tonight"})
    assert saved.status_code == 200, saved.text
    assert (saved.json()["keepAlive"], saved.json()["leaseMinutes"]) == (True, 10)
    assert session_record(table, session_id)["KeepAlive"] is True
    both = http.patch(f"/api/sessions/{session_id}", json={"keepAlive": False, "extendByMinutes": 5,
                                                          "requestedBy": "bo"})
    assert both.status_code == 200, both.text
    assert (both.json()["keepAlive"], both.json()["leaseMinutes"]) == (False, 15)
    events = http.get(f"/api/sessions/{session_id}/events").json()["events"]
    assert [(e["type"], e["actor"], e["detail"]) for e in events if e["type"] in ("keepAlive", "extended")] == [
        ("keepAlive", "ana", {"keepAlive": True, "reason": "demo tonight"}),
        ("keepAlive", "bo", {"keepAlive": False, "reason": None}),
        ("extended", "bo", {"fromMinutes": 10, "toMinutes": 15})]

    http.post(f"/api/sessions/{session_id}/stop")
    ended = http.patch(f"/api/sessions/{session_id}", json={"keepAlive": True})
    assert ended.status_code == 409 and ended.json()["sessionStatus"] == "Stopped"
    assert ended.headers["content-type"].startswith("application/problem+json")


def test_history_newest_first_pages_back_in_the_same_order(http: httpx.Client, emulator: Emulator) -> None:
    """order=newest: today's sessions on the first page; nextLink keeps the order (and its token is bound to it)."""
    who = f"pager-{uuid.uuid4().hex[:8]}"
    ids = [http.post("/api/sessions", json={"leaseMinutes": 10, "requestedBy": who}).json()["id"] for _ in range(3)]
    first = http.get("/api/history", params={"requestedBy": who, "order": "newest", "top": 2}).json()
    assert [s["id"] for s in first["sessions"]] == ids[:0:-1]
    assert "order=newest" in first["nextLink"]
    rest = http.get(first["nextLink"]).json()
    assert ([s["id"] for s in rest["sessions"]], rest["nextLink"]) == ([ids[0]], None)
    other_order = first["nextLink"].replace("order=newest", "order=oldest")
    refused = http.get(other_order)
    assert refused.status_code == 400 and refused.json()["errors"][0]["field"] == "continuationToken"
    oldest = http.get("/api/history", params={"requestedBy": who}).json()
    assert [s["id"] for s in oldest["sessions"]] == ids


def test_arr_failures_map_to_the_contract(http: httpx.Client, emulator: Emulator) -> None:
    """429 storm -> 503 + Retry-After; 5xx burst -> 502 with ARR's error and MS-CV; slow ARR still answers."""
    session_id = http.post("/api/sessions", json={"leaseMinutes": 10}).json()["id"]
    emulator.fault(operations=["get"], status=429, retryAfter=1, count=-1)
    throttled = http.get(f"/api/sessions/{session_id}")
    assert throttled.status_code == 503 and throttled.headers["Retry-After"] == "1"
    emulator.control("DELETE", "faults")
    emulator.fault(operations=["get"], status=500, count=-1)
    failed = http.get(f"/api/sessions/{session_id}")
    assert failed.status_code == 502
    assert failed.json()["arrError"]["code"] == "InternalServerError" and failed.json()["correlationId"]
    emulator.control("DELETE", "faults")
    emulator.fault(operations=["get"], status=503, count=2)
    assert http.get(f"/api/sessions/{session_id}").status_code == 200  # retried inside the client
    emulator.fault(operations=["get"], latencyMs=800)
    assert http.get(f"/api/sessions/{session_id}").status_code == 200


def test_health_and_openapi(http: httpx.Client, app_host: Host, emulator: Emulator) -> None:
    """Health and the OpenAPI document are anonymous; the document is valid OpenAPI 2.0 for this host."""
    from openapi_spec_validator import validate

    health = httpx.get(f"{app_host.url}/api/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "arr": {"status": "ok", "detail": None},
                                                           "history": {"status": "ok", "detail": None}}
    doc = httpx.get(f"{app_host.url}/api/openapi.json").json()
    validate(doc)
    assert doc["host"] == app_host.url.removeprefix("http://")
    operations = {op["operationId"] for path in doc["paths"].values() for key, op in path.items() if key[0] != "x"}
    assert operations == {"StartSession", "GetSession", "WaitUntilReady", "WaitUntilReadySigned", "ExtendSession",
                          "StopSession", "SendHeartbeat", "AddOverride", "ListOverrides", "RemoveOverride",
                          "ListSessions", "ListHistory", "GetUsage", "RunCleanup", "Health", "OpenApi",
                          "CreateSchedule", "ListSchedules", "GetSchedule", "ReplaceSchedule", "DeleteSchedule",
                          "SubscribeSessionChanges", "SubscribeStopWarnings", "Unsubscribe", "ListSessionEvents",
                          "ListCleanupRuns", "ListPools", "ClaimPool", "GetBudget", "CreateQuota", "ListQuotas",
                          "DeleteQuota", "TopUpQuota"}
    for path in doc["paths"].values():
        for op in (op for key, op in path.items() if key[0] != "x"):
            assert op["summary"] and op["description"] and op["summary"] != op["description"]
            assert all("x-ms-summary" in p for p in op["parameters"] if p["in"] != "body")
    assert httpx.get(f"{app_host.url}/api/sessions").status_code == 401  # a key is required elsewhere


def test_secrets_never_in_responses(http: httpx.Client, emulator: Emulator, app_host: Host) -> None:
    """Neither the account key nor an STS token appears in any answer, even ARR's credential failures."""
    responses = [http.post("/api/sessions", json={"leaseMinutes": 10}), http.get("/api/sessions"),
                 httpx.get(f"{app_host.url}/api/health"), http.get("/api/sessions/x/ready")]
    tokens = [t for t in emulator.state().get("tokens", [])]
    for response in responses:
        assert emulator.account_key not in response.text
        for token in tokens:
            assert token not in response.text


def test_table_storage_down(emulator: Emulator) -> None:
    """Azurite down: start answers 503 problem and starts nothing at ARR; health says which part is down."""
    from conftest import free_port, start
    from devhost.stack import azurite_command, azurite_connection_string

    port = free_port()
    own_azurite = start(azurite_command(port), port)
    fake = Azurite(port, azurite_connection_string(port), own_azurite)
    host = start_host(function_app_env(emulator, fake, "down"), "function_app", "--no-timers")
    try:
        with host.client() as http:
            assert http.post("/api/sessions", json={"leaseMinutes": 10}).status_code == 202
            stop(own_azurite)
            started = time.monotonic()
            r = http.post("/api/sessions", json={"leaseMinutes": 10})
            assert time.monotonic() - started < 30
            assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json")
            assert r.headers["Retry-After"] == "30"
            assert len(emulator.state()["sessions"]) == 1  # nothing started without a trace
            health = httpx.get(f"{host.url}/api/health")
            assert health.status_code == 503
            assert health.json()["history"]["status"] == "unavailable" and health.json()["arr"]["status"] == "ok"
    finally:
        stop(host.process)


def test_arr_refusing_a_start_is_recorded(http: httpx.Client, emulator: Emulator, table: TableClient) -> None:
    """ARR's 409 (the id is taken at ARR by a session this app never saw): 409 with ARR's error, and history
    closes the intent record as Error with ARR's code rather than leaving it to look active. (Its table flag stays
    set until the cleanup has announced that change.)"""
    import asyncio

    from arr_core import AccountKeyCredential, ArrClient

    async def take_id() -> None:
        s = emulator.client_settings()
        async with ArrClient(s["endpoint"], s["account_id"], s["account_domain"],
                             AccountKeyCredential(emulator.account_key), sts_endpoint=s["sts_endpoint"]) as client:
            await client.create_session("taken-at-arr", lease_minutes=10)

    asyncio.run(take_id())
    r = http.post("/api/sessions", json={"sessionId": "taken-at-arr", "leaseMinutes": 20})
    assert r.status_code == 409 and r.json()["arrError"]["code"] == "Conflict" and r.json()["correlationId"]
    record = session_record(table, "taken-at-arr")
    assert record["Status"] == "Error" and record["ErrorCode"] == "Conflict" and record["Active"] is True
    assert [e["Type"] for e in sorted(session_events(table, "taken-at-arr"), key=lambda e: e["Seq"])] == \
        ["requested", "start-failed"]


def test_health_reports_misconfiguration(emulator: Emulator, azurite: Azurite) -> None:
    """Missing ARR settings: health answers 503 in its own shape, naming the settings, with no secret."""
    env = function_app_env(emulator, azurite, "misconf")
    env["ARR_ACCOUNT_ID"] = ""
    host = start_host(env, "function_app", "--no-timers")
    try:
        r = httpx.get(f"{host.url}/api/health")
        assert r.status_code == 503 and r.json()["arr"]["status"] == "misconfigured"
        assert "ARR_ACCOUNT_ID" in r.json()["arr"]["detail"] and emulator.account_key not in r.text
        with host.client() as http:
            start = http.post("/api/sessions", json={})
        assert start.status_code == 503 and "ARR_ACCOUNT_ID" in start.json()["detail"]
    finally:
        stop(host.process)
