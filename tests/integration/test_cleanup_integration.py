"""Cleanup, history and usage end to end: local host + ARR emulator + Azurite over real sockets."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from azure.data.tables import TableClient
from conftest import Azurite, Emulator, Host, azure_history
from polling import wait_for

from arr_core import AccountKeyCredential, ArrClient, RetryPolicy
from arr_core.domain.records import Event, SessionRecord


@pytest.fixture(scope="module")
def app_settings() -> dict[str, str]:
    return {"ARR_STOP_CONCURRENCY": "32", "ARR_RATE_STANDARD_PER_HOUR": "3.0", "ARR_STUCK_STARTING_MINUTES": "20",
            "ARR_CLEANUP_SCHEDULE": "0 0 0 1 1 *"}


@pytest.fixture
def http(app_host: Host, emulator: Emulator, table: TableClient) -> Iterator[httpx.Client]:
    for entity in table.query_entities("PartitionKey ne 'zzz'", select=["PartitionKey", "RowKey"]):
        table.delete_entity(entity["PartitionKey"], entity["RowKey"])
    with app_host.client() as client:
        yield client



def arr_client(emulator: Emulator) -> ArrClient:
    s = emulator.client_settings()
    http = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200))
    return ArrClient(s["endpoint"], s["account_id"], s["account_domain"], AccountKeyCredential(emulator.account_key),
                     sts_endpoint=s["sts_endpoint"], retry=RetryPolicy(), http_client=http)


async def start_outside(emulator: Emulator, ids: list[str], lease: int = 600) -> None:
    """Sessions started at ARR directly, as another tool (or a crash before our write) would leave them."""
    async with arr_client(emulator) as client:
        for chunk in range(0, len(ids), 200):
            await asyncio.gather(*(client.create_session(i, lease_minutes=lease) for i in ids[chunk:chunk + 200]))


def events_of(table: TableClient, kind: str) -> list[dict]:
    return [dict(e) for e in table.query_entities("Kind eq 'event' and Type eq @t", parameters={"t": kind})]


def test_nightly_stops_1000_sessions_except_keep_alive(http: httpx.Client, emulator: Emulator,
                                                       table: TableClient) -> None:
    """1000 active sessions: one RunCleanup in nightly mode adopts the unknown ones and stops all non-exempt."""
    emulator.reset(startupSeconds=0, pageSize=100)
    keep = [http.post("/api/sessions", json={"leaseMinutes": 60, "keepAlive": True}).json()["id"] for _ in range(3)]
    outside = [f"night-{i:04d}" for i in range(997)]
    asyncio.run(start_outside(emulator, outside))
    report = http.post("/api/cleanup", params={"mode": "nightly"}, timeout=600).json()
    assert report["mode"] == "nightly" and report["errors"] == []
    assert {s["id"] for s in report["stopped"]} == set(outside)
    assert {k["id"] for k in report["kept"]} == set(keep)
    assert len([r for r in report["reconciled"] if r["reason"] == "adopted into history"]) == 997
    statuses = Counter(s["status"] for s in emulator.state()["sessions"])
    assert statuses == {"Stopped": 997, "Ready": 3}
    assert len(events_of(table, "stopped")) == 997
    assert http.get("/api/sessions").json()["sessions"].__len__() == 3


def test_dry_run_decides_without_acting(http: httpx.Client, emulator: Emulator) -> None:
    """dryRun returns the decisions and changes nothing at ARR."""
    emulator.reset(startupSeconds=0)
    http.post("/api/sessions", json={"leaseMinutes": 60})
    report = http.post("/api/cleanup", params={"mode": "nightly", "dryRun": "true"}).json()
    assert report["dryRun"] is True and len(report["stopped"]) == 1
    assert [s["status"] for s in emulator.state()["sessions"]] == ["Ready"]
    assert emulator.state()["requests"]["stop"] == 0


def test_crash_between_arr_create_and_history_update_is_reconciled(http: httpx.Client, emulator: Emulator,
                                                                  azurite: Azurite, table_name: str,
                                                                  table: TableClient) -> None:
    """An intent written, ARR created, our update lost: the next run brings the record up to ARR's state."""

    async def crash_mid_start() -> None:
        store = azure_history(azurite.connection_string, table_name)
        now = datetime.now(UTC)
        await store.claim(SessionRecord("crashed", now, size="Standard", lease_minutes=30, requested_by="flow"),
                          Event("requested", now, to_status="Requested"))
        await store.aclose()
        await start_outside(emulator, ["crashed"], lease=30)

    asyncio.run(crash_mid_start())
    report = http.post("/api/cleanup").json()
    assert report["errors"] == [] and "crashed" in {k["id"] for k in report["kept"]}
    view = http.get("/api/history").json()["sessions"]
    assert [(v["id"], v["status"], v["requestedBy"]) for v in view] == [("crashed", "Starting", "flow")]


def test_sessions_ended_at_arr_are_closed_with_billed_minutes(http: httpx.Client, emulator: Emulator) -> None:
    """A session that expired unobserved is closed in history with its end time and ARR's billed minutes."""
    emulator.reset(startupSeconds=0)
    session_id = http.post("/api/sessions", json={"leaseMinutes": 5}).json()["id"]
    emulator.advance(6 * 60)
    report = http.post("/api/cleanup").json()
    assert report["reconciled"] == [{"id": session_id, "reason": "closed: ARR reports Expired, 5 billed minutes"}]
    [view] = http.get("/api/history").json()["sessions"]
    assert view["status"] == "Expired" and view["billedMinutes"] == 5 and view["endedAt"]


def test_stuck_starting_is_stopped_and_recorded(http: httpx.Client, emulator: Emulator, table: TableClient) -> None:
    """A session Starting for longer than the limit is stopped with the reason in its history."""
    emulator.reset(startupSeconds=3600)
    session_id = http.post("/api/sessions", json={"leaseMinutes": 30}).json()["id"]
    emulator.control("POST", f"sessions/{session_id}/backdate", {"seconds": 21 * 60})
    report = http.post("/api/cleanup").json()
    assert [s["id"] for s in report["stopped"]] == [session_id]
    [event] = events_of(table, "stopped")
    assert "stuck in Starting" in json.loads(event["Detail"])["reason"] and event["Actor"] == "cleanup"


def test_overlapping_runs_record_each_action_once(http: httpx.Client, emulator: Emulator, app_host: Host,
                                                  table: TableClient) -> None:
    """Timer and manual runs at once: one runs at a time (the others answer 409 with Retry-After, or run after
    it with nothing left to do); every session stopped once in history, adopted once, never corrupted."""
    emulator.reset(startupSeconds=0)
    ids = [f"overlap-{i}" for i in range(40)]
    asyncio.run(start_outside(emulator, ids))

    def manual(_: int) -> httpx.Response:
        return http.post("/api/cleanup", params={"mode": "nightly"}, timeout=300)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(manual, range(3)))
    assert {r.status_code for r in results} <= {200, 409}
    ran = [r for r in results if r.status_code == 200]
    busy = [r for r in results if r.status_code == 409]
    assert ran and all(r.headers["Retry-After"] and r.headers["content-type"].startswith("application/problem+json")
                       for r in busy)
    assert sorted(s["id"] for r in ran for s in r.json()["stopped"]) == sorted(ids)
    assert [e for r in ran for e in r.json()["errors"]] == []
    assert Counter(e["SessionId"] for e in events_of(table, "stopped")) == dict.fromkeys(ids, 1)
    assert Counter(e["SessionId"] for e in events_of(table, "adopted")) == dict.fromkeys(ids, 1)
    records = list(table.query_entities("Kind eq 'session'"))
    assert len(records) == 40 and {r["Status"] for r in records} == {"Stopped"}
    for r in records:  # event sequence numbers are gap-free: no event lost, none doubled
        seqs = sorted(e["Seq"] for e in table.query_entities(
            "Kind eq 'event' and SessionId eq @s", parameters={"s": r["SessionId"]}))
        assert seqs == list(range(1, r["EventCount"] + 1))
    runs = list(table.query_entities("Kind eq 'run'"))
    assert len(runs) == len(ran)


def test_history_pages_filters_and_tampered_tokens(http: httpx.Client, emulator: Emulator) -> None:
    """ListHistory pages with an opaque token; filters apply; an altered or foreign token is a 400."""
    for i in range(7):
        http.post("/api/sessions", json={"leaseMinutes": 10, "requestedBy": "alice" if i % 2 else "bob"})
    seen, url, pages = [], "/api/history?top=3", 0
    while url:
        page = http.get(url).json()
        seen += [s["id"] for s in page["sessions"]]
        url, pages = page["nextLink"], pages + 1
        assert url is None or url.startswith("http://127.0.0.1")
    assert len(seen) == 7 == len(set(seen)) and pages == 3
    alice = http.get("/api/history", params={"requestedBy": "alice"}).json()["sessions"]
    assert len(alice) == 3 and {s["requestedBy"] for s in alice} == {"alice"}
    first = http.get("/api/history", params={"top": 2}).json()
    token = first["nextLink"].split("continuationToken=")[1]
    raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw["d"] = raw["d"].replace('"p":"s-', '"p":"s-9')
    forged = base64.urlsafe_b64encode(json.dumps(raw).encode()).decode()
    for bad in (forged, "not-a-token", token[:-4]):
        r = http.get("/api/history", params={"top": 2, "continuationToken": bad})
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "continuationToken"
    other_query = http.get("/api/history", params={"top": 2, "requestedBy": "bob", "continuationToken": token})
    assert other_query.status_code == 400
    assert http.get("/api/history", params={"from": "yesterday"}).status_code == 400
    assert http.get("/api/history", params={"top": "0"}).status_code == 400


def test_usage_groups_billed_minutes_and_costs(http: httpx.Client, emulator: Emulator) -> None:
    """Billed minutes from Ready to the end, grouped; cost only where a rate is configured (Premium has none)."""
    emulator.reset(startupSeconds=0)
    a = http.post("/api/sessions", json={"leaseMinutes": 60, "requestedBy": "alice"}).json()["id"]
    b = http.post("/api/sessions", json={"leaseMinutes": 60, "requestedBy": "bob", "size": "Premium"}).json()["id"]
    emulator.advance(30 * 60)
    http.post(f"/api/sessions/{a}/stop")
    emulator.advance(15 * 60)
    http.post(f"/api/sessions/{b}/stop")
    by_size = http.get("/api/usage", params={"groupBy": "size"}).json()
    rows = {r["key"]: r for r in by_size["rows"]}
    assert rows["Standard"]["billedMinutes"] == 30 and rows["Standard"]["estimatedCost"] == 1.5
    assert rows["Premium"]["billedMinutes"] == 45 and rows["Premium"]["estimatedCost"] is None
    assert by_size["total"]["billedMinutes"] == 75 and by_size["total"]["estimatedCost"] is None
    assert by_size["currency"] == "USD"
    people = {r["key"]: r["billedMinutes"] for r in http.get("/api/usage", params={"groupBy": "requestedBy"})
              .json()["rows"]}
    assert people == {"alice": 30, "bob": 45}
    days = http.get("/api/usage").json()["rows"]
    assert sum(r["sessions"] for r in days) == 2
    assert http.get("/api/usage", params={"groupBy": "colour"}).status_code == 400


def test_timer_function_runs_the_cleanup(http: httpx.Client, emulator: Emulator, app_host: Host,
                                         table: TableClient) -> None:
    """The lease_cleanup timer, triggered like Core Tools' admin endpoint, writes a run record."""
    r = httpx.post(f"{app_host.url}/admin/functions/lease_cleanup", json={"input": ""},
                   headers={"x-functions-key": "test-master-key"})
    assert r.status_code == 202
    wait_for(lambda: list(table.query_entities("Kind eq 'run'")), "a run record", interval=0.1)
    assert len(list(table.query_entities("Kind eq 'run'"))) == 1
