"""The audit trail over real sockets: a session's events, the cleanup runs, and who stopped a session and why."""

from __future__ import annotations

import httpx

from conftest import Emulator


def test_a_sessions_events_say_who_changed_it_when_and_why(http: httpx.Client, emulator: Emulator) -> None:
    session_id = http.post("/api/sessions", json={"leaseMinutes": 30, "requestedBy": "ana",
                                                  "reason": "review"}).json()["id"]
    emulator.advance(10)
    assert http.get(f"/api/sessions/{session_id}").json()["status"] == "Ready"
    stopped = http.post(f"/api/sessions/{session_id}/stop", json={"reason": "done for today"}).json()
    assert (stopped["reason"], stopped["stopReason"], stopped["stoppedBy"]) == ("review", "done for today", None)
    events = http.get(f"/api/sessions/{session_id}/events").json()
    assert events["sessionId"] == session_id
    trail = [(e["seq"], e["type"], e["fromStatus"], e["toStatus"], e["actor"]) for e in events["events"]]
    assert trail[0] == (1, "requested", None, "Requested", "ana")
    assert [(t[2], t[3]) for t in trail if t[1] == "status"] == [
        ("Requested", "Starting"), ("Starting", "Ready"), ("Ready", "Stopped")], trail
    assert [t[0] for t in trail] == list(range(1, len(trail) + 1))
    assert (trail[-1][1], events["events"][-1]["detail"]["reason"]) == ("stopped", "done for today")
    missing = http.get("/api/sessions/no-such-session/events")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")


def test_cleanup_runs_are_listed_newest_first_with_what_they_stopped(http: httpx.Client, emulator: Emulator) -> None:
    ids = [http.post("/api/sessions", json={"leaseMinutes": 60}).json()["id"] for _ in range(2)]
    first = http.post("/api/cleanup").json()  # lease mode: nothing due
    nightly = http.post("/api/cleanup", params={"mode": "nightly"}).json()
    assert sorted(a["id"] for a in nightly["stopped"]) == sorted(ids)
    for session_id in ids:
        view = http.get(f"/api/sessions/{session_id}").json()
        assert (view["status"], view["stoppedBy"]) == ("Stopped", "nightly")
    page = http.get("/api/cleanup/runs", params={"top": 1}).json()
    [newest] = page["runs"]
    assert (newest["ranAt"], newest["mode"]) == (nightly["ranAt"], "nightly")
    assert sorted(a["id"] for a in newest["stopped"]) == sorted(ids)
    older = http.get(page["nextLink"]).json()["runs"]
    assert older[0]["ranAt"] == first["ranAt"] and older[0]["stopped"] == []
    assert http.get("/api/cleanup/runs", params={"top": "0"}).status_code == 400
