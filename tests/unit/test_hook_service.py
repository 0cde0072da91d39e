"""HookService on the unit harness (one fake clock, the emulator in-process, the store over the dict table): a
delivery is remembered once, queued while it is not done, carried out once, and a message names nothing but a
recorded delivery."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from arr_core.api.views import StartSessionRequest
from arr_core.domain.hooks.deliveries import HOOK_QUEUE, KEEP_DELIVERIES, hook_session_id
from arr_core.domain.hooks.rules import parse_rules
from arr_core.domain.hooks.senders import HookEvent
from arr_core.errors import HistoryUnavailable
from arr_core.services.hooks import HookService
from arr_core.services.notifier import Notifier
from arr_core.services.sessions import SessionService
from arr_core.testing.memory_queues import MemoryQueues

from .harness import World
from .test_notifier import links

RULES = parse_rules("""[
  {"name": "landed", "sender": "eventgrid", "eventTypes": ["Microsoft.Storage.BlobCreated"],
   "action": {"kind": "start", "leaseMinutes": 30, "labels": {"blob": "{blob}"}}},
  {"name": "budget", "sender": "budget", "action": {"kind": "stopAll"}},
  {"name": "extend", "sender": "standardwebhooks", "eventTypes": ["more.time"],
   "action": {"kind": "extend", "scope": {"team": "a"}, "leaseMinutes": 90}}
]""")


def hooks_for(world: World) -> tuple[HookService, MemoryQueues]:
    queues = MemoryQueues(clock=world.clock)
    notifier = Notifier(world.service, world.history, queues, httpx.AsyncClient(), poll_seconds=10,
                        development=True, clock=world.clock)
    return HookService(world.service, world.history, queues, notifier, RULES, clock=world.clock), queues


def blob(delivery_id: str = "e-1", name: str = "chair.arrAsset") -> HookEvent:
    return HookEvent(sender="eventgrid", delivery_id=delivery_id, type="Microsoft.Storage.BlobCreated",
                     subject=f"/blobServices/default/containers/c/blobs/{name}",
                     fields={"container": "c", "blob": name, "url": "", "api": "PutBlob", "id": delivery_id,
                             "type": "Microsoft.Storage.BlobCreated", "subject": "", "source": ""}, data={})


def budget(delivery_id: str = "b-1") -> HookEvent:
    return HookEvent(sender="budget", delivery_id=delivery_id, type="CostAlerts", fields={"budgetName": "team"},
                     data={})


async def run_queue(hooks: HookService, queues: MemoryQueues) -> list[str]:
    return [await hooks.carry_out(body, links) for body in queues.take(HOOK_QUEUE)]


async def test_a_delivery_is_recorded_once_and_carried_out_once(world: World) -> None:
    hooks, queues = hooks_for(world)
    first = await hooks.receive([blob()])
    again = await hooks.receive([blob()])  # the sender's retry before it is done: queued again, harmless
    assert [(e.outcome, e.duplicate) for e in (*first.events, *again.events)] == [("queued", False), ("queued", True)]
    outcomes = await run_queue(hooks, queues)
    assert outcomes == [f"landed: started {hook_session_id('eventgrid', 'e-1', 'landed')}", "done already"]
    later = await hooks.receive([blob()])
    assert (later.events[0].outcome, later.events[0].duplicate, later.queued) == ("done", True, False)
    assert queues.take(HOOK_QUEUE) == []
    records = await world.records()
    assert [(r.session_id, r.labels, r.lease_minutes) for r in records] == [
        (hook_session_id("eventgrid", "e-1", "landed"), {"blob": "chair.arrAsset"}, 30)]


async def test_carried_out_twice_before_it_is_marked_done_starts_one_session(world: World) -> None:
    """Two hosts (or a lost table) may both carry a delivery out: the session id comes from the delivery."""
    hooks, queues = hooks_for(world)
    await hooks.receive([blob()])
    (message,) = queues.take(HOOK_QUEUE)
    delivery = await world.history.delivery("eventgrid", "e-1")
    assert delivery is not None
    await hooks._act(delivery, delivery.actions[0], links)  # a host that died before marking it done
    assert await hooks.carry_out(message, links) == f"landed: started {hook_session_id('eventgrid', 'e-1', 'landed')}"
    assert len(await world.records()) == 1 and len(world.arr_statuses()) == 1


async def test_a_dry_run_records_and_queues_nothing(world: World) -> None:
    hooks, queues = hooks_for(world)
    receipt = await hooks.receive([blob(), budget()], dry_run=True)
    assert [e.outcome for e in receipt.events] == ["wouldAct", "wouldAct"]
    assert queues.sent == [] and await world.history.delivery("eventgrid", "e-1") is None


@pytest.mark.parametrize("body", [{"sender": "eventgrid", "deliveryId": "never-recorded"},
                                  {"sender": "eventgrid"}, {"sender": "mail", "deliveryId": "x"}, ["a list"]])
async def test_a_message_names_a_recorded_delivery_or_nothing_is_done(world: World, body: Any) -> None:
    hooks, _ = hooks_for(world)
    if isinstance(body, dict) and "deliveryId" in body and body["sender"] == "eventgrid":
        assert (await hooks.carry_out(body, links)).startswith("no such delivery")
    else:
        with pytest.raises(ValueError):
            await hooks.carry_out(body, links)
    assert world.arr_statuses() == {}


async def test_a_budget_stops_everything_not_kept_alive_and_an_extend_is_idempotent(world: World) -> None:
    hooks, queues = hooks_for(world)
    for session_id, keep, team in (("s-kept", True, "a"), ("s-a", False, "a"), ("s-b", False, "b")):
        await world.service.start(StartSessionRequest(session_id=session_id, lease_minutes=30, keep_alive=keep,
                                                      labels={"team": team}))
    world.advance(60)
    extend = HookEvent(sender="standardwebhooks", delivery_id="w-1", type="more.time", fields={"type": "more.time"},
                       data={})
    await hooks.receive([extend])
    assert await run_queue(hooks, queues) == ["extend: extended 2 (s-kept, s-a)"]
    await hooks.receive([extend.model_copy(update={"delivery_id": "w-2"})])  # the same total again: no change
    assert await run_queue(hooks, queues) == ["extend: extended 0"]
    await hooks.receive([budget()])
    (outcome,) = await run_queue(hooks, queues)
    assert outcome.startswith("budget: stopped 2")
    assert world.arr_statuses() == {"s-kept": "Ready", "s-a": "Stopped", "s-b": "Stopped"}
    record = await world.history.get("s-a")
    assert record is not None and record.stopped_by == "hook:budget"


async def test_storage_trouble_is_the_senders_retry_and_an_old_delivery_is_new_again(world: World) -> None:
    hooks, queues = hooks_for(world)
    world.history.fail_next(only="record_delivery")
    with pytest.raises(HistoryUnavailable):
        await hooks.receive([blob()])
    assert queues.sent == []
    await hooks.receive([blob()])
    await run_queue(hooks, queues)
    world.advance((KEEP_DELIVERIES + timedelta(minutes=1)).total_seconds())
    renewed = await hooks.receive([blob()])  # Event Grid stopped retrying it days ago: this one is new
    assert (renewed.events[0].outcome, renewed.events[0].duplicate) == ("queued", False)


async def test_a_batch_is_recorded_in_parallel_and_answered_in_its_order(world: World) -> None:
    hooks, queues = hooks_for(world)
    ids = [f"e-{n:03d}" for n in range(200)]
    receipt = await hooks.receive([blob(i, f"{i}.arrAsset") for i in ids])
    assert [e.delivery_id for e in receipt.events] == ids and {e.outcome for e in receipt.events} == {"queued"}
    assert sorted(m["deliveryId"] for m in queues.take(HOOK_QUEUE)) == ids
    assert world.history.calls["record_delivery"] == 200


async def two_budget_sessions(world: World) -> None:
    for session_id in ("s-a", "s-b"):
        await world.service.start(StartSessionRequest(session_id=session_id, lease_minutes=30))
    world.advance(60)


async def test_a_second_message_that_read_the_delivery_before_it_was_done_does_nothing(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by bench/hook_deliveries.py: a retry's message read the delivery not done, took the lease once the
    first run released it, and did it all again (a second ARR stop, and results overwritten with "stopped 0")."""
    hooks, queues = hooks_for(world)
    await two_budget_sessions(world)
    await hooks.receive([budget()])
    stale = await world.history.delivery("budget", "b-1")
    await hooks.receive([budget()])  # the sender's retry: queued again while not done
    first, second = queues.take(HOOK_QUEUE)
    assert (await hooks.carry_out(first, links)).startswith("budget: stopped 2")
    reads = iter([stale])
    real = world.history.delivery

    async def read_stale_first(sender: str, delivery_id: str) -> Any:
        return next(reads, None) or await real(sender, delivery_id)

    monkeypatch.setattr(world.history, "delivery", read_stale_first)
    stops = world.emulator.requests["stop"]
    assert await hooks.carry_out(second, links) == "done already"
    assert world.emulator.requests["stop"] == stops
    done = await real("budget", "b-1")
    assert done is not None and done.results[0].startswith("budget: stopped 2")


async def test_another_hosts_stale_list_stops_nothing_twice(world: World) -> None:
    """Two budget deliveries on two hosts: the second host's list (cached for seconds) still shows the sessions
    the first one stopped; each is read afresh before it is stopped."""
    hooks, queues = hooks_for(world)
    other_service = SessionService(world.arr, world.history, world.settings, clock=world.clock)
    other = HookService(other_service, world.history, queues, hooks.notifier, RULES, clock=world.clock)
    await two_budget_sessions(world)
    assert len((await other_service.list_active()).states) == 2  # the other host's list, cached
    await hooks.receive([budget("b-1"), budget("b-2")])
    first, second = queues.take(HOOK_QUEUE)
    assert (await hooks.carry_out(first, links)).startswith("budget: stopped 2")
    stops = world.emulator.requests["stop"]
    assert await other.carry_out(second, links) == "budget: stopped 0"
    assert world.emulator.requests["stop"] == stops


async def test_the_cleanup_forgets_deliveries_older_than_their_senders_retry(world: World) -> None:
    hooks, _ = hooks_for(world)
    await hooks.receive([blob("old-1"), blob("old-2")])
    world.advance(timedelta(days=6).total_seconds())
    await hooks.receive([blob("recent")])
    world.advance(timedelta(days=2, hours=1).total_seconds())  # old-*: 8 days and an hour; recent: 2 days
    await world.maintenance().run_cleanup()
    assert await world.history.delivery("eventgrid", "old-1") is None
    assert await world.history.delivery("eventgrid", "old-2") is None
    assert await world.history.delivery("eventgrid", "recent") is not None
