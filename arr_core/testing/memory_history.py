"""The history store itself over a :class:`~arr_core.testing.memory_table.MemoryTable`, with test hooks.

Not a copy of the store: :class:`MemoryHistory` *is* :class:`~arr_core.store.history.HistoryStore` (its claims, ETag
races, group commit and table re-creation), over a dict. What it adds is for tests that speak of history's own
methods: ``calls`` counts calls per method, :meth:`fail_next` makes calls of named methods raise,
:meth:`lose_table` loses the table (and what this process remembered), ``reports`` keeps the cleanup reports.
Faults of the table itself (no answer, latency) are the table's switches: ``history.table``.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..api.views import CleanupReport
from ..domain.records import utcnow
from ..errors import HistoryUnavailable
from ..store import entities
from ..store.history import History, HistoryStore
from .memory_table import MemoryTable

_METHODS = [name for name in History.__dict__ if not name.startswith("_")]


@dataclass
class _Fault:
    remaining: int  # < 0: until healed
    exc: BaseException
    only: frozenset[str] | None


class MemoryHistory(HistoryStore):
    """``since``: when the table was created by this app (what :meth:`since` answers); None (default) stands for
    a table of unknown origin, which is trusted."""

    def __init__(self, *, clock: Callable[[], datetime] = utcnow, since: datetime | None = None,
                 latency: float = 0.0) -> None:
        # The table as found: with its epoch row, or (unknown origin) with rows of an older version and none.
        seed = entities.epoch_entity(since) if since is not None else {"PartitionKey": "meta", "RowKey": "older"}
        table = MemoryTable(latency=latency, rows=[seed])
        super().__init__(table, clock=clock)
        self.table: MemoryTable = table
        self.calls: Counter[str] = Counter()
        self.reports: list[CleanupReport] = []
        self._faults: list[_Fault] = []
        for name in _METHODS:
            setattr(self, name, self._hooked(name, getattr(self, name)))

    @property
    def latency(self) -> float:
        """Seconds each table call takes (the table's switch)."""
        return self.table.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.table.latency = seconds

    def fail_next(self, n: int = 1, exc: BaseException | None = None, *,
                  only: str | Collection[str] | None = None) -> None:
        """Make the next ``n`` calls (of the methods named in ``only``, or any) raise ``exc`` before touching the
        table; ``n`` < 0: until :meth:`heal`. The default is the store's answer to an outage."""
        if n == 0:
            return
        names = frozenset([only] if isinstance(only, str) else only) if only is not None else None
        self._faults.append(_Fault(n, exc or HistoryUnavailable("Table Storage did not answer (simulated)"), names))

    def heal(self) -> None:
        self._faults.clear()
        self.table.heal()

    def lose_table(self) -> None:
        """The table gone (deleted, an emulator restarted) and a process that remembers nothing of it: the next call
        creates it again, so :meth:`since` answers then."""
        self.table.lose_table()
        self.reports.clear()
        self._written.clear()
        self._pointers.clear()

    async def record_run(self, report: CleanupReport) -> None:
        await super().record_run(report)
        self.reports.append(report)

    def _hooked(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        if name == "sessions_created":  # an async generator: the hook runs when it is first iterated
            @functools.wraps(method)
            async def generator(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                self._begin(name)
                async for item in method(*args, **kwargs):
                    yield item
            return generator

        @functools.wraps(method)
        async def hooked(*args: Any, **kwargs: Any) -> Any:
            self._begin(name)
            return await method(*args, **kwargs)
        return hooked

    def _begin(self, name: str) -> None:
        """Count the call and raise the first queued fault that matches it."""
        self.calls[name] += 1
        for fault in self._faults:
            if fault.only is None or name in fault.only:
                if fault.remaining > 0:
                    fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                raise fault.exc


__all__ = ["MemoryHistory"]
