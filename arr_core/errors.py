"""Errors raised by :mod:`arr_core`.

Every failure the ARR service (or its STS) reports, and every failure to reach it, is an :class:`ArrError`::

    ArrError
    ├── InvalidRequestError     400 / 422, or an argument refused before sending (status_code None)
    ├── AuthenticationError     401 / 403: the credential is wrong or lacks a role
    ├── NotFoundError           404: no such session
    ├── ConflictError           409: the session id is taken with other settings
    ├── ThrottledError          429, after retries; carries ``retry_after`` (seconds)
    ├── ServiceError            5xx after retries, or an answer the client cannot read
    └── TransportError          no answer: connection refused or reset
        └── ServiceTimeoutError the service did not answer in time

Each carries the HTTP ``status_code`` (None when nothing came back), ARR's error ``code`` and ``message``, and
the ``correlation_id`` (ARR's ``MS-CV`` header), which is what Microsoft support asks for.
"""

from __future__ import annotations


class ArrError(Exception):
    """Base class of every error the ARR client raises."""

    default_code = "ArrError"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code or self.default_code
        self.correlation_id = correlation_id

    def __str__(self) -> str:
        parts = [f"{self.code}: {self.message}"]
        if self.status_code is not None:
            parts.append(f"status={self.status_code}")
        if self.correlation_id:
            parts.append(f"ms-cv={self.correlation_id}")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code!r}, code={self.code!r}, "
            f"message={self.message!r}, correlation_id={self.correlation_id!r})"
        )


class InvalidRequestError(ArrError, ValueError):
    """The request was refused as malformed, by ARR (400/422) or by the client before sending.

    ``argument`` names the offending argument when the client refused it itself.
    """

    default_code = "BadRequest"

    def __init__(self, message: str, *, argument: str | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.argument = argument


class AuthenticationError(ArrError):
    """The service refused our credentials (401) or their rights (403)."""

    default_code = "Unauthorized"


class NotFoundError(ArrError):
    """The session does not exist (or is older than ARR's 30 days of memory)."""

    default_code = "NotFound"


class ConflictError(ArrError):
    """The session id is already used by a session with different settings."""

    default_code = "Conflict"


class ThrottledError(ArrError):
    """ARR kept answering 429; ``retry_after`` says how long it asked us to wait (seconds, or None)."""

    default_code = "TooManyRequests"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ServiceError(ArrError):
    """ARR failed (5xx) or answered something the client cannot read."""

    default_code = "InternalServerError"


class TransportError(ArrError):
    """ARR could not be reached: nothing came back."""

    default_code = "TransportError"


class ServiceTimeoutError(TransportError):
    """ARR did not answer within the configured timeout."""

    default_code = "Timeout"


class HistoryError(Exception):
    """Session history (Table Storage) failed; not ARR's doing."""


class HistoryUnavailable(HistoryError):
    """Table Storage could not be reached or refused us; nothing was written."""


class HistoryConflict(HistoryError):
    """A conditional write kept losing to other writers."""


class Rejected(Exception):
    """This app refuses the request as asked (policy, idempotency, conflicts); carries the HTTP status and the
    field at fault. Not an ARR error, though it may carry one."""

    def __init__(self, status: int, title: str, detail: str, *, field: str | None = None,
                 session_status: str | None = None, arr_error: ArrError | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.session_status = session_status
        self.arr_error = arr_error


_BY_STATUS: dict[int, type[ArrError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    422: InvalidRequestError,
    429: ThrottledError,
}


def error_class_for_status(status_code: int) -> type[ArrError]:
    """The :class:`ArrError` subclass that stands for an HTTP status the service answered with."""
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code]
    if 400 <= status_code < 500:
        return InvalidRequestError
    return ServiceError


class DeadlineExceeded(Exception):
    """The request's time budget ran out before the work was done (the caller gets a 504 it may retry)."""


class CleanupRunning(Exception):
    """Another instance holds the cleanup lease; this run did nothing (the caller may try again later)."""
