"""Schedules: a session Ready when the meeting starts (issue 21). Pure rules: no I/O, ``now`` is always given.

A :class:`Schedule` says when a session must be **Ready by** (a local wall time in an IANA time zone) on some days:
chosen weekdays, or the nth (or last) given weekday of each month, minus exception dates (holidays). Each such local
day gives one :class:`Occurrence`, whose id (``sch-….YYYYMMDD``) is the idempotency key "occurrence → session".

The timer creates a session ``lead`` before the Ready-by time (:func:`create_at`); the lead is the observed p95 of
Starting → Ready for the size plus the timer's interval plus a margin (:func:`startup_lead`). :func:`decide` says
what one timer run does with a schedule, with a reason, like :mod:`.cleanup`'s decisions:

- **never on save**: an occurrence whose create-at time is at or before the schedule's last save is never started
  (saving at 08:55 a schedule "Ready by 09:00" with a 15 minute lead starts nothing today; tomorrow's runs);
- **no replay**: an occurrence whose create-at time is more than ``grace`` in the past is not started (the timer
  was down): it is reported once as missed.

Local times come from the ``tzdata`` package (:func:`zone`), never the host's ``/usr/share/zoneinfo``: a host with
old data gives stale local times (Morocco's rules changed in 2026f), and the API shows which data it used
(:data:`TZ_DATABASE`).
"""

from __future__ import annotations

import functools
import math
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from importlib import resources
from zoneinfo import ZoneInfo

import tzdata

SCHEDULE_ID = re.compile(r"sch-[0-9a-f]{12}")
SIZES = ("Standard", "Premium")
MAX_DURATION_MINUTES = 1440
MAX_EXCEPTIONS = 100
MAX_FALLBACKS = 3
TZ_DATABASE = f"tzdata {tzdata.IANA_VERSION}"  # "tzdata 2026f": shown by the API and the docs

# Starting → Ready when there are not yet enough observations of our own (see startup_lead). The recordings in
# shared/reference (ARR-API-NOTES.md §7.6) show about 2-3 minutes for Standard in 2021 (PY-REC, NET-REC, JAVA-REC)
# and about 10 s in 2022; ARR's showcase app says "Starting a session will take a few minutes" (Azure/azure-remote-
# rendering, Unity/AzureRemoteRenderingShowcase/.documents/app-usage.md). Standard: twice the slowest recorded
# start. Premium: no recording measures it; its bigger VMs are scarcer, so twice Standard's default (an assumption
# that our own samples replace after MIN_SAMPLES starts).
DEFAULT_STARTUP = {"Standard": timedelta(minutes=5), "Premium": timedelta(minutes=10)}
MIN_SAMPLES = 5
# A session may run past its meeting's end by this much (see lease_minutes).
LEASE_BUFFER = timedelta(minutes=15)


# -- the time-zone database --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def zone_names() -> frozenset[str]:
    """Every zone name the tzdata package holds (its ``zones`` list, links like ``US/Eastern`` included)."""
    return frozenset(resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8").split())


def checked_zone(value: str) -> str:
    """``value``, when it names a zone of the tzdata package (a settings validator's rule, one place for all)."""
    if value not in zone_names():
        msg = f"timeZone must be an IANA time zone such as Europe/Berlin; not {value[:64]!r}"
        raise ValueError(msg)
    return value


@functools.cache  # bounded: only names in zone_names() get here without raising
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` from the tzdata package, whatever the host has in ``zoneinfo.TZPATH``.

    Only names in the package's list are accepted, so nothing like ``../../etc/passwd`` or ``/abs/path`` is opened.
    """
    if not isinstance(name, str) or name not in zone_names():
        msg = f"unknown time zone {name!r}: give an IANA name such as Europe/Berlin ({TZ_DATABASE})"
        raise ValueError(msg)
    with resources.files("tzdata.zoneinfo").joinpath(*name.split("/")).open("rb") as data:
        return ZoneInfo.from_file(data, key=name)


# -- schedules ---------------------------------------------------------------------------------------------------------

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
ORDINALS = {1: "1st", 2: "2nd", 3: "3rd", 4: "4th", -1: "last"}


@dataclass(frozen=True)
class Monthly:
    """The ``nth`` (1-4, or -1 for the last) ``weekday`` (0 Monday … 6 Sunday) of every month."""

    nth: int
    weekday: int

    def __post_init__(self) -> None:
        if self.nth not in ORDINALS:
            msg = f"nth must be 1, 2, 3, 4 or -1 (the last), not {self.nth!r}"
            raise ValueError(msg)
        _check_weekday(self.weekday)

    def in_month(self, year: int, month: int) -> date:
        """Its day in that month (every month has a 1st-4th and a last of each weekday)."""
        if self.nth > 0:
            first = date(year, month, 1)
            return first + timedelta(days=(self.weekday - first.weekday()) % 7 + 7 * (self.nth - 1))
        following = date(year + month // 12, month % 12 + 1, 1)
        last = following - timedelta(days=1)
        return last - timedelta(days=(last.weekday() - self.weekday) % 7)

    def describe(self) -> str:
        return f"{ORDINALS[self.nth]} {WEEKDAY_NAMES[self.weekday]} of the month"


def _check_weekday(day: object) -> None:
    if not isinstance(day, int) or isinstance(day, bool) or not 0 <= day <= 6:
        msg = f"a weekday is 0 (Monday) to 6 (Sunday), not {day!r}"
        raise ValueError(msg)


def new_schedule_id() -> str:
    return f"sch-{secrets.token_hex(6)}"


@dataclass(frozen=True)
class Schedule:
    """Sessions of ``size`` Ready by ``ready_by`` (local wall time in ``time_zone``) for ``duration_minutes`` on
    ``weekdays`` (0 Monday … 6 Sunday) or on a ``monthly`` day, except on the local dates in ``exceptions``.

    ``fallbacks``: other sizes to try, in order, when ARR has no capacity for ``size``. ``saved_at`` (``updated_at``,
    else ``created_at``) is what "never fires on save" compares with. Constructing one validates it: a bad value
    raises ValueError with what to fix.
    """

    id: str
    time_zone: str
    ready_by: time
    duration_minutes: int
    size: str
    created_at: datetime
    weekdays: frozenset[int] = frozenset()
    monthly: Monthly | None = None
    exceptions: frozenset[date] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict)
    requested_by: str | None = None
    fallbacks: tuple[str, ...] = ()
    enabled: bool = True
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        # Normalise the collections first (a set or a list is welcome), then check every field.
        object.__setattr__(self, "weekdays", frozenset(self.weekdays))
        object.__setattr__(self, "exceptions", frozenset(self.exceptions))
        object.__setattr__(self, "fallbacks", tuple(self.fallbacks))
        object.__setattr__(self, "labels", dict(self.labels))
        _validate(self)

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.time_zone)

    @property
    def saved_at(self) -> datetime:
        """When it was last saved (created or changed)."""
        return self.updated_at or self.created_at

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.duration_minutes)

    def matches(self, day: date) -> bool:
        """Whether the rule (weekdays or monthly) names local date ``day``; exceptions are not looked at."""
        if self.monthly is not None:
            return day == self.monthly.in_month(day.year, day.month)
        return day.weekday() in self.weekdays

    def describe(self) -> str:
        days = self.monthly.describe() if self.monthly else ", ".join(WEEKDAY_NAMES[d] for d in sorted(self.weekdays))
        return f"{self.size} Ready by {self.ready_by:%H:%M} {self.time_zone} for {self.duration_minutes} min, {days}"


def _validate(schedule: Schedule) -> None:
    def fail(message: str) -> None:
        raise ValueError(message)

    if not SCHEDULE_ID.fullmatch(str(schedule.id)):
        fail(f"a schedule id is sch- and 12 hex digits, not {schedule.id!r}")
    zone(schedule.time_zone)
    if not isinstance(schedule.ready_by, time) or schedule.ready_by.tzinfo is not None:
        fail("readyBy is a local wall time without an offset (the schedule's time zone gives it)")
    duration = schedule.duration_minutes
    if not isinstance(duration, int) or isinstance(duration, bool) or not 1 <= duration <= MAX_DURATION_MINUTES:
        fail(f"the duration is 1 to {MAX_DURATION_MINUTES} minutes, not {duration!r}")
    if schedule.size not in SIZES:
        fail(f"the size is one of {', '.join(SIZES)}, not {schedule.size!r}")
    if schedule.monthly is not None and schedule.weekdays:
        fail("give weekdays or a monthly day, not both")
    if schedule.monthly is None and not schedule.weekdays:
        fail("give at least one weekday, or a monthly day (nth weekday)")
    for day in schedule.weekdays:
        _check_weekday(day)
    if len(schedule.exceptions) > MAX_EXCEPTIONS:
        fail(f"at most {MAX_EXCEPTIONS} exception dates, not {len(schedule.exceptions)}")
    if any(isinstance(d, datetime) or not isinstance(d, date) for d in schedule.exceptions):
        fail("exception dates are local dates (YYYY-MM-DD), without a time")
    if len(schedule.fallbacks) > MAX_FALLBACKS:
        fail(f"at most {MAX_FALLBACKS} fallback sizes, not {len(schedule.fallbacks)}")
    for size in schedule.fallbacks:
        if size not in SIZES:
            fail(f"a fallback size is one of {', '.join(SIZES)}, not {size!r}")
    if schedule.size in schedule.fallbacks or len(set(schedule.fallbacks)) != len(schedule.fallbacks):
        fail("fallback sizes differ from the size and from each other")
    for instant in (schedule.created_at, schedule.updated_at):
        if instant is not None and (not isinstance(instant, datetime) or instant.utcoffset() is None):
            fail("createdAt and updatedAt are aware datetimes (with an offset)")


# -- occurrences -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Occurrence:
    """One local day of a schedule: its session must be Ready at ``ready_by`` until ``ends_at`` (both UTC)."""

    schedule_id: str
    local_date: date
    ready_by: datetime
    ends_at: datetime

    @property
    def id(self) -> str:
        """Deterministic, one per schedule and local day: the idempotency key "occurrence id → session id"."""
        return f"{self.schedule_id}.{self.local_date:%Y%m%d}"


def ready_instant(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of wall time ``wall`` on local date ``day``.

    - A wall time that does not exist (spring forward) moves later by the gap: 02:30 on the day Berlin or New York
      skips 02:00-03:00 becomes 03:30 local, as :func:`.cleanup.shutdown_instant` does.
    - A wall time that happens twice (fall back) is the FIRST of the two (fold=0): 01:30 on the day New York falls
      back is 01:30 EDT, the session is ready before either reading of "01:30".

    Both follow from PEP 495's fold=0: the offset before the transition is used.
    """
    return datetime.combine(day, wall.replace(fold=0), tzinfo=tz).astimezone(UTC)


def occurrence_on(schedule: Schedule, day: date) -> Occurrence:
    """The occurrence local date ``day`` would have (whether or not the rule names it)."""
    ready = ready_instant(day, schedule.ready_by, schedule.tz)
    return Occurrence(schedule.id, day, ready, ready + schedule.duration)


def _aware(*instants: datetime) -> None:
    if any(i.utcoffset() is None for i in instants):
        msg = "times must be aware (with an offset)"
        raise ValueError(msg)


def _matching(schedule: Schedule, after: datetime, until: datetime) -> Iterator[Occurrence]:
    """Occurrences the rule names with ``after < ready_by <= until``, exception dates included."""
    _aware(after, until)
    tz = schedule.tz
    # A day before and after: a wall time in a gap at midnight lands on the next local day.
    day = after.astimezone(tz).date() - timedelta(days=1)
    last = until.astimezone(tz).date() + timedelta(days=1)
    while day <= last:
        if schedule.matches(day):
            occurrence = occurrence_on(schedule, day)
            if after < occurrence.ready_by <= until:
                yield occurrence
        day += timedelta(days=1)


def occurrences(schedule: Schedule, after: datetime, until: datetime) -> list[Occurrence]:
    """The occurrences with ``after < ready_by <= until``, in order: exception dates are skipped, a disabled
    schedule has none."""
    if not schedule.enabled:
        return []
    return [o for o in _matching(schedule, after, until) if o.local_date not in schedule.exceptions]


def next_occurrence(schedule: Schedule, now: datetime, *, lead: timedelta = timedelta(0)) -> Occurrence | None:
    """The next occurrence that will run (for the API's "next run"): Ready after ``now``, not an exception, and
    created after the last save (pass the size's ``lead`` so that the never-on-save rule is applied as the timer
    will). None when disabled."""
    if not schedule.enabled:
        return None
    _aware(now)
    # The rule names at least one day a month; at most MAX_EXCEPTIONS of them are exceptions and one or two are
    # before the save, so MAX_EXCEPTIONS + 3 months always reach one. The loop stops at the first found.
    horizon = now + timedelta(days=31 * (MAX_EXCEPTIONS + 3))
    for occurrence in _matching(schedule, now, horizon):
        if occurrence.local_date not in schedule.exceptions and create_at(occurrence, lead) > schedule.saved_at:
            return occurrence
    return None


# -- Ready by T: the lead ----------------------------------------------------------------------------------------------

def create_at(occurrence: Occurrence, lead: timedelta) -> datetime:
    """When the timer creates the session so that it is Ready by the occurrence's time."""
    return occurrence.ready_by - lead


def p95(samples: Sequence[float]) -> float:
    """The nearest-rank 95th percentile: the smallest sample with at least 95% of the samples at or below it, i.e.
    the ``ceil(0.95 n)``-th smallest (of 20 samples the 19th, of 5 the 5th: with few samples it is the maximum).
    It is always an observed value, never an interpolation."""
    if not samples:
        msg = "no samples"
        raise ValueError(msg)
    ordered = sorted(samples)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def startup_lead(samples_seconds: Sequence[float], *, tick: timedelta, margin: timedelta, default: timedelta,
                 min_samples: int = MIN_SAMPLES) -> timedelta:
    """How long before the Ready-by time the timer creates a session: the p95 of the observed Starting → Ready
    seconds of that size (``default``, e.g. :data:`DEFAULT_STARTUP`, while fewer than ``min_samples``), plus
    ``tick`` (the timer runs up to one interval after the create-at time), plus ``margin``. Samples that are not
    finite or are negative (a broken record) are ignored."""
    valid = [s for s in samples_seconds if math.isfinite(s) and s >= 0]
    startup = timedelta(seconds=p95(valid)) if len(valid) >= max(min_samples, 1) else default
    return startup + tick + margin


def lease_minutes(schedule: Schedule, lead: timedelta) -> int:
    """The lease to create the session with (ARR counts it from Ready): the duration plus :data:`LEASE_BUFFER`,
    plus the lead, because the session may be Ready as early as its create-at time, ``lead`` before the Ready-by
    time, and must still last until the meeting's end. Whole minutes, rounded up."""
    return math.ceil((schedule.duration + lead + LEASE_BUFFER) / timedelta(minutes=1))


# -- what the timer does -----------------------------------------------------------------------------------------------

class ScheduleAction(str, Enum):
    START = "start"  # create the session now (unless the occurrence id already has one: starts are idempotent)
    SKIP_HOLIDAY = "skip-holiday"  # its local date is an exception date
    SKIP_SAVED = "skip-saved"  # the schedule was saved at or after its create-at time: never fires on save
    SKIP_MISSED = "skip-missed"  # its create-at time is more than the grace in the past: no replay


@dataclass(frozen=True)
class ScheduleDecision:
    """What one timer run does with one occurrence, and why."""

    occurrence: Occurrence
    action: ScheduleAction
    reason: str
    create_at: datetime


def decide(schedule: Schedule, now: datetime, *, lead: timedelta, grace: timedelta,
           previous_tick: datetime | None = None) -> list[ScheduleDecision]:
    """The decisions of the timer run at ``now`` for the occurrences whose create-at time ``c`` has come.

    With ``c = ready_by - lead`` and ``saved_at`` the schedule's last save, in this order:

    1. an exception date: SKIP_HOLIDAY;
    2. ``c <= saved_at``: SKIP_SAVED (never fires on save, whatever the grace);
    3. ``c < now - grace``: SKIP_MISSED (no replay);
    4. ``now - grace <= c <= now``: START, at every run in that window, so a failed start is retried; the
       occurrence id makes the starts after the first no-ops.

    ``previous_tick`` is the ``now`` of the previous run (None when unknown). It extends the look back to
    ``previous_tick`` when that is earlier than ``now - grace``, which is how a miss is found: an occurrence is
    missed only when no run happened between ``c`` and ``c + grace``. It also keeps the skips (1-3) from being
    repeated: a skip is reported by the first run after ``c`` (``c > previous_tick``), or by the first run after
    a new schedule was created (no earlier run knew it; an update is not "new": the run before it judged the
    occurrence by the schedule's earlier version). Without ``previous_tick`` only ``now - grace <= c <= now`` is
    looked at and every skip there is reported. A disabled schedule gives nothing.
    """
    if not schedule.enabled:
        return []
    _aware(now)
    lower = now - grace if previous_tick is None else min(previous_tick, now - grace)
    unseen = previous_tick is None or (schedule.updated_at is None and schedule.created_at > previous_tick)
    decisions = []
    # c in [lower, now] (inclusive at both ends: c == now - grace is still within the grace).
    for occurrence in _matching(schedule, lower + lead - timedelta(microseconds=1), now + lead):
        c = create_at(occurrence, lead)
        action, reason = _judge(schedule, occurrence, c, now, grace)
        if action is ScheduleAction.START or unseen or c > previous_tick:
            decisions.append(ScheduleDecision(occurrence, action, reason, c))
    return decisions


def _judge(schedule: Schedule, occurrence: Occurrence, c: datetime, now: datetime,
           grace: timedelta) -> tuple[ScheduleAction, str]:
    tz = schedule.tz
    wall = f"{schedule.ready_by:%H:%M} {schedule.time_zone} on {occurrence.local_date:%Y-%m-%d}"
    created = f"{c.astimezone(tz):%H:%M}"
    if occurrence.local_date in schedule.exceptions:
        return ScheduleAction.SKIP_HOLIDAY, f"{occurrence.local_date:%Y-%m-%d} is an exception date"
    if c <= schedule.saved_at:
        return ScheduleAction.SKIP_SAVED, (f"saved at {schedule.saved_at.astimezone(tz):%Y-%m-%d %H:%M}, not before "
                                           f"its create-at time {created}: a schedule never fires on save")
    if c < now - grace:
        late = math.floor((now - c) / timedelta(minutes=1))
        return ScheduleAction.SKIP_MISSED, (f"missed: its create-at time {created} was {late} min ago, more than "
                                            f"the {_minutes(grace)} grace (no replay)")
    return ScheduleAction.START, f"Ready by {wall} (create at {created}, lead {_minutes(c - occurrence.ready_by)})"


def _minutes(delta: timedelta) -> str:
    return f"{abs(delta) / timedelta(minutes=1):g} min"


def due_occurrences(schedules: Iterable[Schedule], now: datetime, *, leads: Mapping[str, timedelta],
                    grace: timedelta, previous_tick: datetime | None = None) -> list[ScheduleDecision]:
    """:func:`decide` for every schedule, with the lead of its size (``leads``: size → lead), in create-at order."""
    decisions = [d for s in schedules
                 for d in decide(s, now, lead=leads[s.size], grace=grace, previous_tick=previous_tick)]
    return sorted(decisions, key=lambda d: (d.create_at, d.occurrence.id))
