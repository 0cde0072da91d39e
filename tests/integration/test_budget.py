"""The budget over real sockets (devhost, the emulator, Azurite): crossed while sessions run, the first cleanup run
that sees it stops every session not kept alive and the app refuses new starts, on a second host too (each host
reads the spend at most once a minute: this one had not read it before)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from conftest import Azurite, Emulator, Host, function_app_env, start_host, stop

BUDGET = {"amount": 20, "timeZone": "UTC", "thresholds": [{"percent": 50, "action": "notify"},
                                                          {"percent": 100, "action": "stop-all"}]}


@pytest.fixture(scope="module")
def budget_hosts(emulator_process: Emulator, azurite: Azurite) -> Iterator[list[Host]]:
    env = function_app_env(emulator_process, azurite, f"b{uuid.uuid4().hex[:10]}", ARR_BUDGET=json.dumps(BUDGET),
                           ARR_RATE_STANDARD_PER_HOUR="6", ARR_RATE_PREMIUM_PER_HOUR="20")
    hosts = [start_host(env, "function_app", "--no-timers") for _ in range(2)]
    yield hosts
    for host in hosts:
        stop(host.process)


def test_a_budget_crossed_stops_what_is_not_kept_within_one_run_and_refuses_starts(
        budget_hosts: list[Host], emulator: Emulator) -> None:
    emulator.reset(startupSeconds=0)
    one, two = budget_hosts
    with one.client() as client, two.client() as other:
        premium = client.post("/api/sessions", json={"size": "Premium", "leaseMinutes": 240}).json()["id"]
        kept = client.post("/api/sessions", json={"leaseMinutes": 240, "keepAlive": True}).json()["id"]
        before = client.get("/api/budget").json()
        assert (before["spent"], before["refusingStarts"], before["month"][:4]) == (0.0, False, before["month"][:4])
        emulator.advance(30 * 60)  # Premium 30 min at 20/h = 10.00, Standard 3.00: 65%, notify only
        report = client.post("/api/cleanup").json()
        assert report["stopped"] == []
        assert client.get("/api/budget").json()["thresholds"][0]["crossed"] is True
        emulator.advance(17 * 60)  # 47 minutes: 15.67 + 4.70 = 20.37 of 20, past 100%
        client.post("/api/cleanup")  # the cleanup brings the minutes up to date; the budget acts in the same run
        states = {s: client.get(f"/api/sessions/{s}").json() for s in (premium, kept)}
        assert states[premium]["status"] == "Stopped" and states[premium]["stoppedBy"] == "budget"
        assert states[premium]["stopReason"].startswith("budget: the budget's 100% threshold (stop-all) is crossed")
        assert states[kept]["status"] == "Ready"
        refused = other.post("/api/sessions", json={"leaseMinutes": 30})  # the other host too (its first read)
        assert refused.status_code == 409 and refused.json()["title"] == "Budget exceeded", refused.text[:300]
        view = other.get("/api/budget").json()
        assert view["refusingStarts"] is True and view["percent"] >= 100
        assert [t["crossed"] for t in view["thresholds"]] == [True, True]
