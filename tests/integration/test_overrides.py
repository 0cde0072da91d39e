"""Overrides of the nightly shutdown over HTTP, on the real app, Azurite and the emulator (issue 21)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx


def start(http: httpx.Client, **body: object) -> str:
    r = http.post("/api/sessions", json={"leaseMinutes": 60, **body})
    assert r.status_code == 202, r.text[:300]
    return r.json()["id"]


def test_overrides_keep_a_session_and_a_scope_through_a_nightly_shutdown_until_lifted(http: httpx.Client) -> None:
    kept, scoped, plain = start(http), start(http, labels={"team": "review"}), start(http)
    until = (datetime.now(UTC) + timedelta(hours=10)).isoformat()
    made = http.post("/api/overrides", json={"sessionId": kept, "until": until, "reason": "demo at 9",
                                             "requestedBy": "ana"})
    assert made.status_code == 201, made.text[:300]
    view = made.json()
    assert made.headers["Location"].endswith(f"/api/overrides/{view['id']}") and view["sessionId"] == kept
    scope = http.post("/api/overrides", json={"labels": {"team": "review"}, "until": until}).json()
    assert {o["id"] for o in http.get("/api/overrides").json()["overrides"]} == {view["id"], scope["id"]}

    report = http.post("/api/cleanup", params={"mode": "nightly"}).json()
    stopped = {a["id"] for a in report["stopped"]}
    kept_reasons = {a["id"]: a["reason"] for a in report["kept"]}
    assert plain in stopped and kept not in stopped and scoped not in stopped, report
    assert kept_reasons[kept].startswith(f"override {view['id']} until ") and "by ana: demo at 9" in kept_reasons[kept]
    assert kept_reasons[scoped].startswith(f"override {scope['id']}")

    lifted = http.delete(f"/api/overrides/{view['id']}")
    assert lifted.status_code == 200 and lifted.json()["id"] == view["id"]
    assert http.delete(f"/api/overrides/{view['id']}").status_code == 404
    assert http.delete("/api/overrides/not-an-id").status_code == 404
    again = http.post("/api/cleanup", params={"mode": "nightly"}).json()
    assert kept in {a["id"] for a in again["stopped"]} and scoped not in {a["id"] for a in again["stopped"]}
    http.delete(f"/api/overrides/{scope['id']}")
    http.post(f"/api/sessions/{scoped}/stop")


def test_an_override_is_refused_with_both_scopes_none_or_a_bad_time(http: httpx.Client) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for body, field in [({"until": soon}, None), ({"sessionId": "s", "labels": {"a": "b"}, "until": soon}, None),
                        ({"sessionId": "s", "until": "tomorrow"}, "until"),
                        ({"sessionId": "s", "until": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()},
                         "until"),
                        ({"sessionId": "s", "until": (datetime.now(UTC) + timedelta(days=40)).isoformat()}, "until")]:
        r = http.post("/api/overrides", json=body)
        assert r.status_code == 400, (body, r.text[:300])
        assert r.headers["content-type"].startswith("application/problem+json")
        if field:
            assert r.json()["errors"][0]["field"] == field, r.json()
