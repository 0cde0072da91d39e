"""Warm pools: the I/O around :mod:`arr_core.domain.pools`' rules (what a pool is, when it is open, a claim).

:meth:`PoolService.tick` runs after each cleanup (the timer, or ``POST /api/cleanup``): one host at a time (a lease
row), it starts what each open pool lacks, keeps its unclaimed sessions' short leases ahead of them, and stops the
unclaimed sessions of a closed pool. :meth:`PoolService.claim` hands one Ready session to a requester with one
conditional write; two claims of the same session cannot both win (the loser's write fails on the ETag, it reads
the record again, finds it claimed, and tries another).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..api.views import ExtendSessionRequest, PoolView, StartSessionRequest
from ..arr.models import RenderingSession, SessionStatus
from ..domain.pools import (
    CLAIM_TICKET,
    POOL_LABEL,
    PoolSpec,
    PoolState,
    claim,
    cost_per_hour,
    pool_actor,
    pool_state,
)
from ..domain.records import SessionRecord, utcnow
from ..errors import (
    ArrError,
    HistoryError,
    IdempotencyKeyReused,
    PoolEmpty,
    PoolNotFound,
    QuotaExceeded,
    SessionEnded,
)
from .sessions import ACTIVE_WINDOW, SessionService, SessionState, StopWithdrawn
from .settings import AppSettings

if TYPE_CHECKING:
    from ..store.history import History

log = logging.getLogger("arr_core.pools")
POOL_LEASE = "pools"
TICK_SECONDS = 60.0
WARM_LEASE_MINUTES = 60  # an unclaimed session's lease: short, kept ahead by each tick while its window is open
TOP_UP_BELOW_MINUTES = 30  # a tick extends an unclaimed session's lease when less than this is left


@dataclass
class PoolTick:
    """What one tick did, for the log line."""

    started: list[str] = field(default_factory=list)
    extended: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class PoolService:
    def __init__(self, sessions: SessionService, history: History, settings: AppSettings, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.sessions = sessions
        self.history = history
        self.settings = settings
        self.pools: tuple[PoolSpec, ...] = settings.pools
        self._clock = clock
        self._holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def spec(self, name: str) -> PoolSpec:
        found = next((p for p in self.pools if p.name == name), None)
        if found is None:
            known = ", ".join(p.name for p in self.pools) or "none"
            raise PoolNotFound(f"no pool {name[:64]!r} (ARR_POOLS names {known})", field="name")
        return found

    async def states(self) -> list[tuple[PoolState, dict[str, RenderingSession]]]:
        """Each pool as it is now, with ARR's view of its sessions (one list call for all)."""
        if not self.pools:
            return []
        now = self._clock()
        records = [r async for r in self.history.sessions_created(now - ACTIVE_WINDOW, now + timedelta(minutes=5),
                                                                  only_active=True)
                   if POOL_LABEL in r.labels]
        arr = {s.id: s for s in await self.sessions.arr_sessions()}
        return [(pool_state(spec, records, now), arr) for spec in self.pools]

    async def views(self) -> list[PoolView]:
        """Every pool, what it holds now and what it costs per hour."""
        views = []
        for state, arr in await self.states():
            spec = state.spec
            ready = sum(1 for r in state.unclaimed
                        if (s := arr.get(r.session_id)) is not None and s.status is SessionStatus.READY)
            views.append(PoolView(name=spec.name, size=spec.size, count=spec.count, days=list(spec.days),  # type: ignore[arg-type]
                                  opens=f"{spec.opens:%H:%M}", closes=f"{spec.closes:%H:%M}", time_zone=spec.time_zone,
                                  open=state.window is not None, ready=ready, starting=len(state.unclaimed) - ready,
                                  claimed=len(state.claimed), cost_per_hour=cost_per_hour(spec, self.settings.rates),
                                  currency=self.settings.currency))
        return views

    # -- claims -------------------------------------------------------------------------------------------------

    async def claim(self, name: str, requester: str, lease_minutes: int,
                    idempotency_key: str | None = None) -> SessionState:
        """One Ready, unclaimed session of the pool becomes ``requester``'s, with at least ``lease_minutes`` left;
        :class:`PoolEmpty` when none is Ready now.

        With an ``idempotency_key``, only the first request with it claims (it binds the key to a ticket first);
        a retry gets the session that claim won, or a 409 that says the first found the pool empty."""
        spec = self.spec(name)
        ticket = None
        if idempotency_key is not None:
            asked = f"claim\n{name}\n{requester}\n{lease_minutes}"
            bound = await self.history.claim_key(f"claim\n{name}\n{idempotency_key}", asked,
                                                 f"claim-{uuid.uuid4().hex}")
            if bound.fingerprint != asked:
                raise IdempotencyKeyReused("this Idempotency-Key was used in the last 24 h for another claim",
                                           field="Idempotency-Key")
            if not bound.owned:
                return await self._claimed_with(spec, bound.session_id)
            ticket = bound.session_id
        state, arr = next((s, a) for s, a in await self.states() if s.spec.name == name)
        ready = [r for r in state.unclaimed
                 if (s := arr.get(r.session_id)) is not None and s.status is SessionStatus.READY]
        random.shuffle(ready)  # claims side by side try different sessions first
        for record in ready:
            won: list[bool] = []
            now = self._clock()

            def take(current: SessionRecord, now: datetime = now, won: list[bool] = won) -> object:
                change = claim(current, spec.name, requester, now, lease_minutes, ticket)
                won[:] = [change is not None]
                return change

            written = await self.history.update(record.session_id, take, record)  # type: ignore[arg-type]
            if written is None or not won or not won[-1]:
                continue  # another claim won it
            return await self._lease_for(arr[record.session_id], written, requester, lease_minutes, spec)
        warming = len(state.unclaimed) - len(ready)
        raise PoolEmpty(f"pool {name} has no Ready session to hand out now"
                        + (f" ({warming} starting: try again in a minute)" if warming else "")
                        + ("" if state.window else " (its window is closed)"))

    async def _claimed_with(self, spec: PoolSpec, ticket: str) -> SessionState:
        """The session an earlier claim with the same key won."""
        for state, _ in await self.states():
            for record in state.claimed if state.spec.name == spec.name else []:
                if record.labels.get(CLAIM_TICKET) == ticket:
                    return await self.sessions.read(record.session_id, fallback=record)
        raise PoolEmpty(f"the first claim with this Idempotency-Key from pool {spec.name} is still under way or "
                        "found no Ready session; claim again with a new key")

    async def _lease_for(self, arr: RenderingSession, record: SessionRecord, requester: str, lease_minutes: int,
                         spec: PoolSpec) -> SessionState:
        """The claimed session keeps at least ``lease_minutes`` from now: ARR's lease only grows, so a longer one
        already there stays."""
        wanted = self.sessions.capped_lease((arr.elapsed_minutes or 0) + lease_minutes)
        if wanted <= (arr.lease_minutes or 0):
            return SessionState(record.session_id, arr, record)
        try:
            return await self.sessions.extend(record.session_id, ExtendSessionRequest(
                lease_minutes=wanted, requested_by=requester, reason=f"claimed from pool {spec.name}"))
        except SessionEnded:
            raise
        except (ArrError, QuotaExceeded) as exc:  # claimed, with the lease it had: the caller can extend it
            log.warning("pool %s: claimed session %s kept its lease: %s", spec.name, record.session_id, exc)
            return SessionState(record.session_id, arr, record)

    # -- the tick ----------------------------------------------------------------------------------------------

    async def tick(self) -> PoolTick | None:
        """Refill, keep warm, and close: one host at a time; None when another host holds the tick."""
        report = PoolTick()
        if not self.pools:
            return report
        if not await self.history.take_lease(POOL_LEASE, self._holder, TICK_SECONDS):
            return None
        try:
            for state, arr in await self.states():
                await self._tend(state, arr, report)
        finally:
            try:
                await self.history.release_lease(POOL_LEASE, self._holder)
            except HistoryError as exc:  # it expires by itself
                log.warning("pool lease not released: %s", exc)
        return report

    async def _tend(self, state: PoolState, arr: dict[str, RenderingSession], report: PoolTick) -> None:
        spec, now = state.spec, self._clock()
        actor = pool_actor(spec.name)
        for record in state.to_stop:
            try:
                await self.sessions.stop(record.session_id, f"pool {spec.name}: its window closed", actor=actor,
                                         record=record, unless=lambda r: None if r.requested_by == actor
                                         else "claimed meanwhile")
                report.stopped.append(record.session_id)
            except StopWithdrawn:
                continue
            except (ArrError, HistoryError) as exc:
                report.failed.append(f"{record.session_id}: {exc}")
        if state.window is None:
            return
        _, closes = state.window
        for record in state.unclaimed:  # keep their short leases ahead of them, until the window closes
            session = arr.get(record.session_id)
            if session is None or session.status is not SessionStatus.READY or session.remaining_minutes is None:
                continue
            if session.remaining_minutes >= TOP_UP_BELOW_MINUTES:
                continue
            total = (session.elapsed_minutes or 0) + spec.warm_lease(now, closes, WARM_LEASE_MINUTES)
            if total > (session.lease_minutes or 0):
                try:
                    await self.sessions.extend(record.session_id, ExtendSessionRequest(
                        lease_minutes=self.sessions.capped_lease(total), requested_by=actor,
                        reason="kept warm"))
                    report.extended.append(record.session_id)
                except (ArrError, HistoryError, SessionEnded, QuotaExceeded) as exc:
                    report.failed.append(f"{record.session_id}: {exc}")
        for _ in range(state.missing):
            session_id = f"pool-{spec.name}-{uuid.uuid4().hex[:12]}"
            try:
                await self.sessions.start(StartSessionRequest(
                    session_id=session_id, size=spec.size,  # type: ignore[arg-type]
                    lease_minutes=spec.warm_lease(now, closes, self.sessions.capped_lease(WARM_LEASE_MINUTES)),
                    labels={**spec.labels, POOL_LABEL: spec.name}, requested_by=actor,
                    reason=f"warm pool {spec.name}"))
                report.started.append(session_id)
            except (ArrError, HistoryError, QuotaExceeded) as exc:  # NoCapacity, a label quota: the next tick tries
                report.failed.append(f"start: {exc}")
                break


__all__ = ["PoolService", "PoolTick"]
