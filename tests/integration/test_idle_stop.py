"""Idle stop over real sockets (issue 22): the real app (devhost) on the emulator and Azurite's queues. Two sessions
Ready for three minutes; one client heartbeats, the other session has none. With ARR_IDLE_AFTER_READY_MINUTES=2 the
cleanup first warns the silent one (a StopWarning of kind idle reaches a real receiver) and stops it at the next
run; the heartbeating one is neither warned nor stopped, and a heartbeat to the stopped one is a 409.

The app's clock is real time and the emulator's can be moved: both sessions are made Ready three minutes ago at ARR
(``emulator.advance``) before the app first reads them, so history records them Ready three minutes back and the
idle limit has passed at once, whatever the machine's speed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from conftest import Azurite, Emulator, Host, start_host, stop

from devhost.stack import free_port
from tests.integration.test_notifications import Receiver, notifying_env, serve


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(free_port())
    server = serve(receiver)
    yield receiver
    server.shutdown()


@pytest.fixture(scope="module")
def idle_host(emulator_process: Emulator, azurite_queues: Azurite) -> Iterator[Host]:
    env = {**notifying_env(emulator_process, azurite_queues), "ARR_STOP_WARNING_MINUTES": "5",
           "ARR_IDLE_AFTER_READY_MINUTES": "2", "ARR_IDLE_MINUTES": "30"}
    host = start_host(env, "function_app", "--no-timers")
    yield host
    stop(host.process)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_an_idle_session_is_warned_then_stopped_while_a_heartbeating_one_is_not(
        idle_host: Host, receiver: Receiver, emulator: Emulator) -> None:
    emulator.reset(startupSeconds=10)
    run = uuid.uuid4().hex[:6]
    silent, beating = f"idle-{run}", f"beat-{run}"
    with idle_host.client() as client:
        subscribed = client.post("/api/warnings/subscriptions", json={"notificationUrl": receiver.url("/warn")})
        assert subscribed.status_code == 201, subscribed.text
        for session_id in (silent, beating):
            assert client.post("/api/sessions", json={"sessionId": session_id, "leaseMinutes": 60}).status_code == 202
        emulator.advance(10 + 180)  # Ready at ARR for three minutes, before the app has seen either Ready
        for session_id in (silent, beating):
            view = client.get(f"/api/sessions/{session_id}").json()
            assert (view["status"], view["elapsedMinutes"]) == ("Ready", 3), view

        beat = client.post(f"/api/sessions/{beating}/heartbeat", json={"client": "hololens-test"})
        assert beat.status_code == 200, beat.text
        answer = beat.json()
        assert answer["recordedAt"] == answer["at"]
        assert when(answer["nextHeartbeatAt"]) - when(answer["at"]) == timedelta(seconds=30)
        assert when(answer["idleStopAt"]) - when(answer["recordedAt"]) == timedelta(minutes=31)  # 60 s + 30 min

        first = client.post("/api/cleanup").json()
        assert [a["id"] for a in first["warned"]] == [silent], first  # warned first, though past its limit
        assert first["stopped"] == [], first
        [warning] = receiver.wait_for("/warn", 1)
        body = warning.body
        assert (body["kind"], body["session"]["id"], warning.event_id) == ("idle", silent,
                                                                            f"{silent}.warn.idle.ready.2")
        assert 4 <= body["minutesAhead"] <= 5 and "heartbeat" in body["reason"]  # the next run, one tick on

        again = client.post(f"/api/sessions/{beating}/heartbeat")  # within the minute: answered from memory
        assert again.status_code == 200 and again.json()["recordedAt"] == answer["recordedAt"], again.text

        second = client.post("/api/cleanup").json()
        assert [(a["id"], a["reason"]) for a in second["stopped"]] == [
            (silent, "idle: no heartbeat for 3 minutes since Ready")], second
        assert second["warned"] == [], second

        stopped = client.get(f"/api/sessions/{silent}").json()
        assert (stopped["status"], stopped["stoppedBy"]) == ("Stopped", "cleanup"), stopped
        assert stopped["stopReason"].startswith("idle: no heartbeat for ")
        events = [e["type"] for e in client.get(f"/api/sessions/{silent}/events").json()["events"]]
        assert events.index("stop-warned") < events.index("stopped"), events
        ended = client.post(f"/api/sessions/{silent}/heartbeat")
        assert ended.status_code == 409 and ended.json()["sessionStatus"] == "Stopped", ended.text

        assert client.get(f"/api/sessions/{beating}").json()["status"] == "Ready"
        beating_events = client.get(f"/api/sessions/{beating}/events").json()["events"]
        assert [(e["type"], e["actor"]) for e in beating_events if e["type"] == "heartbeat"] == [
            ("heartbeat", "hololens-test")]
        assert "stop-warned" not in [e["type"] for e in beating_events]
        assert client.post(f"/api/sessions/nobody-{run}/heartbeat").status_code == 404
        third = client.post("/api/cleanup").json()
        assert third["stopped"] == [] and third["warned"] == [], third
        assert len(receiver.on("/warn")) == 1
        client.post(f"/api/sessions/{beating}/stop", json={"reason": "test done"})
