"""Session operations as the HTTP API offers them: ARR calls plus their history, idempotency and policy."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from typing import TYPE_CHECKING

from .client import ArrClient
from .errors import (
    ArrError,
    AuthenticationError,
    ConflictError,
    HistoryUnavailable,
    InvalidRequestError,
    NotFoundError,
    Rejected,
)
from .records import Event, SessionRecord, utcnow
from .lifecycle import failed_start, fingerprint, observe, view_status
from .models import RenderingSession, SessionStatus
from .settings import AppSettings
from .validation import MAX_LEASE_MINUTES
from .views import ComponentHealth, ExtendSessionRequest, Health, StartSessionRequest

if TYPE_CHECKING:
    from .history import HistoryStore

log = logging.getLogger("arr_core.sessions")
HEALTH_PROBE_ID = "arr-sessions-health-probe"
ACTIVE_WINDOW = timedelta(days=3)  # a session lives at most 24 h from Ready: 3 days of history covers any


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
class StartResult:
    state: SessionState
    started: bool


class SessionService:
    """Start, read, extend, stop and list sessions, keeping every session's history."""

    def __init__(self, arr: ArrClient, history: HistoryStore, settings: AppSettings,
                 *, clock: Callable[[], datetime] = utcnow) -> None:
        self.arr = arr
        self.history = history
        self.settings = settings
        self._clock = clock

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
            raise Rejected(400, "Lease too long", f"leaseMinutes {lease} is above the configured maximum of "
                           f"{limit} minutes (ARR_MAX_LEASE_MINUTES)", field="leaseMinutes")
        return size, lease

    async def start(self, request: StartSessionRequest, idempotency_key: str | None = None) -> StartResult:
        """Record the intent, then ask ARR; repeats (same key or same id and settings) start nothing new."""
        size, lease = self.resolve_start(request)
        now = self._clock()
        session_id = request.session_id or _session_id_for(idempotency_key, now)
        parameters = request.model_dump() | {"size": size, "lease_minutes": lease}
        record = SessionRecord(
            session_id=session_id, created_at=now, size=size, lease_minutes=lease,
            requested_by=request.requested_by, reason=request.reason, labels=request.labels or {},
            keep_alive=bool(request.keep_alive),
            idempotency_key=hashlib.sha256(idempotency_key.encode()).hexdigest()[:16] if idempotency_key else None,
        )
        if idempotency_key is not None:
            claim = await self.history.claim_idempotency(idempotency_key, fingerprint(parameters), session_id)
            if not claim.owned:
                if claim.fingerprint != fingerprint(parameters):
                    raise Rejected(409, "Idempotency-Key reused", "this Idempotency-Key was used in the last 24 h "
                                   "with different parameters", field="Idempotency-Key")
                state = await self.read(claim.session_id, missing_ok=True)
                if state.arr is None and state.record is None:
                    # The first request is still writing its intent: answer with what it is starting.
                    state = SessionState(claim.session_id, None, replace(record, session_id=claim.session_id,
                                                                         created_at=claim.created_at))
                return StartResult(state, started=False)
        existing = await self.history.claim(record, Event(
            "requested", now, to_status="Requested", actor=request.requested_by,
            detail={"size": size, "leaseMinutes": lease, "reason": request.reason}))
        if existing is not None and not existing.settings_match(size, lease):
            raise Rejected(409, "Session id in use", f"session {session_id} already exists with size "
                           f"{existing.size} and a lease of {existing.lease_minutes} minutes", field="sessionId")
        try:
            arr_session = await self.arr.create_session(session_id, size=size, lease_minutes=lease)
        except (InvalidRequestError, ConflictError) as exc:
            if existing is None:
                code, message, at = exc.code, exc.message, self._clock()
                await self.history.update(session_id, lambda r: failed_start(r, code, message, at))
            raise
        # Anything else (throttled, 5xx, timeout) leaves the record "Requested" for the cleanup to reconcile:
        # ARR may or may not have created the session.
        updated = await self._observe(session_id, arr_session)
        return StartResult(SessionState(session_id, arr_session, updated), started=existing is None)

    # -- read -----------------------------------------------------------------------------------------------

    async def read(self, session_id: str, *, missing_ok: bool = False) -> SessionState:
        """Live from ARR, merged with history; history alone when ARR no longer (or not yet) knows it."""
        try:
            arr_session: RenderingSession | None = await self.arr.get_session(session_id)
        except NotFoundError:
            arr_session = None
        if arr_session is not None:
            return SessionState(session_id, arr_session, await self._observe(session_id, arr_session))
        record = await self.history.get(session_id)
        if record is None and not missing_ok:
            raise Rejected(404, "Session not found", f"neither ARR nor history knows session {session_id}")
        return SessionState(session_id, None, record)

    # -- extend ---------------------------------------------------------------------------------------------

    async def extend(self, session_id: str, request: ExtendSessionRequest, actor: str | None = None) -> SessionState:
        """Raise the lease to a new total (ARR's semantics) or by some minutes; policy and ARR limits first."""
        current = await self.arr.get_session(session_id)
        if current.status.is_terminal:
            raise Rejected(409, "Session has ended", f"session {session_id} is {current.status.value}",
                           session_status=current.status.value)
        field = "leaseMinutes" if request.lease_minutes is not None else "extendByMinutes"
        old = current.lease_minutes or 0
        new = request.lease_minutes if request.lease_minutes is not None else old + (request.extend_by_minutes or 0)
        limit = self.lease_limit
        if new > limit:
            raise Rejected(400, "Lease too long", f"the new lease of {new} minutes is above the maximum of {limit} "
                           "minutes", field=field)
        if new <= old:
            raise Rejected(400, "Lease must grow", f"the new lease of {new} minutes must be larger than the "
                           f"current {old} minutes", field=field)
        updated = await self.arr.update_session(session_id, lease_minutes=new)
        now = self._clock()

        def extended(record: SessionRecord) -> tuple[SessionRecord, list[Event]] | None:
            change = observe(record, updated, now, actor=actor)
            base, events = change if change else (record, [])
            return replace(base, lease_minutes=new), [*events, Event(
                "extended", now, actor=actor, detail={"fromMinutes": old, "toMinutes": new})]

        record = await self._update_or_adopt(session_id, updated, extended)
        return SessionState(session_id, updated, record)

    # -- stop -----------------------------------------------------------------------------------------------

    async def stop(self, session_id: str, reason: str | None = None, actor: str | None = None,
                   known: RenderingSession | None = None, record: SessionRecord | None = None) -> SessionState:
        """Stop the session; one that has already ended is simply returned.

        ``known`` is ARR's view from just before (the cleanup's list): then the stop costs one ARR call, not two;
        ``record`` (read with its ETag just before) saves a table read.
        """
        try:
            await self.arr.stop_session(session_id)
        except NotFoundError:
            record = await self.history.get(session_id)
            if record is None:
                raise Rejected(404, "Session not found", f"neither ARR nor history knows session {session_id}") \
                    from None
            return SessionState(session_id, None, record)
        if known is not None and not known.status.is_terminal:
            arr_session = known.model_copy(update={"status": SessionStatus.STOPPED})
        else:
            arr_session = await self.arr.get_session(session_id)
        now = self._clock()
        written = await self._update_or_adopt(session_id, arr_session, lambda r: observe(
            r, arr_session, now, actor=actor, stop_reason=reason or "stopped on request"), record)
        return SessionState(session_id, arr_session, written)

    # -- list -----------------------------------------------------------------------------------------------

    async def list_active(self, statuses: set[str] | None = None) -> list[SessionState]:
        """ARR's Starting and Ready sessions, with what history knows of each."""
        arr_sessions = [s async for s in self.arr.list_sessions()
                        if statuses is None or s.status.value in statuses]
        if not arr_sessions:
            return []
        now = self._clock()
        records = {r.session_id: r async for r in self.history.sessions_created(now - ACTIVE_WINDOW,
                                                                                now + timedelta(minutes=5))}
        return [SessionState(s.id, s, records.get(s.id)) for s in arr_sessions]

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
        except HistoryUnavailable as exc:
            history = ComponentHealth(status="unavailable", detail=str(exc))
        ok = arr.status == "ok" and history.status == "ok"
        return Health(status="ok" if ok else "degraded", arr=arr, history=history)

    # -- plumbing -------------------------------------------------------------------------------------------

    async def _observe(self, session_id: str, arr_session: RenderingSession) -> SessionRecord | None:
        now = self._clock()
        return await self._update_or_adopt(session_id, arr_session, lambda r: observe(r, arr_session, now))

    async def _update_or_adopt(self, session_id: str, arr_session: RenderingSession,
                               mutate: Callable[[SessionRecord], tuple[SessionRecord, list[Event]] | None],
                               known: SessionRecord | None = None) -> SessionRecord | None:
        record = await self.history.update(session_id, mutate, known)
        if record is not None:
            return record
        # ARR knows a session history does not (started elsewhere, or before this app): adopt it.
        now = self._clock()
        created = arr_session.created_at or now
        adopted = SessionRecord(session_id=session_id, created_at=created, status="Requested",
                                size=arr_session.size.value, lease_minutes=arr_session.lease_minutes,
                                reason="adopted: started outside this app")
        await self.history.adopt(adopted, Event("adopted", now, to_status="Requested"))
        return await self.history.update(session_id, mutate) or await self.history.get(session_id)


def _session_id_for(idempotency_key: str | None, now: datetime) -> str:
    """With an Idempotency-Key the id is derived from it, so that even racing duplicates name one ARR session."""
    if idempotency_key is not None:
        return "idem-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"arr-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"


__all__ = ["Rejected", "SessionService", "SessionState", "SessionStatus", "StartResult"]
