"""Case 3: an Idempotency-Key can't die: crashes after the key claim and before ARR's PUT, a refused first call,
and a key reused after its 24 h."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from conftest import azure_history

from arr_core.domain.records import Event, SessionRecord

from .conftest import Chaos, follow, is_problem

BODY = {"leaseMinutes": 30, "requestedBy": "flow@contoso", "reason": "chaos"}


def key_header() -> dict[str, str]:
    return {"Idempotency-Key": f"chaos-{uuid.uuid4()}"}


def assert_ends_ready(chaos: Chaos, client: httpx.Client, answer: httpx.Response) -> str:
    """202 naming a session that is not over, then 200 Ready by polling like a Logic App; returns its id."""
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] not in ("Error", "Stopped", "Expired"), answer.json()
    ready, polls = follow(client, answer, chaos.emulator, pause=1.0)
    assert ready.status_code == 200, f"after {polls} polls: {ready.status_code} {ready.text[:300]}"
    assert ready.json()["status"] == "Ready" and ready.json()["id"] == answer.json()["id"]
    return answer.json()["id"]


def age_intent(chaos: Chaos, intent: dict[str, Any], minutes: int) -> None:
    """Make the crash's intent look ``minutes`` old: its record, index and events are written again as of that
    time, by the app's own HistoryStore (a record's creation time is part of its key); the key's row is
    backdated likewise."""
    created = datetime.now(UTC) - timedelta(minutes=minutes)
    with chaos.table as table:
        for entity in table.query_entities("PartitionKey eq 'id' or Kind eq 'session' or Kind eq 'event'"):
            table.delete_entity(entity["PartitionKey"], entity["RowKey"])
    [idem] = chaos.entities("PartitionKey eq 'idem'")
    chaos.rewrite(idem, CreatedAt=created)
    record = SessionRecord(session_id=intent["SessionId"], created_at=created, size=intent["Size"],
                           lease_minutes=intent["LeaseMinutes"], requested_by=intent.get("RequestedBy"),
                           reason=intent.get("Reason"), idempotency_key=intent.get("IdempotencyKey"))

    async def write() -> None:
        store = azure_history(chaos.storage.connection_string, chaos.table_name)
        try:
            await store.claim(record, Event("requested", created, to_status="Requested"))
        finally:
            await store.aclose()

    asyncio.run(write())


def test_key_survives_a_crash_after_the_key_claim(chaos: Chaos) -> None:
    """Defect 3a: a host killed after the key's row was inserted, before the intent record, left the key bound to
    a session nobody started: every retry got 202 "Starting" and /ready answered 404 forever.

    Asserted: the same request with the same key on another host answers 202 and polling ends 200 Ready; ARR runs
    one session and history holds one record (after one cleanup)."""
    host_a = chaos.start_host()
    a = chaos.client(host_a)
    key = key_header()
    chaos.crash_at("after-key-claim", host_a, lambda: a.post("/api/sessions", json=BODY, headers=key))
    assert chaos.entities("PartitionKey eq 'idem'") != [] and chaos.arr_sessions() == {}
    b = chaos.client(chaos.start_host(via_proxy=False))
    assert_ends_ready(chaos, b, b.post("/api/sessions", json=BODY, headers=key))
    assert b.post("/api/cleanup").status_code == 200
    chaos.assert_invariants(arr_sessions=1)


@pytest.mark.parametrize("closed_by_cleanup", [False, True], ids=["retried", "retried-after-cleanup-closed-it"])
def test_key_survives_a_crash_before_arr_was_asked(chaos: Chaos, closed_by_cleanup: bool) -> None:
    """Defect 3b: a host killed after the intent record, before ARR's PUT: retries got 202 "Starting" for 10
    minutes (ARR never asked), then the cleanup closed the record and every retry got 202 with status "Error".

    Asserted: a retry with the key on another host ends 200 Ready (one ARR session, one record). When the cleanup
    has meanwhile closed the never-created record (made 11 minutes old first), the retry still ends Ready, or is a
    4xx problem whose detail says why: never a 202 "Error"."""
    host_a = chaos.start_host()
    a = chaos.client(host_a)
    key = key_header()
    chaos.crash_at("before-arr-put", host_a, lambda: a.post("/api/sessions", json=BODY, headers=key))
    [intent] = chaos.records()
    assert intent["Status"] == "Requested" and chaos.arr_sessions() == {}
    b = chaos.client(chaos.start_host(via_proxy=False))
    if closed_by_cleanup:
        age_intent(chaos, intent, minutes=11)
        report = b.post("/api/cleanup")
        assert report.status_code == 200, report.text
        assert chaos.record(intent["SessionId"])["Status"] != "Requested", report.text  # closed: ARR never knew it
    retry = b.post("/api/sessions", json=BODY, headers=key)
    if closed_by_cleanup and 400 <= retry.status_code < 500:
        assert is_problem(retry) and retry.json().get("detail"), retry.text
        return
    assert_ends_ready(chaos, b, retry)
    assert b.post("/api/cleanup").status_code == 200
    chaos.assert_invariants(arr_sessions=1)


def test_key_of_a_refused_first_call_stays_usable(chaos: Chaos) -> None:
    """Defect 3c: a first call with a key that failed after the key was bound (here: ARR refused the create with
    400) left the key bound to a dead session: the retry got 202 "Error" and /ready 409, forever.

    Asserted: a first call refused by our policy (leaseMinutes above ARR_MAX_LEASE_MINUTES) is a 400 naming the
    field and leaves the key free: the same key with a valid body is accepted. A first call ARR refuses (400, once)
    answers 4xx problem+json saying why; the retry with the same key and body answers 202 and ends Ready."""
    b = chaos.client(chaos.start_host(via_proxy=False, ARR_MAX_LEASE_MINUTES="120"))
    key = key_header()
    too_long = b.post("/api/sessions", json={**BODY, "leaseMinutes": 500}, headers=key)
    assert too_long.status_code == 400 and too_long.json()["errors"][0]["field"] == "leaseMinutes"
    first = assert_ends_ready(chaos, b, b.post("/api/sessions", json=BODY, headers=key))

    key = key_header()
    chaos.emulator.fault(operations=["create"], status=400, count=1)
    refused = b.post("/api/sessions", json=BODY, headers=key)
    assert refused.status_code == 400 and is_problem(refused) and refused.json().get("detail"), refused.text
    second = assert_ends_ready(chaos, b, b.post("/api/sessions", json=BODY, headers=key))
    assert second != first
    assert b.post("/api/cleanup").status_code == 200
    chaos.assert_invariants(arr_sessions=2)


def test_key_used_more_than_24_hours_ago_starts_a_new_session(chaos: Chaos) -> None:
    """Defect 3d: the session id was derived from the key, so a key reused after 25 h answered with the old,
    Stopped session (or a 409) instead of starting a new one.

    Asserted: after the first session was stopped and the key's row backdated by 25 h, the same key starts a new
    session (another id) that ends Ready, and the first stays Stopped."""
    b = chaos.client(chaos.start_host(via_proxy=False))
    key = key_header()
    first = assert_ends_ready(chaos, b, b.post("/api/sessions", json=BODY, headers=key))
    assert b.post(f"/api/sessions/{first}/stop", json={"reason": "done"}).status_code == 200
    row = hashlib.sha256(key["Idempotency-Key"].encode()).hexdigest()
    [idem] = chaos.entities("PartitionKey eq 'idem' and RowKey eq @r", r=row)
    chaos.rewrite(idem, CreatedAt=idem["CreatedAt"] - timedelta(hours=25))
    again = b.post("/api/sessions", json=BODY, headers=key)
    assert again.status_code == 202 and again.json()["id"] != first, again.text
    assert_ends_ready(chaos, b, again)
    assert chaos.arr_sessions()[first] == "Stopped"
    assert b.post("/api/cleanup").status_code == 200
    chaos.assert_invariants(arr_sessions=2)
