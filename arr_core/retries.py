"""When and how long the client waits before trying ARR again.

Retried: 429 (waiting what ``Retry-After`` says, in seconds or as an HTTP date), 5xx, and failures to connect or
read. Never retried: any other 4xx, which would fail the same way again. Attempts are bounded, and so is the total
time: a retry whose wait would cross the deadline is not made, and the last error is raised instead.

tenacity does the looping; this module only says what to retry and how long to wait. ``sleep`` and ``clock`` are
injectable so that tests can prove the waits without sleeping.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TypeVar

import tenacity

from .errors import ServiceError, ThrottledError, TransportError

T = TypeVar("T")


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
    return max(0.0, seconds) if seconds == seconds else None  # NaN guard


def is_retryable(error: BaseException) -> bool:
    """429, 5xx and transport failures may succeed later; nothing else will."""
    if isinstance(error, (ThrottledError, TransportError)):
        return True
    return isinstance(error, ServiceError) and (error.status_code or 0) >= 500


@dataclass(frozen=True)
class RetryPolicy:
    """How many times, and for how long, the client retries one ARR call.

    ``RetryPolicy.off()`` makes one attempt; ``policy.without_waiting()`` keeps the attempts but never sleeps, for
    tests.
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

    def without_waiting(self) -> RetryPolicy:
        """The same policy, but waits take no time (for tests)."""

        async def no_sleep(_: float) -> None:
            return None

        return replace(self, sleep=no_sleep)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ThrottledError) and error.retry_after is not None:
            return error.retry_after
        backoff = tenacity.wait_exponential_jitter(multiplier=self.wait_initial, max=self.wait_max, jitter=self.jitter)
        return float(backoff(state))

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it succeeds, fails for good, or the attempts or the deadline run out."""
        started = self.clock()

        def out_of_time(state: tenacity.RetryCallState) -> bool:
            return self.clock() - started + (state.upcoming_sleep or 0.0) > self.deadline

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.attempts) | out_of_time,
            wait=self._wait,
            retry=tenacity.retry_if_exception(is_retryable),
            sleep=self.sleep,
            reraise=True,
        )
        return await retrying(attempt)


__all__ = ["RetryPolicy", "is_retryable", "parse_retry_after"]
