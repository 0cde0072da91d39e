"""Errors raised by :mod:`arr_core`: one tree, rooted at :class:`AppError`.

Each error says what went wrong in the domain's words, with a stable ``code``; none knows about HTTP. The function
layer maps classes to answers in one table (``blueprints/http.py``), like httpx's ``_exceptions.py``::

    AppError
    ├── ArrError                    the ARR service (or its STS) failed or refused; carries ARR's status_code,
    │   ├── InvalidRequestError     code, message and correlation_id (MS-CV), which Microsoft support asks for
    │   ├── AuthenticationError     our credential is wrong or lacks a role
    │   ├── NotFoundError           no such session
    │   ├── ConflictError           the session id is taken with other settings
    │   ├── ThrottledError          ARR kept throttling, after retries; ``retry_after`` seconds
    │   ├── ServiceError            ARR failed, or answered something unreadable
    │   └── TransportError          no answer: connection refused or reset
    │       └── ServiceTimeoutError no answer in time
    ├── Refused                     the request cannot be done as asked; ``field`` names the culprit
    │   ├── InvalidInput            malformed input (``errors``: one per field)
    │   │   ├── BodyTooLarge, UnsupportedMediaType, InvalidToken
    │   ├── LeaseTooLong, LeaseMustGrow
    │   ├── SessionNotFound, SubscriptionNotFound, OverrideNotFound, PoolNotFound, ScheduleNotFound,
    │   │   BudgetNotSet, QuotaNotFound
    │   ├── Unauthenticated         a hook's URL secret or signature is missing, wrong or stale
│   ├── LinkRefused             a signed link that is not valid (changed, expired, not ours)
    │   └── Conflict
    │       ├── SessionEnded        carries the session's status and ARR's error
    │       ├── SessionIdInUse, IdempotencyKeyReused
    │       ├── LinkUsed            a signed stop-warning link whose one action is done already
    │       ├── PoolEmpty           a warm pool has no Ready session to hand out now
    │       ├── CapReached          a start would pass ARR_MAX_SESSIONS or ARR_MAX_SESSIONS_PER_REQUESTER
    │       ├── QuotaExceeded       a start or extend would pass a quota of Ready-minutes (/api/quotas)
    │       ├── BudgetExceeded      the month's budget refuses starts (ARR_BUDGET)
    │       └── CleanupRunning      another run holds the cleanup; try again later
    ├── Unavailable                 the app cannot serve now; a retry later may work
    │   ├── HistoryUnavailable      Table Storage did not answer or refused us
    │   ├── HistoryConflict         a conditional write kept losing to other writers
    │   ├── QueueUnavailable        Queue Storage did not answer (watcher and notification messages)
    │   └── Misconfigured           a setting is missing or malformed
    └── DeadlineExceeded            the request's time budget ran out
"""

from __future__ import annotations

from typing import Any, ClassVar, Self


class AppError(Exception):
    """Root of every error arr_core raises: a stable ``code`` and a message for people.

    A class's ``default_code`` is its name unless it says otherwise (``class NotFoundError(ArrError,
    code="NotFound")``: ARR's own code).
    """

    default_code: ClassVar[str] = "AppError"
    #: ARR's MS-CV when an answer of ARR is the cause (an :class:`ArrError`, a session ARR ended with an error):
    #: what Microsoft support asks for. None otherwise.
    correlation_id: str | None = None

    def __init_subclass__(cls, *, code: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.default_code = code or cls.__name__

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code


class ArrError(AppError):
    """Base class of every error the ARR client raises.

    ``session_id`` names the session a start asked ARR for, when the start fails with this error: ARR's answer
    may leave unknown whether it created the session (throttled, failed, no answer), and the caller is then told
    which session to poll rather than start a second one. The client leaves it None (it cannot tell a start the
    caller may retry from any other call); the service that starts the session sets it with :meth:`for_session`.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        correlation_id: str | None = None,
        session_id: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.status_code = status_code
        self.correlation_id = correlation_id
        self.session_id = session_id

    def for_session(self, session_id: str) -> Self:
        """This error, naming the session the failed start was for (``raise exc.for_session(...)``)."""
        self.session_id = session_id
        return self

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


class InvalidRequestError(ArrError, ValueError, code="BadRequest"):
    """The request was refused as malformed, by ARR (400/422) or by the client before sending.

    ``argument`` names the offending argument when the client refused it itself.
    """

    def __init__(self, message: str, *, argument: str | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.argument = argument


class AuthenticationError(ArrError, code="Unauthorized"):
    """The service refused our credentials (401) or their rights (403)."""


class NotFoundError(ArrError, code="NotFound"):
    """The session does not exist (or is older than ARR's 30 days of memory)."""


class ConflictError(ArrError, code="Conflict"):
    """The session id is already used by a session with different settings."""


class ThrottledError(ArrError, code="TooManyRequests"):
    """ARR kept answering 429; ``retry_after`` says how long it asked us to wait (seconds, or None)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ServiceError(ArrError, code="InternalServerError"):
    """ARR failed (5xx) or answered something the client cannot read."""


class TransportError(ArrError):
    """ARR could not be reached: nothing came back."""


class ServiceTimeoutError(TransportError, code="Timeout"):
    """ARR did not answer within the configured timeout."""


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


# -- requests the app refuses ----------------------------------------------------------------------------------

class Refused(AppError):
    """The request cannot be done as asked; ``field`` names the input at fault, when one is."""

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class InvalidInput(Refused, ValueError):
    """Malformed input; ``errors`` holds (field, message) pairs, one per problem."""

    def __init__(self, message: str, errors: list[tuple[str, str]] | None = None, *,
                 field: str | None = None) -> None:
        super().__init__(message, field=field or (errors[0][0] if errors else None))
        self.errors = errors if errors is not None else ([(field, message)] if field else [])


class BodyTooLarge(InvalidInput):
    """The body is larger than the app reads (64 KiB)."""


class UnsupportedMediaType(InvalidInput):
    """The body is not JSON."""


class InvalidToken(InvalidInput, code="InvalidContinuationToken"):
    """A continuation token that this app did not issue for this query."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="continuationToken")


class LeaseTooLong(Refused):
    """Above the configured maximum (``ARR_MAX_LEASE_MINUTES``) or ARR's 1440 minutes."""


class LeaseMustGrow(Refused):
    """ARR only ever extends a lease."""


class SessionNotFound(Refused):
    """Neither ARR nor history knows the session."""


class SubscriptionNotFound(Refused):
    """No such subscription (already removed, or never made)."""


class OverrideNotFound(Refused):
    """No such override (lifted already, ended by itself, or never made)."""


class ScheduleNotFound(Refused):
    """No such schedule (deleted, or never made)."""


class LinkRefused(Refused):
    """A signed link that this app did not sign, that was changed, or that has expired."""


class Conflict(Refused):
    """The request contradicts what exists."""


class BudgetExceeded(Conflict):
    """A budget threshold that refuses starts (refuse-starts, stop-all) is crossed; the message names it."""


class CapReached(Conflict):
    """A start would make more sessions active than a cap allows; the message names the cap."""


class QuotaExceeded(Conflict):
    """A start or an extend would run a scope past its quota of Ready-minutes; the message names the quota and what
    is used, committed and left."""


class QuotaNotFound(Refused):
    """No such quota (deleted, or never made)."""


class PoolEmpty(Conflict):
    """No Ready, unclaimed session in the pool now (its window is closed, or the ones it starts are not Ready)."""


class BudgetNotSet(Refused):
    """GET /api/budget on an app without ARR_BUDGET."""


class PoolNotFound(Refused):
    """No pool of that name in ARR_POOLS."""


class LinkUsed(Conflict):
    """A postpone or keep-tonight link that was used already (or has nothing left to do): nothing changes."""


class SessionEnded(Conflict):
    """The session has ended (and will never be Ready); carries its status and ARR's error, if any."""

    def __init__(self, message: str, *, session_status: str, error_code: str | None = None,
                 error_message: str | None = None, correlation_id: str | None = None) -> None:
        super().__init__(message)
        self.session_status = session_status
        self.error_code = error_code
        self.error_message = error_message
        self.correlation_id = correlation_id


class SessionIdInUse(Conflict):
    """The id names a session that was started with another size or lease."""


class IdempotencyKeyReused(Conflict):
    """The key was used within 24 h for a different request."""


class CleanupRunning(Conflict):
    """Another run holds the cleanup; this one did nothing (the caller may try again later)."""


# -- inbound hooks (issue 20) -----------------------------------------------------------------------------------

class Unauthenticated(Refused):
    """A hook's URL secret or signature is missing, wrong or stale: nothing in the request is trusted or acted on.
    The message never holds a secret or the signature given."""


# -- the app cannot serve now -----------------------------------------------------------------------------------

class Unavailable(AppError):
    """A dependency of the app failed; a retry later may work."""


class HistoryError(Unavailable):
    """Session history (Table Storage) failed; not ARR's doing."""


class HistoryUnavailable(HistoryError):
    """Table Storage could not be reached or refused us; nothing was written."""


class HistoryConflict(HistoryError):
    """A conditional write kept losing to other writers."""


class QueueUnavailable(Unavailable):
    """Queue Storage (the watcher's and the notifications' messages) could not be reached."""


class Misconfigured(Unavailable, ValueError):
    """A setting is missing or malformed; the message names it."""


class DeadlineExceeded(AppError):
    """The request's time budget ran out before the work was done (a retry may work)."""
