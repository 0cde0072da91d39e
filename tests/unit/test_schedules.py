"""Schedules (issue 21, a session Ready when the meeting starts): the pure rules, with fake ``now`` values.

Which days, the Ready-by instant across DST, the monthly rules, holidays, never on save, no replay, the lead and the
time-zone database (the tzdata package, never the host's).
"""

from __future__ import annotations

import math
import re
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from arr_core.domain.schedules import (
    DEFAULT_STARTUP,
    LEASE_BUFFER,
    MAX_EXCEPTIONS,
    SCHEDULE_ID,
    TZ_DATABASE,
    Monthly,
    Occurrence,
    Schedule,
    ScheduleAction,
    create_at,
    decide,
    due_occurrences,
    lease_minutes,
    new_schedule_id,
    next_occurrence,
    occurrences,
    p95,
    startup_lead,
    zone,
)

SID = "sch-0123456789ab"
LEAD = timedelta(minutes=15)
GRACE = timedelta(minutes=30)
MON, TUE, WED, THU, FRI = range(5)
WORKDAYS = {MON, TUE, WED, THU, FRI}


def at(zone_name: str, *args: int) -> datetime:
    """A local wall time (fold=0) in ``zone_name``, as a UTC instant."""
    return datetime(*args, tzinfo=zone(zone_name)).astimezone(UTC)


def berlin(*args: int) -> datetime:
    return at("Europe/Berlin", *args)


def schedule(**overrides: Any) -> Schedule:
    """Weekdays at 09:00 in Berlin for an hour, saved long before the dates the tests look at."""
    fields: dict[str, Any] = {
        "id": SID, "time_zone": "Europe/Berlin", "ready_by": time(9, 0), "duration_minutes": 60,
        "size": "Standard", "created_at": datetime(2026, 1, 1, tzinfo=UTC), "weekdays": WORKDAYS}
    if "monthly" in overrides:
        fields["weekdays"] = frozenset()
    return Schedule(**(fields | overrides))


def local_dates(found: list[Occurrence]) -> list[date]:
    return [o.local_date for o in found]


def actions(decisions: list) -> list[tuple[str, ScheduleAction]]:
    return [(d.occurrence.id, d.action) for d in decisions]


# -- which days --------------------------------------------------------------------------------------------------------

def test_weekdays_across_a_week() -> None:
    """Monday, Wednesday and Friday of the week of 2 March 2026 (a Monday), at 09:00 CET = 08:00 UTC."""
    mwf = schedule(weekdays={MON, WED, FRI})
    found = occurrences(mwf, berlin(2026, 3, 2, 0, 0), berlin(2026, 3, 9, 0, 0))
    assert local_dates(found) == [date(2026, 3, 2), date(2026, 3, 4), date(2026, 3, 6)]
    assert [o.ready_by for o in found] == [datetime(2026, 3, d, 8, 0, tzinfo=UTC) for d in (2, 4, 6)]
    assert all(o.ends_at - o.ready_by == timedelta(minutes=60) for o in found)


def test_the_window_excludes_after_and_includes_until() -> None:
    """``after < ready_by <= until``: a timer window (previous run, now] sees each occurrence once."""
    nine = berlin(2026, 3, 2, 9, 0)
    assert occurrences(schedule(), nine, nine + timedelta(hours=1)) == []
    assert local_dates(occurrences(schedule(), nine - timedelta(hours=1), nine)) == [date(2026, 3, 2)]


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        occurrences(schedule(), datetime(2026, 3, 2), datetime(2026, 3, 9))


@pytest.mark.parametrize(("zone_name", "day", "wall", "utc", "local"), [
    # Berlin: spring forward on 29 March 2026 (02:00 CET -> 03:00 CEST), fall back on 25 October (03:00 -> 02:00)
    ("Europe/Berlin", date(2026, 3, 28), time(9, 0), datetime(2026, 3, 28, 8, 0, tzinfo=UTC), time(9, 0)),
    ("Europe/Berlin", date(2026, 3, 29), time(9, 0), datetime(2026, 3, 29, 7, 0, tzinfo=UTC), time(9, 0)),
    ("Europe/Berlin", date(2026, 3, 29), time(2, 30), datetime(2026, 3, 29, 1, 30, tzinfo=UTC), time(3, 30)),
    ("Europe/Berlin", date(2026, 10, 25), time(2, 30), datetime(2026, 10, 25, 0, 30, tzinfo=UTC), time(2, 30)),
    ("Europe/Berlin", date(2026, 10, 25), time(9, 0), datetime(2026, 10, 25, 8, 0, tzinfo=UTC), time(9, 0)),
    # New York: spring forward on 8 March 2026 (02:00 EST -> 03:00 EDT), fall back on 1 November (02:00 -> 01:00)
    ("America/New_York", date(2026, 3, 8), time(2, 30), datetime(2026, 3, 8, 7, 30, tzinfo=UTC), time(3, 30)),
    ("America/New_York", date(2026, 3, 9), time(9, 0), datetime(2026, 3, 9, 13, 0, tzinfo=UTC), time(9, 0)),
    ("America/New_York", date(2026, 11, 1), time(1, 30), datetime(2026, 11, 1, 5, 30, tzinfo=UTC), time(1, 30)),
    ("America/New_York", date(2026, 11, 2), time(9, 0), datetime(2026, 11, 2, 14, 0, tzinfo=UTC), time(9, 0)),
])
def test_ready_by_is_the_local_wall_time_across_dst(zone_name: str, day: date, wall: time, utc: datetime,
                                                     local: time) -> None:
    """The same wall time in winter and summer; a time in the spring gap moves later by the gap (02:30 -> 03:30);
    a time that happens twice in the autumn is the first of the two (01:30 EDT, not 01:30 EST an hour later)."""
    every_day = schedule(time_zone=zone_name, ready_by=wall, weekdays=set(range(7)))
    [found] = occurrences(every_day, datetime.combine(day, time(0), zone(zone_name)) - timedelta(hours=1),
                          datetime.combine(day, time(23, 59), zone(zone_name)))
    assert found.local_date == day
    assert found.ready_by == utc
    assert found.ready_by.astimezone(zone(zone_name)).time() == local


def test_the_first_of_two_ambiguous_times_is_before_the_second() -> None:
    """Fall back in Berlin: 02:30 happens at 00:30 and 01:30 UTC; the schedule takes the earlier (fold=0)."""
    [found] = occurrences(schedule(ready_by=time(2, 30), weekdays={6}), berlin(2026, 10, 24, 12, 0),
                          berlin(2026, 10, 25, 12, 0))
    second = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=zone("Europe/Berlin")).astimezone(UTC)
    assert found.ready_by == second - timedelta(hours=1)


def test_a_meeting_across_fall_back_lasts_its_duration() -> None:
    """The duration is elapsed time: 01:00 EDT for 3 hours in New York on 1 November 2026 ends at 03:00 EST."""
    [found] = occurrences(schedule(time_zone="America/New_York", ready_by=time(1, 0), duration_minutes=180,
                                   weekdays={6}),
                          at("America/New_York", 2026, 10, 31, 12, 0), at("America/New_York", 2026, 11, 1, 12, 0))
    assert found.ends_at - found.ready_by == timedelta(hours=3)
    assert found.ends_at.astimezone(zone("America/New_York")).time() == time(3, 0)


@pytest.mark.parametrize(("rule", "expected"), [
    (Monthly(2, TUE), [date(2026, 1, 13), date(2026, 2, 10), date(2026, 3, 10), date(2026, 4, 14),
                       date(2026, 5, 12), date(2026, 6, 9), date(2026, 7, 14)]),
    # July 2026 has five Fridays: the 4th is the 24th, not the last (31st).
    (Monthly(4, FRI), [date(2026, 1, 23), date(2026, 2, 27), date(2026, 3, 27), date(2026, 4, 24),
                       date(2026, 5, 22), date(2026, 6, 26), date(2026, 7, 24)]),
    (Monthly(-1, FRI), [date(2026, 1, 30), date(2026, 2, 27), date(2026, 3, 27), date(2026, 4, 24),
                        date(2026, 5, 29), date(2026, 6, 26), date(2026, 7, 31)]),
])
def test_nth_and_last_weekday_of_the_month(rule: Monthly, expected: list[date]) -> None:
    found = occurrences(schedule(monthly=rule), berlin(2026, 1, 1, 0, 0), berlin(2026, 7, 31, 23, 0))
    assert local_dates(found) == expected


@pytest.mark.parametrize(("rule", "year", "month", "expected"), [
    (Monthly(-1, FRI), 2028, 2, date(2028, 2, 25)),  # leap February: the 29th is a Tuesday
    (Monthly(-1, TUE), 2028, 2, date(2028, 2, 29)),  # ... so the last Tuesday is the leap day itself
    (Monthly(-1, MON), 2026, 8, date(2026, 8, 31)),  # a 31-day month whose last day is a Monday
    (Monthly(-1, MON), 2026, 3, date(2026, 3, 30)),  # a 31-day month ending on a Tuesday
    (Monthly(-1, THU), 2026, 12, date(2026, 12, 31)),  # December: the month after is in the next year
])
def test_last_weekday_of_the_month(rule: Monthly, year: int, month: int, expected: date) -> None:
    assert rule.in_month(year, month) == expected
    assert schedule(monthly=rule).matches(expected)
    assert not schedule(monthly=rule).matches(expected - timedelta(days=7))


def test_exception_dates_skip_and_a_disabled_schedule_has_nothing() -> None:
    """A holiday removes that day only; a disabled schedule lists and schedules nothing."""
    holiday = schedule(exceptions={date(2026, 3, 4)})
    week = (berlin(2026, 3, 2, 0, 0), berlin(2026, 3, 7, 0, 0))
    assert local_dates(occurrences(holiday, *week)) == [date(2026, 3, d) for d in (2, 3, 5, 6)]
    assert next_occurrence(holiday, berlin(2026, 3, 3, 10, 0)).local_date == date(2026, 3, 5)
    off = schedule(enabled=False)
    assert occurrences(off, *week) == []
    assert next_occurrence(off, week[0]) is None
    assert decide(off, berlin(2026, 3, 2, 8, 50), lead=LEAD, grace=GRACE) == []


# -- occurrence ids ----------------------------------------------------------------------------------------------------

def test_occurrence_ids_are_deterministic_and_one_per_local_day() -> None:
    week = (berlin(2026, 3, 2, 0, 0), berlin(2026, 3, 9, 0, 0))
    first, again = occurrences(schedule(), *week), occurrences(schedule(), *week)
    assert [o.id for o in first] == [o.id for o in again]
    assert len({o.id for o in first}) == 5
    assert first[0].id == "sch-0123456789ab.20260302"
    assert all(re.fullmatch(r"sch-[0-9a-f]{12}\.\d{8}", o.id) for o in first)


def test_the_id_has_the_local_date_not_the_utc_date() -> None:
    """08:00 in Tokyo on Tuesday 3 March 2026 is 23:00 UTC on Monday: the id says the 3rd."""
    tokyo = schedule(time_zone="Asia/Tokyo", ready_by=time(8, 0), weekdays={TUE})
    [found] = occurrences(tokyo, datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC))
    assert found.ready_by == datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
    assert found.id == f"{SID}.20260303"


# -- never on save, no replay ------------------------------------------------------------------------------------------

def test_saving_just_before_the_meeting_starts_nothing_today_and_tomorrow_runs() -> None:
    """Saved at 08:55 to be Ready by 09:00 with a 15 minute lead: today's create-at (08:45) is before the save, so
    no run starts it (reported once, by the first run after the save); tomorrow's starts at 08:45."""
    saved = schedule(created_at=berlin(2026, 3, 2, 8, 55))
    first = decide(saved, berlin(2026, 3, 2, 8, 56), lead=LEAD, grace=GRACE, previous_tick=berlin(2026, 3, 2, 8, 51))
    assert actions(first) == [(f"{SID}.20260302", ScheduleAction.SKIP_SAVED)]
    assert "never fires on save" in first[0].reason
    ticks = [berlin(2026, 3, 2, 8, 56) + timedelta(minutes=5 * i) for i in range(40)]
    later = [decide(saved, now, lead=LEAD, grace=GRACE, previous_tick=now - timedelta(minutes=5)) for now in ticks[1:]]
    assert later == [[]] * len(later)
    assert next_occurrence(saved, berlin(2026, 3, 2, 8, 56), lead=LEAD).local_date == date(2026, 3, 3)
    tomorrow = decide(saved, berlin(2026, 3, 3, 8, 45), lead=LEAD, grace=GRACE,
                      previous_tick=berlin(2026, 3, 3, 8, 40))
    assert actions(tomorrow) == [(f"{SID}.20260303", ScheduleAction.START)]


def test_a_create_at_time_equal_to_the_save_is_not_due() -> None:
    """The rule is ``create_at <= saved_at`` -> never started: the very instant of the save counts as before."""
    saved = schedule(created_at=berlin(2026, 3, 2, 8, 45))
    [decision] = decide(saved, berlin(2026, 3, 2, 8, 46), lead=LEAD, grace=GRACE)
    assert decision.action is ScheduleAction.SKIP_SAVED
    just_before = schedule(created_at=berlin(2026, 3, 2, 8, 44, 59))
    assert actions(decide(just_before, berlin(2026, 3, 2, 8, 46), lead=LEAD, grace=GRACE)) == [
        (f"{SID}.20260302", ScheduleAction.START)]


def test_an_update_counts_as_a_save_but_is_not_a_new_schedule() -> None:
    """Changed at 08:50, after today's 08:45 create-at time: not started again by the changed schedule, and not
    reported as skipped either (the run at 08:45 judged it by the schedule as it was then)."""
    changed = schedule(updated_at=berlin(2026, 3, 2, 8, 50))
    assert decide(changed, berlin(2026, 3, 2, 8, 51), lead=LEAD, grace=GRACE,
                  previous_tick=berlin(2026, 3, 2, 8, 46)) == []
    assert changed.saved_at == berlin(2026, 3, 2, 8, 50)


def test_a_start_is_decided_at_every_run_within_the_grace_then_no_more() -> None:
    """Runs every 5 minutes from the create-at time (08:45): each says START for the same occurrence id (a failed
    start is retried; the id makes a second start a no-op); once past the grace, nothing."""
    runs = [berlin(2026, 3, 2, 8, 45) + timedelta(minutes=5 * i) for i in range(8)]  # 08:45 ... 09:20
    decided = [actions(decide(schedule(), now, lead=LEAD, grace=GRACE, previous_tick=now - timedelta(minutes=5)))
               for now in runs]
    assert decided[:7] == [[(f"{SID}.20260302", ScheduleAction.START)]] * 7  # 08:45 ... 09:15 = 08:45 + grace
    assert decided[7] == []
    assert decide(schedule(), berlin(2026, 3, 2, 8, 44, 59), lead=LEAD, grace=GRACE) == []


def test_a_timer_down_beyond_the_grace_replays_nothing() -> None:
    """The timer last ran at 06:00 and runs again at 09:30: the 08:45 create-at time is 45 minutes old, beyond the
    30 minute grace, so the occurrence is reported once as missed and never started."""
    now = berlin(2026, 3, 2, 9, 30)
    [missed] = decide(schedule(), now, lead=LEAD, grace=GRACE, previous_tick=berlin(2026, 3, 2, 6, 0))
    assert missed.action is ScheduleAction.SKIP_MISSED
    assert missed.reason == "missed: its create-at time 08:45 was 45 min ago, more than the 30 min grace (no replay)"
    assert decide(schedule(), now + timedelta(minutes=5), lead=LEAD, grace=GRACE, previous_tick=now) == []


def test_a_late_run_within_the_grace_still_starts() -> None:
    """Same outage, but the timer is back at 09:10 (25 minutes after the create-at time): it starts."""
    [late] = decide(schedule(), berlin(2026, 3, 2, 9, 10), lead=LEAD, grace=GRACE,
                    previous_tick=berlin(2026, 3, 2, 6, 0))
    assert late.action is ScheduleAction.START
    assert late.create_at == berlin(2026, 3, 2, 8, 45)
    assert late.reason == "Ready by 09:00 Europe/Berlin on 2026-03-02 (create at 08:45, lead 15 min)"


def test_a_timer_down_for_days_reports_each_missed_day_once_and_starts_today() -> None:
    decided = decide(schedule(), berlin(2026, 3, 5, 8, 50), lead=LEAD, grace=GRACE,
                     previous_tick=berlin(2026, 3, 2, 7, 0))
    assert actions(decided) == [(f"{SID}.20260302", ScheduleAction.SKIP_MISSED),
                                (f"{SID}.20260303", ScheduleAction.SKIP_MISSED),
                                (f"{SID}.20260304", ScheduleAction.SKIP_MISSED),
                                (f"{SID}.20260305", ScheduleAction.START)]


def test_a_holiday_is_reported_once_and_never_started() -> None:
    holiday = schedule(exceptions={date(2026, 3, 2)})
    [skipped] = decide(holiday, berlin(2026, 3, 2, 8, 46), lead=LEAD, grace=GRACE,
                       previous_tick=berlin(2026, 3, 2, 8, 41))
    assert (skipped.action, skipped.reason) == (ScheduleAction.SKIP_HOLIDAY, "2026-03-02 is an exception date")
    assert decide(holiday, berlin(2026, 3, 2, 8, 51), lead=LEAD, grace=GRACE,
                  previous_tick=berlin(2026, 3, 2, 8, 46)) == []


def test_due_occurrences_uses_each_sizes_lead_in_create_at_order() -> None:
    """Premium's longer lead makes its 09:00 meeting due at 08:40, before Standard's (08:50); a Standard schedule
    at 10:00 is not due yet."""
    standard = schedule()
    premium = schedule(id="sch-00000000000b", size="Premium")
    later = schedule(id="sch-00000000000c", ready_by=time(10, 0))
    leads = {"Standard": timedelta(minutes=10), "Premium": timedelta(minutes=20)}
    decided = due_occurrences([standard, later, premium], berlin(2026, 3, 2, 8, 55), leads=leads, grace=GRACE)
    assert [(d.occurrence.schedule_id, d.create_at) for d in decided] == [
        ("sch-00000000000b", berlin(2026, 3, 2, 8, 40)), (SID, berlin(2026, 3, 2, 8, 50))]
    assert {d.action for d in decided} == {ScheduleAction.START}


def test_next_occurrence_is_the_next_ready_by_after_now() -> None:
    assert next_occurrence(schedule(), berlin(2026, 3, 2, 8, 59)).ready_by == berlin(2026, 3, 2, 9, 0)
    assert next_occurrence(schedule(), berlin(2026, 3, 2, 9, 0)).local_date == date(2026, 3, 3)
    assert next_occurrence(schedule(), berlin(2026, 3, 6, 9, 30)).local_date == date(2026, 3, 9)  # Friday -> Monday


# -- Ready by T: the lead ----------------------------------------------------------------------------------------------

def test_create_at_is_the_lead_before_ready_by() -> None:
    [found] = occurrences(schedule(), berlin(2026, 3, 2, 0, 0), berlin(2026, 3, 2, 23, 0))
    assert create_at(found, timedelta(minutes=17)) == berlin(2026, 3, 2, 8, 43)


def test_p95_is_the_nearest_rank() -> None:
    """ceil(0.95 n)-th smallest: of 20 samples the 19th, of 100 the 95th, of 5 the largest."""
    assert p95([float(s) for s in range(20, 0, -1)]) == 19.0
    assert p95([float(s) for s in range(1, 101)]) == 95.0
    assert p95([30.0, 10.0, 50.0, 20.0, 40.0]) == 50.0
    with pytest.raises(ValueError, match="no samples"):
        p95([])


def test_startup_lead_uses_the_default_until_enough_samples() -> None:
    """Four observations are not enough: the documented default (5 minutes for Standard); twenty are: their p95."""
    tick, margin = timedelta(minutes=5), timedelta(minutes=2)
    few = startup_lead([100.0, 110.0, 120.0, 900.0], tick=tick, margin=margin, default=DEFAULT_STARTUP["Standard"])
    assert few == timedelta(minutes=5) + tick + margin
    many = [60.0] * 18 + [150.0, 600.0]  # the p95 of 20 is the 19th: one outlier does not set the lead
    assert startup_lead(many, tick=tick, margin=margin, default=DEFAULT_STARTUP["Standard"]) == \
        timedelta(seconds=150) + tick + margin


def test_startup_lead_ignores_broken_samples() -> None:
    """NaN and negative durations (a broken record) are not observations, so they do not count towards five."""
    samples = [60.0, 61.0, 62.0, 63.0, math.nan, -5.0]
    lead = startup_lead(samples, tick=timedelta(0), margin=timedelta(0), default=DEFAULT_STARTUP["Premium"])
    assert lead == timedelta(minutes=10)
    assert startup_lead([*samples, 64.0], tick=timedelta(0), margin=timedelta(0),
                        default=DEFAULT_STARTUP["Premium"]) == timedelta(seconds=64)


def test_the_lease_covers_an_early_ready_the_meeting_and_the_buffer() -> None:
    """ARR counts the lease from Ready, which can come as early as the create-at time: 60 + 17 + 15 minutes."""
    assert LEASE_BUFFER == timedelta(minutes=15)
    assert lease_minutes(schedule(), timedelta(minutes=17)) == 92
    assert lease_minutes(schedule(), timedelta(minutes=17, seconds=1)) == 93  # rounded up, never short


# -- validation --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "message"), [
    ({"time_zone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"time_zone": "../../etc/passwd"}, "unknown time zone"),
    ({"time_zone": "/usr/share/zoneinfo/UTC"}, "unknown time zone"),
    ({"time_zone": "europe/berlin"}, "unknown time zone"),
    ({"weekdays": set()}, "at least one weekday"),
    ({"weekdays": {7}}, "0 .Monday. to 6 .Sunday."),
    ({"weekdays": {MON}, "monthly": Monthly(1, MON)}, "not both"),
    ({"duration_minutes": 0}, "1 to 1440 minutes"),
    ({"duration_minutes": 1441}, "1 to 1440 minutes"),
    ({"duration_minutes": True}, "1 to 1440 minutes"),
    ({"size": "Large"}, "the size is one of Standard, Premium"),
    ({"exceptions": {date(2026, 1, 1) + timedelta(days=d) for d in range(MAX_EXCEPTIONS + 1)}},
     "at most 100 exception dates"),
    ({"exceptions": {datetime(2026, 12, 25, 9, 0)}}, "local dates"),
    ({"fallbacks": ("Premium", "Premium", "Premium", "Premium")}, "at most 3 fallback sizes"),
    ({"fallbacks": ("Standard",)}, "differ from the size"),
    ({"fallbacks": ("Huge",)}, "a fallback size is one of"),
    ({"id": "sch-XYZ"}, "sch- and 12 hex digits"),
    ({"created_at": datetime(2026, 1, 1)}, "aware"),
    ({"ready_by": time(9, 0, tzinfo=UTC)}, "without an offset"),
])
def test_invalid_schedules_are_refused_with_what_to_fix(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        schedule(**fields)


@pytest.mark.parametrize(("nth", "weekday", "message"), [
    (5, MON, "nth must be 1, 2, 3, 4 or -1"), (0, MON, "nth must be"), (-2, MON, "nth must be"),
    (1, 7, "a weekday is 0"), (1, -1, "a weekday is 0"),
])
def test_invalid_monthly_rules_are_refused(nth: int, weekday: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Monthly(nth, weekday)


def test_a_valid_schedule_is_normalised() -> None:
    """Sets, lists and the rest become immutable, and the limits themselves are allowed."""
    limits = schedule(weekdays=[MON, MON, FRI], duration_minutes=1440, fallbacks=["Premium"],
                      exceptions=[date(2026, 1, 1) + timedelta(days=d) for d in range(MAX_EXCEPTIONS)])
    assert limits.weekdays == frozenset({MON, FRI})
    assert limits.fallbacks == ("Premium",)
    assert len(limits.exceptions) == MAX_EXCEPTIONS
    assert limits.describe() == "Standard Ready by 09:00 Europe/Berlin for 1440 min, Monday, Friday"


def test_new_ids_match_the_pattern_and_differ() -> None:
    ids = {new_schedule_id() for _ in range(20)}
    assert len(ids) == 20
    assert all(SCHEDULE_ID.fullmatch(i) for i in ids)
    assert not SCHEDULE_ID.fullmatch("ovr-0123456789ab")


# -- the time-zone database --------------------------------------------------------------------------------------------

def test_the_database_is_the_pinned_tzdata_package() -> None:
    """requirements.txt pins tzdata==2026.6, IANA 2026f; the Casablanca test below expects that data."""
    assert TZ_DATABASE == "tzdata 2026f"
    assert zone("Europe/Berlin") is zone("Europe/Berlin")  # loaded once


def test_casablanca_follows_2026f() -> None:
    """The tzdata 2026.6 package (IANA 2026f) has Morocco on +00 for good from 20 September 2026 at 01:00 UTC
    (02:00 +01 becomes 01:00 +00); older data (2025b, e.g. Debian 12's /usr/share/zoneinfo) goes on with +01 and
    a return to +00 for each Ramadan. Found by comparing the package's Africa/Casablanca with 2025b's minute by
    minute. So a meeting at 09:00 in Casablanca on 15 October 2026 is at 09:00 UTC (2025b would say 08:00),
    while on 15 June 2026, when both agree on +01, it is at 08:00 UTC."""
    casablanca = zone("Africa/Casablanca")
    assert datetime(2026, 10, 15, 12, tzinfo=UTC).astimezone(casablanca).utcoffset() == timedelta(0)
    assert datetime(2027, 6, 15, 12, tzinfo=UTC).astimezone(casablanca).utcoffset() == timedelta(0)
    assert datetime(2026, 9, 20, 0, 59, tzinfo=UTC).astimezone(casablanca).utcoffset() == timedelta(hours=1)
    assert datetime(2026, 9, 20, 1, 0, tzinfo=UTC).astimezone(casablanca).utcoffset() == timedelta(0)
    meeting = schedule(time_zone="Africa/Casablanca", weekdays={MON, THU})
    assert occurrences(meeting, datetime(2026, 10, 15, tzinfo=UTC), datetime(2026, 10, 16, tzinfo=UTC))[0].ready_by \
        == datetime(2026, 10, 15, 9, 0, tzinfo=UTC)
    assert occurrences(meeting, datetime(2026, 6, 15, tzinfo=UTC), datetime(2026, 6, 16, tzinfo=UTC))[0].ready_by \
        == datetime(2026, 6, 15, 8, 0, tzinfo=UTC)


def test_zone_never_reads_the_hosts_database(tmp_path: Path) -> None:
    """A host database on zoneinfo.TZPATH whose Africa/Casablanca is wrong (here: Tokyo's rules, +09) is what plain
    ZoneInfo() reads, proving the setup; zone() still gives the package's +00."""
    fake = tmp_path / "Africa" / "Casablanca"
    fake.parent.mkdir()
    fake.write_bytes(resources.files("tzdata.zoneinfo").joinpath("Asia", "Tokyo").read_bytes())
    instant = datetime(2026, 10, 15, 12, tzinfo=UTC)
    saved = zoneinfo.TZPATH
    zoneinfo.reset_tzpath(to=[str(tmp_path)])
    zone.cache_clear()
    try:
        assert instant.astimezone(zoneinfo.ZoneInfo.no_cache("Africa/Casablanca")).utcoffset() == timedelta(hours=9)
        assert instant.astimezone(zone("Africa/Casablanca")).utcoffset() == timedelta(0)
    finally:
        zoneinfo.reset_tzpath(to=saved)
        zone.cache_clear()
