"""The cleanup run (Maintenance) over MemoryHistory and the in-process emulator: adoption, the lease between
instances, the nightly shutdown and its marker, and the time budget."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, datetime, timezone

import pytest

from arr_core.api.views import ExtendSessionRequest, StartSessionRequest
from arr_core.domain.records import Event, SessionRecord
from arr_core.errors import CleanupRunning

from .harness import World

EVENING = datetime(2025, 3, 10, 20, 0, tzinfo=timezone.utc)  # 21:00 in Amsterdam (CET, before the DST switch)
NIGHTLY = {"nightly_shutdown_at": "22:00", "time_zone": "Europe/Amsterdam"}
NIGHT = date(2025, 3, 10)
NIGHTLY_REASON = "nightly shutdown (22:00 Europe/Amsterdam)"


def start_request(session_id: str, **fields: object) -> StartSessionRequest:
    return StartSessionRequest(session_id=session_id, lease_minutes=120, requested_by="alice",
                               **fields)  # type: ignore[arg-type]


def actions(items: list) -> list[tuple[str, str]]:
    return sorted((a.id, a.reason) for a in items)


async def test_sessions_started_outside_are_adopted_once(world: World) -> None:
    world.start_at_arr("outside-1")
    world.start_at_arr("outside-2")
    report = await world.maintenance().run_cleanup()
    assert report.errors == [] and report.stopped == []
    assert actions(report.reconciled) == [("outside-1", "adopted into history"), ("outside-2", "adopted into history")]
    assert actions(report.kept) == [("outside-1", "within policy"), ("outside-2", "within policy")]
    record = await world.history.get("outside-1")
    assert record is not None
    assert (record.status, record.keep_alive, record.reason, record.size, record.lease_minutes) == (
        "Starting", False, "adopted: started outside this app", "Standard", 60)
    assert await world.event_types("outside-1") == [(1, "adopted", None, "Requested"),
                                                    (2, "status", "Requested", "Starting")]

    world.advance(10)
    again = await world.maintenance().run_cleanup()
    assert actions(again.reconciled) == [("outside-1", "history updated from ARR: Starting -> Ready"),
                                         ("outside-2", "history updated from ARR: Starting -> Ready")]
    assert [r.session_id for r in await world.records()] == ["outside-1", "outside-2"]
    assert [t for _, t, _, _ in await world.event_types("outside-1")] == ["adopted", "status", "status"]
    assert len(world.history.reports) == 2


async def test_a_second_cleanup_while_the_first_holds_the_lease_is_refused(world: World) -> None:
    """Two instances: while the first run is in the middle of its work (held at ARR's list), the second raises
    CleanupRunning and does nothing; the first adopts the unknown session once."""
    world.start_at_arr("outside")
    listing, release = asyncio.Event(), asyncio.Event()

    async def hold_the_list() -> None:
        listing.set()
        await release.wait()

    world.spy.on("GET", "/sessions", hold_the_list)
    first, second = world.maintenance(), world.maintenance()
    running = asyncio.create_task(first.run_cleanup())
    await listing.wait()
    world.spy.hooks.clear()
    with pytest.raises(CleanupRunning) as other_instance:
        await second.run_cleanup()
    with pytest.raises(CleanupRunning) as same_instance:
        await first.run_cleanup()
    assert other_instance.value.code == same_instance.value.code == "CleanupRunning"
    assert world.emulator.requests["list"] == 0  # the refused runs asked ARR nothing (the first is held)
    release.set()
    report = await running
    assert world.emulator.requests["list"] == 1
    assert actions(report.reconciled) == [("outside", "adopted into history")]
    assert await world.event_types("outside") == [(1, "adopted", None, "Requested"),
                                                  (2, "status", "Requested", "Starting")]
    after = await second.run_cleanup()  # the lease was released
    assert after.reconciled == [] and after.errors == []


async def test_a_cleanup_during_a_start_in_progress_keeps_it_without_error(world: World) -> None:
    """A start's intent is written and ARR does not list the session yet (its PUT is on its way, or was cut short
    less than 10 minutes ago): the cleanup keeps it as "start in progress", and that is no error."""
    await world.history.claim(SessionRecord(session_id="young", created_at=world.clock.now, size="Standard",
                                            lease_minutes=30),
                              Event("requested", world.clock.now, to_status="Requested"))
    world.advance(60)
    report = await world.maintenance().run_cleanup()
    assert report.errors == []
    assert actions(report.kept) == [("young", "start in progress")]


async def test_a_dry_run_decides_and_writes_nothing(make_world: Callable[..., World]) -> None:
    world = make_world(start=EVENING, **NIGHTLY)
    await world.service.start(start_request("plain"))
    world.start_at_arr("outside", lease_minutes=120)
    world.advance(3600 + 30)
    report = await world.maintenance().run_cleanup(dry_run=True)
    assert (report.dry_run, report.mode) == (True, "nightly")
    assert actions(report.stopped) == [("outside", NIGHTLY_REASON), ("plain", NIGHTLY_REASON)]
    assert actions(report.reconciled) == [("outside", "would adopt into history")]
    assert world.arr_statuses() == {"plain": "Ready", "outside": "Ready"}
    assert [r.session_id for r in await world.records()] == ["plain"]
    assert (world.history.calls["take_lease"], world.history.calls["mark_night"], world.history.reports) == (0, 0, [])


async def test_a_dead_holders_lease_frees_the_cleanup_when_it_runs_out(world: World) -> None:
    assert await world.history.take_lease("cleanup", "a-host-that-died", 120) is True
    with pytest.raises(CleanupRunning):
        await world.maintenance().run_cleanup()
    world.advance(120)
    report = await world.maintenance().run_cleanup()
    assert report.errors == []


async def test_nightly_shutdown_keeps_keep_alive_and_unknown_and_stops_the_rest(
        make_world: Callable[..., World]) -> None:
    world = make_world(start=EVENING, **NIGHTLY)
    await world.service.start(start_request("lost-keep", keep_alive=True))  # its record is lost below
    world.advance(60)
    world.history.lose_table()
    world.advance(1)
    await world.service.start(start_request("keep", keep_alive=True))
    await world.service.start(start_request("plain"))
    world.start_at_arr("outside-after-the-loss")
    world.advance(3600 - 61 + 30)  # 21:00:30 UTC = 22:00:30 in Amsterdam

    report = await world.maintenance().run_cleanup()
    assert (report.mode, report.errors, report.deferred) == ("nightly", [], [])
    assert actions(report.stopped) == [("outside-after-the-loss", NIGHTLY_REASON), ("plain", NIGHTLY_REASON)]
    assert actions(report.kept) == [("keep", "keepAlive"),
                                    ("lost-keep", "keepAlive unknown (its history was lost): left to its lease")]
    assert actions(report.reconciled) == [("keep", "history updated from ARR: Starting -> Ready"),
                                          ("lost-keep", "adopted into history"),
                                          ("outside-after-the-loss", "adopted into history")]
    assert world.arr_statuses() == {"lost-keep": "Ready", "keep": "Ready", "plain": "Stopped",
                                    "outside-after-the-loss": "Stopped"}
    lost = await world.history.get("lost-keep")
    assert lost is not None and (lost.keep_alive, lost.reason) == (None, "adopted: history was lost")
    plain = await world.history.get("plain")
    assert plain is not None and (plain.status, plain.stop_reason, plain.stopped_by) == (
        "Stopped", NIGHTLY_REASON, "nightly")
    assert await world.history.nights_done([NIGHT]) == {NIGHT}
    assert world.history.calls["mark_night"] == 1

    world.advance(300)
    later = await world.maintenance().run_cleanup()
    assert (later.mode, later.stopped, later.errors) == ("lease", [], [])
    assert actions(later.kept) == [("keep", "within policy"), ("lost-keep", "within policy")]
    assert world.history.calls["mark_night"] == 1  # once per night


async def test_keep_alive_changed_after_the_start_decides_the_next_nightly_shutdown(
        make_world: Callable[..., World]) -> None:
    """A session started without keepAlive and kept alive later is kept by the next nightly run; one started with
    keepAlive and released later is stopped by it."""
    world = make_world(start=EVENING, **NIGHTLY)
    await world.service.start(start_request("saved"))
    await world.service.start(start_request("released", keep_alive=True))
    world.advance(10)
    await world.service.extend("saved", ExtendSessionRequest(keep_alive=True, requested_by="ana", reason="demo"))
    await world.service.extend("released", ExtendSessionRequest(keep_alive=False, requested_by="ana"))
    world.advance(3600 + 30 - 10)  # 22:00:30 in Amsterdam

    report = await world.maintenance().run_cleanup()
    assert (report.mode, report.errors) == ("nightly", [])
    assert actions(report.stopped) == [("released", NIGHTLY_REASON)]
    assert actions(report.kept) == [("saved", "keepAlive")]
    assert world.arr_statuses() == {"saved": "Ready", "released": "Stopped"}


async def test_the_next_nightly_shutdown_is_said_in_the_zone_with_its_name(make_world: Callable[..., World]) -> None:
    """What ListSessions answers as nightlyShutdown: null without a nightly time, else the next one with the
    zone's offset (after tonight's has passed: tomorrow's) and the zone's name."""
    assert make_world(start=EVENING).maintenance().next_nightly_shutdown() is None
    world = make_world(start=EVENING, **NIGHTLY)
    shown = world.maintenance().next_nightly_shutdown()
    assert shown is not None and shown.model_dump(mode="json", by_alias=True) == {
        "nextAt": "2025-03-10T22:00:00+01:00", "timeZone": "Europe/Amsterdam"}
    world.advance(3600 + 1)
    later = world.maintenance().next_nightly_shutdown()
    assert later is not None and later.model_dump(mode="json", by_alias=True)["nextAt"] == "2025-03-11T22:00:00+01:00"
    utc = make_world(start=EVENING, nightly_shutdown_at="22:00").maintenance().next_nightly_shutdown()
    assert utc is not None and utc.model_dump(mode="json", by_alias=True) == {
        "nextAt": "2025-03-10T22:00:00+00:00", "timeZone": "UTC"}


async def test_work_past_the_budget_is_deferred_and_the_night_is_not_marked(
        make_world: Callable[..., World]) -> None:
    """Each stop takes 0.25 s at ARR and one runs at a time: a 0.4 s budget stops one session and defers the
    other two to the next run; the night is marked only by the run that finishes it."""
    world = make_world(start=EVENING, stop_concurrency=1, **NIGHTLY)
    for name in ("n1", "n2", "n3"):
        await world.service.start(start_request(name))
    world.advance(3600 + 30)
    world.fault("stop", latency_ms=250, count=-1)

    report = await world.maintenance().run_cleanup(budget_seconds=0.4)
    assert report.mode == "nightly" and report.errors == []
    assert actions(report.stopped) == [("n1", NIGHTLY_REASON)]
    assert actions(report.deferred) == [("n2", "stop: out of time, left to the next run"),
                                        ("n3", "stop: out of time, left to the next run")]
    assert world.arr_statuses() == {"n1": "Stopped", "n2": "Ready", "n3": "Ready"}
    assert await world.history.nights_done([NIGHT]) == set()

    world.emulator.faults.clear()
    world.advance(60)
    rest = await world.maintenance().run_cleanup()
    assert (rest.mode, rest.errors, rest.deferred) == ("nightly", [], [])
    assert sorted(a.id for a in rest.stopped) == ["n2", "n3"]
    assert world.arr_statuses() == {"n1": "Stopped", "n2": "Stopped", "n3": "Stopped"}
    assert await world.history.nights_done([NIGHT]) == {NIGHT}
    assert world.history.calls["mark_night"] == 1


async def test_table_time_counts_against_the_budget(make_world: Callable[..., World]) -> None:
    """With every table call taking 0.1 s, the run's own reads (lease, records, nights) spend a 0.25 s budget:
    it acts on nothing and defers everything, instead of running over."""
    world = make_world(stop_concurrency=1)
    for name in ("a", "b", "c"):
        world.start_at_arr(name)
    world.history.latency = 0.1
    report = await world.maintenance().run_cleanup(budget_seconds=0.25)
    world.history.latency = 0.0
    assert (report.stopped, report.kept, report.reconciled, report.errors) == ([], [], [], [])
    assert actions(report.deferred) == [(name, "keep: out of time, left to the next run") for name in "abc"]
    assert await world.records() == []


async def test_the_cleanups_own_stop_notes_its_reason_before_asking_arr(make_world: Callable[..., World]) -> None:
    """Every stop, the cleanup's included, notes its reason before ARR receives :stop: a host killed between the
    two leaves the reason in history, and the next run finishes the stop with it (one single-entity write)."""
    world = make_world(start=EVENING, **NIGHTLY)
    await world.service.start(start_request("plain"))
    world.advance(3600 + 30)
    seen_by_arr: list[str | None] = []

    async def look() -> None:
        record = await world.history.get("plain")
        seen_by_arr.append(record.stop_reason if record else "no record")

    world.spy.on("POST", "/sessions/plain/:stop", look)
    report = await world.maintenance().run_cleanup()
    assert actions(report.stopped) == [("plain", NIGHTLY_REASON)]
    assert seen_by_arr == [NIGHTLY_REASON]


async def test_an_http_cleanup_reports_within_the_request_budget_and_acts_no_more(
        make_world: Callable[..., World]) -> None:
    """Review finding: with a request budget shorter than the cleanup's, the request was cancelled (504, no
    report) while its stop tasks ran on after the answer. Now the run's budget is capped by what the request
    has left, the answer is a report with 'deferred', and nothing is stopped after it."""
    from arr_core import deadline

    world = make_world(stop_concurrency=1)
    for i in range(4):
        world.start_at_arr(f"s{i}")
    world.advance(60)

    async def slow_stop() -> None:
        await asyncio.sleep(0.3)

    for i in range(4):
        world.spy.on("POST", f"/sessions/s{i}/:stop", slow_stop)
    async with deadline.budget(15.5):  # leaves 0.5 s after the bookkeeping reserve
        report = await world.maintenance().run_cleanup(mode="nightly", budget_seconds=60)
    assert report.stopped and report.deferred
    stopped_then = dict(world.arr_statuses())
    await asyncio.sleep(0.7)
    assert world.arr_statuses() == stopped_then
