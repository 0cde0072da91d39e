"""The ARR client against a service that answers badly, over real sockets: an answer of gigabytes is not read
whole, and a body that trickles in does not hold a call past its timeout (issue 19.1: every outbound call whose
answer we do not control)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from arr_core import ArrClient, RetryPolicy, StaticAccessToken
from arr_core.arr.transport import MAX_ANSWER_BYTES
from arr_core.errors import ServiceError, ServiceTimeoutError

ACCOUNT = "11111111-2222-3333-4444-555555555555"


@pytest.fixture(scope="module")
def hostile_arr() -> Iterator[str]:
    """GET .../sessions/huge answers 200 with a body past the limit; .../sessions/trickle a byte every 0.3 s."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            try:
                if "huge" in self.path:
                    size = MAX_ANSWER_BYTES * 64  # a gigabyte
                    self.wfile.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                     f"Content-Length: {size}\r\n\r\n".encode())
                    chunk = b" " * (1024 * 1024)
                    for _ in range(size // len(chunk)):
                        self.wfile.write(chunk)
                else:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n")
                    for _ in range(200):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.3)
            except OSError:
                pass
            self.close_connection = True

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def client(url: str) -> ArrClient:
    return ArrClient(url, ACCOUNT, "eastus.mixedreality.azure.com", StaticAccessToken("token"),
                     retry=RetryPolicy.off(), timeout=httpx.Timeout(2.0, connect=2.0))


def test_an_answer_past_the_limit_is_refused_without_being_read_whole(hostile_arr: str) -> None:
    async def scenario() -> float:
        started = time.monotonic()
        async with client(hostile_arr) as arr:
            with pytest.raises(ServiceError, match=f"longer than {MAX_ANSWER_BYTES} bytes"):
                await arr.get_session("huge")
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 2  # 16 MiB read of a gigabyte, then the connection is closed


def test_a_body_that_trickles_in_ends_with_the_calls_timeout(hostile_arr: str) -> None:
    """Each byte comes well within the 2 s read timeout, so only a limit on the whole exchange ends it."""
    async def scenario() -> float:
        started = time.monotonic()
        async with client(hostile_arr) as arr:
            with pytest.raises(ServiceTimeoutError):
                await arr.get_session("trickle")
        return time.monotonic() - started

    assert 1.9 < asyncio.run(scenario()) < 3.5
