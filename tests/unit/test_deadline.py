"""The request time budget (arr_core.deadline): what calls inside it see, and how its backstop ends a block."""

from __future__ import annotations

import asyncio
import time

import pytest

from arr_core.deadline import REQUEST_SECONDS, bounded, budget, check, remaining
from arr_core.errors import DeadlineExceeded
from .test_client import FakeClock


async def test_outside_any_budget_nothing_is_bounded() -> None:
    """Without a budget there is no deadline: remaining() is None, bounded() passes through, check() is quiet."""
    assert remaining() is None
    assert bounded(30.0) == 30.0
    check()


async def test_remaining_bounded_and_check_follow_the_clock() -> None:
    """remaining() counts down on the budget's clock; bounded() cuts to it, never below 0; check() raises at 0."""
    clock = FakeClock()
    async with budget(10, clock=clock):
        assert remaining() == 10.0
        assert bounded(30.0) == 10.0
        assert bounded(4.0) == 4.0
        check()
        clock.now += 7.5
        assert remaining() == 2.5
        assert bounded(4.0) == 2.5
        clock.now += 2.5
        assert remaining() == 0.0
        assert bounded(4.0) == 0.0
        with pytest.raises(DeadlineExceeded):
            check()
        clock.now += 1
        assert remaining() == -1.0
        assert bounded(4.0) == 0.0
    assert remaining() is None


async def test_default_budget_is_90_seconds_of_real_time() -> None:
    """budget() without arguments gives the request 90 s on the monotonic clock (Logic Apps wait 120 s)."""
    assert REQUEST_SECONDS == 90.0
    async with budget():
        left = remaining()
        assert left is not None and 89.0 < left <= 90.0


@pytest.mark.parametrize(("outer", "inner", "expected"), [(10.0, 100.0, 9.0), (100.0, 10.0, 10.0)])
async def test_nesting_takes_the_shorter(outer: float, inner: float, expected: float) -> None:
    """An inner budget never outlives the outer one, and leaving it restores the outer deadline."""
    clock = FakeClock()
    async with budget(outer, clock=clock):
        clock.now += 1
        async with budget(inner, clock=clock):
            assert remaining() == expected
        assert remaining() == outer - 1
    assert remaining() is None


async def test_backstop_raises_deadline_exceeded_when_the_budget_expires() -> None:
    """A block that ignores the budget is cancelled at its deadline and DeadlineExceeded replaces the cancellation."""
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        async with budget(0.05):
            await asyncio.sleep(5)
    assert time.monotonic() - started < 1.0
    assert remaining() is None


async def test_backstop_leaves_the_blocks_own_timeout_alone() -> None:
    """A TimeoutError the block raises itself (its own shorter timeout) is not the budget's: it passes unchanged."""
    with pytest.raises(TimeoutError):
        async with budget(10):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(5)
    with pytest.raises(TimeoutError) as caught:
        async with budget(10):
            raise TimeoutError("mine")
    assert str(caught.value) == "mine"
    assert remaining() is None


async def test_spent_inner_budget_is_reported_by_the_inner_block() -> None:
    """When the inner budget is the one that expires, the outer block sees DeadlineExceeded, not a cancellation."""
    with pytest.raises(DeadlineExceeded):
        async with budget(10):
            async with budget(0.02):
                await asyncio.sleep(5)
