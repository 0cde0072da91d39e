"""Input an adversary (or a careless flow) sends: never a 5xx, always a 4xx problem naming the field, nothing
written. Also what is valid but unusual (long accented labels) is stored intact. Real host, emulator, Azurite."""

from __future__ import annotations

import base64
import json
import uuid
from urllib.parse import quote
from typing import Any

import httpx
import pytest
from azure.data.tables import TableClient

from conftest import Azurite, Emulator, function_app_env, start_host, stop




def token(raw: Any) -> str:
    text = raw if isinstance(raw, str) else json.dumps(raw)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def assert_problem(r: httpx.Response, status: int, field: str | None = None) -> None:
    assert r.status_code == status, r.text[:300]
    assert r.headers["content-type"].startswith("application/problem+json")
    if field is not None:
        assert field in [e["field"] for e in r.json().get("errors", [])], r.text[:300]


def test_deep_nesting_is_a_400(http: httpx.Client, emulator: Emulator) -> None:
    """A body nested 30 000 deep and a labels query nested 1 500 deep were 500s (RecursionError, and pydantic
    on nested values); now 400 naming the body or labels."""
    deep = "[" * 30_000 + "]" * 30_000
    assert_problem(http.post("/api/sessions", content=deep, headers={"Content-Type": "application/json"}), 400,
                   "body")
    labels = '{"a":' * 1_500 + '"x"' + "}" * 1_500
    assert_problem(http.post("/api/sessions", params={"labels": labels}), 400, "labels")
    assert emulator.state()["requests"]["create"] == 0


@pytest.mark.parametrize("value", [token({"v": 1, "d": 5, "s": "x"}), token({"v": 1, "d": [1], "s": None}),
                                   token([1, 2]), token(7), token("null"), token({"v": 1}),
                                   token({"v": 1, "d": "{}", "s": "0"}), base64.urlsafe_b64encode(b"\xff{").decode(),
                                   "%%%not-base64", "\u00e9"])
def test_type_confused_continuation_tokens_are_400(http: httpx.Client, value: str) -> None:
    """A token decoding to {"v":1,"d":5,"s":"x"} was a 500 (AttributeError): every shape we did not issue is a
    400 naming continuationToken."""
    assert_problem(http.get("/api/history", params={"continuationToken": value}), 400, "continuationToken")


def test_huge_filters_are_refused_before_storage(http: httpx.Client) -> None:
    """A 30 KB requestedBy filter made Table Storage answer 431, reported as 503; a 10 KB token likewise."""
    assert_problem(http.get("/api/history", params={"requestedBy": "x" * 30_000}), 400, "requestedBy")
    assert_problem(http.get("/api/history", params={"continuationToken": "A" * 10_000}), 400, "continuationToken")


@pytest.mark.parametrize(("field", "value"), [("reason", "before\x00after"), ("reason", "line\nbreak"),
                                              ("requestedBy", "\x1b[31mred"), ("requestedBy", "admin\u202egnp.exe"),
                                              ("reason", "\u2066isolate\u2069"), ("labels", {"team": "a\x07"})])
def test_control_characters_are_refused(http: httpx.Client, table: TableClient, field: str, value: Any) -> None:
    """NUL, escape, newline, bell and bidi overrides were stored verbatim; now a 400 naming the field, and no
    record is written."""
    before = len(list(table.query_entities("Kind eq 'session'")))
    r = http.post("/api/sessions", json={field: value, "leaseMinutes": 5})
    assert_problem(r, 400)
    assert any(e["field"].startswith(field) for e in r.json()["errors"]), r.text
    assert len(list(table.query_entities("Kind eq 'session'"))) == before


def test_long_accented_labels_and_emoji_are_stored_intact(http: httpx.Client, emulator: Emulator) -> None:
    """22 labels of 256 'é' passed validation but overflowed Table Storage's 32K-character property as ASCII
    escapes (500, orphan index row). Stored as UTF-8 JSON they fit, and come back unchanged."""
    labels = {f"k{i:02d}": "é" * 256 for i in range(22)}
    r = http.post("/api/sessions", json={"leaseMinutes": 5, "labels": labels, "reason": "👩‍👩‍👧 review"})
    assert r.status_code == 202, r.text
    session_id = r.json()["id"]
    [view] = [s for s in http.get("/api/history").json()["sessions"] if s["id"] == session_id]
    assert view["labels"] == labels and view["reason"] == "👩‍👩‍👧 review"


HOSTILE: list[Any] = ["", "\x00", "%00", "ä" * 300, "9" * 400, "-1", "1e309", "NaN", "null", "{}", "../../etc",
                      "' or 1 eq 1", "\u202e", "🙂" * 200, "2019-01-01T00:00:00+99:00", "0001-01-01", "a" * 5000]
ROUTES: dict[tuple[str, str], list[str]] = {  # each route with the query parameters it reads
    ("POST", "/api/sessions"): ["size", "leaseMinutes", "sessionId", "requestedBy", "reason", "labels", "keepAlive",
                                "payload"],
    ("GET", "/api/sessions"): ["status"],
    ("GET", "/api/history"): ["from", "to", "requestedBy", "size", "status", "top", "continuationToken"],
    ("GET", "/api/usage"): ["from", "to", "groupBy"],
    ("POST", "/api/cleanup"): ["dryRun", "mode"],
    ("GET", "/api/sessions/{id}"): [], ("GET", "/api/sessions/{id}/ready"): [], ("PATCH", "/api/sessions/{id}"): [],
    ("POST", "/api/sessions/{id}/stop"): [],
}
BODY_FIELDS = ["leaseMinutes", "extendByMinutes", "reason", "labels", "size", "requestedBy"]


def test_generated_hostile_requests_never_give_5xx(http: httpx.Client, emulator: Emulator) -> None:
    """Every route × hostile values in the path, in each query parameter it reads and as each body field: 0
    answers of 500 or more, and every 4xx other than a plain 404 is problem+json. Cleanups run as dry runs."""
    emulator.reset(startupSeconds=0)
    answers: list[tuple[str, str, int]] = []
    for (method, template), names in ROUTES.items():
        for value in HOSTILE:
            text = value if isinstance(value, str) else json.dumps(value)
            base = {"dryRun": "true"} if template == "/api/cleanup" else {}
            variants: list[dict[str, Any]] = [{"url": template.replace("{id}", quote(text, safe="") or "x")}]
            variants += [{"url": template, "params": {**base, name: text}} for name in names]
            if method in ("POST", "PATCH") and template != "/api/cleanup":
                url = template.replace("{id}", "no-such")
                variants += [{"url": url, "json": {name: value}} for name in BODY_FIELDS]
                variants.append({"url": url, "content": text.encode(), "headers": {"Content-Type": "application/json"}})
            for kwargs in variants:
                r = http.request(method, **kwargs)
                answers.append((method, str(kwargs)[:80], r.status_code))
                if r.status_code >= 400 and r.status_code != 404:
                    assert r.headers["content-type"].startswith("application/problem+json"), (kwargs, r.text[:200])
    assert len(answers) > 600
    assert [a for a in answers if a[2] >= 500] == []


def test_host_header_is_not_reflected_into_links(emulator: Emulator, azurite: Azurite) -> None:
    """The Host header went into Location, links and the OpenAPI host together with the caller's code. With
    ARR_PUBLIC_BASE_URL set, every URL the app hands out is on that base, whatever Host says."""
    env = function_app_env(emulator, azurite, f"h{uuid.uuid4().hex[:10]}",
                           ARR_PUBLIC_BASE_URL="https://arr.contoso.example/")
    host = start_host(env, "function_app", "--no-timers")
    try:
        with httpx.Client(base_url=host.url, headers={"Host": "evil.example", "x-functions-key": host.key},
                          timeout=60) as client:
            r = client.post("/api/sessions", params={"code": host.key}, json={"leaseMinutes": 5})
            assert r.status_code == 202, r.text
            assert r.headers["Location"].startswith("https://arr.contoso.example/api/sessions/")
            assert {v.split("/api/")[0] for v in r.json()["links"].values()} == {"https://arr.contoso.example"}
            document = client.get("/api/openapi.json").json()
            assert document["host"] == "arr.contoso.example" and document["schemes"] == ["https"]
            assert "evil.example" not in r.text + json.dumps(document)
    finally:
        stop(host.process)


@pytest.mark.parametrize(("setting", "value"), [("ARR_TIME_ZONE", "Mars/Base"), ("ARR_NIGHTLY_SHUTDOWN_AT", "ten")])
def test_bad_settings_make_503_misconfigured_not_500(emulator: Emulator, azurite: Azurite, setting: str,
                                                     value: str) -> None:
    """ARR_TIME_ZONE=Mars/Base or ARR_NIGHTLY_SHUTDOWN_AT=ten turned every route, health included, into a 500.
    Now every route answers 503 problem+json naming the setting, and health 503 "misconfigured"."""
    env = function_app_env(emulator, azurite, f"m{uuid.uuid4().hex[:10]}", **{setting: value})
    host = start_host(env, "function_app", "--no-timers")
    try:
        health = httpx.get(f"{host.url}/api/health")
        assert health.status_code == 503 and health.json()["status"] == "misconfigured"
        assert setting in health.json()["history"]["detail"]
        with host.client() as client:
            for method, url in [("POST", "/api/sessions"), ("GET", "/api/sessions"), ("GET", "/api/history"),
                                ("GET", "/api/usage"), ("POST", "/api/cleanup"), ("GET", "/api/sessions/a")]:
                r = client.request(method, url, json={} if method == "POST" else None)
                assert_problem(r, 503)
                assert setting in r.json()["detail"] and r.json()["title"] == "The function app is misconfigured"
    finally:
        stop(host.process)


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
