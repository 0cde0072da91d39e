"""Quotas: Ready-minutes per period for a requester or a label scope (issue 22). Pure: no I/O, ``now`` is given.

A :class:`Quota` allows ``minutes`` of Ready time per **period**, a calendar month or an ISO week (Monday 00:00 to
Monday 00:00), in an IANA time zone (tzdata, as the schedules': :func:`~arr_core.domain.schedules.zone`), to the
sessions of one **scope**: those ``requestedBy`` one requester, or those whose labels hold all of some ``labels``.
An admin's **top-ups** add minutes to the period they were made in only; the next period starts from ``minutes``
again (the reset Lab Services users had to script).

Which sessions count: every session whose record matches the scope, whoever started it. A schedule's sessions carry
the schedule's ``requestedBy`` and labels, so they count for that requester (and label scope). A warm pool's
unclaimed sessions are the pool's own actor's (``pool:<name>``): they never match a requester's scope, only a label
scope their pool's labels match; a claimed one is its claimer's from the claim on, and counts for them. A session
started outside the app and adopted has no requester and no labels: it counts for no quota.

**Used** minutes are Ready time inside the period, as ARR bills it: from ``readyAt`` to the end (``endedAt``), or to
now while the session runs (never past the end of its lease, which counts from Ready), rounded up to whole minutes
per session. A session that runs across the period's start counts its minutes inside the period only: the minutes
billed by an instant are ``ceil(Ready time so far)``, and a period gets what was billed at its end (or now) minus
what was billed at its start, so a session's minutes over two periods add up to what ARR bills it.

**Committed** minutes are what the scope's running sessions may still use: the rest of a Ready session's lease, and
the whole lease of one not yet Ready (``Requested``, ``Starting``). A start (or an extend) is admitted when
``used + committed + its lease (or its growth)`` stays within the period's allowance (``minutes`` plus this period's
top-ups): so sessions admitted together can never run the scope past its quota, however they are timed. A lease
that runs past the period's end is counted whole in this period: conservative, never short.

A running session of a scope whose used minutes have reached the allowance (the quota was lowered, or replaced by a
smaller one) is stopped by the cleanup (:func:`quota_stops`), with the reason ``quota <id> reached``.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from .cleanup import Action, Decision
from .records import CLEANUP_ACTOR, Event, SessionRecord
from .schedules import zone

QUOTA_ID = re.compile(r"quo-[0-9a-f]{12}")
Period = Literal["month", "week"]
PERIODS: tuple[Period, ...] = ("month", "week")
MAX_QUOTA_MINUTES = 10_000_000  # about 230 sessions running a whole month
MAX_TOP_UP_MINUTES = 100_000
MAX_TOP_UPS = 100  # kept on the quota's row; older periods' top-ups make room for new ones
# How long before a period's start a session may have been created and still be Ready inside it: a start stays in
# Starting at most ARR_STUCK_STARTING_MINUTES (the cleanup stops it), and ARR's lease is at most 1440 minutes from
# Ready. Three days covers both with room, as the session service's ACTIVE_WINDOW does.
LOOKBACK = timedelta(days=3)
QUOTA_REACHED = "quota-reached"  # the event the cleanup writes on a session it stops for its scope's quota
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class TopUp:
    """Minutes an admin added, for the period they were added in."""

    minutes: int
    by: str
    at: datetime
    reason: str | None = None


@dataclass(frozen=True)
class Quota:
    """``minutes`` of Ready time per ``period`` in ``time_zone`` for the sessions ``requested_by`` one requester, or
    whose labels hold all of ``labels`` (one of the two)."""

    id: str
    minutes: int
    period: Period
    time_zone: str
    created_at: datetime
    requested_by: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    top_ups: tuple[TopUp, ...] = ()

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.time_zone)

    def matches(self, record: SessionRecord) -> bool:
        """The record is in this quota's scope."""
        if self.requested_by is not None:
            return record.requested_by == self.requested_by
        return bool(self.labels) and all(record.labels.get(k) == v for k, v in self.labels.items())

    def scope(self) -> str:
        if self.requested_by is not None:
            return f"requestedBy {self.requested_by}"
        return "labels " + ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items()))

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        return period_bounds(now, self.period, self.tz)

    def allowance(self, start: datetime, end: datetime) -> int:
        """``minutes`` plus the top-ups made in [start, end)."""
        return self.minutes + sum(t.minutes for t in self.top_ups if start <= t.at < end)

    def describe(self, start: datetime) -> str:
        local = start.astimezone(self.tz)
        return (f"quota {self.id} ({self.scope()}: {self.minutes} minutes a {self.period} in {self.time_zone}, this "
                f"{self.period} from {local:%Y-%m-%d %H:%M})")

    def topped_up(self, top_up: TopUp, now: datetime) -> Quota:
        """With ``top_up`` added; when MAX_TOP_UPS are kept already, those of past periods make room (they count no
        more). ValueError when this period alone holds MAX_TOP_UPS."""
        kept = list(self.top_ups)
        if len(kept) >= MAX_TOP_UPS:
            start, _ = self.bounds(now)
            kept = [t for t in kept if t.at >= start]
            if len(kept) >= MAX_TOP_UPS:
                msg = (f"quota {self.id} has {MAX_TOP_UPS} top-ups this {self.period} already; raise its minutes "
                       "instead (delete it and create a larger one)")
                raise ValueError(msg)
        return replace(self, top_ups=(*kept, top_up))


def new_quota_id() -> str:
    return f"quo-{secrets.token_hex(6)}"


# -- periods -------------------------------------------------------------------------------------------------------

def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of local ``day``, in UTC. A midnight the clocks skip (a DST switch at 00:00, as in
    America/Asuncion) is the switch itself; a midnight they repeat is its first occurrence."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def period_bounds(now: datetime, period: Period, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The period holding ``now``: [its first instant, the next period's first instant), both in UTC. A month is
    the local calendar month; a week is the ISO week, Monday 00:00 to Monday 00:00 local time (so a week with a DST
    switch is an hour shorter or longer)."""
    today = now.astimezone(tz).date()
    if period == "month":
        first = today.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
    elif period == "week":
        first = today - timedelta(days=today.weekday())
        following = first + timedelta(days=7)
    else:
        msg = f"period must be one of {', '.join(PERIODS)}, not {period!r}"
        raise ValueError(msg)
    return local_midnight(first, tz), local_midnight(following, tz)


# -- usage ---------------------------------------------------------------------------------------------------------

def _ready_span(record: SessionRecord, now: datetime) -> tuple[datetime, datetime] | None:
    """When the session became Ready and when its billing ends (or ended): None if it was never Ready."""
    ready = record.ready_at
    if ready is None and record.ended_at is not None and record.elapsed_minutes:
        ready = record.ended_at - timedelta(minutes=record.elapsed_minutes)
    if ready is None:
        return None
    if record.is_active:
        until = now
        if record.lease_minutes is not None:  # ARR ends it at its lease, counted from Ready
            until = min(until, ready + timedelta(minutes=record.lease_minutes))
    elif record.ended_at is not None:
        until = record.ended_at
    else:  # ended, with no end recorded: ARR's own count of its minutes
        until = ready + timedelta(minutes=record.elapsed_minutes or 0)
    return ready, max(ready, until)


def billed_by(record: SessionRecord, instant: datetime, now: datetime) -> int:
    """The minutes ARR has billed the session by ``instant``: its Ready time up to then, rounded up."""
    span = _ready_span(record, now)
    if span is None:
        return 0
    ready, until = span
    seconds = (min(instant, until) - ready).total_seconds()
    return math.ceil(seconds / 60) if seconds > 0 else 0


def used_in(record: SessionRecord, start: datetime, end: datetime, now: datetime) -> int:
    """The session's billed minutes that fall in [start, end), as of ``now``."""
    return max(0, billed_by(record, min(end, now), now) - billed_by(record, start, now))


def committed(record: SessionRecord, now: datetime) -> int:
    """What a running session may still be billed: the rest of its lease (all of it before Ready); 0 once ended."""
    if not record.is_active:
        return 0
    lease = record.lease_minutes or 0
    if _ready_span(record, now) is None:
        return lease
    return max(0, lease - billed_by(record, now, now))


@dataclass(frozen=True)
class Usage:
    """A quota's current period and what is used, committed and left of it."""

    quota: Quota
    start: datetime
    end: datetime
    allowance: int
    used: int
    committed: int
    sessions: tuple[str, ...] = ()  # the sessions of the scope that count in this period

    @property
    def left(self) -> int:
        return max(0, self.allowance - self.used - self.committed)

    @property
    def reached(self) -> bool:
        """Nothing is left to use: a session of the scope that runs now runs past the quota."""
        return self.used >= self.allowance

    def text(self) -> str:
        return (f"{self.quota.describe(self.start)}: {self.used} used, {self.committed} committed, {self.left} left "
                f"of {self.allowance}")


def usage(quota: Quota, records: Iterable[SessionRecord], now: datetime) -> Usage:
    """``quota``'s period at ``now`` and its use by ``records`` (every record that may have been Ready in the
    period: those created from LOOKBACK before its start; others are ignored by their times anyway)."""
    start, end = quota.bounds(now)
    used = held = 0
    counted: list[str] = []
    for record in records:
        if not quota.matches(record):
            continue
        minutes, still = used_in(record, start, end, now), committed(record, now)
        if minutes or still:
            counted.append(record.session_id)
        used += minutes
        held += still
    return Usage(quota, start, end, quota.allowance(start, end), used, held, tuple(counted))


def admission(quota: Quota, records: Iterable[SessionRecord], now: datetime, new_lease: int) -> str | None:
    """Why ``new_lease`` more minutes for a session of the quota's scope are refused (naming the quota, what is
    used, committed and left), or None when they fit."""
    found = usage(quota, records, now)
    if found.used + found.committed + new_lease <= found.allowance:
        return None
    return f"{found.text()}; {new_lease} more minutes do not fit"


def lookback_start(quotas: Iterable[Quota], now: datetime) -> datetime | None:
    """From when records must be read to count every quota's current period (None without quotas)."""
    starts = [q.bounds(now)[0] for q in quotas]
    return min(starts) - LOOKBACK if starts else None


# -- the cleanup -----------------------------------------------------------------------------------------------------

def reached_reason(found: Usage) -> str:
    return (f"quota {found.quota.id} reached: {found.used} of {found.allowance} minutes used this "
            f"{found.quota.period} ({found.quota.scope()})")


def quota_stops(decisions: list[Decision], reached: list[Usage],
                now: datetime) -> tuple[list[Decision], dict[str, Event]]:
    """The cleanup's decisions with the running sessions it keeps whose scope's quota is reached now stopped, and
    the ``quota-reached`` event to write on each (by session id). keepAlive does not exempt a session: a quota is
    what may be spent, whatever the night. Sessions ARR does not list (a start in progress) are left alone."""
    if not reached:
        return decisions, {}
    out: list[Decision] = []
    events: dict[str, Event] = {}
    for d in decisions:
        record = d.record
        found = next((u for u in reached if record is not None and u.quota.matches(record)), None)
        if d.action is Action.KEEP and d.arr is not None and not d.adopt and found is not None:
            d = replace(d, action=Action.STOP, reason=reached_reason(found), actor=CLEANUP_ACTOR)
            events[d.session_id] = Event(QUOTA_REACHED, now, actor=CLEANUP_ACTOR, detail={
                "quota": found.quota.id, "used": found.used, "allowance": found.allowance,
                "periodStart": found.start.isoformat()})
        out.append(d)
    return out, events

