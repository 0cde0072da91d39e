"""Pure rules about a session's life: what an ARR observation changes in history, and the merged view.

No I/O here, so every rule is tested without a network or a table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from .records import Event, SessionRecord
from .models import RenderingSession, SessionStatus
from .views import ErrorInfo, SessionLinks, SessionView

Observation = tuple[SessionRecord, list[Event]] | None


def fingerprint(parameters: dict[str, Any]) -> str:
    """A stable digest of a start request's parameters, to tell a retried request from a different one."""
    canonical = json.dumps(parameters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def observe(record: SessionRecord, arr: RenderingSession, now: datetime, *, actor: str | None = None,
            stop_reason: str | None = None) -> Observation:
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
        if stop_reason is not None and record.is_active and status is SessionStatus.STOPPED:
            new = replace(new, stop_reason=stop_reason, stopped_by=actor)
            events.append(Event("stopped", now, to_status=status.value, actor=actor,
                                detail={"reason": stop_reason, "billedMinutes": elapsed}))
    elif elapsed is not None and new is not record:
        new = replace(new, elapsed_minutes=elapsed)
    if new == record:
        return None
    return new, events


def _end_time(record: SessionRecord, arr: RenderingSession, now: datetime) -> datetime:
    if arr.status is SessionStatus.EXPIRED and record.ready_at is not None and arr.lease_minutes is not None:
        return min(now, record.ready_at + timedelta(minutes=arr.lease_minutes))
    return now


def failed_start(record: SessionRecord, code: str, message: str, now: datetime) -> Observation:
    """ARR refused to create the session: the record ends in Error with ARR's reason."""
    if not record.is_active:
        return None
    new = replace(record, status="Error", error_code=code, error_message=message, ended_at=now, elapsed_minutes=0)
    return new, [Event("start-failed", now, from_status=record.status, to_status="Error",
                       detail={"code": code, "message": message})]


def view_status(arr: RenderingSession | None, record: SessionRecord | None) -> str:
    if arr is not None:
        return arr.status.value
    return "Starting" if record is None or record.status == "Requested" else record.status


def build_view(session_id: str, arr: RenderingSession | None, record: SessionRecord | None,
               links: Callable[[str], SessionLinks]) -> SessionView:
    """ARR's live view (when there is one) merged with what history adds; unknown values are None."""
    status = view_status(arr, record)
    error = None
    if arr is not None and arr.error is not None:
        error = ErrorInfo(code=arr.error.code, message=arr.error.message)
    elif record is not None and record.error_code:
        error = ErrorInfo(code=record.error_code, message=record.error_message or "")
    size = arr.size.value if arr is not None else (record.size if record else None)
    elapsed = arr.elapsed_minutes if arr is not None else (record.elapsed_minutes if record else None)
    return SessionView(
        id=session_id,
        status=status,  # type: ignore[arg-type]
        size=size,  # type: ignore[arg-type]
        lease_minutes=arr.lease_minutes if arr is not None else (record.lease_minutes if record else None),
        elapsed_minutes=elapsed,
        remaining_minutes=arr.remaining_minutes if arr is not None else None,
        hostname=arr.hostname if arr is not None else None,
        handshake_port=arr.handshake_port if arr is not None else None,
        arr_inspector_port=arr.arr_inspector_port if arr is not None else None,
        teraflops=arr.teraflops if arr is not None else None,
        created_at=(arr.created_at if arr is not None else None) or (record.created_at if record else None),
        ready_at=record.ready_at if record else None,
        ended_at=record.ended_at if record else None,
        requested_by=record.requested_by if record else None,
        reason=record.reason if record else None,
        labels=dict(record.labels) if record else {},
        keep_alive=record.keep_alive if record else False,
        billed_minutes=elapsed if status in ("Ready", "Stopped", "Expired") else (0 if status == "Error" else None),
        error=error,
        links=links(session_id),
    )
