"""Overrides: a session, or every session with some labels, exempt from the nightly shutdown until a time.

They end by themselves (AWS Instance Scheduler users' most asked-for feature: a manual exemption that nobody
remembers to lift keeps billing for weeks). Pure: :func:`covering` says which active override covers a record.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .records import SessionRecord

OVERRIDE_ID = re.compile(r"ovr-[0-9a-f]{12}")
MAX_OVERRIDE = timedelta(days=31)  # the longest an override may run: longer ones are the keepAlive flag's job


@dataclass(frozen=True)
class Override:
    """Exempt ``session_id``, or every session whose labels hold all of ``labels``, until ``until``."""

    id: str
    until: datetime
    created_at: datetime
    session_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    requested_by: str | None = None

    def active(self, now: datetime) -> bool:
        return self.created_at <= now < self.until

    def covers(self, record: SessionRecord) -> bool:
        if self.session_id is not None:
            return record.session_id == self.session_id
        return bool(self.labels) and all(record.labels.get(k) == v for k, v in self.labels.items())

    def describe(self) -> str:
        who = f", by {self.requested_by}" if self.requested_by else ""
        why = f": {self.reason}" if self.reason else ""
        return f"override {self.id} until {self.until:%Y-%m-%d %H:%M} UTC{who}{why}"


def new_override_id() -> str:
    return f"ovr-{secrets.token_hex(6)}"


def covering(record: SessionRecord, overrides: list[Override], now: datetime) -> Override | None:
    """The active override that exempts ``record`` from the nightly shutdown (the one that lasts longest)."""
    found = [o for o in overrides if o.active(now) and o.covers(record)]
    return max(found, key=lambda o: o.until) if found else None
