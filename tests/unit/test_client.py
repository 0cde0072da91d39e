"""Unit tests of ArrClient behaviour that recordings cannot show: retries, token caching, refresh, secrecy."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from arr_core import (
    AccountKeyCredential,
    ArrClient,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    RetryPolicy,
    ServiceError,
    ServiceTimeoutError,
    SessionSize,
    SessionStatus,
    StaticAccessToken,
    ThrottledError,
    TransportError,
    jwt_expiry,
    parse_retry_after,
)

from .harness import FakeClock

ACCOUNT = "11111111-2222-3333-4444-555555555555"
ENDPOINT = "https://remoterendering.westeurope.mixedreality.azure.com"
DOMAIN = "westeurope.mixedreality.azure.com"
SECRET_KEY = "SuperSecretAccountKey=="


def jwt(exp: Any) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJub25lIn0.{payload}.sig"


def session_json(session_id: str = "s1", status: str = "Ready", **extra: Any) -> dict[str, Any]:
    body = {"id": session_id, "creationTime": "2022-09-14T01:05:32.4773534+00:00", "elapsedTimeMinutes": 3,
            "maxLeaseTimeMinutes": 30, "size": "Standard", "status": status}
    body.update(extra)
    return body


@dataclass
class FakeArr:
    """An httpx handler standing in for the STS and ARR; ``script`` gives the ARR answers in order."""

    script: list[httpx.Response] = field(default_factory=list)
    token: str = field(default_factory=lambda: jwt(2_000_000_000))
    sts_calls: int = 0
    arr_requests: list[httpx.Request] = field(default_factory=list)
    sts_delay: float = 0.0
    default: httpx.Response | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host.startswith("sts."):
            self.sts_calls += 1
            if self.sts_delay:
                await asyncio.sleep(self.sts_delay)
            return httpx.Response(200, json={"AccessToken": self.token}, headers={"MS-CV": "sts-cv.0"})
        self.arr_requests.append(request)
        if self.script:
            return self.script.pop(0)
        if self.default is not None:
            return self.default
        return httpx.Response(200, json=session_json(), headers={"MS-CV": "cv.0"})


def make_client(fake: FakeArr, clock: FakeClock | None = None, credential: Any = None, **retry: Any) -> ArrClient:
    clock = clock or FakeClock()
    policy = RetryPolicy(sleep=clock.sleep, clock=clock, **retry)
    return ArrClient(ENDPOINT, ACCOUNT, DOMAIN, credential or AccountKeyCredential(SECRET_KEY),
                     http_client=httpx.AsyncClient(transport=httpx.MockTransport(fake)), retry=policy, clock=clock)


async def test_429_then_200_waits_what_retry_after_said() -> None:
    """A 429 with Retry-After: 7 makes the client wait exactly 7 s, then succeed."""
    clock = FakeClock()
    fake = FakeArr(script=[httpx.Response(429, headers={"Retry-After": "7"})])
    async with make_client(fake, clock) as client:
        session = await client.get_session("s1")
    assert session.status is SessionStatus.READY
    assert clock.slept == [7.0]
    assert len(fake.arr_requests) == 2


async def test_retry_after_as_http_date() -> None:
    """Retry-After may be an HTTP date; the wait is the time until then."""
    when = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 <= parse_retry_after(format_datetime(when, usegmt=True)) <= 30
    assert parse_retry_after("not a date") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("2") == 2.0


async def test_429_storm_surfaces_throttled_with_retry_after() -> None:
    """After the attempts run out, the caller gets ThrottledError carrying ARR's Retry-After."""
    clock = FakeClock()
    fake = FakeArr(default=httpx.Response(429, headers={"Retry-After": "3", "MS-CV": "t.0"}))
    async with make_client(fake, clock, attempts=4) as client:
        with pytest.raises(ThrottledError) as caught:
            await client.get_session("s1")
    assert caught.value.retry_after == 3.0
    assert caught.value.correlation_id == "t.0"
    assert len(fake.arr_requests) == 4
    assert clock.slept == [3.0, 3.0, 3.0]


async def test_1000_concurrent_calls_on_a_cold_client_share_one_sts_exchange() -> None:
    """Concurrent first calls wait for the one token exchange instead of starting their own."""
    fake = FakeArr(sts_delay=0.01)
    async with make_client(fake) as client:
        results = await asyncio.gather(*(client.get_session("s1") for _ in range(1000)))
    assert len(results) == 1000
    assert fake.sts_calls == 1
    assert client.tokens.exchanges == 1


async def test_expired_token_is_refreshed() -> None:
    """Near its exp the token is exchanged again, and the new one is sent."""
    clock = FakeClock()
    fake = FakeArr(token=jwt(int(clock.now) + 3600))
    async with make_client(fake, clock) as client:
        await client.get_session("s1")
        clock.now += 1800
        await client.get_session("s1")
        assert fake.sts_calls == 1
        fake.token = jwt(int(clock.now) + 7200)
        clock.now += 1700  # within the refresh margin of the first token's exp
        await client.get_session("s1")
    assert fake.sts_calls == 2
    assert fake.arr_requests[-1].headers["Authorization"] == f"Bearer {fake.token}"


async def test_token_exp_as_string_and_non_jwt_tokens() -> None:
    """Real recordings carry exp as a string, sanitized ones no JWT at all; both work."""
    assert jwt_expiry(jwt("1607978983")) == 1607978983.0
    assert jwt_expiry("Sanitized") is None
    assert jwt_expiry("a.b.c") is None
    clock = FakeClock()
    fake = FakeArr(token="Sanitized")
    async with make_client(fake, clock) as client:
        await client.get_session("s1")
        await client.get_session("s1")
    assert fake.sts_calls == 1  # kept for the fallback lifetime


async def test_401_refreshes_once_and_then_surfaces() -> None:
    """One 401 gets a new token and a second try; a second 401 is the caller's AuthenticationError."""
    fake = FakeArr(script=[httpx.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})])
    async with make_client(fake) as client:
        assert (await client.get_session("s1")).id == "s1"
        assert fake.sts_calls == 2
        fake.default = httpx.Response(401, headers={"MS-CV": "a.0"})
        with pytest.raises(AuthenticationError) as caught:
            await client.get_session("s1")
    assert fake.sts_calls == 3
    assert len(fake.arr_requests) == 4
    assert caught.value.status_code == 401


async def test_401_with_a_static_token_is_final() -> None:
    """A static token cannot be refreshed, so its 401 surfaces at once."""
    fake = FakeArr(default=httpx.Response(401))
    async with make_client(fake, credential=StaticAccessToken("static")) as client:
        with pytest.raises(AuthenticationError):
            await client.get_session("s1")
    assert fake.sts_calls == 0
    assert fake.arr_requests[0].headers["Authorization"] == "Bearer static"


async def test_5xx_storm_ends_within_the_deadline() -> None:
    """Endless 503s end in a ServiceError before the total deadline, not after it."""
    clock = FakeClock()
    started = clock.now
    fake = FakeArr(default=httpx.Response(503, json={"error": {"code": "ServiceUnavailable", "message": "busy"}}))
    async with make_client(fake, clock, attempts=100, deadline=20.0, wait_initial=1.0, wait_max=8.0) as client:
        with pytest.raises(ServiceError) as caught:
            await client.get_session("s1")
    assert caught.value.status_code == 503
    assert caught.value.code == "ServiceUnavailable"
    assert clock.now - started <= 20.0
    assert 3 <= len(fake.arr_requests) < 100


@pytest.mark.parametrize(("status", "error"), [(400, InvalidRequestError), (404, NotFoundError),
                                              (409, ConflictError), (403, AuthenticationError),
                                              (422, InvalidRequestError)])
async def test_other_4xx_are_never_retried(status: int, error: type[Exception]) -> None:
    """A 4xx other than 429 fails the same way again, so it is raised at once."""
    fake = FakeArr(default=httpx.Response(status, json={"error": {"code": "X", "message": "no"}}))
    async with make_client(fake) as client:
        with pytest.raises(error):
            await client.get_session("s1")
    assert len(fake.arr_requests) == 1


async def test_transport_errors_are_retried_then_raised() -> None:
    """Connection failures are retried; when they persist the caller gets TransportError."""
    calls = 0

    async def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        if request.url.host.startswith("sts."):
            return httpx.Response(200, json={"AccessToken": "t"})
        calls += 1
        raise httpx.ConnectError("refused", request=request)

    clock = FakeClock()
    client = ArrClient(ENDPOINT, ACCOUNT, DOMAIN, AccountKeyCredential(SECRET_KEY),
                       http_client=httpx.AsyncClient(transport=httpx.MockTransport(refuse)),
                       retry=RetryPolicy(attempts=3, sleep=clock.sleep, clock=clock))
    async with client:
        with pytest.raises(TransportError) as caught:
            await client.get_session("s1")
    assert calls == 3
    assert caught.value.status_code is None


async def test_an_unreachable_sts_is_tried_as_often_as_one_call_not_once_per_retry_of_the_call() -> None:
    """Found by the idle-cost estimate (issue 23): with the STS unreachable, each of the call's 5 attempts ran the
    token exchange's own 5: 25 tries, ~50 s and ~50 warnings a cleanup run. The token is obtained once per call,
    with its own retries; ARR's answers are then retried with it."""
    sts = 0

    async def unreachable_sts(request: httpx.Request) -> httpx.Response:
        nonlocal sts
        if request.url.host.startswith("sts."):
            sts += 1
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=session_json(), headers={"MS-CV": "cv.0"})

    clock = FakeClock()
    client = ArrClient(ENDPOINT, ACCOUNT, DOMAIN, AccountKeyCredential(SECRET_KEY),
                       http_client=httpx.AsyncClient(transport=httpx.MockTransport(unreachable_sts)),
                       retry=RetryPolicy(attempts=5, sleep=clock.sleep, clock=clock))
    async with client:
        with pytest.raises(TransportError):
            await client.get_session("s1")
    assert sts == 5


async def test_timeout_is_a_service_timeout() -> None:
    """A read timeout becomes ServiceTimeoutError (the HTTP layer answers 504 for it)."""

    async def slow(request: httpx.Request) -> httpx.Response:
        if request.url.host.startswith("sts."):
            return httpx.Response(200, json={"AccessToken": "t"})
        raise httpx.ReadTimeout("slow", request=request)

    client = ArrClient(ENDPOINT, ACCOUNT, DOMAIN, AccountKeyCredential(SECRET_KEY),
                       http_client=httpx.AsyncClient(transport=httpx.MockTransport(slow)), retry=RetryPolicy.off())
    async with client:
        with pytest.raises(ServiceTimeoutError):
            await client.get_session("s1")


@pytest.mark.parametrize(("call", "argument"), [
    (lambda c: c.create_session("../x", lease_minutes=10), "session_id"),
    (lambda c: c.create_session("x" * 257, lease_minutes=10), "session_id"),
    (lambda c: c.create_session("café", lease_minutes=10), "session_id"),
    (lambda c: c.create_session("ok", lease_minutes=1441), "lease_minutes"),
    (lambda c: c.create_session("ok", lease_minutes=-1), "lease_minutes"),
    (lambda c: c.create_session("ok", lease_minutes=True), "lease_minutes"),
    (lambda c: c.create_session("ok", size="Tiny", lease_minutes=10), "size"),
    (lambda c: c.update_session("ok", lease_minutes=2000), "lease_minutes"),
    (lambda c: c.get_session(""), "session_id"),
])
async def test_bad_arguments_are_refused_before_sending(call: Any, argument: str) -> None:
    """ARR's own rules are checked locally, and the error names the argument."""
    fake = FakeArr()
    async with make_client(fake) as client:
        with pytest.raises(InvalidRequestError) as caught:
            await call(client)
    assert caught.value.argument == argument
    assert argument in str(caught.value)
    assert fake.arr_requests == [] and fake.sts_calls == 0


async def test_create_sends_size_and_lease() -> None:
    """create_session PUTs the spec's body, with the stable api-version."""
    fake = FakeArr(default=httpx.Response(201, json=session_json("new", "Starting")))
    async with make_client(fake) as client:
        session = await client.create_session("new", size="premium", lease_minutes=45)
    request = fake.arr_requests[0]
    assert request.method == "PUT"
    assert request.url.path == f"/accounts/{ACCOUNT}/sessions/new"
    assert request.url.params["api-version"] == "2021-01-01"
    assert json.loads(request.content) == {"maxLeaseTimeMinutes": 45, "size": "Premium"}
    assert session.status is SessionStatus.STARTING and session.remaining_minutes is None


@pytest.mark.parametrize("variation", [
    {"arrInspectorPort": 0, "handshakePort": 0, "hostname": None, "teraflops": 0.0, "error": None},
    {"creationTime": "2021-01-29T16:04:29.1569219+00:00"},
    {"creationTime": "2020-11-11T11:11:11.111Z"},
    {"creationTime": "2021-01-29T16:04:29"},
    {"brandNewField": {"nested": True}, "size": "standard"},
    {"error": {"code": "X", "message": "m", "details": None, "target": None, "innerError": {"code": "Y",
                                                                                          "message": "n"}}},
])
async def test_parses_every_recorded_variation(variation: dict[str, Any]) -> None:
    """Ports 0, null hostnames, 7 fraction digits, Z, naive times, unknown fields and inner errors all parse."""
    body = session_json("v", "Starting", **variation)
    fake = FakeArr(default=httpx.Response(200, json=body))
    async with make_client(fake) as client:
        session = await client.get_session("v")
    assert session.handshake_port is None or "handshakePort" not in variation
    assert session.created_at is not None and session.created_at.tzinfo is not None
    assert session.size is SessionSize.STANDARD
    if "innerError" in str(variation):
        assert session.error is not None and session.error.inner_error is not None
        assert session.error.inner_error.code == "Y"
    if "brandNewField" in variation:
        assert session.model_extra == {"brandNewField": {"nested": True}}


@pytest.mark.parametrize(("response", "code", "message"), [
    (httpx.Response(500, content=b""), "InternalServerError", "Internal Server Error"),
    (httpx.Response(502, content=b"<html>bad gateway</html>"), "InternalServerError", "Bad Gateway"),
    (httpx.Response(500, content=b"upstream broke"), "InternalServerError", "upstream broke"),
    (httpx.Response(500, json={"error": {"code": "InternalServerError", "message": "boom", "details": None,
                                         "target": None, "innerError": None}}), "InternalServerError", "boom"),
])
async def test_error_bodies_of_every_shape(response: httpx.Response, code: str, message: str) -> None:
    """Empty, HTML, plain-text and full error bodies all become a readable ServiceError."""
    fake = FakeArr(default=response)
    async with make_client(fake, attempts=1) as client:
        with pytest.raises(ServiceError) as caught:
            await client.get_session("s1")
    assert (caught.value.code, caught.value.message) == (code, message)


async def test_unreadable_success_body_is_a_service_error() -> None:
    """A 200 that is not a session is reported as InvalidResponse, not as a crash."""
    fake = FakeArr(default=httpx.Response(200, content=b"not json"))
    async with make_client(fake) as client:
        with pytest.raises(ServiceError) as caught:
            await client.get_session("s1")
    assert caught.value.code == "InvalidResponse"


async def test_list_follows_next_link() -> None:
    """list_sessions walks @nextLink pages with the same auth."""
    page2 = f"{ENDPOINT}/accounts/{ACCOUNT}/sessions?api-version=2021-01-01&skip=2"
    fake = FakeArr(script=[
        httpx.Response(200, json={"sessions": [session_json("a"), session_json("b")], "@nextLink": page2}),
        httpx.Response(200, json={"sessions": [session_json("c", "Starting")]}),
    ])
    async with make_client(fake) as client:
        ids = [s.id async for s in client.list_sessions()]
    assert ids == ["a", "b", "c"]
    assert fake.arr_requests[1].url.params["skip"] == "2"
    assert fake.arr_requests[1].headers["Authorization"].startswith("Bearer ")


async def test_list_refuses_next_link_to_another_host() -> None:
    """The bearer token is never sent to a host other than the service's."""
    fake = FakeArr(script=[httpx.Response(200, json={"sessions": [], "@nextLink": "https://evil.example/steal"})])
    async with make_client(fake) as client:
        with pytest.raises(ServiceError):
            _ = [s async for s in client.list_sessions()]
    assert len(fake.arr_requests) == 1


async def test_stop_returns_none() -> None:
    """stop_session POSTs /:stop and returns None on 204."""
    fake = FakeArr(default=httpx.Response(204))
    async with make_client(fake) as client:
        assert await client.stop_session("s1") is None
    assert fake.arr_requests[0].url.path.endswith("/sessions/s1/:stop")


async def test_managed_identity_credential_is_exchanged_at_the_sts() -> None:
    """An azure-core TokenCredential is asked for <sts>/.default and its token goes to the STS."""
    seen: list[str] = []

    class FakeIdentity:
        async def get_token(self, *scopes: str, **_: Any) -> Any:
            seen.extend(scopes)
            return type("AccessToken", (), {"token": "aad-token", "expires_on": 0})()

    sts_auth: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host.startswith("sts."):
            sts_auth.append(request.headers["Authorization"])
            return httpx.Response(200, json={"AccessToken": "sts-token"})
        return httpx.Response(200, json=session_json())

    client = ArrClient(ENDPOINT, ACCOUNT, DOMAIN, FakeIdentity(),
                       http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    async with client:
        await client.get_session("s1")
    assert seen == [f"https://sts.{DOMAIN}/.default"]
    assert sts_auth == ["Bearer aad-token"]


async def test_secrets_never_reach_logs_errors_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    """Neither the account key nor the STS token appears in a log line, an exception or a repr."""
    caplog.set_level(logging.DEBUG)
    token = jwt(2_000_000_000)
    fake = FakeArr(token=token, script=[httpx.Response(401), httpx.Response(500, content=b"")],
                   default=httpx.Response(404, json={"error": {"code": "NotFound", "message": "gone"}}))
    client = make_client(fake, attempts=1)
    texts = [repr(client), repr(AccountKeyCredential(SECRET_KEY)), repr(StaticAccessToken(token)),
             repr(client.tokens), repr(client.tokens._token)]
    async with client:
        for _ in range(2):
            try:
                await client.get_session("s1")
            except Exception as exc:  # noqa: BLE001 - the text of every error is checked
                texts += [str(exc), repr(exc), repr(exc.__cause__), repr(exc.__context__)]
    texts += [r.getMessage() for r in caplog.records]
    assert any("MS-CV" in t for t in texts)
    for text in texts:
        assert SECRET_KEY not in text
        assert token not in text


def test_importing_arr_core_does_not_import_azure_identity() -> None:
    """Cold start: azure.identity (slow to import) is only loaded when managed identity is used."""
    code = "import sys, arr_core; print('azure.identity' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_borrowed_http_client_is_left_unchanged_and_timeout_is_honoured() -> None:
    """A caller's http_client keeps its headers and timeout; ours (User-Agent, timeout=) go with each request.

    Before: timeout=7 was ignored for a borrowed client (its own 5 s was sent) and the User-Agent sent was httpx's
    ("python-httpx/…"): setting ours as a default on the client never replaced httpx's.
    """
    seen: list[tuple[str, str, dict[str, float]]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host.split(".")[0], request.headers["User-Agent"], request.extensions["timeout"]))
        if request.url.host.startswith("sts."):
            return httpx.Response(200, json={"AccessToken": "t"})
        return httpx.Response(200, json=session_json())

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), headers={"X-Caller": "mine"}, timeout=5.0)
    headers, timeout = dict(http.headers), http.timeout
    async with ArrClient(ENDPOINT, ACCOUNT, DOMAIN, AccountKeyCredential(SECRET_KEY), http_client=http,
                         timeout=httpx.Timeout(7.0)) as client:
        await client.get_session("s1")
    assert dict(http.headers) == headers
    assert http.timeout == timeout
    assert not http.is_closed
    seven = {"connect": 7.0, "read": 7.0, "write": 7.0, "pool": 7.0}
    assert seen == [("sts", "arr-sessions/1.0", seven), ("remoterendering", "arr-sessions/1.0", seven)]

    seen.clear()
    async with ArrClient(ENDPOINT, ACCOUNT, DOMAIN, AccountKeyCredential(SECRET_KEY), http_client=http) as client:
        await client.get_session("s1")
    five = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}
    assert [t for _, _, t in seen] == [five, five]  # without timeout=, the borrowed client's own
    await http.aclose()


async def test_own_http_client_sends_user_agent_and_default_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a borrowed client, requests carry our User-Agent and the default 30 s (connect 10 s) timeout."""
    fake = FakeArr()
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return await fake(request)

    monkeypatch.setattr(httpx, "AsyncClient", functools.partial(httpx.AsyncClient,
                                                                transport=httpx.MockTransport(handler)))
    async with ArrClient(ENDPOINT, ACCOUNT, DOMAIN, AccountKeyCredential(SECRET_KEY)) as client:
        await client.get_session("s1")
    assert [r.headers["User-Agent"] for r in seen] == ["arr-sessions/1.0"] * 2
    assert seen[-1].extensions["timeout"] == {"connect": 10.0, "read": 30.0, "write": 30.0, "pool": 30.0}
