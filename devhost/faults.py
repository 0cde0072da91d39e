"""Faults the local host can play, for tests and benchmarks: nothing here runs in Azure (.funcignore)."""

from __future__ import annotations

import socket
import time
from typing import Any

SLOW_SUFFIX = "slow.localhost"


def slow_dns(seconds: float, suffix: str = SLOW_SUFFIX) -> None:
    """Make this process's lookups of names under ``suffix`` hold their thread for ``seconds`` (as a resolver waiting
    on a slow DNS server does) and answer 127.0.0.1; every other name resolves as usual. No DNS server is asked."""
    real = socket.getaddrinfo

    def slow_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and name.rstrip(".").endswith(suffix):
            time.sleep(seconds)
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    socket.getaddrinfo = slow_getaddrinfo
