"""Schedules wired end to end in-process (issue 21): the store, the service's CRUD, and the tick on the memory harness
(the emulator on the world's fake clock): one session per occurrence across hosts and ticks, never on save, no
replay, fallbacks on NoCapacity and on a refused size, the lead from history, and the lead measured across DST."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from arr_core.api.views import ScheduleRequest, StartSessionRequest
from arr_core.domain.schedules import DEFAULT_STARTUP, LEASE_BUFFER, occurrence_on, zone
from arr_core.errors import HistoryUnavailable, InvalidInput, ScheduleNotFound
from arr_core.services.schedules import MARGIN, ScheduleService, session_id_for
from arr_core.services.sessions import SessionService
from arr_core.store.table import Query
from blueprints.schedules import tick_schedules

from .harness import ACCOUNT_ID, World

WORKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri"]
TICK = timedelta(minutes=5)  # the harness's ARR_CLEANUP_SCHEDULE default: every 5 minutes
DEFAULT_LEAD = DEFAULT_STARTUP["Standard"] + TICK + MARGIN  # 11 minutes while there are no samples
# The harness starts on Monday 10 March 2025, 09:00 UTC (10:00 in Amsterdam, UTC+1 before the DST switch). Ready by
# 11:00 Amsterdam = 10:00 UTC; created 11 minutes before, at 09:49; the first 5-minute timer run after that: 09:50.
READY = datetime(2025, 3, 10, 10, 0, tzinfo=UTC)
FIRST_RUN = datetime(2025, 3, 10, 9, 50, tzinfo=UTC)


def request(**fields: Any) -> ScheduleRequest:
    body = {"timeZone": "Europe/Amsterdam", "readyBy": "11:00", "durationMinutes": 60, "weekdays": WORKDAYS} | fields
    return ScheduleRequest.model_validate({k: v for k, v in body.items() if v is not None}, strict=True)


def host(world: World) -> ScheduleService:
    """One instance of the app: its own session service and lease holder, the world's history and clock."""
    sessions = SessionService(world.arr, world.history, world.settings, clock=world.clock)
    return ScheduleService(sessions, world.history, world.settings, clock=world.clock)


def at(world: World, instant: datetime) -> None:
    world.advance((instant - world.clock.now).total_seconds())


async def requested_events(world: World, session_id: str) -> list[dict[str, Any]]:
    return [e for e in await world.history.events(session_id) if e["Type"] == "requested"]


# -- the store and the CRUD ------------------------------------------------------------------------------------------

async def test_a_schedule_is_one_row_created_read_replaced_and_deleted(world: World) -> None:
    service = host(world)
    made = await service.create(request(monthly={"nth": -1, "weekday": "Fri"}, weekdays=None,
                                        exceptions=["2025-03-28"], fallbacks=["Premium"], labels={"team": "design"},
                                        requestedBy="ana"))
    [row] = await world.history.query(Query("schedule"))
    assert row["RowKey"] == made.id and row["Kind"] == "schedule" and row["Monthly"] == '{"nth":-1,"weekday":4}'
    assert row["Exceptions"] == '["2025-03-28"]' and row["Fallbacks"] == '["Premium"]'
    assert await service.get(made.id) == made and await service.list() == [made]
    assert made.describe() == "Standard Ready by 11:00 Europe/Amsterdam for 60 min, last Friday of the month"

    world.advance(60)
    replaced = await service.replace(made.id, request(readyBy="08:30", size="Premium"))
    assert (replaced.id, replaced.created_at) == (made.id, made.created_at)
    assert replaced.updated_at == world.clock.now and replaced.saved_at == world.clock.now
    assert (replaced.ready_by, replaced.size, replaced.weekdays, replaced.monthly) == (time(8, 30), "Premium",
                                                                                     frozenset(range(5)), None)
    assert replaced.fallbacks == () and replaced.labels == {}  # PUT: what the body leaves out is gone
    assert await service.get(made.id) == replaced

    assert await service.delete(made.id) == replaced
    for call in (service.get(made.id), service.delete(made.id), service.replace(made.id, request())):
        with pytest.raises(ScheduleNotFound):
            await call
    assert await world.history.query(Query("schedule")) == []


async def test_a_replace_is_conditional_on_the_version_it_read(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer changes the row between the replace's read and its write: the replace is made again on the
    new version; one that deleted it wins (a PUT never brings a deleted schedule back)."""
    service = host(world)
    made = await service.create(request())
    table = world.history.table
    original = table.replace
    race = ["replace"]  # what the other writer does, once, before the replace's next write
    writes: list[str | None] = []

    async def racing(entity: dict[str, Any], etag: str | None) -> str:
        if entity["PartitionKey"] == "schedule":
            writes.append(etag)
            if race == ["replace"]:
                await original({**entity, "RequestedBy": "someone else"}, None)
            elif race == ["delete"]:
                await table.delete("schedule", entity["RowKey"], None)
            race[:] = []
        return await original(entity, etag)

    monkeypatch.setattr(table, "replace", racing)
    replaced = await service.replace(made.id, request(readyBy="08:00"))
    assert len(writes) == 2 and writes[0] != writes[1]  # the first write lost (412): read again, written again
    assert replaced.ready_by == time(8, 0) and await service.get(made.id) == replaced
    race[:] = ["delete"]
    with pytest.raises(ScheduleNotFound):
        await service.replace(made.id, request(readyBy="07:00"))
    assert await world.history.query(Query("schedule")) == []


@pytest.mark.parametrize(("fields", "field"), [
    ({"monthly": {"nth": 1, "weekday": "Mon"}}, "monthly"),  # and weekdays
    ({"weekdays": None}, "weekdays"),  # neither
    ({"fallbacks": ["Standard"]}, "fallbacks"),  # the size itself (the default, Standard)
    ({"size": "Premium", "fallbacks": ["Standard", "Standard"]}, "fallbacks"),
    ({"durationMinutes": 470}, "durationMinutes"),  # + 15 > ARR_MAX_LEASE_MINUTES (480)
])
async def test_rules_across_fields_are_refused_naming_the_field(world: World, fields: dict[str, Any],
                                                                field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        await host(world).create(request(**fields))
    assert refused.value.field == field
    assert await world.history.query(Query("schedule")) == []


# -- the tick: one session per occurrence ------------------------------------------------------------------------------

async def test_two_hosts_and_repeated_ticks_start_one_session_for_the_occurrence(world: World) -> None:
    a, b = host(world), host(world)
    schedule = await a.create(request(requestedBy="ana", labels={"room": "4.1"}))
    expected = f"sched-{schedule.id.removeprefix('sch-')}-20250310"
    at(world, FIRST_RUN - timedelta(minutes=5))  # 09:45: not yet
    assert (await a.tick()).started == [] and world.arr_statuses() == {}
    at(world, FIRST_RUN)
    first = await a.tick()
    world.advance(60)
    second = await b.tick()
    again = await asyncio.gather(a.tick(), b.tick())

    assert [what.split(" ")[0] for _, what in first.started] == [expected]
    assert second.started == [] and [w.split(" ")[0] for _, w in second.already] == [expected]
    assert all(r.started == [] for r in again)
    assert world.arr_statuses() == {expected: "Ready"}  # 10 s after its start, 9 minutes before T
    [record] = await world.records()
    assert record.session_id == expected and record.requested_by == "ana" and record.keep_alive is True
    assert record.labels == {"room": "4.1", "schedule": schedule.id}
    assert record.lease_minutes == 60 + 11 + 15  # the duration, the lead, the buffer
    assert record.reason == f"schedule {schedule.id}: Ready by 11:00 Europe/Amsterdam on 2025-03-10"
    assert len(await requested_events(world, expected)) == 1
    assert world.clock.now < READY


async def test_ticks_that_overlap_past_the_lease_still_make_one_session(world: World,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The lease expired under a slow tick (or a host crashed and another retried): both hosts tick the same
    occurrence at once. The derived session id makes it one ARR session, one record, one 'requested' event."""
    hosts = [host(world) for _ in range(4)]
    schedule = await hosts[0].create(request())
    at(world, FIRST_RUN)

    async def always(*_: object) -> bool:
        return True

    monkeypatch.setattr(world.history, "take_lease", always)
    world.history.latency = 0.002  # every table call yields: the ticks interleave
    reports = await asyncio.gather(*(h.tick() for h in hosts))
    expected = f"sched-{schedule.id.removeprefix('sch-')}-20250310"
    assert session_id_for(occurrence_on(schedule, date(2025, 3, 10))) == expected
    assert world.arr_statuses() == {expected: "Starting"}
    assert [r.session_id for r in await world.records()] == [expected]
    assert len(await requested_events(world, expected)) == 1
    assert sum(len(r.started) + len(r.already) for r in reports) == 4 and all(r.errors == [] for r in reports)
    assert world.emulator.requests["create"] <= 4  # ARR's create is idempotent for the same id and settings


async def test_a_start_cut_short_is_driven_again_by_the_next_tick(world: World) -> None:
    """ARR fails the create (503, after the client's retries): the tick reports it and leaves the intent, which
    may or may not have reached ARR; the next tick (within the grace) drives the same session id."""
    service = host(world)
    await service.create(request())
    at(world, FIRST_RUN)
    world.fault("create", status=503)
    first = await service.tick()
    assert len(first.errors) == 1 and world.arr_statuses() == {}
    at(world, FIRST_RUN + TICK)
    second = await service.tick()
    [(_, what)] = second.started + second.already
    session_id = what.split(" ")[0]
    assert world.arr_statuses() == {session_id: "Starting"}
    assert [r.session_id for r in await world.records()] == [session_id]


# -- never on save, holidays, no replay ---------------------------------------------------------------------------------

async def test_a_schedule_saved_after_the_create_at_time_starts_nothing_today_and_runs_tomorrow(world: World) -> None:
    """Saved at 09:55 UTC (10:55 in Amsterdam), "Ready by 11:00" would have to be created at 09:49: never on
    save. Tomorrow's occurrence starts as planned."""
    service = host(world)
    at(world, FIRST_RUN + TICK)
    schedule = await service.create(request())
    [planned] = await service.plan([schedule])
    assert planned.next is not None and planned.next.local_date == date(2025, 3, 11)
    at(world, FIRST_RUN + 2 * TICK)
    today = await service.tick()
    assert today.started == [] and world.arr_statuses() == {}
    assert [(o, w.split(":")[0]) for o, w in today.skipped] == [(f"{schedule.id}.20250310", "skip-saved")]
    at(world, FIRST_RUN + timedelta(days=1))
    tomorrow = await service.tick()
    assert [w.split(" ")[0] for _, w in tomorrow.started] == [f"sched-{schedule.id[4:]}-20250311"]


async def test_an_update_moves_the_save_so_a_changed_time_does_not_fire_at_once(world: World) -> None:
    """A PUT at 09:45 UTC that moves Ready-by to 10:50 Amsterdam (create-at 09:39, past): nothing starts; the same
    schedule made at 09:00 would have started at the 09:45 run."""
    service = host(world)
    changed = await service.create(request())
    control = await service.create(request(readyBy="10:50"))
    at(world, FIRST_RUN - TICK)
    await service.replace(changed.id, request(readyBy="10:50"))
    report = await service.tick()
    started = {w.split(" ")[0] for _, w in report.started}
    assert started == {f"sched-{control.id[4:]}-20250310"}
    assert [(o, w.split(":")[0]) for o, w in report.skipped] == [(f"{changed.id}.20250310", "skip-saved")]


async def test_holidays_are_skipped_and_a_missed_occurrence_is_not_replayed_each_reported_once(world: World) -> None:
    service = host(world)
    holiday = await service.create(request(exceptions=["2025-03-10"]))
    at(world, FIRST_RUN - TICK)
    await service.tick()  # a run before: the marker the next runs look back to
    at(world, FIRST_RUN)
    first = await service.tick()
    assert [(o, w.split(":")[0]) for o, w in first.skipped] == [(f"{holiday.id}.20250310", "skip-holiday")]
    assert (await service.tick()).skipped == []  # reported once
    # The timer is down for a day: Tuesday's create-at time (09:49) passes unseen; the run at 10:30 is 41 minutes
    # late, more than the 30 minute grace.
    at(world, datetime(2025, 3, 11, 10, 30, tzinfo=UTC))
    late = await service.tick()
    assert late.started == [] and world.arr_statuses() == {}
    assert [(o, w.split(":")[0]) for o, w in late.skipped] == [(f"{holiday.id}.20250311", "skip-missed")]
    assert (await service.tick()).skipped == []


async def test_a_row_that_does_not_read_as_a_schedule_is_left_out_and_the_others_run(world: World) -> None:
    service = host(world)
    good = await service.create(request())
    await world.history.table.insert({"PartitionKey": "schedule", "RowKey": "sch-000000000000", "Kind": "schedule",
                                      "TimeZone": "Mars/Base", "ReadyBy": "09:00:00", "DurationMinutes": 60,
                                      "Size": "Standard", "CreatedAt": world.clock.now})
    assert await service.list() == [good]
    at(world, FIRST_RUN)
    assert [o for o, _ in (await service.tick()).started] == [f"{good.id}.20250310"]


async def test_a_tick_without_schedules_takes_no_lease(world: World) -> None:
    report = await host(world).tick()
    assert (report.started, report.busy, world.history.calls["take_lease"]) == ([], False, 0)


async def test_the_timer_logs_one_line_when_a_tick_starts_something(world: World,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    service = host(world)
    schedule = await service.create(request())
    context: Any = SimpleNamespace(schedules=service)
    at(world, FIRST_RUN)
    with caplog.at_level(logging.INFO, "arr_sessions.schedules"):
        await tick_schedules(context)
        world.advance(300)
        await tick_schedules(context)  # the occurrence has its session: nothing to say
    sid = schedule.id.removeprefix("sch-")
    line = (f"schedules: started 1, already 0, fell back 0, skipped 0, errors 0 ({schedule.id}.20250310 "
            f"sched-{sid}-20250310 (Standard): Starting)")
    assert [r.getMessage() for r in caplog.records] == [line]


async def test_a_failing_tick_is_logged_and_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    """What runs after the cleanup goes on: tick_schedules never raises."""
    async def failing() -> None:
        raise HistoryUnavailable("Table Storage did not answer (simulated)")

    async def broken() -> None:
        raise KeyError("a bug")

    with caplog.at_level(logging.WARNING, "arr_sessions.schedules"):
        await tick_schedules(SimpleNamespace(schedules=SimpleNamespace(tick=failing)))  # type: ignore[arg-type]
        await tick_schedules(SimpleNamespace(schedules=SimpleNamespace(tick=broken)))  # type: ignore[arg-type]
    assert [r.getMessage() for r in caplog.records] == [
        "schedules not ticked: Table Storage did not answer (simulated)", "schedules not ticked"]


# -- fallbacks ---------------------------------------------------------------------------------------------------------

async def test_no_capacity_falls_back_to_the_next_size_at_the_next_tick(world: World) -> None:
    """ARR takes the Standard session and ends it in Error NoCapacity (the emulator: capacity 1, held by another
    session). The next tick sees that and starts the Premium fallback under its own id; its 'requested' event says
    why. Later ticks find the occurrence served."""
    world.emulator.capacity = 1
    world.start_at_arr("someone-else")
    service = host(world)
    schedule = await service.create(request(fallbacks=["Premium"]))
    primary = f"sched-{schedule.id[4:]}-20250310"
    at(world, FIRST_RUN)
    first = await service.tick()
    assert [w.split(" ")[0] for _, w in first.started] == [primary]
    world.stop_at_arr("someone-else")
    world.advance(15)  # past the emulator's 10 s start: Error NoCapacity
    second = await service.tick()
    assert [w for _, w in second.fell_back] == [f"{primary}: NoCapacity"]
    assert [w.split(" ")[:2] for _, w in second.started] == [[f"{primary}-f1", "(Premium):"]]
    assert world.arr_statuses() == {"someone-else": "Stopped", primary: "Error", f"{primary}-f1": "Starting"}
    [event] = await requested_events(world, f"{primary}-f1")
    assert event["Detail"].endswith('"reason":"schedule ' + schedule.id + ': Ready by 11:00 Europe/Amsterdam on '
                                    '2025-03-10, a fallback after Standard NoCapacity","size":"Premium"}')
    world.advance(60)
    third = await service.tick()
    assert third.started == [] and [w.split(" ")[0] for _, w in third.already] == [f"{primary}-f1"]
    assert world.emulator.requests["create"] == 2


async def test_a_refused_size_falls_back_in_the_same_tick_and_is_not_asked_again(world: World) -> None:
    service = host(world)
    schedule = await service.create(request(fallbacks=["Premium"]))
    primary = f"sched-{schedule.id[4:]}-20250310"
    at(world, FIRST_RUN)
    world.fault("create", status=400)  # ARR refuses the first create: the size, as an account without it would
    first = await service.tick()
    assert [w.split(" (")[0] for _, w in first.fell_back] == [f"{primary}: refused"]
    assert [w.split(" ")[0] for _, w in first.started] == [f"{primary}-f1"]
    at(world, FIRST_RUN + TICK)
    second = await service.tick()
    assert [w.split(" ")[0] for _, w in second.already] == [f"{primary}-f1"]
    assert world.emulator.requests["create"] == 2  # the refused size was not asked again
    assert world.arr_statuses() == {f"{primary}-f1": "Ready"}


async def test_no_size_left_is_an_error_of_the_tick(world: World) -> None:
    world.emulator.capacity = 0
    service = host(world)
    schedule = await service.create(request(fallbacks=["Premium"]))
    at(world, FIRST_RUN)
    await service.tick()
    world.advance(15)
    await service.tick()  # the Premium fallback is started (and fails too)
    world.advance(15)
    report = await service.tick()
    assert report.errors == [(f"{schedule.id}.20250310", "no size left: Premium NoCapacity")]


# -- the lead ----------------------------------------------------------------------------------------------------------

async def observed_start(world: World, session_id: str, seconds: float, size: str = "Standard") -> None:
    """A session of ``size`` that ARR takes ``seconds`` to start, seen Ready the moment it is."""
    world.emulator.startup_seconds = seconds
    await world.service.start(StartSessionRequest(session_id=session_id, size=size, lease_minutes=30))
    world.advance(seconds)
    await world.service.read(session_id)


async def test_the_lead_is_the_p95_of_observed_starts_once_there_are_five(world: World) -> None:
    service = host(world)
    for n, seconds in enumerate([20, 30, 40, 50]):
        await observed_start(world, f"s{n}", seconds)
    await observed_start(world, "p0", 500, size="Premium")
    assert sorted(await service.samples("Standard")) == [20.0, 30.0, 40.0, 50.0]
    assert (await service.leads(["Standard"], fresh=True))["Standard"] == DEFAULT_LEAD  # 4 samples: the default
    await observed_start(world, "s4", 90)
    leads = await service.leads(["Standard", "Premium"], fresh=True)
    assert leads == {"Standard": timedelta(seconds=90) + TICK + MARGIN,  # the 5th of 5: the largest
                     "Premium": DEFAULT_STARTUP["Premium"] + TICK + MARGIN}
    schedule = await service.create(request())
    [planned] = await service.plan([schedule])
    assert planned.next is not None and planned.next.ready_by - planned.lead == planned.next.ready_by - leads["Standard"]

    # The tick creates at Ready-by minus that lead: Monday's 11:00 (10:00 UTC) at 09:53:30, so the 09:55 run.
    world.emulator.startup_seconds = 90
    at(world, datetime(2025, 3, 10, 9, 50, tzinfo=UTC))
    assert (await service.tick()).started == []
    at(world, datetime(2025, 3, 10, 9, 55, tzinfo=UTC))
    [(_, what)] = (await service.tick()).started
    assert what.startswith(f"sched-{schedule.id[4:]}-20250310 (Standard)")
    record = next(r for r in await world.records() if r.session_id.startswith("sched-"))
    assert record.lease_minutes == 60 + 8 + 15  # 6.5 minutes of lead, rounded up with the buffer


# -- measured: Ready before T, across DST ------------------------------------------------------------------------------

async def run_timer(service: ScheduleService, world: World, until: datetime) -> None:
    """The tick at every 5-minute timer run from now until ``until``."""
    while world.clock.now < until:
        step = TICK - timedelta(minutes=world.clock.now.minute % 5, seconds=world.clock.now.second)
        world.advance(step.total_seconds())
        await service.tick()


def ready_at(world: World, session_id: str) -> datetime:
    session = world.emulator.get(ACCOUNT_ID, session_id)
    assert session is not None, session_id
    return datetime.fromtimestamp(session.ready_at, UTC)


@pytest.mark.parametrize(("zone_name", "ready_by", "days", "startup"), [
    ("Europe/Amsterdam", "09:00", [date(2025, 3, 29), date(2025, 3, 30), date(2025, 3, 31)], 150),  # spring forward
    ("Europe/Amsterdam", "09:00", [date(2025, 10, 25), date(2025, 10, 26), date(2025, 10, 27)], 150),  # fall back
    ("America/New_York", "02:30", [date(2025, 3, 8), date(2025, 3, 9), date(2025, 3, 10)], 150),  # in the gap
    ("America/New_York", "01:30", [date(2025, 11, 1), date(2025, 11, 2), date(2025, 11, 3)], 150),  # twice
])
async def test_sessions_are_ready_before_t_across_dst(make_world: Any, zone_name: str, ready_by: str,
                                                      days: list[date], startup: float, capsys: Any) -> None:
    """Every day of a DST switch (and the days around it) the session is Ready before its Ready-by time, by the
    lead minus at most one timer interval and the start itself. The measured leads are printed."""
    world = make_world(start=datetime.combine(days[0], time(0), zone(zone_name)).astimezone(UTC)
                       - timedelta(minutes=7), startup_seconds=startup)
    service = host(world)
    schedule = await service.create(request(timeZone=zone_name, readyBy=ready_by,
                                            weekdays=["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]))
    measured = []
    for day in days:
        occurrence = occurrence_on(schedule, day)
        await run_timer(service, world, occurrence.ready_by + TICK)
        ready = ready_at(world, session_id_for(occurrence))
        lead = occurrence.ready_by - ready
        measured.append((day, occurrence.ready_by.astimezone(zone(zone_name)).strftime("%H:%M %Z"), lead))
        assert DEFAULT_LEAD - TICK - timedelta(seconds=startup) <= lead <= DEFAULT_LEAD - timedelta(seconds=startup)
    with capsys.disabled():
        print(f"\n{zone_name} Ready by {ready_by}, start {startup:g} s: " + "; ".join(
            f"{day} T={local} Ready {lead / timedelta(minutes=1):.1f} min early" for day, local, lead in measured))
    assert len(await world.records()) == len(days)


async def test_the_lease_covers_the_meeting_from_an_early_ready(world: World) -> None:
    """ARR counts the lease from Ready, which can come as early as the create-at time: the lease is the duration,
    the lead and the buffer, so the session lasts past the meeting's end."""
    service = host(world)
    schedule = await service.create(request(durationMinutes=90))
    at(world, FIRST_RUN)
    await service.tick()
    [record] = await world.records()
    ready = ready_at(world, record.session_id)
    assert ready + timedelta(minutes=record.lease_minutes or 0) >= READY + timedelta(minutes=90) + LEASE_BUFFER
    assert schedule.duration_minutes == 90
