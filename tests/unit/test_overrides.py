"""Overrides of the nightly shutdown: a session or a label scope kept until a time, ending by itself, and read
again right before each nightly stop."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import arr_core.services.maintenance as maintenance_module
from arr_core.api.views import ExtendSessionRequest, OverrideRequest
from arr_core.errors import InvalidInput, OverrideNotFound
from arr_core.store.table import Query

from .harness import World
from .test_maintenance import EVENING, NIGHTLY, NIGHTLY_REASON, actions, start_request


async def evening(make_world: Callable[..., World]) -> World:
    world = make_world(start=EVENING, **NIGHTLY)
    await world.service.start(start_request("one"))
    await world.service.start(start_request("team-a", labels={"team": "a", "site": "x"}))
    await world.service.start(start_request("team-b", labels={"team": "b"}))
    await world.service.start(start_request("plain"))
    world.advance(60)
    return world


async def test_a_session_and_a_label_scope_are_kept_through_the_night_and_the_rest_stopped(
        make_world: Callable[..., World]) -> None:
    world = await evening(make_world)
    maintenance = world.maintenance()
    tomorrow = world.clock.now + timedelta(hours=12)
    by_id = await maintenance.add_override(OverrideRequest(session_id="one", until=tomorrow, reason="demo at 9",
                                                           requested_by="ana"))
    await maintenance.add_override(OverrideRequest(labels={"team": "a"}, until=tomorrow, requested_by="bo"))
    world.advance(3600 - 60 + 30)  # 22:00:30 in Amsterdam
    report = await maintenance.run_cleanup()
    assert actions(report.stopped) == [("plain", NIGHTLY_REASON), ("team-b", NIGHTLY_REASON)]
    kept = dict(actions(report.kept))
    assert kept["one"].startswith(f"override {by_id.id} until ") and kept["one"].endswith("by ana: demo at 9")
    assert kept["team-a"].startswith("override ovr-") and "by bo" in kept["team-a"]
    assert world.arr_statuses() == {"one": "Ready", "team-a": "Ready", "team-b": "Stopped", "plain": "Stopped"}
    assert sorted(str(o.session_id) for o in await maintenance.list_overrides()) == ["None", "one"]


async def test_an_override_ends_by_itself_and_one_lifted_keeps_nothing(make_world: Callable[..., World]) -> None:
    world = await evening(make_world)
    maintenance = world.maintenance()
    short = await maintenance.add_override(OverrideRequest(session_id="one", until=world.clock.now
                                                           + timedelta(minutes=30)))
    lifted = await maintenance.add_override(OverrideRequest(session_id="plain", until=world.clock.now
                                                            + timedelta(hours=5)))
    assert (await maintenance.remove_override(lifted.id)).session_id == "plain"
    with pytest.raises(OverrideNotFound):
        await maintenance.remove_override(lifted.id)
    world.advance(3600 - 60 + 30)  # past the short one's end
    report = await maintenance.run_cleanup()
    assert {a.id for a in report.stopped} == {"one", "plain", "team-a", "team-b"}
    assert await maintenance.list_overrides() == []
    assert await world.history.query(Query("override")) == []  # ended ones are deleted as they are read
    assert short.until < world.clock.now


@pytest.mark.parametrize(("until", "message"), [(timedelta(minutes=-1), "future"),
                                                (timedelta(days=31, minutes=1), "31 days")])
async def test_an_override_in_the_past_or_past_a_month_is_refused(world: World, until: timedelta,
                                                                  message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        await world.maintenance().add_override(OverrideRequest(session_id="s", until=world.clock.now + until))


async def test_a_keep_or_an_override_that_arrives_after_the_run_decided_is_honoured(
        make_world: Callable[..., World], monkeypatch: pytest.MonkeyPatch) -> None:
    """AVD's race: a host stopped just after a user asked to keep it. The run read the records and the overrides
    and decided to stop every session; a keepAlive set after that fails the stop's conditional write and wins (at
    no extra read), and an override made after that is seen by the stop's own look at the overrides."""
    world = await evening(make_world)
    maintenance, other_host = world.maintenance(), world.maintenance()
    world.advance(3600 - 60 + 30)
    monkeypatch.setattr(maintenance_module, "OVERRIDES_SECONDS", 0.0)  # every stop looks again (1 s in use)
    real_overrides = world.history.overrides
    reads: list[int] = []

    async def overrides_then_changes() -> Any:
        found = await real_overrides()
        if not reads:  # the run's own read, before it decides: the changes come right after it
            await world.service.extend("team-b", ExtendSessionRequest(keep_alive=True, requested_by="cy"))
            await other_host.add_override(OverrideRequest(session_id="plain",
                                                          until=world.clock.now + timedelta(hours=2)))
        reads.append(len(found))
        return found

    monkeypatch.setattr(world.history, "overrides", overrides_then_changes)
    gets = world.history.calls["get"]
    report = await maintenance.run_cleanup()
    assert {a.id for a in report.stopped} == {"one", "team-a"}
    kept = dict(actions(report.kept))
    assert kept["team-b"] == "keepAlive (set while the nightly shutdown ran)"
    assert kept["plain"].startswith("override ovr-")
    assert world.arr_statuses()["plain"] == world.arr_statuses()["team-b"] == "Ready"
    assert reads[0] == 0  # decided without them
    assert world.history.calls["get"] == gets + 1  # only team-b's record, whose change failed the stop's write
