"""The credentials and the STS token cache (arr_core/arr/auth.py), against an httpx MockTransport standing in for the
Mixed Reality STS: the exchange's request, the cache and its refresh margin, tokens without a usable ``exp``, a 401's
forced refresh, one exchange for concurrent callers, and what the STS may answer instead of a token."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from arr_core import deadline
from arr_core.arr.auth import (
    STS_API_VERSION,
    AccountKeyCredential,
    StaticAccessToken,
    StsTokenCache,
    TokenCredential,
    jwt_expiry,
)
from arr_core.arr.retries import RetryPolicy
from arr_core.errors import AuthenticationError, ServiceError, ServiceTimeoutError, TransportError

from .harness import FakeClock

ACCOUNT = "11111111-2222-3333-4444-555555555555"
STS = "https://sts.westeurope.mixedreality.azure.com"
KEY = "SuperSecretAccountKey=="
NOW = 1_700_000_000.0


def jwt(exp: Any) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJub25lIn0.{payload}.sig"


@dataclass
class Sts:
    """Answers the token exchange: the ``script`` first (a response, or an exception to raise), then ``token``."""

    token: str = field(default_factory=lambda: jwt(int(NOW) + 3600))
    script: list[httpx.Response | Exception] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    delay: float = 0.0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.script:
            answer = self.script.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return httpx.Response(200, json={"AccessToken": self.token, "AccessTokenExpirationTime": "x"},
                              headers={"MS-CV": "sts.0"})


def cache(sts: Sts, clock: FakeClock | None = None, credential: Any = None, *, attempts: int = 3,
          **options: Any) -> StsTokenCache:
    clock = clock or FakeClock()
    return StsTokenCache(credential or AccountKeyCredential(KEY), account_id=ACCOUNT, sts_endpoint=STS + "/",
                         http=httpx.AsyncClient(transport=httpx.MockTransport(sts)),
                         retry=RetryPolicy(attempts=attempts, sleep=clock.sleep, clock=clock), clock=clock, **options)


# -- the exchange --------------------------------------------------------------------------------------------------

async def test_the_account_key_is_exchanged_at_the_accounts_token_endpoint() -> None:
    sts = Sts()
    tokens = cache(sts)
    assert await tokens.get_token() == sts.token
    [request] = sts.requests
    assert request.method == "GET"
    assert str(request.url).split("?")[0] == f"{STS}/Accounts/{ACCOUNT}/token"  # the trailing / is not doubled
    assert request.url.params["api-version"] == STS_API_VERSION
    assert request.headers["Authorization"] == f"Bearer {ACCOUNT}:{KEY}"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"] == "arr-sessions/1.0"
    cv = request.headers["X-MRC-CV"]
    assert len(cv) == 22 and base64.b64decode(cv + "==")  # a fresh correlation vector base
    assert tokens.exchanges == 1
    await tokens.refresh()
    assert sts.requests[1].headers["X-MRC-CV"] != cv


async def test_a_token_credential_is_asked_for_the_sts_scope_sync_or_async() -> None:
    """An azure-core credential (async, as azure.identity.aio's; or sync) gives an Entra token for <sts>/.default,
    and that token is what the STS is shown."""
    asked: list[tuple[str, ...]] = []

    class AsyncIdentity:
        async def get_token(self, *scopes: str, **_: Any) -> Any:
            asked.append(scopes)
            return type("AccessToken", (), {"token": "aad-async"})()

    class SyncIdentity:
        def get_token(self, *scopes: str, **_: Any) -> Any:
            asked.append(scopes)
            return type("AccessToken", (), {"token": "aad-sync"})()

    for identity, expected in ((AsyncIdentity(), "Bearer aad-async"), (SyncIdentity(), "Bearer aad-sync")):
        assert isinstance(identity, TokenCredential)
        sts = Sts()
        tokens = cache(sts, credential=identity)
        assert tokens.scope == f"{STS}/.default"
        assert tokens.refreshable
        assert await tokens.get_token() == sts.token
        assert sts.requests[0].headers["Authorization"] == expected
    assert asked == [(f"{STS}/.default",)] * 2


async def test_a_static_token_is_used_as_is_never_exchanged_and_never_expires() -> None:
    sts, clock = Sts(), FakeClock()
    tokens = cache(sts, clock, StaticAccessToken("given-elsewhere"))
    assert not tokens.refreshable
    assert await tokens.get_token() == "given-elsewhere"
    clock.now += 10 * 365 * 86400
    assert await tokens.get_token() == "given-elsewhere"
    assert sts.requests == [] and tokens.exchanges == 0


def test_secrets_are_refused_empty_and_never_shown() -> None:
    with pytest.raises(ValueError, match="the account key is empty"):
        AccountKeyCredential("")
    with pytest.raises(ValueError, match="the access token is empty"):
        StaticAccessToken("")
    assert repr(AccountKeyCredential(KEY)) == "AccountKeyCredential('***')"
    assert repr(StaticAccessToken("tok")) == "StaticAccessToken('***')"
    assert AccountKeyCredential(KEY).bearer("acc") == f"Bearer acc:{KEY}"


# -- the cache -----------------------------------------------------------------------------------------------------

async def test_the_token_is_cached_until_the_refresh_margin_before_its_exp() -> None:
    """exp is NOW + 3600 and the margin 300 s: one exchange up to exp - 300, a new one from there."""
    clock = FakeClock()
    sts = Sts(token=jwt(int(NOW) + 3600))
    tokens = cache(sts, clock)
    first = await tokens.get_token()
    clock.now = NOW + 3299
    assert await tokens.get_token() == first
    assert tokens.exchanges == 1
    sts.token = jwt(int(NOW) + 7200)
    clock.now = NOW + 3300  # exactly exp - margin: no longer fresh
    assert await tokens.get_token() == sts.token
    assert tokens.exchanges == 2
    assert "***" in repr(tokens._token) and sts.token not in repr(tokens._token)


async def test_the_refresh_margin_is_a_setting() -> None:
    clock = FakeClock()
    sts = Sts(token=jwt(int(NOW) + 100))
    tokens = cache(sts, clock, refresh_margin=10)
    await tokens.get_token()
    clock.now = NOW + 89
    await tokens.get_token()
    assert tokens.exchanges == 1
    clock.now = NOW + 90
    await tokens.get_token()
    assert tokens.exchanges == 2


@pytest.mark.parametrize("token", ["NotAJwt", jwt(int(NOW) - 60), jwt("soon"), "a.b.c"],
                         ids=["no JWT", "exp already past", "exp not a number", "payload not JSON"])
async def test_a_token_without_a_usable_future_exp_is_kept_for_the_fallback_lifetime(token: str) -> None:
    """FakeClock skew or a token that is no JWT: ARR's 401 is the judge; meanwhile the token lives 900 s (less the
    margin), not zero (an exchange per call) and not forever."""
    clock = FakeClock()
    sts = Sts(token=token)
    tokens = cache(sts, clock)
    assert await tokens.get_token() == token
    clock.now = NOW + 599  # 900 - 300
    await tokens.get_token()
    assert tokens.exchanges == 1
    clock.now = NOW + 600
    await tokens.get_token()
    assert tokens.exchanges == 2


def test_jwt_expiry_reads_exp_as_number_or_numeric_string_and_nothing_else() -> None:
    assert jwt_expiry(jwt(1_607_978_983)) == 1_607_978_983.0
    assert jwt_expiry(jwt("1607978983")) == 1_607_978_983.0
    assert jwt_expiry(jwt(1.5)) == 1.5
    no_exp = base64.urlsafe_b64encode(b'{"aud":"x"}').decode().rstrip("=")
    assert jwt_expiry(f"h.{no_exp}.s") is None
    assert jwt_expiry(jwt(None)) is None
    assert jwt_expiry(jwt([1])) is None
    assert jwt_expiry("only.two") is None
    assert jwt_expiry("a.b.c.d") is None
    assert jwt_expiry("h.!!!.s") is None


async def test_a_stale_token_is_replaced_once_however_many_callers_report_it() -> None:
    """ARR refused the token (401): the first caller that says so gets a new one; a caller that reports the same
    stale token after that gets the new one without another exchange."""
    sts = Sts(token="first")
    tokens = cache(sts)
    assert await tokens.get_token() == "first"
    sts.token = "second"
    assert await tokens.get_token(stale="first") == "second"
    assert await tokens.get_token(stale="first") == "second"
    assert tokens.exchanges == 2
    sts.token = "third"
    assert await tokens.refresh() == "third"  # refresh: whatever the cached token's age
    assert tokens.exchanges == 3


async def test_concurrent_callers_on_a_cold_cache_share_one_exchange() -> None:
    sts = Sts(delay=0.01)
    tokens = cache(sts)
    got = await asyncio.gather(*(tokens.get_token() for _ in range(50)))
    assert set(got) == {sts.token}
    assert len(sts.requests) == 1 and tokens.exchanges == 1


async def test_concurrent_reports_of_one_stale_token_share_one_exchange() -> None:
    sts = Sts(token="old")
    tokens = cache(sts)
    await tokens.get_token()
    sts.token, sts.delay = "new", 0.01
    got = await asyncio.gather(*(tokens.get_token(stale="old") for _ in range(20)))
    assert set(got) == {"new"}
    assert tokens.exchanges == 2


# -- what the STS answers instead --------------------------------------------------------------------------------

async def test_a_refused_key_is_an_authentication_error_at_once() -> None:
    """The STS answers 401 with an empty body to a wrong key: not retried, MS-CV kept, the key nowhere."""
    clock = FakeClock()
    sts = Sts(script=[httpx.Response(401, headers={"MS-CV": "sts-cv.1"})])
    tokens = cache(sts, clock)
    with pytest.raises(AuthenticationError) as caught:
        await tokens.get_token()
    assert caught.value.status_code == 401
    assert caught.value.correlation_id == "sts-cv.1"
    assert caught.value.message == "Unauthorized"
    assert len(sts.requests) == 1 and clock.slept == []
    assert tokens.exchanges == 0 and tokens._token is None
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)


async def test_a_failing_sts_is_retried_then_the_token_is_cached() -> None:
    clock = FakeClock()
    sts = Sts(script=[httpx.Response(503), httpx.ConnectError("refused")])
    tokens = cache(sts, clock)
    assert await tokens.get_token() == sts.token
    assert len(sts.requests) == 3 and len(clock.slept) == 2
    assert tokens.exchanges == 1


async def test_an_sts_that_never_answers_is_a_transport_error_after_the_attempts() -> None:
    sts = Sts(script=[httpx.ConnectError("refused")] * 3)
    with pytest.raises(TransportError):
        await cache(sts, attempts=3).get_token()
    assert len(sts.requests) == 3
    sts = Sts(script=[httpx.ReadTimeout("slow")])
    with pytest.raises(ServiceTimeoutError):
        await cache(sts, attempts=1).get_token()


@pytest.mark.parametrize("answer", [
    httpx.Response(200, json={"accessToken": "wrong case"}, headers={"MS-CV": "cv.2"}),
    httpx.Response(200, json={"AccessToken": ""}, headers={"MS-CV": "cv.2"}),
    httpx.Response(200, json={"AccessToken": 42}, headers={"MS-CV": "cv.2"}),
    httpx.Response(200, json=["AccessToken"], headers={"MS-CV": "cv.2"}),
    httpx.Response(200, content=b"<html>portal</html>", headers={"MS-CV": "cv.2"}),
], ids=["other key", "empty", "not a string", "not an object", "not JSON"])
async def test_an_answer_without_an_access_token_is_an_invalid_response(answer: httpx.Response) -> None:
    sts = Sts(script=[answer])
    tokens = cache(sts, attempts=1)
    with pytest.raises(ServiceError) as caught:
        await tokens.get_token()
    assert caught.value.code == "InvalidResponse"
    assert caught.value.status_code == 200
    assert caught.value.correlation_id == "cv.2"
    assert tokens._token is None


async def test_the_exchange_is_bounded_by_its_timeout_cut_to_the_requests_budget() -> None:
    sts = Sts()
    tokens = cache(sts, timeout=httpx.Timeout(8.0, connect=3.0))
    await tokens.get_token()
    assert sts.requests[0].extensions["timeout"] == {"connect": 3.0, "read": 8.0, "write": 8.0, "pool": 8.0}
    await tokens.refresh()
    async with deadline.budget(2.0):
        await tokens.refresh()
    cut = sts.requests[-1].extensions["timeout"]
    assert all(0 < seconds <= 2.0 for seconds in cut.values()), cut
