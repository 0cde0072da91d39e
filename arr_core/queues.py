"""Messages for later: the session watcher's "look again in N seconds" and the notifications still to deliver.

Azure Storage queues, read by queue-triggered functions (the Functions host, or ``devhost`` locally, dequeues,
retries and moves a message that keeps failing to ``<queue>-poison``). Messages are JSON, base64-encoded as the
host's queue trigger expects by default. A queue that does not exist yet is created on first use. Imported only
by the context of a process that sends (the module loads the queue SDK).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from . import deadline
from .errors import QueueUnavailable
from .records import utcnow

CALL_SECONDS = 5.0
MAX_DELAY = timedelta(days=7)  # the service's limit on a message's initial invisibility


class Queues(Protocol):
    """Where messages for later go."""

    async def send(self, queue: str, body: dict[str, Any], *, delay: timedelta = timedelta(0)) -> None: ...
    async def aclose(self) -> None: ...


class StorageQueues:
    """Azure Storage queues (Azurite locally), one client per queue, created on first use."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory  # queue name -> azure.storage.queue.aio.QueueClient
        self._clients: dict[str, Any] = {}
        self._created: set[str] = set()

    @classmethod
    def from_connection_string(cls, connection_string: str) -> StorageQueues:
        return cls(lambda name: QueueClient.from_connection_string(
            connection_string, name, message_encode_policy=TextBase64EncodePolicy()))

    @classmethod
    def from_endpoint(cls, endpoint: str, credential: Any) -> StorageQueues:
        return cls(lambda name: QueueClient(endpoint, name, credential=credential,
                                            message_encode_policy=TextBase64EncodePolicy()))

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


@dataclass
class Sent:
    queue: str
    body: dict[str, Any]
    visible_at: datetime


@dataclass
class MemoryQueues:
    """Queues in memory, for unit tests: what was sent, and when it becomes visible."""

    clock: Any = utcnow
    sent: list[Sent] = field(default_factory=list)
    failing: bool = False

    async def send(self, queue: str, body: dict[str, Any], *, delay: timedelta = timedelta(0)) -> None:
        await asyncio.sleep(0)
        if self.failing:
            raise QueueUnavailable(f"queue {queue} is failing (test)")
        self.sent.append(Sent(queue, json.loads(json.dumps(body)), self.clock() + delay))

    def take(self, queue: str) -> list[dict[str, Any]]:
        """The bodies sent to ``queue`` that are visible now, removed from the queue."""
        now = self.clock()
        due = [m for m in self.sent if m.queue == queue and m.visible_at <= now]
        self.sent = [m for m in self.sent if m not in due]
        return [m.body for m in due]

    async def aclose(self) -> None:
        return None
