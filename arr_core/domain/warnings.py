"""A warning before every automatic stop: which stop comes next for a session, and when to warn of it. Pure.

Four stops come without anyone asking, and each can be seen coming:

- ``lease-end``: ARR itself ends a Ready session when its lease runs out (Ready + lease minutes);
- ``lease-cleanup``: the app's cleanup stops a session that ran ``ARR_MAX_SESSION_MINUTES`` since Ready;
- ``nightly-shutdown``: the next nightly shutdown stops every session created before it that is not kept alive
  (``keepAlive``) nor covered by an override that lasts past it;
- ``idle``: the cleanup stops a Ready session whose client sent no heartbeat for a while (:mod:`.idle`, off unless
  configured); seen coming only once the heartbeats have stopped.

The cleanup runs on a timer, so a warning meant to arrive ``lead`` ahead is sent at the first run that finds the
stop at most ``lead + tick`` away (``tick``: the timer's interval, :func:`timer_interval`): it then arrives between
``lead`` and ``lead + tick`` ahead, never at the last run before the stop (DevTest Labs users report warnings
1-5 minutes ahead). A stop first seen closer than that is warned at once, and the warning says how far ahead it is.

Each warning has an id that names the stop (its kind and what fixes its time: the lease, the maximum, the night),
so every run finds the same id for the same stop and a receiver, or the record's ``warned`` mark, drops repeats; a
postponed lease is a new stop, with a new id, warned again when it comes near.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from ..arr.models import RenderingSession, SessionStatus
from .cleanup import CleanupPolicy, next_shutdown
from .idle import IDLE_KIND, session_deadline
from .overrides import Override
from .pools import unclaimed_in_pool
from .records import Change, Event, SessionRecord

POSTPONE_MINUTES = 60  # what a postpone link adds to the lease (capped at the app's maximum lease)


class StopKind(StrEnum):
    LEASE_END = "lease-end"
    LEASE_CLEANUP = "lease-cleanup"
    NIGHTLY_SHUTDOWN = "nightly-shutdown"
    IDLE = IDLE_KIND  # the cleanup's idle stop: no client heartbeat (arr_core.domain.idle)


@dataclass(frozen=True)
class UpcomingStop:
    """The next automatic stop of a session: what, when, and the id its warning carries."""

    session_id: str
    kind: StopKind
    at: datetime
    reason: str
    stop_id: str  # the same at every run for the same stop: "<session>.warn.<kind>.<what fixes its time>"

    def minutes_ahead(self, now: datetime) -> int:
        return max(0, int((self.at - now).total_seconds() // 60))

    @property
    def postponable(self) -> bool:
        """A longer lease moves it (ARR's lease end); the maximum run time and the night do not."""
        return self.kind is StopKind.LEASE_END

    @property
    def keepable_tonight(self) -> bool:
        return self.kind is StopKind.NIGHTLY_SHUTDOWN


def _ready_stops(arr: RenderingSession, record: SessionRecord, now: datetime,
                 policy: CleanupPolicy) -> list[UpcomingStop]:
    elapsed = arr.elapsed_minutes or 0
    ready_since = record.ready_at or now - timedelta(minutes=elapsed)
    stops = []
    if arr.lease_minutes:
        stops.append(UpcomingStop(arr.id, StopKind.LEASE_END, ready_since + timedelta(minutes=arr.lease_minutes),
                                  f"its lease of {arr.lease_minutes} minutes runs out",
                                  f"{arr.id}.warn.{StopKind.LEASE_END}.{arr.lease_minutes}"))
    if policy.max_session_minutes is not None:
        stops.append(UpcomingStop(arr.id, StopKind.LEASE_CLEANUP,
                                  ready_since + timedelta(minutes=policy.max_session_minutes),
                                  f"it reaches the maximum of {policy.max_session_minutes} minutes since Ready",
                                  f"{arr.id}.warn.{StopKind.LEASE_CLEANUP}.{policy.max_session_minutes}"))
    return stops


def _nightly_stop(arr: RenderingSession, record: SessionRecord, now: datetime, policy: CleanupPolicy,
                  overrides: list[Override]) -> UpcomingStop | None:
    at = next_shutdown(now, policy)
    if at is None or record.keep_alive is not False:  # None: unknown, never stopped at night
        return None
    started = arr.created_at or record.created_at
    if started >= at or any(o.covers(record) and o.created_at <= at < o.until for o in overrides):
        return None
    local = at.astimezone(policy.time_zone)
    return UpcomingStop(arr.id, StopKind.NIGHTLY_SHUTDOWN, at,
                        f"the nightly shutdown at {local:%H:%M} {policy.time_zone.key}",
                        f"{arr.id}.warn.{StopKind.NIGHTLY_SHUTDOWN}.{local:%Y%m%d}")


def next_stop(arr: RenderingSession, record: SessionRecord | None, now: datetime, policy: CleanupPolicy,
              overrides: list[Override]) -> UpcomingStop | None:
    """The first automatic stop ahead of a running session; None when nothing will stop it by itself (or when it
    is not ours to say: no record, a stop already asked for, not yet Ready for the lease stops)."""
    if record is None or record.stop_reason or arr.status.is_terminal or unclaimed_in_pool(record):
        return None  # an unclaimed pool session is nobody's: its pool keeps its lease and closes it
    stops = _ready_stops(arr, record, now, policy) if arr.status is SessionStatus.READY else []
    nightly = _nightly_stop(arr, record, now, policy, overrides)
    stops += [nightly] if nightly is not None else []
    idle = session_deadline(arr, record, now, policy)
    if idle is not None and idle.quiet(now):  # while heartbeats come, no idle stop is ahead
        stops.append(UpcomingStop(arr.id, StopKind.IDLE, idle.at, idle.warning, idle.stop_id))
    return min(stops, key=lambda s: s.at, default=None)


def warning_due(stop: UpcomingStop | None, record: SessionRecord | None, now: datetime, *, lead: timedelta,
                tick: timedelta) -> bool:
    """Warn now: the stop is at most ``lead + tick`` away, still ahead, and not yet warned of."""
    if stop is None or record is None or record.warned == stop.stop_id or lead <= timedelta(0):
        return False
    return now < stop.at <= now + lead + tick


_CRON_STEP = re.compile(r"\*/(\d+)")


def timer_interval(schedule: str) -> timedelta:
    """The longest gap between two runs of the cleanup's timer, from its NCRONTAB (seconds first) or TimeSpan
    schedule; an hour when the schedule is one this does not read (a warning then comes early, never late)."""
    parts = schedule.split()
    if len(parts) == 1 and re.fullmatch(r"\d{1,2}:\d{2}:\d{2}", parts[0]):
        hours, minutes, seconds = (int(p) for p in parts[0].split(":"))
        return timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if len(parts) != 6 or parts[2:] != ["*"] * 4 or not parts[0].isdigit():
        return timedelta(hours=1)
    minute = parts[1]
    if minute == "*":
        return timedelta(minutes=1)
    if step := _CRON_STEP.fullmatch(minute):
        return timedelta(minutes=max(1, int(step.group(1))))
    if re.fullmatch(r"\d{1,2}(,\d{1,2})*", minute):
        marks = sorted({int(m) for m in minute.split(",")})
        gaps = [b - a for a, b in itertools.pairwise(marks)] + [marks[0] + 60 - marks[-1]]
        return timedelta(minutes=max(gaps))
    return timedelta(hours=1)


def warned(record: SessionRecord, stop: UpcomingStop, now: datetime, *, actor: str) -> Change:
    """Mark a warning as sent, with its event (history then shows it came before the stop); once: a second run
    that sent the same one writes nothing."""
    if record.warned == stop.stop_id:
        return None
    detail = {"kind": stop.kind.value, "stopAt": stop.at.isoformat(), "minutesAhead": stop.minutes_ahead(now)}
    return replace(record, warned=stop.stop_id), [Event("stop-warned", now, actor=actor, detail=detail)]
