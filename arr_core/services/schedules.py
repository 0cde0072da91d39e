"""Schedules ("Ready by T", issue 21): their CRUD, and the timer's tick that starts each occurrence's one session.

The rules are :mod:`arr_core.domain.schedules`' (pure); this is the I/O around them. A tick runs after every cleanup
run (the ``lease_cleanup`` timer, or ``POST /api/cleanup`` when it is not a dry run), on one host at a time (a lease
row), and:

1. computes each size's lead from history: the p95 of the observed Starting → Ready seconds of that size's sessions
   of the last :data:`LEAD_WINDOW` (at most :data:`LEAD_SAMPLES` records), plus one timer interval, plus
   :data:`MARGIN`;
2. asks :func:`~arr_core.domain.schedules.due_occurrences` what to do (never on save, no replay past the grace);
3. starts ONE session per occurrence that is due: its id is derived from the occurrence (:func:`session_id_for`),
   and a start of an id that exists is :class:`SessionService`'s idempotent repeat (the same session: one ARR
   session, one record), so two hosts, a tick that overlaps an expired lease, or a retry after a crash make one
   session. Each tick in the grace window looks again (a start a crash cut short is driven again);
4. when ARR has no capacity for the size (the session ends in Error ``NoCapacity``) or refuses it (400), tries the
   schedule's fallback sizes in order, each under an id of its own (``-f1``, ``-f2``); the fallback session's
   ``requested`` event says why it was started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

from ..api.views import WEEKDAYS, ScheduleRequest, StartSessionRequest
from ..arr.validation import MAX_LEASE_MINUTES
from ..domain.lifecycle import resumable
from ..domain.records import MAX_TEXT, SessionRecord, utcnow
from ..domain.schedules import (
    DEFAULT_STARTUP,
    LEASE_BUFFER,
    Monthly,
    Occurrence,
    Schedule,
    ScheduleAction,
    ScheduleDecision,
    due_occurrences,
    lease_minutes,
    new_schedule_id,
    next_occurrence,
    startup_lead,
)
from ..domain.warnings import timer_interval
from ..errors import (
    AppError,
    DeadlineExceeded,
    HistoryError,
    InvalidInput,
    InvalidRequestError,
    ScheduleNotFound,
    SessionIdInUse,
)
from .settings import AppSettings

if TYPE_CHECKING:
    from ..store.history import History
    from .sessions import SessionService  # only named here: importing it would load httpx with function_app

log = logging.getLogger("arr_core.schedules")

SCHEDULES_LEASE = "schedules"  # one tick at a time across hosts (a lease row, as the cleanup's)
LEASE_SECONDS = 120.0  # a holder that died frees the ticks after this long
GRACE = timedelta(minutes=30)  # an occurrence is started up to this long after its create-at time (at least 2 ticks)
MARGIN = timedelta(minutes=1)  # added to the lead: a timer that fires a little late, a slow poll of Ready
LEAD_WINDOW = timedelta(days=30)  # the starts a lead is computed from: the last 30 days...
LEAD_SAMPLES = 200  # ...at most this many records of the size, the newest
LEADS_SECONDS = 60.0  # the list reuses leads this long; a tick computes its own
MAX_LOOK_BACK = timedelta(days=1)  # missed occurrences are reported for at most this far back
NO_CAPACITY = "NoCapacity"
START_NOT_COMPLETED = "StartNotCompleted"  # a start the cleanup closed: the next start drives it again
SCHEDULE_LABEL = "schedule"  # every session a schedule starts has this label: the schedule's id
STARTED, ALREADY, FALL_BACK = "started", "already", "fall-back"  # what one size's attempt came to


def session_id_for(occurrence: Occurrence, attempt: int = 0) -> str:
    """The session of an occurrence: ``sched-<12 hex>-<yyyymmdd>`` (the schedule's id and the local date), and
    ``-f<n>`` for the nth fallback size. One id per occurrence and size, so every start of it is the same session."""
    base = f"sched-{occurrence.schedule_id.removeprefix('sch-')}-{occurrence.local_date:%Y%m%d}"
    return f"{base}-f{attempt}" if attempt else base


def fallback_reason(record: SessionRecord) -> str | None:
    """Why the next size is tried after this session: ARR had no capacity (it ended in Error NoCapacity), or ARR
    refused the start before creating it (the size, most likely: the id and lease are the app's own). None when the
    session is, or was, the occurrence's session."""
    if record.status != "Error":
        return None
    if record.error_code == NO_CAPACITY:
        return NO_CAPACITY
    if not record.reached_arr and record.error_code != START_NOT_COMPLETED:
        return f"refused ({record.error_code}: {record.error_message})"
    return None


@dataclass
class TickReport:
    """What one tick did: ``(occurrence id, what)`` pairs."""

    ran_at: datetime
    busy: bool = False  # another host held the tick
    started: list[tuple[str, str]] = field(default_factory=list)  # a session started now
    already: list[tuple[str, str]] = field(default_factory=list)  # it had its session already: nothing new
    fell_back: list[tuple[str, str]] = field(default_factory=list)  # a size given up for the next one
    skipped: list[tuple[str, str]] = field(default_factory=list)  # holiday, saved after, missed
    errors: list[tuple[str, str]] = field(default_factory=list)  # left to the next tick (or out of sizes)

    def summary(self) -> str:
        """One log line."""
        if self.busy:
            return "schedules: another host is ticking"
        parts = [f"started {len(self.started)}", f"already {len(self.already)}", f"fell back {len(self.fell_back)}",
                 f"skipped {len(self.skipped)}", f"errors {len(self.errors)}"]
        shown = [f"{o} {w}" for o, w in (*self.started, *self.fell_back, *self.skipped, *self.errors)][:5]
        return "schedules: " + ", ".join(parts) + (f" ({'; '.join(shown)})" if shown else "")


@dataclass(frozen=True)
class Planned:
    """A schedule with its next occurrence that will run, and the lead it is planned with."""

    schedule: Schedule
    next: Occurrence | None
    lead: timedelta


class ScheduleService:
    """Schedules' CRUD over ``history``, and :meth:`tick`, which starts their sessions through ``sessions``."""

    def __init__(self, sessions: SessionService, history: History, settings: AppSettings,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.sessions = sessions
        self.history = history
        self.settings = settings
        self._clock = clock
        self._holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._leads: tuple[float, dict[str, timedelta]] | None = None  # (the loop's clock, leads) for LEADS_SECONDS

    @property
    def tick_interval(self) -> timedelta:
        return timer_interval(self.settings.cleanup_schedule)

    @property
    def lease_limit(self) -> int:
        """The largest lease a start may ask for, as the session service allows it (the setting, at most ARR's)."""
        return min(self.settings.max_lease_minutes, MAX_LEASE_MINUTES)

    @property
    def grace(self) -> timedelta:
        return max(GRACE, 2 * self.tick_interval)

    # -- CRUD -----------------------------------------------------------------------------------------------

    async def create(self, request: ScheduleRequest) -> Schedule:
        now = self._clock()
        schedule = self._build(request, new_schedule_id(), created_at=now)
        await self.history.add_schedule(schedule)
        return schedule

    async def list(self) -> list[Schedule]:
        return sorted(await self.history.schedules(), key=lambda s: s.id)

    async def get(self, schedule_id: str) -> Schedule:
        schedule = await self.history.schedule(schedule_id)
        if schedule is None:
            raise _not_found(schedule_id)
        return schedule

    async def replace(self, schedule_id: str, request: ScheduleRequest) -> Schedule:
        """PUT: the schedule becomes ``request`` (its id and createdAt stay); ``updatedAt`` is now, so an occurrence
        whose create-at time has passed never starts because of this save."""
        now = self._clock()
        self._build(request, schedule_id, created_at=now)  # refused before anything is read
        replaced = await self.history.update_schedule(
            schedule_id, lambda old: self._build(request, old.id, created_at=old.created_at,
                                                 updated_at=max(now, old.created_at)))
        if replaced is None:
            raise _not_found(schedule_id)
        return replaced

    async def delete(self, schedule_id: str) -> Schedule:
        """Remove it; the sessions it started run on (their lease ends them)."""
        removed = await self.history.remove_schedule(schedule_id)
        if removed is None:
            raise _not_found(schedule_id)
        return removed

    async def plan(self, schedules: Iterable[Schedule]) -> list[Planned]:
        """Each schedule's next occurrence that will run, as the timer will see it (never on save included)."""
        schedules = list(schedules)
        leads = await self.leads({s.size for s in schedules})
        now = self._clock()
        return [Planned(s, next_occurrence(s, now, lead=leads[s.size]), leads[s.size]) for s in schedules]

    def _build(self, request: ScheduleRequest, schedule_id: str, *, created_at: datetime,
               updated_at: datetime | None = None) -> Schedule:
        """The domain's schedule from a request: the rules across fields are a 400 naming the field."""
        size = request.size or self.settings.default_size.value
        fallbacks = tuple(request.fallbacks or ())
        if (request.weekdays is None) == (request.monthly is None):
            field_ = "monthly" if request.monthly is not None else "weekdays"
            raise InvalidInput("give weekdays or monthly, one of the two", field=field_)
        if size in fallbacks or len(set(fallbacks)) != len(fallbacks):
            raise InvalidInput(f"fallbacks are sizes other than {size} and each other", field="fallbacks")
        limit = self.lease_limit
        if request.duration_minutes + LEASE_BUFFER / timedelta(minutes=1) > limit:
            raise InvalidInput(f"durationMinutes plus {LEASE_BUFFER / timedelta(minutes=1):g} minutes must fit the "
                               f"maximum lease of {limit} minutes (ARR_MAX_LEASE_MINUTES)", field="durationMinutes")
        monthly = request.monthly
        try:
            return Schedule(
                id=schedule_id, time_zone=request.time_zone, ready_by=time.fromisoformat(request.ready_by),
                duration_minutes=request.duration_minutes, size=size, created_at=created_at, updated_at=updated_at,
                weekdays=frozenset(WEEKDAYS.index(d) for d in request.weekdays or ()),
                monthly=Monthly(monthly.nth, WEEKDAYS.index(monthly.weekday)) if monthly else None,
                exceptions=frozenset(request.exceptions or ()), labels=dict(request.labels or {}),
                requested_by=request.requested_by, fallbacks=fallbacks,
                enabled=request.enabled is not False)
        except ValueError as exc:  # the model checks each field first: this is a rule the two do not share
            raise InvalidInput(str(exc), field="body") from exc

    # -- the lead -------------------------------------------------------------------------------------------

    async def leads(self, sizes: Iterable[str], *, fresh: bool = False) -> dict[str, timedelta]:
        """How long before its Ready-by time a session of each size is created (see the module's docstring)."""
        sizes = set(sizes)
        loop = asyncio.get_running_loop()
        if not fresh and self._leads is not None and loop.time() - self._leads[0] < LEADS_SECONDS \
                and sizes <= self._leads[1].keys():
            return self._leads[1]
        leads = {size: startup_lead(await self.samples(size), tick=self.tick_interval, margin=MARGIN,
                                    default=DEFAULT_STARTUP[size]) for size in sorted(sizes)}
        self._leads = (loop.time(), leads)
        return leads

    async def samples(self, size: str) -> list[float]:
        """The observed Starting → Ready seconds of the newest sessions of ``size`` (ARR's creation to the first
        time the app saw it Ready: a little more than ARR took, never less)."""
        now = self._clock()
        records, _ = await self.history.history_page(now - LEAD_WINDOW, now + timedelta(minutes=5), requested_by=None,
                                                     size=size, statuses=None, top=LEAD_SAMPLES, token=None,
                                                     order="newest")
        return [(r.ready_at - (r.arr_created_at or r.created_at)).total_seconds()
                for r in records if r.ready_at is not None]

    # -- the tick -------------------------------------------------------------------------------------------

    async def tick(self, now: datetime | None = None) -> TickReport:
        """Start the sessions that are due (see the module's docstring); one host at a time."""
        now = now or self._clock()
        report = TickReport(now)
        schedules = [s for s in await self.history.schedules() if s.enabled]
        if not schedules:
            return report
        if not await self.history.take_lease(SCHEDULES_LEASE, self._holder, LEASE_SECONDS):
            report.busy = True
            return report
        try:
            await self._tick(schedules, now, report)
        finally:
            try:
                await self.history.release_lease(SCHEDULES_LEASE, self._holder)
            except (HistoryError, DeadlineExceeded) as exc:  # it expires by itself
                log.warning("schedules lease not released: %s", exc)
        return report

    async def _tick(self, schedules: list[Schedule], now: datetime, report: TickReport) -> None:
        previous = await self.history.schedules_ticked()
        leads = await self.leads({s.size for s in schedules}, fresh=True)
        decisions = due_occurrences(schedules, now, leads=leads, grace=self.grace,
                                    previous_tick=max(previous, now - MAX_LOOK_BACK) if previous else None)
        by_id = {s.id: s for s in schedules}
        for decision in decisions:
            schedule = by_id[decision.occurrence.schedule_id]
            if decision.action is ScheduleAction.START:
                await self._start(schedule, decision, leads[schedule.size], report)
            else:
                report.skipped.append((decision.occurrence.id, f"{decision.action.value}: {decision.reason}"))
        await self.history.mark_schedules_ticked(now)

    async def _start(self, schedule: Schedule, decision: ScheduleDecision, lead: timedelta,
                     report: TickReport) -> None:
        """The occurrence's one session: its size's, else the first fallback's that ARR takes."""
        occurrence = decision.occurrence
        lease = min(lease_minutes(schedule, lead), self.lease_limit)
        after: str | None = None  # why the size before was given up
        given_up: list[tuple[str, str]] = []  # reported with what came of them, not again at every later tick
        for attempt, size in enumerate((schedule.size, *schedule.fallbacks)):
            session_id = session_id_for(occurrence, attempt)
            try:
                outcome, what = await self._attempt(schedule, decision, session_id, size, lease, after)
            except AppError as exc:  # ARR, storage, a cap on sessions: the next tick in the grace tries again
                log.warning("schedule %s: starting %s failed: %s", schedule.id, session_id, exc)
                report.fell_back += given_up
                report.errors.append((occurrence.id, f"{session_id}: {exc}"))
                return
            if outcome == FALL_BACK:
                after = f"{size} {what}"
                given_up.append((occurrence.id, f"{session_id}: {what}"))
                continue
            if outcome == STARTED:
                report.fell_back += given_up
            (report.started if outcome == STARTED else report.already).append(
                (occurrence.id, f"{session_id} ({size}): {what}"))
            return
        report.fell_back += given_up
        report.errors.append((occurrence.id, f"no size left: {after}"))

    async def _attempt(self, schedule: Schedule, decision: ScheduleDecision, session_id: str, size: str,
                       lease: int, after: str | None) -> tuple[str, str]:
        """Start (or look again at) one size's session: (STARTED, ALREADY or FALL_BACK, what happened or why the
        next size is to be tried)."""
        record = await self.history.get(session_id)
        if record is not None:
            why = fallback_reason(record)
            if why is not None:
                return FALL_BACK, why
            if record.status != "Starting" and not resumable(record):  # Ready, or ended: it had its session
                return ALREADY, record.status
            size, lease = record.size or size, record.lease_minutes or lease  # a repeat, exactly
        request = StartSessionRequest(
            session_id=session_id, size=size, lease_minutes=lease, keep_alive=True,  # its lease ends it
            labels={**schedule.labels, SCHEDULE_LABEL: schedule.id}, requested_by=schedule.requested_by,
            reason=_reason(schedule, decision, after))
        try:
            state = await self.sessions.start(request)
        except InvalidRequestError as exc:
            if exc.status_code is None:  # refused by the client, not by ARR: not a matter of size
                raise
            return FALL_BACK, f"refused ({exc.code}: {exc.message})"
        except SessionIdInUse:  # another host started it with another lease (its lead had moved): the same occurrence
            return ALREADY, "started elsewhere"
        error = state.arr.error if state.arr is not None else None
        code = error.code if error is not None else (state.record.error_code if state.record else None)
        if state.status == "Error" and code == NO_CAPACITY:
            return FALL_BACK, NO_CAPACITY
        return (STARTED if record is None else ALREADY), state.status


def _reason(schedule: Schedule, decision: ScheduleDecision, after: str | None) -> str:
    occurrence = decision.occurrence
    text = f"schedule {schedule.id}: Ready by {schedule.ready_by:%H:%M} {schedule.time_zone} on {occurrence.local_date}"
    if after is not None:
        text += f", a fallback after {after}"
    return text[:MAX_TEXT]


def _not_found(schedule_id: str) -> ScheduleNotFound:
    return ScheduleNotFound(f"no schedule {schedule_id[:64]!r}", field="id")


__all__ = ["GRACE", "MARGIN", "Planned", "ScheduleService", "TickReport", "fallback_reason", "session_id_for"]
