"""Session history as data: the record of a session and the events that changed it. Pure, no I/O.

Their table form (keys, columns) is :mod:`arr_core.store.entities`; the store is :mod:`arr_core.store.history`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..arr.models import SessionStatus

REQUESTED = "Requested"  # history's own status: the start is recorded, ARR has not confirmed it yet
RECORD_STATUSES = (REQUESTED, *(status.value for status in SessionStatus))
ACTIVE_STATUSES = (REQUESTED, SessionStatus.STARTING.value, SessionStatus.READY.value)
CLEANUP_ACTOR = "cleanup"  # who a change made by the lease cleanup is recorded as
NIGHTLY_ACTOR = "nightly"  # and one made by the nightly shutdown
HOOK_ACTOR_PREFIX = "hook:"  # and one a webhook asked for: hook:<sender>
RUN_MONTHS = 3  # how far back the cleanup runs are listed
# What a session's free text and labels may be, wherever they come from (the API's bodies and queries, a hook's rule).
MAX_TEXT = 256  # characters of a free-text field (reason, requestedBy, a label value)
MAX_LABELS = 32
LABEL_KEY_CLASS = "A-Za-z0-9_.:-"  # a label key's characters, as a regular expression's class
MAX_LABEL_KEY = 64
LABEL_KEY_PATTERN = rf"^[{LABEL_KEY_CLASS}]{{1,{MAX_LABEL_KEY}}}$"


def utcnow() -> datetime:
    return datetime.now(UTC)


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
    warned: str | None = None  # the last automatic stop warned of (see arr_core.domain.warnings)
    last_heartbeat: datetime | None = None  # the last client heartbeat recorded (see arr_core.domain.idle)
    event_count: int = 0
    updated_at: datetime | None = None
    etag: str | None = None

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

