"""Queues in memory, for unit tests: the :class:`~arr_core.store.queues.Queues` port without a service."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..domain.records import utcnow
from ..errors import QueueUnavailable


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


__all__ = ["MemoryQueues", "Sent"]
