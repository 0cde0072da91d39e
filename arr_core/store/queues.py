"""Messages for later: the session watcher's "look again in N seconds" and the notifications still to deliver.

The port: what the services need of a queue. :mod:`arr_core.store.azure_queues` is the Azure Storage one;
:mod:`arr_core.testing.memory_queues` keeps messages in memory for unit tests.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol

MAX_DELAY = timedelta(days=7)  # the service's limit on a message's initial invisibility


class Queues(Protocol):
    """Where messages for later go."""

    async def send(self, queue: str, body: dict[str, Any], *, delay: timedelta = timedelta(0)) -> None: ...
    async def aclose(self) -> None: ...




__all__ = ["MAX_DELAY", "Queues"]
