"""Billed minutes and estimated cost from history records: pure functions, no I/O.

ARR bills from Ready until the session ends; a record's ``elapsed_minutes`` is ARR's own count of those minutes.

The estimated cost is a number only when every session a row counts has a size with a configured rate; otherwise
it is null, whatever the minutes (we do not invent prices, and a cost must not depend on whether a session happened
to reach Ready). With no rate configured at all, every cost is null, an empty total's included. A row of no
sessions costs 0.0 once some rate is configured.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from ..domain.records import SessionRecord
from .views import UsageReport, UsageRow

GroupBy = Literal["day", "size", "requestedBy"]
Rates = dict[str, float | None]  # size -> price per hour


def group_key(record: SessionRecord, group_by: GroupBy, time_zone: ZoneInfo) -> str:
    """The row a record counts in: its size, its requester, or its local creation day."""
    if group_by == "size":
        return record.size or "unknown"
    if group_by == "requestedBy":
        return record.requested_by or "unknown"
    return record.created_at.astimezone(time_zone).date().isoformat()


def estimated_cost(records: list[SessionRecord], rates: Rates) -> float | None:
    """The records' billed hours times their sizes' rates; None when a rate is missing (see the module's rule)."""
    if all(rate is None for rate in rates.values()):
        return None
    cost = 0.0
    for record in records:
        rate = rates.get(record.size or "")
        if rate is None:
            return None
        cost += (record.elapsed_minutes or 0) / 60 * rate
    return round(cost, 4)


def usage_row(key: str, records: list[SessionRecord], rates: Rates) -> UsageRow:
    minutes = sum(r.elapsed_minutes or 0 for r in records)
    return UsageRow(key=key, sessions=len(records), billed_minutes=minutes,
                    estimated_cost=estimated_cost(records, rates))


def usage_report(records: Iterable[SessionRecord], start: datetime, end: datetime, group_by: GroupBy, *,
                 rates: Rates, currency: str, time_zone: ZoneInfo) -> UsageReport:
    """Rows sorted by key, and a total over all of them."""
    groups: dict[str, list[SessionRecord]] = defaultdict(list)
    everything: list[SessionRecord] = []
    for record in records:
        groups[group_key(record, group_by, time_zone)].append(record)
        everything.append(record)
    rows = [usage_row(key, members, rates) for key, members in sorted(groups.items())]
    return UsageReport(from_=start, to=end, currency=currency, rows=rows,
                       total=usage_row("total", everything, rates))


__all__ = ["GroupBy", "Rates", "estimated_cost", "group_key", "usage_report", "usage_row"]
