"""The cleanup run: the I/O around :mod:`arr_core.domain.cleanup`'s decisions (questions about the past are
:mod:`.queries`')."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from .. import deadline
from ..api import signed_links
from ..api.views import CleanupAction, CleanupReport, NightlyShutdown, OverrideRequest, StopActions
from ..domain.cleanup import (
    Action,
    CleanupPolicy,
    Decision,
    decide,
    judge,
    next_shutdown,
    nightly_due,
    shutdown_instant,
)
from ..domain.hooks.deliveries import KEEP_DELIVERIES
from ..domain.idle import heard_since, idle_stops
from ..domain.lifecycle import observe, vanished
from ..domain.notifications import pending_change
from ..domain.overrides import MAX_OVERRIDE, Override, covering, new_override_id
from ..domain.quotas import quota_stops
from ..domain.records import CLEANUP_ACTOR, NIGHTLY_ACTOR, REQUESTED, Event, SessionRecord, utcnow
from ..domain.warnings import StopKind, UpcomingStop, next_stop, timer_interval, warning_due
from ..errors import (
    ArrError,
    CleanupRunning,
    DeadlineExceeded,
    HistoryError,
    InvalidInput,
    LinkUsed,
    OverrideNotFound,
    Unavailable,
)
from .sessions import ACTIVE_WINDOW, SessionService, StopWithdrawn
from .settings import AppSettings

if TYPE_CHECKING:
    from ..arr.models import RenderingSession
    from ..store.history import History
    from .notifier import Links, Notifier, Signer
    from .quotas import QuotaService

log = logging.getLogger("arr_core.maintenance")
CLEANUP_LEASE = "cleanup"
T = TypeVar("T")
LEASE_MARGIN_SECONDS = 60.0  # a holder that died frees the cleanup this long after its budget
OVERRIDES_SECONDS = 1.0  # a nightly stop sees an override made up to this long before it
BOOKKEEPING_SECONDS = 15.0  # after acting: the nightly mark, the run record, the lease release (5 s each at most)


async def side_by_side(items: Iterable[T], work: Callable[[T], Awaitable[None]], *, limit: int,
                       ends: float) -> list[T]:
    """``work`` on every item, ``limit`` at a time, until ``ends`` (the event loop's clock); the items it did not
    finish, for the next run. Nothing is begun once the time is up, and nothing goes on after this returns (or is
    cancelled): a run never acts after it has answered."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(limit)
    not_begun: list[T] = []

    async def one(item: T) -> None:
        async with gate:
            if loop.time() >= ends:
                not_begun.append(item)
                return
            await work(item)

    tasks = {asyncio.create_task(one(item)): item for item in items}
    pending: set[asyncio.Task[None]] = set()
    try:
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, ends - loop.time()))
    finally:
        late = [task for task in tasks if not task.done()]
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    return not_begun + [tasks[task] for task in pending]


def _deferred(decision: Decision) -> CleanupAction:
    return CleanupAction(id=decision.session_id, reason=f"{decision.action.value}: out of time, left to the next run")


def policy_from(settings: AppSettings) -> CleanupPolicy:
    return CleanupPolicy.from_settings(time_zone=settings.time_zone, nightly_at=settings.nightly_shutdown_at,
                                       max_session_minutes=settings.max_session_minutes,
                                       stuck_starting_minutes=settings.stuck_starting_minutes,
                                       idle_after_ready_minutes=settings.idle_after_ready_minutes,
                                       idle_minutes=settings.idle_minutes)


class Maintenance:
    """Runs the cleanup.

    It stops sessions, and reads ARR, through ``sessions`` (so a stop is the same whoever asks, and ARR's list
    reused for list calls is forgotten); it keeps its own books (the lease, the nights, the runs, the records it
    reconciles) in ``history``, given explicitly, as ``settings`` are.
    """

    def __init__(self, sessions: SessionService, notifier: Notifier | None = None, *, history: History,
                 settings: AppSettings, clock: Callable[[], datetime] = utcnow,
                 quotas: QuotaService | None = None) -> None:
        self.sessions = sessions
        self.notifier = notifier
        self.history = history
        self.settings = settings
        self.quotas = quotas  # the running sessions of a scope whose quota is reached are stopped (None: no quotas)
        self.policy = policy_from(self.settings)
        self._clock = clock
        # One run at a time: in this process by a lock, across instances by a lease row held in this process's
        # name (so a lease whose write timed out, and landed later, is ours to take again, not a 75 s block).
        self._running = asyncio.Lock()
        self._overrides_read = float("-inf")  # when this run's overrides were read (the loop's clock)
        self._holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def next_nightly_shutdown(self) -> NightlyShutdown | None:
        """When the next nightly shutdown runs, in the configured time zone; None when none is configured."""
        at = next_shutdown(self._clock(), self.policy)
        return None if at is None else NightlyShutdown(next_at=at, time_zone=self.policy.time_zone.key)

    # -- overrides ------------------------------------------------------------------------------------------

    async def add_override(self, request: OverrideRequest) -> Override:
        """Exempt a session or a label scope from the nightly shutdown until ``request.until`` (in the future, at
        most MAX_OVERRIDE ahead: longer is keepAlive's job)."""
        now = self._clock()
        until = request.until if request.until.tzinfo else request.until.replace(tzinfo=now.tzinfo)
        if until <= now:
            raise InvalidInput("until must be in the future", field="until")
        if until > now + MAX_OVERRIDE:
            raise InvalidInput(f"until must be at most {MAX_OVERRIDE.days} days ahead (for longer, set keepAlive)",
                               field="until")
        override = Override(id=new_override_id(), until=until, created_at=now, session_id=request.session_id,
                            labels=dict(request.labels or {}), reason=request.reason,
                            requested_by=request.requested_by)
        await self.history.add_override(override)
        return override

    async def list_overrides(self) -> list[Override]:
        return sorted(await self.history.overrides(), key=lambda o: o.until, reverse=True)

    async def remove_override(self, override_id: str) -> Override:
        removed = await self.history.remove_override(override_id)
        if removed is None:
            raise OverrideNotFound(f"no override {override_id[:64]!r}", field="id")
        return removed

    # -- cleanup --------------------------------------------------------------------------------------------

    async def run_cleanup(self, *, dry_run: bool = False, mode: str = "lease", budget_seconds: float | None = None,
                          links: Links | None = None, signer: Signer | None = None) -> CleanupReport:
        """Decide (pure), then act on each session with bounded concurrency; one failure stops nothing else.

        One run at a time across instances (a lease row in the table; :class:`CleanupRunning` otherwise). Work
        not done within the time budget is reported as ``deferred`` and left to the next run, so an HTTP caller
        always gets its answer in time. ``dry_run`` decides and reports without acting (and without the lease).
        With ``links`` (key-less: they go to third parties), the changes it made, and any a crash left unannounced,
        are announced to subscribers, and the automatic stops now near are warned of (with ``signer``'s signed
        links to postpone them or keep the session tonight).
        """
        loop = asyncio.get_running_loop()
        budget = budget_seconds or self.settings.cleanup_budget_seconds
        left = deadline.remaining()  # an HTTP caller's budget: the report must reach it in time
        if left is not None:
            budget = max(1.0, min(budget, left - BOOKKEEPING_SECONDS))
        ends = loop.time() + budget
        if dry_run:
            return await self._run(dry_run, mode, ends, None, None)
        if self._running.locked():
            raise CleanupRunning("this instance is running the cleanup")
        async with self._running:
            if not await self.history.take_lease(CLEANUP_LEASE, self._holder, budget + LEASE_MARGIN_SECONDS):
                raise CleanupRunning("another instance is running the cleanup")
            try:
                return await self._run(dry_run, mode, ends, links, signer)
            finally:
                try:
                    await self.history.release_lease(CLEANUP_LEASE, self._holder)
                except (HistoryError, DeadlineExceeded) as exc:  # it expires by itself
                    log.warning("cleanup lease not released: %s", exc)

    async def _run(self, dry_run: bool, mode: str, ends: float, links: Links | None,
                   signer: Signer | None) -> CleanupReport:
        now = self._clock()
        arr_sessions = await self.sessions.arr_sessions()
        records = [r async for r in self.history.sessions_created(now - ACTIVE_WINDOW, now + timedelta(minutes=5),
                                                                  only_active=True)]
        night = None
        cutoff = None
        if mode == "nightly":
            cutoff = now
        else:
            local_today = now.astimezone(self.policy.time_zone).date()
            done = await self.history.nights_done([local_today, local_today - timedelta(days=1)])
            due = nightly_due(now, self.policy, done)
            if due is not None:
                night, cutoff = due
        since = await self.history.since()
        warning = self.settings.stop_warning_minutes > 0
        overrides = await self.history.overrides() if cutoff is not None or warning else []
        self._overrides_read = asyncio.get_running_loop().time()
        decisions = decide(arr_sessions, records, now, self.policy, nightly_cutoff=cutoff, history_since=since,
                           overrides=overrides)
        # Idle sessions (no client heartbeat) are stopped too; warned first when a warning can be sent.
        can_warn = warning and self.notifier is not None and (dry_run or links is not None)
        decisions, idle = idle_stops(decisions, now, self.policy, warn_first=can_warn)
        decisions, over_quota = await self._quota_stops(decisions, now)  # scopes whose quota is reached
        report = CleanupReport(ran_at=now, dry_run=dry_run, mode="nightly" if cutoff else "lease",
                               stopped=[], kept=[], reconciled=[], errors=[])
        if dry_run:
            for d in decisions:
                if d.adopt:
                    report.reconciled.append(CleanupAction(id=d.session_id, reason="would adopt into history"))
                bucket = {Action.STOP: report.stopped, Action.KEEP: report.kept}.get(d.action, report.reconciled)
                bucket.append(CleanupAction(id=d.session_id, reason=d.reason))
            report.warned.extend(CleanupAction(id=stop.session_id, reason=f"would warn: {stop.reason}")
                                 for _, _, stop in self._warnings_due(decisions, [], now, overrides))
            return report
        changed: list[SessionRecord] = []

        async def carry_out(d: Decision) -> None:
            await self._guard(report, d, self._carry_out(d, report, cutoff, changed, overrides, idle,
                                                         over_quota.get(d.session_id)))

        left = await side_by_side(decisions, carry_out, limit=self.settings.stop_concurrency, ends=ends)
        report.deferred.extend(_deferred(d) for d in left)
        if links is not None and self.notifier is not None:
            await self._announce([*(r for r in records if pending_change(r)), *changed], links, ends)
            await self._warn(self._warnings_due(decisions, changed, now, overrides), report, links, signer, ends)
        if night is not None and not report.errors and not report.deferred:
            await self.history.mark_night(night, now)
        await self.history.record_run(report)
        await self._purge_deliveries(now, ends)
        return report

    # -- warnings before automatic stops ----------------------------------------------------------------------

    def _warnings_due(self, decisions: list[Decision], changed: list[SessionRecord], now: datetime,
                      overrides: list[Override]) -> list[tuple[RenderingSession, SessionRecord, UpcomingStop]]:
        """The sessions this run keeps whose next automatic stop is near enough to warn of now (the record as this
        run last wrote it: a warning already marked is not sent again)."""
        if self.settings.stop_warning_minutes <= 0:
            return []
        lead, tick = timedelta(minutes=self.settings.stop_warning_minutes), timer_interval(
            self.settings.cleanup_schedule)
        latest = {r.session_id: r for r in changed}
        due = []
        for d in decisions:
            record = latest.get(d.session_id, d.record)
            if d.action is not Action.KEEP or d.arr is None or record is None:
                continue
            stop = next_stop(d.arr, record, now, self.policy, overrides)
            if stop is not None and stop.kind is StopKind.IDLE and stop.at <= now:
                stop = replace(stop, at=now + tick)  # found idle past its time, unwarned: the next run stops it
            if stop is not None and warning_due(stop, record, now, lead=lead, tick=tick):
                due.append((d.arr, record, stop))
        return due

    def _actions(self, arr: RenderingSession, stop: UpcomingStop, signer: Signer | None) -> StopActions:
        """The signed links a warning carries: what can move this stop, good until it happens."""
        if signer is None:
            return StopActions()
        postpone = keep = None
        lease = self.sessions.postponed_lease(arr.lease_minutes)
        if stop.postponable and lease is not None:
            postpone = signer(signed_links.postpone_path(arr.id, lease), stop.at)
        if stop.keepable_tonight:
            night = stop.at.astimezone(self.policy.time_zone).date()
            keep = signer(signed_links.keep_tonight_path(arr.id, night), stop.at)
        return StopActions(postpone=postpone, keep_tonight=keep)

    async def _warn(self, due: list[tuple[RenderingSession, SessionRecord, UpcomingStop]], report: CleanupReport,
                    links: Links, signer: Signer | None, ends: float) -> None:
        """Send the warnings side by side, within the run's budget; best effort as the announcements: one left
        unsent (a queue outage, out of time) is unmarked, and the next run sends it."""
        notifier = self.notifier
        assert notifier is not None

        async def warn(item: tuple[RenderingSession, SessionRecord, UpcomingStop]) -> None:
            arr, record, stop = item
            try:
                await notifier.warn(record, stop, self._actions(arr, stop, signer), links, arr)
            except (Unavailable, DeadlineExceeded, HistoryError) as exc:
                log.warning("warning of %s's stop left to the next run: %s", stop.session_id, exc)
                return
            report.warned.append(CleanupAction(id=stop.session_id, reason=f"{stop.kind.value} at "
                                               f"{stop.at:%Y-%m-%d %H:%M} UTC: {stop.reason}"))

        await side_by_side(due, warn, limit=self.settings.stop_concurrency, ends=ends)

    async def keep_tonight(self, session_id: str, night: date, *, actor: str) -> Override:
        """A keep-tonight link: an override of ``night``'s shutdown for one session, made once (its id comes from
        the session and the night: a second use finds it and raises :class:`LinkUsed`)."""
        now = self._clock()
        at = shutdown_instant(night, self.policy) if self.policy.nightly_at is not None else None
        if at is None or at + timedelta(hours=self.policy.catch_up_hours) <= now:
            raise LinkUsed("that night's shutdown is over: this link has nothing left to do")
        override_id = "ovr-" + hashlib.sha256(f"{session_id}\n{night.isoformat()}".encode()).hexdigest()[:12]
        if any(o.id == override_id for o in await self.history.overrides()):
            raise LinkUsed(f"this link was used already: session {session_id} is kept on the night of {night}")
        override = Override(id=override_id, until=at + timedelta(hours=self.policy.catch_up_hours), created_at=now,
                            session_id=session_id, reason=f"keep tonight ({night}), from a stop warning",
                            requested_by=actor)
        await self.history.add_override(override)
        return override

    async def _exemption(self, overrides: list[Override]) -> Callable[[SessionRecord], str | None]:
        """What a nightly stop asks, at its conditional write, of the record as it is then: a keepAlive or an
        override that arrived since the run decided wins (AVD's race: a host stopped just after a user joined).
        The record costs no read (a change since the run read it fails the write, which reads it again); the
        overrides are read again at most every OVERRIDES_SECONDS."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._overrides_read > OVERRIDES_SECONDS:
            overrides[:] = await self.history.overrides()
            self._overrides_read = loop.time()
        now = self._clock()

        def exempt(record: SessionRecord) -> str | None:
            if record.keep_alive:
                return "keepAlive (set while the nightly shutdown ran)"
            override = covering(record, overrides, now)
            return override.describe() if override is not None else None

        return exempt

    async def _purge_deliveries(self, now: datetime, ends: float) -> None:
        """Hook deliveries older than their senders retry (KEEP_DELIVERIES, and a day more) are forgotten, a slice a
        run, while time is left: best effort, the next run does the rest."""
        if asyncio.get_running_loop().time() > ends - 1:
            return
        try:
            purged = await self.history.purge_deliveries(now - KEEP_DELIVERIES - timedelta(days=1))
        except (HistoryError, DeadlineExceeded) as exc:
            log.warning("old hook deliveries not purged: %s", exc)
            return
        if purged:
            log.info("purged %d hook deliveries older than %d days", purged, KEEP_DELIVERIES.days + 1)

    async def _quota_stops(self, decisions: list[Decision], now: datetime) -> tuple[list[Decision], dict[str, Event]]:
        """The decisions with the running sessions of each scope whose quota is reached stopped (reason ``quota <id>
        reached``), and the ``quota-reached`` event each stop writes first. Best effort: history's trouble leaves
        them to the next run."""
        if self.quotas is None:
            return decisions, {}
        try:
            reached = await self.quotas.reached()
        except (HistoryError, DeadlineExceeded) as exc:
            log.warning("quotas not checked: %s", exc)
            return decisions, {}
        return quota_stops(decisions, reached, now)

    async def _carry_out(self, d: Decision, report: CleanupReport, cutoff: datetime | None,
                         changed: list[SessionRecord], overrides: list[Override],
                         idle: set[str] | frozenset[str] = frozenset(), quota_event: Event | None = None) -> None:
        now = self._clock()
        record = d.record
        if d.adopt:
            assert d.arr is not None and record is not None
            record, wrote = await self.history.claim(record, Event("adopted", now, to_status=REQUESTED,
                                                                   actor=CLEANUP_ACTOR))
            if wrote:
                report.reconciled.append(CleanupAction(id=d.session_id, reason="adopted into history"))
            else:  # someone else wrote it meanwhile (a lost race is no error): judge on what they wrote
                d = judge(d.arr, record, now, self.policy, cutoff, overrides)
        if d.action is Action.RECONCILE:
            changed.extend(r for r in [await self._reconcile(d, report)] if r is not None)
            return
        arr = d.arr
        if arr is None:  # a start in progress: nothing to act on yet
            report.kept.append(CleanupAction(id=d.session_id, reason=d.reason))
            return
        if d.action is Action.STOP:
            reason, actor = d.stop_as
            unless = await self._exemption(overrides) if d.actor == NIGHTLY_ACTOR else None
            if d.session_id in idle:  # a heartbeat recorded since the run read the record withdraws it
                unless = heard_since(record)
            if quota_event is not None and d.action is Action.STOP:  # the quota that stops it, on its record first
                record = await self.history.update(
                    d.session_id, lambda r: (r, [quota_event]) if r.is_active and not r.stop_reason else None,
                    record) or record
            try:
                state = await self.sessions.stop(d.session_id, reason, actor=actor, known=arr, record=record,
                                                 unless=unless)
            except StopWithdrawn as kept:
                report.kept.append(CleanupAction(id=d.session_id, reason=kept.reason))
                return
            changed.extend(r for r in [state.record] if r is not None)
            report.stopped.append(CleanupAction(id=d.session_id, reason=d.reason))
            return
        report.kept.append(CleanupAction(id=d.session_id, reason=d.reason))
        before = record.status if record is not None else None
        written = await self.history.update(d.session_id, lambda r: observe(r, arr, now, actor=CLEANUP_ACTOR), record)
        changed.extend(r for r in [written] if r is not None)
        if written is not None and before is not None and written.status != before and not d.adopt:
            report.reconciled.append(CleanupAction(id=d.session_id, reason=f"history updated from ARR: {before} "
                                                   f"-> {written.status}"))

    async def _guard(self, report: CleanupReport, decision: Decision, work: Any) -> None:
        try:
            await work
        except DeadlineExceeded:
            report.deferred.append(_deferred(decision))
        except Exception as exc:  # one failure must not stop the others: it is reported and logged
            log.warning("cleanup of %s failed: %s", decision.session_id, exc)
            detail = str(exc) if isinstance(exc, (ArrError, HistoryError)) else type(exc).__name__
            report.errors.append(CleanupAction(id=decision.session_id, reason=f"{decision.action.value}: {detail}"))

    async def _reconcile(self, decision: Decision, report: CleanupReport) -> SessionRecord | None:
        record = decision.record
        assert record is not None
        now = self._clock()
        arr = await self.sessions.arr_view(record.session_id)
        if arr is not None:
            written = await self.history.update(record.session_id, lambda r: observe(r, arr, now, actor=CLEANUP_ACTOR))
            if written is not None and arr.status.is_terminal:
                report.reconciled.append(CleanupAction(
                    id=record.session_id, reason=f"closed: ARR reports {arr.status.value}, "
                    f"{arr.elapsed_minutes or 0} billed minutes"))
            return written
        written = await self.history.update(record.session_id, lambda r: vanished(r, now, actor=CLEANUP_ACTOR))
        if written is not None:
            report.reconciled.append(CleanupAction(id=record.session_id, reason="closed: ARR does not know it"))
        return written

    async def _announce(self, records: list[SessionRecord], links: Links, ends: float) -> None:
        """Announce what changed, side by side as the stops (each is a queue send and a table write), within the
        run's budget; what is left stays unannounced on its record, for the next run. Best effort: a queue outage
        never fails the cleanup, and ends the announcing."""
        notifier = self.notifier
        assert notifier is not None
        latest = {r.session_id: r for r in records}  # the last one given wins: what this run wrote
        stopped: list[str] = []  # why announcing stopped early, once

        async def announce(record: SessionRecord) -> None:
            if stopped:
                return
            try:
                await notifier.announce(record, links)
            except (Unavailable, DeadlineExceeded) as exc:
                stopped.append(str(exc))

        left = await side_by_side(latest.values(), announce, limit=self.settings.stop_concurrency, ends=ends)
        if left and not stopped:
            stopped.append("out of time")
        if stopped:
            log.warning("announcements left to the next run: %s", stopped[0])


__all__ = ["Maintenance"]
