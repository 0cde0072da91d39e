"""The function app (``function_app.app``, unchanged) in a process whose DNS is slow for some names.

A lookup of a name under ``slow.localhost`` holds the thread that makes it for ``SLOW_DNS_SECONDS`` (as a resolver
that waits on a slow DNS server holds it) and then answers 127.0.0.1; every other name resolves as usual. Nothing
leaves the machine: no DNS server is asked.
"""

from __future__ import annotations

import os

from devhost.faults import slow_dns
from function_app import app

slow_dns(float(os.environ.get("SLOW_DNS_SECONDS", "3")))

__all__ = ["app"]
