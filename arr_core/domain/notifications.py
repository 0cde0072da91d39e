"""Who is told what when a session changes status. Pure: no I/O.

A change is read off a session's record: its ``status`` against the last status people were told about
(``notified_status``). Deriving it from the record rather than from the write that caused it keeps delivery
at-least-once whatever crashes: a change written but not yet announced is still a difference on the record, and
the watcher or the next cleanup announces it. Its ``event_id`` is the same each time it is announced, so a
receiver can drop repeats.

The rules for the URLs the app calls live in :mod:`arr_core.outbound.url_rules`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from ..arr.models import SessionStatus
from .records import CLEANUP_ACTOR, HOOK_ACTOR_PREFIX, NIGHTLY_ACTOR, REQUESTED, SessionRecord

WATCH_QUEUE = "arr-watch"  # {"sessionId": ...}: read the session again and announce what changed
NOTIFY_QUEUE = "arr-notify"  # one notification to one receiver, with its attempt number
MAX_URL_CHARS = 2048
MAX_DELIVERY_ATTEMPTS = 8  # 5 s, 10 s, 20 s ... about 10 minutes in all, then the event is dropped and logged
FIRST_RETRY = timedelta(seconds=5)
LAST_RETRY = timedelta(minutes=5)
WATCHED_STATUSES = (REQUESTED, SessionStatus.STARTING.value)  # the watcher looks again while a session is here
ENDED_STATUSES = (SessionStatus.STOPPED.value, SessionStatus.EXPIRED.value, SessionStatus.ERROR.value)



STATUS_CHANGED = "SessionStatusChanged"
STOP_WARNING = "StopWarning"
DEFAULT_EVENTS = frozenset({STATUS_CHANGED})


class Cause(StrEnum):
    """What made a session change status, as a notification names it."""

    CALLER = "caller"
    LEASE_CLEANUP = "lease-cleanup"
    NIGHTLY_SHUTDOWN = "nightly-shutdown"
    HOOK = "hook"
    ARR = "arr"


@dataclass(frozen=True)
class Subscription:
    """A Power Automate / Logic Apps trigger: where to POST changes, and which ones."""

    id: str
    callback_url: str
    created_at: datetime
    statuses: frozenset[str] | None = None
    session_id: str | None = None
    requested_by: str | None = None
    events: frozenset[str] = DEFAULT_EVENTS  # which kinds of event it hears: status changes unless it asked

    def wants(self, change: StatusChange) -> bool:
        return (STATUS_CHANGED in self.events and (self.statuses is None or change.status in self.statuses)
                and self._about(change.session_id, change.requested_by))

    def wants_warning(self, record: SessionRecord) -> bool:
        """A stop warning, to those who asked for them (a flow made for status changes never gets one)."""
        return STOP_WARNING in self.events and self._about(record.session_id, record.requested_by)

    def _about(self, session_id: str, requested_by: str | None) -> bool:
        return ((self.session_id is None or session_id == self.session_id)
                and (self.requested_by is None or requested_by == self.requested_by))


SUBSCRIPTION_ID = re.compile(r"^[0-9a-f]{32}$")


def new_subscription_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class StatusChange:
    """One status change of one session, as it is announced."""

    session_id: str
    previous_status: str | None
    status: str
    cause: str
    actor: str | None
    requested_by: str | None

    @property
    def event_id(self) -> str:
        """The same for every announcement of this change: receivers deduplicate on it."""
        return f"{self.session_id}.{self.previous_status or 'None'}.{self.status}"


def pending_change(record: SessionRecord) -> StatusChange | None:
    """The change people have not been told about, or None. A start only announces what ARR did with it: the
    ``Requested`` intent itself is no news."""
    if not record.unannounced:
        return None
    return StatusChange(record.session_id, record.notified_status, record.status, cause_of(record),
                        record.stopped_by if record.status == SessionStatus.STOPPED.value else None,
                        record.requested_by)


def cause_of(record: SessionRecord) -> str:
    """Who made the record's current status: a stop that was asked for names its actor (a caller, when none is
    recorded); everything else ARR did."""
    if record.status != SessionStatus.STOPPED.value or not (record.stop_reason or record.stopped_by):
        return Cause.ARR
    if record.stopped_by == NIGHTLY_ACTOR:
        return Cause.NIGHTLY_SHUTDOWN
    if record.stopped_by == CLEANUP_ACTOR:
        return Cause.LEASE_CLEANUP
    if record.stopped_by and record.stopped_by.startswith(HOOK_ACTOR_PREFIX):
        return Cause.HOOK
    return Cause.CALLER


def callback_due(record: SessionRecord, change: StatusChange) -> bool:
    """A start's own callback fires once: when the session is Ready, or when it ends without having been Ready."""
    if not record.callback_url:
        return False
    if change.status == SessionStatus.READY.value:
        return True
    return change.status in ENDED_STATUSES and change.previous_status != SessionStatus.READY.value


def retry_delay(attempt: int) -> timedelta | None:
    """How long to wait before delivery attempt ``attempt + 1`` (attempts count from 1); None: give up."""
    if attempt >= MAX_DELIVERY_ATTEMPTS:
        return None
    return min(LAST_RETRY, FIRST_RETRY * 2 ** (attempt - 1))
