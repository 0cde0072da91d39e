"""A monthly budget that acts within minutes. Pure: the month's spend so far, and which thresholds it crossed.

Azure's own budgets see costs 8 to 24 hours late and enforce nothing. The app knows every session's size and its
minutes as they run, so each cleanup run (every 5 minutes) estimates the month's spend from history at the
configured rates (``ARR_RATE_*_PER_HOUR``) and acts on each threshold the first run that finds it crossed:

- ``notify``: the crossing is logged as a warning (an alert rule can fire on it) and kept in the run's report;
- ``refuse-starts``: new starts are refused (409 "Budget exceeded", naming the threshold) until the month ends or
  the budget is raised; running sessions go on;
- ``stop-all``: every session not kept alive is stopped (reason names the threshold), and new starts are refused.

Up to five thresholds, as Cost Management allows. The month is the calendar month in the budget's IANA time zone
(tzdata, as the schedules'). A session's minutes count in the month they ran: Ready to its end, or to now while it
runs (ARR bills by the started minute). Without a rate for a size, its minutes cost nothing here: the budget says
so in its description (``GET /api/budget``), never silently.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .records import SessionRecord
from .schedules import checked_zone, zone

MAX_THRESHOLDS = 5


class BudgetAction(StrEnum):
    NOTIFY = "notify"
    REFUSE_STARTS = "refuse-starts"
    STOP_ALL = "stop-all"


class Threshold(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    percent: float = Field(gt=0, le=1000)
    action: BudgetAction


class BudgetSpec(BaseModel):
    """``ARR_BUDGET``: the month's amount (in ``ARR_CURRENCY``), its time zone, and up to five thresholds."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    amount: float = Field(gt=0, allow_inf_nan=False)
    time_zone: str = Field(default="UTC", alias="timeZone")
    thresholds: tuple[Threshold, ...] = Field(min_length=1, max_length=MAX_THRESHOLDS)

    _zone = field_validator("time_zone")(checked_zone)

    @field_validator("thresholds")
    @classmethod
    def _distinct(cls, value: tuple[Threshold, ...]) -> tuple[Threshold, ...]:
        if len({t.percent for t in value}) != len(value):
            msg = "threshold percents must be distinct"
            raise ValueError(msg)
        return tuple(sorted(value, key=lambda t: t.percent))

    def month(self, now: datetime) -> tuple[date, datetime, datetime]:
        """The budget's month at ``now``: its first local day, and its start and end as instants."""
        tz = zone(self.time_zone)
        first = now.astimezone(tz).date().replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        start = datetime.combine(first, time(0), tzinfo=tz).astimezone(UTC)
        return first, start, datetime.combine(following, time(0), tzinfo=tz).astimezone(UTC)


def parse_budget(text: str) -> BudgetSpec:
    try:
        raw: Any = json.loads(text)
        return BudgetSpec.model_validate(raw)
    except json.JSONDecodeError as exc:
        msg = f"must be a JSON object: {exc.msg} at character {exc.pos}"
        raise ValueError(msg) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = f"{'.'.join(map(str, first['loc'])) or 'budget'}: {first['msg']}"
        raise ValueError(msg) from None


def minutes_in(record: SessionRecord, start: datetime, end: datetime, now: datetime) -> int:
    """The minutes of ``record``'s Ready time inside [start, end), by the started minute. A session Ready inside
    the window counts the larger of its clock time and ARR's own count as last seen (what ARR bills: it may run
    ahead of the time this app has seen it run); one that crossed the window's start, only its time inside."""
    if record.ready_at is None:
        return 0
    until = record.ended_at or (now if record.is_active else None)
    arr_count = record.elapsed_minutes or 0
    if until is None:  # ended, its end unknown: ARR's own count, when the session began in the window
        return arr_count if start <= record.ready_at < end else 0
    inside = (min(until, end) - max(record.ready_at, start)).total_seconds()
    minutes = math.ceil(inside / 60) if inside > 0 else 0
    return max(minutes, arr_count) if start <= record.ready_at < end else minutes


@dataclass(frozen=True)
class Spend:
    month: date
    amount: float  # estimated, in the app's currency
    unpriced_minutes: int  # minutes of sizes without a rate: not in ``amount``

    def percent_of(self, budget: BudgetSpec) -> float:
        return 100 * self.amount / budget.amount


def spend(budget: BudgetSpec, records: list[SessionRecord], now: datetime,
          rates: dict[str, float | None]) -> Spend:
    first, start, end = budget.month(now)
    amount, unpriced = 0.0, 0
    for record in records:
        minutes = minutes_in(record, start, end, now)
        rate = rates.get(record.size or "")
        if rate is None:
            unpriced += minutes
        else:
            amount += minutes * rate / 60
    return Spend(first, round(amount, 2), unpriced)


def crossed(budget: BudgetSpec, month_spend: Spend) -> list[Threshold]:
    """The thresholds the month's spend has reached, lowest first."""
    return [t for t in budget.thresholds if month_spend.percent_of(budget) >= t.percent]


def strongest(thresholds: list[Threshold]) -> Threshold | None:
    """The crossed threshold whose action goes furthest (stop-all over refuse-starts over notify)."""
    order = list(BudgetAction)
    return max(thresholds, key=lambda t: (order.index(t.action), t.percent), default=None)
