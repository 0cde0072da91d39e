"""POSTing a notification to a receiver's URL: the app's one outgoing call to addresses callers chose.

Speaks the receiver's HTTP, so status codes live here (as ARR's live in :mod:`arr_core.client`): one attempt, one
:class:`Outcome`. The address rules of :func:`arr_core.notifications.callback_refusal` are applied again to every
address the receiver's name resolves to, just before connecting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx

from .notifications import address_refusal
from .transport import USER_AGENT

log = logging.getLogger("arr_core.webhooks")
DELIVERY_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class Outcome:
    """What one delivery attempt means for the event."""

    DELIVERED = "delivered"
    RETRY = "retry"
    GONE = "gone"  # 410: the receiver is gone for good; its subscription is removed (the Power Platform convention)
    REFUSED = "refused"  # another 4xx, or an address the app will not call: retrying will not help


def outcome_of(status_code: int | None) -> str:
    """A receiver's answer (None: no answer, or a timeout) as an :class:`Outcome`."""
    if status_code is None or status_code >= 500 or status_code in (408, 425, 429):
        return Outcome.RETRY
    if 200 <= status_code < 300:
        return Outcome.DELIVERED
    if status_code == 410:
        return Outcome.GONE
    return Outcome.REFUSED


async def resolved_refusal(url: str, *, development: bool) -> str | None:
    """Why the receiver's name resolves to an address the app will not call, or None (an unresolvable name is left
    to the connection, which fails and is retried)."""
    host = urlsplit(url).hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return None
    for info in infos:
        refusal = address_refusal(str(info[4][0]), development=development)
        if refusal is not None:
            return f"{host} resolves to {info[4][0]}: {refusal}"
    return None


async def deliver(http: httpx.AsyncClient, url: str, payload: dict[str, Any], *, event_id: str,
                  development: bool) -> str:
    """POST ``payload`` once; the :class:`Outcome`. Never raises for the receiver's failures."""
    refusal = await resolved_refusal(url, development=development)
    if refusal is not None:
        log.warning("notification %s not sent: %s", event_id, refusal)
        return Outcome.REFUSED
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Event-Id": event_id}
    try:
        answer = await http.post(url, content=json.dumps(payload, separators=(",", ":")), headers=headers,
                                 timeout=DELIVERY_TIMEOUT, follow_redirects=False)
    except httpx.HTTPError as exc:
        log.info("notification %s: no answer from the receiver (%s)", event_id, type(exc).__name__)
        return Outcome.RETRY
    outcome = outcome_of(answer.status_code)
    log.info("notification %s: receiver answered %d (%s)", event_id, answer.status_code, outcome)
    return outcome
