"""Credentials, and the Mixed Reality STS token they are exchanged for.

Every ARR call carries an STS access token. Three ways to get one, one interface:

- :class:`AccountKeyCredential`: ``Bearer <account_id>:<key>`` at the STS (development; the key is a secret).
- any azure-core async ``TokenCredential`` (managed identity): an Entra ID token for ``<sts>/.default``, exchanged
  at the STS the same way. ``azure.identity`` is never imported here: the caller builds the credential.
- :class:`StaticAccessToken`: an STS token obtained elsewhere; it cannot be refreshed.

The STS token is cached until shortly before its JWT ``exp``; concurrent callers share one in-flight exchange.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx

from ..errors import ServiceError
from .responses import correlation_id, error_from_response, json_body
from .retries import RetryPolicy
from .transport import DEFAULT_TIMEOUT, send_logged

STS_API_VERSION = "2019-02-28-preview"
log = logging.getLogger("arr_core.auth")


class _Secret:
    """A secret given as text: refused when empty, never shown by ``repr``."""

    __slots__ = ("_secret",)
    _what = "secret"

    def __init__(self, secret: str) -> None:
        if not secret:
            msg = f"the {self._what} is empty"
            raise ValueError(msg)
        self._secret = secret

    def __repr__(self) -> str:
        return f"{type(self).__name__}('***')"


class AccountKeyCredential(_Secret):
    """An ARR account key."""

    __slots__ = ()
    _what = "account key"

    def bearer(self, account_id: str) -> str:
        """The STS's ``Authorization`` value for key authentication."""
        return f"Bearer {account_id}:{self._secret}"


class StaticAccessToken(_Secret):
    """An STS access token obtained elsewhere; used as is and never refreshed."""

    __slots__ = ()
    _what = "access token"

    @property
    def token(self) -> str:
        """The token itself."""
        return self._secret


@runtime_checkable
class TokenCredential(Protocol):
    """What azure-core's (async) ``TokenCredential`` offers; satisfied by every ``azure.identity`` credential."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any: ...


Credential = AccountKeyCredential | StaticAccessToken | TokenCredential


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (an int, or a string in some recordings); None when it is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return float(payload["exp"])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class _CachedToken:
    value: str
    expires_at: float

    def __repr__(self) -> str:
        return f"_CachedToken(value='***', expires_at={self.expires_at})"


class StsTokenCache:
    """Obtains, caches and refreshes the STS token for one account.

    ``refresh_margin`` seconds before ``exp`` the token is replaced. A token whose ``exp`` is already past when it
    is issued (clock skew, or no JWT at all) is kept for ``fallback_lifetime`` seconds: ARR's 401 is the judge, and
    a 401 forces one refresh. The exchange is retried by ``retry`` within the request's time budget, and each try
    is bounded by ``timeout`` cut to what is left of that budget, like every ARR call.
    """

    def __init__(
        self,
        credential: Credential,
        *,
        account_id: str,
        sts_endpoint: str,
        http: httpx.AsyncClient,
        retry: RetryPolicy,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = 300.0,
        fallback_lifetime: float = 900.0,
    ) -> None:
        self._credential = credential
        self._account_id = account_id
        self._sts_endpoint = sts_endpoint.rstrip("/")
        self._http = http
        self._retry = retry
        self._timeout = timeout
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._fallback_lifetime = fallback_lifetime
        self._token: _CachedToken | None = None
        self._lock = asyncio.Lock()
        self.exchanges = 0

    @property
    def refreshable(self) -> bool:
        """A static token cannot be replaced, so a 401 with it is final."""
        return not isinstance(self._credential, StaticAccessToken)

    @property
    def scope(self) -> str:
        """The Entra ID scope the STS accepts tokens for."""
        return f"{self._sts_endpoint}/.default"

    def _fresh(self, token: _CachedToken | None) -> bool:
        return token is not None and self._clock() < token.expires_at - self._refresh_margin

    async def get_token(self, *, stale: str | None = None) -> str:
        """A valid STS token. ``stale`` is a token ARR refused: it is replaced unless another caller already did."""
        token = self._token
        if token is not None and stale is None and self._fresh(token):
            return token.value
        async with self._lock:
            token = self._token
            if token is not None and (token.value != stale if stale else self._fresh(token)):
                return token.value
            self._token = await self._obtain()
            return self._token.value

    async def refresh(self) -> str:
        """Exchange the credential for a new token now, whatever the cached one's age."""
        token = self._token
        return await self.get_token(stale=token.value if token else None)

    async def _obtain(self) -> _CachedToken:
        if isinstance(self._credential, StaticAccessToken):
            return _CachedToken(self._credential.token, math.inf)
        value = await self._retry.call(self._exchange, what="STS token exchange")
        self.exchanges += 1
        now = self._clock()
        exp = jwt_expiry(value)
        return _CachedToken(value, exp if exp is not None and exp > now else now + self._fallback_lifetime)

    async def _authorization(self) -> str:
        if isinstance(self._credential, AccountKeyCredential):
            return self._credential.bearer(self._account_id)
        result = self._credential.get_token(self.scope)
        if inspect.isawaitable(result):
            result = await result
        return f"Bearer {result.token}"

    async def _exchange(self) -> str:
        url = f"{self._sts_endpoint}/Accounts/{self._account_id}/token"
        headers = {
            "Authorization": await self._authorization(),
            "Accept": "application/json",
            "X-MRC-CV": base64.b64encode(secrets.token_bytes(16)).decode()[:22],
        }
        response = await send_logged(self._http, "GET", url, params={"api-version": STS_API_VERSION}, headers=headers,
                                     timeout=self._timeout)
        if response.is_error:
            raise error_from_response(response)
        body = json_body(response)
        token = body.get("AccessToken") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            msg = "the STS answered without an AccessToken"
            raise ServiceError(msg, status_code=response.status_code, code="InvalidResponse",
                               correlation_id=correlation_id(response))
        return token

