"""Case 7: details lost after crashes: a stop's reason, and keepAlive after the table (and the process) is lost."""

from __future__ import annotations

import json

import pytest

from .conftest import Chaos

REASON = "chaos: design review over"


@pytest.mark.parametrize("forward", [True, False], ids=["stop-reached-arr", "stop-never-arrived"])
def test_stop_reason_survives_a_crash_mid_stop(chaos: Chaos, forward: bool) -> None:
    """Defect 8: a host killed while ARR's :stop was on its way lost the stop's reason and its 'stopped' event
    (and, if the stop never reached ARR, the session ran on).

    Asserted (the :stop held at the emulator's proxy, the host killed, the request then forwarded or dropped):
    after one cleanup on another host the session is Stopped at ARR, its record has StopReason = the reason
    given, and exactly one 'stopped' event whose Detail carries the reason."""
    host_a = chaos.start_host()
    a = chaos.client(host_a)
    session_id = a.post("/api/sessions", json={"leaseMinutes": 60, "requestedBy": "alice"}).json()["id"]
    assert a.get(f"/api/sessions/{session_id}").json()["status"] == "Ready"
    chaos.crash_at("mid-stop", host_a, lambda: a.post(f"/api/sessions/{session_id}/stop", json={"reason": REASON}),
                   forward=forward)
    assert chaos.arr_sessions()[session_id] == ("Stopped" if forward else "Ready")
    b = chaos.client(chaos.start_host(via_proxy=False))
    report = b.post("/api/cleanup")
    assert report.status_code == 200 and report.json()["errors"] == [], report.text
    assert chaos.arr_sessions()[session_id] == "Stopped"
    record = chaos.record(session_id)
    assert record.get("StopReason") == REASON, record
    events = chaos.events("stopped", session_id)
    assert [REASON in json.loads(e["Detail"]).get("reason", "") for e in events] == [True], events
    chaos.assert_invariants(arr_sessions=1)


def test_keep_alive_survives_losing_the_table_and_the_process(chaos_own: Chaos) -> None:
    """Defect 8: sessions adopted after a storage loss lost keepAlive, so the nightly shutdown stopped a session a
    user had asked to keep (acknowledged with a 202).

    Asserted (keepAlive session started, then Azurite restarted in memory and the host replaced by a new process
    that remembers nothing): the nightly cleanup does not stop it (it stays Ready at ARR), while a session started
    directly at ARR after the table was recreated is stopped; one record per session."""
    a = chaos_own.client(chaos_own.start_host(via_proxy=False))
    keep = a.post("/api/sessions", json={"leaseMinutes": 60, "keepAlive": True, "requestedBy": "alice"})
    assert keep.status_code == 202
    keep_id = keep.json()["id"]
    chaos_own.kill(chaos_own.hosts[0])
    chaos_own.storage.restart()
    b = chaos_own.client(chaos_own.start_host(via_proxy=False))
    assert b.get("/api/health").status_code == 200  # history starts again here
    chaos_own.start_outside(["after-the-loss"])
    report = b.post("/api/cleanup", params={"mode": "nightly"})
    assert report.status_code == 200 and report.json()["errors"] == [], report.text
    assert keep_id not in {s["id"] for s in report.json()["stopped"]}
    assert chaos_own.arr_sessions() == {keep_id: "Ready", "after-the-loss": "Stopped"}
    chaos_own.assert_invariants(arr_sessions=2)


def test_keep_alive_and_requester_are_restored_when_the_table_is_lost_under_a_running_host(chaos_own: Chaos) -> None:
    """Defect 8 (and 1): the host process that acknowledged a keepAlive start survives the table's loss (Azurite
    restarted in memory): its next call must recreate the table and write back what it remembers.

    Asserted: the nightly cleanup on that host answers 200 and does not stop the session; its record is back with
    KeepAlive true and the original RequestedBy; one record per session."""
    http = chaos_own.client(chaos_own.start_host(via_proxy=False))
    keep = http.post("/api/sessions", json={"leaseMinutes": 60, "keepAlive": True, "requestedBy": "alice@contoso",
                                            "reason": "overnight bake"})
    assert keep.status_code == 202
    keep_id = keep.json()["id"]
    chaos_own.storage.restart()
    report = http.post("/api/cleanup", params={"mode": "nightly"})
    assert report.status_code == 200, report.text
    assert keep_id not in {s["id"] for s in report.json()["stopped"]}
    assert chaos_own.arr_sessions() == {keep_id: "Ready"}
    record = chaos_own.record(keep_id)
    assert (record.get("KeepAlive"), record.get("RequestedBy")) == (True, "alice@contoso")
    chaos_own.assert_invariants(arr_sessions=1)
