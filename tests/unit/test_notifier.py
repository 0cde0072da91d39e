"""The notifier over MemoryHistory, MemoryQueues and the in-process emulator: the watcher sees a start through,
subscribers and a start's callback hear each change once per announcement, retries back off, 410 unsubscribes,
and a crash between queueing and marking announces the same event again."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from arr_core.api.views import SessionLinks, StartSessionRequest, SubscriptionRequest
from arr_core.domain.notifications import NOTIFY_QUEUE, WATCH_QUEUE
from arr_core.errors import HistoryUnavailable, InvalidInput, SubscriptionNotFound
from arr_core.outbound.webhooks import Outcome
from arr_core.services.maintenance import Maintenance
from arr_core.services.notifier import Notifier
from arr_core.services.sessions import SessionService
from arr_core.testing.memory_queues import MemoryQueues

from .harness import FakeResolver, World

HOOK = "http://hooks.test/receive"


def links(session_id: str) -> SessionLinks:
    return SessionLinks(self_=f"https://app.test/api/sessions/{session_id}", ready="r", stop="s")


class Receiver:
    """A webhook receiver behind httpx.MockTransport: answers from a script, records what it got."""

    def __init__(self, *answers: int) -> None:
        self.answers = list(answers)
        self.got: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        by_name = request.url.copy_with(netloc=request.headers["host"].encode())  # the URL as the caller gave it
        self.got.append({"url": str(by_name), "event": request.headers["x-event-id"],
                         **json.loads(request.content)})
        return httpx.Response(self.answers.pop(0) if self.answers else 200)


def notifier_for(world: World, receiver: Receiver) -> tuple[Notifier, MemoryQueues]:
    queues = MemoryQueues(clock=world.clock)
    http = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
    return Notifier(world.service, world.history, queues, http, poll_seconds=10, development=True,
                    clock=world.clock, resolve=FakeResolver({"hooks.test": ["203.0.113.10"]})), queues


async def drain(notifier: Notifier, queues: MemoryQueues) -> list[str]:
    """Run every visible message, as the queue functions would; the delivery outcomes."""
    outcomes = []
    while True:
        watch, notify = queues.take(WATCH_QUEUE), queues.take(NOTIFY_QUEUE)
        if not watch and not notify:
            return outcomes
        for message in watch:
            await notifier.watch(message["sessionId"], links)
        for message in notify:
            outcomes.append(await notifier.deliver(message))


@dataclass
class Night:
    world: World
    notifier: Notifier
    queues: MemoryQueues
    receiver: Receiver
    maintenance: Maintenance


async def past_the_nightly_shutdown(make_world: Any, session_ids: list[str], *, queues: MemoryQueues | None = None,
                                    **settings: Any) -> Night:
    """Sessions started at 21:00 in Amsterdam, a subscriber to Stopped, and the clock just past the 22:00 nightly
    shutdown: the next cleanup stops them all."""
    world = make_world(start=datetime(2025, 3, 10, 20, 0, tzinfo=UTC), nightly_shutdown_at="22:00",
                       time_zone="Europe/Amsterdam", **settings)
    receiver = Receiver()
    notifier, made = notifier_for(world, receiver)
    if queues is not None:
        queues.clock = world.clock
        notifier.queues = made = queues
    await notifier.subscribe(SubscriptionRequest(notification_url=HOOK, statuses=["Stopped"]))
    for session_id in session_ids:
        await world.service.start(StartSessionRequest(session_id=session_id, lease_minutes=400))
    world.advance(3600 + 60)
    maintenance = Maintenance(SessionService(world.arr, world.history, world.settings, clock=world.clock),
                              notifier, history=world.history, settings=world.settings, clock=world.clock)
    return Night(world, notifier, made, receiver, maintenance)


async def test_the_watcher_sees_a_start_through_and_its_callback_hears_ready_once(world: World) -> None:
    receiver = Receiver()
    notifier, queues = notifier_for(world, receiver)
    state = await world.service.start(StartSessionRequest(session_id="s1", lease_minutes=30, callback_url=HOOK))
    await notifier.started(state, links)
    assert [(m.queue, m.visible_at - world.clock.now) for m in queues.sent] == [(WATCH_QUEUE, timedelta(seconds=10))]
    assert await drain(notifier, queues) == []  # not visible yet
    world.advance(10)  # the emulator's start takes 10 s
    assert await drain(notifier, queues) == [Outcome.DELIVERED]
    [got] = receiver.got
    assert (got["url"], got["event"], got["eventId"], got["status"], got["previousStatus"], got["cause"]) == (
        HOOK, "s1.None.Ready", "s1.None.Ready", "Ready", None, "arr")
    assert got["session"]["id"] == "s1" and got["session"]["links"]["self"] == "https://app.test/api/sessions/s1"
    assert (await world.history.get("s1")).notified_status == "Ready"  # type: ignore[union-attr]
    world.advance(60)
    assert await drain(notifier, queues) == [] and queues.sent == []  # Ready: no more watching


async def test_subscribers_hear_the_changes_they_asked_for_with_their_cause(world: World) -> None:
    receiver = Receiver()
    notifier, queues = notifier_for(world, receiver)
    every = await notifier.subscribe(SubscriptionRequest(notification_url=HOOK + "/all"))
    await notifier.subscribe(SubscriptionRequest(notification_url=HOOK + "/stopped", statuses=["Stopped"]))
    await notifier.subscribe(SubscriptionRequest(notification_url=HOOK + "/other", session_id="s2"))
    state = await world.service.start(StartSessionRequest(session_id="s1", lease_minutes=30, requested_by="ana"))
    await notifier.started(state, links)
    world.advance(10)
    await drain(notifier, queues)
    stopped = await world.service.stop("s1", "done", actor="bob")
    await notifier.changed(stopped.record, links)
    await drain(notifier, queues)
    heard = sorted(((g["url"].removeprefix(HOOK), g["previousStatus"], g["status"], g["cause"], g["actor"])
                    for g in receiver.got), key=str)
    assert heard == [("/all", "Ready", "Stopped", "caller", "bob"), ("/all", "Starting", "Ready", "arr", None),
                     ("/all", None, "Starting", "arr", None), ("/stopped", "Ready", "Stopped", "caller", "bob")]
    removed = await notifier.unsubscribe(every.id)
    assert removed.callback_url == HOOK + "/all"
    with pytest.raises(SubscriptionNotFound):
        await notifier.unsubscribe(every.id)


async def test_a_failing_receiver_gets_the_same_event_again_later_and_410_unsubscribes(world: World) -> None:
    receiver = Receiver(500, 503, 200, 410)
    notifier, queues = notifier_for(world, receiver)
    await notifier.subscribe(SubscriptionRequest(notification_url=HOOK))
    await world.service.start(StartSessionRequest(session_id="s1", lease_minutes=30))
    world.advance(10)
    await notifier.watch("s1", links)
    assert await drain(notifier, queues) == [Outcome.RETRY]
    [retry] = queues.sent
    assert (retry.body["attempt"], retry.visible_at - world.clock.now) == (2, timedelta(seconds=5))
    world.advance(5)
    assert await drain(notifier, queues) == [Outcome.RETRY]
    world.advance(10)
    assert await drain(notifier, queues) == [Outcome.DELIVERED]
    assert {g["eventId"] for g in receiver.got} == {"s1.None.Ready"} and len(receiver.got) == 3
    await world.service.stop("s1", "done", actor="bob")
    await notifier.watch("s1", links)
    assert await drain(notifier, queues) == [Outcome.GONE]
    assert await world.history.subscriptions() == []


async def test_a_receiver_that_never_answers_is_given_up_after_the_last_attempt(world: World) -> None:
    receiver = Receiver(*[503] * 20)
    notifier, queues = notifier_for(world, receiver)
    await notifier.subscribe(SubscriptionRequest(notification_url=HOOK))
    await world.service.start(StartSessionRequest(session_id="s1", lease_minutes=30))
    world.advance(10)
    await notifier.watch("s1", links)
    for _ in range(20):
        await drain(notifier, queues)
        world.advance(300)
    assert len(receiver.got) == 8 and queues.sent == []


async def test_a_crash_between_queueing_and_marking_announces_the_same_event_again(world: World) -> None:
    receiver = Receiver()
    notifier, queues = notifier_for(world, receiver)
    await notifier.subscribe(SubscriptionRequest(notification_url=HOOK))
    await world.service.start(StartSessionRequest(session_id="s1", lease_minutes=30))
    world.advance(10)
    state = await world.service.read("s1")  # the watcher's read records Ready
    world.history.fail_next(1, only={"update"})  # then the mark after queueing is lost
    with pytest.raises(HistoryUnavailable):
        await notifier.announce(state.record, links, state)  # type: ignore[arg-type]
    await notifier.watch("s1", links)  # the queue retries the watch message
    await drain(notifier, queues)
    assert [g["eventId"] for g in receiver.got] == ["s1.None.Ready", "s1.None.Ready"]  # at least once, same id


async def test_the_nightly_shutdown_is_announced_as_such(make_world: Any) -> None:
    night = await past_the_nightly_shutdown(make_world, ["late"])
    report = await night.maintenance.run_cleanup(links=links)
    assert [a.id for a in report.stopped] == ["late"]
    await drain(night.notifier, night.queues)
    assert [(g["status"], g["cause"], g["actor"]) for g in night.receiver.got] == [
        ("Stopped", "nightly-shutdown", "nightly")]


async def test_queue_trouble_never_fails_a_start(world: World) -> None:
    notifier, queues = notifier_for(world, Receiver())
    queues.failing = True
    state = await world.service.start(StartSessionRequest(session_id="s1", lease_minutes=30))
    await notifier.started(state, links)  # logged, not raised: the cleanup announces later
    assert queues.sent == []


async def test_urls_the_app_will_not_call_are_refused_before_anything_is_kept(make_world: Any) -> None:
    world = make_world(website_instance_id="in-azure")
    notifier, _ = notifier_for(world, Receiver())
    notifier.development = False
    with pytest.raises(InvalidInput, match="notificationUrl must be https"):
        await notifier.subscribe(SubscriptionRequest(notification_url="http://example.com/hook"))
    with pytest.raises(InvalidInput, match="callbackUrl must be a public address"):
        await world.service.start(StartSessionRequest(session_id="s1", callback_url="https://10.1.2.3/x"))
    assert await world.history.subscriptions() == [] and await world.history.get("s1") is None


async def test_a_delivery_to_a_metadata_address_is_refused_at_connect_time(world: World) -> None:
    receiver = Receiver()
    notifier, _ = notifier_for(world, receiver)
    message = {"url": "http://169.254.169.254/latest", "eventId": "e", "attempt": 1, "payload": {}}
    assert await notifier.deliver(message) == Outcome.REFUSED and receiver.got == []


class SlowQueues(MemoryQueues):
    """Queues that take a moment per message (as Azure Storage does, ~10-20 ms), counting sends in flight."""

    in_flight: int = 0
    most_in_flight: int = 0

    async def send(self, queue: str, body: dict[str, Any], *, delay: timedelta = timedelta(0)) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.005)
            await super().send(queue, body, delay=delay)
        finally:
            self.in_flight -= 1


async def test_a_nightly_shutdown_of_many_sessions_announces_them_side_by_side(make_world: Any) -> None:
    """Announcing costs a queue send and a table write per session: one after the other, a nightly shutdown of a
    thousand sessions would spend most of its budget on them. They go side by side, as the stops do."""
    queues = SlowQueues()
    night = await past_the_nightly_shutdown(make_world, [f"s{i:02}" for i in range(40)], queues=queues,
                                            stop_concurrency=8)
    report = await night.maintenance.run_cleanup(links=links)
    assert len(report.stopped) == 40 and report.deferred == []
    assert 1 < queues.most_in_flight <= 8
    await drain(night.notifier, queues)
    assert sorted(g["session"]["id"] for g in night.receiver.got) == [f"s{i:02}" for i in range(40)]
    assert {g["cause"] for g in night.receiver.got} == {"nightly-shutdown"}


async def test_announcements_side_by_side_read_the_subscriptions_once(make_world: Any) -> None:
    night = await past_the_nightly_shutdown(make_world, [f"s{i}" for i in range(20)], stop_concurrency=8)
    reads = 0
    read = night.world.history.subscriptions

    async def counted() -> Any:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.01)  # a table query takes a while: the others wait for it meanwhile
        return await read()

    night.world.history.subscriptions = counted  # type: ignore[method-assign]
    await night.maintenance.run_cleanup(links=links)
    assert reads == 1 and len(night.queues.sent) == 20


async def test_a_queue_outage_during_a_cleanup_leaves_its_announcements_to_the_next_run(
        make_world: Any, caplog: pytest.LogCaptureFixture) -> None:
    night = await past_the_nightly_shutdown(make_world, [f"s{i}" for i in range(10)], stop_concurrency=4)
    night.queues.failing = True
    report = await night.maintenance.run_cleanup(links=links)
    assert len(report.stopped) == 10 and report.errors == [] and night.queues.sent == []
    assert [r.getMessage() for r in caplog.records if "announcements" in r.getMessage()] == [
        "announcements left to the next run: queue arr-notify is failing (test)"]
    night.queues.failing = False
    night.world.advance(60)
    await night.maintenance.run_cleanup(links=links)
    await drain(night.notifier, night.queues)
    assert sorted(g["session"]["id"] for g in night.receiver.got) == [f"s{i}" for i in range(10)]


async def test_a_stop_whose_announcement_a_crash_cut_off_is_announced_by_the_next_cleanup(world: World) -> None:
    """The caller's stop is recorded, then the host dies before announcing it: the ended session stays in the
    cleanup's reading (the table's Active flag) until its change is announced, and then leaves it."""
    receiver = Receiver()
    notifier, queues = notifier_for(world, receiver)
    await notifier.subscribe(SubscriptionRequest(notification_url=HOOK, statuses=["Stopped"]))
    await world.service.start(StartSessionRequest(session_id="s1", lease_minutes=30))
    await world.service.stop("s1", reason="done", actor="alice")  # ... and no notifier.changed(): the crash
    maintenance = Maintenance(world.service, notifier, history=world.history, settings=world.settings,
                              clock=world.clock)

    async def watched() -> list[str]:
        return [r.session_id async for r in world.history.sessions_created(
            world.clock.now - timedelta(days=1), world.clock.now + timedelta(days=1), only_active=True)]

    assert await watched() == ["s1"]
    await maintenance.run_cleanup(links=links)
    await drain(notifier, queues)
    assert [(g["session"]["id"], g["status"], g["cause"], g["actor"]) for g in receiver.got] == [
        ("s1", "Stopped", "caller", "alice")]
    assert await watched() == []


async def test_an_ended_session_nobody_listens_to_is_marked_once_and_left_alone(world: World) -> None:
    notifier, queues = notifier_for(world, Receiver())
    await world.service.start(StartSessionRequest(session_id="s1", lease_minutes=30))
    state = await world.service.stop("s1")
    assert state.record is not None and await notifier.announce(state.record, links) == 0
    assert queues.sent == []
    record = await world.history.get("s1")
    assert record is not None and record.notified_status == "Stopped" and not record.cleanup_watches
    assert await notifier.announce(record, links) == 0  # nothing left to announce: no second write
    assert (await world.history.get("s1")).etag == record.etag  # type: ignore[union-attr]


# -- queue messages are not trusted (issue 19.4, 19.5) ---------------------------------------------------------------

async def test_a_deleted_subscription_hears_nothing_more_not_even_queued_retries(world: World) -> None:
    receiver = Receiver(500, 500, 500)
    notifier, queues = notifier_for(world, receiver)
    subscription = await notifier.subscribe(SubscriptionRequest(notification_url=HOOK))
    await notifier.changed((await world.service.start(StartSessionRequest(session_id="d1", lease_minutes=30))).record,
                           links)
    assert await drain(notifier, queues) == [Outcome.RETRY]
    await notifier.unsubscribe(subscription.id)
    world.advance(600)
    assert await drain(notifier, queues) == [Outcome.REFUSED]  # the queued retry is dropped, not delivered
    assert len(receiver.got) == 1 and queues.sent == []  # and no later retry is queued


async def test_forged_messages_are_dropped_and_410_removes_only_the_subscription_whose_url_answered(
        world: World) -> None:
    receiver = Receiver(410)
    notifier, queues = notifier_for(world, receiver)
    victim = await notifier.subscribe(SubscriptionRequest(notification_url=HOOK + "/victim"))
    payload = {"eventId": "x", "session": {"id": "nobody"}}
    forged = [
        {"url": HOOK + "/victim", "eventId": "e", "attempt": -40, "payload": payload},  # out of bounds
        {"url": HOOK + "/victim", "eventId": "e", "attempt": 9, "payload": payload},  # past the last attempt
        {"url": HOOK + "/attacker", "subscriptionId": victim.id, "eventId": "e", "attempt": 1, "payload": payload},
        {"url": HOOK + "/anywhere", "eventId": "e", "attempt": 1, "payload": payload},  # no session has that callback
        {"url": HOOK, "eventId": "e", "attempt": 1, "payload": payload, "extra": 1},
        {"url": 7, "eventId": "e", "payload": payload},
    ]
    assert [await notifier.deliver(message) for message in forged] == [Outcome.REFUSED] * len(forged)
    assert receiver.got == [] and queues.sent == []
    assert [s.id for s in await world.history.subscriptions()] == [victim.id]
