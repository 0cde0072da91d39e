"""A session as the HTTP API shows it: ARR's live view merged with what history adds."""

from __future__ import annotations

from collections.abc import Callable

from ..arr.models import RenderingSession, SessionStatus
from ..domain.lifecycle import view_status
from ..domain.records import SessionRecord
from .views import ErrorInfo, SessionLinks, SessionView


def _billed(status: str, elapsed: int | None) -> int | None:
    """ARR bills from Ready on: a session that failed before it cost nothing; one still starting, nothing yet."""
    if status == SessionStatus.ERROR:
        return 0
    return elapsed if status in (SessionStatus.READY, SessionStatus.STOPPED, SessionStatus.EXPIRED) else None


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
        stop_reason=record.stop_reason if record else None,
        stopped_by=record.stopped_by if record else None,
        labels=dict(record.labels) if record else {},
        keep_alive=bool(record.keep_alive) if record else False,
        billed_minutes=_billed(status, elapsed),
        error=error,
        links=links(session_id),
    )
