"""Case 2: concurrent duplicate starts of one sessionId (no Idempotency-Key), spread over two hosts."""

from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from .conftest import Chaos


def test_concurrent_duplicate_starts_over_two_hosts_make_one_record_per_session(chaos: Chaos) -> None:
    """Defect 2: 10 concurrent starts of each of 20 session ids over two hosts wrote duplicate records (38 for 20
    sessions seen), which made history, usage and every cleanup report wrong.

    Asserted: all 200 answers are 202; ARR runs exactly the 20 sessions; history holds exactly one record per
    session, before and after one cleanup run."""
    hosts = [chaos.start_host(via_proxy=False), chaos.start_host(via_proxy=False)]
    clients = [chaos.client(host) for host in hosts]
    ids = [f"dup-{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(20)]
    calls = [(clients[n % 2], session_id) for session_id in ids for n in range(10)]

    def start(call: tuple[httpx.Client, str]) -> int:
        client, session_id = call
        return client.post("/api/sessions", json={"sessionId": session_id, "leaseMinutes": 30}).status_code

    with ThreadPoolExecutor(40) as pool:
        statuses = Counter(pool.map(start, calls))
    records = chaos.records_per_session()
    assert statuses == {202: 200}, statuses
    assert sorted(chaos.arr_sessions()) == sorted(ids)
    assert sum(records.values()) == 20 and records == dict.fromkeys(ids, 1), \
        f"{sum(records.values())} records for 20 sessions"
    cleanup = clients[0].post("/api/cleanup")
    assert cleanup.status_code == 200 and cleanup.json()["errors"] == []
    chaos.assert_invariants(arr_sessions=20)
