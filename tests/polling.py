"""The one way a test waits for something that happens on its own (a host, a queue, a terminal, a webhook).

``wait_for(check, what)`` calls ``check`` every ``interval`` seconds until it returns something truthy, and returns
that. ``wait_for_async`` is the same in an event loop: ``check`` may then return an awaitable, and the test's loop
keeps running between checks. At the deadline ``check`` is called once more; if that is still falsy, the test fails
with ``not within {timeout} s: {what}`` (``what`` may be a callable, called then, to show the state waited on: a
screen, what arrived so far), or, with ``fail=False``, the last falsy result is returned (for a test that records
an outcome rather than fails at once).

Importable as ``polling`` (pyproject's ``pythonpath`` has ``tests``).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import pytest

T = TypeVar("T")

TIMEOUT = 20.0
INTERVAL = 0.05

What = str | Callable[[], object]


def _give_up(result: T, what: What, timeout: float, fail: bool) -> T:
    if fail:
        pytest.fail(f"not within {timeout} s: {what() if callable(what) else what}")
    return result


def wait_for(check: Callable[[], T], what: What, *, timeout: float = TIMEOUT, interval: float = INTERVAL,
             fail: bool = True) -> T:
    """The first truthy result of ``check()``, polled every ``interval`` s for ``timeout`` s (see the module)."""
    deadline = time.monotonic() + timeout
    while True:
        last = time.monotonic() >= deadline
        result = check()
        if result or last:
            return result if result else _give_up(result, what, timeout, fail)
        time.sleep(min(interval, max(deadline - time.monotonic(), 0.0)))


async def wait_for_async(check: Callable[[], T | Awaitable[T]], what: What, *, timeout: float = TIMEOUT,
                         interval: float = INTERVAL, fail: bool = True) -> T:
    """:func:`wait_for` in an event loop: ``check()`` may return an awaitable; the loop runs between checks."""
    deadline = time.monotonic() + timeout
    while True:
        last = time.monotonic() >= deadline
        checked = check()
        result = cast(T, await checked if inspect.isawaitable(checked) else checked)
        if result or last:
            return result if result else _give_up(result, what, timeout, fail)
        await asyncio.sleep(min(interval, max(deadline - time.monotonic(), 0.0)))
