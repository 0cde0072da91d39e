"""Warm pools over two real hosts on one table and the emulator: ten claims at once get two distinct sessions and
eight clear "Pool empty" answers; a host killed while it claims leaves no session claimed twice, and the pool
refills to its count."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from .conftest import Chaos

ALWAYS_OPEN = {"count": 2, "size": "Standard", "from": "00:00", "to": "00:00",
               "days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "timeZone": "UTC"}


def pool_settings(name: str) -> dict[str, str]:
    return {"ARR_POOLS": json.dumps([{**ALWAYS_OPEN, "name": name}])}


def claimed_records(chaos: Chaos, name: str) -> dict[str, str]:
    """Session id -> requester, for the pool's sessions that someone claimed."""
    return {r["SessionId"]: r["RequestedBy"] for r in chaos.records()
            if json.loads(r.get("Labels") or "{}").get("pool") == name and r["RequestedBy"] != f"pool:{name}"}


def test_ten_claims_over_two_hosts_get_two_sessions_and_eight_pool_empty(chaos: Chaos) -> None:
    chaos.emulator.reset(startupSeconds=0)
    name = f"p{uuid.uuid4().hex[:8]}"
    hosts = [chaos.start_host(via_proxy=False, **pool_settings(name)) for _ in range(2)]
    clients = [chaos.client(host) for host in hosts]
    assert clients[0].post("/api/cleanup").status_code == 200  # the pool fills
    (pool,) = clients[1].get("/api/pools").json()["pools"]
    assert (pool["name"], pool["open"], pool["ready"], pool["claimed"]) == (name, True, 2, 0), pool

    def claim(n: int) -> httpx.Response:
        return clients[n % 2].post(f"/api/pools/{name}/claim", json={"requestedBy": f"user{n}", "leaseMinutes": 30})

    with ThreadPoolExecutor(10) as workers:
        answers = list(workers.map(claim, range(10)))
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {200: 2, 409: 8}, [(a.status_code, a.text[:200]) for a in answers]
    won = {a.json()["id"]: a.json()["requestedBy"] for a in answers if a.status_code == 200}
    assert len(won) == 2 and all(a.json()["status"] == "Ready" for a in answers if a.status_code == 200)
    empty = [a for a in answers if a.status_code == 409]
    assert all(a.json()["title"] == "Pool empty" and a.headers["Retry-After"] == "60" for a in empty)
    assert claimed_records(chaos, name) == won  # history says who has each, once

    assert clients[1].post("/api/cleanup").status_code == 200  # the pool refills
    (pool,) = clients[0].get("/api/pools").json()["pools"]
    assert (pool["ready"], pool["claimed"]) == (2, 2), pool
    chaos.assert_invariants(arr_sessions=4)


def test_a_host_killed_while_it_claims_leaves_no_session_claimed_twice(chaos: Chaos) -> None:
    chaos.emulator.reset(startupSeconds=0)
    name = f"p{uuid.uuid4().hex[:8]}"
    doomed = chaos.start_host(via_proxy=False, **pool_settings(name))
    survivor = chaos.start_host(via_proxy=False, **pool_settings(name))
    client = chaos.client(survivor)
    assert client.post("/api/cleanup").status_code == 200
    doomed_client = chaos.client(doomed, timeout=5)

    def claim_on_doomed(n: int) -> int:
        try:
            return doomed_client.post(f"/api/pools/{name}/claim", json={"requestedBy": f"gone{n}"}).status_code
        except httpx.HTTPError:
            return 0

    with ThreadPoolExecutor(4) as workers:
        pending = [workers.submit(claim_on_doomed, n) for n in range(3)]
        chaos.kill(doomed)
        [f.result() for f in pending]
    answers = [client.post(f"/api/pools/{name}/claim", json={"requestedBy": f"user{n}"}) for n in range(3)]
    claimed = claimed_records(chaos, name)
    got = [a.json()["id"] for a in answers if a.status_code == 200]
    assert len(got) == len(set(got)) and not set(got) & {s for s, who in claimed.items() if who.startswith("gone")}
    assert len(claimed) <= 2 and len(set(claimed)) == len(claimed)
    assert all(a.status_code in (200, 409) for a in answers), [(a.status_code, a.text[:200]) for a in answers]
    assert client.post("/api/cleanup").status_code == 200  # refilled to two unclaimed, whatever the kill cut short
    (pool,) = client.get("/api/pools").json()["pools"]
    assert pool["ready"] == 2 and pool["claimed"] == len(claimed), pool
    chaos.assert_invariants(arr_sessions=2 + len(claimed))
