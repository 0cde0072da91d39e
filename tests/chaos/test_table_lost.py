"""Case 1: the history table is lost (deleted, or Azurite restarted in memory), or has never existed."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from .conftest import Chaos

LOSSES: dict[str, Callable[[Chaos], None]] = {
    "table deleted": lambda chaos: chaos.delete_table(),
    "Azurite restarted in memory": lambda chaos: chaos.storage.restart(),
}
RAN = "run record written"


@pytest.mark.parametrize("loss", list(LOSSES))
def test_each_route_works_on_its_first_call_after_the_table_is_lost(chaos_own: Chaos, loss: str) -> None:
    """Defect 1: once the table was gone, start, history and cleanup answered 503 on every call until the process
    restarted ('TableNotFound' was never recognised), GET of a session this process had written (stale ETag)
    answered 500, and health said history "ok" while calls failed.

    Asserted, losing the table again before each call, in one host process: GET of a session started before the
    loss 200, start 202, history 200, usage 200, cleanup 200, the lease_cleanup timer writes its run record, and
    health answers 200 "ok" only when the next call (history) then succeeds."""
    chaos_own.emulator.control("POST", "config", {"startupSeconds": 10})
    host = chaos_own.start_host(via_proxy=False)
    http = chaos_own.client(host)
    before = http.post("/api/sessions", json={"leaseMinutes": 30, "requestedBy": "before-the-loss"})
    assert before.status_code == 202, before.text
    old_id = before.json()["id"]
    assert http.get(f"/api/sessions/{old_id}").json()["status"] == "Starting"  # the process holds its ETag

    def get_after_ready() -> httpx.Response:  # Starting -> Ready: a change to write, with the stale ETag
        chaos_own.emulator.advance(15)
        return http.get(f"/api/sessions/{old_id}")

    lose = LOSSES[loss]
    routes: dict[str, Callable[[], httpx.Response]] = {
        "get": get_after_ready,
        "start": lambda: http.post("/api/sessions", json={"leaseMinutes": 30}),
        "history": lambda: http.get("/api/history"),
        "usage": lambda: http.get("/api/usage"),
        "cleanup": lambda: http.post("/api/cleanup"),
    }
    outcome: dict[str, object] = {}
    for name, call in routes.items():
        lose(chaos_own)
        outcome[name] = call().status_code
    lose(chaos_own)
    assert chaos_own.run_timer(host).status_code == 202
    outcome["timer"] = RAN if chaos_own.wait_for("Kind eq 'run'") else "no run record"
    lose(chaos_own)
    health = http.get("/api/health")
    outcome["health"] = (health.status_code, health.json()["history"]["status"])
    outcome["history after health"] = http.get("/api/history").status_code
    assert outcome == {"get": 200, "start": 202, "history": 200, "usage": 200, "cleanup": 200, "timer": RAN,
                       "health": (200, "ok"), "history after health": 200}, str(outcome)
    assert [a for a in chaos_own.answers if a.status >= 500] == []


def test_each_route_works_as_the_first_call_on_a_brand_new_table(chaos: Chaos) -> None:
    """Defect 1, brand-new deployment: history, usage, cleanup and the lease_cleanup timer failed (404
    TableNotFound, answered 503 or a traceback) until a start or health call had created the table; so the first
    cleanup could not adopt the sessions started before the app existed.

    Asserted, each route being the very first call on a table of its own: history 200, usage 200, cleanup 200
    (adopting the 3 sessions started directly at ARR, one record each), the timer writes its run record and
    adopts them too."""
    outside = [f"early-{i}" for i in range(3)]
    chaos.start_outside(outside)
    outcome: dict[str, object] = {}
    adopted: dict[str, dict[str, int]] = {}
    for route in ("history", "usage", "cleanup", "timer"):
        chaos.table_name = f"{chaos.table_name[:13]}{route}"  # a table nobody has created yet
        host = chaos.start_host()
        http = chaos.client(host)
        if route == "timer":
            assert chaos.run_timer(host).status_code == 202
            outcome[route] = RAN if chaos.wait_for("Kind eq 'run'") else "no run record"
        else:
            response = http.request("POST" if route == "cleanup" else "GET", f"/api/{route}")
            outcome[route] = response.status_code
        if route in ("cleanup", "timer"):
            adopted[route] = dict(chaos.records_per_session())
    assert outcome == {"history": 200, "usage": 200, "cleanup": 200, "timer": RAN}, str(outcome)
    assert adopted == {"cleanup": dict.fromkeys(outside, 1), "timer": dict.fromkeys(outside, 1)}
    chaos.assert_invariants(arr_sessions=3)
