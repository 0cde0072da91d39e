"""What the cleanup should do: a pure function of ARR's sessions, our history, the time and the policy.

No I/O here. :func:`decide` returns one :class:`Decision` per session with its reason; the maintenance runner
(:mod:`arr_core.services.maintenance`) carries them out. The nightly shutdown is computed in the configured IANA time zone,
so it happens at the same local time in winter and summer, once per night, and a run that comes late (a missed
timer) still does the night's shutdown, stopping only sessions created before the shutdown time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from enum import Enum
from zoneinfo import ZoneInfo

from ..arr.models import RenderingSession, SessionStatus
from .lifecycle import adopted_record
from .overrides import Override, covering
from .records import CLEANUP_ACTOR, NIGHTLY_ACTOR, REQUESTED, SessionRecord


class Action(str, Enum):
    STOP = "stop"
    KEEP = "keep"  # and bring its record up to date with ARR's view
    RECONCILE = "reconcile"  # history thinks it active, ARR does not list it: read its end from ARR


@dataclass(frozen=True)
class CleanupPolicy:
    """The settings that decide what is stopped. None disables a limit."""

    time_zone: ZoneInfo = ZoneInfo("UTC")
    nightly_at: time | None = None
    max_session_minutes: int | None = None
    stuck_starting_minutes: int = 30
    catch_up_hours: int = 12  # how late a missed nightly shutdown is still done
    idle_after_ready_minutes: int | None = None  # idle stop: no heartbeat this long after Ready (arr_core.domain.idle)
    idle_minutes: int | None = None  # idle stop: this long since the last heartbeat

    @classmethod
    def from_settings(cls, *, time_zone: str, nightly_at: str | None, max_session_minutes: int | None,
                      stuck_starting_minutes: int, idle_after_ready_minutes: int | None = None,
                      idle_minutes: int | None = None) -> CleanupPolicy:
        return cls(time_zone=ZoneInfo(time_zone), nightly_at=parse_clock(nightly_at) if nightly_at else None,
                   max_session_minutes=max_session_minutes, stuck_starting_minutes=stuck_starting_minutes,
                   idle_after_ready_minutes=idle_after_ready_minutes or None, idle_minutes=idle_minutes or None)


def parse_clock(value: str) -> time:
    """``22:00`` or ``22:00:30``."""
    parts = value.strip().split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        msg = f"not a time of day (HH:MM): {value!r}"
        raise ValueError(msg)
    return time(*(int(p) for p in parts))


def shutdown_instant(night: date, policy: CleanupPolicy) -> datetime:
    """The nightly shutdown of local date ``night``, as an aware datetime (a time skipped by DST moves later)."""
    assert policy.nightly_at is not None
    local = datetime.combine(night, policy.nightly_at, tzinfo=policy.time_zone)
    # Round-trip through UTC: a wall time that does not exist (spring forward) lands after the gap.
    return local.astimezone(ZoneInfo("UTC")).astimezone(policy.time_zone)


def next_shutdown(now: datetime, policy: CleanupPolicy) -> datetime | None:
    """When the next nightly shutdown runs (at or after ``now``), in the policy's time zone; None without one. The
    first run at or after that time does it (the cleanup's timer runs every few minutes)."""
    if policy.nightly_at is None:
        return None
    local_today = now.astimezone(policy.time_zone).date()
    return next(instant for night in (local_today, local_today + timedelta(days=1))
                if (instant := shutdown_instant(night, policy)) >= now)


def nightly_due(now: datetime, policy: CleanupPolicy, done: set[date]) -> tuple[date, datetime] | None:
    """The night whose shutdown is due at ``now`` and not yet ``done``: today's once its time has come, or a
    missed one from the day before while it is less than ``catch_up_hours`` late."""
    if policy.nightly_at is None:
        return None
    local_today = now.astimezone(policy.time_zone).date()
    for night in (local_today, local_today - timedelta(days=1)):
        instant = shutdown_instant(night, policy)
        if instant <= now < instant + timedelta(hours=policy.catch_up_hours):
            return None if night in done else (night, instant)
    return None


@dataclass(frozen=True)
class Decision:
    """What to do with one session, and why. ``adopt``: ``record`` is new and must be written first."""

    session_id: str
    action: Action
    reason: str
    arr: RenderingSession | None = None
    record: SessionRecord | None = None
    adopt: bool = False
    actor: str = CLEANUP_ACTOR

    @property
    def stop_as(self) -> tuple[str, str | None]:
        """The reason and actor a stop is recorded with: a stop someone asked for and a crash cut short keeps
        theirs; any other is the cleanup's (or the nightly shutdown's)."""
        if self.record is not None and self.record.stop_reason and not self.adopt:
            return self.record.stop_reason, self.record.stopped_by
        return self.reason, self.actor


def _started(arr: RenderingSession, record: SessionRecord | None) -> datetime | None:
    return arr.created_at or (record.created_at if record else None)


def decide(arr_sessions: list[RenderingSession], records: list[SessionRecord], now: datetime,
           policy: CleanupPolicy, *, nightly_cutoff: datetime | None = None, history_since: datetime | None = None,
           requested_grace: timedelta = timedelta(minutes=10), overrides: list[Override] | None = None,
           ) -> list[Decision]:
    """One decision per session. ``nightly_cutoff`` (when the nightly shutdown is due, or forced) stops every
    session created before it that is not ``keepAlive`` nor covered by an active override. ``history_since`` is
    when the history table was (re)created: a session ARR runs that history does not know and that is older may
    have been kept alive by a user, so the nightly shutdown leaves it to its lease."""
    by_id = {r.session_id: r for r in records}
    listed = {s.id for s in arr_sessions}
    decisions: list[Decision] = []
    for arr in arr_sessions:
        record = by_id.get(arr.id)
        if record is None:
            adopted = adopted_record(arr, now, history_since=history_since)
            decisions.append(replace(judge(arr, adopted, now, policy, nightly_cutoff, overrides), adopt=True))
        else:
            decisions.append(judge(arr, record, now, policy, nightly_cutoff, overrides))
    for record in records:
        if record.session_id in listed or not record.is_active:
            continue
        if record.status == REQUESTED and now - record.created_at < requested_grace:
            decisions.append(Decision(record.session_id, Action.KEEP, "start in progress", record=record))
        else:
            decisions.append(Decision(record.session_id, Action.RECONCILE,
                                      "history has it active but ARR does not list it", record=record))
    return decisions


def judge(arr: RenderingSession, record: SessionRecord, now: datetime, policy: CleanupPolicy,
           nightly_cutoff: datetime | None, overrides: list[Override] | None = None) -> Decision:
    started = _started(arr, record)
    if record.stop_reason:  # ARR still runs it (it is listed), though a stop was asked for: a crash cut it short
        return Decision(arr.id, Action.STOP, f"finishing the stop asked for: {record.stop_reason}", arr, record)
    exemption = covering(record, overrides or [], now) if nightly_cutoff is not None else None
    if exemption is not None and record.keep_alive is False and (started is None or started < nightly_cutoff):
        return Decision(arr.id, Action.KEEP, exemption.describe(), arr, record)
    if nightly_cutoff is not None and record.keep_alive is False and (started is None or started < nightly_cutoff):
        local = nightly_cutoff.astimezone(policy.time_zone)
        return Decision(arr.id, Action.STOP, f"nightly shutdown ({local:%H:%M} {policy.time_zone.key})",
                        arr, record, actor=NIGHTLY_ACTOR)
    if arr.status is SessionStatus.STARTING and started is not None:
        starting_minutes = (now - started).total_seconds() / 60
        if starting_minutes >= policy.stuck_starting_minutes:
            return Decision(arr.id, Action.STOP, f"stuck in Starting for {starting_minutes:.0f} minutes "
                            f"(limit {policy.stuck_starting_minutes})", arr, record)
    if (arr.status is SessionStatus.READY and policy.max_session_minutes is not None
            and (arr.elapsed_minutes or 0) >= policy.max_session_minutes):
        return Decision(arr.id, Action.STOP, f"ran {arr.elapsed_minutes} minutes since Ready (maximum "
                        f"{policy.max_session_minutes})", arr, record)
    reason = "within policy"
    if nightly_cutoff is not None and record.keep_alive is None:
        reason = "keepAlive unknown (its history was lost): left to its lease"
    elif nightly_cutoff is not None and record.keep_alive:
        reason = "keepAlive"
    return Decision(arr.id, Action.KEEP, reason, arr, record)
