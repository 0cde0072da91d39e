"""Waiting for a session to be Ready, at ARR's pace, and never forever.

A wait ends on Ready, or on any of the three ends (Stopped, Expired, Error; ``RenderingSession.ps1`` loops forever
on Stopped), or when ``timeout`` runs out. Between checks it sleeps ``poll_seconds`` (10 s unless told: the
script's and the app's default, since ARR throttles fast pollers), longer when the service asks for longer (the
app's ``Retry-After``, ARR's 429). A check that fails for a passing reason (429, 5xx, no answer) is tried again at
the next tick, a few times; any other failure ends the wait.

The reporter hears about every tick (4 a second) so that a person sees the time pass; ``clock`` and ``sleep`` are
injectable so that tests need not wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from .errors import ServiceFailure, as_cli_error
from .targets import TERMINAL, Session, Target

MAX_FAILED_CHECKS = 5
TICK_SECONDS = 0.25


@dataclass(frozen=True)
class Tick:
    """What a person is shown while waiting."""

    session_id: str
    status: str
    elapsed: float
    next_check_in: float | None  # None: checking now
    poll_seconds: float  # our pace (--poll)
    asked_seconds: float | None  # the service's Retry-After, when it asks for longer than our pace
    checks: int
    note: str | None = None  # a failed check, and that it will be tried again
    service: str = "the service"  # who asks: "the app" or "ARR"

    @property
    def interval(self) -> float:
        """Seconds between checks: ours, or the service's when it asks for longer."""
        return max(self.poll_seconds, self.asked_seconds or 0.0)

    @property
    def asked_by_service(self) -> bool:
        return self.asked_seconds is not None

    @property
    def pace(self) -> str:
        """``every 1 s``, or ``every 1 s, or as the app asks: 10 s`` when it asks for longer."""
        every = f"every {self.poll_seconds:g} s"
        return f"{every}, or as {self.service} asks: {self.asked_seconds:g} s" if self.asked_by_service else every


class Reporter(Protocol):
    def update(self, tick: Tick) -> None: ...


@dataclass(frozen=True)
class WaitOutcome:
    session: Session
    checks: int
    elapsed: float
    timed_out: bool = False

    @property
    def status(self) -> str:
        return str(self.session.get("status"))

    @property
    def ready(self) -> bool:
        return self.status == "Ready" and not self.timed_out


def _passing(exc: BaseException) -> bool:
    """A failure that a later check may not meet: throttling, a 5xx, no answer."""
    from arr_core.arr.retries import is_retryable

    if is_retryable(exc):
        return True
    error = as_cli_error(exc)
    return isinstance(error, ServiceFailure) and (error.status is None or error.status in (429, 502, 503, 504))


async def wait_for_session(
    target: Target,
    session_id: str,
    reporter: Reporter,
    *,
    first: Session | None = None,
    first_retry_after: float | None = None,
    poll_seconds: float = 10.0,
    timeout: float | None = None,
    started: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> WaitOutcome:
    """Check ``session_id`` until it is Ready or has ended, or ``timeout`` seconds have passed since ``started``.

    ``first`` is a session already in hand (a start's answer): the first check then waits one interval, or
    ``first_retry_after`` when the service asked for longer with it.
    """
    started = clock() if started is None else started
    deadline = None if timeout is None else started + timeout
    session, status = first, str(first.get("status")) if first else "?"
    checks = failures = 0
    note: str | None = None
    retry_after = first_retry_after
    service = "the app" if target.is_app else "ARR"

    def tick(next_check_in: float | None) -> Tick:
        asked = retry_after if retry_after is not None and retry_after > poll_seconds else None
        return Tick(session_id, status, clock() - started, next_check_in, poll_seconds, asked, checks, note, service)

    check_now = first is None
    while True:
        if check_now:
            reporter.update(tick(None))
            try:
                poll = await target.poll(session_id)
            except Exception as exc:
                if not _passing(exc) or failures + 1 >= MAX_FAILED_CHECKS:
                    raise
                failures += 1
                error = as_cli_error(exc)
                note = f"a check failed ({error.message if error else type(exc).__name__}); trying again"
                retry_after = getattr(exc, "retry_after", None)
            else:
                checks, failures, note = checks + 1, 0, None
                session, retry_after = poll.session, poll.retry_after
                status = str(session.get("status"))
        check_now = True
        if session is not None and note is None and (status == "Ready" or status in TERMINAL):
            return WaitOutcome(session, checks, clock() - started)
        if deadline is not None and clock() >= deadline:  # the last check was made at the deadline
            return WaitOutcome(session or {"id": session_id, "status": status}, checks, clock() - started,
                               timed_out=True)
        interval = max(poll_seconds, retry_after or 0.0)
        next_at = clock() + interval if deadline is None else min(clock() + interval, deadline)
        while (left := next_at - clock()) > 0:
            reporter.update(tick(left))
            await sleep(min(TICK_SECONDS, left))
