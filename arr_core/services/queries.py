"""Questions about the past, answered from history: pages of sessions, cleanup runs, a session's events, usage.

The HTTP layer asks these here, never the store: the store's rows (and how its events are decoded) stay behind
this service, so a change of the store's shape is adapted in one method, not in a blueprint.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ..api.usage import GroupBy, usage_report
from ..api.views import CleanupRun, HistoryOrder, UsageReport
from ..domain.records import Event, SessionRecord
from ..errors import SessionNotFound
from ..store.entities import event_from_entity
from .settings import AppSettings

if TYPE_CHECKING:
    from ..store.history import History


class HistoryQueries:
    """Read-only questions to history; nothing here writes or calls ARR."""

    def __init__(self, history: History, settings: AppSettings) -> None:
        self.history = history
        self.settings = settings
        self.time_zone = ZoneInfo(settings.time_zone)  # usage's days are local days

    async def history_page(self, start: datetime, end: datetime, *, requested_by: str | None = None,
                           size: str | None = None, statuses: set[str] | None = None, top: int,
                           token: str | None = None, order: HistoryOrder = "oldest",
                           ) -> tuple[list[SessionRecord], str | None]:
        """One page of the records of sessions created in [start, end), oldest or newest first, and the
        continuation token of the next page in the same order (None on the last; opaque, bound to these filters
        and the order: another query's is InvalidToken)."""
        return await self.history.history_page(start, end, requested_by=requested_by, size=size, statuses=statuses,
                                               top=top, token=token, order=order)

    async def runs(self, before: datetime, top: int) -> list[CleanupRun]:
        """Up to ``top`` cleanup runs that started before ``before``, newest first."""
        return await self.history.runs(before, top)

    async def events(self, session_id: str) -> list[tuple[int, Event]]:
        """A session's events as (sequence number, event), oldest first; :class:`SessionNotFound` when history
        knows no session of that id (ARR is not asked: its sessions have no history of their own)."""
        rows = await self.history.events(session_id)
        if not rows:
            raise SessionNotFound(f"history knows no session {session_id}")
        return sorted(map(event_from_entity, rows), key=lambda numbered: numbered[0])

    async def usage(self, start: datetime, end: datetime, group_by: GroupBy) -> UsageReport:
        """Billed minutes (Ready to end, ARR's elapsed minutes) of sessions created in [start, end)."""
        rates = self.settings.rates
        records = [r async for r in self.history.sessions_created(start, end)]
        return usage_report(records, start, end, group_by, rates=rates, currency=self.settings.currency,
                            time_zone=self.time_zone)


__all__ = ["HistoryQueries"]
