"""Pure rules about a session's life: what an ARR observation changes in history, and the merged view.

No I/O here, so every rule is tested without a network or a table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from ..arr.models import RenderingSession, SessionStatus
from ..errors import SessionEnded
from .records import REQUESTED, Change, Event, SessionRecord


def fingerprint(parameters: dict[str, Any]) -> str:
    """A stable digest of a start request's parameters, to tell a retried request from a different one."""
    canonical = json.dumps(parameters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


# What an Idempotency-Key is bound to: the fields of StartSessionRequest that say what a start does (by their
# Python names). Named, not "every field of the request": a digest of the whole request changed with every optional
# field a release added, so a retry whose key was bound before that deploy got a 409 for the very request it had
# made. These are the fields the digest held when it was the whole request, so keys bound before still match. A
# field that changes what a start does joins here on purpose, knowing that keys bound in the last 24 h stop
# matching their retries; a field that does not (a hint, a format) stays out.
START_FINGERPRINT_FIELDS = ("size", "lease_minutes", "session_id", "requested_by", "reason", "labels", "keep_alive",
                            "callback_url")


def start_fingerprint(request: Mapping[str, Any], *, size: str, lease_minutes: int) -> str:
    """The digest a start's Idempotency-Key is bound with: :data:`START_FINGERPRINT_FIELDS` of ``request`` (its
    ``model_dump()``; a field not given is None) with the size and lease the start resolved from the settings'
    defaults, so leaving one out and giving its default are the same start."""
    fields = {name: request.get(name) for name in START_FINGERPRINT_FIELDS}
    return fingerprint(fields | {"size": size, "lease_minutes": lease_minutes})


def observe(record: SessionRecord, arr: RenderingSession, now: datetime, *, actor: str | None = None,
            stop_reason: str | None = None) -> Change:
    """What ARR's current view of a session changes in its history record (None: nothing worth writing).

    ``stop_reason`` is given when we have just stopped the session ourselves.
    """
    status = arr.status
    new = record
    events: list[Event] = []
    if record.status != status.value:
        events.append(Event("status", now, from_status=record.status, to_status=status.value, actor=actor,
                            detail={"elapsedMinutes": arr.elapsed_minutes}))
        new = replace(new, status=status.value)
    if arr.created_at is not None and record.arr_created_at is None:
        new = replace(new, arr_created_at=arr.created_at)
    if arr.lease_minutes is not None and arr.lease_minutes != record.lease_minutes:
        new = replace(new, lease_minutes=arr.lease_minutes)
    if arr.size is not None and record.size is None:
        new = replace(new, size=arr.size.value)
    elapsed = arr.elapsed_minutes
    if new.ready_at is None and status is SessionStatus.READY:
        new = replace(new, ready_at=now - timedelta(minutes=elapsed or 0))
    if status.is_terminal:
        if new.ready_at is None and elapsed and status is SessionStatus.STOPPED:
            # First seen after the stop: it was Ready for `elapsed` minutes until about now.
            new = replace(new, ready_at=now - timedelta(minutes=elapsed))
        if new.ended_at is None:
            new = replace(new, ended_at=_end_time(new, arr, now))
        if elapsed is not None and elapsed != record.elapsed_minutes:
            new = replace(new, elapsed_minutes=elapsed)
        if arr.error is not None and record.error_code is None:
            new = replace(new, error_code=arr.error.code, error_message=arr.error.message)
        reason = stop_reason or record.stop_reason  # ours now, or one recorded before a crash cut the stop short
        if reason is not None and record.is_active and status is SessionStatus.STOPPED:
            by = actor if stop_reason is not None else record.stopped_by
            new = replace(new, stop_reason=reason, stopped_by=by)
            events.append(Event("stopped", now, to_status=status.value, actor=by,
                                detail={"reason": reason, "billedMinutes": elapsed}))
    elif elapsed is not None and new is not record:
        new = replace(new, elapsed_minutes=elapsed)
    if new == record:
        return None
    return new, events


def _end_time(record: SessionRecord, arr: RenderingSession, now: datetime) -> datetime:
    if arr.status is SessionStatus.EXPIRED and record.ready_at is not None and arr.lease_minutes is not None:
        return min(now, record.ready_at + timedelta(minutes=arr.lease_minutes))
    return now


def failed_start(record: SessionRecord, code: str, message: str, now: datetime, *,
                 actor: str | None = None) -> Change:
    """The session never ran: ARR refused it, or the start was cut short before ARR was asked. The record ends
    in Error with the reason; a retry of the start may reopen it (:func:`reopen`)."""
    if not record.is_active:
        return None
    new = replace(record, status=SessionStatus.ERROR.value, error_code=code, error_message=message, ended_at=now,
                  elapsed_minutes=0)
    return new, [Event("start-failed", now, from_status=record.status, to_status=SessionStatus.ERROR.value, actor=actor,
                       detail={"code": code, "message": message})]


START_NOT_COMPLETED = ("StartNotCompleted", "the start was cut short before ARR created the session; start it "
                       "again (a retry with the same Idempotency-Key resumes this session)")
REDRIVE_AFTER = timedelta(seconds=5)  # a start still "Requested" this long after its last write was cut short


def stalled_start(record: SessionRecord, now: datetime) -> bool:
    """An accepted start whose ARR call never happened (a crash or a lost answer): safe to drive again, since
    ARR's create is idempotent for the same id and settings."""
    return (record.status == REQUESTED and not record.stop_reason
            and now - (record.updated_at or record.created_at) >= REDRIVE_AFTER)


def resumable(record: SessionRecord) -> bool:
    """A retried start may drive this record again: still Requested, or ended without ARR ever knowing it."""
    return record.status == REQUESTED or (record.status == SessionStatus.ERROR and not record.reached_arr)


def reopen(record: SessionRecord, now: datetime, *, actor: str | None = None) -> Change:
    """A retried start takes up a record that ended before ARR ever knew the session."""
    if record.status != SessionStatus.ERROR or record.reached_arr:
        return None
    new = replace(record, status=REQUESTED, ended_at=None, elapsed_minutes=None, error_code=None,
                  error_message=None)
    return new, [Event("retried", now, from_status=record.status, to_status=REQUESTED, actor=actor)]


def vanished(record: SessionRecord, now: datetime, *, actor: str | None = None) -> Change:
    """History has the session active but ARR does not know it: a start cut short before ARR was asked, or a
    session ARR has forgotten (after 30 days). Either way it is over."""
    if record.status == REQUESTED:
        return failed_start(record, *START_NOT_COMPLETED, now, actor=actor)
    if not record.is_active:
        return None
    new = replace(record, status=SessionStatus.ERROR.value, ended_at=now, elapsed_minutes=record.elapsed_minutes or 0,
                  error_code=record.error_code or "NotFoundAtArr",
                  error_message=record.error_message or "ARR does not know this session")
    return new, [Event("reconciled", now, from_status=record.status, to_status=SessionStatus.ERROR.value, actor=actor,
                       detail={"reason": "ARR does not know this session"})]


def cancel_start(record: SessionRecord, reason: str, actor: str | None, now: datetime) -> Change:
    """Stopped before ARR ever had it: the start is cancelled, so no later poll or retry drives it again."""
    if record.status != REQUESTED:
        return None
    stopped = SessionStatus.STOPPED.value
    new = replace(record, status=stopped, ended_at=now, elapsed_minutes=0, stop_reason=reason, stopped_by=actor)
    return new, [Event("stopped", now, from_status=REQUESTED, to_status=stopped, actor=actor,
                       detail={"reason": reason, "billedMinutes": 0, "before": "ARR was asked"})]


def request_stop(record: SessionRecord, reason: str, actor: str | None, now: datetime) -> Change:
    """Note the stop before ARR is asked: if the process dies before the answer, the reason survives and the
    cleanup finishes the stop. No event (the 'stopped' event carries the reason), so the write is one entity."""
    if not record.is_active or (record.stop_reason == reason and record.stopped_by == actor):
        return None
    return replace(record, stop_reason=reason, stopped_by=actor), []


KEEP_ALIVE = "keepAlive"  # the event of a keepAlive changed after the start


def set_keep_alive(record: SessionRecord, keep_alive: bool, actor: str | None, reason: str | None,
                   now: datetime) -> Change:
    """A caller exempts a running session from the nightly shutdown (True) or gives it back to it (False). The same
    value again is no change (a retry writes nothing twice); an ended session is not changed: :class:`SessionEnded`."""
    if not record.is_active:
        raise SessionEnded(f"session {record.session_id} is {record.status}", session_status=record.status)
    if record.keep_alive is keep_alive:
        return None
    return replace(record, keep_alive=keep_alive), [
        Event(KEEP_ALIVE, now, actor=actor, detail={"keepAlive": keep_alive, "reason": reason})]


def adopted_record(arr: RenderingSession, now: datetime, *, history_since: datetime | None) -> SessionRecord:
    """A record for a session ARR runs but history does not know (started elsewhere, or its record was lost).

    Its ``keepAlive`` is unknown (None) when it started before history did: a user may have asked to keep it.
    """
    created = arr.created_at or now
    lost = history_since is not None and created < history_since
    return SessionRecord(session_id=arr.id, created_at=created, status=REQUESTED, size=arr.size.value,
                         lease_minutes=arr.lease_minutes, keep_alive=None if lost else False,
                         reason="adopted: history was lost" if lost else "adopted: started outside this app")


def restore(record: SessionRecord, known: SessionRecord, now: datetime) -> Change:
    """Fill an adopted record with what this process still remembers of the session after a table loss."""
    if record.requested_by is not None or not (record.reason or "").startswith("adopted"):
        return None
    new = replace(record, requested_by=known.requested_by, reason=known.reason, labels=known.labels,
                  keep_alive=record.keep_alive or known.keep_alive,
                  idempotency_key=known.idempotency_key, stop_reason=record.stop_reason or known.stop_reason,
                  stopped_by=record.stopped_by or known.stopped_by)
    return new, [Event("restored", now, detail={"reason": "history table was lost and recreated"})]


def view_status(arr: RenderingSession | None, record: SessionRecord | None) -> str:
    if arr is not None:
        return arr.status.value
    return SessionStatus.STARTING.value if record is None or record.status == REQUESTED else record.status


def never_ready(session_id: str, arr: RenderingSession | None, record: SessionRecord | None) -> SessionEnded | None:
    """WaitUntilReady's rule: a session that has ended will not be Ready again. The error says whether it ended
    after it was Ready (history saw it Ready: the view's ``readyAt``) or before, with ARR's error (else the one
    history kept) when there was one. None while the session is Starting or Ready."""
    status = view_status(arr, record)
    if not SessionStatus(status).is_terminal:
        return None
    error = arr.error if arr is not None else None
    code = error.code if error is not None else (record.error_code if record else None)
    message = error.message if error is not None else (record.error_message if record else None)
    was_ready = record is not None and record.ready_at is not None
    return SessionEnded(f"session {session_id} ended {'after' if was_ready else 'before'} it was Ready ({status}); "
                        "it will not be Ready again", session_status=status, error_code=code, error_message=message)
