"""Quotas over real hosts on one table (issue 22): a quota made through the API, then 20 concurrent starts by its
requester over two hosts, each asking for 60 of its 180 minutes, give exactly 3 sessions and 17 refusals that name
the quota; a quota lowered below what a scope has used makes the cleanup stop the scope's running sessions; and the
quotas' own operations (list, top-up, delete, the refusals of bad input) over HTTP."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from .conftest import Chaos


def make_quota(client: httpx.Client, requester: str, minutes: int, **fields: object) -> dict[str, object]:
    made = client.post("/api/quotas", json={"minutes": minutes, "period": "week", "timeZone": "Europe/Berlin",
                                            "requestedBy": requester, **fields})
    assert made.status_code == 201, made.text
    assert made.headers["Location"].endswith(f"/api/quotas/{made.json()['id']}")
    return made.json()


def test_twenty_starts_over_two_hosts_against_a_quota_that_allows_three(chaos: Chaos) -> None:
    chaos.emulator.reset(startupSeconds=0)
    hosts = [chaos.start_host(via_proxy=False) for _ in range(2)]
    clients = [chaos.client(host) for host in hosts]
    requester = f"ana-{uuid.uuid4().hex[:6]}"
    quota = make_quota(clients[1], requester, 180)

    def start(n: int) -> httpx.Response:
        return clients[n % 2].post("/api/sessions", json={"leaseMinutes": 60, "requestedBy": requester})

    with ThreadPoolExecutor(20) as workers:
        answers = list(workers.map(start, range(20)))
    assert Counter(a.status_code for a in answers) == {202: 3, 409: 17}, [(a.status_code, a.text[:200])
                                                                          for a in answers]
    refusals = [a.json() for a in answers if a.status_code == 409]
    assert all(r["title"] == "Quota exceeded" and r["detail"].startswith(f"quota {quota['id']} (requestedBy "
                                                                        f"{requester}: 180 minutes a week")
               and r["detail"].endswith(" 0 left of 180; 60 more minutes do not fit")
               and sum(int(n) for n in re.findall(r"(\d+) (?:used|committed)", r["detail"])) == 180
               for r in refusals), refusals[0]
    assert all(r["errors"] == [{"field": "leaseMinutes", "message": r["detail"]}] for r in refusals)
    listed = {q["id"]: q for q in clients[0].get("/api/quotas").json()["quotas"]}
    assert (listed[quota["id"]]["used"] + listed[quota["id"]]["committed"], listed[quota["id"]]["left"]) == (180, 0)
    other = clients[0].post("/api/sessions", json={"leaseMinutes": 60, "requestedBy": "bo"})
    assert other.status_code == 202  # another requester's scope
    chaos.assert_invariants(arr_sessions=4)


def test_a_quota_lowered_below_use_stops_the_scopes_running_sessions_at_the_next_cleanup(chaos: Chaos) -> None:
    chaos.emulator.reset(startupSeconds=0)
    client = chaos.client(chaos.start_host(via_proxy=False))
    requester = f"team-{uuid.uuid4().hex[:6]}"
    make_quota(client, requester, 600)
    ids = []
    for who in (requester, requester, "bo"):
        started = client.post("/api/sessions", json={"leaseMinutes": 30, "requestedBy": who})
        assert started.status_code == 202, started.text
        ids.append(started.json()["id"])
    for session_id in ids:  # Ready, and seen Ready by history
        assert client.get(f"/api/sessions/{session_id}/ready").status_code == 200
    time.sleep(1.5)  # each has run into its first billed minute
    assert client.post("/api/cleanup").json()["stopped"] == []  # 2 used, 58 committed of 600
    lowered = make_quota(client, requester, 1, reason="lowered below use")
    report = client.post("/api/cleanup")
    assert report.status_code == 200, report.text
    stopped = {a["id"]: a["reason"] for a in report.json()["stopped"]}
    reason = f"quota {lowered['id']} reached: 2 of 1 minutes used this week (requestedBy {requester})"
    assert stopped == {ids[0]: reason, ids[1]: reason}
    assert [chaos.arr_sessions()[i] for i in ids] == ["Stopped", "Stopped", "Ready"]
    for session_id in ids[:2]:
        events = [e["type"] for e in client.get(f"/api/sessions/{session_id}/events").json()["events"]]
        assert events.index("quota-reached") < events.index("stopped"), events
        assert chaos.record(session_id)["StopReason"] == reason
    refused = client.post("/api/sessions", json={"leaseMinutes": 1, "requestedBy": requester})
    assert refused.status_code == 409 and refused.json()["title"] == "Quota exceeded"
    chaos.assert_invariants(arr_sessions=3)


def test_the_quotas_operations_over_http(chaos: Chaos) -> None:
    client = chaos.client(chaos.start_host(via_proxy=False))
    made = make_quota(client, "carla", 120, reason="pilot")
    assert (made["allowance"], made["used"], made["left"], made["reached"]) == (120, 0, 120, False)
    assert made["periodStart"].endswith(("T00:00:00+01:00", "T00:00:00+02:00"))  # Monday 00:00 Berlin time
    topped = client.post(f"/api/quotas/{made['id']}/top-up",
                         json={"minutes": 30, "requestedBy": "admin", "reason": "demo day"})
    assert topped.status_code == 200, topped.text
    assert (topped.json()["allowance"], [t["requestedBy"] for t in topped.json()["topUps"]]) == (150, ["admin"])
    assert [q["id"] for q in client.get("/api/quotas").json()["quotas"]] == [made["id"]]
    both = client.post("/api/quotas", json={"minutes": 5, "period": "week", "requestedBy": "a", "labels": {"t": "1"}})
    assert both.status_code == 400 and "requestedBy or labels" in both.text
    zone = client.post("/api/quotas", json={"minutes": 5, "period": "week", "timeZone": "Europe/Berlinn",
                                            "requestedBy": "a"})
    assert zone.status_code == 400 and zone.json()["errors"][0]["field"] == "timeZone"
    assert client.delete(f"/api/quotas/{made['id']}").json()["reason"] == "pilot"
    gone = client.delete(f"/api/quotas/{made['id']}")
    assert (gone.status_code, gone.json()["title"]) == (404, "Quota not found")
    assert client.post(f"/api/quotas/{made['id']}/top-up", json={"minutes": 1, "requestedBy": "x"}).status_code == 404
    assert client.get("/api/quotas").json() == {"quotas": []}
