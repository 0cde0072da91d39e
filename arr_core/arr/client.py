"""The async client for the ARR Session Management REST API (2021-01-01)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import httpx
from pydantic import ValidationError

from ..errors import ServiceError
from .auth import Credential, StsTokenCache
from .models import RenderingSession, SessionSize
from .responses import correlation_id, error_from_response, json_body
from .retries import RetryPolicy
from .transport import DEFAULT_TIMEOUT, send_logged
from .validation import check_lease_minutes, check_session_id, check_size

API_VERSION = "2021-01-01"
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

log = logging.getLogger("arr_core")


class ArrClient:
    """Starts, reads, extends, stops and lists ARR rendering sessions of one account.

    One pooled ``httpx.AsyncClient`` serves every call; ``async with`` closes it. A client passed in as
    ``http_client`` belongs to the caller: it is left open and unchanged, since the User-Agent and ``timeout`` go
    with each request (``timeout`` defaults to that client's own). Retries of 429, 5xx and transport failures
    happen inside each call according to ``retry``, within the request's time budget (:mod:`.deadline`), which
    also cuts each request's timeout; a 401 refreshes the STS token once and tries again.

    ``check_arguments=False`` sends arguments unchecked, letting ARR judge them (the replay tests use it to send
    exactly what the recordings sent). ``clock`` (seconds since the epoch) decides when the STS token expires.
    """

    def __init__(
        self,
        endpoint: str,
        account_id: str,
        account_domain: str,
        credential: Credential,
        *,
        sts_endpoint: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | None = None,
        api_version: str = API_VERSION,
        check_arguments: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.account_id = account_id
        self.account_domain = account_domain
        self.api_version = api_version
        self.retry = retry or RetryPolicy()
        self._check = check_arguments
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(limits=DEFAULT_LIMITS)
        self.timeout = timeout or (DEFAULT_TIMEOUT if http_client is None else http_client.timeout)
        self.tokens = StsTokenCache(
            credential,
            account_id=account_id,
            sts_endpoint=sts_endpoint or f"https://sts.{account_domain}",
            http=self._http,
            retry=self.retry,
            timeout=self.timeout,
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"ArrClient(endpoint={self.endpoint!r}, account_id={self.account_id!r})"

    async def __aenter__(self) -> ArrClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool, if this client opened it."""
        if self._owns_http:
            await self._http.aclose()

    # -- operations ---------------------------------------------------------------------------------------------

    async def create_session(
        self, session_id: str, *, size: SessionSize | str = SessionSize.STANDARD, lease_minutes: int
    ) -> RenderingSession:
        """Start a session. Repeating it with the same settings returns the same session (ARR answers 200)."""
        if self._check:
            check_session_id(session_id)
            size = check_size(size)
            check_lease_minutes(lease_minutes)
        body = {"maxLeaseTimeMinutes": lease_minutes, "size": str(size)}
        response = await self._call("PUT", self._session_url(session_id), json=body)
        return _parse_session(response)

    async def get_session(self, session_id: str) -> RenderingSession:
        """Read a session as ARR reports it now (ended sessions stay readable for 30 days)."""
        if self._check:
            check_session_id(session_id)
        return _parse_session(await self._call("GET", self._session_url(session_id)))

    async def update_session(self, session_id: str, *, lease_minutes: int) -> RenderingSession:
        """Set the lease to a new *total* of minutes counted from Ready; ARR wants it larger than before."""
        if self._check:
            check_session_id(session_id)
            check_lease_minutes(lease_minutes)
        body = {"maxLeaseTimeMinutes": lease_minutes}
        return _parse_session(await self._call("PATCH", self._session_url(session_id), json=body))

    async def stop_session(self, session_id: str) -> None:
        """Stop a session; billing ends. A stop cannot be undone."""
        if self._check:
            check_session_id(session_id)
        await self._call("POST", f"{self._session_url(session_id)}/:stop", headers={"Accept": "*/*"})

    async def list_sessions(self) -> AsyncIterator[RenderingSession]:
        """The account's Starting and Ready sessions, following ``@nextLink`` page by page."""
        url: str | None = f"{self.endpoint}/accounts/{self.account_id}/sessions"
        while url is not None:
            response = await self._call("GET", url)
            body = json_body(response)
            if not isinstance(body, dict) or not isinstance(body.get("sessions", []), list):
                raise _unreadable(response, "a session list")
            for item in body.get("sessions") or []:
                yield _parse_session(response, item)
            url = self._next_link(response, body.get("@nextLink"))

    # -- plumbing -----------------------------------------------------------------------------------------------

    def _session_url(self, session_id: str) -> str:
        return f"{self.endpoint}/accounts/{self.account_id}/sessions/{session_id}"

    def _next_link(self, response: httpx.Response, link: object) -> str | None:
        if not link:
            return None
        if not isinstance(link, str):
            raise _unreadable(response, "@nextLink")
        # The token goes wherever the link points: never follow it off the service's own host.
        if httpx.URL(link).host != httpx.URL(self.endpoint).host:
            raise _unreadable(response, "@nextLink on the service's host")
        return link

    def _with_api_version(self, url: str) -> httpx.URL:
        parsed = httpx.URL(url)
        # A @nextLink carries its own query (api-version included): keep it as ARR wrote it.
        return parsed if "api-version" in parsed.params else parsed.copy_add_param("api-version", self.api_version)

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def attempt() -> httpx.Response:
            return await self._send_authorized(method, url, **kwargs)

        # The token first, with the exchange's own retries: inside the call's retries an unreachable STS was tried
        # attempts x attempts times. The attempts then find it cached (or refresh it once, on a 401).
        await self.tokens.get_token()
        return await self.retry.call(attempt, what=f"ARR {method} {httpx.URL(url).path}")

    async def _send_authorized(
        self, method: str, url: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        token = await self.tokens.get_token()
        response = await self._send(method, url, token, headers, **kwargs)
        if response.status_code == 401 and self.tokens.refreshable:
            log.info("ARR refused the STS token (MS-CV %s); refreshing it once", correlation_id(response) or "-")
            token = await self.tokens.get_token(stale=token)
            response = await self._send(method, url, token, headers, **kwargs)
        if response.is_error:
            raise error_from_response(response)
        return response

    async def _send(
        self, method: str, url: str, token: str, headers: dict[str, str] | None, **kwargs: Any
    ) -> httpx.Response:
        all_headers = {"Accept": "application/json", **(headers or {}), "Authorization": f"Bearer {token}"}
        return await send_logged(self._http, method, str(self._with_api_version(url)), headers=all_headers,
                                 timeout=self.timeout, **kwargs)


def _unreadable(response: httpx.Response, what: str) -> ServiceError:
    return ServiceError(
        f"ARR answered {response.status_code} without {what} the client can read",
        status_code=response.status_code,
        code="InvalidResponse",
        correlation_id=correlation_id(response),
    )


def _parse_session(response: httpx.Response, item: Any = None) -> RenderingSession:
    data = json_body(response) if item is None else item
    try:
        return RenderingSession.model_validate(data)
    except ValidationError:
        raise _unreadable(response, "a session") from None
