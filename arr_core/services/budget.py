"""The monthly budget (``ARR_BUDGET``): the I/O around :mod:`arr_core.domain.budget`'s rules.

:meth:`BudgetService.tick` runs after each cleanup (the timer, or ``POST /api/cleanup``): it estimates the month's
spend from history and acts on what is crossed: each threshold is announced once a month (a warning in the log,
which the ``budget-crossed`` alert watches), and while a ``stop-all`` threshold is crossed every session not kept
alive is stopped, run after run. :meth:`BudgetService.refusal` says, for a start, whether a ``refuse-starts`` or
``stop-all`` threshold is crossed; it is read at most every REFRESH_SECONDS per process, so a budget crossed by
one host refuses starts on every host within a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..domain.budget import BudgetAction, BudgetSpec, Spend, Threshold, crossed, spend, strongest
from ..domain.records import SessionRecord, utcnow
from ..errors import ArrError, BudgetExceeded, HistoryError
from .sessions import ACTIVE_WINDOW, SessionService, StopWithdrawn
from .settings import AppSettings

if TYPE_CHECKING:
    from ..store.history import History

log = logging.getLogger("arr_core.budget")
BUDGET_ACTOR = "budget"
REFRESH_SECONDS = 60.0
ANNOUNCED_FOR = timedelta(days=40)  # a threshold's "announced this month" mark outlives the month


@dataclass
class BudgetTick:
    spend: Spend | None = None
    announced: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class BudgetService:
    def __init__(self, sessions: SessionService, history: History, settings: AppSettings, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.sessions = sessions
        self.history = history
        self.settings = settings
        self.budget: BudgetSpec | None = settings.budget
        self._clock = clock
        self._known: tuple[float, Spend] | None = None
        self._reading = asyncio.Lock()

    async def month_spend(self, *, fresh: bool = False) -> Spend | None:
        """The month's estimated spend (None without a budget), read at most every REFRESH_SECONDS unless fresh."""
        budget = self.budget
        if budget is None:
            return None
        async with self._reading:
            if not fresh and self._known is not None and time.monotonic() - self._known[0] < REFRESH_SECONDS:
                return self._known[1]
            now = self._clock()
            _, start, _ = budget.month(now)
            records = [r async for r in self.history.sessions_created(start - ACTIVE_WINDOW, now
                                                                      + timedelta(minutes=5))]
            month = spend(budget, await self._with_arr_minutes(records), now, self.settings.rates)
            self._known = (time.monotonic(), month)
            return month

    async def _with_arr_minutes(self, records: list[SessionRecord]) -> list[SessionRecord]:
        """The running ones with ARR's own count of their minutes now (history has it only once they end); ARR
        not answering leaves history's view (the clock time since Ready)."""
        if not any(r.is_active for r in records):
            return records
        try:
            counted = {s.id: s.elapsed_minutes or 0 for s in await self.sessions.arr_sessions()}
        except ArrError as exc:
            log.warning("budget: ARR's minutes not read (%s); counting the time since Ready", exc)
            return records
        return [replace(r, elapsed_minutes=max(r.elapsed_minutes or 0, counted[r.session_id]))
                if r.is_active and r.session_id in counted else r for r in records]

    async def refusal(self) -> str | None:
        """Why a new start is refused now (a refuse-starts or stop-all threshold is crossed), or None."""
        month = await self.month_spend()
        if month is None or self.budget is None:
            return None
        acting = strongest([t for t in crossed(self.budget, month) if t.action is not BudgetAction.NOTIFY])
        return None if acting is None else self._describe(acting, month)

    async def check_start(self) -> None:
        """A start guard (:attr:`SessionService.start_guards`): :class:`BudgetExceeded` while starts are refused."""
        why = await self.refusal()
        if why is not None:
            raise BudgetExceeded(why)

    def _describe(self, threshold: Threshold, month: Spend) -> str:
        budget = self.budget
        assert budget is not None
        return (f"the budget's {threshold.percent:g}% threshold ({threshold.action.value}) is crossed: "
                f"{month.amount:.2f} of {budget.amount:.2f} {self.settings.currency} spent in {month.month:%B %Y} "
                f"({month.percent_of(budget):.0f}%)")

    async def tick(self) -> BudgetTick:
        report = BudgetTick()
        budget = self.budget
        if budget is None:
            return report
        month = await self.month_spend(fresh=True)
        assert month is not None
        report.spend = month
        hit = crossed(budget, month)
        for threshold in hit:  # each announced once a month, by the first run (on any host) that sees it
            key = f"budget\n{month.month:%Y-%m}\n{threshold.percent:g}"
            mark = await self.history.claim_key(key, threshold.action.value, BUDGET_ACTOR, ttl=ANNOUNCED_FOR)
            if mark.owned:
                log.warning("budget crossed: %s", self._describe(threshold, month))
                report.announced.append(f"{threshold.percent:g}% ({threshold.action.value})")
        stop_all = [t for t in hit if t.action is BudgetAction.STOP_ALL]
        if stop_all:
            await self._stop_all(self._describe(stop_all[-1], month), report)
        return report

    async def _stop_all(self, why: str, report: BudgetTick) -> None:
        now = self._clock()
        active = [r async for r in self.history.sessions_created(now - ACTIVE_WINDOW, now + timedelta(minutes=5),
                                                                 only_active=True)]
        for record in (r for r in active if r.keep_alive is False and not r.stop_reason):
            try:
                await self.sessions.stop(record.session_id, f"budget: {why}", actor=BUDGET_ACTOR, record=record,
                                         unless=_kept)
                report.stopped.append(record.session_id)
            except StopWithdrawn:
                continue
            except (ArrError, HistoryError) as exc:
                report.failed.append(f"{record.session_id}: {exc}")


def _kept(record: SessionRecord) -> str | None:
    return "keepAlive (set while the budget stopped sessions)" if record.keep_alive else None


__all__ = ["BUDGET_ACTOR", "BudgetService", "BudgetTick"]
