"""A warning before every automatic stop: which stop comes next, when the timer warns of it (so that it arrives
``ARR_STOP_WARNING_MINUTES`` ahead, not at the last tick), once per stop, only to those who asked, with signed
links that act once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from arr_core.api import signed_links
from arr_core.api.views import StartSessionRequest, SubscriptionRequest, WarningSubscriptionRequest
from arr_core.arr.models import RenderingSession, SessionStatus
from arr_core.domain.cleanup import CleanupPolicy
from arr_core.domain.notifications import NOTIFY_QUEUE
from arr_core.domain.overrides import Override
from arr_core.domain.records import SessionRecord
from arr_core.domain.warnings import StopKind, next_stop, timer_interval, warning_due
from arr_core.errors import LinkRefused, LinkUsed
from arr_core.services.maintenance import Maintenance

from .harness import World
from .test_notifier import HOOK, Receiver, drain, links, notifier_for

NOW = datetime(2025, 3, 10, 20, 0, tzinfo=UTC)  # 21:00 in Amsterdam
KEYS = ("k" * 40,)


def ready(lease: int, elapsed: int, created: datetime = NOW - timedelta(hours=1)) -> RenderingSession:
    return RenderingSession(id="s1", status=SessionStatus.READY, size="Standard", maxLeaseTimeMinutes=lease,
                            elapsedTimeMinutes=elapsed, creationTime=created)


def record(**fields: Any) -> SessionRecord:
    return SessionRecord(session_id="s1", created_at=NOW - timedelta(hours=1), status="Ready", **fields)


POLICY = CleanupPolicy.from_settings(time_zone="Europe/Amsterdam", nightly_at="22:00", max_session_minutes=None,
                                     stuck_starting_minutes=30)


def test_the_next_stop_is_the_earliest_of_lease_end_maximum_and_night() -> None:
    ready_at = NOW - timedelta(minutes=50)
    lease_end = next_stop(ready(60, 50), record(ready_at=ready_at), NOW, POLICY, [])
    assert lease_end is not None and (lease_end.kind, lease_end.at) == (StopKind.LEASE_END, ready_at
                                                                        + timedelta(minutes=60))
    assert lease_end.stop_id == "s1.warn.lease-end.60" and lease_end.postponable
    night = next_stop(ready(600, 50), record(ready_at=ready_at), NOW, POLICY, [])
    assert night is not None and night.kind is StopKind.NIGHTLY_SHUTDOWN and night.keepable_tonight
    assert night.at == datetime(2025, 3, 10, 21, 0, tzinfo=UTC) and night.stop_id == "s1.warn.nightly-shutdown.20250310"
    capped = CleanupPolicy.from_settings(time_zone="UTC", nightly_at=None, max_session_minutes=90,
                                         stuck_starting_minutes=30)
    maximum = next_stop(ready(600, 50), record(ready_at=ready_at), NOW, capped, [])
    assert maximum is not None and maximum.kind is StopKind.LEASE_CLEANUP and not maximum.postponable
    assert maximum.at == ready_at + timedelta(minutes=90)


def test_kept_alive_an_override_past_the_night_or_a_stop_asked_for_warn_of_no_night() -> None:
    def kind(rec: SessionRecord, overrides: list[Override]) -> StopKind | None:
        stop = next_stop(ready(600, 5), rec, NOW, POLICY, overrides)
        return stop.kind if stop is not None else None

    assert kind(record(keep_alive=True), []) is StopKind.LEASE_END  # its lease still ends it, tomorrow
    assert kind(record(keep_alive=None), []) is StopKind.LEASE_END  # unknown: never stopped at night
    assert kind(record(stop_reason="done"), []) is None  # a stop asked for: nothing to warn of
    pooled = record(labels={"pool": "team"}, requested_by="pool:team")
    assert kind(pooled, []) is None  # nobody's yet: the pool keeps its lease and closes it
    assert kind(replace(pooled, requested_by="ana"), []) is StopKind.NIGHTLY_SHUTDOWN  # claimed: warned as any
    over = Override(id="ovr-000000000001", until=NOW + timedelta(hours=3), created_at=NOW, session_id="s1")
    assert kind(record(), [over]) is StopKind.LEASE_END
    short = Override(id="ovr-000000000002", until=NOW + timedelta(minutes=30), created_at=NOW, session_id="s1")
    stop = next_stop(ready(600, 5), record(), NOW, POLICY, [short])  # it ends before the night comes
    assert stop is not None and stop.kind is StopKind.NIGHTLY_SHUTDOWN


def test_a_warning_is_due_from_lead_plus_one_tick_ahead_and_only_once() -> None:
    lead, tick = timedelta(minutes=30), timedelta(minutes=5)
    stop = next_stop(ready(600, 5), record(), NOW, POLICY, [])  # 22:00 local, an hour away
    assert stop is not None
    at = stop.at
    assert not warning_due(stop, record(), at - timedelta(minutes=35, seconds=1), lead=lead, tick=tick)
    assert warning_due(stop, record(), at - timedelta(minutes=35), lead=lead, tick=tick)
    # The run before the window would be too early; the run in it is at least 30 minutes ahead, however the ticks
    # fall: the latest run in the window is at most one tick after its start.
    assert warning_due(stop, record(), at - timedelta(minutes=30, seconds=1), lead=lead, tick=tick)
    assert not warning_due(stop, record(warned=stop.stop_id), at - timedelta(minutes=34), lead=lead, tick=tick)
    assert not warning_due(stop, record(), at, lead=lead, tick=tick)  # too late: the stop is now
    assert not warning_due(stop, record(), at - timedelta(minutes=34), lead=timedelta(0), tick=tick)  # off


@pytest.mark.parametrize(("schedule", "minutes"), [("0 */5 * * * *", 5), ("0 * * * * *", 1), ("30 0,20 * * * *", 40),
                                                   ("00:10:00", 10), ("0 0 */2 * * *", 60), ("0 7 * * * *", 60)])
def test_the_timer_interval_is_read_from_its_schedule(schedule: str, minutes: int) -> None:
    assert timer_interval(schedule) == timedelta(minutes=minutes)


# -- through the cleanup ---------------------------------------------------------------------------------------------

async def evening(make_world: Any, **settings: Any) -> tuple[World, Maintenance, Any, Receiver, Any]:
    world = make_world(start=NOW, nightly_shutdown_at="22:00", time_zone="Europe/Amsterdam",
                       **{"stop_warning_minutes": 30, "max_lease_minutes": 480, **settings})
    receiver = Receiver()
    notifier, queues = notifier_for(world, receiver)
    await notifier.subscribe(SubscriptionRequest(notification_url=HOOK))  # status changes only
    await notifier.subscribe(WarningSubscriptionRequest(notification_url=f"{HOOK}?warnings"))
    await world.service.start(StartSessionRequest(session_id="night", lease_minutes=400, requested_by="ana"))
    await world.service.start(StartSessionRequest(session_id="lease", lease_minutes=50, keep_alive=True))
    await world.service.start(StartSessionRequest(session_id="kept", lease_minutes=400, keep_alive=True))
    maintenance = Maintenance(world.service, notifier, history=world.history, settings=world.settings,
                              clock=world.clock)
    return world, maintenance, notifier, receiver, queues


def warnings_sent(queues: Any) -> list[Any]:
    return [m for m in queues.sent if m.queue == NOTIFY_QUEUE and m.body["payload"]["eventType"] == "StopWarning"]


def signer(path: str, until: datetime) -> str:
    return f"https://app.test/api/{path}?" + "&".join(f"{k}={v}" for k, v in signed_links.sign(
        KEYS, path, NOW, until).items())


async def test_each_stop_is_warned_once_ahead_to_warning_subscribers_only(make_world: Any) -> None:
    world, maintenance, notifier, receiver, queues = await evening(make_world)
    seen: list[tuple[str, str, int]] = []
    for _ in range(24):  # two hours of five-minute ticks, past the night's shutdown
        world.advance(300)
        report = await maintenance.run_cleanup(links=links, signer=signer)
        await drain(notifier, queues)
        seen += [(a.id, a.reason.split(" ")[0], int(world.clock.now.timestamp())) for a in report.warned]
    warnings = [g for g in receiver.got if g.get("eventType") == "StopWarning"]
    assert sorted((w["session"]["id"], w["kind"]) for w in warnings) == [("lease", "lease-end"),
                                                                        ("night", "nightly-shutdown")]
    assert all(w["url"].endswith("?warnings") for w in warnings)  # never to the status-change subscriber
    assert not [g for g in receiver.got if g["url"].endswith("?warnings") and g.get("eventType") != "StopWarning"]
    for w in warnings:
        ahead = (datetime.fromisoformat(w["stopAt"]) - datetime.fromisoformat(w["at"])) / timedelta(minutes=1)
        assert 30 <= ahead <= 35 and w["minutesAhead"] == int(ahead), w
    night = next(w for w in warnings if w["kind"] == "nightly-shutdown")
    assert night["actions"]["postpone"] is None and "/keep-tonight/2025-03-10?" in night["actions"]["keepTonight"]
    lease = next(w for w in warnings if w["kind"] == "lease-end")
    assert lease["actions"]["keepTonight"] is None and "/postpone/110?" in lease["actions"]["postpone"]
    assert len(seen) == 2  # each once, though the runs kept finding it near
    events = [e["Type"] for e in await world.history.events("night")]
    assert events.index("stop-warned") < events.index("stopped")


async def test_a_postpone_link_acts_once_and_then_warns_of_the_new_end(make_world: Any) -> None:
    world, maintenance, notifier, receiver, queues = await evening(make_world)
    world.advance(20 * 60)
    await maintenance.run_cleanup(links=links, signer=signer)
    await drain(notifier, queues)
    (warning,) = [g for g in receiver.got if g.get("kind") == "lease-end"]
    url = urlsplit(warning["actions"]["postpone"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    path = url.path.removeprefix("/api/")
    signed_links.check(KEYS, path, query["expires"], query["signature"], world.clock.now)
    with pytest.raises(LinkRefused):  # another lease in the path: not what was signed
        signed_links.check(KEYS, path.replace("/110", "/1440"), query["expires"], query["signature"], world.clock.now)
    state = await world.service.postpone("lease", 110, actor="stop-warning link")
    assert state.arr is not None and state.arr.lease_minutes == 110
    with pytest.raises(LinkUsed, match="used already"):
        await world.service.postpone("lease", 110, actor="stop-warning link")
    assert [e["Detail"] for e in await world.history.events("lease") if e["Type"] == "extended"] == [
        '{"fromMinutes":50,"reason":"postponed from a stop warning","toMinutes":110}']
    world.advance(56 * 60)  # near the new end: warned again, with a new event id
    await maintenance.run_cleanup(links=links, signer=signer)
    await drain(notifier, queues)
    assert [g["eventId"] for g in receiver.got if g.get("kind") == "lease-end"] == ["lease.warn.lease-end.50",
                                                                                   "lease.warn.lease-end.110"]


async def test_a_keep_tonight_link_spares_that_night_only_once(make_world: Any) -> None:
    world, maintenance, _notifier, _receiver, _queues = await evening(make_world)
    override = await maintenance.keep_tonight("night", date(2025, 3, 10), actor="stop-warning link")
    with pytest.raises(LinkUsed, match="used already"):
        await maintenance.keep_tonight("night", date(2025, 3, 10), actor="stop-warning link")
    assert override.until == datetime(2025, 3, 11, 9, 0, tzinfo=UTC)  # the night's shutdown + its catch-up hours
    world.advance(3600 + 60)  # past 22:00 in Amsterdam
    report = await maintenance.run_cleanup(links=links, signer=signer)
    assert "night" in {a.id for a in report.kept} and "night" not in {a.id for a in report.stopped}
    world.advance(12 * 3600)  # that night is over: the link has nothing left to do
    with pytest.raises(LinkUsed, match="over"):
        await maintenance.keep_tonight("night", date(2025, 3, 10), actor="stop-warning link")


async def test_no_key_no_links_and_zero_minutes_no_warning(make_world: Any) -> None:
    world, maintenance, notifier, receiver, queues = await evening(make_world)
    world.advance(30 * 60)
    await maintenance.run_cleanup(links=links, signer=lambda path, until: None)
    await drain(notifier, queues)
    assert {g["kind"]: g["actions"] for g in receiver.got if g.get("eventType") == "StopWarning"} == {
        "nightly-shutdown": {"postpone": None, "keepTonight": None}, "lease-end": {"postpone": None,
                                                                                  "keepTonight": None}}
    silent, maintenance, notifier, receiver, queues = await evening(make_world, stop_warning_minutes=0)
    silent.advance(30 * 60)
    report = await maintenance.run_cleanup(links=links, signer=signer)
    assert report.warned == [] and not warnings_sent(queues)


async def test_a_dry_run_says_who_would_be_warned_and_sends_nothing(make_world: Any) -> None:
    world, maintenance, _notifier, _receiver, queues = await evening(make_world)
    world.advance(30 * 60)
    report = await maintenance.run_cleanup(dry_run=True)
    assert sorted(a.id for a in report.warned) == ["lease", "night"]
    assert all(a.reason.startswith("would warn: ") for a in report.warned)
    assert not warnings_sent(queues)
