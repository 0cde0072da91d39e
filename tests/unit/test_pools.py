"""Warm pools on the unit harness (the emulator on one fake clock, history in memory): the window (time zones,
past midnight), the refill, a claim that two claimers cannot both win, a claim retried with its Idempotency-Key,
the warm leases, and the close."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from arr_core.domain.pools import PoolSpec, parse_pools
from arr_core.errors import IdempotencyKeyReused, PoolEmpty, PoolNotFound
from arr_core.services.pools import PoolService
from arr_core.services.sessions import SessionService
from arr_core.services.settings import AppSettings

from .harness import World

TEAM = {"name": "team", "size": "Premium", "count": 2, "from": "08:00", "to": "18:00", "timeZone": "UTC",
        "labels": {"project": "review"}}


def pools(world: World) -> PoolService:
    """A pool service as one host of the app would have (its own lease holder)."""
    return PoolService(SessionService(world.arr, world.history, world.settings, clock=world.clock), world.history,
                       world.settings, clock=world.clock)


def spec(**fields: Any) -> PoolSpec:
    return parse_pools(json.dumps([{**TEAM, **fields}]))[0]


def test_the_window_in_its_time_zone_and_past_midnight() -> None:
    berlin = spec(timeZone="Europe/Berlin")
    monday = datetime(2025, 3, 10, 6, 59, tzinfo=UTC)  # 07:59 in Berlin
    assert berlin.window_at(monday) is None
    opens, closes = berlin.window_at(monday + timedelta(minutes=1)) or (None, None)
    assert (opens, closes) == (datetime(2025, 3, 10, 7, 0, tzinfo=UTC), datetime(2025, 3, 10, 17, 0, tzinfo=UTC))
    summer = berlin.window_at(datetime(2025, 7, 7, 6, 0, tzinfo=UTC))  # 08:00 CEST
    assert summer is not None and summer[0] == datetime(2025, 7, 7, 6, 0, tzinfo=UTC)
    assert berlin.window_at(datetime(2025, 3, 8, 10, 0, tzinfo=UTC)) is None  # a Saturday
    night = spec(**{"from": "22:00", "to": "06:00", "days": ["Fri"]})
    window = night.window_at(datetime(2025, 3, 15, 3, 0, tzinfo=UTC))  # Saturday 03:00: Friday's window
    assert window == (datetime(2025, 3, 14, 22, 0, tzinfo=UTC), datetime(2025, 3, 15, 6, 0, tzinfo=UTC))


@pytest.mark.parametrize(("text", "message"), [
    ("{}", "JSON array"), ('[{"name": "Team", "count": 1, "from": "08:00", "to": "09:00"}]', "name"),
    (json.dumps([TEAM, TEAM]), "distinct"), (json.dumps([{**TEAM, "count": 21}]), "count"),
    (json.dumps([{**TEAM, "timeZone": "Mars/Olympus"}]), "IANA"), (json.dumps([{**TEAM, "days": ["Xyz"]}]), "days"),
    (json.dumps([{**TEAM, "labels": {"pool": "x"}}]), "pool"),
])
def test_a_malformed_pool_is_refused_when_the_settings_load(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AppSettings(pool_config=text)


async def ready_pool(make_world: Any, **settings: Any) -> tuple[World, PoolService]:
    world = make_world(pool_config=json.dumps([TEAM]), **{"max_lease_minutes": 480, **settings})
    service = pools(world)
    tick = await service.tick()
    assert tick is not None and len(tick.started) == TEAM["count"]
    world.advance(30)  # the emulator's start takes 10 s
    return world, service


async def test_a_pool_fills_to_its_count_and_a_second_tick_starts_nothing(make_world: Any) -> None:
    world, service = await ready_pool(make_world)
    again = await service.tick()
    assert again is not None and again.started == []
    (view,) = await service.views()
    assert (view.open, view.ready, view.starting, view.claimed) == (True, 2, 0, 0)
    records = await world.records()
    assert {r.labels["pool"] for r in records} == {"team"} and {r.labels["project"] for r in records} == {"review"}
    assert {r.size for r in records} == {"Premium"} and {r.requested_by for r in records} == {"pool:team"}


async def test_two_hosts_claiming_at_once_never_get_the_same_session(make_world: Any) -> None:
    world, service = await ready_pool(make_world)
    hosts = [pools(world) for _ in range(5)]
    results = await asyncio.gather(*(h.claim("team", f"user{i}", 60) for i, h in enumerate(hosts * 2)),
                                   return_exceptions=True)
    won = [r for r in results if not isinstance(r, BaseException)]
    empty = [r for r in results if isinstance(r, PoolEmpty)]
    assert len(won) == 2 and len(empty) == 8, results
    assert len({s.session_id for s in won}) == 2
    owners = {r.session_id: r.requested_by for r in await world.records()}
    assert sorted(owners[s.session_id] for s in won) == sorted(s.record.requested_by for s in won)  # type: ignore[union-attr]
    assert all(not owner.startswith("pool:") for owner in owners.values())
    tick = await service.tick()  # the pool refills
    assert tick is not None and len(tick.started) == 2


async def test_a_claim_gets_the_lease_it_asks_for_and_an_idempotent_retry_the_same_session(
        make_world: Any) -> None:
    world, service = await ready_pool(make_world)
    first = await service.claim("team", "ana", 240, idempotency_key="k-1")
    assert first.arr is not None and first.arr.lease_minutes == 240  # elapsed 0 + 240 (the warm lease was 60)
    again = await service.claim("team", "ana", 240, idempotency_key="k-1")
    assert again.session_id == first.session_id
    assert [r.requested_by for r in await world.records()].count("ana") == 1  # claimed once
    with pytest.raises(IdempotencyKeyReused):
        await service.claim("team", "bo", 240, idempotency_key="k-1")
    claimed = next(r for r in await world.records() if r.session_id == first.session_id)
    assert claimed.last_heartbeat == world.clock.now  # the idle stop counts from the claim, not from Ready
    events = [e["Type"] for e in await world.history.events(first.session_id)]
    assert "claimed" in events and "extended" in events
    with pytest.raises(PoolNotFound):
        await service.claim("nope", "ana", 60)


async def test_unclaimed_sessions_are_kept_warm_then_stopped_when_the_window_closes(make_world: Any) -> None:
    world, service = await ready_pool(make_world, max_lease_minutes=1440)
    claimed = await service.claim("team", "ana", 600)
    assert claimed.arr is not None and claimed.arr.lease_minutes == 600
    for _ in range(11):  # 09:00 to 17:15 in 45-minute ticks: the warm lease (60 min) is topped up each time
        world.advance(45 * 60)
        await service.tick()
    statuses = world.arr_statuses()
    assert statuses[claimed.session_id] == "Ready"
    unclaimed = sorted(sid for sid in statuses if sid != claimed.session_id)
    assert [statuses[s] for s in unclaimed] == ["Ready", "Ready"]  # refilled after the claim; none ever expired
    world.advance(3600)  # past 18:00
    tick = await service.tick()
    assert tick is not None and sorted(tick.stopped) == unclaimed and tick.started == []
    assert world.arr_statuses()[claimed.session_id] == "Ready"  # claimed: its own lease
    with pytest.raises(PoolEmpty, match="window is closed"):
        await service.claim("team", "bo", 60)


async def test_one_host_tends_the_pools_at_a_time(make_world: Any) -> None:
    world = make_world(pool_config=json.dumps([TEAM]))
    one, two = pools(world), pools(world)
    assert await world.history.take_lease("pools", "someone", 60)
    assert await one.tick() is None and await two.tick() is None
    assert await world.records() == []
