"""POSTing a notification to a receiver's URL: the app's one outgoing call to addresses callers chose.

Speaks the receiver's HTTP, so status codes live here (as ARR's live in :mod:`arr_core.arr.client`): one attempt, one
:class:`Outcome`. Only the status of the answer matters: its body is never read (a receiver that answers with
gigabytes costs us nothing), and the whole exchange, headers that trickle in included, ends within
:data:`DELIVERY_SECONDS`. The address rules of :func:`arr_core.outbound.url_rules.callback_refusal` are applied again to every
address the receiver's name resolves to, just before connecting, and the connection goes to a checked address.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from ..arr.transport import USER_AGENT
from .url_rules import address_refusal, callback_refusal

log = logging.getLogger("arr_core.webhooks")
DELIVERY_SECONDS = 10.0  # one attempt, whatever the receiver does: connect, send, and its answer's status line
DELIVERY_TIMEOUT = httpx.Timeout(DELIVERY_SECONDS, connect=5.0)


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


Resolver = Callable[[str], Awaitable[list[str]]]

# Receivers' names are looked up on threads of their own. A lookup holds its thread for as long as the receiver's
# DNS takes (seconds, when a server times out), and the event loop's default executor, where loop.getaddrinfo would
# run it, is shared by every other client of the process: azure-core's aiohttp transport looks up the storage
# account's name there, and the ARR client its endpoint's. A few slow receivers held all its threads (min(32,
# cpus + 4)), and queue sends waited behind them past their 5 s bound (issue 19.6). Here they can delay only each
# other. As many threads as one host runs deliveries at once (batchSize 16 + newBatchThreshold 8, and some room);
# a thread is started only when a lookup finds every other one busy.
RESOLVER_THREADS = 32
_resolver_threads = ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix="receiver-dns")


async def system_resolver(host: str) -> list[str]:
    """The addresses ``host`` resolves to, in the system's order of preference."""
    lookup = functools.partial(socket.getaddrinfo, host, None, type=socket.SOCK_STREAM)
    infos = await asyncio.get_running_loop().run_in_executor(_resolver_threads, lookup)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _Refusal(Exception):
    """The receiver's address is one the app will not call (never leaves this module: it becomes an Outcome)."""


async def checked_addresses(url: httpx.URL, *, development: bool, resolve: Resolver) -> list[str]:
    """The addresses to connect to for ``url``, each checked by :func:`address_refusal`; ``_Refusal`` when any
    is refused (a name that also points at the metadata service is not called at all). ``OSError`` when the name
    does not resolve (it may again later). The name is looked up in the ASCII form that the Host header and TLS
    carry, so that all three name the same host."""
    host = url.raw_host.decode("ascii")
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:  # a name (callback_refusal has made sure the DNS can carry it)
        addresses = await resolve(host)
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    for address in addresses:
        refusal = address_refusal(address, development=development)
        if refusal is not None:
            raise _Refusal(f"{host} resolves to {address}: {refusal}" if address != host else f"{host}: {refusal}")
    return addresses


def pinned(url: httpx.URL, address: str) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """``url`` sent to ``address``, the one that was checked, rather than to its name again: a second lookup is a
    second answer, and a name that resolved to a public address for the check could resolve to the metadata
    service for the connection (DNS rebinding). The Host header and TLS's server name keep the name, so virtual
    hosting and the certificate check see it; the connection is not kept, so that it never carries another name's
    request. (The notifier's client ignores proxy settings: a proxy would connect by name again.)"""
    target = url.copy_with(host=address)
    headers = {"Host": url.netloc.decode("ascii"), "Connection": "close"}
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    return target, headers, extensions


async def deliver(http: httpx.AsyncClient, url: str, payload: dict[str, Any], *, event_id: str,
                  development: bool, resolve: Resolver = system_resolver) -> str:
    """POST ``payload`` once, to the first checked address that accepts a connection; the :class:`Outcome`.
    Never raises for the receiver's failures."""
    refusal = callback_refusal(url, development=development)  # as when it was given: a stored URL is checked again
    if refusal is not None:
        log.warning("notification %s not sent: the URL %s", event_id, refusal)
        return Outcome.REFUSED
    target_url = httpx.URL(url)
    try:
        addresses = await checked_addresses(target_url, development=development, resolve=resolve)
    except _Refusal as exc:
        log.warning("notification %s not sent: %s", event_id, exc)
        return Outcome.REFUSED
    except OSError as exc:
        log.info("notification %s: the receiver's name does not resolve (%s)", event_id, exc)
        return Outcome.RETRY
    body = json.dumps(payload, separators=(",", ":"))
    failures: list[str] = []
    for address in addresses:
        target, host_headers, extensions = pinned(target_url, address)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Event-Id": event_id,
                   **host_headers}
        try:
            async with asyncio.timeout(DELIVERY_SECONDS):
                status = await _status_of(http, http.build_request(
                    "POST", target, content=body, headers=headers, timeout=DELIVERY_TIMEOUT, extensions=extensions))
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # the next address, as a browser would
            failures.append(f"{address}: {type(exc).__name__}: {exc}")
            continue
        except (httpx.HTTPError, TimeoutError) as exc:
            log.info("notification %s: no answer from the receiver (%s)", event_id, type(exc).__name__)
            return Outcome.RETRY
        except Exception:  # whatever else a connection raises, this attempt failed; a later one may not
            log.warning("notification %s: the delivery failed", event_id, exc_info=True)
            return Outcome.RETRY
        outcome = outcome_of(status)
        log.info("notification %s: receiver answered %d (%s)", event_id, status, outcome)
        return outcome
    log.info("notification %s: no address of the receiver accepted a connection (%s)", event_id,
             "; ".join(failures))
    return Outcome.RETRY


async def _status_of(http: httpx.AsyncClient, request: httpx.Request) -> int:
    """Send ``request``; the answer's status. Its body is not read: the connection is closed instead."""
    answer = await http.send(request, stream=True, follow_redirects=False)
    await answer.aclose()
    return answer.status_code
