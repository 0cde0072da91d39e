"""Quotas of Ready-minutes (issue 22): their CRUD, their use now, and the check a start or an extend passes.

The rules are :mod:`arr_core.domain.quotas`'; this is the I/O around them. Quotas live in history (partition
``quota``, one row each, replaced by ETag so that two top-ups at once both count). Their list is kept for
QUOTA_CACHE per process (every start asks which quotas apply to it); what they have used is never kept: it is
counted from history's records each time it is asked (:meth:`QuotaService.admit`, :meth:`QuotaService.views`,
:meth:`QuotaService.reached`), so it is exact across hosts and restarts.

**Exact across hosts.** :class:`~arr_core.services.sessions.SessionService` calls :meth:`QuotaService.admit` inside
its admission: a lease row in the table (``lease``/``admission``) that one start (or extend) at a time holds, on any
host, while it counts and then writes what it was admitted for (the start's intent record, or the extended lease).
The next admission's count reads that record. So two starts at the last minutes of a quota cannot both pass: the
second is counted after the first's record exists. An ETag on the quota row would give the same guarantee only if
every start also wrote the quota row (a counter moved by each start and by each session's end): the usage lives in
the session records, not on the quota row, so the serialising lease over "count, then record" is what makes the
check and the write one step, as it does for the caps; the quota row's ETag keeps concurrent top-ups from losing one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..api.quotas import QuotaRequest, QuotaView, TopUpRequest, TopUpView
from ..domain.quotas import (
    QUOTA_ID,
    Quota,
    TopUp,
    Usage,
    admission,
    lookback_start,
    new_quota_id,
    usage,
)
from ..domain.records import SessionRecord, utcnow
from ..errors import Conflict, QuotaExceeded, QuotaNotFound

if TYPE_CHECKING:
    from ..store.history import History

log = logging.getLogger("arr_core.quotas")
QUOTA_CACHE = timedelta(seconds=5)  # how long a process reuses the list of quotas (not their use: never kept)
AHEAD = timedelta(minutes=5)  # records created up to this far ahead of our clock (another host's) are read too


class QuotaService:
    """Quotas: made, listed with their use, topped up, deleted; asked by the session service before a start or an
    extend, and by the cleanup for the scopes whose quota is reached."""

    def __init__(self, history: History, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.history = history
        self._clock = clock
        self._cached: tuple[datetime, list[Quota]] | None = None

    # -- the quotas ---------------------------------------------------------------------------------------------

    async def add(self, request: QuotaRequest) -> Quota:
        now = self._clock()
        quota = Quota(id=new_quota_id(), minutes=request.minutes, period=request.period,
                      time_zone=request.time_zone or "UTC", created_at=now, requested_by=request.requested_by,
                      labels=dict(request.labels or {}), reason=request.reason)
        await self.history.add_quota(quota)
        self._cached = None
        return quota

    async def remove(self, quota_id: str) -> Quota:
        removed = await self.history.remove_quota(self._known_id(quota_id))
        self._cached = None
        if removed is None:
            raise QuotaNotFound(f"no quota {quota_id[:64]!r}", field="id")
        return removed

    async def top_up(self, quota_id: str, request: TopUpRequest) -> Quota:
        """Add minutes to the quota's current period (an ETag-conditional replace of its row: concurrent top-ups all
        count). :class:`Conflict` when this period holds the most top-ups a quota keeps."""
        now = self._clock()
        top_up = TopUp(minutes=request.minutes, by=request.requested_by, at=now, reason=request.reason)
        try:
            changed = await self.history.update_quota(self._known_id(quota_id), lambda q: q.topped_up(top_up, now))
        except ValueError as exc:
            raise Conflict(str(exc)) from exc
        self._cached = None
        if changed is None:
            raise QuotaNotFound(f"no quota {quota_id[:64]!r}", field="id")
        return changed

    async def quotas(self, *, fresh: bool = False) -> list[Quota]:
        """Every quota, by id; the list read up to QUOTA_CACHE ago unless ``fresh``."""
        now = self._clock()
        if not fresh and self._cached is not None and timedelta(0) <= now - self._cached[0] < QUOTA_CACHE:
            return self._cached[1]
        found = sorted(await self.history.quotas(), key=lambda q: q.id)
        self._cached = (now, found)
        return found

    @staticmethod
    def _known_id(quota_id: str) -> str:
        if not QUOTA_ID.fullmatch(quota_id):
            raise QuotaNotFound(f"no quota {quota_id[:64]!r}", field="id")
        return quota_id

    # -- their use ----------------------------------------------------------------------------------------------

    async def _records(self, quotas: list[Quota], now: datetime) -> list[SessionRecord]:
        """Every record that may count in the current period of one of ``quotas``."""
        since = lookback_start(quotas, now)
        if since is None:
            return []
        return [r async for r in self.history.sessions_created(since, now + AHEAD)]

    async def usages(self, quotas: list[Quota] | None = None) -> list[Usage]:
        """Each quota's current period, counted from history now."""
        now = self._clock()
        quotas = await self.quotas(fresh=True) if quotas is None else quotas
        records = await self._records(quotas, now)
        return [usage(q, records, now) for q in quotas]

    async def views(self, quotas: list[Quota] | None = None) -> list[QuotaView]:
        return [quota_view(u) for u in await self.usages(quotas)]

    async def reached(self) -> list[Usage]:
        """The quotas (read now, not from the cache) whose current period is used up: their scopes' running
        sessions are to be stopped."""
        quotas = await self.quotas(fresh=True)
        if not quotas:
            return []
        return [u for u in await self.usages(quotas) if u.reached]

    # -- admission ------------------------------------------------------------------------------------------

    async def applying(self, record: SessionRecord) -> list[Quota]:
        """The quotas whose scope ``record`` is in (from the cached list): a start or an extend of it is admitted
        only within each."""
        return [q for q in await self.quotas() if q.matches(record)]

    async def admit(self, record: SessionRecord, minutes: int, *, field: str = "leaseMinutes",
                    lease_now: int | None = None) -> None:
        """Refuse ``minutes`` more for ``record``'s session (a new start's lease, its intent not yet written; or an
        extend's growth of a session history has, whose lease is ``lease_now`` at ARR) when they would run a quota of
        its scope past its allowance: :class:`QuotaExceeded` naming the quota, what is used, committed and left.
        Counted from history now; the caller holds the admission (see the module's doc)."""
        quotas = await self.applying(record)
        if not quotas or minutes <= 0:
            return
        now = self._clock()
        records = await self._records(quotas, now)
        if lease_now is not None:  # ARR's lease wins over one history may not have seen change
            records = [replace(r, lease_minutes=max(r.lease_minutes or 0, lease_now))
                       if r.session_id == record.session_id else r for r in records]
        for quota in quotas:
            refusal = admission(quota, records, now, minutes)
            if refusal is not None:
                raise QuotaExceeded(refusal, field=field)


def quota_view(found: Usage) -> QuotaView:
    quota = found.quota
    tz = quota.tz
    return QuotaView(id=quota.id, minutes=quota.minutes, period=quota.period, time_zone=quota.time_zone,
                     requested_by=quota.requested_by, labels=dict(quota.labels) or None, reason=quota.reason,
                     created_at=quota.created_at,
                     top_ups=[TopUpView(minutes=t.minutes, requested_by=t.by, reason=t.reason, at=t.at)
                              for t in quota.top_ups],
                     period_start=found.start.astimezone(tz), period_end=found.end.astimezone(tz),
                     allowance=found.allowance, used=found.used, committed=found.committed, left=found.left,
                     reached=found.reached)


__all__ = ["QUOTA_CACHE", "QuotaService", "quota_view"]
