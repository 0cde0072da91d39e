"""Session history as data: records, events, their table keys and entity forms. Pure, no I/O.

See :mod:`arr_core.store.history` for the table layout and the store that reads and writes these.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from ..arr.models import SessionStatus

REQUESTED = "Requested"  # history's own status: the start is recorded, ARR has not confirmed it yet
RECORD_STATUSES = (REQUESTED, *(status.value for status in SessionStatus))
ACTIVE_STATUSES = (REQUESTED, SessionStatus.STARTING.value, SessionStatus.READY.value)
CLEANUP_ACTOR = "cleanup"  # who a change made by the lease cleanup is recorded as
NIGHTLY_ACTOR = "nightly"  # and one made by the nightly shutdown
RUN_MONTHS = 3  # how far back the cleanup runs are listed (their rows are kept by month)



def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def partition_for(created_at: datetime) -> str:
    return f"s-{created_at.astimezone(timezone.utc):%Y%m}"


def row_for(created_at: datetime, session_id: str) -> str:
    return f"{created_at.astimezone(timezone.utc).isoformat(timespec='microseconds')}~{session_id}"


def months_between(start: datetime, end: datetime) -> list[str]:
    """The session partitions that can hold sessions created in [start, end)."""
    months, cursor = [], start.astimezone(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while cursor < end:
        months.append(f"s-{cursor:%Y%m}")
        cursor = (cursor + timedelta(days=32)).replace(day=1)
    return months


@dataclass(frozen=True)
class Event:
    """One thing that happened to a session."""

    type: str
    at: datetime
    from_status: str | None = None
    to_status: str | None = None
    actor: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionRecord:
    """What we know about a session beyond ARR's own view (which ARR forgets after 30 days)."""

    session_id: str
    created_at: datetime
    status: str = REQUESTED
    size: str | None = None
    lease_minutes: int | None = None
    requested_by: str | None = None
    reason: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    keep_alive: bool | None = False  # None: unknown (adopted after history was lost), so never stopped at night
    arr_created_at: datetime | None = None
    ready_at: datetime | None = None
    ended_at: datetime | None = None
    elapsed_minutes: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    stop_reason: str | None = None
    stopped_by: str | None = None
    idempotency_key: str | None = None
    callback_url: str | None = None  # a start's own callback: told once, when Ready or ended without being Ready
    notified_status: str | None = None  # the last status announced (see arr_core.domain.notifications)
    event_count: int = 0
    updated_at: datetime | None = None
    etag: str | None = None

    @property
    def partition(self) -> str:
        return partition_for(self.created_at)

    @property
    def row(self) -> str:
        return row_for(self.created_at, self.session_id)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def unannounced(self) -> bool:
        """Its status changed since people were last told (the ``Requested`` intent itself is no news)."""
        return self.status != self.notified_status and self.status != REQUESTED

    @property
    def cleanup_watches(self) -> bool:
        """The cleanup reads it at every run (the table's ``Active`` flag): it is active, or it has a change that is
        not yet announced (a crash, or a queue outage, came between the change and its announcement)."""
        return self.is_active or self.unannounced

    @property
    def reached_arr(self) -> bool:
        """ARR has been seen to know this session (a start that never got there can safely be driven again)."""
        return self.arr_created_at is not None or self.ready_at is not None or bool(self.elapsed_minutes)

    def settings_match(self, size: str, lease_minutes: int) -> bool:
        return self.size == size and self.lease_minutes == lease_minutes


_RECORD_FIELDS = {
    "session_id": "SessionId", "status": "Status", "size": "Size", "lease_minutes": "LeaseMinutes",
    "requested_by": "RequestedBy", "reason": "Reason", "keep_alive": "KeepAlive", "created_at": "CreatedAt",
    "arr_created_at": "ArrCreatedAt", "ready_at": "ReadyAt", "ended_at": "EndedAt",
    "elapsed_minutes": "ElapsedMinutes", "error_code": "ErrorCode", "error_message": "ErrorMessage",
    "stop_reason": "StopReason", "stopped_by": "StoppedBy", "idempotency_key": "IdempotencyKey",
    "callback_url": "CallbackUrl", "notified_status": "NotifiedStatus",
    "event_count": "EventCount", "updated_at": "UpdatedAt",
}


def aware(value: Any) -> Any:
    """A datetime from the table (the SDK's own subclass, or naive: then UTC, as the table keeps times) as a plain
    aware UTC datetime."""
    if isinstance(value, datetime):
        utc = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
        return datetime.fromtimestamp(utc.timestamp(), timezone.utc)
    return value


def _json(value: Any) -> str:
    """Compact UTF-8 JSON: Table Storage limits a string to 32K characters, and ``\\u00e9`` would cost six."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=str)


def record_to_entity(record: SessionRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": record.partition, "RowKey": record.row, "Kind": "session",
                              "Labels": _json(record.labels),
                              "Active": record.cleanup_watches}
    for attr, name in _RECORD_FIELDS.items():
        entity[name] = getattr(record, attr)
    return {k: v for k, v in entity.items() if v is not None}


def record_from_entity(entity: dict[str, Any]) -> SessionRecord:
    values = {attr: aware(entity.get(name)) for attr, name in _RECORD_FIELDS.items() if entity.get(name) is not None}
    values["labels"] = json.loads(entity.get("Labels") or "{}")
    values.setdefault("keep_alive", None)  # not stored: unknown
    etag = getattr(entity, "metadata", {}).get("etag") if hasattr(entity, "metadata") else None
    return SessionRecord(**values, etag=etag)


def event_to_entity(record: SessionRecord, seq: int, event: Event) -> dict[str, Any]:
    entity = {
        "PartitionKey": record.partition, "RowKey": f"{record.row}~e{seq:05d}", "Kind": "event",
        "SessionId": record.session_id, "Seq": seq, "Type": event.type, "At": event.at,
        "FromStatus": event.from_status, "ToStatus": event.to_status, "Actor": event.actor,
        "Detail": _json(event.detail),
    }
    return {k: v for k, v in entity.items() if v is not None}


def event_from_entity(entity: dict[str, Any]) -> tuple[int, Event]:
    """An event row as (its sequence number, the event)."""
    detail = json.loads(entity.get("Detail") or "{}")
    return int(entity["Seq"]), Event(entity["Type"], aware(entity["At"]), entity.get("FromStatus"),
                                     entity.get("ToStatus"), entity.get("Actor"), detail)


def next_version(current: SessionRecord, mutate: Mutation,
                 now: datetime) -> tuple[SessionRecord, list[dict[str, Any]]] | None:
    """What ``mutate`` makes of ``current``: the new record, numbered after its events, and the events' entities
    (what one conditional write stores); None when there is nothing to change. Both stores write through this."""
    change = mutate(current)
    if change is None:
        return None
    new, events = change
    new = replace(new, event_count=current.event_count + len(events), updated_at=now)
    return new, [event_to_entity(new, current.event_count + i + 1, event) for i, event in enumerate(events)]


def index_entity(record: SessionRecord) -> dict[str, Any]:
    """The id index row: where a session's one record lives. Whoever inserts it first decides that place."""
    return {"PartitionKey": "id", "RowKey": record.session_id, "RecordPartition": record.partition,
            "RecordRow": record.row, "CreatedAt": record.created_at}


def created_at_of(index: dict[str, Any]) -> datetime:
    """The creation time an index row fixes (older rows carry it only in their RecordRow)."""
    if index.get("CreatedAt") is not None:
        return aware(index["CreatedAt"])
    return datetime.fromisoformat(str(index["RecordRow"]).split("~", 1)[0])


def idempotency_row(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class IdempotencyClaim:
    """The first request for a key (or the first after it expired) binds it to a session; later ones get that
    session and the fingerprint of the parameters it was bound with."""

    session_id: str
    fingerprint: str
    created_at: datetime
    owned: bool


Change = tuple[SessionRecord, list[Event]] | None
"""What a rule changes in a record: the new record and its events, or None for nothing worth writing."""
Mutation = Callable[[SessionRecord], Change]

