"""One HTTP exchange with ARR or the STS: sent, timed, logged with its MS-CV, failures turned into ArrErrors.

An answer is read as it streams in, up to :data:`MAX_ANSWER_BYTES` (more is a :class:`ServiceError`, never a
gigabyte in memory), and the whole exchange, a body that trickles in included, ends within the timeout's read time
(and the request's budget): a service we do not control cannot hold memory or a request.

Nothing here logs headers or bodies, so no key or token can reach a log line. Each exchange carries its own
User-Agent and timeout rather than relying on the ``httpx.AsyncClient``'s, so a client borrowed from the caller is
used as is and never changed; and the timeout is cut to what is left of the request's budget, so a silent service
cannot hold a request past it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import httpx

from .. import deadline
from ..errors import ServiceError, ServiceTimeoutError, TransportError
from .responses import correlation_id

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
USER_AGENT = "arr-sessions/1.0"
# ARR's largest answer is the list of an account's sessions: about 400 bytes a session, so 16 MiB is 40 000 of them.
MAX_ANSWER_BYTES = 16 * 1024 * 1024

log = logging.getLogger("arr_core.http")


def within_budget(timeout: httpx.Timeout) -> httpx.Timeout:
    """``timeout`` with every phase cut to what is left of the request's budget (unchanged outside a budget)."""
    if deadline.remaining() is None:
        return timeout

    def cut(seconds: float | None) -> float:
        return deadline.bounded(math.inf if seconds is None else seconds)

    return httpx.Timeout(connect=cut(timeout.connect), read=cut(timeout.read), write=cut(timeout.write),
                         pool=cut(timeout.pool))


async def send_logged(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    timeout: httpx.Timeout,
    headers: dict[str, str],
    **kwargs: Any,
) -> httpx.Response:
    """Send one request; a failure to get an answer raises :class:`TransportError` (or its timeout subclass)."""
    started = time.perf_counter()
    path = httpx.URL(url).path
    limit = within_budget(timeout)
    request = http.build_request(method, url, headers={"User-Agent": USER_AGENT, **headers}, timeout=limit, **kwargs)
    try:
        async with asyncio.timeout(limit.read):  # the whole exchange: a body that trickles in counts too
            response = await read_capped(http, request, MAX_ANSWER_BYTES)
    except (httpx.TimeoutException, TimeoutError) as exc:
        log.warning("ARR %s %s timed out after %.0f ms", method, path, (time.perf_counter() - started) * 1000)
        msg = f"{method} {path} timed out ({type(exc).__name__})"
        raise ServiceTimeoutError(msg) from exc
    except httpx.TransportError as exc:
        log.warning("ARR %s %s failed: %s", method, path, type(exc).__name__)
        msg = f"{method} {path} could not reach the service ({type(exc).__name__})"
        raise TransportError(msg) from exc
    except AnswerTooLarge as exc:
        log.warning("ARR %s %s answered %d with more than %d bytes", method, path, exc.response.status_code,
                    MAX_ANSWER_BYTES)
        msg = f"{method} {path}: {exc}"
        raise ServiceError(msg, status_code=exc.response.status_code) from exc
    elapsed_ms = (time.perf_counter() - started) * 1000
    level = logging.INFO if response.status_code < 500 else logging.WARNING
    log.log(level, "ARR %s %s -> %d in %.0f ms (MS-CV %s)", method, path, response.status_code, elapsed_ms,
            correlation_id(response) or "-")
    return response


class AnswerTooLarge(Exception):
    """An answer longer than the caller's limit (its status and headers are in ``response``)."""

    def __init__(self, response: httpx.Response, limit: int) -> None:
        super().__init__(f"the answer is longer than {limit} bytes")
        self.response = response


async def read_capped(http: httpx.AsyncClient, request: httpx.Request, limit: int) -> httpx.Response:
    """Send ``request`` and read at most ``limit`` bytes of the answer; the answer with that body, read whole.
    :class:`AnswerTooLarge` beyond it (the rest is never read: the connection is closed)."""
    response = await http.send(request, stream=True)
    try:
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise AnswerTooLarge(response, limit)
            chunks.append(chunk)
    finally:
        await response.aclose()
    headers = [(k, v) for k, v in response.headers.multi_items()  # the body as read: decoded, whole
               if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
    return httpx.Response(response.status_code, headers=headers, content=b"".join(chunks), request=request,
                          extensions=response.extensions)
