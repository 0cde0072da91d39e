"""One HTTP exchange with ARR or the STS: sent, timed, logged with its MS-CV, failures turned into ArrErrors.

Nothing here logs headers or bodies, so no key or token can reach a log line.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from .errors import ServiceTimeoutError, TransportError
from .responses import correlation_id

log = logging.getLogger("arr_core.http")


async def send_logged(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """Send one request; a failure to get an answer raises :class:`TransportError` (or its timeout subclass)."""
    started = time.perf_counter()
    path = httpx.URL(url).path
    try:
        response = await http.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        log.warning("ARR %s %s timed out after %.0f ms", method, path, (time.perf_counter() - started) * 1000)
        msg = f"{method} {path} timed out ({type(exc).__name__})"
        raise ServiceTimeoutError(msg) from None
    except httpx.TransportError as exc:
        log.warning("ARR %s %s failed: %s", method, path, type(exc).__name__)
        msg = f"{method} {path} could not reach the service ({type(exc).__name__})"
        raise TransportError(msg) from None
    elapsed_ms = (time.perf_counter() - started) * 1000
    level = logging.INFO if response.status_code < 500 else logging.WARNING
    log.log(level, "ARR %s %s -> %d in %.0f ms (MS-CV %s)", method, path, response.status_code, elapsed_ms,
            correlation_id(response) or "-")
    return response
