"""Warm pools: sessions started ahead during a time window, handed one at a time to whoever claims one. Pure.

A start takes minutes; a team that meets at 9:00 wants a Ready session at 9:00, not at 9:04. A pool keeps
``count`` sessions Starting or Ready (and not yet claimed) while its window is open; a claim hands one Ready session
to a requester, who then owns it (its lease, its stop); the pool refills at the next timer run. When the window
closes, the sessions nobody claimed are stopped; claimed ones follow their own lease.

Pools are declared in the ``ARR_POOLS`` setting (JSON, checked when the settings load), like the hook rules: what
a pool is belongs to the deployment, what it holds right now is read from ARR and history. A pool session is
recognised by its labels (``pool`` = the pool's name) and is unclaimed while its requester is the pool's own actor
(``pool:<name>``): a claim is one conditional write of the record that changes that, so two claims of the same
session cannot both win.

Windows are in the pool's IANA time zone, read from the tzdata package like the schedules' (see
:mod:`.schedules`); a window may span midnight (22:00-06:00), and its days are the days it opens on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .records import ACTIVE_STATUSES, Change, Event, SessionRecord
from .schedules import checked_zone, zone

POOL_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")
POOL_LABEL = "pool"
POOL_ACTOR_PREFIX = "pool:"
CLAIM_TICKET = "claimTicket"
MAX_POOLS = 10
MAX_COUNT = 20
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WARM_MARGIN = timedelta(minutes=15)  # a warm session's lease outlasts its window by this (then the pool stops it)


def pool_actor(name: str) -> str:
    return f"{POOL_ACTOR_PREFIX}{name}"


def unclaimed_in_pool(record: SessionRecord) -> bool:
    """A pool's own session, not claimed yet (no one to warn about its stop)."""
    pool = record.labels.get(POOL_LABEL)
    return pool is not None and record.requested_by == pool_actor(pool)


class PoolSpec(BaseModel):
    """One pool as ``ARR_POOLS`` declares it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=f"^{POOL_NAME.pattern}$")
    size: str = Field(default="Standard", pattern="^(Standard|Premium)$")
    count: int = Field(ge=1, le=MAX_COUNT)
    days: tuple[str, ...] = Field(default=DAYS[:5], min_length=1, max_length=7)
    opens: time = Field(alias="from")
    closes: time = Field(alias="to")
    time_zone: str = Field(default="UTC", alias="timeZone")
    labels: dict[str, str] = Field(default_factory=dict, max_length=16)

    @field_validator("days")
    @classmethod
    def _days(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [d for d in value if d not in DAYS]
        if unknown:
            msg = f"days must be among {', '.join(DAYS)}; not {', '.join(unknown)}"
            raise ValueError(msg)
        return value

    _zone = field_validator("time_zone")(checked_zone)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        if POOL_LABEL in value:
            msg = f"the label {POOL_LABEL!r} is the pool's own"
            raise ValueError(msg)
        return value

    def window_at(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The window open at ``now`` (its opening and closing instants), or None."""
        tz = zone(self.time_zone)
        local = now.astimezone(tz)
        for day in (local.date(), local.date() - timedelta(days=1)):  # a window past midnight opened yesterday
            if DAYS[day.weekday()] not in self.days:
                continue
            opens, closes = self._instants(day)
            if opens <= now < closes:
                return opens, closes
        return None

    def _instants(self, day: date) -> tuple[datetime, datetime]:
        tz = zone(self.time_zone)
        end_day = day + timedelta(days=1) if self.closes <= self.opens else day
        # Through UTC: a wall time skipped by a DST switch lands after the gap.
        opens = datetime.combine(day, self.opens, tzinfo=tz).astimezone(UTC)
        closes = datetime.combine(end_day, self.closes, tzinfo=tz).astimezone(UTC)
        return opens, closes

    def warm_lease(self, now: datetime, closes: datetime, limit: int) -> int:
        """A warm session's lease: until its window closes, and a margin (within the app's limit)."""
        minutes = int((closes - now + WARM_MARGIN).total_seconds() // 60)
        return max(1, min(minutes, limit))


def parse_pools(text: str) -> tuple[PoolSpec, ...]:
    """``ARR_POOLS``: a JSON array of pools with distinct names; a ValueError that says what is wrong."""
    try:
        raw: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"must be a JSON array of pools: {exc.msg} at character {exc.pos}"
        raise ValueError(msg) from None
    if not isinstance(raw, list) or len(raw) > MAX_POOLS:
        msg = f"must be a JSON array of at most {MAX_POOLS} pools"
        raise ValueError(msg)
    try:
        pools = tuple(PoolSpec.model_validate(item) for item in raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = f"pool {'.'.join(map(str, first['loc']))}: {first['msg']}"
        raise ValueError(msg) from None
    names = [p.name for p in pools]
    if len(set(names)) != len(names):
        msg = "pool names must be distinct"
        raise ValueError(msg)
    return pools


@dataclass(frozen=True)
class PoolState:
    """What a pool holds now: its sessions' records, unclaimed ones apart."""

    spec: PoolSpec
    window: tuple[datetime, datetime] | None
    unclaimed: list[SessionRecord] = field(default_factory=list)  # Requested, Starting or Ready; nobody's yet
    claimed: list[SessionRecord] = field(default_factory=list)

    @property
    def missing(self) -> int:
        """How many sessions to start now: the count while the window is open, minus those warm or warming."""
        return max(0, self.spec.count - len(self.unclaimed)) if self.window is not None else 0

    @property
    def to_stop(self) -> list[SessionRecord]:
        """Outside its window, nobody's sessions are stopped (claimed ones follow their own lease)."""
        return [] if self.window is not None else list(self.unclaimed)


def pool_state(spec: PoolSpec, records: list[SessionRecord], now: datetime) -> PoolState:
    mine = [r for r in records if r.labels.get(POOL_LABEL) == spec.name and r.status in ACTIVE_STATUSES
            and not r.stop_reason]
    unclaimed = [r for r in mine if r.requested_by == pool_actor(spec.name)]
    claimed = [r for r in mine if r.requested_by != pool_actor(spec.name)]
    return PoolState(spec, spec.window_at(now), unclaimed, claimed)


def claim(record: SessionRecord, pool: str, requester: str, now: datetime, lease_minutes: int,
          ticket: str | None = None) -> Change:
    """The pool's unclaimed session becomes ``requester``'s; None when it is no longer unclaimed (another claim
    won), which leaves the record as it is. ``ticket``: the claim's Idempotency-Key binding, kept as a label so
    that a retry with the key finds the session its first try claimed."""
    if record.requested_by != pool_actor(pool) or record.status not in ACTIVE_STATUSES or record.stop_reason:
        return None
    marks = {"claimedBy": requester[:256], **({CLAIM_TICKET: ticket} if ticket else {})}
    # A claim counts as a heartbeat: the idle stop's clock starts when the session becomes someone's.
    return (replace(record, requested_by=requester, labels={**record.labels, **marks}, last_heartbeat=now),
            [Event("claimed", now, actor=requester, detail={"pool": pool, "leaseMinutes": lease_minutes})])


def cost_per_hour(spec: PoolSpec, rates: dict[str, float | None]) -> float | None:
    rate = rates.get(spec.size)
    return None if rate is None else round(rate * spec.count, 2)
