"""Idle stop: a Ready session whose client sends no heartbeat is warned, then stopped by the cleanup. Pure.

ARR says nothing about who is connected, so clients say that they are: ``POST /api/sessions/{id}/heartbeat`` every
HEARTBEAT_SECONDS. Two limits, each off unless set (``ARR_IDLE_AFTER_READY_MINUTES`` and ``ARR_IDLE_MINUTES``):

- *after Ready*: no heartbeat at all this many minutes after the session was Ready;
- *after the last heartbeat*: no heartbeat for this many minutes (counted from Ready when the last one came while
  the session was starting).

**Coalescing.** A process records a session's heartbeat at most once every WRITE_EVERY: one that comes sooner after
the last one it recorded is answered from memory, without a write. So the recorded heartbeat may be up to
WRITE_EVERY older than the last one received (on any number of hosts: each records at most that often, and a host
that recorded later only makes the record newer); the limit after the last heartbeat therefore counts from the
recorded one *plus* WRITE_EVERY, and a stop that says "no heartbeat for N minutes" is true.

**Warned first.** An idle stop is one of the automatic stops of :mod:`.warnings` (kind ``idle``): warned
``ARR_STOP_WARNING_MINUTES`` ahead where it can be (a limit shorter than that is warned as soon as the session is
quiet, and says how far ahead). When warnings are on, no session is stopped as idle before its warning went out:
one found idle past its time without a warning (a missed timer run, a limit just turned on) is warned at that run
and stopped at a later one. A heartbeat moves the stop (a new stop with a new id, warned again if it comes near).
While heartbeats come, nothing is warned: a session is *quiet* once its recorded heartbeat is older than QUIET
(a client heartbeating as told would have been recorded again by then, even with one heartbeat lost).

**Withdrawn by a late heartbeat.** The cleanup stops through the conditional write of the stop's reason, which asks
:func:`heard_since` about the record as the write finds it: a heartbeat recorded after the run read the record
withdraws the stop. (A heartbeat answered from memory cannot come after the stop was decided: it came within
WRITE_EVERY of a recorded one, more than the limit before now.)

**Who is exempt.** A warm pool's unclaimed sessions (nobody is connected to them, by design, until a claim makes
one the claimer's). Not ``keepAlive``, nor an override: they keep a session through the nightly shutdown, for a
job someone will come back to; but an ARR session renders for a connected client only, so one that no client
heartbeats to is paid for nothing, kept alive or not. A deployment whose clients cannot heartbeat leaves idle stop
off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from ..arr.models import RenderingSession, SessionStatus
from ..errors import SessionEnded
from .cleanup import Action, Decision
from .pools import unclaimed_in_pool
from .records import CLEANUP_ACTOR, Change, Event, SessionRecord

HEARTBEAT_SECONDS = 30  # what clients are told: send a heartbeat this often
WRITE_EVERY = timedelta(seconds=60)  # a process records a session's heartbeat at most this often
# No heartbeat recorded this long: the client has gone quiet. A client heartbeating as told is recorded every 60 to
# 90 s (a beat that arrives a little under WRITE_EVERY after the recorded one is answered from memory: the next one
# is written), so 2 minutes also forgives one lost heartbeat.
QUIET = WRITE_EVERY + timedelta(seconds=2 * HEARTBEAT_SECONDS)
IDLE_KIND = "idle"  # the kind of stop (arr_core.domain.warnings.StopKind.IDLE) and of its warning's id
HEARTBEAT_EVENT = "heartbeat"  # the event of a session's first heartbeat (later ones write none)


class IdleLimits(Protocol):
    """The two settings, in minutes; None or 0: off (AppSettings and CleanupPolicy both have them)."""

    @property
    def idle_after_ready_minutes(self) -> int | None: ...

    @property
    def idle_minutes(self) -> int | None: ...


def idle_on(limits: IdleLimits) -> bool:
    return bool(limits.idle_after_ready_minutes or limits.idle_minutes)


def heartbeat(record: SessionRecord, now: datetime, client: str | None = None) -> Change:
    """A client's heartbeat recorded on the session's record: a later heartbeat than the one it holds, with an event
    for the first one only (history does not grow with heartbeats). An ended session, or one whose stop was asked
    for, keeps nothing running: :class:`SessionEnded`."""
    if not record.is_active or record.stop_reason:
        status = record.status if not record.is_active else SessionStatus.STOPPED.value
        why = f"is {record.status}" if not record.is_active else f"is being stopped ({record.stop_reason})"
        raise SessionEnded(f"session {record.session_id} {why}: a heartbeat keeps nothing running",
                           session_status=status)
    if record.last_heartbeat is not None and record.last_heartbeat >= now:
        return None  # a later one is recorded already (another host)
    events = [] if record.last_heartbeat is not None else [
        Event(HEARTBEAT_EVENT, now, actor=client, detail={"first": True, **({"client": client} if client else {})})]
    return replace(record, last_heartbeat=now), events


def exempt(record: SessionRecord) -> bool:
    """A warm pool's session that nobody has claimed yet: no client is connected to it, by design."""
    return unclaimed_in_pool(record)


@dataclass(frozen=True)
class IdleDeadline:
    """From when a session counts as idle, and why."""

    session_id: str
    at: datetime  # the cleanup stops it at its first run from then on (after its warning)
    heard: datetime  # the last moment a heartbeat may have come: Ready when none came
    limit: int  # minutes
    heartbeat: datetime | None  # the recorded heartbeat it counts from; None: none since Ready (the first limit)

    @property
    def stop_id(self) -> str:
        """The id of its warning: the same at every run until a heartbeat moves it."""
        since = "ready" if self.heartbeat is None else f"{self.heartbeat:%Y%m%dT%H%M%S%f}"
        return f"{self.session_id}.warn.{IDLE_KIND}.{since}.{self.limit}"

    def quiet(self, now: datetime) -> bool:
        """Heartbeats have stopped coming (or never came): a warning now is no false alarm."""
        return self.heartbeat is None or now - self.heartbeat >= QUIET

    def idle_minutes(self, now: datetime) -> int:
        return max(0, int((now - self.heard).total_seconds() // 60))

    def reason(self, now: datetime) -> str:
        """The stop's reason: how long nothing was heard, which is at least the limit."""
        since = " since Ready" if self.heartbeat is None else ""
        return f"idle: no heartbeat for {max(self.limit, self.idle_minutes(now))} minutes{since}"

    @property
    def warning(self) -> str:
        since = " since Ready" if self.heartbeat is None else ""
        return (f"no client heartbeat for {self.limit} minutes{since} (a heartbeat, POST "
                f"/api/sessions/{self.session_id}/heartbeat, keeps it)")


def idle_deadline(session_id: str, heartbeat_at: datetime | None, ready: datetime | None,
                  limits: IdleLimits) -> IdleDeadline | None:
    """When a session whose recorded heartbeat is ``heartbeat_at`` (None: never) and that was Ready at ``ready``
    counts as idle; None while it is not Ready, or when the limit that applies is off."""
    if ready is None:
        return None
    if heartbeat_at is None:
        limit, heard = limits.idle_after_ready_minutes, ready
    else:
        limit, heard = limits.idle_minutes, max(heartbeat_at + WRITE_EVERY, ready)
    if not limit:
        return None
    return IdleDeadline(session_id, heard + timedelta(minutes=limit), heard, limit, heartbeat_at)


def session_deadline(arr: RenderingSession | None, record: SessionRecord | None, now: datetime,
                     limits: IdleLimits) -> IdleDeadline | None:
    """A running session's idle deadline: Ready at ARR, ours to stop (a record, no stop asked for), not exempt. Its
    Ready time is history's, else ARR's elapsed minutes back from now (as the other stops of a Ready session)."""
    if arr is None or record is None or record.stop_reason or arr.status is not SessionStatus.READY or exempt(record):
        return None
    ready = record.ready_at or now - timedelta(minutes=arr.elapsed_minutes or 0)
    return idle_deadline(record.session_id, record.last_heartbeat, ready, limits)


def idle_stops(decisions: list[Decision], now: datetime, limits: IdleLimits, *,
               warn_first: bool) -> tuple[list[Decision], set[str]]:
    """The cleanup's decisions with the idle sessions it keeps now stopped (and the ids of those idle stops).

    ``warn_first`` (warnings are on and can be sent): a session past its idle deadline whose record is not marked
    warned of this very stop is kept this run, and warned (:mod:`.warnings`); the next run stops it."""
    if not idle_on(limits):
        return decisions, set()
    out: list[Decision] = []
    stops: set[str] = set()
    for d in decisions:
        deadline = session_deadline(d.arr, d.record, now, limits) if d.action is Action.KEEP else None
        if deadline is not None and now >= deadline.at:
            assert d.record is not None
            if warn_first and d.record.warned != deadline.stop_id:
                d = replace(d, reason=f"{deadline.reason(now)}: warned now, stopped at a later run")
            else:
                d = replace(d, action=Action.STOP, reason=deadline.reason(now), actor=CLEANUP_ACTOR)
                stops.add(d.session_id)
        out.append(d)
    return out, stops


def heard_since(decided: SessionRecord | None) -> Callable[[SessionRecord], str | None]:
    """What an idle stop asks, at its conditional write, of the record as it is then: a heartbeat recorded after the
    record it was decided on withdraws it (the reason), else None."""
    before = decided.last_heartbeat if decided is not None else None

    def withdraw(record: SessionRecord) -> str | None:
        beat = record.last_heartbeat
        if beat is not None and (before is None or beat > before):
            return f"a heartbeat came at {beat:%H:%M:%S} UTC, after the idle stop was decided: not idle"
        return None

    return withdraw
