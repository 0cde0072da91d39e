"""Session operations as the HTTP API offers them: ARR calls plus their history, idempotency and policy."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from ..api.views import ComponentHealth, ExtendSessionRequest, Health, StartSessionRequest
from ..arr.client import ArrClient
from ..arr.models import RenderingSession, SessionStatus
from ..arr.validation import MAX_LEASE_MINUTES
from ..domain.caps import broken_cap
from ..domain.lifecycle import (
    adopted_record,
    cancel_start,
    failed_start,
    never_ready,
    observe,
    reopen,
    request_stop,
    resumable,
    set_keep_alive,
    stalled_start,
    start_fingerprint,
    view_status,
)
from ..domain.records import REQUESTED, Change, Event, Mutation, SessionRecord, idempotency_row, utcnow
from ..domain.warnings import POSTPONE_MINUTES
from ..errors import (
    ArrError,
    AuthenticationError,
    CapReached,
    ConflictError,
    DeadlineExceeded,
    HistoryError,
    IdempotencyKeyReused,
    InvalidRequestError,
    LeaseMustGrow,
    LeaseTooLong,
    LinkUsed,
    NotFoundError,
    SessionEnded,
    SessionIdInUse,
    SessionNotFound,
    Unavailable,
)
from ..outbound.url_rules import require_callback
from .settings import AppSettings

if TYPE_CHECKING:
    from ..store.history import History
    from .quotas import QuotaService

log = logging.getLogger("arr_core.sessions")
T = TypeVar("T")
HEALTH_PROBE_ID = "arr-sessions-health-probe"
ACTIVE_WINDOW = timedelta(days=3)  # a session lives at most 24 h from Ready: 3 days of history covers any
ADMISSION_LEASE = "admission"
ADMISSION_HOLD = 10.0  # seconds: a host that dies while admitting frees the caps this long after
ADMISSION_WAIT = 20.0  # seconds a start waits for its turn to be counted (then a 503 with Retry-After)


@dataclass(frozen=True)
class SessionState:
    """ARR's view (None when ARR does not know the session) and history's record (None when history does not)."""

    session_id: str
    arr: RenderingSession | None
    record: SessionRecord | None

    @property
    def status(self) -> str:
        return view_status(self.arr, self.record)


@dataclass(frozen=True)
class ActiveSessions:
    """ARR's active sessions; ``history_available`` is False when Table Storage did not answer (records None)."""

    states: list[SessionState]
    history_available: bool = True


LIST_CACHE = timedelta(seconds=5)


class SessionService:
    """Start, read, extend, stop and list sessions, keeping every session's history.

    ARR is the truth about a session, history the memory around it: a read or a stop that reached ARR is not
    failed because history did not answer (the cleanup completes the record); a start records its intent
    before ARR is called, so that no session exists that history could not find again.
    """

    def __init__(self, arr: ArrClient, history: History, settings: AppSettings,
                 *, clock: Callable[[], datetime] = utcnow, quotas: QuotaService | None = None) -> None:
        self.arr = arr
        self.history = history
        self.settings = settings
        self.quotas = quotas  # quotas of Ready-minutes a start or an extend must fit (None: none are checked)
        self._clock = clock
        self._listed: tuple[datetime, list[RenderingSession]] | None = None  # ARR's list, for LIST_CACHE
        # Asked before a new start is recorded; each raises the refusal it stands for (the budget's, for one).
        self.start_guards: list[Callable[[], Awaitable[None]]] = []
        self._changes = 0  # changes this process made at ARR (see _changing)

    # -- start ----------------------------------------------------------------------------------------------

    @property
    def lease_limit(self) -> int:
        """The largest lease allowed: the configured maximum, never above ARR's 1440."""
        return min(self.settings.max_lease_minutes, MAX_LEASE_MINUTES)

    def resolve_start(self, request: StartSessionRequest) -> tuple[str, int]:
        """Defaults from settings, then policy: a lease above the configured maximum is refused."""
        size = request.size or self.settings.default_size.value
        lease = request.lease_minutes if request.lease_minutes is not None else self.settings.default_lease_minutes
        limit = self.lease_limit
        if lease > limit:
            raise LeaseTooLong(f"leaseMinutes {lease} is above the configured maximum of "
                               f"{limit} minutes (ARR_MAX_LEASE_MINUTES)", field="leaseMinutes")
        return size, lease

    async def start(self, request: StartSessionRequest, idempotency_key: str | None = None) -> SessionState:
        """Record the intent, then ask ARR. Repeats (same key, or same id and settings) start nothing new, and
        drive again a start that a crash cut short: ARR's create is idempotent for the same id and settings."""
        size, lease = self.resolve_start(request)
        if request.callback_url is not None:
            require_callback(request.callback_url, field="callbackUrl", development=self.settings.development)
        now = self._clock()
        session_id = request.session_id or new_session_id(now)
        if idempotency_key is not None:
            asked = start_fingerprint(request.model_dump(), size=size, lease_minutes=lease)
            claim = await self.history.claim_key(idempotency_key, asked, session_id)
            if claim.fingerprint != asked:
                raise IdempotencyKeyReused("this Idempotency-Key was used in the last 24 h "
                                           "with different parameters", field="Idempotency-Key")
            session_id = claim.session_id
        intent = SessionRecord(
            session_id=session_id, created_at=now, size=size, lease_minutes=lease,
            requested_by=request.requested_by, reason=request.reason, labels=request.labels or {},
            keep_alive=bool(request.keep_alive), callback_url=request.callback_url,
            idempotency_key=idempotency_row(idempotency_key)[:16] if idempotency_key else None,
        )
        requested = Event("requested", now, to_status=REQUESTED, actor=request.requested_by,
                          detail={"size": size, "leaseMinutes": lease, "reason": request.reason})
        if self.start_guards and await self.history.get(session_id) is None:  # a repeat is no new start
            for guard in self.start_guards:
                await guard()
        if self.settings.caps.any or (self.quotas is not None and await self.quotas.applying(intent)):
            async with self._admission():
                await self._admit(intent)
                record, wrote = await self.history.claim(intent, requested)
        else:
            record, wrote = await self.history.claim(intent, requested)
        if not wrote:
            if not record.settings_match(size, lease):
                raise SessionIdInUse(f"session {session_id} already exists with size "
                                     f"{record.size} and a lease of {record.lease_minutes} minutes", field="sessionId")
            in_progress = record.status == REQUESTED and not stalled_start(record, now)
            if in_progress or not resumable(record):
                return await self.read(session_id, missing_ok=True, fallback=record)
            if record.status != REQUESTED:  # ended before ARR ever knew it: this retry takes it up again
                record = await self.history.update(session_id, lambda r: reopen(r, now), record) or record
        return await self._create(record)

    @asynccontextmanager
    async def _admission(self) -> AsyncIterator[None]:
        """One admission at a time across hosts (a lease row), so that the count and the start it allows are one
        step: two starts at the last free place cannot both pass. Waited for up to ADMISSION_WAIT seconds."""
        holder = f"admit-{uuid.uuid4().hex}"
        loop = asyncio.get_running_loop()
        ends = loop.time() + ADMISSION_WAIT
        while not await self.history.take_lease(ADMISSION_LEASE, holder, ADMISSION_HOLD):
            if loop.time() >= ends:
                raise Unavailable("too many starts at once to check the caps in time; try again")
            await asyncio.sleep(random.uniform(0.02, 0.1))
        try:
            yield
        finally:
            try:
                await self.history.release_lease(ADMISSION_LEASE, holder)
            except HistoryError as exc:  # it runs out by itself
                log.warning("admission lease not released: %s", exc)

    async def _admit(self, intent: SessionRecord) -> None:
        """Refuse a new start that would break a cap (:class:`CapReached`, naming it); a repeat of a start already
        admitted (same id) passes. History's active records are counted; at the cap, ARR's list is asked, so that a
        session ARR has ended but history not yet seen end does not hold a place."""
        if await self.history.get(intent.session_id) is not None:
            return
        if self.quotas is not None:  # its lease must fit each quota of its scope (QuotaExceeded names the quota)
            await self.quotas.admit(intent, intent.lease_minutes or 0)
        if not self.settings.caps.any:
            return
        now = self._clock()
        active = [r async for r in self.history.sessions_created(now - ACTIVE_WINDOW, now + timedelta(minutes=5),
                                                                 only_active=True)]
        caps = self.settings.caps
        if broken_cap(caps, active, intent.requested_by) is None:
            return
        running = {s.id for s in await self.arr_sessions() if not s.status.is_terminal}
        active = [r for r in active if r.session_id in running or r.status == REQUESTED]
        broken = broken_cap(caps, active, intent.requested_by)
        if broken is not None:
            setting, why = broken
            raise CapReached(f"{setting}: {why}", field="requestedBy" if "REQUESTER" in setting else None)

    async def _create(self, record: SessionRecord) -> SessionState:
        """Ask ARR for the session a record intends, and record the answer."""
        session_id = record.session_id
        try:
            arr_session = await self._changing(self.arr.create_session(session_id, size=record.size or "Standard",
                                                                       lease_minutes=record.lease_minutes or 0))
        except (InvalidRequestError, ConflictError) as exc:
            code, message, at = exc.code, exc.message, self._clock()
            with _history_optional(session_id):
                await self.history.update(session_id, lambda r: failed_start(r, code, message, at))
            raise
        except ArrError as exc:
            # Throttled, 5xx, timeout: ARR may or may not have created it. The caller is told which session to
            # poll (a retry must not start a second one); the cleanup reconciles the record either way.
            raise exc.for_session(session_id)
        written = await self._observe(session_id, arr_session)
        return SessionState(session_id, arr_session, written or record)

    # -- read -----------------------------------------------------------------------------------------------

    async def read(self, session_id: str, *, missing_ok: bool = False,
                   fallback: SessionRecord | None = None) -> SessionState:
        """Live from ARR, merged with history; history alone when ARR no longer (or not yet) knows it.

        A start that was accepted but cut short before ARR was asked is driven again here, so that a Logic App
        polling its ``Location`` sees it through.
        """
        arr_session = await self.arr_view(session_id)
        if arr_session is not None:
            return SessionState(session_id, arr_session, await self._observe(session_id, arr_session) or fallback)
        record = await self.history.get(session_id) or fallback
        if record is None and not missing_ok:
            raise SessionNotFound(f"neither ARR nor history knows session {session_id}")
        if record is not None and stalled_start(record, self._clock()):
            return await self._create(record)
        return SessionState(session_id, None, record)

    async def wait_until_ready(self, session_id: str) -> SessionState:
        """The session as :meth:`read` sees it while it is Starting or Ready; :class:`SessionEnded` once it has
        ended, saying whether before or after it was Ready (:func:`~arr_core.domain.lifecycle.never_ready`)."""
        state = await self.read(session_id)
        ended = never_ready(session_id, state.arr, state.record)
        if ended is not None:
            raise ended
        return state

    async def arr_view(self, session_id: str) -> RenderingSession | None:
        """ARR's view of the session now; None when ARR does not know it (never, or no longer: 30 days)."""
        try:
            return await self.arr.get_session(session_id)
        except NotFoundError:
            return None

    # -- extend ---------------------------------------------------------------------------------------------

    async def extend(self, session_id: str, request: ExtendSessionRequest) -> SessionState:
        """Change a running session: raise its lease to a new total (ARR's semantics) or by some minutes, set its
        keepAlive, or both; ``requestedBy`` and ``reason`` go to the events. Everything is checked before anything
        is done (an ended session, policy and ARR's limits).

        A keepAlive lives in history only, so it is written first and history's trouble fails the change before
        ARR is asked (:class:`HistoryUnavailable`); the lease is then ARR's, recorded as before (history optional).
        """
        current = await self.arr.get_session(session_id)
        if current.status.is_terminal:
            raise SessionEnded(f"session {session_id} is {current.status.value}",
                               session_status=current.status.value)
        actor = request.requested_by
        lease = self._new_lease(current, request) if request.changes_lease else None
        field = "leaseMinutes" if request.lease_minutes is not None else "extendByMinutes"
        async with self._lease_admission(session_id, lease, field):  # a growth must fit the quotas of its scope
            record = None
            if request.keep_alive is not None:
                keep_alive, reason, now = request.keep_alive, request.reason, self._clock()
                record = await self._write(session_id, current,
                                           lambda r: set_keep_alive(r, keep_alive, actor, reason, now))
            if lease is None:
                return SessionState(session_id, current, record)
            old, new = lease
            updated = await self._changing(self.arr.update_session(session_id, lease_minutes=new))
            now = self._clock()
            detail = {"fromMinutes": old, "toMinutes": new, **({"reason": request.reason} if request.reason else {})}

            def extended(record: SessionRecord) -> Change:
                change = observe(record, updated, now, actor=actor)
                base, events = change if change else (record, [])
                return replace(base, lease_minutes=new), [*events, Event("extended", now, actor=actor, detail=detail)]

            record = await self._record(session_id, updated, extended, record)
            return SessionState(session_id, updated, record)

    @asynccontextmanager
    async def _lease_admission(self, session_id: str, lease: tuple[int, int] | None,
                               field: str) -> AsyncIterator[None]:
        """Around an extend: when its lease grows and a quota's scope holds the session, the growth is counted under
        the admission (as a start is), which is held until the new lease is recorded, so two extends (or an extend
        and a start) at a quota's last minutes cannot both pass (:class:`QuotaExceeded`, naming ``field``)."""
        if lease is None or self.quotas is None or lease[1] <= lease[0]:
            yield
            return
        record = await self.history.get(session_id)
        if record is None or not await self.quotas.applying(record):
            yield
            return
        async with self._admission():
            await self.quotas.admit(record, lease[1] - lease[0], field=field, lease_now=lease[0])
            yield

    def guard_starts(self, guard: Callable[[], Awaitable[None]]) -> None:
        """Ask ``guard`` before each new start is recorded; it raises the refusal it stands for."""
        self.start_guards.append(guard)

    def capped_lease(self, minutes: int) -> int:
        """``minutes``, or the largest lease allowed when it is more."""
        return min(minutes, self.lease_limit)

    def postponed_lease(self, lease_minutes: int | None) -> int | None:
        """The total lease a stop warning's postpone link offers: POSTPONE_MINUTES more, within the limit; None
        when the lease cannot grow."""
        offered = min((lease_minutes or 0) + POSTPONE_MINUTES, self.lease_limit)
        return offered if offered > (lease_minutes or 0) else None

    async def postpone(self, session_id: str, lease_minutes: int, *, actor: str) -> SessionState:
        """A postpone link: the lease becomes ``lease_minutes`` in all (the total the warning offered), once. A
        second use finds it there already: :class:`LinkUsed`, and nothing changes."""
        request = ExtendSessionRequest(lease_minutes=min(lease_minutes, self.lease_limit), requested_by=actor,
                                       reason="postponed from a stop warning")
        try:
            return await self.extend(session_id, request)
        except LeaseMustGrow as exc:
            raise LinkUsed(f"this link was used already: the lease of session {session_id} is already "
                           f"{lease_minutes} minutes or more") from exc

    def _new_lease(self, current: RenderingSession, request: ExtendSessionRequest) -> tuple[int, int]:
        """(the lease now, the lease asked for): a new total, or the current one plus some minutes; refused above
        the limit (:class:`LeaseTooLong`) and unless it grows (:class:`LeaseMustGrow`)."""
        field = "leaseMinutes" if request.lease_minutes is not None else "extendByMinutes"
        old = current.lease_minutes or 0
        new = request.lease_minutes if request.lease_minutes is not None else old + (request.extend_by_minutes or 0)
        limit = self.lease_limit
        if new > limit:
            raise LeaseTooLong(f"the new lease of {new} minutes is above the maximum of {limit} "
                               "minutes", field=field)
        if new <= old:
            raise LeaseMustGrow(f"the new lease of {new} minutes must be larger than the "
                                f"current {old} minutes", field=field)
        return old, new

    # -- stop ----------------------------------------------------------------------------------------------

    async def stop(self, session_id: str, reason: str | None = None, actor: str | None = None,
                   known: RenderingSession | None = None, record: SessionRecord | None = None,
                   unless: Callable[[SessionRecord], str | None] | None = None) -> SessionState:
        """Stop the session; one that has already ended is simply returned.

        The reason is noted before ARR is asked, so a crash in between loses neither the reason nor the stop
        (the cleanup finishes it). A start ARR never had is cancelled, so no later poll or retry starts it.
        ``known`` is ARR's view from just before (the cleanup's list): then the stop costs one ARR call, not
        two; ``record`` (read with its ETag just before) saves a table read. ``unless`` is asked about the record
        as the conditional write finds it (so about a change that came after ``record`` was read, at no extra
        read): a reason it gives withdraws the stop (:class:`StopWithdrawn`) before ARR is asked.
        """
        reason = reason or "stopped on request"
        now = self._clock()
        withdrawn: list[str] = []

        def noted(r: SessionRecord) -> Change:
            withdrawn.clear()  # of an earlier try, on a record a race replaced
            why = unless(r) if unless is not None else None
            if why is not None:
                withdrawn.append(why)
                return None
            return request_stop(r, reason, actor, now)

        with _history_optional(session_id):
            record = await self.history.update(session_id, noted, record)
        if withdrawn:
            raise StopWithdrawn(withdrawn[-1])
        try:
            await self._changing(self.arr.stop_session(session_id))
        except NotFoundError:
            record = await self.history.get(session_id)
            if record is None:
                raise SessionNotFound(f"neither ARR nor history knows session {session_id}") from None
            record = await self.history.update(session_id, lambda r: cancel_start(r, reason, actor, now),
                                               record) or record
            return SessionState(session_id, None, record)
        if known is not None and not known.status.is_terminal:
            arr_session = known.model_copy(update={"status": SessionStatus.STOPPED})
        else:
            arr_session = await self.arr.get_session(session_id)
        now = self._clock()
        written = await self._record(session_id, arr_session, lambda r: observe(
            r, arr_session, now, actor=actor, stop_reason=reason), record)
        return SessionState(session_id, arr_session, written)

    # -- list -----------------------------------------------------------------------------------------------

    async def list_active(self, statuses: set[str] | None = None) -> ActiveSessions:
        """ARR's Starting and Ready sessions, with what history knows of each (if it answers)."""
        arr_sessions = [s for s in await self._arr_list() if statuses is None or s.status.value in statuses]
        if not arr_sessions:
            return ActiveSessions([])
        now = self._clock()
        try:
            records = {r.session_id: r async for r in self.history.sessions_created(now - ACTIVE_WINDOW,
                                                                                    now + timedelta(minutes=5))}
        except HistoryError as exc:
            log.warning("listing sessions without history: %s", exc)
            return ActiveSessions([SessionState(s.id, s, None) for s in arr_sessions], history_available=False)
        return ActiveSessions([SessionState(s.id, s, records.get(s.id)) for s in arr_sessions])

    async def arr_sessions(self) -> list[RenderingSession]:
        """ARR's list of sessions now, asked for (the cleanup's: never the one reused for LIST_CACHE)."""
        return [s async for s in self.arr.list_sessions()]

    async def _arr_list(self) -> list[RenderingSession]:
        """ARR's list, reused for LIST_CACHE (dashboards and flows poll it; ARR paces list calls). A change this
        process makes at ARR forgets it (:meth:`_changing`), so a caller sees its own start or stop at once."""
        now = self._clock()
        if self._listed is not None and now - self._listed[0] < LIST_CACHE:
            return self._listed[1]
        changes = self._changes
        listed = await self.arr_sessions()
        if changes == self._changes:  # a list asked for before a change that ended meanwhile may miss it
            self._listed = (now, listed)
        return listed

    async def _changing(self, change: Awaitable[T]) -> T:
        """Every call that changes a session at ARR (create, update, stop) goes through here: once it is over,
        whatever its outcome (a failed call may still have acted), ARR's list reused for LIST_CACHE is forgotten.
        The one place the cache is cleared, so a new change cannot forget it (tests/unit/test_sessions.py checks
        that every changing call of :class:`ArrClient` in this class is wrapped)."""
        try:
            return await change
        finally:
            self._listed = None
            self._changes += 1

    # -- health ---------------------------------------------------------------------------------------------

    async def health(self) -> Health:
        arr = ComponentHealth(status="ok")
        try:
            await self.arr.get_session(HEALTH_PROBE_ID)
        except NotFoundError:
            pass
        except AuthenticationError as exc:
            log.error("ARR refused our credentials: %s", exc)
            arr = ComponentHealth(status="misconfigured", detail="ARR refused the configured credentials")
        except ArrError as exc:
            arr = ComponentHealth(status="unavailable", detail=f"{exc.code} ({exc.status_code or 'no answer'})")
        history = ComponentHealth(status="ok")
        try:
            await self.history.ping()
        except HistoryError as exc:
            history = ComponentHealth(status="unavailable", detail=str(exc))
        ok = arr.status == "ok" and history.status == "ok"
        return Health(status="ok" if ok else "degraded", arr=arr, history=history)

    # -- plumbing -------------------------------------------------------------------------------------------

    async def _observe(self, session_id: str, arr_session: RenderingSession) -> SessionRecord | None:
        now = self._clock()
        return await self._record(session_id, arr_session, lambda r: observe(r, arr_session, now))

    async def _record(self, session_id: str, arr_session: RenderingSession, mutate: Mutation,
                      known: SessionRecord | None = None) -> SessionRecord | None:
        """Write what ARR just told us (:meth:`_write`). History trouble is logged, not raised: ARR has acted, and
        the cleanup brings the record up to date."""
        with _history_optional(session_id):
            return await self._write(session_id, arr_session, mutate, known)
        return known

    async def _write(self, session_id: str, arr_session: RenderingSession, mutate: Mutation,
                     known: SessionRecord | None = None) -> SessionRecord | None:
        """Apply ``mutate`` to the session's record; adopt the session first if history does not know it."""
        record = await self.history.update(session_id, mutate, known)
        if record is not None:
            return record
        # ARR knows a session history does not (started elsewhere, or its record was lost): adopt it.
        now = self._clock()
        adopted = adopted_record(arr_session, now, history_since=await self.history.since())
        await self.history.claim(adopted, Event("adopted", now, to_status=REQUESTED))
        return await self.history.update(session_id, mutate) or await self.history.get(session_id)


class StopWithdrawn(Exception):  # a decision, not a failure
    """An automatic stop withdrawn because the session's record, as written, says to keep it (the reason)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@contextmanager
def _history_optional(session_id: str) -> Iterator[None]:
    """For writes that follow an ARR action: a failure, or the request's budget running out, is logged and the
    caller answers with ARR's view (a 504 there would hide a session ARR has made, inviting a second one)."""
    try:
        yield
    except (HistoryError, DeadlineExceeded) as exc:
        log.warning("history of %s not written (%s); the next cleanup completes it", session_id, exc)


def new_session_id(now: datetime) -> str:
    """A fresh id for a start that names none (with an Idempotency-Key, the key's first request picks it)."""
    return f"arr-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"


__all__ = ["ActiveSessions", "SessionService", "SessionState", "SessionStatus", "new_session_id"]
