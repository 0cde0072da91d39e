"""One time budget per HTTP request, shared by every ARR and Table Storage call made for it.

Logic Apps give up on a request after 120 s. Each call below has its own retries and timeouts, and several calls
in a row could add up past that; so the function layer opens a :func:`budget` per request, and retries and
storage calls ask :func:`remaining` before they wait or start. A retry that would cross the deadline is not made.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import NamedTuple

from .errors import DeadlineExceeded

REQUEST_SECONDS = 90.0  # Logic Apps wait 120 s; leave room for the host and the network
BACKSTOP_GRACE = 0.25  # the backstop lets calls that honour the budget end first, with their own error


class _Deadline(NamedTuple):
    at: float
    clock: Callable[[], float]


_deadline: ContextVar[_Deadline | None] = ContextVar("arr_core_deadline", default=None)


def current_budget() -> object | None:
    """The request's budget itself (an identity, not what is left of it): writes under one budget may share a batch."""
    return _deadline.get()


def remaining() -> float | None:
    """Seconds left in the current budget (may be negative), or None outside any budget."""
    current = _deadline.get()
    return None if current is None else current.at - current.clock()


def bounded(seconds: float) -> float:
    """``seconds``, or less when the current budget ends sooner (never below zero)."""
    left = remaining()
    return seconds if left is None else max(0.0, min(seconds, left))


def check() -> None:
    """Raise :class:`DeadlineExceeded` when the current budget is spent."""
    left = remaining()
    if left is not None and left <= 0:
        raise DeadlineExceeded("the request's time budget is spent")


@asynccontextmanager
async def call(what: str, seconds: float, unavailable: Callable[[str], Exception]) -> AsyncIterator[None]:
    """One call to a dependency (``what``: "Table Storage", "queue arr-watch"), within ``seconds`` and the
    current budget. Out of time, it raises :class:`DeadlineExceeded` when the budget is spent, else
    ``unavailable(message)``: the dependency's own "did not answer" error."""
    check()
    try:
        async with asyncio.timeout(bounded(seconds)):
            yield
    except TimeoutError:
        left = remaining()
        if left is not None and left <= 0:
            raise DeadlineExceeded(f"the request's time budget ran out waiting for {what}") from None
        raise unavailable(f"{what} did not answer within {seconds:.0f} s") from None


@asynccontextmanager
async def budget(seconds: float = REQUEST_SECONDS, *, clock: Callable[[], float] = time.monotonic
                 ) -> AsyncIterator[None]:
    """Run the block within ``seconds`` (or the enclosing budget, if shorter).

    Calls inside see :func:`remaining` and end by the deadline with their own error (an ARR request's timeout is
    cut to it, so a silent ARR gives ``ServiceTimeoutError``). As a backstop for work that does not look, the block
    is cancelled :data:`BACKSTOP_GRACE` seconds later and :class:`DeadlineExceeded` is raised in its place. A
    ``TimeoutError`` the block raises itself (its own shorter timeout) passes through unchanged.

    ``clock`` is what the budget is measured by; tests pass the fake clock their retry policy sleeps on (the
    backstop always runs on real time).
    """
    seconds = bounded(seconds)
    token = _deadline.set(_Deadline(clock() + seconds, clock))
    backstop = asyncio.timeout(seconds + BACKSTOP_GRACE)
    try:
        async with backstop:
            yield
    except TimeoutError:
        if not backstop.expired():
            raise  # the block's own timeout (a storage call's, say): not the budget's to rename
        raise DeadlineExceeded(f"the work did not finish within {seconds:g} s") from None
    finally:
        _deadline.reset(token)


__all__ = ["BACKSTOP_GRACE", "REQUEST_SECONDS", "bounded", "budget", "call", "check", "current_budget", "remaining"]
