"""Quotas of Ready-minutes (issue 22), on the fake clock: period boundaries in a time zone (DST included), used
minutes of ended and running sessions (one across the period's start too), top-ups in their own period, the refusal
that names the quota, starts and extends refused under the admission (20 concurrent starts at a quota allowing 3
give exactly 3), the row in history, and the cleanup that stops a scope whose quota is used up."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from arr_core.api.quotas import QuotaRequest, TopUpRequest
from arr_core.api.views import ExtendSessionRequest, StartSessionRequest
from arr_core.domain.cleanup import Action, Decision
from arr_core.domain.quotas import (
    MAX_TOP_UPS,
    QUOTA_REACHED,
    Quota,
    TopUp,
    admission,
    committed,
    period_bounds,
    quota_stops,
    usage,
    used_in,
)
from arr_core.domain.records import SessionRecord
from arr_core.domain.schedules import zone
from arr_core.errors import Conflict, QuotaExceeded, QuotaNotFound
from arr_core.services.maintenance import Maintenance
from arr_core.services.quotas import QUOTA_CACHE, QuotaService
from arr_core.services.sessions import SessionService
from arr_core.store import entities
from arr_core.store.entities import LEASE
from arr_core.store.table import Query

from .harness import World

BERLIN = zone("Europe/Berlin")
T0 = datetime(2025, 3, 12, 12, 0, tzinfo=UTC)  # a Wednesday; the Berlin week began Mon 2025-03-10 00:00 CET


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def quota(minutes: int = 180, *, period: str = "week", requested_by: str | None = "ana", **fields: Any) -> Quota:
    return Quota(id="quo-0123456789ab", minutes=minutes, period=period, time_zone="Europe/Berlin",  # type: ignore[arg-type]
                 created_at=utc(2025, 1, 1), requested_by=requested_by, **fields)


def record(session_id: str, *, ready: datetime | None, ended: datetime | None = None, lease: int = 60,
           requested_by: str | None = "ana", status: str | None = None, **fields: Any) -> SessionRecord:
    status = status or ("Stopped" if ended else "Ready" if ready else "Starting")
    return SessionRecord(session_id=session_id, created_at=(ready or T0) - timedelta(seconds=10), status=status,
                         lease_minutes=lease, requested_by=requested_by, ready_at=ready, ended_at=ended, **fields)


# -- periods ---------------------------------------------------------------------------------------------------------

def test_a_berlin_month_begins_at_local_midnight_in_winter_and_in_summer_time() -> None:
    assert period_bounds(utc(2025, 3, 15, 12), "month", BERLIN) == (utc(2025, 2, 28, 23), utc(2025, 3, 31, 22))
    assert period_bounds(utc(2025, 3, 31, 21, 59, 59), "month", BERLIN)[0] == utc(2025, 2, 28, 23)  # 23:59:59 CEST
    assert period_bounds(utc(2025, 3, 31, 22), "month", BERLIN) == (utc(2025, 3, 31, 22), utc(2025, 4, 30, 22))
    start, end = period_bounds(utc(2025, 3, 15), "month", BERLIN)
    assert end - start == timedelta(days=31) - timedelta(hours=1)  # the spring switch took an hour out of March


def test_a_week_is_monday_to_monday_local_and_one_hour_longer_across_the_october_switch() -> None:
    start, end = period_bounds(utc(2025, 10, 23, 12), "week", BERLIN)
    assert (start, end) == (utc(2025, 10, 19, 22), utc(2025, 10, 26, 23))  # Mon 00:00 CEST to Mon 00:00 CET
    assert end - start == timedelta(days=7, hours=1)
    assert period_bounds(utc(2025, 10, 26, 22, 59), "week", BERLIN)[1] == end  # Sun 23:59 CET: still that week
    assert period_bounds(utc(2025, 10, 26, 23), "week", BERLIN)[0] == end  # Mon 00:00 CET: the next one
    assert period_bounds(utc(2025, 3, 9, 23, 30), "week", BERLIN)[0] == utc(2025, 3, 9, 23)  # Sunday in UTC, Monday here


def test_a_month_that_begins_in_a_dst_gap_begins_at_the_switch() -> None:
    # America/Asuncion moved its clocks from 00:00 to 01:00 on 2023-10-01: that day began at the switch (04:00 UTC).
    start, _ = period_bounds(utc(2023, 10, 15), "month", zone("America/Asuncion"))
    assert start == utc(2023, 10, 1, 4)
    assert start.astimezone(zone("America/Asuncion")).strftime("%H:%M %z") == "01:00 -0300"


# -- used, committed, left -------------------------------------------------------------------------------------------

def test_a_running_session_counts_its_elapsed_minutes_rounded_up_and_commits_the_rest_of_its_lease() -> None:
    ready = T0 - timedelta(minutes=10, seconds=30)
    running = record("run", ready=ready, lease=60)
    starting = record("wait", ready=None, lease=45)
    found = usage(quota(), [running, starting], T0)
    assert (found.used, found.committed, found.left) == (11, 49 + 45, 180 - 11 - 94)
    assert found.sessions == ("run", "wait")
    late = T0 + timedelta(hours=2)  # its lease has run out at ARR; history has not seen it end yet
    assert (used_in(running, *quota().bounds(late), late), committed(running, late)) == (60, 0)


def test_a_session_across_the_periods_start_counts_its_minutes_inside_it_and_the_two_periods_add_up() -> None:
    start, _ = period_bounds(T0, "week", BERLIN)  # Mon 2025-03-10 00:00 CET = 2025-03-09 23:00 UTC
    ended = record("night", ready=start - timedelta(minutes=30, seconds=20), ended=start + timedelta(minutes=20),
                   lease=120)
    running = record("owl", ready=start - timedelta(minutes=5), lease=600)
    previous = period_bounds(start - timedelta(seconds=1), "week", BERLIN)
    assert used_in(ended, *previous, T0) == 31 and used_in(ended, start, start + timedelta(days=7), T0) == 20
    assert 31 + 20 == 51  # ARR bills the whole session ceil(50 min 20 s): the two periods add up to it
    found = usage(quota(), [ended, running], start + timedelta(minutes=30))
    assert found.used == 20 + 30  # the running one counts its 30 minutes since Monday 00:00, not the 5 before
    assert found.committed == 600 - 35  # the rest of its lease, from all it was billed


def test_top_ups_count_in_the_period_they_were_made_in_only() -> None:
    start, _ = period_bounds(T0, "week", BERLIN)
    topped = quota(100, top_ups=(TopUp(40, "boss", start - timedelta(hours=1), "last week's crunch"),
                                 TopUp(25, "boss", start + timedelta(hours=1), "demo"),
                                 TopUp(5, "boss", start + timedelta(hours=2))))
    assert usage(topped, [], T0).allowance == 130
    assert usage(topped, [], start + timedelta(days=7)).allowance == 100  # the next week starts from minutes again


def test_the_refusal_names_the_quota_what_is_used_committed_and_left() -> None:
    records = [record("a", ready=T0 - timedelta(minutes=30), lease=60), record("b", ready=None, lease=60)]
    assert admission(quota(), records, T0, 60) is None  # 30 used + 90 committed + 60 = 180 of 180
    refusal = admission(quota(), records, T0, 61)
    assert refusal == ("quota quo-0123456789ab (requestedBy ana: 180 minutes a week in Europe/Berlin, this week from "
                       "2025-03-10 00:00): 30 used, 90 committed, 60 left of 180; 61 more minutes do not fit")


def test_which_sessions_a_scope_holds() -> None:
    team = quota(requested_by=None, labels={"team": "a", "site": "x"})
    assert team.matches(record("1", ready=None, labels={"team": "a", "site": "x", "more": "y"}))
    assert not team.matches(record("2", ready=None, labels={"team": "a"}))  # all labels must match
    ana = quota()
    assert ana.matches(record("3", ready=None, requested_by="ana"))
    assert not ana.matches(record("4", ready=None, requested_by="pool:morning", labels={"pool": "morning"}))
    assert not ana.matches(record("5", ready=None, requested_by=None))  # adopted: no requester, counts for no one


def test_the_cleanup_stops_only_the_kept_running_sessions_of_a_reached_scope() -> None:
    over = usage(quota(10), [record("a", ready=T0 - timedelta(minutes=20))], T0)
    assert over.reached
    arr: Any = object()
    decisions = [Decision("a", Action.KEEP, "within policy", arr, record("a", ready=T0 - timedelta(minutes=20))),
                 Decision("b", Action.KEEP, "within policy", arr, record("b", ready=T0, requested_by="bo")),
                 Decision("c", Action.KEEP, "start in progress", None, record("c", ready=None)),
                 Decision("d", Action.STOP, "nightly shutdown", arr, record("d", ready=T0))]
    out, events = quota_stops(decisions, [over], T0)
    assert [(d.session_id, d.action) for d in out] == [("a", Action.STOP), ("b", Action.KEEP), ("c", Action.KEEP),
                                                        ("d", Action.STOP)]
    assert out[0].reason == "quota quo-0123456789ab reached: 20 of 10 minutes used this week (requestedBy ana)"
    assert out[3].reason == "nightly shutdown"
    assert list(events) == ["a"] and events["a"].type == QUOTA_REACHED and events["a"].detail["quota"] == over.quota.id


# -- the service: starts, extends, top-ups, the cleanup ---------------------------------------------------------------

def quota_world(make_world: Any, **settings: Any) -> tuple[World, QuotaService, SessionService]:
    world: World = make_world(**settings)
    quotas = QuotaService(world.history, clock=world.clock)
    return world, quotas, SessionService(world.arr, world.history, world.settings, clock=world.clock, quotas=quotas)


def start(session_id: str, requester: str | None = "ana", lease: int = 60, **fields: Any) -> StartSessionRequest:
    return StartSessionRequest(session_id=session_id, lease_minutes=lease, requested_by=requester, **fields)


async def test_a_start_past_the_quota_is_refused_naming_the_quota_and_leaseminutes(make_world: Any) -> None:
    world, quotas, sessions = quota_world(make_world)
    made = await quotas.add(QuotaRequest(minutes=100, period="week", time_zone="Europe/Berlin", requested_by="ana"))
    await sessions.start(start("a1"))
    with pytest.raises(QuotaExceeded) as refused:
        await sessions.start(start("a2"))
    assert refused.value.field == "leaseMinutes"
    assert str(refused.value).startswith(f"quota {made.id} (requestedBy ana: 100 minutes a week in Europe/Berlin")
    assert ": 0 used, 60 committed, 40 left of 100; 60 more minutes do not fit" in str(refused.value)
    await sessions.start(start("a1"))  # a repeat of the admitted start is no new start
    await sessions.start(start("a3", lease=40))  # what is left fits
    await sessions.start(start("b1", "bo"))  # another requester's scope
    assert sorted(world.arr_statuses()) == ["a1", "a3", "b1"]


async def test_an_extend_that_grows_past_the_quota_is_refused_and_changes_nothing(make_world: Any) -> None:
    world, quotas, sessions = quota_world(make_world)
    await quotas.add(QuotaRequest(minutes=100, period="month", requested_by="ana"))
    await sessions.start(start("a1"))
    world.advance(11)
    await sessions.read("a1")  # Ready, seen
    world.advance(10 * 60)
    extended = await sessions.extend("a1", ExtendSessionRequest(extend_by_minutes=30, requested_by="ana"))
    assert extended.arr is not None and extended.arr.lease_minutes == 90  # 10 used + 50 committed + 30: fits
    with pytest.raises(QuotaExceeded) as refused:
        await sessions.extend("a1", ExtendSessionRequest(extend_by_minutes=11, keep_alive=True))
    assert refused.value.field == "extendByMinutes" and "10 used, 80 committed, 10 left of 100" in str(refused.value)
    with pytest.raises(QuotaExceeded) as refused:
        await sessions.extend("a1", ExtendSessionRequest(lease_minutes=120))
    assert refused.value.field == "leaseMinutes"
    again = await sessions.read("a1")
    assert again.arr is not None and again.arr.lease_minutes == 90 and again.record is not None
    assert again.record.keep_alive is False  # refused before anything was done
    await sessions.extend("a1", ExtendSessionRequest(lease_minutes=100))  # exactly what is left


async def test_twenty_concurrent_starts_at_a_quota_allowing_three_admit_exactly_three(make_world: Any) -> None:
    world, quotas, sessions = quota_world(make_world)
    made = await quotas.add(QuotaRequest(minutes=180, period="week", time_zone="Europe/Berlin", requested_by="ana"))
    results = await asyncio.gather(*(sessions.start(start(f"s{i:02d}")) for i in range(20)), return_exceptions=True)
    admitted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert (len(admitted), len(refused)) == (3, 17), results
    assert all(f"quota {made.id} " in str(r) and "0 used, 180 committed, 0 left of 180" in str(r) for r in refused)
    assert len(world.arr_statuses()) == 3 and len(await world.records()) == 3
    assert [e["RowKey"] for e in await world.history.query(Query(LEASE))] == []  # the admission was released


async def test_without_a_quota_for_the_scope_no_admission_is_taken(make_world: Any) -> None:
    world, quotas, sessions = quota_world(make_world)
    await quotas.add(QuotaRequest(minutes=10, period="week", requested_by="someone-else"))
    taken = world.history.calls["take_lease"]
    await sessions.start(start("free"))
    assert world.history.calls["take_lease"] == taken


async def test_top_ups_raise_this_periods_allowance_and_two_at_once_both_count(make_world: Any) -> None:
    world, quotas, sessions = quota_world(make_world)
    made = await quotas.add(QuotaRequest(minutes=60, period="week", time_zone="Europe/Berlin", requested_by="ana"))
    await sessions.start(start("a1"))
    with pytest.raises(QuotaExceeded):
        await sessions.start(start("a2", lease=30))
    await asyncio.gather(quotas.top_up(made.id, TopUpRequest(minutes=20, requested_by="boss", reason="demo")),
                         quotas.top_up(made.id, TopUpRequest(minutes=10, requested_by="lead")))
    (view,) = await quotas.views()
    assert (view.allowance, view.committed, view.left, len(view.top_ups)) == (90, 60, 30, 2)
    await sessions.start(start("a2", lease=30))
    world.advance(7 * 24 * 3600)  # next week: the top-ups no longer count
    (view,) = await quotas.views()
    assert (view.allowance, view.period_start.isoformat()) == (60, "2025-03-17T00:00:00+01:00")
    with pytest.raises(QuotaNotFound):
        await quotas.top_up("quo-ffffffffffff", TopUpRequest(minutes=1, requested_by="boss"))


async def test_a_quota_made_on_another_host_is_applied_within_the_cache_time(make_world: Any) -> None:
    world, _, sessions = quota_world(make_world)
    await sessions.start(start("a1"))  # the list (empty) is read and kept
    other_host = QuotaService(world.history, clock=world.clock)
    await other_host.add(QuotaRequest(minutes=60, period="week", requested_by="ana"))
    world.advance(QUOTA_CACHE.total_seconds() - 1)
    await sessions.start(start("a2"))  # this process has not read the list again yet
    world.advance(1)
    with pytest.raises(QuotaExceeded, match="0 used, 120 committed, 0 left of 60"):
        await sessions.start(start("a3"))
    removed = await other_host.remove((await other_host.quotas())[0].id)
    with pytest.raises(QuotaNotFound):
        await other_host.remove(removed.id)


async def test_a_quotas_row_keeps_a_hundred_long_top_ups_and_makes_room_from_past_periods(make_world: Any) -> None:
    world, quotas, _ = quota_world(make_world)
    made = await quotas.add(QuotaRequest(minutes=60, period="week", labels={"team": "a"}, reason="team a"))
    text = "é" * 256  # 256 characters each, non-ASCII: a hundred pass one string property's 32K
    stored = replace(made, top_ups=tuple(TopUp(1, text, world.clock.now - timedelta(days=8), text)
                                         for _ in range(MAX_TOP_UPS - 1)))
    row = entities.quota_to_entity(stored)
    assert len(row["TopUps0"]) == entities.TOP_UPS_CHUNK and "TopUps3" in row  # cut into columns
    assert entities.quota_from_entity(row) == stored
    await world.history.update_quota(made.id, lambda _: stored)
    await quotas.top_up(made.id, TopUpRequest(minutes=5, requested_by=text, reason=text))  # the 100th
    topped = await quotas.top_up(made.id, TopUpRequest(minutes=5, requested_by="boss"))  # past ones make room
    assert [t.by for t in topped.top_ups] == [text, "boss"]
    full = replace(topped, top_ups=tuple(TopUp(1, "x", world.clock.now) for _ in range(MAX_TOP_UPS)))
    await world.history.update_quota(made.id, lambda _: full)
    with pytest.raises(Conflict, match="has 100 top-ups this week already"):
        await quotas.top_up(made.id, TopUpRequest(minutes=5, requested_by="boss"))
    (again,) = await world.history.quotas()
    assert again == full and again.labels == {"team": "a"} and again.reason == "team a"


async def test_the_cleanup_stops_the_running_sessions_of_a_scope_whose_quota_was_lowered_below_use(
        make_world: Any) -> None:
    world, quotas, sessions = quota_world(make_world)
    await quotas.add(QuotaRequest(minutes=500, period="month", time_zone="Europe/Berlin", requested_by="ana"))
    for session_id, requester in [("a1", "ana"), ("a2", "ana"), ("b1", "bo")]:
        await sessions.start(start(session_id, requester))
    world.advance(11)
    for session_id in ("a1", "a2", "b1"):
        await sessions.read(session_id)
    world.advance(5 * 60)
    cleanup = Maintenance(sessions, history=world.history, settings=world.settings, clock=world.clock, quotas=quotas)
    report = await cleanup.run_cleanup()
    assert report.stopped == []  # 10 used, 110 committed of 500
    lowered = await quotas.add(QuotaRequest(minutes=8, period="week", requested_by="ana", reason="lowered"))
    dry = await cleanup.run_cleanup(dry_run=True)
    assert sorted(a.id for a in dry.stopped) == ["a1", "a2"] and world.arr_statuses()["a1"] == "Ready"
    report = await cleanup.run_cleanup()
    reason = f"quota {lowered.id} reached: 10 of 8 minutes used this week (requestedBy ana)"
    assert sorted((a.id, a.reason) for a in report.stopped) == [("a1", reason), ("a2", reason)]
    assert world.arr_statuses() == {"a1": "Stopped", "a2": "Stopped", "b1": "Ready"}
    types = [t for _, t, _, _ in await world.event_types("a1")]
    assert types.index(QUOTA_REACHED) < types.index("stopped") and types.count(QUOTA_REACHED) == 1
    (stopped,) = [r for r in await world.records() if r.session_id == "a2"]
    assert (stopped.stop_reason, stopped.stopped_by) == (reason, "cleanup")
    assert (await cleanup.run_cleanup()).stopped == []  # nothing of the scope runs any more


async def test_two_extends_at_the_last_minutes_cannot_both_pass(make_world: Any) -> None:
    world, quotas, sessions = quota_world(make_world)
    await quotas.add(QuotaRequest(minutes=100, period="week", requested_by="ana"))
    await sessions.start(start("a1"))
    world.advance(11)
    await sessions.read("a1")
    results = await asyncio.gather(*(sessions.extend("a1", ExtendSessionRequest(extend_by_minutes=30))
                                     for _ in range(2)), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["QuotaExceeded", "SessionState"], results
    assert world.emulator.get("00000000-0000-0000-0000-0000000000a1", "a1").lease_minutes == 90  # type: ignore[union-attr]
