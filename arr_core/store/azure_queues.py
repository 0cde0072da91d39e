"""Azure Storage queues: the :class:`~arr_core.store.queues.Queues` port over the queue SDK.

Read by queue-triggered functions (the Functions host, or ``devhost`` locally, dequeues, retries and moves a message
that keeps failing to ``<queue>-poison``). Messages are JSON, base64-encoded as the host's queue trigger expects by
default. A queue that does not exist yet is created on first use. Imported only by the context of a process that
sends (the module loads the queue SDK).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from .. import deadline
from ..errors import QueueUnavailable
from .azure_table import StorageTarget
from .queues import MAX_DELAY

CALL_SECONDS = 5.0


def client_options() -> dict[str, Any]:
    """The queue client's options, which keep one send within :data:`CALL_SECONDS` (issue 19.6).

    - No per-call trip through the event loop's default executor: aiohttp's ``trust_env`` (azure-core's
      ``use_env_settings``, on by default) looks up ~/.netrc and the proxy variables in a worker thread on every
      request, two thread hops per send. That executor is shared: when its threads were busy (receivers' names that
      resolve slowly), sends waited for one past their bound. Only a proxy set in the environment needs it (netrc
      cannot apply: each request is signed), as for tables (``azure_table.CLIENT_OPTIONS``).
    - One quick retry of a dropped connection (after 0.1-0.3 s), rather than the SDK's default of 3 retries from
      15 s (15-21 s before the first: never within the bound, so one dropped connection was a send that "did not
      answer within 5 s"). These are the async ``ExponentialRetry``'s parameters (the package exports only the
      sync policy classes): initial_backoff + increment_base ** retry, jittered.
    """
    return {"retry_total": 1, "initial_backoff": 0.2, "increment_base": 0, "random_jitter_range": 0.1,
            "connection_timeout": 3, "read_timeout": CALL_SECONDS,
            "use_env_settings": bool(urllib.request.getproxies())}


class StorageQueues:
    """Azure Storage queues (Azurite locally), one client per queue, created on first use."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory  # queue name -> azure.storage.queue.aio.QueueClient
        self._clients: dict[str, Any] = {}
        self._created: set[str] = set()

    @classmethod
    def connect(cls, target: StorageTarget) -> StorageQueues:
        return cls(lambda name: target.client(QueueClient, name, message_encode_policy=TextBase64EncodePolicy(),
                                              **client_options()))

    @classmethod
    def unavailable(cls, reason: str) -> StorageQueues:
        """Queues that refuse every message at once (a setting that names no queue service)."""

        def refuse(name: str) -> Any:
            raise QueueUnavailable(f"queue {name}: {reason}")

        return cls(refuse)

    async def send(self, queue: str, body: dict[str, Any], *, delay: timedelta = timedelta(0)) -> None:
        client = self._clients.get(queue) or self._clients.setdefault(queue, self._factory(queue))
        text = json.dumps(body, separators=(",", ":"))
        seconds = int(min(max(delay, timedelta(0)), MAX_DELAY).total_seconds())
        async with _bounded(queue):
            if queue not in self._created:
                try:
                    await client.create_queue()
                except ResourceExistsError:
                    pass
                self._created.add(queue)
            try:
                await client.send_message(text, visibility_timeout=seconds or None)
            except ResourceNotFoundError:  # deleted meanwhile (an emulator restarted): create it again, once
                await client.create_queue()
                await client.send_message(text, visibility_timeout=seconds or None)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.close()


@asynccontextmanager
async def _bounded(queue: str) -> AsyncIterator[None]:
    try:
        async with deadline.call(f"queue {queue}", CALL_SECONDS, QueueUnavailable):
            yield
    except (AzureError, OSError) as exc:
        raise QueueUnavailable(f"queue {queue} could not be reached ({type(exc).__name__})") from exc


__all__ = ["StorageQueues"]
