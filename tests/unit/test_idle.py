"""Idle stop (issue 22): heartbeats coalesced to one Table write a minute per session, and the cleanup's idle rule on
the fake clock: a session with no heartbeat after Ready, or none since its last, is warned first and then stopped;
a heartbeat that comes after the run decided withdraws the stop; nothing of it is on by default."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from arr_core.api.views import StartSessionRequest, WarningSubscriptionRequest
from arr_core.arr.models import RenderingSession, SessionStatus
from arr_core.domain.cleanup import CleanupPolicy
from arr_core.domain.idle import (
    QUIET,
    WRITE_EVERY,
    heard_since,
    heartbeat,
    idle_deadline,
    session_deadline,
)
from arr_core.domain.records import SessionRecord
from arr_core.domain.warnings import StopKind, next_stop
from arr_core.errors import SessionEnded, SessionNotFound
from arr_core.services.heartbeats import Heartbeats
from arr_core.services.maintenance import Maintenance
from arr_core.store import entities

from .harness import START, World
from .test_notifier import HOOK, Receiver, drain, links, notifier_for

READY = START + timedelta(seconds=10)  # the harness's emulator makes a session Ready 10 s after its start
WRITES = ("insert", "replace", "transact", "delete")


def table_writes(world: World) -> int:
    return sum(world.history.table.calls[name] for name in WRITES)


def ready_session(elapsed: int = 0, session_id: str = "s1") -> RenderingSession:
    return RenderingSession(id=session_id, status=SessionStatus.READY, size="Standard", maxLeaseTimeMinutes=120,
                            elapsedTimeMinutes=elapsed, creationTime=START)


def record(**fields: Any) -> SessionRecord:
    return SessionRecord(**{"session_id": "s1", "created_at": START, "status": "Ready", "ready_at": READY, **fields})


POLICY = CleanupPolicy(idle_after_ready_minutes=10, idle_minutes=15)


# -- the rules, pure ---------------------------------------------------------------------------------------------

def test_a_heartbeat_is_recorded_forward_only_with_one_event_for_the_first() -> None:
    first = heartbeat(record(), READY, "unity")
    assert first is not None
    beaten, events = first
    assert beaten.last_heartbeat == READY
    assert [(e.type, e.actor, e.detail) for e in events] == [("heartbeat", "unity", {"first": True, "client": "unity"})]
    later = heartbeat(beaten, READY + timedelta(seconds=60))
    assert later is not None and later[1] == [] and later[0].last_heartbeat == READY + timedelta(seconds=60)
    assert heartbeat(beaten, READY) is None  # another host recorded this one, or a later one: nothing to write
    with pytest.raises(SessionEnded) as ended:
        heartbeat(record(status="Stopped"), READY)
    assert ended.value.session_status == "Stopped"
    with pytest.raises(SessionEnded, match="being stopped"):
        heartbeat(record(stop_reason="done"), READY)


def test_the_idle_deadline_counts_from_ready_or_from_the_recorded_heartbeat_plus_its_minute() -> None:
    never = idle_deadline("s1", None, READY, POLICY)
    assert never is not None and never.at == READY + timedelta(minutes=10) and never.stop_id == "s1.warn.idle.ready.10"
    beat = READY + timedelta(minutes=3)
    since = idle_deadline("s1", beat, READY, POLICY)
    # A later heartbeat may have come up to WRITE_EVERY after the recorded one without being written.
    assert since is not None and since.at == beat + WRITE_EVERY + timedelta(minutes=15)
    assert since.stop_id == f"s1.warn.idle.{beat:%Y%m%dT%H%M%S%f}.15"
    assert since.reason(since.at) == "idle: no heartbeat for 15 minutes"
    assert never.reason(never.at + timedelta(minutes=4)) == "idle: no heartbeat for 14 minutes since Ready"
    early = idle_deadline("s1", READY - timedelta(minutes=5), READY, POLICY)  # while it was starting: from Ready
    assert early is not None and early.at == READY + timedelta(minutes=15)
    assert idle_deadline("s1", None, None, POLICY) is None  # not Ready: no idle clock yet
    assert idle_deadline("s1", beat, READY, CleanupPolicy(idle_after_ready_minutes=10)) is None  # that limit off
    assert idle_deadline("s1", None, READY, CleanupPolicy(idle_minutes=15)) is None
    assert not since.quiet(beat + QUIET - timedelta(seconds=1)) and since.quiet(beat + QUIET)


def test_keep_alive_does_not_exempt_an_unclaimed_pool_session_is_exempt() -> None:
    now = READY + timedelta(minutes=30)
    assert session_deadline(ready_session(30), record(keep_alive=True), now, POLICY) is not None
    pool = record(labels={"pool": "morning"}, requested_by="pool:morning")
    assert session_deadline(ready_session(30), pool, now, POLICY) is None
    claimed = replace(pool, requested_by="ana")
    assert session_deadline(ready_session(30), claimed, now, POLICY) is not None
    assert session_deadline(ready_session(30), record(stop_reason="done"), now, POLICY) is None
    # Ready unknown to history: ARR's elapsed minutes back from now, as for the other stops of a Ready session.
    unknown = session_deadline(ready_session(7), record(ready_at=None), now, POLICY)
    assert unknown is not None and unknown.at == now - timedelta(minutes=7) + timedelta(minutes=10)


def test_no_idle_stop_is_ahead_while_heartbeats_come() -> None:
    beat = READY + timedelta(minutes=20)
    lively = record(last_heartbeat=beat)
    ahead = next_stop(ready_session(21), lively, beat + timedelta(seconds=60), POLICY, [])
    assert ahead is not None and ahead.kind is StopKind.LEASE_END  # its lease's end, two hours on: no idle stop
    quiet = next_stop(ready_session(22), lively, beat + QUIET, POLICY, [])
    assert quiet is not None and (quiet.kind, quiet.at) == (StopKind.IDLE, beat + WRITE_EVERY + timedelta(minutes=15))
    assert not quiet.postponable and not quiet.keepable_tonight


def test_a_heartbeat_recorded_after_the_decision_withdraws_the_stop() -> None:
    decided = record(last_heartbeat=READY)
    withdraw = heard_since(decided)
    assert withdraw(decided) is None
    assert "after the idle stop was decided" in (withdraw(record(last_heartbeat=READY + timedelta(minutes=20))) or "")
    assert heard_since(record())(record(last_heartbeat=READY)) is not None  # the first heartbeat, too


def test_the_last_heartbeat_is_a_column_of_the_record() -> None:
    stored = record(last_heartbeat=READY)
    entity = entities.record_to_entity(stored)
    assert entity["LastHeartbeat"] == READY
    assert entities.record_from_entity(entity).last_heartbeat == READY
    assert "LastHeartbeat" not in entities.record_to_entity(record())


# -- heartbeats through the service --------------------------------------------------------------------------------

async def ready_world(make_world: Any, *ids: str, **settings: Any) -> World:
    world = make_world(**settings)
    for session_id in ids:
        await world.service.start(StartSessionRequest(session_id=session_id, lease_minutes=120))
    world.advance(10)
    for session_id in ids:
        await world.service.read(session_id)  # history sees it Ready
    return world


async def test_heartbeats_every_30_s_cost_one_table_write_a_minute_per_session(make_world: Any) -> None:
    world = await ready_world(make_world, "a", "b", idle_minutes=15)
    beats = Heartbeats(world.history, world.settings, clock=world.clock)
    writes, reads = table_writes(world), world.history.table.calls["get"]
    answers = []
    for _ in range(20):  # ten minutes
        for session_id in ("a", "b"):
            answers.append(await beats.beat(session_id, client="unity"))
        world.advance(30)
    assert table_writes(world) - writes == 20  # 2 sessions x 10 minutes, one write a minute each
    assert world.history.table.calls["get"] == reads  # the store wrote them last: no read before a write
    assert [a.written for a in answers[:6]] == [True, True, False, False, True, True]
    first, coalesced = answers[0], answers[2]
    assert coalesced.recorded_at == first.at == READY and coalesced.at == READY + timedelta(seconds=30)
    assert coalesced.next_at == coalesced.at + timedelta(seconds=30)
    assert coalesced.idle_stop_at == READY + WRITE_EVERY + timedelta(minutes=15)
    for session_id in ("a", "b"):  # history does not grow with heartbeats: one event, the first
        assert [e["Actor"] for e in await world.history.events(session_id) if e["Type"] == "heartbeat"] == ["unity"]
        stored = await world.history.get(session_id)
        assert stored is not None and stored.last_heartbeat == READY + timedelta(minutes=9)


async def test_concurrent_heartbeats_of_one_session_write_once(make_world: Any) -> None:
    import asyncio

    world = await ready_world(make_world, "a")
    beats = Heartbeats(world.history, world.settings, clock=world.clock)
    writes = table_writes(world)
    answers = await asyncio.gather(*(beats.beat("a") for _ in range(5)))
    assert table_writes(world) - writes == 1 and sum(a.written for a in answers) == 1
    assert {a.idle_stop_at for a in answers} == {None}  # idle stop is off by default


async def test_an_unknown_or_ended_session_is_refused(make_world: Any) -> None:
    world = await ready_world(make_world, "a")
    beats = Heartbeats(world.history, world.settings, clock=world.clock)
    with pytest.raises(SessionNotFound):
        await beats.beat("nobody")
    await beats.beat("a")
    await world.service.stop("a", "done")
    assert not (await beats.beat("a")).written  # within the minute: from memory, as documented
    world.advance(61)
    with pytest.raises(SessionEnded) as ended:
        await beats.beat("a")
    assert ended.value.session_status == "Stopped"


# -- the idle rule in the cleanup ----------------------------------------------------------------------------------

async def idle_world(make_world: Any, *ids: str, **settings: Any) -> tuple[World, Maintenance, Heartbeats, Any]:
    """Sessions Ready at READY, warning subscribers, and the cleanup with a notifier (a 5-minute timer)."""
    world = await ready_world(make_world, *ids, **{"stop_warning_minutes": 5, "idle_after_ready_minutes": 10,
                                                   "idle_minutes": 15, **settings})
    receiver = Receiver()
    notifier, queues = notifier_for(world, receiver)
    await notifier.subscribe(WarningSubscriptionRequest(notification_url=HOOK))
    maintenance = Maintenance(world.service, notifier, history=world.history, settings=world.settings,
                              clock=world.clock)
    beats = Heartbeats(world.history, world.settings, clock=world.clock)

    async def run() -> Any:
        report = await maintenance.run_cleanup(links=links)
        await drain(notifier, queues)
        return report

    world.run = run  # type: ignore[attr-defined]
    world.receiver = receiver  # type: ignore[attr-defined]
    return world, maintenance, beats, run


async def timeline(world: World, run: Callable[[], Awaitable[Any]], minutes: int,
                   beat: Callable[[float], Awaitable[None]]) -> dict[str, list[tuple[float, str, str]]]:
    """Every 30 s for ``minutes`` after READY: ``beat(minutes since Ready)``; the cleanup every 5 minutes. What
    each run warned and stopped, by minute."""
    seen: dict[str, list[tuple[float, str, str]]] = {"warned": [], "stopped": []}
    for step in range(1, minutes * 2 + 1):
        world.advance(30)
        at = step / 2
        await beat(at)
        if step % 10 == 0:
            report = await run()
            seen["warned"] += [(at, a.id, a.reason) for a in report.warned]
            seen["stopped"] += [(at, a.id, a.reason) for a in report.stopped]
    return seen


async def test_no_heartbeat_after_ready_is_warned_then_stopped_a_heartbeating_session_is_not(make_world: Any) -> None:
    world, _maintenance, beats, run = await idle_world(make_world, "quiet", "busy")

    async def busy(_: float) -> None:
        await beats.beat("busy", client="hololens")

    seen = await timeline(world, run, 30, busy)
    assert [(at, sid) for at, sid, _ in seen["warned"]] == [(5.0, "quiet")]  # 5 minutes ahead of Ready + 10
    assert seen["stopped"] == [(10.0, "quiet", "idle: no heartbeat for 10 minutes since Ready")]
    (warning,) = [g for g in world.receiver.got if g.get("eventType") == "StopWarning"]  # type: ignore[attr-defined]
    assert (warning["kind"], warning["eventId"], warning["minutesAhead"]) == ("idle", "quiet.warn.idle.ready.10", 5)
    assert warning["stopAt"].startswith((READY + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S"))
    assert "heartbeat" in warning["reason"] and warning["actions"] == {"postpone": None, "keepTonight": None}
    quiet = await world.history.get("quiet")
    assert quiet is not None and (quiet.status, quiet.stopped_by) == ("Stopped", "cleanup")
    types = [e["Type"] for e in await world.history.events("quiet")]
    assert types.index("stop-warned") < types.index("stopped")
    assert world.arr_statuses() == {"quiet": "Stopped", "busy": "Ready"}


async def test_no_heartbeat_since_the_last_one_is_warned_then_stopped(make_world: Any) -> None:
    world, _maintenance, beats, run = await idle_world(make_world, "gone")

    async def until_minute_3(at: float) -> None:
        if at < 3:
            await beats.beat("gone")

    seen = await timeline(world, run, 30, until_minute_3)
    # Recorded at 0.5, 1.5 and 2.5 (1 and 2 from memory): stopped from 2.5 + 1 + 15 = 18.5 minutes on, at the
    # 20-minute run; warned at the first run that saw that within 5 + 5 minutes, the client gone quiet.
    assert [(at, sid) for at, sid, _ in seen["warned"]] == [(10.0, "gone")]
    assert seen["stopped"] == [(20.0, "gone", "idle: no heartbeat for 16 minutes")]
    (warning,) = [g for g in world.receiver.got if g.get("eventType") == "StopWarning"]  # type: ignore[attr-defined]
    assert warning["kind"] == "idle" and warning["minutesAhead"] == 8
    stored = await world.history.get("gone")
    assert stored is not None and stored.last_heartbeat == READY + timedelta(minutes=2.5)


async def test_a_session_found_idle_past_its_time_is_warned_first_and_stopped_at_the_next_run(
        make_world: Any) -> None:
    world, maintenance, _beats, run = await idle_world(make_world, "late")
    world.advance(30 * 60)  # the timer missed every run since Ready
    dry = await maintenance.run_cleanup(dry_run=True)
    assert [a.id for a in dry.warned] == ["late"] and dry.stopped == []
    first = await run()
    assert first.stopped == [] and [a.id for a in first.warned] == ["late"]
    assert any(a.id == "late" and "warned now, stopped at a later run" in a.reason for a in first.kept)
    (warning,) = [g for g in world.receiver.got if g.get("eventType") == "StopWarning"]  # type: ignore[attr-defined]
    assert warning["minutesAhead"] == 5  # the next run, at most one timer interval on
    world.advance(60)
    second = await run()
    assert [(a.id, a.reason) for a in second.stopped] == [("late", "idle: no heartbeat for 31 minutes since Ready")]
    # Without a way to warn (no notifier), an idle session is stopped at once.
    plain = await ready_world(make_world, "x", idle_after_ready_minutes=10)
    plain.advance(30 * 60)
    report = await plain.maintenance().run_cleanup()
    assert [a.id for a in report.stopped] == ["x"]


async def test_a_heartbeat_after_the_run_decided_withdraws_the_stop(make_world: Any) -> None:
    world, _maintenance, beats, run = await idle_world(make_world, "s")
    world.advance(5 * 60)
    assert [a.id for a in (await run()).warned] == ["s"]
    world.advance(5 * 60)  # idle now: the run decides to stop it
    original = world.history.update
    late: list[Any] = []

    async def heartbeat_first(session_id: str, mutate: Any, current: Any = None) -> Any:
        if session_id == "s" and not late:  # the stop's conditional write: a client's heartbeat gets there first
            late.append("under way")  # (its own write comes through here too)
            late[0] = await beats.beat("s", client="late")
        return await original(session_id, mutate, current)

    world.history.update = heartbeat_first  # type: ignore[method-assign]
    report = await run()
    world.history.update = original  # type: ignore[method-assign]
    assert late and late[0].written
    assert report.stopped == []
    assert next(a.reason for a in report.kept if a.id == "s").startswith("a heartbeat came at ")
    assert world.arr_statuses() == {"s": "Ready"}
    stored = await world.history.get("s")
    assert stored is not None and stored.stop_reason is None and stored.last_heartbeat == late[0].at
    assert "stopped" not in [e["Type"] for e in await world.history.events("s")]
    world.advance(5 * 60)
    assert (await run()).stopped == []  # the heartbeat moved the idle stop 16 minutes on


async def test_idle_stop_is_off_by_default(make_world: Any) -> None:
    world = await ready_world(make_world, "s")
    receiver = Receiver()
    notifier, queues = notifier_for(world, receiver)
    await notifier.subscribe(WarningSubscriptionRequest(notification_url=HOOK))
    maintenance = Maintenance(world.service, notifier, history=world.history, settings=world.settings,
                              clock=world.clock)
    for _ in range(12):  # an hour without a heartbeat
        world.advance(300)
        report = await maintenance.run_cleanup(links=links)
        assert report.stopped == [] and not [a for a in report.warned if "heartbeat" in a.reason]
        await drain(notifier, queues)
    assert not [g for g in receiver.got if g.get("kind") == "idle"]
    assert world.arr_statuses() == {"s": "Ready"}
    beats = Heartbeats(world.history, world.settings, clock=world.clock)
    assert (await beats.beat("s")).idle_stop_at is None
