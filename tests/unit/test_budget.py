"""The budget acting on the unit harness (emulator on one fake clock, history in memory): crossed mid-month, it is
announced once, refuses new starts (retries of earlier starts still answered), and stop-all stops every session not
kept alive within the run that finds it crossed."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from arr_core.api.views import StartSessionRequest
from arr_core.errors import BudgetExceeded
from arr_core.services.budget import BudgetService

from .harness import World

RATES = {"rate_standard_per_hour": 6.0, "rate_premium_per_hour": 60.0}


async def after_a_cleanup(world: World, service: BudgetService) -> Any:
    """As the timer does: the cleanup brings the records up to date with ARR, then the budget looks."""
    await world.maintenance().run_cleanup()
    return await service.tick()


def budget(world: World) -> BudgetService:
    service = BudgetService(world.service, world.history, world.settings, clock=world.clock)
    world.service.guard_starts(service.check_start)
    return service


def world_with(make_world: Any, *thresholds: tuple[int, str]) -> World:
    config = {"amount": 100, "timeZone": "Europe/Berlin",
              "thresholds": [{"percent": p, "action": a} for p, a in thresholds]}
    return make_world(budget_config=json.dumps(config), **RATES)


async def test_a_crossed_refuse_starts_threshold_refuses_new_starts_only(make_world: Any,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    world = world_with(make_world, (50, "notify"), (90, "refuse-starts"))
    service = budget(world)
    await world.service.start(StartSessionRequest(session_id="big", size="Premium", lease_minutes=240))
    world.advance(60 * 60)  # Premium at 60/h: 59 minutes Ready (ARR counts from Ready), 59.00 of 100
    with caplog.at_level(logging.WARNING, "arr_core.budget"):
        first = await after_a_cleanup(world, service)
        again = await after_a_cleanup(world, service)
    assert first.announced == ["50% (notify)"] and again.announced == []  # once a month
    assert [r.message for r in caplog.records] == [
        "budget crossed: the budget's 50% threshold (notify) is crossed: 59.00 of 100.00 USD spent in March 2025 (59%)"]
    await world.service.start(StartSessionRequest(session_id="more", lease_minutes=30))  # notify refuses nothing
    world.advance(30 * 60)  # 90.x: the refuse-starts threshold
    tick = await after_a_cleanup(world, service)
    assert tick.announced == ["90% (refuse-starts)"] and tick.stopped == []
    with pytest.raises(BudgetExceeded, match="90% threshold \\(refuse-starts\\) is crossed"):
        await world.service.start(StartSessionRequest(session_id="late", lease_minutes=30))
    again_more = await world.service.start(StartSessionRequest(session_id="more", lease_minutes=30))
    assert again_more.session_id == "more"  # a retry of an earlier start is answered, not refused
    assert set(world.arr_statuses()) == {"big", "more"}


async def test_stop_all_stops_what_is_not_kept_alive_in_the_run_that_finds_it(make_world: Any) -> None:
    world = world_with(make_world, (100, "stop-all"))
    service = budget(world)
    await world.service.start(StartSessionRequest(session_id="p1", size="Premium", lease_minutes=240))
    await world.service.start(StartSessionRequest(session_id="s1", lease_minutes=240))
    await world.service.start(StartSessionRequest(session_id="kept", lease_minutes=240, keep_alive=True))
    world.advance(95 * 60)  # 95.0 + two Standard at 6/h: 9.5 + 9.5... the threshold is crossed here
    assert sorted((await after_a_cleanup(world, service)).stopped) == ["p1", "s1"]
    assert world.arr_statuses() == {"p1": "Stopped", "s1": "Stopped", "kept": "Ready"}
    events = await world.history.events("p1")
    assert [(e["Type"], e.get("Actor")) for e in events][-1] == ("stopped", "budget")
    with pytest.raises(BudgetExceeded):
        await world.service.start(StartSessionRequest(session_id="new"))


async def test_no_budget_no_guard_and_nothing_done(make_world: Any) -> None:
    world: World = make_world(**RATES)
    service = BudgetService(world.service, world.history, world.settings, clock=world.clock)
    assert await service.refusal() is None and (await service.tick()).spend is None
    assert world.service.start_guards == []
