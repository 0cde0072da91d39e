"""SessionService over MemoryHistory and a real ArrClient talking to the emulator in-process.

Each crash of docs/architecture.md's table is simulated at its point (a key bound with no intent, an intent with no ARR
session, a history write failing after ARR acted, a stop cut short) and the service is shown to see it through.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import timedelta

import pytest

from arr_core.api.views import ExtendSessionRequest, StartSessionRequest
from arr_core.arr.models import SessionStatus
from arr_core.domain.lifecycle import fingerprint
from arr_core.domain.records import Event, SessionRecord
from arr_core.errors import (
    HistoryUnavailable,
    IdempotencyKeyReused,
    InvalidRequestError,
    LeaseMustGrow,
    LeaseTooLong,
    ServiceError,
    SessionEnded,
    SessionIdInUse,
)

from .harness import START, World

BODY = {"lease_minutes": 30, "requested_by": "flow@contoso", "reason": "unit"}


def start_request(**fields: object) -> StartSessionRequest:
    return StartSessionRequest(**(BODY | fields))  # type: ignore[arg-type]


def key_fingerprint(request: StartSessionRequest, size: str = "Standard") -> str:
    """The fingerprint the service binds a key with: the request with its defaults resolved."""
    return fingerprint(request.model_dump() | {"size": size, "lease_minutes": request.lease_minutes})


# -- start --------------------------------------------------------------------------------------------------------

async def test_start_answers_starting_then_ready_once_the_emulator_clock_moves(world: World) -> None:
    state = await world.service.start(start_request(labels={"team": "viz"}, keep_alive=True, session_id="s-1"))
    assert (state.session_id, state.status) == ("s-1", "Starting")  # the 202 of the HTTP layer
    assert state.arr is not None and state.arr.status is SessionStatus.STARTING
    assert world.emulator.requests["create"] == 1

    world.advance(10)
    ready = await world.service.read("s-1")
    assert ready.status == "Ready"
    record = await world.history.get("s-1")
    assert record is not None and ready.record == record
    assert {
        "status": record.status, "created_at": record.created_at, "size": record.size,
        "lease_minutes": record.lease_minutes, "requested_by": record.requested_by, "reason": record.reason,
        "labels": record.labels, "keep_alive": record.keep_alive, "arr_created_at": record.arr_created_at,
        "ready_at": record.ready_at, "ended_at": record.ended_at, "idempotency_key": record.idempotency_key,
        "event_count": record.event_count, "updated_at": record.updated_at,
    } == {
        "status": "Ready", "created_at": START, "size": "Standard", "lease_minutes": 30,
        "requested_by": "flow@contoso", "reason": "unit", "labels": {"team": "viz"}, "keep_alive": True,
        "arr_created_at": START, "ready_at": START + timedelta(seconds=10), "ended_at": None,
        "idempotency_key": None, "event_count": 3, "updated_at": START + timedelta(seconds=10),
    }
    events = await world.history.events("s-1")
    assert await world.event_types("s-1") == [(1, "requested", None, "Requested"),
                                              (2, "status", "Requested", "Starting"),
                                              (3, "status", "Starting", "Ready")]
    assert (events[0]["Actor"], json.loads(events[0]["Detail"])) == (
        "flow@contoso", {"size": "Standard", "leaseMinutes": 30, "reason": "unit"})
    assert [e["At"] for e in events] == [START, START, START + timedelta(seconds=10)]


async def test_twenty_concurrent_duplicates_with_one_session_id_start_one_session(world: World) -> None:
    states = await asyncio.gather(*(world.service.start(start_request(session_id="dup")) for _ in range(20)))
    assert {(s.session_id, s.status) for s in states} == {("dup", "Starting")}
    assert world.emulator.requests["create"] == 1
    assert world.arr_statuses() == {"dup": "Starting"}
    assert [r.session_id for r in await world.records()] == ["dup"]
    assert await world.event_types("dup") == [(1, "requested", None, "Requested"),
                                              (2, "status", "Requested", "Starting")]


async def test_twenty_concurrent_duplicates_with_one_idempotency_key_make_one_arr_create(world: World) -> None:
    states = await asyncio.gather(*(world.service.start(start_request(), "key-20") for _ in range(20)))
    [session_id] = {s.session_id for s in states}
    assert {s.status for s in states} == {"Starting"}
    assert world.emulator.requests["create"] == 1
    assert world.arr_statuses() == {session_id: "Starting"}
    [record] = await world.records()
    assert (record.session_id, record.idempotency_key) == (session_id,
                                                           hashlib.sha256(b"key-20").hexdigest()[:16])


async def test_a_repeated_session_id_with_other_settings_is_refused(world: World) -> None:
    await world.service.start(start_request(session_id="taken"))
    with pytest.raises(SessionIdInUse) as caught:
        await world.service.start(start_request(session_id="taken", lease_minutes=45))
    assert (caught.value.code, caught.value.field) == ("SessionIdInUse", "sessionId")
    assert world.emulator.requests["create"] == 1


# -- Idempotency-Key ----------------------------------------------------------------------------------------------

async def test_a_key_reused_with_other_parameters_is_refused_as_a_conflict(world: World) -> None:
    from blueprints.http import PROBLEMS  # the one table that turns domain errors into HTTP answers

    first = await world.service.start(start_request(), "key-a")
    with pytest.raises(IdempotencyKeyReused) as caught:
        await world.service.start(start_request(lease_minutes=45), "key-a")
    assert (caught.value.code, caught.value.field) == ("IdempotencyKeyReused", "Idempotency-Key")
    assert PROBLEMS[IdempotencyKeyReused].status == 409
    assert world.emulator.requests["create"] == 1
    assert [r.session_id for r in await world.records()] == [first.session_id]


async def test_a_key_bound_before_a_crash_without_an_intent_starts_its_session(world: World) -> None:
    """The process died after binding the key, before writing the intent: the retry starts that session."""
    request = start_request()
    await world.history.claim_key("key-crash", key_fingerprint(request), "bound-no-intent")
    assert await world.records() == []
    state = await world.service.start(request, "key-crash")
    assert (state.session_id, state.status) == ("bound-no-intent", "Starting")
    assert world.arr_statuses() == {"bound-no-intent": "Starting"}
    world.advance(10)
    assert (await world.service.read("bound-no-intent")).status == "Ready"


async def write_stalled_intent(world: World, request: StartSessionRequest, key: str, session_id: str) -> None:
    """What a process that died after the intent, before ARR's PUT, left: the key's row and a Requested record."""
    await world.history.claim_key(key, key_fingerprint(request), session_id)
    await world.history.claim(
        SessionRecord(session_id=session_id, created_at=world.clock.now, size="Standard",
                      lease_minutes=request.lease_minutes, requested_by=request.requested_by, reason=request.reason,
                      idempotency_key=hashlib.sha256(key.encode()).hexdigest()[:16]),
        Event("requested", world.clock.now, to_status="Requested", actor=request.requested_by))


async def test_a_stalled_intent_is_driven_by_a_retry_with_the_key_after_5_seconds(world: World) -> None:
    request = start_request()
    await write_stalled_intent(world, request, "key-stalled", "stalled")
    world.advance(4.9)
    early = await world.service.start(request, "key-stalled")
    assert (early.session_id, early.status, early.arr) == ("stalled", "Starting", None)  # still in progress
    assert world.emulator.requests["create"] == 0
    world.advance(0.1)
    state = await world.service.start(request, "key-stalled")
    assert state.arr is not None and state.arr.status is SessionStatus.STARTING
    assert world.emulator.requests["create"] == 1
    assert world.arr_statuses() == {"stalled": "Starting"}
    assert await world.event_types("stalled") == [(1, "requested", None, "Requested"),
                                                  (2, "status", "Requested", "Starting")]


async def test_a_stalled_intent_is_driven_by_a_read_after_5_seconds(world: World) -> None:
    """A Logic App polling the Location of a start that was cut short sees it through."""
    await write_stalled_intent(world, start_request(), "key-poll", "polled")
    world.advance(4.9)
    assert (await world.service.read("polled")).arr is None
    world.advance(0.1)
    state = await world.service.read("polled")
    assert (state.status, world.emulator.requests["create"]) == ("Starting", 1)
    world.advance(10)
    assert (await world.service.read("polled")).status == "Ready"
    assert world.emulator.requests["create"] == 1


async def test_an_intent_closed_by_the_cleanup_is_reopened_by_a_retry_with_the_key(world: World) -> None:
    request = start_request()
    await write_stalled_intent(world, request, "key-closed", "closed")
    world.advance(11 * 60)  # past the cleanup's 10 minutes of grace for a start in progress
    report = await world.maintenance().run_cleanup()
    assert [(a.id, a.reason) for a in report.reconciled] == [("closed", "closed: ARR does not know it")]
    closed = await world.history.get("closed")
    assert closed is not None and (closed.status, closed.error_code) == ("Error", "StartNotCompleted")

    state = await world.service.start(request, "key-closed")
    assert (state.session_id, state.status) == ("closed", "Starting")
    assert world.arr_statuses() == {"closed": "Starting"}
    record = await world.history.get("closed")
    assert record is not None
    assert (record.status, record.error_code, record.ended_at) == ("Starting", None, None)
    assert await world.event_types("closed") == [(1, "requested", None, "Requested"),
                                                 (2, "start-failed", "Requested", "Error"),
                                                 (3, "retried", "Error", "Requested"),
                                                 (4, "status", "Requested", "Starting")]


async def test_a_key_whose_first_start_arr_refused_stays_usable(world: World) -> None:
    """ARR refused the first create (400): the caller hears why, the record ends in Error, and a retry with the
    same key asks ARR again and starts the same session."""
    world.fault("create", status=400)
    with pytest.raises(InvalidRequestError):
        await world.service.start(start_request(), "key-refused")
    [refused] = await world.records()
    assert (refused.status, refused.error_code, refused.reached_arr) == ("Error", "Error", False)
    state = await world.service.start(start_request(), "key-refused")
    assert (state.session_id, state.status) == (refused.session_id, "Starting")
    assert world.emulator.requests["create"] == 2
    assert [t for _, t, _, _ in await world.event_types(refused.session_id)] == [
        "requested", "start-failed", "retried", "status"]


async def test_a_key_bound_25_hours_ago_starts_a_new_session(world: World) -> None:
    first = await world.service.start(start_request(), "key-old")
    world.advance(10)
    await world.service.stop(first.session_id, "done", actor="flow@contoso")
    world.advance(25 * 3600)
    again = await world.service.start(start_request(), "key-old")
    assert again.session_id != first.session_id and again.status == "Starting"
    assert world.arr_statuses() == {first.session_id: "Stopped", again.session_id: "Starting"}
    assert world.emulator.requests["create"] == 2


# -- extend -------------------------------------------------------------------------------------------------------

async def test_extend_raises_the_lease_at_arr_and_in_history(world: World) -> None:
    await world.service.start(start_request(session_id="ext"))
    world.advance(10 + 120)
    state = await world.service.extend("ext", ExtendSessionRequest(extend_by_minutes=15, requested_by="alice"))
    assert (state.status, state.arr.lease_minutes if state.arr else None) == ("Ready", 45)
    record = await world.history.get("ext")
    assert record is not None and (record.lease_minutes, record.status) == (45, "Ready")
    events = await world.history.events("ext")
    assert [(e["Type"], e.get("Actor")) for e in events[2:]] == [("status", "alice"), ("extended", "alice")]
    assert json.loads(events[-1]["Detail"]) == {"fromMinutes": 30, "toMinutes": 45}
    with pytest.raises(LeaseMustGrow) as not_larger:
        await world.service.extend("ext", ExtendSessionRequest(lease_minutes=45))
    with pytest.raises(LeaseTooLong) as too_long:
        await world.service.extend("ext", ExtendSessionRequest(extend_by_minutes=1000))
    assert (not_larger.value.field, too_long.value.field) == ("leaseMinutes", "extendByMinutes")
    assert world.emulator.requests["update"] == 1


async def test_keep_alive_changes_after_the_start_with_an_event_saying_who_and_why(world: World) -> None:
    """Before, keepAlive was fixed at the start: a running session could not be saved from tonight's shutdown
    nor released to it. Now a change writes it, with a keepAlive event; ARR is not asked to change anything."""
    await world.service.start(start_request(session_id="keep"))
    world.advance(10)
    saved = await world.service.extend("keep", ExtendSessionRequest(keep_alive=True, requested_by="ana",
                                                                    reason="demo tonight"))
    assert (saved.status, saved.record.keep_alive if saved.record else None) == ("Ready", True)
    released = await world.service.extend("keep", ExtendSessionRequest(keep_alive=False, requested_by="bo"))
    again = await world.service.extend("keep", ExtendSessionRequest(keep_alive=False, requested_by="bo"))
    assert released.record is not None and again.record is not None
    assert (released.record.keep_alive, again.record.event_count) == (False, released.record.event_count)
    changes = [(e["Type"], e.get("Actor"), json.loads(e["Detail"])) for e in await world.history.events("keep")
               if e["Type"] == "keepAlive"]
    assert changes == [("keepAlive", "ana", {"keepAlive": True, "reason": "demo tonight"}),
                       ("keepAlive", "bo", {"keepAlive": False, "reason": None})]  # the same again: nothing
    assert world.emulator.requests["update"] == 0


async def test_keep_alive_and_a_lease_in_one_change_both_happen(world: World) -> None:
    await world.service.start(start_request(session_id="both"))
    world.advance(10)
    state = await world.service.extend("both", ExtendSessionRequest(extend_by_minutes=15, keep_alive=True,
                                                                    requested_by="ana", reason="overtime"))
    assert state.arr is not None and state.record is not None
    assert (state.arr.lease_minutes, state.record.lease_minutes, state.record.keep_alive) == (45, 45, True)
    events = [(e["Type"], e.get("Actor"), json.loads(e["Detail"])) for e in await world.history.events("both")
              if e["Type"] != "status"]
    assert events[-2:] == [("keepAlive", "ana", {"keepAlive": True, "reason": "overtime"}),
                           ("extended", "ana", {"fromMinutes": 30, "toMinutes": 45, "reason": "overtime"})]


async def test_keep_alive_of_a_session_history_does_not_know_adopts_it(world: World) -> None:
    world.start_at_arr("outside")
    state = await world.service.extend("outside", ExtendSessionRequest(keep_alive=True, requested_by="ana"))
    assert state.record is not None and (state.record.keep_alive, state.record.reason) == (
        True, "adopted: started outside this app")
    assert [t for _, t, _, _ in await world.event_types("outside")] == ["adopted", "keepAlive"]


async def test_keep_alive_of_an_ended_session_is_refused_as_an_extension_is(world: World) -> None:
    await world.service.start(start_request(session_id="over"))
    world.advance(10)
    await world.service.stop("over", "done")
    for change in (ExtendSessionRequest(keep_alive=True), ExtendSessionRequest(extend_by_minutes=5)):
        with pytest.raises(SessionEnded) as ended:
            await world.service.extend("over", change)
        assert ended.value.session_status == "Stopped"
    record = await world.history.get("over")
    assert record is not None and record.keep_alive is False


async def test_keep_alive_needs_history_and_then_nothing_changes_while_a_lease_alone_goes_on(world: World) -> None:
    """keepAlive lives in history only: without it the change cannot be recorded (503), and a lease asked for with
    it is not changed either; a lease alone is changed at ARR as before (the cleanup completes its record)."""
    await world.service.start(start_request(session_id="dark"))
    world.advance(10)
    world.history.fail_next(-1)
    for change in (ExtendSessionRequest(keep_alive=True), ExtendSessionRequest(keep_alive=True, extend_by_minutes=5)):
        with pytest.raises(HistoryUnavailable):
            await world.service.extend("dark", change)
    assert world.emulator.requests["update"] == 0
    alone = await world.service.extend("dark", ExtendSessionRequest(extend_by_minutes=5))
    world.history.heal()
    assert alone.arr is not None and alone.arr.lease_minutes == 35
    record = await world.history.get("dark")
    assert record is not None and (record.keep_alive, record.lease_minutes) == (False, 30)


# -- history failing around ARR -----------------------------------------------------------------------------------

async def test_start_names_its_session_when_history_fails_after_arrs_create(world: World) -> None:
    """Every history call fails from the moment ARR receives the PUT: the start still answers with ARR's
    session (no exception), and one cleanup later the record is complete."""

    async def storage_goes_down() -> None:
        world.history.fail_next(-1)

    world.spy.on("PUT", "/sessions/after-arr", storage_goes_down)
    state = await world.service.start(start_request(session_id="after-arr"))
    world.history.heal()
    world.spy.hooks.clear()
    assert (state.session_id, state.status) == ("after-arr", "Starting")
    assert state.arr is not None and state.arr.id == "after-arr"
    assert state.record is not None and state.record.status == "Requested"  # the intent: the write after failed
    stored = await world.history.get("after-arr")
    assert stored is not None and stored.status == "Requested"

    world.advance(15)
    report = await world.maintenance().run_cleanup()
    assert report.errors == []
    assert [(a.id, a.reason) for a in report.reconciled] == [
        ("after-arr", "history updated from ARR: Requested -> Ready")]
    record = await world.history.get("after-arr")
    assert record is not None
    assert (record.status, record.ready_at, record.arr_created_at) == ("Ready", world.clock.now, START)
    assert world.emulator.requests["create"] == 1 and len(await world.records()) == 1


async def test_list_active_without_history_answers_with_arrs_sessions(world: World) -> None:
    await world.service.start(start_request(session_id="listed"))
    world.start_at_arr("outside")
    world.history.fail_next(1)
    active = await world.service.list_active()
    assert active.history_available is False
    assert [(s.session_id, s.status, s.record) for s in active.states] == [("listed", "Starting", None),
                                                                           ("outside", "Starting", None)]
    again = await world.service.list_active()
    assert again.history_available is True
    assert [(s.session_id, s.record is not None) for s in again.states] == [("listed", True), ("outside", False)]


async def test_health_says_history_is_unavailable(world: World) -> None:
    world.history.fail_next(1, only="ping")
    health = await world.service.health()
    assert (health.status, health.arr.status, health.history.status) == ("degraded", "ok", "unavailable")


# -- stop -----------------------------------------------------------------------------------------------------------

async def test_stop_notes_the_reason_before_arr_is_asked(world: World) -> None:
    await world.service.start(start_request(session_id="to-stop"))
    world.advance(10)
    await world.service.read("to-stop")
    seen_by_arr: list[SessionRecord | None] = []

    async def look() -> None:
        seen_by_arr.append(await world.history.get("to-stop"))

    world.spy.on("POST", "/sessions/to-stop/:stop", look)
    world.advance(120)
    state = await world.service.stop("to-stop", "review over", actor="alice")
    [noted] = seen_by_arr
    assert noted is not None
    assert (noted.status, noted.stop_reason, noted.stopped_by, noted.event_count) == ("Ready", "review over",
                                                                                       "alice", 3)
    assert state.status == "Stopped"
    record = await world.history.get("to-stop")
    assert record is not None
    assert (record.status, record.stop_reason, record.stopped_by, record.ended_at, record.elapsed_minutes) == (
        "Stopped", "review over", "alice", world.clock.now, 2)
    events = await world.history.events("to-stop")
    assert [(e["Type"], e.get("Actor")) for e in events[3:]] == [("status", "alice"), ("stopped", "alice")]
    assert json.loads(events[-1]["Detail"]) == {"reason": "review over", "billedMinutes": 2}


@pytest.mark.parametrize(("body", "params", "who"), [
    (b'{"reason": "done", "requestedBy": "ana"}', {}, "ana"),
    (b'{"reason": "done", "requestedBy": "ana"}', {"requestedBy": "bo", "reason": "not read"}, "bo"),  # query wins
    (b"", {"requestedBy": "bo"}, "bo"),  # a sender that cannot shape a body
    (b'{"reason": "done"}', {}, None),
], ids=["body", "query-wins", "query-only", "nobody"])
async def test_a_stop_records_who_asked_as_stopped_by_and_the_stop_events_actor(
        world: World, body: bytes, params: dict[str, str], who: str | None) -> None:
    """Before, StopSessionRequest had only ``reason`` ({"requestedBy": ...} was a 400) and the stop passed no actor:
    stoppedBy and the stop event's actor were null for every caller's stop."""
    import azure.functions as func

    from arr_core.api.present import build_view
    from arr_core.api.views import SessionLinks
    from blueprints.sessions import _stop_request

    await world.service.start(start_request(session_id="asked"))
    world.advance(10)
    request = _stop_request(func.HttpRequest("POST", "http://127.0.0.1:7071/api/sessions/asked/stop", body=body,
                                             headers={"Content-Type": "application/json"}, params=params,
                                             route_params={"id": "asked"}))
    assert (request.reason, request.requested_by) == ("done" if body else None, who)
    state = await world.service.stop("asked", request.reason, actor=request.requested_by)
    view = build_view(state.session_id, state.arr, state.record, lambda i: SessionLinks(self_=i, ready=i, stop=i))
    assert (view.status, view.stopped_by) == ("Stopped", who)
    [stopped] = [e for e in await world.history.events("asked") if e["Type"] == "stopped"]
    assert stopped.get("Actor") == who


@pytest.mark.parametrize("reached_arr", [False, True], ids=["stop-never-arrived", "stop-arrived-answer-lost"])
async def test_a_stop_cut_short_is_finished_by_the_cleanup_in_the_askers_name(world: World,
                                                                              reached_arr: bool) -> None:
    await world.service.start(start_request(session_id="cut"))
    world.advance(10)
    await world.service.read("cut")
    world.fault("stop", status=503)
    with pytest.raises(ServiceError):
        await world.service.stop("cut", "design review over", actor="alice")
    if reached_arr:
        world.stop_at_arr("cut")  # ARR did stop it; only its answer was lost
    noted = await world.history.get("cut")
    assert noted is not None and (noted.status, noted.stop_reason, noted.stopped_by) == (
        "Ready", "design review over", "alice")
    assert world.arr_statuses() == {"cut": "Stopped" if reached_arr else "Ready"}

    report = await world.maintenance().run_cleanup()
    assert report.errors == []
    assert world.arr_statuses() == {"cut": "Stopped"}
    stopped = [(a.id, a.reason) for a in report.stopped]
    reconciled = [(a.id, a.reason) for a in report.reconciled]
    if reached_arr:
        assert (stopped, reconciled) == ([], [("cut", "closed: ARR reports Stopped, 0 billed minutes")])
    else:
        assert (stopped, reconciled) == ([("cut", "finishing the stop asked for: design review over")], [])
    record = await world.history.get("cut")
    assert record is not None
    assert (record.status, record.stop_reason, record.stopped_by) == ("Stopped", "design review over", "alice")
    stopped = [e for e in await world.history.events("cut") if e["Type"] == "stopped"]
    assert [(e["Actor"], json.loads(e["Detail"])["reason"]) for e in stopped] == [("alice", "design review over")]
    again = await world.maintenance().run_cleanup()
    assert (again.stopped, again.reconciled, again.errors) == ([], [], [])


async def test_a_stop_of_a_start_cut_short_is_not_undone_by_a_later_poll(world: World) -> None:
    """A start was cut short before ARR's PUT (intent only); the requester then stops it. A Logic App still
    polling the start's Location must not start the session at ARR afterwards."""
    await write_stalled_intent(world, start_request(), "key-cut", "cut-start")
    await world.service.stop("cut-start", "never mind", actor="alice")
    world.advance(6)
    await world.service.read("cut-start")
    assert world.emulator.requests["create"] == 0, f"a stopped start was created at ARR: {world.arr_statuses()}"


async def test_ten_concurrent_stops_record_the_stop_once(world: World) -> None:
    await world.service.start(start_request(session_id="many"))
    world.advance(10)
    await world.service.read("many")
    world.advance(60)
    states = await asyncio.gather(*(world.service.stop("many", "done", actor="alice") for _ in range(10)))
    assert {s.status for s in states} == {"Stopped"}
    assert world.emulator.requests["stop"] == 10  # ARR's stop is idempotent: no one is refused
    assert await world.event_types("many") == [(1, "requested", None, "Requested"),
                                               (2, "status", "Requested", "Starting"),
                                               (3, "status", "Starting", "Ready"),
                                               (4, "status", "Ready", "Stopped"),
                                               (5, "stopped", None, "Stopped")]


async def test_a_session_arr_fails_ends_in_error_and_a_retry_does_not_create_it_again(world: World) -> None:
    world.emulator.capacity = 0
    state = await world.service.start(start_request(session_id="no-room"), "key-no-room")
    assert state.status == "Starting"
    world.advance(10)
    failed = await world.service.read("no-room")
    assert failed.status == "Error" and failed.record is not None
    assert (failed.record.status, failed.record.error_code, failed.record.ended_at, failed.record.elapsed_minutes) == (
        "Error", "NoCapacity", world.clock.now, 0)
    again = await world.service.start(start_request(session_id="no-room"), "key-no-room")
    assert (again.status, world.emulator.requests["create"]) == ("Error", 1)


async def test_history_failing_around_a_stop_does_not_fail_the_stop(world: World) -> None:
    """ARR has acted: a stop whose history writes fail still answers with ARR's view."""
    await world.service.start(start_request(session_id="quiet"))
    world.advance(10)
    world.history.fail_next(-1)
    state = await world.service.stop("quiet", "done")
    world.history.heal()
    assert (state.status, world.arr_statuses()) == ("Stopped", {"quiet": "Stopped"})


async def test_history_down_before_a_start_fails_it_without_touching_arr(world: World) -> None:
    world.history.fail_next(1, only="claim")
    with pytest.raises(HistoryUnavailable):
        await world.service.start(start_request(session_id="never"))
    assert world.emulator.requests["create"] == 0



async def test_a_start_whose_history_write_meets_the_deadline_still_names_its_session(world: World) -> None:
    """Review finding: ARR answered the PUT at the end of the request's budget; the history write after it ran
    out of time and the answer was a 504 without the session, inviting a retry that starts a second one. Now
    ARR's answer wins: the start returns the session (the cleanup completes its record)."""
    from arr_core.errors import DeadlineExceeded

    async def budget_spent_at_arr() -> None:  # every history call after ARR's answer meets the spent budget
        world.history.fail_next(-1, DeadlineExceeded("the request's time budget is spent"))

    world.spy.on("PUT", "/sessions/late", budget_spent_at_arr)
    state = await world.service.start(start_request(session_id="late"))
    assert state.session_id == "late" and state.arr is not None
    assert world.arr_statuses() == {"late": "Starting"}


async def test_a_stopped_start_is_cancelled_and_a_keyed_retry_does_not_start_it(world: World) -> None:
    """Review finding: a stop of an intent ARR never had left it Requested, and a keyed retry drove it to ARR.
    Now the stop cancels it (Stopped, billed 0, a 'stopped' event) and a retry with the key starts nothing."""
    request = start_request()
    claim = await world.history.claim_key("key-c", key_fingerprint(request), "cancel-me")
    await world.history.claim(SessionRecord(session_id=claim.session_id, created_at=START, size="Standard",
                                            lease_minutes=30), Event("requested", START, to_status="Requested"))
    world.advance(60)
    stopped = await world.service.stop("cancel-me", "changed my mind", actor="alice")
    assert (stopped.record.status, stopped.record.elapsed_minutes, stopped.record.stop_reason) == \
        ("Stopped", 0, "changed my mind")
    again = await world.service.start(request, "key-c")
    assert again.status == "Stopped" and world.arr_statuses() == {}


async def test_arrs_list_is_reused_for_five_seconds_and_forgotten_by_this_processs_own_changes(world: World) -> None:
    """Dashboards and flows poll the list; ARR paces list calls. A start or stop here shows at once."""
    calls: list[int] = []

    async def count() -> None:
        calls.append(1)

    world.spy.on("GET", "/sessions", count)
    await world.service.start(StartSessionRequest(session_id="c1", lease_minutes=30))
    assert [s.session_id for s in (await world.service.list_active()).states] == ["c1"]
    world.start_at_arr("outside")  # not this process's change: seen once the reuse ends
    assert [s.session_id for s in (await world.service.list_active()).states] == ["c1"]
    assert len(calls) == 1
    world.advance(5)
    assert sorted(s.session_id for s in (await world.service.list_active()).states) == ["c1", "outside"]
    await world.service.stop("c1", "done")
    assert [s.session_id for s in (await world.service.list_active()).states] == ["outside"]
    assert len(calls) == 3


# -- the Idempotency-Key's fingerprint across a deploy ---------------------------------------------------------------

class StartSessionRequestNextDeploy(StartSessionRequest):
    """StartSessionRequest as a later version of the app may have it: one more optional field, unset by old callers."""

    priority: str | None = None


async def test_a_key_bound_before_a_deploy_that_adds_an_optional_field_still_matches(world: World) -> None:
    """Review finding: the fingerprint was a digest of ``request.model_dump()``, so any new optional field of
    StartSessionRequest changed the digest of every request: a retry with the same key spanning the deploy got a 409
    (IdempotencyKeyReused) for a request it had made before. Now a named set of fields is fingerprinted."""
    fields = {"session_id": "across", "size": "Premium", "labels": {"team": "viz"}, "keep_alive": True,
              "callback_url": "https://hooks.contoso.example/arr"}
    first = await world.service.start(start_request(**fields), "key-deploy")
    retried = await world.service.start(StartSessionRequestNextDeploy(**(BODY | fields)), "key-deploy")
    assert (retried.session_id, retried.status) == (first.session_id, "Starting")
    assert world.emulator.requests["create"] == 1


async def test_a_key_retried_with_another_size_after_such_a_deploy_is_still_refused(world: World) -> None:
    """The named set still tells a different start from a retry: another size is a 409, new field or not."""
    await world.service.start(start_request(session_id="sized"), "key-size")
    with pytest.raises(IdempotencyKeyReused):
        await world.service.start(StartSessionRequestNextDeploy(**(BODY | {"session_id": "sized", "size": "Premium"})),
                                  "key-size")
    assert world.emulator.requests["create"] == 1


# -- WaitUntilReady -------------------------------------------------------------------------------------------------

async def test_wait_until_ready_answers_while_it_may_be_ready_and_refuses_once_it_has_ended(world: World) -> None:
    from arr_core.errors import SessionEnded

    await world.service.start(start_request(session_id="waited"))
    assert (await world.service.wait_until_ready("waited")).status == "Starting"
    world.advance(10)
    assert (await world.service.wait_until_ready("waited")).status == "Ready"
    await world.service.stop("waited", "done")
    with pytest.raises(SessionEnded) as after:
        await world.service.wait_until_ready("waited")
    assert (after.value.session_status, after.value.error_code) == ("Stopped", None)
    assert "ended after it was Ready" in after.value.message

    world.emulator.capacity = 0
    await world.service.start(start_request(session_id="no-room-wait"))
    world.advance(10)
    with pytest.raises(SessionEnded) as before:
        await world.service.wait_until_ready("no-room-wait")
    assert (before.value.session_status, before.value.error_code) == ("Error", "NoCapacity")
    assert "ended before it was Ready" in before.value.message


# -- ARR's list, reused for five seconds, forgotten by every change at ARR -------------------------------------------

def test_every_call_that_changes_arr_goes_through_the_one_helper_that_forgets_the_list() -> None:
    """A new change at ARR cannot forget the list cache: every call of ArrClient that is not a read is wrapped in
    SessionService._changing, and every public method of ArrClient is known as a read or a change."""
    import ast
    import inspect

    from arr_core.arr.client import ArrClient
    from arr_core.services import sessions

    reads, changes = {"get_session", "list_sessions"}, {"create_session", "update_session", "stop_session"}
    public = {name for name, member in vars(ArrClient).items()
              if inspect.isfunction(member) and not name.startswith("_")} - {"aclose"}
    assert public == reads | changes, "a new ArrClient method: say here whether it changes ARR"
    tree = ast.parse(inspect.getsource(sessions.SessionService))
    wrapped = {id(node.args[0]) for node in ast.walk(tree) if isinstance(node, ast.Call)
               and isinstance(node.func, ast.Attribute) and node.func.attr == "_changing"}
    arr_calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Attribute)
                 and node.func.value.attr == "arr"]
    assert {call.func.attr for call in arr_calls} >= changes  # the check sees the calls it checks
    assert [call.func.attr for call in arr_calls if call.func.attr not in reads and id(call) not in wrapped] == []


async def test_a_list_asked_for_before_a_change_that_ended_meanwhile_is_not_reused(world: World) -> None:
    """A list whose answer left ARR before this process's stop, and arrived after it, must not be kept for five
    seconds: the caller who stopped a session would see it in the list again."""
    from collections.abc import AsyncIterator

    from arr_core.arr.models import RenderingSession
    from arr_core.services.sessions import SessionService

    class HeldArr:
        """ARR whose list answer is computed at once and delivered when the test says."""

        def __init__(self) -> None:
            self.release = asyncio.Event()
            self.lists = 0

        async def list_sessions(self) -> AsyncIterator[RenderingSession]:
            self.lists += 1
            before = [s async for s in world.arr.list_sessions()]
            await self.release.wait()
            for session in before:
                yield session

        async def stop_session(self, session_id: str) -> None:
            await world.arr.stop_session(session_id)

    await world.service.start(start_request(session_id="held"))
    held = HeldArr()
    service = SessionService(held, world.history, world.settings, clock=world.clock)  # type: ignore[arg-type]
    listing = asyncio.create_task(service.list_active())
    await asyncio.sleep(0.01)  # the list's answer is computed: "held" is Starting
    await service._changing(held.stop_session("held"))
    held.release.set()
    assert [s.session_id for s in (await listing).states] == ["held"]  # that caller asked before the stop
    assert [s.session_id for s in (await service.list_active()).states] == []  # ARR is asked again
    assert held.lists == 2
