"""A webhook delivery over real sockets: to the address that was checked, with the receiver's name where the
receiver (and TLS) look for it. The names below are in no DNS; the resolver answers them."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import trustme
from unit.harness import FakeResolver

from arr_core.outbound.webhooks import Outcome, deliver

NAME = "receiver.invalid"


class Listener:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.got: list[dict[str, Any]] = []
        self.server_names: list[str | None] = []
        got = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                got.append({"host": self.headers["Host"], "path": self.path,
                            "body": json.loads(self.rfile.read(int(self.headers["Content-Length"])))})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def plain() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


@pytest.fixture
def secure(ca: trustme.CA) -> Iterator[Listener]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(NAME).configure_cert(context)  # a certificate for the name only, not for 127.0.0.1
    listener = Listener(context)
    yield listener
    listener.close()


async def post(url: str, verify: ssl.SSLContext | bool = True) -> str:
    async with httpx.AsyncClient(verify=verify) as http:
        return await deliver(http, url, {"n": 1}, event_id="e", development=True,
                             resolve=FakeResolver({NAME: ["127.0.0.1"]}))


async def test_the_receiver_sees_its_name_in_host(plain: Listener) -> None:
    assert await post(f"http://{NAME}:{plain.port}/hook?x=1") == Outcome.DELIVERED
    assert plain.got == [{"host": f"{NAME}:{plain.port}", "path": "/hook?x=1", "body": {"n": 1}}]


async def test_tls_is_checked_against_the_name_while_connecting_to_the_checked_address(
        ca: trustme.CA, secure: Listener) -> None:
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    assert await post(f"https://{NAME}:{secure.port}/hook", trusted) == Outcome.DELIVERED
    assert secure.server_names == [NAME]
    assert secure.got == [{"host": f"{NAME}:{secure.port}", "path": "/hook", "body": {"n": 1}}]


async def test_a_certificate_the_client_does_not_trust_is_not_sent_the_payload(
        secure: Listener, caplog: pytest.LogCaptureFixture) -> None:
    """Verification stays on: this CA is unknown to the default trust store, so nothing is sent (and it is retried
    later, as any failed connection), and the log says why."""
    caplog.set_level("INFO", logger="arr_core.webhooks")
    assert await post(f"https://{NAME}:{secure.port}/hook") == Outcome.RETRY
    assert secure.got == []
    [said] = [r.getMessage() for r in caplog.records if r.name == "arr_core.webhooks"]
    assert "no address of the receiver accepted a connection (127.0.0.1: ConnectError" in said
    assert "CERTIFICATE_VERIFY_FAILED" in said
