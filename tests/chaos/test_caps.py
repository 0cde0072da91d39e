"""Caps over two real hosts on one table: 20 concurrent starts by one requester against a cap of 3 give exactly 3
sessions and 17 refusals that name the cap; a host killed while it holds the admission frees it by itself."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx

from arr_core.store.entities import lease_entity

from .conftest import Chaos


def test_twenty_starts_over_two_hosts_against_a_cap_of_three(chaos: Chaos) -> None:
    chaos.emulator.reset(startupSeconds=0)
    hosts = [chaos.start_host(via_proxy=False, ARR_MAX_SESSIONS_PER_REQUESTER="3") for _ in range(2)]
    clients = [chaos.client(host) for host in hosts]
    requester = f"ana-{uuid.uuid4().hex[:6]}"

    def start(n: int) -> httpx.Response:
        return clients[n % 2].post("/api/sessions", json={"leaseMinutes": 30, "requestedBy": requester})

    with ThreadPoolExecutor(20) as workers:
        answers = list(workers.map(start, range(20)))
    assert Counter(a.status_code for a in answers) == {202: 3, 409: 17}, [(a.status_code, a.text[:160])
                                                                          for a in answers]
    refusals = [a.json() for a in answers if a.status_code == 409]
    assert all(r["title"] == "Cap reached" and r["detail"].startswith("ARR_MAX_SESSIONS_PER_REQUESTER: ")
               and f"{requester} has 3 active sessions" in r["detail"] for r in refusals), refusals[0]
    assert all(r["errors"] == [{"field": "requestedBy", "message": r["detail"]}] for r in refusals)
    other = clients[0].post("/api/sessions", json={"leaseMinutes": 30, "requestedBy": "bo"})
    assert other.status_code == 202  # the cap is per requester
    chaos.assert_invariants(arr_sessions=4)


def test_an_admission_held_by_a_killed_host_is_freed_by_itself(chaos: Chaos) -> None:
    chaos.emulator.reset(startupSeconds=0)
    doomed = chaos.start_host(via_proxy=False, ARR_MAX_SESSIONS="5")
    survivor = chaos.client(chaos.start_host(via_proxy=False, ARR_MAX_SESSIONS="5"))
    first = survivor.post("/api/sessions", json={"leaseMinutes": 30, "requestedBy": "ana"})
    assert first.status_code == 202  # (and the table exists)
    chaos.table.upsert_entity(lease_entity("admission", "admit-doomed", datetime.now(UTC) + timedelta(seconds=8)))
    chaos.kill(doomed)  # as if it died holding the admission for 8 more seconds
    began = time.monotonic()
    answer = survivor.post("/api/sessions", json={"leaseMinutes": 30, "requestedBy": "ana"})
    waited = time.monotonic() - began
    assert answer.status_code == 202, answer.text[:300]
    assert 4 < waited < 20, waited  # it waited for the dead holder's lease to run out, not for ever
    chaos.assert_invariants(arr_sessions=2)
