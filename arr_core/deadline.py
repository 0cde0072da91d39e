"""One time budget per HTTP request, shared by every ARR and Table Storage call made for it.

Logic Apps give up on a request after 120 s. Each call below has its own retries and timeouts, and several calls
in a row could add up past that; so the function layer opens a :func:`budget` per request, and retries and
storage calls ask :func:`remaining` before they wait or start. A retry that would cross the deadline is not made.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from .errors import DeadlineExceeded

REQUEST_SECONDS = 90.0  # Logic Apps wait 120 s; leave room for the host and the network
_deadline: ContextVar[float | None] = ContextVar("arr_core_deadline", default=None)


def remaining() -> float | None:
    """Seconds left in the current budget (may be negative), or None outside any budget."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


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
async def budget(seconds: float = REQUEST_SECONDS) -> AsyncIterator[None]:
    """Run the block within ``seconds`` (or the enclosing budget, if shorter).

    Calls inside see :func:`remaining`; as a backstop the block is cancelled at the deadline and
    :class:`DeadlineExceeded` is raised in its place.
    """
    outer = _deadline.get()
    deadline = time.monotonic() + seconds
    if outer is not None:
        deadline = min(deadline, outer)
    token = _deadline.set(deadline)
    try:
        async with asyncio.timeout_at(asyncio.get_running_loop().time() + (deadline - time.monotonic())):
            yield
    except TimeoutError:
        raise DeadlineExceeded(f"the work did not finish within {seconds:.0f} s") from None
    finally:
        _deadline.reset(token)


__all__ = ["REQUEST_SECONDS", "budget", "bounded", "check", "remaining"]
