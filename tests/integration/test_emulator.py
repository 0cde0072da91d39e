"""The ARR emulator: fidelity to the recordings, its clock, faults and load, over real sockets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
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
    SessionStatus,
    ThrottledError,
    TransportError,
)
from conftest import Emulator
from replay_harness import load_entries

RECORDINGS = Path(__file__).parent.parent / "recordings" / "python"


def arr_client(emulator: Emulator, retry: RetryPolicy | None = None, **kwargs: Any) -> ArrClient:
    s = emulator.client_settings()
    return ArrClient(s["endpoint"], s["account_id"], s["account_domain"], AccountKeyCredential(emulator.account_key),
                     sts_endpoint=s["sts_endpoint"], retry=retry or RetryPolicy.off(), **kwargs)


def shape(value: Any) -> Any:
    """The JSON's keys and value types, not its values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


@pytest.mark.parametrize("path", sorted(RECORDINGS.glob("*.json")), ids=lambda p: p.stem)
def test_recorded_sequences_get_the_recorded_answers(emulator: Emulator, path: Path) -> None:
    """Each recorded request, replayed against the emulator, gets the recorded status, body fields and types."""
    entries = load_entries(path)
    token = None
    checked = 0
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        for entry in entries:
            path_ = entry.url.path.replace("00000000-0000-0000-0000-000000000000", emulator.account_id)
            query = dict(entry.url.params)
            if entry.is_sts:
                auth = f"Bearer {emulator.account_id}:{emulator.account_key}"
            else:
                auth = f"Bearer {token}"
            recorded_status = entry.body.get("status") if isinstance(entry.body, dict) else None
            if recorded_status == "Ready":
                emulator.advance(11)  # the recordings waited for Ready; the emulator's clock need not
            content = json.dumps(entry.request_body).encode() if entry.request_body is not None else b""
            response = http.request(entry.method, path_, params=query, content=content,
                                    headers={"Authorization": auth, "Content-Type": "application/json"})
            assert response.status_code == entry.status, f"entry {entry.index}: {response.text}"
            body = response.json() if response.content else None
            expected = entry.body if entry.body not in ([], "") else None
            if entry.is_sts:
                token = body["AccessToken"]
                assert shape(body) == shape(expected)
            else:
                assert shape(body) == shape(expected), f"entry {entry.index}"
            for header in ("MS-CV", "X-Content-Type-Options"):
                assert header in response.headers, f"entry {entry.index}: {header}"
            if not entry.is_sts:
                assert response.headers["api-supported-versions"] == entry.headers["api-supported-versions"]
            if entry.method == "GET":
                assert response.headers["Cache-Control"] == "no-store, no-cache"
            else:
                assert "Cache-Control" not in response.headers
            if entry.body and isinstance(entry.body, dict) and "error" in entry.body:
                assert body == entry.body  # the exact recorded error
            checked += 1
    assert checked == len(entries)


async def test_client_lifecycle_on_the_emulator_clock(emulator: Emulator) -> None:
    """Starting -> Ready (hostname, ports, teraflops appear) -> elapsed minutes count -> Expired after the lease."""
    async with arr_client(emulator) as client:
        created = await client.create_session("life", lease_minutes=5)
        assert created.status is SessionStatus.STARTING and created.hostname is None
        assert (await client.create_session("life", lease_minutes=5)).id == "life"  # 200, same settings
        with pytest.raises(ConflictError):
            await client.create_session("life", lease_minutes=6)
        emulator.advance(10)
        ready = await client.get_session("life")
        assert ready.status is SessionStatus.READY
        assert ready.hostname and ready.handshake_port and ready.arr_inspector_port and ready.teraflops
        emulator.advance(150)
        assert (await client.get_session("life")).elapsed_minutes == 2
        assert (await client.update_session("life", lease_minutes=6)).lease_minutes == 6
        with pytest.raises(InvalidRequestError) as caught:
            await client.update_session("life", lease_minutes=6)
        assert caught.value.status_code == 422
        emulator.advance(6 * 60)
        expired = await client.get_session("life")
        assert expired.status is SessionStatus.EXPIRED and expired.elapsed_minutes == 6
        assert [s.id async for s in client.list_sessions()] == []


async def test_stop_and_list_paging(emulator: Emulator) -> None:
    """Stop gives 204 and Stopped; list shows only Starting/Ready sessions, across @nextLink pages."""
    emulator.reset(pageSize=3)
    async with arr_client(emulator) as client:
        for i in range(8):
            await client.create_session(f"p{i}", lease_minutes=10)
        await client.stop_session("p0")
        await client.stop_session("p0")  # stopping again is harmless
        assert (await client.get_session("p0")).status is SessionStatus.STOPPED
        ids = [s.id async for s in client.list_sessions()]
        with pytest.raises(NotFoundError):
            await client.stop_session("nope")
    assert ids == [f"p{i}" for i in range(1, 8)]
    assert emulator.state()["requests"]["list"] == 3


def test_auth_and_api_version_errors(emulator: Emulator) -> None:
    """Missing or wrong tokens get 401 with WWW-Authenticate; missing or unknown api-version get 400."""
    base = f"{emulator.url}/accounts/{emulator.account_id}/sessions"
    wrong = httpx.get(base, params={"api-version": "2021-01-01"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert httpx.get(base, params={"api-version": "2021-01-01"}).status_code == 401
    no_version = httpx.get(base)
    assert no_version.status_code == 400 and no_version.json()["error"]["code"] == "BadRequest"
    assert httpx.get(base, params={"api-version": "1999-01-01"}).status_code == 400
    sts = f"{emulator.url}/Accounts/{emulator.account_id}/token"
    bad_key = httpx.get(sts, params={"api-version": "2019-02-28-preview"},
                        headers={"Authorization": f"Bearer {emulator.account_id}:wrong"})
    assert bad_key.status_code == 401 and bad_key.content == b""


async def test_scripted_faults(emulator: Emulator) -> None:
    """429 with Retry-After, 500, 503 and dropped connections are served as scripted, and the client copes."""
    async with arr_client(emulator) as client:
        await client.create_session("f", lease_minutes=10)
        emulator.fault(operations=["get"], status=429, retryAfter=4)
        with pytest.raises(ThrottledError) as throttled:
            await client.get_session("f")
        assert throttled.value.retry_after == 4
        emulator.fault(operations=["get"], status=503)
        with pytest.raises(ServiceError):
            await client.get_session("f")
        emulator.fault(operations=["get"], drop=True)
        with pytest.raises(TransportError):
            await client.get_session("f")
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    emulator.fault(operations=["get"], status=429, retryAfter=2, count=2)
    emulator.fault(operations=["get"], status=500)
    async with arr_client(emulator, RetryPolicy(sleep=fake_sleep)) as client:
        assert (await client.get_session("f")).id == "f"
    assert slept[:2] == [2.0, 2.0] and len(slept) == 3


async def test_capacity_limit_fails_sessions_with_an_error(emulator: Emulator) -> None:
    """Past the configured capacity a new session goes to Error with a reason, as an exhausted pool does."""
    emulator.reset(capacity=1)
    async with arr_client(emulator) as client:
        await client.create_session("c1", lease_minutes=10)
        await client.create_session("c2", lease_minutes=10)
        emulator.advance(10)
        failed = await client.get_session("c2")
    assert failed.status is SessionStatus.ERROR
    assert failed.error is not None and failed.error.code == "NoCapacity"


async def test_401_for_another_accounts_token(emulator: Emulator) -> None:
    """A token is only good for its own account."""
    async with arr_client(emulator) as client:
        token = await client.tokens.get_token()
    other = f"{emulator.url}/accounts/ffffffff-0000-0000-0000-000000000000/sessions"
    response = httpx.get(other, params={"api-version": "2021-01-01"}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    with pytest.raises(AuthenticationError):
        async with ArrClient(emulator.url, emulator.account_id, "x", AccountKeyCredential("wrong"),
                             sts_endpoint=emulator.url, retry=RetryPolicy.off()) as bad:
            await bad.get_session("any")


async def test_10000_sessions_and_500_concurrent_requests(emulator: Emulator) -> None:
    """The emulator holds 10 000 sessions and answers 500 concurrent requests without an error."""
    emulator.reset(pageSize=1000, startupSeconds=3600)
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)
    http = httpx.AsyncClient(timeout=60, limits=limits)
    async with arr_client(emulator, http_client=http) as client:
        for start in range(0, 10_000, 500):
            await asyncio.gather(*(client.create_session(f"load-{i}", lease_minutes=60)
                                   for i in range(start, start + 500)))
        reads = await asyncio.gather(*(client.get_session(f"load-{i}") for i in range(0, 10_000, 20)))
        listed = [s async for s in client.list_sessions()]
    await http.aclose()
    assert len(reads) == 500 and all(r.status is SessionStatus.STARTING for r in reads)
    assert len(listed) == 10_000
    assert emulator.state()["requests"]["create"] == 10_000
