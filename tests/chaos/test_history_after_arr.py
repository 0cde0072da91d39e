"""Case 5: ARR created the session, and the history write that follows ARR's PUT failed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .conftest import POINTS, Chaos

SERVER_BUSY = b'{"odata.error":{"code":"ServerBusy","message":{"lang":"en-US","value":"The server is busy."}}}'


def test_start_names_the_session_when_the_record_update_after_arr_fails(chaos: Chaos) -> None:
    """Defect 5: when ARR had created the session but the history write after it failed, the caller got 503 "try
    again later", and a retry without a key started a second billed session; the record stayed "Requested".

    Asserted (the Table $batch after ARR's PUT fails with 503): the start answers 202 with the session's id and a
    Location to poll; after one cleanup the record is complete: Status equals ARR's (Ready, after start-up) and
    ReadyAt is set; one ARR session, one record."""
    chaos.emulator.control("POST", "config", {"startupSeconds": 10})
    http = chaos.client(chaos.start_host())
    _, method, path = POINTS["before-arr-put"]
    put = chaos.arr_proxy.hold(method, path)
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(http.post, "/api/sessions", json={"leaseMinutes": 30, "requestedBy": "flow"})
        put.wait_held()
        batch = chaos.table_proxy.fail("POST", r"/\$batch$", 503, SERVER_BUSY)  # every record write from now on
        put.release()
        started = answer.result(timeout=60)
    assert batch.acted >= 1, "no record write followed ARR's PUT"
    chaos.table_proxy.clear()
    [arr_id] = chaos.arr_sessions()
    assert started.status_code == 202, started.text
    assert started.json()["id"] == arr_id
    assert started.headers["Location"].split("?")[0].endswith(f"/api/sessions/{arr_id}/ready")

    chaos.emulator.advance(15)
    assert chaos.arr_sessions() == {arr_id: "Ready"}
    report = http.post("/api/cleanup")
    assert report.status_code == 200 and report.json()["errors"] == [], report.text
    record = chaos.record(arr_id)
    assert (record["Status"], record.get("ReadyAt") is not None) == ("Ready", True)
    chaos.assert_invariants(arr_sessions=1)
