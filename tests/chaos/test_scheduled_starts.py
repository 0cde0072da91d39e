"""Case 12: a scheduled start (issue 21) across two hosts: two ticks of the same occurrence at once, and a host
killed in the middle of one. Each occurrence makes exactly one ARR session and one history record.

The schedule is made through the API and then backdated in the table (saved yesterday), so that today's occurrence
is due at once: its create-at time (Ready-by minus the default lead of 11 minutes) a few minutes ago, after the save
and within the 30 minute grace. Each host's tick rides on its ``POST /api/cleanup``.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from polling import wait_for

from .conftest import Chaos, background

EVERY_DAY = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def due_schedule(chaos: Chaos, client: httpx.Client) -> str:
    """A schedule whose occurrence today is due now; the id of the session that occurrence has."""
    target = datetime.fromtimestamp(math.ceil(datetime.now(UTC).timestamp() / 60) * 60, UTC) + timedelta(minutes=5)
    made = client.post("/api/schedules", json={"timeZone": "UTC", "readyBy": f"{target:%H:%M}", "durationMinutes": 30,
                                               "weekdays": EVERY_DAY, "requestedBy": "chaos"})
    assert made.status_code == 201, made.text[:300]
    schedule_id = made.json()["id"]
    [row] = chaos.entities("PartitionKey eq 'schedule' and RowKey eq @id", id=schedule_id)
    chaos.rewrite(row, CreatedAt=datetime.now(UTC) - timedelta(days=1))  # saved yesterday
    return f"sched-{schedule_id[4:]}-{target:%Y%m%d}"


def expire_the_tick_lease(chaos: Chaos) -> None:
    """The schedules' lease runs out under its holder (a slow tick, or a host that died holding it)."""
    [lease] = chaos.wait_for("PartitionKey eq 'lease' and RowKey eq 'schedules'")
    chaos.rewrite(lease, Until=datetime.now(UTC) - timedelta(minutes=1))


def tick(client: httpx.Client, done: list[int]) -> threading.Thread:
    return background(lambda: done.append(client.post("/api/cleanup", timeout=90).status_code))


def assert_one_session(chaos: Chaos, session_id: str) -> None:
    assert chaos.arr_sessions() == {session_id: "Ready"}  # the emulator starts at once here
    assert chaos.records_per_session() == {session_id: 1}
    assert len(chaos.events("requested", session_id)) == 1
    assert chaos.record(session_id)["Status"] == "Ready"
    chaos.assert_invariants(arr_sessions=1)


def test_two_hosts_ticking_the_same_occurrence_at_once_make_one_session(chaos: Chaos) -> None:
    """Host A's tick holds the lease and its ARR create is held on the way; the lease runs out; host B's tick takes
    it, finds A's intent (older than 5 s, so a start cut short to B) and sends its own create of the same session
    id. Both creates then reach ARR together: one session (ARR's 201 and its same-settings 200), one record, one
    'requested' event; later ticks on both hosts start nothing."""
    hosts = [chaos.start_host(), chaos.start_host()]
    a, b = (chaos.client(h, timeout=90) for h in hosts)
    session_id = due_schedule(chaos, a)
    creates = chaos.arr_proxy.hold("PUT", rf"/sessions/{session_id}$", times=None)
    done: list[int] = []
    first = tick(a, done)
    creates.wait_held()
    expire_the_tick_lease(chaos)
    time.sleep(6)  # A's intent is now a start cut short, which B drives again
    second = tick(b, done)
    wait_for(lambda: creates.acted >= 2, "host B's create held beside host A's", timeout=30, interval=0.05)
    creates.release()
    creates.wait_done(2)
    first.join(60)
    second.join(60)
    assert done == [200, 200], done
    assert creates.seen == 2  # each host asked ARR once
    for client in (a, b, a):
        assert client.post("/api/cleanup").status_code == 200
    assert creates.seen == 2  # the later ticks asked nothing
    assert_one_session(chaos, session_id)


@pytest.mark.parametrize("arrives", [False, True], ids=["create-lost", "create-arrives"])
def test_a_host_killed_during_a_scheduled_start_leaves_one_session(chaos: Chaos, arrives: bool) -> None:
    """Host A is killed with its tick's create on the way to ARR (then lost, or arriving after the kill), holding
    the schedules' lease. Once the lease runs out, host B's tick finishes the occurrence: the same session id, one
    ARR session, one record."""
    hosts = [chaos.start_host(), chaos.start_host()]
    a, b = (chaos.client(h, timeout=90) for h in hosts)
    session_id = due_schedule(chaos, a)
    chaos.crash_at("before-arr-put", hosts[0], lambda: a.post("/api/cleanup", timeout=90), forward=arrives)
    assert chaos.arr_sessions() == ({session_id: "Ready"} if arrives else {})
    expire_the_tick_lease(chaos)
    time.sleep(6)  # the intent A left is older than 5 s: a start cut short
    assert b.post("/api/cleanup").status_code == 200
    assert b.post("/api/cleanup").status_code == 200
    assert_one_session(chaos, session_id)
