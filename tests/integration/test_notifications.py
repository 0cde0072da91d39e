"""Notifications end to end over real sockets: the function app on the local host with Azurite's queues, the ARR
emulator, and a webhook receiver listening on a port of this process. The watcher (arr-watch) and the delivery
function (arr-notify) run as queue triggers, exactly as the Functions host would run them."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Azurite, Emulator, Host, function_app_env, start_host, stop
from polling import wait_for

from devhost.stack import free_port

WAIT = 30.0


@dataclass
class Received:
    path: str
    event_id: str
    body: dict[str, Any]
    at: float


@dataclass
class Receiver:
    """A webhook receiver: answers each path from a script (then 200), and keeps what arrived."""

    port: int
    script: dict[str, list[int]] = field(default_factory=dict)
    stall: dict[str, float] = field(default_factory=dict)
    got: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.got if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = WAIT) -> list[Received]:
        """What arrived on ``path`` once ``count`` notifications have."""
        def arrived() -> list[Received] | None:
            got = self.on(path)
            return got if len(got) >= count else None

        return wait_for(arrived, lambda: f"{count} on {path} (statuses so far: "
                                         f"{[r.body['status'] for r in self.on(path)]})", timeout=timeout, interval=0.1)


class Listening(ThreadingHTTPServer):
    request_queue_size = 128  # the socketserver's 5 would drop connections when many deliveries arrive at once


def serve(receiver: Receiver) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with receiver.lock:
                receiver.got.append(Received(self.path, self.headers["X-Event-Id"], body, time.monotonic()))
                answers = receiver.script.get(self.path, [])
                status = answers.pop(0) if answers else 200
            time.sleep(receiver.stall.pop(self.path, 0.0))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = Listening(("127.0.0.1", receiver.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(free_port())
    server = serve(receiver)
    yield receiver
    server.shutdown()


def notifying_env(emulator: Emulator, azurite_queues: Azurite) -> dict[str, str]:
    return function_app_env(emulator, azurite_queues, f"n{uuid.uuid4().hex[:12]}", ARR_POLL_SECONDS="1",
                            DEVHOST_QUEUE_LEASE_SECONDS="4")


@pytest.fixture(scope="module")
def notifying_host(emulator_process: Emulator, azurite_queues: Azurite) -> Iterator[Host]:
    host = start_host(notifying_env(emulator_process, azurite_queues), "function_app", "--no-timers")
    yield host
    stop(host.process)


@pytest.fixture
def client(notifying_host: Host, emulator: Emulator) -> Iterator[httpx.Client]:
    emulator.reset(startupSeconds=2)
    with notifying_host.client() as http:
        yield http


def subscribe(http: httpx.Client, receiver: Receiver, path: str, **filters: Any) -> str:
    r = http.post("/api/subscriptions", json={"notificationUrl": receiver.url(path), **filters})
    assert r.status_code == 201, r.text
    assert r.headers["Location"].split("?")[0].endswith(f"/api/subscriptions/{r.json()['id']}")
    return r.headers["Location"]


def statuses(received: list[Received]) -> list[tuple[str | None, str, str]]:
    return [(r.body["previousStatus"], r.body["status"], r.body["cause"]) for r in received]


def test_start_ready_stop_reaches_the_callback_and_the_subscriber_once_each(
        client: httpx.Client, receiver: Receiver, emulator: Emulator) -> None:
    """Start with a callbackUrl, nobody polling: the watcher sees Ready within a poll interval and the callback
    hears it once; a subscriber hears Starting, Ready, then the caller's stop. Each delivery carries its event id."""
    session_id = f"n-{uuid.uuid4().hex[:8]}"
    location = subscribe(client, receiver, "/all", sessionId=session_id)
    began = time.monotonic()
    r = client.post("/api/sessions", json={"sessionId": session_id, "leaseMinutes": 30,
                                           "callbackUrl": receiver.url("/callback")})
    assert r.status_code == 202
    [ready] = receiver.wait_for("/callback", 1)
    latency = ready.at - began - 2.0  # the emulator's start takes 2 s
    print(f"Ready delivered {latency:.1f} s after ARR reported it")
    assert (ready.body["status"], ready.body["session"]["id"], ready.event_id) == ("Ready", session_id,
                                                                                  ready.body["eventId"])
    assert latency < 5.0
    record = client.get(f"/api/sessions/{session_id}").json()
    assert record["readyAt"] is not None  # known within one poll interval, not at the next cleanup
    assert client.post(f"/api/sessions/{session_id}/stop", json={"reason": "done"}).status_code == 200
    heard = receiver.wait_for("/all", 3)
    assert statuses(heard) == [(None, "Starting", "arr"), ("Starting", "Ready", "arr"), ("Ready", "Stopped", "caller")]
    assert len({r.event_id for r in heard}) == 3
    time.sleep(2)
    assert len(receiver.on("/callback")) == 1 and len(receiver.on("/all")) == 3  # nothing more, no duplicate
    assert client.delete(location.split("?")[0]).status_code == 200
    assert client.delete(location.split("?")[0]).status_code == 404


def test_a_session_that_fails_to_start_reaches_its_callback(client: httpx.Client, receiver: Receiver,
                                                             emulator: Emulator) -> None:
    emulator.reset(capacity=0, startupSeconds=1)
    r = client.post("/api/sessions", json={"leaseMinutes": 10, "callbackUrl": receiver.url("/failed")})
    [failed] = receiver.wait_for("/failed", 1)
    assert (failed.body["status"], failed.body["session"]["id"]) == ("Error", r.json()["id"])
    assert failed.body["session"]["error"]["code"] == "NoCapacity"


def test_the_nightly_shutdown_is_announced_with_its_cause(client: httpx.Client, receiver: Receiver) -> None:
    subscribe(client, receiver, "/stopped", statuses=["Stopped"])
    ids = [client.post("/api/sessions", json={"leaseMinutes": 60}).json()["id"] for _ in range(3)]
    report = client.post("/api/cleanup", params={"mode": "nightly"}).json()
    assert sorted(a["id"] for a in report["stopped"]) == sorted(ids)
    heard = receiver.wait_for("/stopped", 3)
    assert sorted((r.body["session"]["id"], r.body["cause"], r.body["actor"]) for r in heard) == sorted(
        (i, "nightly-shutdown", "nightly") for i in ids)


def test_a_receiver_that_fails_gets_the_same_event_again_with_backoff(client: httpx.Client,
                                                                     receiver: Receiver) -> None:
    """500, then 503, then 200: three deliveries of one event id, 5 s and then 10 s apart (the backoff), and
    nothing after the one that succeeded."""
    session_id = f"f-{uuid.uuid4().hex[:8]}"
    subscribe(client, receiver, "/flaky", sessionId=session_id, statuses=["Starting"])
    receiver.script["/flaky"] = [500, 503]
    client.post("/api/sessions", json={"sessionId": session_id, "leaseMinutes": 10})
    heard = receiver.wait_for("/flaky", 3, timeout=40)
    assert {r.event_id for r in heard} == {f"{session_id}.None.Starting"}
    gaps = [round(b.at - a.at) for a, b in zip(heard, heard[1:], strict=False)]
    assert gaps[0] >= 5 and gaps[1] >= 10, gaps  # backoff: 5 s, then 10 s
    time.sleep(3)
    assert len(receiver.on("/flaky")) == 3  # delivered on the third attempt: no more


def test_410_gone_removes_the_subscription(client: httpx.Client, receiver: Receiver) -> None:
    session_id = f"g-{uuid.uuid4().hex[:8]}"
    location = subscribe(client, receiver, "/gone", sessionId=session_id)
    receiver.script["/gone"] = [410]
    client.post("/api/sessions", json={"sessionId": session_id, "leaseMinutes": 10})
    receiver.wait_for("/gone", 1)
    wait_for(lambda: client.delete(location.split("?")[0]).status_code == 404, "the subscription removed",
             timeout=WAIT, interval=0.2)
    time.sleep(3)  # Ready came and went: the removed subscription heard nothing more
    assert len(receiver.on("/gone")) == 1


def test_a_host_killed_mid_delivery_delivers_after_restart(emulator_process: Emulator,
                                                            own_azurite_queues: Azurite,
                                                            receiver: Receiver) -> None:
    """The receiver stalls the first delivery; the host is killed (SIGKILL) meanwhile. The message's lease ends,
    and a new host delivers the same event.

    The queues are this test's own: on the module's shared Azurite the module's host, alive beside these two,
    could take the message first and finish its stalled delivery after the kill, leaving nothing to redeliver."""
    emulator_process.reset(startupSeconds=30)
    env = notifying_env(emulator_process, own_azurite_queues)
    first = start_host(env, "function_app", "--no-timers")
    session_id = f"k-{uuid.uuid4().hex[:8]}"
    try:
        with first.client() as http:
            subscribe(http, receiver, "/slow", sessionId=session_id, statuses=["Starting"])
            receiver.stall["/slow"] = 10.0
            http.post("/api/sessions", json={"sessionId": session_id, "leaseMinutes": 10})
            receiver.wait_for("/slow", 1)
    finally:
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    second = start_host(env, "function_app", "--no-timers")
    try:
        heard = receiver.wait_for("/slow", 2, timeout=WAIT)
        assert [r.event_id for r in heard] == [f"{session_id}.None.Starting"] * 2
    finally:
        stop(second.process)


# -- receivers that would exhaust the delivering host (issue 19.1) ----------------------------------------------------

HUGE = 200 * 1024 * 1024


@dataclass
class Hostile:
    """A receiver that answers badly, and notes when the host hung up on it (its write failed)."""

    port: int
    arrived: dict[str, float] = field(default_factory=dict)
    hung_up: dict[str, float] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def serve_hostile(hostile: Hostile) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            path = self.path
            hostile.arrived.setdefault(path, time.monotonic())
            try:
                if path.startswith("/huge"):  # the status, then 200 MB of body
                    self.wfile.write(f"HTTP/1.1 {500 if 'fail' in path else 200} X\r\nContent-Length: {HUGE}\r\n\r\n"
                                     .encode())
                    chunk = b"0" * (1024 * 1024)
                    for _ in range(HUGE // len(chunk)):
                        self.wfile.write(chunk)
                elif path.startswith("/trickle-body"):  # the status, then a byte every 0.5 s for a minute
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 120\r\n\r\n")
                    self.wfile.flush()
                    for _ in range(120):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.5)
                else:  # the status line itself, a byte every 0.5 s
                    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * 4:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.5)
            except OSError:
                hostile.hung_up.setdefault(path, time.monotonic())
            self.close_connection = True

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", hostile.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def test_a_receiver_that_answers_200_mb_costs_the_host_no_memory(client: httpx.Client, notifying_host: Host) -> None:
    """The status is all a delivery needs: the body is never read, so the host's RSS stays within 40 MB of where it
    was while one receiver answers 200 with 200 MB and another answers 500 with 200 MB (and is retried)."""
    hostile = Hostile(free_port())
    server = serve_hostile(hostile)
    try:
        session_id = f"h-{uuid.uuid4().hex[:8]}"
        for path in ("/huge", "/huge-fail"):
            subscribe(client, hostile, path, sessionId=session_id, statuses=["Starting"])  # type: ignore[arg-type]
        before = rss_mb(notifying_host.process.pid)
        client.post("/api/sessions", json={"sessionId": session_id, "leaseMinutes": 10})
        wait_for(lambda: {"/huge", "/huge-fail"} <= set(hostile.hung_up), "the host hung up on both receivers",
                 timeout=WAIT, interval=0.1)
        time.sleep(6)  # the failed one's retry, 5 s later
        peak = rss_mb(notifying_host.process.pid)
    finally:
        server.shutdown()
    print(f"host RSS {before:.0f} MB before, {peak:.0f} MB after two 200 MB answers")
    assert peak - before < 40, (before, peak)


def test_a_receiver_that_trickles_is_hung_up_on_within_the_delivery_time(client: httpx.Client) -> None:
    """A body that trickles in is not waited for at all; a status line that trickles is cut at 10 s."""
    hostile = Hostile(free_port())
    server = serve_hostile(hostile)
    try:
        session_id = f"t-{uuid.uuid4().hex[:8]}"
        for path in ("/trickle-body", "/trickle-head"):
            subscribe(client, hostile, path, sessionId=session_id, statuses=["Starting"])  # type: ignore[arg-type]
        client.post("/api/sessions", json={"sessionId": session_id, "leaseMinutes": 10})
        wait_for(lambda: {"/trickle-body", "/trickle-head"} <= set(hostile.hung_up), "the host hung up on both",
                 timeout=WAIT, interval=0.1)
    finally:
        server.shutdown()
    held = {path: hostile.hung_up[path] - hostile.arrived[path] for path in hostile.hung_up}
    assert held["/trickle-body"] < 3, held
    assert 9 < held["/trickle-head"] < 13, held


# -- a deleted subscription stays deleted; queue messages are not trusted (issue 19.4, 19.5) -------------------------

def test_a_deleted_subscription_receives_no_queued_retry(client: httpx.Client, receiver: Receiver) -> None:
    session_id = f"x-{uuid.uuid4().hex[:8]}"
    location = subscribe(client, receiver, "/deleted", sessionId=session_id, statuses=["Starting"])
    receiver.script["/deleted"] = [500] * 8
    client.post("/api/sessions", json={"sessionId": session_id, "leaseMinutes": 10})
    receiver.wait_for("/deleted", 1)
    assert client.delete(location.split("?")[0]).status_code == 200
    time.sleep(8)  # past the retry queued 5 s after the first attempt
    assert len(receiver.on("/deleted")) == 1


def test_forged_queue_messages_reach_no_one_and_remove_no_subscription(client: httpx.Client, receiver: Receiver,
                                                                      azurite_queues: Azurite) -> None:
    """Messages written straight into arr-notify, as anyone with the queue's key could: an attempt out of bounds, a
    victim's subscription id beside a URL that answers 410, a callback to a URL no session asked for."""
    from azure.storage.queue import QueueClient, TextBase64EncodePolicy

    victim = subscribe(client, receiver, "/victim", sessionId="no-such-session")
    victim_id = victim.split("?")[0].rsplit("/", 1)[1]
    receiver.script["/attacker"] = [410] * 5
    payload = {"eventId": "forged", "session": {"id": "no-such-session"}}
    forged = [{"url": receiver.url("/forged"), "eventId": "forged", "attempt": -40, "payload": payload},
              {"url": receiver.url("/attacker"), "subscriptionId": victim_id, "eventId": "forged", "attempt": 1,
               "payload": payload},
              {"url": receiver.url("/forged"), "eventId": "forged", "attempt": 1, "payload": payload}]
    queue = QueueClient.from_connection_string(azurite_queues.connection_string, "arr-notify",
                                               message_encode_policy=TextBase64EncodePolicy())
    with queue:
        for message in forged:
            queue.send_message(json.dumps(message))
        wait_for(lambda: not queue.peek_messages(max_messages=1), "the host took the forged messages",
                 timeout=WAIT, interval=0.2)
    time.sleep(6)  # what a retry of any of them would have waited
    assert receiver.on("/forged") == [] and receiver.on("/attacker") == []
    assert client.delete(victim.split("?")[0]).status_code == 200  # still there, until now


# -- the retry of a delivery is queued under load: no duplicates (issue 19.6) ----------------------------------------

_RUN = re.compile(r"notification delivery \(attempt (\d+)\)"  # after a run that ended
                  r"|DeliverNotification failed on message \S+ \(dequeue count (\d+)\)")  # after one that raised


def delivery_runs(log: str) -> list[int]:
    """The dequeue count of every run of DeliverNotification the host's log tells of (a message run more than once
    has a count above 1: each of its later runs POSTed a (receiver, event, attempt) that its receiver had)."""
    return [int(m.group(1) or m.group(2)) for m in _RUN.finditer(log)]


def test_receivers_that_resolve_slowly_get_no_duplicate(emulator_process: Emulator, own_azurite_queues: Azurite,
                                                        receiver: Receiver) -> None:
    """28 subscriptions whose receivers answer 500, by a name whose lookup takes 6 s (a slow DNS: one resolver
    timeout; simulated in the host by tests/apps/slow_dns_app.py, nothing leaves the machine). Every delivery's retry
    is queued: no queue call gives up ("queue arr-notify did not answer within 5 s"), so no message is run twice and
    no receiver hears an (event, attempt) twice (a receiver cannot tell a repeat from the next attempt: the host's
    log can, by the message's dequeue count). Before the fix the lookups held every thread of the event loop's
    default executor, which the queue client needed twice per send (aiohttp's proxy and ~/.netrc lookups)."""
    emulator_process.reset(startupSeconds=60)  # Starting only, for the whole test
    paths = [f"/slow{i}" for i in range(28)]
    host = start_host({**notifying_env(emulator_process, own_azurite_queues), "SLOW_DNS_SECONDS": "6"},
                      "tests.apps.slow_dns_app", "--no-timers")
    try:
        with host.client() as http:
            session_id = f"d-{uuid.uuid4().hex[:8]}"
            for path in paths:
                receiver.script[path] = [500] * 8
                r = http.post("/api/subscriptions", json={
                    "notificationUrl": f"http://receiver.slow.localhost:{receiver.port}{path}",
                    "sessionId": session_id, "statuses": ["Starting"]})
                assert r.status_code == 201, r.text
            assert http.post("/api/sessions", json={"sessionId": session_id, "leaseMinutes": 10}).status_code == 202
            wait_for(lambda: all(receiver.on(path) for path in paths), "every receiver's first delivery",
                     timeout=20, interval=0.2, fail=False)
            time.sleep(0.5)  # the last retries are queued
    finally:
        host.process.kill()  # not stop(): lookups still sleeping would hold its exit for seconds
        host.process.wait()
    log = Path(host.process.log_path).read_text(errors="replace")  # type: ignore[attr-defined]
    failures = re.findall(r"queue [\w-]+ (?:did not answer|could not be reached)[^\n]*", log)
    runs = delivery_runs(log)
    heard = {path: len(receiver.on(path)) for path in paths}
    print(f"{len(runs)} delivery runs, {sum(heard.values())} POSTs, {len(failures)} queue failures")
    assert failures == [], failures[:3]
    assert [count for count in runs if count > 1] == [], runs
    assert all(count >= 1 for count in heard.values()), heard  # the deliveries were made (and retries may follow)
