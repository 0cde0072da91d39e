"""When and how long the client waits before trying ARR again.

Retried: 429 (waiting what ``Retry-After`` says, in seconds or as an HTTP date), 5xx, and failures to connect or
read. Never retried: any other 4xx, which would fail the same way again. Attempts are bounded, and so is the total
time, twice: by the policy's own ``deadline`` per call, and by the request's budget (:mod:`.deadline`) shared by
every call one HTTP request makes. A retry whose wait would cross the earlier of the two is not made, and the last
error is raised instead (a :class:`ThrottledError` keeps ARR's ``retry_after``, so the caller can be told when to
come back).

Each retry is logged (attempt, wait, reason, MS-CV), as stamina does; errors carry no secret, so neither do the logs.

tenacity does the looping; this module only says what to retry and how long to wait. ``sleep`` and ``clock`` are
injectable so that tests can prove the waits without sleeping.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TypeVar

import tenacity

from .. import deadline as request_deadline
from ..errors import ArrError, DeadlineExceeded, ServiceError, ThrottledError, TransportError

T = TypeVar("T")
MAX_RETRY_AFTER = 3600.0  # an hour: anything longer is not a wait, and is passed on as this
log = logging.getLogger("arr_core.retries")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if not math.isfinite(seconds):  # "inf", "1e999", NaN: nothing a caller can wait for
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def is_retryable(error: BaseException) -> bool:
    """429, 5xx and transport failures may succeed later; nothing else will."""
    if isinstance(error, (ThrottledError, TransportError)):
        return True
    return isinstance(error, ServiceError) and (error.status_code or 0) >= 500


def retry_reason(error: BaseException | None) -> str:
    """What a retry is for, in a log line: ARR's status ("429", "503") or the network failure ("ConnectError")."""
    if isinstance(error, ArrError) and error.status_code is not None:
        return str(error.status_code)
    if error is None:
        return "-"
    return type(error.__cause__ or error).__name__


@dataclass(frozen=True)
class RetryPolicy:
    """How many times, and for how long, the client retries one ARR call.

    ``RetryPolicy.off()`` makes one attempt; tests that keep the attempts inject a ``sleep`` that takes no time.
    """

    attempts: int = 5
    deadline: float = 60.0
    wait_initial: float = 0.5
    wait_max: float = 15.0
    jitter: float = 0.5
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    @classmethod
    def off(cls) -> RetryPolicy:
        """One attempt, no retries."""
        return cls(attempts=1)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ThrottledError) and error.retry_after is not None:
            return error.retry_after
        backoff = tenacity.wait_exponential_jitter(multiplier=self.wait_initial, max=self.wait_max, jitter=self.jitter)
        return float(backoff(state))

    async def call(self, attempt: Callable[[], Awaitable[T]], *, what: str = "ARR call") -> T:
        """Run ``attempt`` until it succeeds, fails for good, or the attempts, the deadline or the budget run out.

        An attempt is never sent once the request's budget is spent: the last error is raised, or
        :class:`DeadlineExceeded` when there was none. ``what`` names the call in the retry log lines.
        """
        own_end = self.clock() + self.deadline
        last: Exception | None = None

        async def guarded() -> T:
            nonlocal last
            request_deadline.check()
            try:
                return await attempt()
            except DeadlineExceeded:
                raise
            except Exception as exc:
                last = exc
                raise

        def out_of_time(state: tenacity.RetryCallState) -> bool:
            wait, left = state.upcoming_sleep or 0.0, request_deadline.remaining()
            past_own = self.clock() + wait > own_end
            if not past_own and (left is None or wait < left):
                return False
            error = state.outcome.exception() if state.outcome else None
            log.warning("%s: not retrying after %s (MS-CV %s): a wait of %.1f s would cross the %s", what,
                        retry_reason(error), _cv(error), wait, "call's deadline" if past_own else "request's budget")
            return True

        def log_retry(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            number, wait, reason, cv = state.attempt_number + 1, state.upcoming_sleep, retry_reason(error), _cv(error)
            log.warning("%s: attempt %d of %d in %.1f s after %s (MS-CV %s)", what, number, self.attempts, wait,
                        reason, cv, extra={"retry_attempt": number, "retry_wait": wait, "retry_reason": reason,
                                           "ms_cv": cv})

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.attempts) | out_of_time,
            wait=self._wait,
            retry=tenacity.retry_if_exception(is_retryable),
            before_sleep=log_retry,
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return await retrying(guarded)
        except DeadlineExceeded:
            error = last
            if error is None:
                raise
        raise error  # the budget ran out between attempts: the caller learns what ARR last said


def _cv(error: BaseException | None) -> str:
    return (error.correlation_id if isinstance(error, ArrError) else None) or "-"


__all__ = ["RetryPolicy", "is_retryable", "parse_retry_after", "retry_reason"]
