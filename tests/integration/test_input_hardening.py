"""Input a careless flow or an adversary sends, against the real app (local host, ARR emulator, Azurite).

The rule (issue 8, parts 6 and 10): input never causes a 5xx. Whatever cannot be used is a 400 problem+json that
names the field, answered before anything is written to ARR or to history; ordinary Unicode (accents, emoji, ZWJ
sequences, right-to-left scripts) stays valid. The edge's own mapping (storage trouble, a spent budget, a start
whose outcome ARR left unknown) is tested in-process at the end; the budget itself in ``test_http_layer.py``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import azure.functions as func
import httpx
import pytest
from azure.data.tables import TableClient
from conftest import Emulator

import blueprints.http as edge
from arr_core import errors
from arr_core.services import context

MAX_TEXT = 256  # the contract's limit for free text, in a body and in a query alike
CONTROL_CHARACTERS = ["\x00", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9b", "\u202a", "\u202b", "\u202c",
                      "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\ud800"]
ORDINARY_TEXT = ["café naïve Øresund", "José Müller-Lüdenscheidt", "👩\u200d👩\u200d👧\u200d👦 family", "🇳🇱 flag",
                 "日本語のテキスト", "עברית", "العربية", "a\u200db", "é" * MAX_TEXT]


def as_json(body: Any) -> dict[str, Any]:
    """Request arguments for a JSON body, ASCII-escaped (httpx's ``json=`` sends UTF-8, which cannot carry a lone
    surrogate; JSON's ``\\ud800`` can)."""
    return {"content": json.dumps(body).encode(), "headers": {"Content-Type": "application/json"}}


def session_records(table: TableClient) -> list[dict[str, Any]]:
    return [dict(e) for e in table.query_entities("Kind eq 'session'")]


def assert_refused(r: httpx.Response, field: str, status: int = 400) -> None:
    """A problem+json of ``status`` whose errors name ``field`` (or a field inside it, e.g. labels.team)."""
    assert r.status_code == status, r.text[:300]
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    fields = [e["field"] for e in r.json().get("errors", [])]
    assert any(f == field or f.startswith(f"{field}.") for f in fields), (field, r.text[:300])


@pytest.fixture
def nothing_written(emulator: Emulator, table: TableClient) -> Iterator[None]:
    """The test's requests start nothing at ARR and write no session record."""
    before = len(session_records(table))
    yield
    assert emulator.state()["requests"]["create"] == 0
    assert len(session_records(table)) == before


# -- deep nesting ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [("POST", "/api/sessions"), ("PATCH", "/api/sessions/x"),
                                              ("POST", "/api/sessions/x/stop")])
def test_a_body_nested_30000_deep_is_a_400(http: httpx.Client, nothing_written: None, method: str, path: str) -> None:
    """json.loads raises RecursionError past Python's stack (a 500 before): now 400 naming the body."""
    for deep in ("[" * 30_000 + "]" * 30_000, '{"a":' * 10_000 + "1" + "}" * 10_000):  # both under 64 KiB
        r = http.request(method, path, content=deep, headers={"Content-Type": "application/json"})
        assert_refused(r, "body")


def test_deep_labels_are_a_400_naming_labels(http: httpx.Client, nothing_written: None) -> None:
    """``?labels=`` nested 1 500 deep (a RecursionError) and labels that are not a flat object of strings, in the
    query or in the body, are 400 naming labels."""
    deep = '{"a":' * 1_500 + '"x"' + "}" * 1_500
    assert_refused(http.post("/api/sessions", params={"labels": deep}), "labels")
    for labels in ('{"a":{"b":"c"}}', '["a"]', '"a"', "7", '{"a":7}', '{"a":null}', "{"):
        assert_refused(http.post("/api/sessions", params={"labels": labels}), "labels")
    nested: Any = "x"
    for _ in range(500):  # deep, but within what json.loads parses
        nested = {"a": nested}
    assert_refused(http.post("/api/sessions", json={"labels": nested}), "labels")


# -- continuation tokens ---------------------------------------------------------------------------------------

def b64(raw: str | bytes) -> str:
    data = raw.encode() if isinstance(raw, str) else raw
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def signed(payload: Any) -> str:
    """A token in this app's format (whose checksum anyone can compute) around ``payload``."""
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return b64(json.dumps({"v": 1, "d": text, "s": hashlib.sha256(text.encode()).hexdigest()[:16]}))


TYPE_CONFUSED = [b64('{"v":1,"d":5,"s":"x"}'), b64('{"v":1,"d":[1],"s":null}'), b64('{"v":1,"d":{},"s":{}}'),
                 b64("[1,2]"), b64("7"), b64("null"), b64('"text"'), b64("{}"), b64('{"v":1}'), b64('{"d":"{}"}'),
                 b64('{"v":"1","d":"{}","s":"x"}'), b64(b"\xff\xfe{\x80"), b64(b'{"v":1,"d":"\xed\xa0\x80"}'),
                 b64("[" * 5_000), "%%%not-base64", "é", "A", signed("5"), signed("[]"), signed("null"),
                 signed({"p": 5, "r": 6, "f": None}), signed('{"p":"s-202601"'), signed("[" * 1_000 + "]" * 1_000)]


@pytest.mark.parametrize("token", TYPE_CONFUSED, ids=range(len(TYPE_CONFUSED)))
def test_type_confused_continuation_tokens_are_a_400(http: httpx.Client, token: str) -> None:
    """``{"v":1,"d":5,"s":"x"}`` was a 500 (AttributeError), a missing key a KeyError: every shape this app did not
    issue is a 400 naming continuationToken."""
    assert_refused(http.get("/api/history", params={"continuationToken": token}), "continuationToken")


def test_re_signed_tokens_outside_the_issued_shape_are_a_400(http: httpx.Client, emulator: Emulator) -> None:
    """The checksum is no secret, so a token can be re-signed around any position. One that this app cannot have
    issued (a NUL, a quote, 1 500 characters, a number, a partition that is not a month) is refused as a 400 naming
    continuationToken before Table Storage sees it; a position of the issued shape reads like any other."""
    for _ in range(3):
        assert http.post("/api/sessions", json={"leaseMinutes": 5}).status_code == 202
    first = http.get("/api/history", params={"top": 1})
    next_link = first.json()["nextLink"]
    assert next_link, first.text
    query = {k: v[0] for k, v in parse_qs(urlsplit(next_link).query).items()}
    token = query.pop("continuationToken")
    position = json.loads(json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["d"])

    def page(**change: Any) -> httpx.Response:
        return http.get("/api/history", params={**query, "continuationToken": signed({**position, **change})})

    assert page().status_code == 200
    assert page(r="0000-00-00T00:00:00.000000+00:00~a").status_code == 200
    for change in ({"r": "\x00"}, {"r": "a\nb"}, {"r": "' or PartitionKey ne '"}, {"r": "x" * 1_500}, {"r": ""},
                   {"r": 5}, {"r": None}, {"p": "s-' or ''='"}, {"p": "s-" + "9" * 1_500}, {"p": "x"},
                   {"p": ["s-202601"]}, {"f": "0" * 16}):
        assert_refused(page(**change), "continuationToken")


# -- sizes -----------------------------------------------------------------------------------------------------

def test_free_text_has_one_limit_in_body_and_query(http: httpx.Client, emulator: Emulator) -> None:
    """256 characters in a body field, a start's query and the history filter; 257 is a 400 naming the field. A
    30 KB requestedBy filter made Table Storage answer 431 (a 503 before)."""
    from arr_core.api.views import MAX_TEXT as limit  # the one definition both sides use

    assert limit == MAX_TEXT
    ok, too_long = "é" * MAX_TEXT, "é" * (MAX_TEXT + 1)
    for name in ("requestedBy", "reason"):
        assert http.post("/api/sessions", json={name: ok, "leaseMinutes": 5}).status_code == 202
        assert http.post("/api/sessions", params={name: ok, "leaseMinutes": "5"}).status_code == 202
        assert_refused(http.post("/api/sessions", json={name: too_long}), name)
        assert_refused(http.post("/api/sessions", params={name: too_long}), name)
        assert_refused(http.post("/api/sessions", params={name: "x" * 30_000}), name)
    assert http.get("/api/history", params={"requestedBy": ok}).status_code == 200
    assert_refused(http.get("/api/history", params={"requestedBy": too_long}), "requestedBy")
    assert_refused(http.get("/api/history", params={"requestedBy": "x" * 30_000}), "requestedBy")
    assert_refused(http.get("/api/history", params={"continuationToken": "A" * 30_000}), "continuationToken")
    assert_refused(http.post("/api/sessions", json={"labels": {"team": too_long}}), "labels")


def test_22_labels_of_256_accented_characters_are_accepted_and_kept(http: httpx.Client, emulator: Emulator) -> None:
    """They passed validation, then overflowed Table Storage's 32K-character property as ASCII escapes (500, an
    orphan index row). Valid input is stored: the labels come back unchanged."""
    labels = {f"k{i:02d}": "é" * MAX_TEXT for i in range(22)}
    r = http.post("/api/sessions", json={"leaseMinutes": 5, "labels": labels})
    assert r.status_code == 202, r.text[:300]
    session_id = r.json()["id"]
    assert http.get(f"/api/sessions/{session_id}").json()["labels"] == labels
    [view] = [s for s in http.get("/api/history", params={"top": 1000}).json()["sessions"] if s["id"] == session_id]
    assert view["labels"] == labels


# -- control and bidi characters -------------------------------------------------------------------------------

@pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=lambda c: f"U+{ord(c):04X}")
def test_control_and_bidi_characters_are_a_400_naming_the_field(http: httpx.Client, nothing_written: None,
                                                                char: str) -> None:
    """NUL, C0/C1 controls (newline, ESC, CSI), bidi overrides and isolates, and lone surrogates were stored
    verbatim (or failed at storage): they hide or reorder what an operator reads later. 400 naming the field, in a
    body or a query, before anything is written."""
    text = f"before{char}after"
    for name in ("reason", "requestedBy"):
        assert_refused(http.post("/api/sessions", **as_json({name: text, "leaseMinutes": 5})), name)
        if char != "\ud800":  # a URL carries UTF-8: a lone surrogate cannot be put in a query
            assert_refused(http.post("/api/sessions", params={name: text, "leaseMinutes": "5"}), name)
    assert_refused(http.post("/api/sessions", **as_json({"labels": {"team": text}})), "labels")
    assert_refused(http.post("/api/sessions", **as_json({"labels": {text: "x"}})), "labels")
    assert_refused(http.post("/api/sessions/x/stop", **as_json({"reason": text})), "reason")
    if char != "\ud800":
        assert_refused(http.post("/api/sessions", params={"labels": json.dumps({"team": text})}), "labels")
        assert_refused(http.get("/api/history", params={"requestedBy": text}), "requestedBy")


def test_a_refused_stop_reason_leaves_the_session_running(http: httpx.Client, emulator: Emulator,
                                                          table: TableClient) -> None:
    """The stop's reason is checked before ARR is asked and before the stop intent is noted."""
    session_id = http.post("/api/sessions", json={"leaseMinutes": 5}).json()["id"]
    assert_refused(http.post(f"/api/sessions/{session_id}/stop", json={"reason": "done\x1b[2K"}), "reason")
    assert emulator.state()["requests"].get("stop", 0) == 0
    assert http.get(f"/api/sessions/{session_id}").json()["status"] == "Starting"
    [record] = [r for r in session_records(table) if r["SessionId"] == session_id]
    assert not record.get("StopReason")


@pytest.mark.parametrize(("query", "field"), [("reason=%ED%A0%80&requestedBy=ok", "reason"),
                                              ("leaseMinutes=5&requestedBy=%FF", "requestedBy"),
                                              ("reason=a%C3", "reason")])
def test_a_query_that_is_not_utf_8_is_a_400_naming_the_parameter(http: httpx.Client, nothing_written: None,
                                                                 query: str, field: str) -> None:
    """An encoded surrogate, a lone 0xFF, a cut sequence: the host read them as replacement characters and history
    kept those. Refused before anything is written, as a body that is not UTF-8 is."""
    assert_refused(http.post(f"/api/sessions?{query}"), field)
    assert_refused(http.get(f"/api/history?{query}"), field)


@pytest.mark.parametrize("text", ORDINARY_TEXT, ids=range(len(ORDINARY_TEXT)))
def test_ordinary_unicode_stays_valid(http: httpx.Client, emulator: Emulator, text: str) -> None:
    """Accents, emoji (ZWJ sequences, flags), CJK and right-to-left scripts are not control characters."""
    r = http.post("/api/sessions", json={"leaseMinutes": 5, "reason": text, "requestedBy": text,
                                         "labels": {"note": text}})
    assert r.status_code == 202, r.text[:300]
    view = http.get(f"/api/sessions/{r.json()['id']}").json()
    assert (view["reason"], view["requestedBy"], view["labels"]) == (text, text, {"note": text})
    stopped = http.post(f"/api/sessions/{view['id']}/stop", json={"reason": text})
    assert stopped.status_code == 200, stopped.text[:300]


# -- a generated sweep over every route ------------------------------------------------------------------------

ODD_STRINGS = ["", " ", "\x00", "a\x1b[2Jb", "\u202egnp.exe", "\ufeff", "\uffff", "\U0010ffff", "é" * 300,
               "👩\u200d👩\u200d👧" * 40, "x" * 30_000, "9" * 5_000, "-1", "0", "1e309", "NaN", "Infinity", "null",
               "true", "[]", "{}", '{"a":' * 1_500 + "1" + "}" * 1_500, "' or ''='", "%00", "%ED%A0%80",
               "../../etc/passwd", "<script>alert(1)</script>", "s-202601", "0001-01-01", "2019-01-01T00:00:00+99:00",
               "9999-12-31T23:59:59+14:00", "Starting,Ready,Starting", "Premium"]
ODD_JSON: list[Any] = [*ODD_STRINGS, "\ud800", None, True, False, 0, -1, 1.5, 2**63, 10**400, float("inf"),
                       float("nan"), [], [1] * 10_000, {}, {"a": "b"}, {"a": {"b": "c"}}, {"é" * 300: "x"},
                       {f"k{i}": "v" for i in range(100)}]
ODD_BODIES = [b"", b"{", b"\xff\xfe\x00", b"\xef\xbb\xbf{}", b"null", b"0", b'"text"', b"[]", b'{"a":1,"a":2}',
              b'{"leaseMinutes": 1e999}', b'{"leaseMinutes": NaN}', b'{"reason": "\\ud800"}', b"[" * 30_000,
              b'{"reason": "' + b"x" * 70_000 + b'"}', b"{}" * 10]
ODD_CONTENT_TYPES = ["text/plain", "application/json; charset=latin-1", "application/merge-patch+json",
                     "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", ""]
ODD_KEYS = ["", "x" * 256, "x" * 10_000, "é", "a b", "~" * 255]  # what HTTP can carry in a header
ROUTES: dict[tuple[str, str], tuple[list[str], list[str]]] = {  # route: (query parameters, body fields) it reads
    ("POST", "/api/sessions"): (["size", "leaseMinutes", "sessionId", "requestedBy", "reason", "labels", "keepAlive",
                                 "payload"],
                                ["size", "leaseMinutes", "sessionId", "requestedBy", "reason", "labels", "keepAlive",
                                 "unknownField"]),
    ("GET", "/api/sessions"): (["status"], []),
    ("GET", "/api/sessions/{id}"): ([], []),
    ("GET", "/api/sessions/{id}/ready"): ([], []),
    ("PATCH", "/api/sessions/{id}"): ([], ["leaseMinutes", "extendByMinutes"]),
    ("POST", "/api/sessions/{id}/stop"): ([], ["reason"]),
    ("GET", "/api/history"): (["from", "to", "requestedBy", "size", "status", "top", "continuationToken"], []),
    ("GET", "/api/usage"): (["from", "to", "groupBy"], []),
    ("POST", "/api/cleanup"): (["dryRun", "mode"], []),
    ("GET", "/api/health"): ([], []),
    ("GET", "/api/openapi.json"): ([], []),
}


@dataclass
class Sweep:
    """Every request of the sweep and what came back."""

    answers: list[tuple[str, int, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    started: set[str] = field(default_factory=set)

    def send(self, http: httpx.Client, method: str, url: str, *, path_case: bool = False, **kwargs: Any) -> None:
        began = time.monotonic()
        r = http.request(method, url, **kwargs)
        elapsed = time.monotonic() - began
        label = f"{method} {url[:60]} {str(kwargs)[:100]}"
        self.answers.append((label, r.status_code, elapsed))
        if r.status_code in (200, 202) and method == "POST" and url.endswith("/api/sessions"):
            self.started.add(r.json()["id"])
        if r.status_code >= 500 and not url.endswith("/api/health"):
            self.failures.append(f"{r.status_code} {label}: {r.text[:160]}")
        elif 400 <= r.status_code < 500:
            host_no_route = path_case and r.status_code in (404, 405) and not r.content
            if not host_no_route and not r.headers.get("content-type", "").startswith("application/problem+json"):
                self.failures.append(f"{r.status_code} not problem+json {label}: {r.text[:160]}")
            elif r.status_code == 400 and not r.json().get("errors"):
                self.failures.append(f"400 naming no field {label}: {r.text[:160]}")
        if elapsed > 10:
            self.failures.append(f"slow ({elapsed:.1f} s) {label}")


def sweep_requests() -> Iterator[tuple[str, str, bool, dict[str, Any]]]:
    """(method, url, is a path case, request arguments) for every route × odd values in each place it reads."""
    for (method, template), (params, fields) in ROUTES.items():
        url = template.replace("{id}", "no-such-session")
        base = {"dryRun": "true"} if template == "/api/cleanup" else {}
        for text in ODD_STRINGS:
            if "{id}" in template:
                yield method, template.replace("{id}", quote(text, safe="") or "%20"), True, {}
            for name in params:
                yield method, url, False, {"params": {**base, name: text}}
        for name in fields:
            for value in ODD_JSON:
                yield method, url, False, as_json({name: value})
        if method in ("POST", "PATCH") and template != "/api/cleanup":
            for body in ODD_BODIES:
                yield method, url, False, {"content": body, "headers": {"Content-Type": "application/json"}}
            for content_type in ODD_CONTENT_TYPES:
                yield method, url, False, {"content": b'{"reason": "x"}', "headers": {"Content-Type": content_type}}
        for name in ("labels",) if template == "/api/sessions" and method == "POST" else ():
            for value in ['{"a":' * 1_500 + '"x"' + "}" * 1_500, '{"a":{"b":"c"}}', '["a"]', '{"\\u0000":"x"}']:
                yield method, url, False, {"params": {name: value}}
    for key in ODD_KEYS:
        yield "POST", "/api/sessions", False, {"json": {"leaseMinutes": 5},
                                               "headers": {"Idempotency-Key": key.encode()}}
    for token in TYPE_CONFUSED:
        yield "GET", "/api/history", False, {"params": {"continuationToken": token}}
    for query in ("requestedBy=%ED%A0%80", "requestedBy=%FF%FE", "status=%00", "from=%C0%AF", "top=%EF%BC%91"):
        yield "GET", f"/api/history?{query}", False, {}


def test_generated_sweep_over_every_route_never_answers_5xx(http: httpx.Client, emulator: Emulator,
                                                             table: TableClient) -> None:
    """Odd strings, huge values, deep nesting and wrong types in the path, in each query parameter and body field
    each route reads, odd bodies, content types and Idempotency-Keys: 0 answers of 500 or more, every 4xx is
    problem+json (a bare 404/405 from the host for a path that matches no route aside), every 400 names a field,
    each answer within 10 s; and no session record exists that no 2xx answer announced."""
    emulator.reset(startupSeconds=0)
    before = {r["SessionId"] for r in session_records(table)}
    sweep = Sweep()
    for method, url, path_case, kwargs in sweep_requests():
        sweep.send(http, method, url, path_case=path_case, **kwargs)
    server_errors = sum(1 for _, status, _ in sweep.answers if status >= 500)
    print(f"sweep: {len(sweep.answers)} requests, {server_errors} answers >= 500, {len(sweep.failures)} failures")
    assert len(sweep.answers) > 1_000
    assert sweep.failures == [], "\n".join(sweep.failures[:40])
    written = {r["SessionId"] for r in session_records(table)} - before
    assert written - sweep.started == set(), "records of starts that were refused"


# -- the edge's mapping, in-process ----------------------------------------------------------------------------

def request() -> func.HttpRequest:
    return func.HttpRequest("POST", "http://127.0.0.1:7071/api/sessions", body=b"", params={"code": "k"})


def answer(exc: Exception) -> func.HttpResponse:
    """What :func:`blueprints.http.handled` answers for a handler that raises ``exc``."""
    @edge.handled
    async def failing(req: func.HttpRequest) -> func.HttpResponse:
        raise exc

    return asyncio.run(failing(request()))


def test_storage_trouble_is_a_503_with_retry_after() -> None:
    """Every history failure, whichever class, is 503 problem+json with Retry-After, never a 500, and the
    operator's detail stays in the log."""
    for exc in (errors.HistoryError("table answered 403 AuthorizationFailure"),
                errors.HistoryUnavailable("table answered 403 AuthorizationFailure"),
                errors.HistoryConflict("gave up after 8 conflicting writes")):
        r = answer(exc)
        assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0, type(exc)
        assert r.mimetype == "application/problem+json"
        assert "AuthorizationFailure" not in r.get_body().decode()


def test_a_handler_raising_deadline_exceeded_is_a_504() -> None:
    """Work that ran out of the request's budget (a retry that would cross it, say) is a 504 with Retry-After."""
    r = answer(errors.DeadlineExceeded("the request's time budget is spent"))
    assert r.status_code == 504 and r.headers["Retry-After"] == "30"
    assert json.loads(r.get_body())["title"] == "The request took too long"


@pytest.mark.parametrize(("kind", "status"), [("TransportError", 502), ("ServiceTimeoutError", 504),
                                              ("ServiceError", 502), ("ThrottledError", 503)])
def test_a_start_whose_outcome_arr_left_unknown_names_the_session_to_poll(monkeypatch: pytest.MonkeyPatch,
                                                                         kind: str, status: int) -> None:
    """ARR may have created the session: the problem carries sessionId and a Location to its ready monitor
    (never with the caller's code), so a retry polls instead of starting a second billed session."""
    monkeypatch.setenv("ARR_PUBLIC_BASE_URL", "https://arr.contoso.example")
    forget_settings()
    try:
        exc = getattr(errors, kind)("ARR did not say", status_code=500 if kind == "ServiceError" else None)
        exc.session_id = "s-1234"
        r = answer(exc)
    finally:
        forget_settings()
    assert r.status_code == status
    body = json.loads(r.get_body())
    assert body["sessionId"] == "s-1234"
    assert r.headers["Location"] == "https://arr.contoso.example/api/sessions/s-1234/ready"
    assert r.headers["Retry-After"]


def test_a_refused_start_names_no_session_to_poll() -> None:
    """ARR said no (400/409): nothing was created, so there is nothing to poll."""
    for exc in (errors.InvalidRequestError("bad size", status_code=400),
                errors.ConflictError("taken", status_code=409)):
        exc.session_id = "s-1234"  # type: ignore[attr-defined]
        r = answer(exc)
        assert "Location" not in r.headers and "sessionId" not in json.loads(r.get_body())


def forget_settings() -> None:
    """Settings are read once per process; a test that changes the environment starts over."""
    context.load_settings.cache_clear()
