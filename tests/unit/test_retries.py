"""Retries within the request's time budget: no wait that would cross it, nothing sent once it is spent, each
attempt's timeout cut to what is left, and every retry logged (attempt, wait, reason, MS-CV) without secrets.

Waits run on an injected clock (test_client.py's FakeClock) so no test sleeps; only the silent-service tests
use real time, half a second each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from arr_core import (
    AccountKeyCredential,
    ArrClient,
    RetryPolicy,
    ServiceTimeoutError,
    StaticAccessToken,
    ThrottledError,
)
from arr_core.arr.retries import parse_retry_after
from arr_core.deadline import budget
from arr_core.errors import DeadlineExceeded

from .test_client import ACCOUNT, DOMAIN, ENDPOINT, SECRET_KEY, FakeArr, FakeClock, jwt, make_client, session_json


def throttled(seconds: str, cv: str = "t.0") -> httpx.Response:
    return httpx.Response(429, headers={"Retry-After": seconds, "MS-CV": cv})


async def test_no_retry_whose_wait_would_cross_the_budget() -> None:
    """Inside budget(10), two 429s asking for 6 s: one wait of 6 s, then the caller gets ARR's 429 and its 6 s.

    Before: 3 attempts and 12 s of waits (the second wait crossed the budget; the call succeeded after it).
    """
    clock = FakeClock()
    fake = FakeArr(script=[throttled("6"), throttled("6", "t.1")])
    async with budget(10, clock=clock), make_client(fake, clock) as client:
        with pytest.raises(ThrottledError) as caught:
            await client.get_session("s1")
    assert len(fake.arr_requests) == 2
    assert clock.slept == [6.0]
    assert sum(clock.slept) <= 10
    assert caught.value.retry_after == 6.0
    assert caught.value.correlation_id == "t.1"


async def test_extend_with_two_429s_per_call_stays_within_the_default_budget() -> None:
    """An extend (get + update) meeting two 429s of Retry-After 29 in each call waits at most the 90 s budget.

    Before: 116 s of waits (29 s x 4, 6 ARR requests), each call within its own 60 s retry deadline, together past
    Logic Apps' 120 s once ARR's own latency is added (measured on 722ba1b with this scenario). After: 87 s of waits
    (29 s x 3); the update's second wait would end past 90 s, so the caller gets ARR's 429 with its Retry-After of
    29 s, which the HTTP layer answers as 503 + Retry-After: 29.
    """
    clock = FakeClock()
    fake = FakeArr(script=[throttled("29"), throttled("29"), httpx.Response(200, json=session_json()),
                           throttled("29"), throttled("29")])
    async with budget(clock=clock), make_client(fake, clock) as client:
        await client.get_session("s1")
        with pytest.raises(ThrottledError) as caught:
            await client.update_session("s1", lease_minutes=60)
    assert clock.slept == [29.0, 29.0, 29.0]
    assert sum(clock.slept) <= 90
    assert len(fake.arr_requests) == 5
    assert caught.value.retry_after == 29.0


async def test_spent_budget_sends_nothing() -> None:
    """Once the budget is spent, a call raises DeadlineExceeded without asking the STS or ARR anything."""
    clock = FakeClock()
    fake = FakeArr()
    async with budget(10, clock=clock), make_client(fake, clock) as client:
        clock.now += 10
        with pytest.raises(DeadlineExceeded):
            await client.get_session("s1")
    assert fake.arr_requests == []
    assert fake.sts_calls == 0


@dataclass
class OversleepingClock(FakeClock):
    """A sleep that wakes late, as real ones do: the budget can be spent when the next attempt is due."""

    late: float = 1.0

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds + self.late


async def test_budget_spent_during_a_wait_raises_the_last_error() -> None:
    """When the budget ran out between attempts, the caller gets ARR's last answer (with Retry-After), not a 504."""
    clock = OversleepingClock()
    fake = FakeArr(script=[throttled("9.5")])
    async with budget(10, clock=clock), make_client(fake, clock) as client:
        with pytest.raises(ThrottledError) as caught:
            await client.get_session("s1")
    assert len(fake.arr_requests) == 1
    assert clock.slept == [9.5]
    assert caught.value.retry_after == 9.5


@dataclass
class Sts:
    """An STS that answers the scripted responses first, then tokens; records each request's timeout."""

    script: list[httpx.Response] = field(default_factory=list)
    calls: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.script:
            return self.script.pop(0)
        return httpx.Response(200, json={"AccessToken": jwt(2_000_000_000)})


async def test_sts_exchange_follows_the_budget() -> None:
    """The STS token exchange is retried by the same rules: no wait across the budget, its 429 kept for the caller."""
    clock = FakeClock()
    sts = Sts(script=[throttled("6", "sts.0"), throttled("6", "sts.1")])
    arr: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host.startswith("sts."):
            return sts(request)
        arr.append(request)
        return httpx.Response(200, json=session_json())

    async with budget(10, clock=clock), ArrClient(
        ENDPOINT, ACCOUNT, DOMAIN, AccountKeyCredential(SECRET_KEY), clock=clock,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        retry=RetryPolicy(sleep=clock.sleep, clock=clock),
    ) as client:
        with pytest.raises(ThrottledError) as caught:
            await client.get_session("s1")
    assert sts.calls == 2
    assert arr == []
    assert clock.slept == [6.0]
    assert (caught.value.retry_after, caught.value.correlation_id) == (6.0, "sts.1")


async def test_each_attempt_timeout_is_cut_to_what_is_left() -> None:
    """Every request (STS and ARR) carries the configured timeout cut to the budget left when it is sent."""
    clock = FakeClock()
    timeouts: list[tuple[str, dict[str, float]]] = []
    fake = FakeArr(script=[throttled("6")])

    async def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append((request.url.host.split(".")[0], request.extensions["timeout"]))
        return await fake(request)

    async with budget(20, clock=clock), ArrClient(
        ENDPOINT, ACCOUNT, DOMAIN, AccountKeyCredential(SECRET_KEY), clock=clock,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        retry=RetryPolicy(sleep=clock.sleep, clock=clock), timeout=httpx.Timeout(30.0, connect=10.0),
    ) as client:
        await client.get_session("s1")
    assert timeouts == [
        ("sts", {"connect": 10.0, "read": 20.0, "write": 20.0, "pool": 20.0}),
        ("remoterendering", {"connect": 10.0, "read": 20.0, "write": 20.0, "pool": 20.0}),
        ("remoterendering", {"connect": 10.0, "read": 14.0, "write": 14.0, "pool": 14.0}),
    ]


async def test_silent_arr_times_out_at_the_budget_as_a_service_timeout() -> None:
    """ARR silent inside budget(10): the read times out when the budget does (not after the configured 30 s), and
    the caller gets ServiceTimeoutError (504) after that one attempt; no retry is begun with nothing left."""
    clock = FakeClock()
    reads: list[float] = []

    async def silent(request: httpx.Request) -> httpx.Response:
        if request.url.host.startswith("sts."):
            return httpx.Response(200, json={"AccessToken": "t"})
        reads.append(request.extensions["timeout"]["read"])
        clock.now += request.extensions["timeout"]["read"]  # as httpcore would: wait out the read timeout
        raise httpx.ReadTimeout("silent", request=request)

    async with budget(10, clock=clock), ArrClient(
        ENDPOINT, ACCOUNT, DOMAIN, AccountKeyCredential(SECRET_KEY), clock=clock,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(silent)), timeout=httpx.Timeout(30.0),
        retry=RetryPolicy(sleep=clock.sleep, clock=clock),
    ) as client:
        started = clock.now
        with pytest.raises(ServiceTimeoutError):
            await client.get_session("s1")
    assert reads == [10.0]
    assert clock.now - started == 10.0
    assert clock.slept == []


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A TCP server that accepts connections and never answers: ARR (or its STS) gone silent."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    yield f"http://{host}:{port}"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize("silent", ["arr", "sts"])
async def test_silent_service_ends_with_the_budget(silent_server: str, silent: str) -> None:
    """A service that accepts and never answers cannot hold a request past budget(0.5), with real httpx and time."""
    arr_url = silent_server if silent == "arr" else "http://127.0.0.1:9"
    credential = StaticAccessToken("t") if silent == "arr" else AccountKeyCredential(SECRET_KEY)
    started = time.monotonic()
    with pytest.raises((ServiceTimeoutError, DeadlineExceeded)):
        async with budget(0.5), ArrClient(arr_url, ACCOUNT, DOMAIN, credential, sts_endpoint=silent_server) as client:
            await client.get_session("s1")
    assert time.monotonic() - started < 1.0


async def test_retries_are_logged_with_attempt_wait_reason_and_ms_cv(caplog: pytest.LogCaptureFixture) -> None:
    """Each retry says which attempt comes next, after how long, why, and ARR's MS-CV; no key or token is logged."""
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    token = jwt(2_000_000_000)
    script: list[httpx.Response | type[httpx.TransportError]] = [
        throttled("2", "cv-429.0"), httpx.Response(503, headers={"MS-CV": "cv-503.0"}), httpx.ConnectError]
    sts_requests = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal sts_requests
        if request.url.host.startswith("sts."):
            sts_requests += 1
            return httpx.Response(200, json={"AccessToken": token})
        step = script.pop(0) if script else httpx.Response(200, json=session_json())
        if isinstance(step, httpx.Response):
            return step
        raise step("refused", request=request)

    async with ArrClient(ENDPOINT, ACCOUNT, DOMAIN, AccountKeyCredential(SECRET_KEY), clock=clock,
                         http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
                         retry=RetryPolicy(sleep=clock.sleep, clock=clock, jitter=0.0)) as client:
        await client.get_session("s1")
    retries = [r for r in caplog.records if r.name == "arr_core.retries"]
    path = f"/accounts/{ACCOUNT}/sessions/s1"
    assert [r.getMessage() for r in retries] == [
        f"ARR GET {path}: attempt 2 of 5 in 2.0 s after 429 (MS-CV cv-429.0)",
        f"ARR GET {path}: attempt 3 of 5 in 1.0 s after 503 (MS-CV cv-503.0)",
        f"ARR GET {path}: attempt 4 of 5 in 2.0 s after ConnectError (MS-CV -)",
    ]
    assert [(r.retry_attempt, r.retry_wait, r.retry_reason, r.ms_cv) for r in retries] == [  # type: ignore[attr-defined]
        (2, 2.0, "429", "cv-429.0"), (3, 1.0, "503", "cv-503.0"), (4, 2.0, "ConnectError", "-")]
    assert {r.levelno for r in retries} == {logging.WARNING}
    assert clock.slept == [2.0, 1.0, 2.0]
    assert sts_requests == 1
    for record in caplog.records:
        assert SECRET_KEY not in record.getMessage()
        assert token not in record.getMessage()
        assert SECRET_KEY not in str(record.__dict__)
        assert token not in str(record.__dict__)


async def test_giving_up_for_the_budget_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A retry not made because of the budget says so, so that a 503 after one attempt is explained in the log."""
    caplog.set_level(logging.INFO, logger="arr_core.retries")
    clock = FakeClock()
    fake = FakeArr(script=[throttled("29", "cv.9")])
    async with budget(10, clock=clock), make_client(fake, clock) as client:
        with pytest.raises(ThrottledError):
            await client.get_session("s1")
    assert [r.getMessage() for r in caplog.records if r.name == "arr_core.retries"] == [
        f"ARR GET /accounts/{ACCOUNT}/sessions/s1: not retrying after 429 (MS-CV cv.9): a wait of 29.0 s would "
        "cross the request's budget"]


@pytest.mark.parametrize(("header", "seconds"), [("inf", None), ("1e999", None), ("nan", None), ("-5", 0.0),
                                                 ("86400", 3600.0), ("7", 7.0)])
def test_unusable_retry_after_values_are_not_waited_for(header: str, seconds: float | None) -> None:
    """Review finding: "1e999" parsed as infinity, and the edge's math.ceil(inf) raised OverflowError: a raw 500.
    Non-finite values are unreadable; others are clamped to [0, 1 h]."""
    assert parse_retry_after(header) == seconds


def test_an_infinite_retry_after_still_answers_503_problem() -> None:
    """The same header from ARR through the edge: 503 problem+json with a finite Retry-After."""
    import asyncio

    import azure.functions as func

    import blueprints.http as edge
    from arr_core.errors import ThrottledError

    @edge.handled
    async def throttled(req: func.HttpRequest) -> func.HttpResponse:
        raise ThrottledError("throttled", retry_after=parse_retry_after("1e999"), status_code=429)

    response = asyncio.run(throttled(func.HttpRequest("GET", "http://127.0.0.1/api/sessions", body=b"")))
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
