"""A start whose ARR call failed without a clear answer, over real sockets: the caller is told which session to
poll, so a retry cannot start a second one. (Hostile input as such: tests/test_input_hardening.py.)"""

from __future__ import annotations

import uuid

from conftest import Azurite, Emulator, function_app_env, start_host, stop


def assert_problem(r, status: int) -> None:  # noqa: ANN001
    assert r.status_code == status, r.text[:300]
    assert r.headers["content-type"].startswith("application/problem+json")


def test_a_start_arr_left_unanswered_names_the_session_to_poll(emulator: Emulator, azurite: Azurite) -> None:
    """ARR failed on create after retries (it may or may not have created the session): 502 problem with the
    sessionId and a Location to poll, so a retry polls instead of starting a second session."""
    env = function_app_env(emulator, azurite, f"u{uuid.uuid4().hex[:10]}", ARR_REQUEST_TIMEOUT_SECONDS="5")
    host = start_host(env, "function_app", "--no-timers")
    try:
        emulator.fault(operations=["create"], status=500, count=-1)
        with host.client() as client:
            r = client.post("/api/sessions", json={"leaseMinutes": 5})
            assert_problem(r, 502)
            session_id = r.json()["sessionId"]
            assert r.headers["Location"].endswith(f"/api/sessions/{session_id}/ready") and r.headers["Retry-After"]
            emulator.control("DELETE", "faults")
            polled = client.get(r.headers["Location"])
            assert polled.status_code in (200, 202) and polled.json()["id"] == session_id
    finally:
        stop(host.process)
