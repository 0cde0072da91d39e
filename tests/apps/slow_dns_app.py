"""The function app (``function_app.app``, unchanged) in a process whose DNS is slow for some names.

A lookup of a name under ``slow.localhost`` holds the thread that makes it for ``SLOW_DNS_SECONDS`` (as a resolver
that waits on a slow DNS server holds it) and then answers 127.0.0.1; every other name resolves as usual. Nothing
leaves the machine: no DNS server is asked.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from function_app import app

SLOW_SECONDS = float(os.environ.get("SLOW_DNS_SECONDS", "3"))
_getaddrinfo = socket.getaddrinfo


def _slow_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.rstrip(".").endswith("slow.localhost"):
        time.sleep(SLOW_SECONDS)
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _slow_getaddrinfo

__all__ = ["app"]
