"""The tests' one polling helper (tests/polling.py): it returns the first truthy result, checks once more at the
deadline, fails naming what it waited for (rendered then), or returns the last falsy result when told not to fail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from polling import wait_for, wait_for_async


def counter(truthy_from: int) -> tuple[list[int], Callable[[], int | None]]:
    calls: list[int] = []

    def check() -> int | None:
        calls.append(len(calls))
        return len(calls) if len(calls) >= truthy_from else None

    return calls, check


def test_the_first_truthy_result_is_returned() -> None:
    calls, check = counter(3)
    assert wait_for(check, "the third call", timeout=5, interval=0.001) == 3
    assert len(calls) == 3


def test_a_timeout_fails_naming_what_was_awaited_as_it_is_then() -> None:
    state = {"seen": 0}

    def check() -> bool:
        state["seen"] += 1
        return False

    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"^not within 0.05 s: seen \d+ times$"):
        wait_for(check, lambda: f"seen {state['seen']} times", timeout=0.05, interval=0.01)
    assert 0.05 <= time.monotonic() - started < 1
    assert state["seen"] >= 2  # checked during the wait, and once more at the deadline


def test_a_zero_timeout_still_checks_once() -> None:
    assert wait_for(lambda: "ready", "ready", timeout=0) == "ready"
    with pytest.raises(pytest.fail.Exception, match="not within 0 s: never"):
        wait_for(lambda: None, "never", timeout=0)


def test_without_failing_the_last_falsy_result_is_returned() -> None:
    assert wait_for(lambda: [], "rows", timeout=0.02, interval=0.005, fail=False) == []


async def test_the_async_form_awaits_the_check_and_lets_the_loop_run() -> None:
    done: list[str] = []

    async def check() -> list[str]:
        return list(done)

    asyncio.get_running_loop().call_later(0.02, done.append, "x")
    assert await wait_for_async(check, "the callback ran", timeout=5, interval=0.005) == ["x"]
    assert await wait_for_async(lambda: 7, "a plain value", timeout=0) == 7
    with pytest.raises(pytest.fail.Exception, match="not within 0.02 s: nothing"):
        await wait_for_async(lambda: 0, "nothing", timeout=0.02, interval=0.005)
    assert await wait_for_async(lambda: 0, "nothing", timeout=0.01, interval=0.005, fail=False) == 0
