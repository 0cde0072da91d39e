"""Caps on concurrent sessions (ARR_MAX_SESSIONS, ARR_MAX_SESSIONS_PER_REQUESTER): a start beyond one is refused
with a 409 that names it; a repeat of an admitted start passes; concurrent starts at the last place cannot both
pass; a session ARR has ended but history has not yet seen end holds no place."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from arr_core.api.views import StartSessionRequest
from arr_core.errors import CapReached
from arr_core.store.entities import LEASE
from arr_core.store.table import Query

from .harness import World


def start(session_id: str, requester: str | None = "ana") -> StartSessionRequest:
    return StartSessionRequest(session_id=session_id, lease_minutes=30, requested_by=requester)


async def test_per_requester_and_total_caps_name_themselves(make_world: Any) -> None:
    world: World = make_world(max_sessions=3, max_sessions_per_requester=2)
    await world.service.start(start("a1"))
    await world.service.start(start("a2"))
    with pytest.raises(CapReached, match=r"ARR_MAX_SESSIONS_PER_REQUESTER: ana has 2 active sessions \(a1, a2\)"):
        await world.service.start(start("a3"))
    again = await world.service.start(start("a2"))  # a repeat of an admitted start is no new session
    assert again.session_id == "a2"
    await world.service.start(start("b1", "bo"))
    with pytest.raises(CapReached, match="ARR_MAX_SESSIONS: 3 sessions are active, the most the app allows is 3"):
        await world.service.start(start("c1", None))
    await world.service.stop("a1", "done")
    await world.service.start(start("a3"))  # a stop frees a place at once
    assert sorted(world.arr_statuses()) == ["a1", "a2", "a3", "b1"]


async def test_a_session_arr_ended_holds_no_place(make_world: Any) -> None:
    world: World = make_world(max_sessions_per_requester=1)
    await world.service.start(StartSessionRequest(session_id="short", lease_minutes=1, requested_by="ana"))
    world.advance(5 * 60)  # ARR ended it (lease); history still says Ready until someone looks
    await world.service.start(start("next"))
    assert world.arr_statuses()["next"] == "Starting"


async def test_concurrent_starts_at_the_last_places_admit_exactly_the_cap(make_world: Any) -> None:
    world: World = make_world(max_sessions_per_requester=3)
    results = await asyncio.gather(*(world.service.start(start(f"s{i:02d}")) for i in range(20)),
                                   return_exceptions=True)
    admitted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, CapReached)]
    assert (len(admitted), len(refused)) == (3, 17), results
    assert len(world.arr_statuses()) == 3 and len(await world.records()) == 3


async def test_without_caps_no_admission_is_taken(make_world: Any) -> None:
    world: World = make_world()
    await world.service.start(start("free"))
    assert [e["RowKey"] for e in await world.history.query(Query(LEASE))] == []  # no lease row was ever written
