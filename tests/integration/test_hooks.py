"""Inbound webhooks against the real app (issue 20): the senders' own payloads (tests/reference/webhooks, the
providers' documented examples) over real sockets to devhost, on Azurite with its queues and the ARR emulator.

Each sender's handshake, a BlobCreated that starts exactly one session though delivered three times to two hosts,
a budget alert that stops every session not kept alive once, a resolved alert that does nothing, Standard Webhooks
with good, tampered, stale and rotated signatures, GitHub's signature over the raw bytes; and the hosts killed or
the table lost between accepting a delivery and carrying it out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.data.tables import TableServiceClient
from conftest import Azurite, Emulator, Host, function_app_env, running_azurite_with_queues, start_host, stop
from polling import wait_for

PAYLOADS = Path(__file__).parents[1] / "reference" / "webhooks"
STANDARD_SECRETS = ("whsec_" + base64.b64encode(b"n" * 32).decode(), "whsec_" + base64.b64encode(b"o" * 32).decode())
GITHUB_SECRET = "9b1d3c0c5f8e4a7b8d6e2f1a0c3b5d7e"
RULES = [
    {"name": "model-landed", "sender": "eventgrid", "eventTypes": ["Microsoft.Storage.BlobCreated"],
     "subjectBeginsWith": "/blobServices/default/containers/test-container/",
     "action": {"kind": "start", "size": "Standard", "leaseMinutes": 30,
                "labels": {"container": "{container}", "blob": "{blob}"}, "requestedBy": "eventgrid"}},
    {"name": "model-landed-ce", "sender": "cloudevents", "eventTypes": ["Microsoft.Storage.BlobCreated"],
     "action": {"kind": "start", "leaseMinutes": 30, "labels": {"container": "{container}", "blob": "{blob}"}}},
    {"name": "budget-backstop", "sender": "budget", "action": {"kind": "stopAll", "reason": "budget {budgetName}"}},
    {"name": "alert-stop", "sender": "alert", "action": {"kind": "stop", "scope": {"team": "alerted"}}},
    {"name": "contact", "sender": "standardwebhooks", "eventTypes": ["contact.created"],
     "action": {"kind": "stop", "scope": {"team": "signed"}}},
    {"name": "push", "sender": "github", "eventTypes": ["push"],
     "action": {"kind": "extend", "scope": {"team": "pushed"}, "leaseMinutes": 120}},
]
WAIT = 30.0


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))


def hooks_env(emulator: Emulator, azurite: Azurite, table: str) -> dict[str, str]:
    return function_app_env(emulator, azurite, table, ARR_POLL_SECONDS="1", DEVHOST_QUEUE_LEASE_SECONDS="4",
                            ARR_HOOK_RULES=json.dumps(RULES), ARR_HOOK_STANDARD_SECRETS=" ".join(STANDARD_SECRETS),
                            ARR_HOOK_GITHUB_SECRETS=GITHUB_SECRET)


@pytest.fixture(scope="module")
def hooks_azurite() -> Iterator[Azurite]:
    """Queues of this module alone: another module's host must not take an ``arr-hooks`` message."""
    with running_azurite_with_queues() as azurite:
        yield azurite


@pytest.fixture(scope="module")
def hosts(emulator_process: Emulator, hooks_azurite: Azurite) -> Iterator[list[Host]]:
    """Two hosts of one app (one table, one queue), as two instances in Azure."""
    env = hooks_env(emulator_process, hooks_azurite, f"h{uuid.uuid4().hex[:12]}")
    started = [start_host(env, "function_app", "--no-timers") for _ in range(2)]
    yield started
    for host in started:
        stop(host.process)


@pytest.fixture
def clients(hosts: list[Host], emulator: Emulator) -> Iterator[list[httpx.Client]]:
    emulator.reset(startupSeconds=1)
    with hosts[0].client() as first, hosts[1].client() as second:
        yield [first, second]


def blob_created(container: str = "test-container", blob: str | None = None) -> list[dict[str, Any]]:
    """Event Grid's documented BlobCreated, with an id and blob name of its own."""
    events = payload("eventgrid-blob-created.json")
    blob = blob or f"model-{uuid.uuid4().hex[:8]}.arrAsset"
    events[0] |= {"id": str(uuid.uuid4()), "subject": f"/blobServices/default/containers/{container}/blobs/{blob}"}
    return events


def grid(client: httpx.Client, body: Any, **params: str) -> httpx.Response:
    return client.post("/api/hooks/eventgrid", json=body, params=params, headers={"aeg-event-type": "Notification"})


def sessions_labelled(client: httpx.Client, **labels: str) -> list[dict[str, Any]]:
    return [s for s in client.get("/api/sessions").json()["sessions"]
            if all((s.get("labels") or {}).get(k) == v for k, v in labels.items())]


def start_labelled(client: httpx.Client, team: str, **extra: Any) -> str:
    r = client.post("/api/sessions", json={"leaseMinutes": 30, "labels": {"team": team}, **extra})
    assert r.status_code == 202, r.text[:300]
    return r.json()["id"]


def status_of(client: httpx.Client, session_id: str) -> str:
    return client.get(f"/api/sessions/{session_id}").json()["status"]


# -- Event Grid ------------------------------------------------------------------------------------------------------

def test_the_validation_handshake_is_answered_and_starts_nothing(clients: list[httpx.Client],
                                                                 emulator: Emulator) -> None:
    """Pointed at StartSession, Event Grid's validation POST started a billed session and got a 202 (a failed
    handshake). Its hook answers 200 with the code, and nothing is started or recorded."""
    r = clients[0].post("/api/hooks/eventgrid", json=payload("eventgrid-subscription-validation.json"),
                        headers={"aeg-event-type": "SubscriptionValidation"})
    assert r.status_code == 200, r.text[:300]
    assert r.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    assert emulator.state()["requests"]["create"] == 0


def test_the_cloudevents_handshake_consents_to_event_grid_only(clients: list[httpx.Client]) -> None:
    r = clients[0].options("/api/hooks/eventgrid", headers={"WebHook-Request-Origin": "eventgrid.azure.net",
                                                            "WebHook-Request-Rate": "120"})
    assert r.status_code == 200, r.text[:300]
    assert r.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net" and r.headers["WebHook-Allowed-Rate"] == "*"
    refused = clients[0].options("/api/hooks/eventgrid", headers={"WebHook-Request-Origin": "evil.example"})
    assert refused.status_code == 403 and "WebHook-Allowed-Origin" not in refused.headers


def test_a_blob_created_delivered_three_times_to_two_hosts_starts_one_session(clients: list[httpx.Client],
                                                                             emulator: Emulator) -> None:
    events = blob_created(blob="chair.arrAsset")
    answers = [grid(client, events) for client in (clients[0], clients[1], clients[0])]
    assert all(r.status_code in (200, 202) for r in answers), [r.text[:200] for r in answers]
    first = answers[0].json()["events"][0]
    assert (answers[0].status_code, first["outcome"], first["duplicate"]) == (202, "queued", False)
    assert all(r.json()["events"][0]["duplicate"] for r in answers[1:])
    started = wait_for(lambda: sessions_labelled(clients[0], container="test-container", blob="chair.arrAsset"),
                       "the hook's session", timeout=WAIT, interval=0.25)
    assert len(started) == 1 and started[0]["id"].startswith("hook-") and started[0]["size"] == "Standard"
    again = grid(clients[1], events)  # a late retry, once it is done: the first outcome, nothing new
    wait_for(lambda: grid(clients[1], events).json()["events"][0]["outcome"] == "done", "the delivery done",
             timeout=WAIT, interval=0.25)
    assert again.status_code in (200, 202)
    time.sleep(2)  # anything a duplicate queued has had its turn
    assert emulator.state()["requests"]["create"] == 1
    events_of = clients[0].get(f"/api/sessions/{started[0]['id']}/events").json()["events"]
    assert events_of[0]["actor"] == "eventgrid"


def test_a_cloudevents_batch_and_an_unwanted_container(clients: list[httpx.Client], emulator: Emulator) -> None:
    """A CloudEvents batch (one POST: a BlobCreated and a BlobDeleted) starts a session for the one a rule takes and
    ignores the other; an Event Grid event of another container is acknowledged (200) and ignored; unknown event
    types too."""
    batch = payload("cloudevents-batch.json")
    for event in batch:
        event["id"] = str(uuid.uuid4())
    batch[0]["subject"] = "/blobServices/default/containers/test-container/blobs/batch.arrAsset"
    r = clients[0].post("/api/hooks/eventgrid", content=json.dumps(batch),
                        headers={"Content-Type": "application/cloudevents-batch+json; charset=utf-8"})
    assert r.status_code == 202 and [e["outcome"] for e in r.json()["events"]] == ["queued", "ignored"], r.text[:300]
    other = grid(clients[0], blob_created(container="elsewhere"))
    assert other.status_code == 200 and other.json()["events"][0]["outcome"] == "ignored"
    unknown = blob_created()
    unknown[0]["eventType"] = "Contoso.Something.Happened"
    assert grid(clients[0], unknown).status_code == 200
    wait_for(lambda: sessions_labelled(clients[0], blob="batch.arrAsset"), "the batch's session", timeout=WAIT,
             interval=0.25)


def test_a_dry_run_decides_and_records_nothing(clients: list[httpx.Client], emulator: Emulator) -> None:
    events = blob_created(blob="dry.arrAsset")
    dry = grid(clients[0], events, dryRun="true")
    assert dry.status_code == 200, dry.text[:300]
    (outcome,) = dry.json()["events"]
    assert outcome["outcome"] == "wouldAct" and outcome["actions"][0]["kind"] == "start"
    real = grid(clients[0], events)  # the same delivery is new: the dry run remembered nothing
    assert real.status_code == 202 and not real.json()["events"][0]["duplicate"]
    started = wait_for(lambda: sessions_labelled(clients[0], blob="dry.arrAsset"), "one session started",
                       timeout=WAIT, interval=0.25)
    assert len(started) == 1


def test_event_grid_and_alerts_need_a_function_key(hosts: list[Host], emulator: Emulator) -> None:
    with httpx.Client(base_url=hosts[0].url, timeout=30) as anonymous:
        assert grid(anonymous, blob_created()).status_code == 401
        assert anonymous.post("/api/hooks/alerts", json=payload("alert-fired.json")).status_code == 401
    assert emulator.state()["requests"]["create"] == 0


def test_malformed_and_oversized_bodies(clients: list[httpx.Client]) -> None:
    assert clients[0].post("/api/hooks/eventgrid", content=b"[{", headers={
        "Content-Type": "application/json"}).status_code == 400
    assert clients[0].post("/api/hooks/eventgrid", json={"not": "an array"}).status_code == 400
    big = [{**blob_created()[0], "data": {"pad": "x" * 1024}} for _ in range(1100)]  # over 1 MiB
    assert grid(clients[0], big).status_code == 413


# -- alerts and budgets ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["budget-common.json", "budget-legacy.json"])
def test_a_budget_alert_stops_every_session_not_kept_alive_once(clients: list[httpx.Client], emulator: Emulator,
                                                                name: str) -> None:
    kept = start_labelled(clients[0], "any", keepAlive=True)
    doomed = [start_labelled(clients[0], "any") for _ in range(2)]
    alert = payload(name)
    answers = [clients[i % 2].post("/api/hooks/alerts", json=alert) for i in range(3)]
    assert answers[0].status_code == 202, answers[0].text[:300]
    wait_for(lambda: all(status_of(clients[0], s) == "Stopped" for s in doomed), "both stopped", timeout=WAIT,
             interval=0.25)
    assert status_of(clients[0], kept) in ("Starting", "Ready")
    events = clients[0].get(f"/api/sessions/{doomed[0]}/events").json()["events"]
    stops = [e for e in events if e["type"] == "stopRequested" or e.get("actor") == "hook:budget"]
    assert stops and all(e["actor"] == "hook:budget" for e in stops)
    time.sleep(2)
    assert emulator.state()["requests"]["stop"] == 2  # once each, though delivered three times
    clients[0].post(f"/api/sessions/{kept}/stop")


def test_a_resolved_alert_is_acknowledged_and_does_nothing(clients: list[httpx.Client], emulator: Emulator) -> None:
    target = start_labelled(clients[0], "alerted")
    r = clients[0].post("/api/hooks/alerts", json=payload("alert-resolved.json"))
    assert r.status_code == 200 and r.json()["events"][0]["outcome"] == "ignored", r.text[:300]
    fired = clients[0].post("/api/hooks/alerts", json=payload("alert-fired.json"))
    assert fired.status_code == 202, fired.text[:300]
    wait_for(lambda: status_of(clients[0], target) == "Stopped", "the alerted session stopped", timeout=WAIT,
             interval=0.25)


# -- Standard Webhooks and GitHub ------------------------------------------------------------------------------------

def standard_headers(body: bytes, secret: str, *, webhook_id: str | None = None, at: float | None = None) -> dict:
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    timestamp = str(int(at if at is not None else time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": webhook_id, "webhook-timestamp": timestamp, "Content-Type": "application/json",
            "webhook-signature": f"v1,{base64.b64encode(mac).decode()}"}


def test_standard_webhooks_good_tampered_stale_and_rotated(hosts: list[Host], emulator: Emulator) -> None:
    body = json.dumps(payload("standard-webhooks-contact-created.json")).encode()
    with httpx.Client(base_url=hosts[0].url, timeout=30) as sender, hosts[0].client() as api:  # anonymous sender
        target = start_labelled(api, "signed")
        tampered = sender.post("/api/hooks/standard", content=body.replace(b"John", b"Jane"),
                               headers=standard_headers(body, STANDARD_SECRETS[0]))
        stale = sender.post("/api/hooks/standard", content=body,
                            headers=standard_headers(body, STANDARD_SECRETS[0], at=time.time() - 600))
        foreign = sender.post("/api/hooks/standard", content=body,
                              headers=standard_headers(body, "whsec_" + base64.b64encode(b"x" * 32).decode()))
        for refused in (tampered, stale, foreign):
            assert refused.status_code == 401, refused.text[:300]
            assert not any(secret in refused.text for secret in STANDARD_SECRETS)
        assert status_of(api, target) != "Stopped"
        rotated = sender.post("/api/hooks/standard", content=body, headers=standard_headers(body, STANDARD_SECRETS[1]))
        assert rotated.status_code == 202, rotated.text[:300]
        wait_for(lambda: status_of(api, target) == "Stopped", "the signed scope stopped", timeout=WAIT, interval=0.25)


def github_headers(body: bytes, event: str, secret: str = GITHUB_SECRET) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={signature}", "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()), "Content-Type": "application/json"}


def test_github_signature_over_the_raw_bytes_ping_and_push(hosts: list[Host]) -> None:
    ping = json.dumps(payload("github-ping.json")).encode()
    push = json.dumps({"ref": "refs/heads/main", "repository": {"full_name": "contoso/models"},
                       "sender": {"login": "octocat"}}).encode()
    with httpx.Client(base_url=hosts[0].url, timeout=30) as sender, hosts[0].client() as api:
        target = start_labelled(api, "pushed")
        unsigned = sender.post("/api/hooks/github", content=push, headers={"X-GitHub-Event": "push"})
        assert unsigned.status_code == 401
        not_json = sender.post("/api/hooks/github", content=b"Hello, World!", headers=github_headers(
            b"Hello, World!", "push"))
        assert not_json.status_code == 400  # signed: read, then refused as JSON (the signature came first)
        pinged = sender.post("/api/hooks/github", content=ping, headers=github_headers(ping, "ping"))
        assert pinged.status_code == 200 and pinged.json()["events"][0]["outcome"] == "ignored", pinged.text[:300]
        pushed = sender.post("/api/hooks/github", content=push, headers=github_headers(push, "push"))
        assert pushed.status_code == 202, pushed.text[:300]
        wait_for(lambda: api.get(f"/api/sessions/{target}").json()["leaseMinutes"] == 120, "the lease extended",
                 timeout=WAIT, interval=0.25)
        events = api.get(f"/api/sessions/{target}/events").json()["events"]
        assert any(e["type"] == "extended" and e["actor"] == "hook:github" for e in events)


# -- chaos: a host killed, the table lost, between accepting and carrying out -----------------------------------------

def test_a_host_killed_after_accepting_and_the_table_lost_the_senders_retry_acts_once(
        emulator_process: Emulator) -> None:
    """Host A records a delivery and is killed (SIGKILL) before its queue function can carry it out; the history
    table is then deleted; Event Grid, having no answer it trusts, retries at host B. One session starts."""
    emulator_process.reset(startupSeconds=1)
    with running_azurite_with_queues() as azurite:
        table = f"c{uuid.uuid4().hex[:12]}"
        env = hooks_env(emulator_process, azurite, table)
        # Its queue function off (AzureWebJobs.<name>.Disabled, as in Azure): it dies with the delivery recorded
        # and queued, and not carried out.
        first = start_host({**env, "AzureWebJobs.CarryOutHookDelivery.Disabled": "true"}, "function_app",
                           "--no-timers")
        events = blob_created(blob="killed.arrAsset")
        try:
            with first.client() as client:
                assert grid(client, events).status_code == 202
        finally:
            first.process.send_signal(signal.SIGKILL)
            first.process.wait()
        TableServiceClient.from_connection_string(azurite.connection_string).delete_table(table)
        second = start_host(env, "function_app", "--no-timers")
        try:
            with second.client() as client:
                retry = wait_for(lambda: _answered(grid(client, events)), "a retry answered", timeout=WAIT, interval=0.5)
                assert retry.status_code in (200, 202)
                started = wait_for(lambda: sessions_labelled(client, blob="killed.arrAsset"), "the session started",
                                   timeout=WAIT, interval=0.25)
                time.sleep(3)  # both messages (the first host's and the retry's) have had their turn
                again = sessions_labelled(client, blob="killed.arrAsset")
                assert len(again) == len(started) == 1 and again[0]["id"].startswith("hook-")
        finally:
            stop(second.process)


def _answered(response: httpx.Response) -> httpx.Response | None:
    """A retry that the recreated table answers (a 503 while the store creates it again is a sender's retry)."""
    return response if response.status_code in (200, 202) else None
