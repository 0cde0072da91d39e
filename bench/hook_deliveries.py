"""Inbound webhook deliveries per sender (issue 20): sent, answered, refused, deduplicated and acted, on two hosts.

Starts Azurite (tables and queues, in memory), the ARR emulator and TWO function hosts (``python -m devhost``) on one
history table and one ``arr-hooks`` queue, as two instances of the app in Azure, all on loopback. Then, one sender
after the other (Event Grid, CloudEvents, alerts, Standard Webhooks, GitHub, budgets):

- the sessions the sender's rule acts on are started first (stop and extend rules act on sessions by their labels;
  a budget stops every session not kept alive, so one keepAlive session is started beside them);
- ``--events N`` distinct deliveries are sent, each three times (host A, then B, then A again), pipelined so that
  the duplicates arrive while the queue carries the first out; ``--refused M`` bad ones are mixed in (no function
  key or a wrong one; Standard Webhooks tampered, stale (10 min old) or signed with a foreign secret; GitHub with a
  wrong secret, a tampered body or no signature), each aimed at a decoy that would show it had acted; Event Grid's
  validation handshake and CloudEvents' OPTIONS handshake once each;
- the queue is awaited (empty, and what the app shows has stopped changing), then what happened is read back: the
  emulator's request counters (ARR creates, stops and updates), the sessions and their events from the app
  (``GET /api/sessions``, ``GET /api/sessions/{id}/events``: the hook's actor), the delivery rows in the table, and
  the hosts' logs (how often each delivery was carried out);
- the sender's sessions are stopped (by the bench), so that the next sender's stopAll or scope sees only its own.

Prints one table (sender, sent, answered 2xx, refused, deduplicated, acted, expected acted, answer time p50/max)
and a verdict per sender: every distinct delivery acted exactly once (a start: one session and one ARR create per
BlobCreated; a stop or extend: its target session, one ARR call; a budget: each session not kept alive stopped
once), every duplicate acted zero times, every bad delivery refused. "acted" counts the ARR calls the hook made
(the emulator's counters); the verdict also checks the sessions and events the app shows.

``.venv/bin/python bench/hook_deliveries.py`` (and ``--events 100``). Not a test: the timings depend on the
machine. The host logs stay in a temporary directory, printed at the end.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arr_core.domain.hooks.deliveries import HOOK_QUEUE, hook_session_id
from devhost.stack import AZURITE_ALL, azurite_command, azurite_connection_string, free_port, wait_for_port

PAYLOADS = ROOT / "tests" / "reference" / "webhooks"
ACCOUNT_ID, ACCOUNT_KEY = "00000000-0000-0000-0000-0000000000d2", "bench-hooks-key"
FUNCTION_KEY, MASTER_KEY = "bench-hooks-function-key", "bench-hooks-master-key"
STANDARD_SECRETS = ("whsec_" + base64.b64encode(b"n" * 32).decode(), "whsec_" + base64.b64encode(b"o" * 32).decode())
FOREIGN_SECRET = "whsec_" + base64.b64encode(b"x" * 32).decode()
GITHUB_SECRET = "9b1d3c0c5f8e4a7b8d6e2f1a0c3b5d7e"
SENDERS = ("eventgrid", "cloudevents", "alert", "standardwebhooks", "github", "budget")
EG_CONTAINER, CE_CONTAINER = "eg-models", "ce-models"
DECOY = "decoy"  # what a refused delivery aims at: a decoy session that only a bad delivery accepted would touch

_CARRIED = re.compile(r"arr_sessions\.hooks: hook (\w+) delivery (.*) carried out: (.*)$")
_ATTEMPT = re.compile(r"arr_sessions\.hooks: hook delivery \(attempt (\d+)\): (.*)$")
_FAILED = re.compile(r"queue function CarryOutHookDelivery failed")


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))


def hook_rules(events: int) -> list[dict[str, Any]]:
    """Like tests/integration/test_hooks.py's, with scopes that give each distinct delivery a session of its own
    (an alert by its rule's name, a Standard Webhooks event by its type, a push by its repository)."""
    signed_types = [f"bench.stop.{i}" for i in range(events)] + [f"bench.stop.{DECOY}"]
    return [
        {"name": "model-landed", "sender": "eventgrid", "eventTypes": ["Microsoft.Storage.BlobCreated"],
         "subjectBeginsWith": f"/blobServices/default/containers/{EG_CONTAINER}/",
         "action": {"kind": "start", "size": "Standard", "leaseMinutes": 30,
                    "labels": {"bench": "eventgrid", "container": "{container}", "blob": "{blob}"}}},
        {"name": "model-landed-ce", "sender": "cloudevents", "eventTypes": ["Microsoft.Storage.BlobCreated"],
         "action": {"kind": "start", "leaseMinutes": 30,
                    "labels": {"bench": "cloudevents", "container": "{container}", "blob": "{blob}"}}},
        {"name": "budget-backstop", "sender": "budget", "action": {"kind": "stopAll", "reason": "budget {budgetName}"}},
        {"name": "alert-stop", "sender": "alert",
         "action": {"kind": "stop", "scope": {"team": "alerted", "alert": "{alertRule}"}}},
        {"name": "signed-stop", "sender": "standardwebhooks", "eventTypes": signed_types,
         "action": {"kind": "stop", "scope": {"team": "signed", "event": "{type}"}}},
        {"name": "push", "sender": "github", "eventTypes": ["push"],
         "action": {"kind": "extend", "scope": {"team": "pushed", "repo": "{repository}"}, "leaseMinutes": 120}},
    ]


# -- the stack -------------------------------------------------------------------------------------------------------

@dataclass
class Stack:
    logs: Path
    connection: str
    emulator_url: str
    hosts: list[str] = field(default_factory=list)
    host_logs: list[Path] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    table: str = field(default_factory=lambda: f"k{uuid.uuid4().hex[:12]}")

    def emulator(self) -> dict[str, Any]:
        r = httpx.get(f"{self.emulator_url}/_emulator/state", timeout=30)
        r.raise_for_status()
        return r.json()

    def queue_count(self, name: str = HOOK_QUEUE) -> int:
        from azure.core.exceptions import ResourceNotFoundError
        from azure.storage.queue import QueueClient

        with QueueClient.from_connection_string(self.connection, name) as queue:
            try:
                return queue.get_queue_properties().approximate_message_count
            except ResourceNotFoundError:
                return 0

    def deliveries(self) -> list[dict[str, Any]]:
        """The hook partition of the history table: one row per delivery the app recorded."""
        from azure.data.tables import TableClient

        with TableClient.from_connection_string(self.connection, table_name=self.table) as table:
            return list(table.query_entities("PartitionKey eq 'hook'"))

    def log_sizes(self) -> list[int]:
        return [path.stat().st_size for path in self.host_logs]

    def log_since(self, sizes: list[int]) -> list[tuple[str, str]]:
        """(host, line) of each host's log since ``sizes``."""
        lines = []
        for name, path, size in zip("AB", self.host_logs, sizes, strict=True):
            with path.open("rb") as f:
                f.seek(size)
                lines += [(name, line) for line in f.read().decode(errors="replace").splitlines()]
        return lines


def host_env(stack: Stack, events: int, lease: float | None) -> dict[str, str]:
    env = {**os.environ, "AzureWebJobsStorage": stack.connection, "ARR_ENDPOINT": stack.emulator_url,
           "ARR_STS_ENDPOINT": stack.emulator_url, "ARR_ACCOUNT_ID": ACCOUNT_ID, "ARR_ACCOUNT_KEY": ACCOUNT_KEY,
           "ARR_ACCOUNT_DOMAIN": "eastus.mixedreality.azure.com", "ARR_HISTORY_TABLE": stack.table,
           "ARR_CLEANUP_SCHEDULE": "0 */5 * * * *", "ARR_POLL_SECONDS": "1",
           "ARR_HOOK_RULES": json.dumps(hook_rules(events)), "ARR_HOOK_STANDARD_SECRETS": " ".join(STANDARD_SECRETS),
           "ARR_HOOK_GITHUB_SECRETS": GITHUB_SECRET}
    if lease is not None:
        env["DEVHOST_QUEUE_LEASE_SECONDS"] = str(lease)
    return {k: v for k, v in env.items() if not k.startswith("COVERAGE_")}


@contextmanager
def running_stack(events: int, lease: float | None) -> Iterator[Stack]:
    table, blob, queue, emulator_port = (free_port() for _ in range(4))
    logs = Path(tempfile.mkdtemp(prefix="hook-bench-"))
    stack = Stack(logs, azurite_connection_string(table, blob_port=blob, queue_port=queue),
                  f"http://127.0.0.1:{emulator_port}")

    def spawn(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        stack.processes.append(process)
        return process

    try:
        azurite = spawn(azurite_command(table, blob_port=blob, queue_port=queue), logs / "azurite.log")
        emulator = spawn([sys.executable, "-m", "arr_emulator", "--port", str(emulator_port), "--account-id",
                          ACCOUNT_ID, "--account-key", ACCOUNT_KEY], logs / "emulator.log",
                         {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")})
        wait_for_port(queue, azurite)
        wait_for_port(emulator_port, emulator)
        httpx.post(f"{stack.emulator_url}/_emulator/config", json={"startupSeconds": 1}).raise_for_status()
        env = host_env(stack, events, lease)
        for name in ("A", "B"):
            port = free_port()
            log = logs / f"host-{name}.log"
            host = spawn([sys.executable, "-m", "devhost", "--port", str(port), "--settings", "/nonexistent",
                          "--module", "function_app", "--function-key", FUNCTION_KEY, "--master-key", MASTER_KEY,
                          "--no-timers"], log, env)
            stack.hosts.append(f"http://127.0.0.1:{port}")
            stack.host_logs.append(log)
            try:
                wait_for_port(port, host, timeout=60)
            except RuntimeError as exc:
                raise SystemExit(f"{exc}; host {name}'s log:\n{log.read_text(errors='replace')[-3000:]}") from None
        yield stack
    finally:
        for process in reversed(stack.processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(stack.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- what the senders send -------------------------------------------------------------------------------------------

@dataclass
class Request:
    method: str
    path: str
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class Delivery:
    """One distinct delivery: ``request(copy)`` builds each of its three sends (a Standard Webhooks retry is
    signed again at its own time, with the same webhook-id)."""

    delivery_id: str
    request: Callable[[int], Request]
    target: str = ""  # the blob a start names, or the label value of the session a stop or extend acts on


def keyed(i: int, headers: dict[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, params) carrying the function key, in the URL (``?code=``, what Event Grid and action groups
    send) for even deliveries, in ``x-functions-key`` for odd ones."""
    headers = dict(headers or {})
    if i % 2:
        return headers | {"x-functions-key": FUNCTION_KEY}, {}
    return headers, {"code": FUNCTION_KEY}


def badly_keyed(j: int, headers: dict[str, str] | None = None) -> tuple[str, dict[str, str], dict[str, str]]:
    headers = dict(headers or {})
    kind = ("no key", "wrong ?code=", "wrong x-functions-key")[j % 3]
    if kind == "wrong ?code=":
        return kind, headers, {"code": "not-the-" + FUNCTION_KEY}
    if kind == "wrong x-functions-key":
        return kind, headers | {"x-functions-key": "not-the-" + FUNCTION_KEY}, {}
    return kind, headers, {}


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def blob_created_grid(blob: str) -> bytes:
    events = payload("eventgrid-blob-created.json")
    events[0] |= {"id": str(uuid.uuid4()), "subject": f"/blobServices/default/containers/{EG_CONTAINER}/blobs/{blob}",
                  "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return dumps(events)


def blob_created_cloud(blob: str) -> bytes:
    event = payload("cloudevents-blob-created.json")
    event |= {"id": str(uuid.uuid4()), "subject": f"/blobServices/default/containers/{CE_CONTAINER}/blobs/{blob}",
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return dumps(event)


def alert_fired(rule: str) -> bytes:
    body = payload("alert-fired.json")
    essentials = body["data"]["essentials"]
    essentials["alertId"] = ("/subscriptions/11111111-1111-1111-1111-111111111111/providers/"
                             f"Microsoft.AlertsManagement/alerts/{uuid.uuid4()}")
    essentials["alertRule"] = rule
    return dumps(body)


def budget_alert(i: int) -> bytes:
    """Even: the common alert schema (its alertId and firedDateTime name it); odd: the legacy budget notification
    (its budget, period and threshold name it)."""
    if i % 2 == 0 or i < 0:
        body = payload("budget-common.json")
        essentials = body["data"]["essentials"]
        essentials["alertId"] = f"/subscriptions/11111111-1111-1111-1111-111111111111/providers/" \
                                f"Microsoft.CostManagement/alerts/bench-{uuid.uuid4().hex}"
        essentials["firedDateTime"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        body["data"]["alertContext"]["AlertData"]["BudgetName"] = f"bench-budget-{i}"
        return dumps(body)
    body = payload("budget-legacy.json")
    body["data"]["BudgetName"] = f"bench-budget-{i}-{uuid.uuid4().hex[:8]}"
    return dumps(body)


def standard_headers(body: bytes, secret: str, webhook_id: str, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(at if at is not None else time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": webhook_id, "webhook-timestamp": timestamp, "Content-Type": "application/json",
            "webhook-signature": f"v1,{base64.b64encode(mac).decode()}"}


def contact(event_type: str) -> bytes:
    return dumps(payload("standard-webhooks-contact-created.json") | {"type": event_type})


def push(repository: str) -> bytes:
    return dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": uuid.uuid4().hex + "0" * 8,
                  "repository": {"full_name": repository}, "sender": {"login": "octocat"}})


def github_headers(body: bytes, delivery: str, secret: str = GITHUB_SECRET) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={signature}", "X-GitHub-Event": "push", "X-GitHub-Delivery": delivery,
            "Content-Type": "application/json"}


GRID = {"aeg-event-type": "Notification", "Content-Type": "application/json"}
CLOUD = {"aeg-event-type": "Notification", "Content-Type": "application/cloudevents+json; charset=utf-8"}
JSON = {"Content-Type": "application/json"}


def distinct(sender: str, i: int) -> Delivery:
    """The i-th distinct delivery of ``sender``."""
    if sender in ("eventgrid", "cloudevents"):
        blob = f"model-{i}.arrAsset"
        body = (blob_created_grid if sender == "eventgrid" else blob_created_cloud)(blob)
        headers, params = keyed(i, GRID if sender == "eventgrid" else CLOUD)
        event = json.loads(body)
        delivery_id = (event[0] if isinstance(event, list) else event)["id"]
        return Delivery(delivery_id, lambda _: Request("POST", "/api/hooks/eventgrid", body, headers, params), blob)
    if sender in ("alert", "budget"):
        body = alert_fired(f"bench-alert-{i}") if sender == "alert" else budget_alert(i)
        headers, params = keyed(i, JSON)
        value = json.loads(body)
        essentials = value["data"].get("essentials")
        delivery_id = (f"{essentials['alertId']}:Fired" if sender == "alert"
                       else f"{essentials['alertId']}:{essentials['firedDateTime']}" if essentials
                       else "{BudgetName}:{BudgetStartDate}:{NotificationThresholdAmount}".format(**value["data"]))
        return Delivery(delivery_id, lambda _: Request("POST", "/api/hooks/alerts", body, headers, params),
                        f"bench-alert-{i}" if sender == "alert" else "")
    if sender == "standardwebhooks":
        body, webhook_id = contact(f"bench.stop.{i}"), f"msg_{uuid.uuid4().hex}"
        secret = STANDARD_SECRETS[i % 2]  # both secrets of a rotation are accepted
        return Delivery(webhook_id, lambda _: Request("POST", "/api/hooks/standard", body,
                                                      standard_headers(body, secret, webhook_id)), f"bench.stop.{i}")
    body, delivery = push(f"contoso/model-{i}"), str(uuid.uuid4())
    headers = github_headers(body, delivery)
    return Delivery(delivery, lambda _: Request("POST", "/api/hooks/github", body, headers), f"contoso/model-{i}")


def refused(sender: str, j: int) -> tuple[str, Request]:
    """The j-th bad delivery of ``sender``: (what is wrong with it, the request). Each aims at the sender's decoy."""
    if sender in ("eventgrid", "cloudevents"):
        blob = f"{DECOY}-{j}.arrAsset"
        body = (blob_created_grid if sender == "eventgrid" else blob_created_cloud)(blob)
        kind, headers, params = badly_keyed(j, GRID if sender == "eventgrid" else CLOUD)
        return kind, Request("POST", "/api/hooks/eventgrid", body, headers, params)
    if sender in ("alert", "budget"):
        body = alert_fired(f"bench-alert-{DECOY}") if sender == "alert" else budget_alert(-1 - j)
        kind, headers, params = badly_keyed(j, JSON)
        return kind, Request("POST", "/api/hooks/alerts", body, headers, params)
    if sender == "standardwebhooks":
        body, webhook_id = contact(f"bench.stop.{DECOY}"), f"msg_{uuid.uuid4().hex}"
        kind = ("tampered", "stale (10 min)", "foreign secret")[j % 3]
        if kind == "tampered":
            return kind, Request("POST", "/api/hooks/standard", body.replace(b"John", b"Jane"),
                                 standard_headers(body, STANDARD_SECRETS[0], webhook_id))
        if kind == "stale (10 min)":
            return kind, Request("POST", "/api/hooks/standard", body,
                                 standard_headers(body, STANDARD_SECRETS[0], webhook_id, at=time.time() - 600))
        return kind, Request("POST", "/api/hooks/standard", body, standard_headers(body, FOREIGN_SECRET, webhook_id))
    body, delivery = push(f"contoso/{DECOY}"), str(uuid.uuid4())
    kind = ("wrong secret", "tampered body", "no signature")[j % 3]
    if kind == "wrong secret":
        return kind, Request("POST", "/api/hooks/github", body, github_headers(body, delivery, "not-" + GITHUB_SECRET))
    if kind == "tampered body":
        return kind, Request("POST", "/api/hooks/github", body.replace(b"octocat", b"mallory"),
                             github_headers(body, delivery))
    headers = github_headers(body, delivery)
    del headers["X-Hub-Signature-256"]
    return kind, Request("POST", "/api/hooks/github", body, headers)


def handshake(sender: str) -> Request | None:
    if sender == "eventgrid":
        return Request("POST", "/api/hooks/eventgrid", dumps(payload("eventgrid-subscription-validation.json")),
                       {"aeg-event-type": "SubscriptionValidation", "Content-Type": "application/json"},
                       {"code": FUNCTION_KEY})
    if sender == "cloudevents":
        return Request("OPTIONS", "/api/hooks/eventgrid", None,
                       {"WebHook-Request-Origin": "eventgrid.azure.net", "WebHook-Request-Rate": "120"},
                       {"code": FUNCTION_KEY})
    return None


# -- one sender ------------------------------------------------------------------------------------------------------

@dataclass
class Answer:
    kind: str  # "first", "duplicate", "refused", "handshake"
    what: str
    status: int
    ms: float
    duplicate: bool | None
    outcome: str | None
    text: str


def send(client: httpx.Client, request: Request, kind: str, what: str) -> Answer:
    began = time.perf_counter()
    try:
        r = client.request(request.method, request.path, content=request.content, headers=request.headers,
                           params=request.params)
    except httpx.HTTPError as exc:
        return Answer(kind, what, 0, (time.perf_counter() - began) * 1000, None, None, repr(exc))
    ms = (time.perf_counter() - began) * 1000
    duplicate = outcome = None
    try:
        events = r.json().get("events") if r.headers.get("content-type", "").startswith("application/json") else None
    except ValueError:
        events = None
    if isinstance(events, list) and events:
        duplicate = any(e.get("duplicate") for e in events)
        outcome = ",".join(str(e.get("outcome")) for e in events)
    if kind == "handshake":  # what proves the handshake: the code back (Event Grid), the consent (CloudEvents)
        text = r.text if request.method == "POST" else r.headers.get("WebHook-Allowed-Origin", "")
    else:
        text = r.text[:300] if r.status_code >= 300 else ""
    return Answer(kind, what, r.status_code, ms, duplicate, outcome, text)


@dataclass
class Result:
    sender: str
    events: int
    answers: list[Answer]
    expected_sent: int
    expected_2xx: int
    expected_refused: int
    expected_duplicates: int
    acted: int  # ARR calls the hook made (emulator counters): creates, stops or updates
    expected_acted: int
    problems: list[str]
    facts: list[str]
    seconds: float

    def count(self, test: Callable[[Answer], bool]) -> int:
        return sum(1 for a in self.answers if test(a))


class Api:
    """The app as a person with a function key sees it (host A)."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"x-functions-key": FUNCTION_KEY}, timeout=60)

    def start(self, labels: dict[str, str], keep_alive: bool = False) -> str:
        r = self.http.post("/api/sessions", json={"leaseMinutes": 30, "labels": labels, "keepAlive": keep_alive,
                                                  "requestedBy": "bench"})
        if r.status_code != 202:
            raise SystemExit(f"starting a target session failed: {r.status_code} {r.text[:300]}")
        return r.json()["id"]

    def stop(self, session_id: str) -> None:
        self.http.post(f"/api/sessions/{session_id}/stop", json={"requestedBy": "bench", "reason": "bench cleanup"})

    def active(self) -> list[dict[str, Any]]:
        r = self.http.get("/api/sessions")
        r.raise_for_status()
        return r.json()["sessions"]

    def session(self, session_id: str) -> dict[str, Any]:
        return self.http.get(f"/api/sessions/{session_id}").json()

    def events(self, session_id: str) -> list[dict[str, Any]]:
        r = self.http.get(f"/api/sessions/{session_id}/events")
        return r.json().get("events", []) if r.status_code == 200 else []


ARR_CALL = {"eventgrid": "create", "cloudevents": "create", "alert": "stop", "standardwebhooks": "stop",
            "budget": "stop", "github": "update"}
START_RULE = {"eventgrid": "model-landed", "cloudevents": "model-landed-ce"}


def run_sender(stack: Stack, api: Api, clients: list[httpx.Client], sender: str, events: int, bad: int,
               budget_sessions: int, timeout: float) -> Result:
    began = time.monotonic()
    problems: list[str] = []
    facts: list[str] = []
    actor = f"hook:{sender}"

    # The sessions the rule acts on, and the decoy that only a bad delivery accepted would touch.
    targets: dict[str, str] = {}  # label value -> session id
    decoy: str | None = None
    kept: str | None = None
    if sender == "alert":
        targets = {f"bench-alert-{i}": api.start({"team": "alerted", "alert": f"bench-alert-{i}"})
                   for i in range(events)}
        decoy = api.start({"team": "alerted", "alert": f"bench-alert-{DECOY}"})
    elif sender == "standardwebhooks":
        targets = {f"bench.stop.{i}": api.start({"team": "signed", "event": f"bench.stop.{i}"}) for i in range(events)}
        decoy = api.start({"team": "signed", "event": f"bench.stop.{DECOY}"})
    elif sender == "github":
        targets = {f"contoso/model-{i}": api.start({"team": "pushed", "repo": f"contoso/model-{i}"})
                   for i in range(events)}
        decoy = api.start({"team": "pushed", "repo": f"contoso/{DECOY}"})
    elif sender == "budget":
        targets = {f"budget-{i}": api.start({"team": "budget"}) for i in range(budget_sessions)}
        kept = api.start({"team": "budget", "kept": "yes"}, keep_alive=True)
    if targets or decoy or kept:
        time.sleep(1.5)  # Ready (the emulator's startup is 1 s): an extend or a stop then acts on a Ready session

    deliveries = [distinct(sender, i) for i in range(events)]
    bad_ones = [refused(sender, j) for j in range(bad)]
    before = stack.emulator()["requests"]
    emulator_ids_before = {s["id"] for s in stack.emulator()["sessions"]}
    logs_at = stack.log_sizes()
    answers: list[Answer] = []

    # Step t: the first copy of delivery t to A, the second of t-1 to B, the third of t-2 to A, at once; a bad
    # delivery now and then, to either host. Each copy goes out after the one before it was answered.
    bad_at: dict[int, list[int]] = {}
    for j in range(bad):
        bad_at.setdefault(round((j + 0.5) * (events + 2) / bad), []).append(j)
    send_began = time.monotonic()
    if handshake(sender) is not None:
        answers.append(send(clients[0], handshake(sender), "handshake", "handshake"))  # type: ignore[arg-type]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for t in range(events + 2):
            jobs = []
            for copy_no, host in ((0, 0), (1, 1), (2, 0)):
                i = t - copy_no
                if 0 <= i < events:
                    d = deliveries[i]
                    jobs.append(pool.submit(send, clients[host], d.request(copy_no),
                                            "first" if copy_no == 0 else "duplicate", f"#{i} copy {copy_no + 1}"))
            for j in bad_at.get(t, []):
                kind, request = bad_ones[j]
                jobs.append(pool.submit(send, clients[j % 2], request, "refused", kind))
            answers += [job.result() for job in jobs]
    sent_seconds = time.monotonic() - send_began

    # Wait for the queue: empty (Azurite counts the messages a host holds too), and what the app shows has
    # stopped changing.
    def progress() -> tuple[int, int]:
        state = stack.emulator()
        calls = state["requests"][ARR_CALL[sender]] - before[ARR_CALL[sender]]
        return calls, len(state["sessions"])

    deadline = time.monotonic() + timeout
    last, steady, queued = None, 0, -1
    while time.monotonic() < deadline:
        queued = stack.queue_count()
        now = progress()
        steady = steady + 1 if queued == 0 and now == last else 0
        if steady >= 3:
            break
        last = now
        time.sleep(0.5)
    else:
        problems.append(f"the queue did not drain within {timeout:.0f} s ({queued} messages left)")
    drained_seconds = time.monotonic() - send_began

    state = stack.emulator()
    calls = {op: state["requests"][op] - before[op] for op in ("create", "stop", "update")}
    acted = calls[ARR_CALL[sender]]
    facts.append(f"ARR calls create/stop/update {calls['create']}/{calls['stop']}/{calls['update']}")
    arr_sessions = {s["id"]: s for s in state["sessions"]}
    poison = stack.queue_count(f"{HOOK_QUEUE}-poison")
    if poison:
        problems.append(f"{poison} messages on {HOOK_QUEUE}-poison")

    # The answers.
    handshake_answer = {"eventgrid": '{"validationResponse":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}',
                        "cloudevents": "eventgrid.azure.net"}.get(sender)
    for a in answers:
        if a.kind == "first" and not (a.status == 202 and a.duplicate is False and a.outcome == "queued"):
            problems.append(f"{a.what}: the first copy was answered {a.status} {a.outcome} duplicate={a.duplicate} "
                            f"{a.text[:120]}")
        elif a.kind == "duplicate" and not (200 <= a.status < 300 and a.duplicate is True):
            problems.append(f"{a.what}: a duplicate was answered {a.status} {a.outcome} duplicate={a.duplicate} "
                            f"{a.text[:120]}")
        elif a.kind == "refused" and a.status not in (401, 403):
            problems.append(f"a bad delivery ({a.what}) was answered {a.status} {a.outcome} {a.text[:120]}")
        elif a.kind == "handshake" and (a.status != 200 or a.text != handshake_answer):
            problems.append(f"the handshake was answered {a.status} {a.text[:120]}")
    dup_outcomes = Counter(a.outcome for a in answers if a.kind == "duplicate")
    facts.append("duplicates answered " + ", ".join(f"{n} {o}" for o, n in sorted(dup_outcomes.items(), key=str)))

    # What the app and the emulator show.
    if sender in START_RULE:
        expected_ids = {hook_session_id(sender, d.delivery_id, START_RULE[sender]): d.target for d in deliveries}
        new_hook = {sid for sid in arr_sessions if sid.startswith("hook-") and sid not in emulator_ids_before}
        missing = [expected_ids[sid] for sid in expected_ids if sid not in arr_sessions]
        extra = new_hook - set(expected_ids)
        listed = [s for s in api.active() if (s.get("labels") or {}).get("bench") == sender]
        blobs = Counter(s["labels"].get("blob") for s in listed)
        if missing:
            problems.append(f"{len(missing)} BlobCreated deliveries started no session: {missing[:5]}")
        if extra:
            problems.append(f"{len(extra)} sessions started that no distinct delivery asked for")
        if any(n > 1 for n in blobs.values()) or set(blobs) != {d.target for d in deliveries}:
            problems.append(f"the app lists {len(listed)} sessions labelled bench={sender} for {len(blobs)} blobs "
                            f"(expected one each of {events})")
        not_hook = []
        for s in listed:
            evs = api.events(s["id"])
            if not evs or evs[0].get("type") != "requested" or evs[0].get("actor") != f"hook:{START_RULE[sender]}":
                not_hook.append((s["id"], evs[:1]))
        if not_hook:
            problems.append(f"{len(not_hook)} sessions without the hook's 'requested' event: {not_hook[:2]}")
        facts.append(f"{len(expected_ids) - len(missing)} sessions started (ids from the deliveries), "
                     f"{len(listed)} listed by the app with the hook's labels and actor")
        expected_acted = events
        cleanup = [sid for sid in expected_ids if sid in arr_sessions] + sorted(extra)
    else:
        expected_acted = len(targets)
        hook_events: dict[str, list[dict[str, Any]]] = {}
        for label, sid in targets.items():
            hook_events[label] = [e for e in api.events(sid) if e.get("actor") == actor]
        if sender == "github":
            done = {label for label, evs in hook_events.items() if any(e["type"] == "extended" for e in evs)}
            twice = [label for label, evs in hook_events.items() if sum(e["type"] == "extended" for e in evs) > 1]
            lease = Counter(arr_sessions[sid]["maxLeaseTimeMinutes"] for sid in targets.values())
            facts.append(f"{len(done)} targets extended by {actor} (leases now {dict(lease)})")
        else:
            def stopped(e: dict[str, Any]) -> bool:  # a stop is a "status" event and a "stopped" one
                return e["type"] == "stopped"
            done = {label for label, evs in hook_events.items() if any(stopped(e) for e in evs)}
            twice = [label for label, evs in hook_events.items() if sum(stopped(e) for e in evs) > 1]
            not_stopped = [label for label, sid in targets.items() if arr_sessions[sid]["status"] != "Stopped"]
            if not_stopped:
                problems.append(f"{len(not_stopped)} target sessions not stopped in ARR: {not_stopped[:5]}")
            facts.append(f"{len(done)} targets stopped by {actor}")
        if missing_t := sorted(set(targets) - done, key=str):
            problems.append(f"{len(missing_t)} targets without the hook's change: {missing_t[:5]}")
        if twice:
            problems.append(f"{len(twice)} targets changed more than once by {actor}: {twice[:5]}")
        if decoy is not None:
            ds = arr_sessions[decoy]
            if ds["status"] not in ("Starting", "Ready") or ds["maxLeaseTimeMinutes"] != 30:
                problems.append(f"the decoy (that only a bad delivery would touch) is {ds['status']}, lease "
                                f"{ds['maxLeaseTimeMinutes']}")
        if kept is not None:
            status = arr_sessions[kept]["status"]
            facts.append(f"the keepAlive session is {status}")
            if status not in ("Starting", "Ready"):
                problems.append(f"the keepAlive session was stopped ({status})")
        cleanup = [*targets.values(), *(s for s in (decoy, kept) if s)]
    if acted != expected_acted:
        problems.append(f"{acted} ARR {ARR_CALL[sender]} calls for {expected_acted} expected")

    problems += read_table(stack, sender, deliveries)
    logs = read_logs(stack, logs_at, sender, deliveries)
    facts += logs.facts
    problems += logs.problems
    if logs.again:
        examples = "; ".join(logs.again[:3])
        effect = ("a later run acted again" if logs.acted_again else
                  "the later runs changed nothing (the session was there, stopped or extended already)")
        problems.append(f"{len(logs.again)} deliveries carried out more than once (a run that read the delivery "
                        f"before another marked it done took the lease once that one let it go); {effect}: "
                        f"{examples}")

    for sid in cleanup:
        api.stop(sid)
    facts.append(f"sent in {sent_seconds:.1f} s, drained after {drained_seconds:.1f} s")
    return Result(sender, events, answers, 3 * events + bad + (handshake(sender) is not None),
                  3 * events + (handshake(sender) is not None), bad, 2 * events, acted, expected_acted, problems,
                  facts, time.monotonic() - began)


def read_table(stack: Stack, sender: str, deliveries: list[Delivery]) -> list[str]:
    """The delivery rows: every distinct delivery recorded and done, no bad one recorded; and for a rule with a
    target of its own, the results the row keeps name it (a late retry of the sender is answered with them)."""
    problems = []
    rows = [r for r in stack.deliveries() if r["Sender"] == sender]
    ids = {d.delivery_id for d in deliveries}
    recorded = {r["DeliveryId"] for r in rows}
    if recorded != ids:
        problems.append(f"the table holds {len(recorded & ids)} of the {len(ids)} deliveries and "
                        f"{len(recorded - ids)} others")
    if undone := [r["DeliveryId"] for r in rows if r["DeliveryId"] in ids and not r.get("DoneAt")]:
        problems.append(f"{len(undone)} deliveries recorded but not done")
    if sender in ("alert", "standardwebhooks", "github"):
        zero = [r["DeliveryId"] for r in rows if re.search(r": (stopped|extended) 0$",
                                                             " ".join(json.loads(r.get("Results") or "[]")))]
        if zero:
            problems.append(f"{len(zero)} delivery rows say their target was not changed ('... 0'), though it "
                            f"was (a later run's results replaced the first's): {zero[:3]}")
    return problems


@dataclass
class Logs:
    facts: list[str]
    problems: list[str]
    again: list[str]  # deliveries carried out more than once: "id: host time results; host time results"
    acted_again: bool  # a run after a delivery's first stopped or extended something


def read_logs(stack: Stack, logs_at: list[int], sender: str, deliveries: list[Delivery]) -> Logs:
    """The hosts' logs since the sender began: each delivery's carry-outs (host, results) and what every queue
    message found."""
    carried: dict[str, list[str]] = {}
    attempts: Counter[str] = Counter()
    failures = 0
    for host, line in stack.log_since(logs_at):
        if (m := _CARRIED.search(line)) and m.group(1) == sender:
            carried.setdefault(m.group(2), []).append(f"{host} {line[11:23]} {m.group(3)[:60]}")
        elif m := _ATTEMPT.search(line):
            outcome = m.group(2)
            attempts["done already" if outcome.startswith("done already") else
                     "another host is carrying it out" if outcome.startswith("another host") else
                     "no such delivery" if outcome.startswith("no such delivery") else
                     "carried out" if ": " in outcome else outcome[:40]] += 1
        elif _FAILED.search(line):
            failures += 1
    short = {d.delivery_id[:128] for d in deliveries}
    runs = sum(len(v) for v in carried.values())
    facts = [f"carried out {runs} times for {len(carried)} deliveries; queue messages: "
             + ", ".join(f"{n} {k}" for k, n in sorted(attempts.items()))]
    problems = []
    if set(carried) != short:
        problems.append(f"the logs show {len(set(carried) & short)} of the {len(short)} deliveries carried out "
                        f"and {len(set(carried) - short)} others")
    if sender == "budget":
        stops = [int(n) for runs_of in carried.values() for run in runs_of
                 for n in re.findall(r"stopped (\d+)", run)]
        facts.append(f"{sum(1 for n in stops if n)} of the {len(stops)} stopAll runs stopped sessions, "
                     f"{sum(stops)} stops in all (runs of distinct deliveries at once each list the same active "
                     f"sessions and stop them)")
    if failures:
        facts.append(f"{failures} carry-outs failed and were retried by the queue")
    runs_of = {k: sorted(v, key=lambda run: run[2:]) for k, v in carried.items() if len(v) > 1}
    again = [f"{k[:40]}: {'; '.join(v)}" for k, v in runs_of.items()]
    acted_again = any(re.search(r"(stopped|extended) [1-9]", run) for v in runs_of.values() for run in v[1:])
    return Logs(facts, problems, again, acted_again)


# -- the report ------------------------------------------------------------------------------------------------------

def table(results: list[Result]) -> str:
    head = ("sender", "sent", "answered 2xx", "refused (401/403)", "deduplicated", "acted", "expected acted",
            "answer p50/max ms")
    rows = [head]
    for r in results:
        ms = [a.ms for a in r.answers]
        rows.append((r.sender, str(len(r.answers)), str(r.count(lambda a: 200 <= a.status < 300)),
                     str(r.count(lambda a: a.status in (401, 403))),
                     str(r.count(lambda a: 200 <= a.status < 300 and a.duplicate is True)),
                     str(r.acted), str(r.expected_acted), f"{statistics.median(ms):.0f}/{max(ms):.0f}"))
    widths = [max(len(row[c]) for row in rows) for c in range(len(head))]
    lines = [" | ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths,
                                                                                                        strict=True)))
             for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(r: Result) -> str:
    problems = list(r.problems)
    got = (len(r.answers), r.count(lambda a: 200 <= a.status < 300), r.count(lambda a: a.status in (401, 403)),
           r.count(lambda a: 200 <= a.status < 300 and a.duplicate is True))
    want = (r.expected_sent, r.expected_2xx, r.expected_refused, r.expected_duplicates)
    if got != want:
        problems.insert(0, f"sent/2xx/refused/deduplicated {'/'.join(map(str, got))}, expected "
                           f"{'/'.join(map(str, want))}")
    head = "OK" if not problems else "FAIL"
    what = {"eventgrid": "sessions started", "cloudevents": "sessions started", "alert": "sessions stopped",
            "standardwebhooks": "sessions stopped", "github": "sessions extended",
            "budget": "sessions not kept alive, each to be stopped once"}[r.sender]
    summary = (f"{r.sender}: {head}: {r.events} distinct deliveries acted {r.acted} times (ARR "
               f"{ARR_CALL[r.sender]} calls; expected {r.expected_acted}: {what}), {got[3]} duplicates answered "
               f"duplicate:true, "
               f"{got[2]}/{r.expected_refused} bad refused; " + "; ".join(r.facts))
    return summary + "".join(f"\n    - {p}" for p in problems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20, help="distinct deliveries per sender (each sent 3 times)")
    parser.add_argument("--refused", type=int, default=5, help="bad deliveries per sender (each must be refused)")
    parser.add_argument("--budget-sessions", type=int, default=5, help="sessions a budget's stopAll must stop")
    parser.add_argument("--senders", default=",".join(SENDERS), help=f"comma list of {', '.join(SENDERS)}")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for a sender's queue")
    parser.add_argument("--lease-seconds", type=float, help="the hosts' queue message lease (DEVHOST_…)")
    args = parser.parse_args()
    senders = [s for s in args.senders.split(",") if s]
    if unknown := set(senders) - set(SENDERS):
        raise SystemExit(f"unknown senders: {', '.join(sorted(unknown))}")
    if not AZURITE_ALL.exists():
        raise SystemExit(f"{AZURITE_ALL} is missing: run `npm ci` (make install does)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the processes are stopped on the way out
    began = time.monotonic()
    results: list[Result] = []
    logs = None
    try:
        with running_stack(args.events, args.lease_seconds) as stack:
            logs = stack.logs
            started = time.monotonic() - began
            api = Api(stack.hosts[0])
            clients = [httpx.Client(base_url=url, timeout=60) for url in stack.hosts]
            try:
                for sender in senders:
                    results.append(run_sender(stack, api, clients, sender, args.events, args.refused,
                                              args.budget_sessions, args.timeout))
            finally:
                for client in [*clients, api.http]:
                    client.close()
    finally:
        if logs is not None:
            print(f"logs (hosts A and B, Azurite, emulator): {logs}")
    print(f"{args.events} distinct deliveries per sender, each sent 3 times (host A, B, A), {args.refused} bad "
          f"ones; two hosts on one table and one queue; stack up in {started:.1f} s")
    print(table(results))
    for r in results:
        print(verdict(r))
    print(f"wall time {time.monotonic() - began:.1f} s")
    if any(r.problems or len(r.answers) != r.expected_sent for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
