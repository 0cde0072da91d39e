"""One HTTP exchange with ARR or the STS: sent, timed, logged with its MS-CV, failures turned into ArrErrors.

Nothing here logs headers or bodies, so no key or token can reach a log line. Each exchange carries its own
User-Agent and timeout rather than relying on the ``httpx.AsyncClient``'s, so a client borrowed from the caller is
used as is and never changed; and the timeout is cut to what is left of the request's budget, so a silent service
cannot hold a request past it.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import httpx

from .. import deadline
from ..errors import ServiceTimeoutError, TransportError
from .responses import correlation_id

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
USER_AGENT = "arr-sessions/1.0"

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
    try:
        response = await http.request(method, url, headers={"User-Agent": USER_AGENT, **headers},
                                      timeout=within_budget(timeout), **kwargs)
    except httpx.TimeoutException as exc:
        log.warning("ARR %s %s timed out after %.0f ms", method, path, (time.perf_counter() - started) * 1000)
        msg = f"{method} {path} timed out ({type(exc).__name__})"
        raise ServiceTimeoutError(msg) from exc
    except httpx.TransportError as exc:
        log.warning("ARR %s %s failed: %s", method, path, type(exc).__name__)
        msg = f"{method} {path} could not reach the service ({type(exc).__name__})"
        raise TransportError(msg) from exc
    elapsed_ms = (time.perf_counter() - started) * 1000
    level = logging.INFO if response.status_code < 500 else logging.WARNING
    log.log(level, "ARR %s %s -> %d in %.0f ms (MS-CV %s)", method, path, response.status_code, elapsed_ms,
            correlation_id(response) or "-")
    return response
