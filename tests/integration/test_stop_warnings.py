"""A stop warning over real sockets: the real app (devhost) on the emulator and Azurite's queues warns a real
receiver before a session's lease ends, and its postpone link, opened without a key, shows a page that changes
nothing, extends the lease exactly once from its button, and refuses a reuse or a changed link with a page."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from conftest import Azurite, Emulator, Host, start_host, stop

from devhost.stack import free_port
from tests.integration.test_notifications import Receiver, notifying_env, serve

SIGNING_KEY = "w" * 48


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(free_port())
    server = serve(receiver)
    yield receiver
    server.shutdown()


@pytest.fixture(scope="module")
def warning_host(emulator_process: Emulator, azurite_queues: Azurite) -> Iterator[Host]:
    env = {**notifying_env(emulator_process, azurite_queues), "ARR_LINK_SIGNING_KEY": SIGNING_KEY,
           "ARR_STOP_WARNING_MINUTES": "30"}
    host = start_host(env, "function_app", "--no-timers")
    yield host
    stop(host.process)


def test_a_warning_arrives_ahead_and_its_postpone_link_extends_the_lease_once(
        warning_host: Host, receiver: Receiver, emulator: Emulator) -> None:
    emulator.reset(startupSeconds=0)
    with warning_host.client() as client:
        subscribed = client.post("/api/warnings/subscriptions", json={"notificationUrl": receiver.url("/warn")})
        assert subscribed.status_code == 201 and subscribed.json()["events"] == ["StopWarning"], subscribed.text
        status_only = client.post("/api/subscriptions", json={"notificationUrl": receiver.url("/status")})
        assert status_only.status_code == 201
        session_id = f"w-{uuid.uuid4().hex[:8]}"
        assert client.post("/api/sessions", json={"sessionId": session_id, "leaseMinutes": 30}).status_code == 202
        assert client.get(f"/api/sessions/{session_id}").json()["status"] == "Ready"
        report = client.post("/api/cleanup").json()  # its lease ends in 30 minutes: within 30 + one 5-minute tick
        assert [a["id"] for a in report["warned"]] == [session_id], report
        [warning] = receiver.wait_for("/warn", 1)
        body = warning.body
        assert (body["eventType"], body["kind"], body["session"]["id"]) == ("StopWarning", "lease-end", session_id)
        assert 29 <= body["minutesAhead"] <= 30 and warning.event_id == f"{session_id}.warn.lease-end.30"
        assert body["actions"]["keepTonight"] is None
        postpone = body["actions"]["postpone"]
        assert postpone.startswith(f"{warning_host.url}/api/signed/sessions/{session_id}/postpone/90?expires=")
        assert SIGNING_KEY not in postpone and warning_host.key not in postpone
        assert client.post("/api/cleanup").json()["warned"] == []  # warned once: the next run sends nothing

        with httpx.Client(timeout=60) as phone:  # no function key
            page = phone.get(postpone)  # what a mail scanner or a link preview does: it must change nothing
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert '<form method="post"><button type="submit">Make the lease 90 minutes</button>' in page.text
            assert "default-src 'none'" in page.headers["content-security-policy"]
            assert client.get(f"/api/sessions/{session_id}").json()["leaseMinutes"] == 30
            done = phone.post(postpone)
            assert done.status_code == 200 and "lease is now 90 minutes" in done.text, done.text[:300]
            again = phone.post(postpone)
            assert again.status_code == 409 and "used already" in again.text
            changed = phone.post(postpone.replace("/postpone/90?", "/postpone/1440?"))
            assert changed.status_code == 403 and "not valid" in changed.text
            assert SIGNING_KEY not in again.text + changed.text
        view = client.get(f"/api/sessions/{session_id}").json()
        assert view["leaseMinutes"] == 90
        extended = [e for e in client.get(f"/api/sessions/{session_id}/events").json()["events"]
                    if e["type"] == "extended"]
        assert [(e["actor"], e["detail"]["toMinutes"]) for e in extended] == [("stop-warning link", 90)]
        assert client.post("/api/cleanup").json()["warned"] == []  # the new end is an hour away
        assert not [r for r in receiver.on("/status") if r.body.get("eventType") == "StopWarning"]
