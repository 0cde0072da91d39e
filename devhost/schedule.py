"""Timer schedules as the Functions host reads them: ``%SETTING%`` names, NCRONTAB (6 fields) or a TimeSpan."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter

_SETTING = re.compile(r"^%([^%]+)%$")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$")


def resolve_setting(value: str) -> str:
    """``%NAME%`` is replaced by the app setting NAME, as the host does (the Python library does not)."""
    match = _SETTING.match(value.strip())
    if match is None:
        return value
    name = match.group(1)
    if name not in os.environ:
        msg = f"the schedule names app setting {name!r}, which is not set"
        raise ValueError(msg)
    return os.environ[name]


@dataclass(frozen=True)
class Schedule:
    expression: str
    interval: timedelta | None = None

    def next_after(self, now: datetime) -> datetime:
        """The first occurrence strictly after ``now`` (UTC)."""
        if self.interval is not None:
            return now + self.interval
        return croniter(self.expression, now, second_at_beginning=True).get_next(datetime)


def parse_schedule(expression: str) -> Schedule:
    """NCRONTAB ``{second} {minute} {hour} {day} {month} {day-of-week}`` or a TimeSpan ``[d.]hh:mm:ss``."""
    expression = expression.strip()
    span = _TIMESPAN.match(expression)
    if span is not None:
        days, hours, minutes, seconds = (int(g or 0) for g in span.groups())
        return Schedule(expression, timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds))
    if len(expression.split()) != 6 or not croniter.is_valid(expression, second_at_beginning=True):
        msg = f"not an NCRONTAB expression with six fields: {expression!r}"
        raise ValueError(msg)
    return Schedule(expression)
