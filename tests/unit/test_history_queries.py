"""HistoryQueries: what the HTTP layer asks about the past, answered from history (the store's rows stay behind it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from arr_core.api.views import StartSessionRequest
from arr_core.domain.records import Event
from arr_core.errors import SessionNotFound
from arr_core.services.queries import HistoryQueries

from .harness import START, World


def queries(world: World) -> HistoryQueries:
    return HistoryQueries(world.history, world.settings)


async def test_a_sessions_events_are_decoded_oldest_first(world: World) -> None:
    await world.service.start(StartSessionRequest(session_id="e1", lease_minutes=30, requested_by="flow"))
    world.advance(10)
    await world.service.read("e1")
    events = await queries(world).events("e1")
    assert [seq for seq, _ in events] == [1, 2, 3]
    assert all(isinstance(event, Event) for _, event in events)
    assert [(e.type, e.from_status, e.to_status, e.actor, e.at) for _, e in events] == [
        ("requested", None, "Requested", "flow", START), ("status", "Requested", "Starting", None, START),
        ("status", "Starting", "Ready", None, START + timedelta(seconds=10))]
    assert events[0][1].detail == {"size": "Standard", "leaseMinutes": 30, "reason": None}


async def test_a_session_history_does_not_know_has_no_events(world: World) -> None:
    world.start_at_arr("outside")  # ARR knows it; its events are history's, and history has none
    with pytest.raises(SessionNotFound, match="history knows no session outside"):
        await queries(world).events("outside")


async def test_pages_and_runs_come_from_history(world: World) -> None:
    for n in range(3):
        await world.service.start(StartSessionRequest(session_id=f"p{n}", lease_minutes=30))
        world.advance(1)
    start, end = START - timedelta(hours=1), START + timedelta(hours=1)
    first, token = await queries(world).history_page(start, end, top=2)
    assert [r.session_id for r in first] == ["p0", "p1"] and token is not None
    rest, last = await queries(world).history_page(start, end, top=2, token=token)
    assert ([r.session_id for r in rest], last) == (["p2"], None)

    report = await world.maintenance().run_cleanup()
    world.advance(1)
    [run] = await queries(world).runs(world.clock.now, 10)
    assert (run.ran_at, run.mode) == (report.ran_at, report.mode)
    assert await queries(world).runs(report.ran_at, 10) == []  # strictly before


async def test_usage_counts_billed_minutes_in_the_windows_local_days(make_world: Callable[..., World]) -> None:
    world = make_world(time_zone="Europe/Berlin", rate_standard_per_hour=3.0)
    await world.service.start(StartSessionRequest(session_id="u1", lease_minutes=60))
    world.advance(10)
    await world.service.read("u1")
    world.advance(30 * 60)
    await world.service.stop("u1", "done")
    report = await queries(world).usage(START - timedelta(hours=1), START + timedelta(hours=2), "day")
    assert [(row.key, row.sessions, row.billed_minutes) for row in report.rows] == [("2025-03-10", 1, 30)]
    assert report.total.estimated_cost == 1.5
