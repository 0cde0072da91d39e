"""One delivery attempt: which address is called, with what, and what each answer means."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from arr_core.webhooks import Outcome, deliver, pinned

from .harness import FakeResolver


class Recorder:
    def __init__(self, *, refuse: set[str] = frozenset()) -> None:
        self.refuse = refuse
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in self.refuse:
            raise httpx.ConnectError("connection refused", request=request)
        self.requests.append(request)
        return httpx.Response(204)


async def send(url: str, resolver: FakeResolver, recorder: Recorder, *, development: bool = False) -> str:
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        return await deliver(http, url, {"status": "Ready"}, event_id="s1.Starting.Ready",
                             development=development, resolve=resolver)


async def test_the_connection_goes_to_the_address_that_was_checked_not_to_a_second_lookup() -> None:
    """DNS rebinding: the name answers a public address for the check and the metadata service afterwards. The
    request goes to the checked address; the name is looked up once."""
    answers = iter([["93.184.216.34"], ["169.254.169.254"]])

    class Rebinding(FakeResolver):
        async def __call__(self, host: str) -> list[str]:
            self.lookups += 1
            return next(answers)

    resolver, recorder = Rebinding({}), Recorder()
    assert await send("https://hooks.example/receive?sig=abc", resolver, recorder) == Outcome.DELIVERED
    [request] = recorder.requests
    assert str(request.url) == "https://93.184.216.34/receive?sig=abc"
    assert (request.headers["host"], request.headers["connection"]) == ("hooks.example", "close")
    assert request.extensions["sni_hostname"] == "hooks.example"
    assert json.loads(request.content) == {"status": "Ready"}
    assert request.headers["x-event-id"] == "s1.Starting.Ready"
    assert resolver.lookups == 1


async def test_a_name_with_any_refused_address_is_not_called() -> None:
    resolver, recorder = FakeResolver({"hooks.example": ["93.184.216.34", "169.254.169.254"]}), Recorder()
    assert await send("https://hooks.example/receive", resolver, recorder) == Outcome.REFUSED
    assert recorder.requests == []


async def test_a_private_address_is_refused_in_azure_and_allowed_locally() -> None:
    resolver = FakeResolver({"hooks.internal": ["10.1.2.3"]})
    assert await send("http://hooks.internal:8080/x", resolver, Recorder()) == Outcome.REFUSED
    recorder = Recorder()
    assert await send("http://hooks.internal:8080/x", resolver, recorder, development=True) == Outcome.DELIVERED
    [request] = recorder.requests
    assert (str(request.url), request.headers["host"]) == ("http://10.1.2.3:8080/x", "hooks.internal:8080")
    assert "sni_hostname" not in request.extensions


async def test_the_next_address_is_tried_when_one_refuses_the_connection() -> None:
    resolver = FakeResolver({"hooks.example": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]})
    recorder = Recorder(refuse={"93.184.216.34"})
    assert await send("https://hooks.example/r", resolver, recorder) == Outcome.DELIVERED
    assert [str(r.url) for r in recorder.requests] == ["https://[2606:2800:220:1:248:1893:25c8:1946]/r"]


async def test_no_address_accepting_or_no_address_at_all_is_retried_later() -> None:
    resolver = FakeResolver({"hooks.example": ["93.184.216.34"]})
    assert await send("https://hooks.example/r", resolver, Recorder(refuse={"93.184.216.34"})) == Outcome.RETRY
    recorder = Recorder()
    assert await send("https://gone.example/r", resolver, recorder) == Outcome.RETRY
    assert recorder.requests == []


async def test_an_address_in_the_url_is_checked_without_a_lookup() -> None:
    resolver, recorder = FakeResolver({}), Recorder()
    assert await send("https://93.184.216.34/r", resolver, recorder) == Outcome.DELIVERED
    assert await send("http://[::ffff:169.254.169.254]/r", resolver, recorder, development=True) == Outcome.REFUSED
    assert resolver.lookups == 0 and len(recorder.requests) == 1


def test_pinning_keeps_port_path_query_and_the_name_for_host_and_tls() -> None:
    url, headers, extensions = pinned("https://hooks.example:8443/a/b?c=d", "93.184.216.34")
    assert (str(url), headers["Host"], extensions) == ("https://93.184.216.34:8443/a/b?c=d", "hooks.example:8443",
                                                       {"sni_hostname": "hooks.example"})


@pytest.fixture
def listening() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append({"host": self.headers["Host"], "path": self.path,
                        "body": json.loads(self.rfile.read(int(self.headers["Content-Length"])))})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], got
    server.shutdown()
    server.server_close()


async def test_over_a_real_socket_the_receiver_sees_its_name(listening: tuple[int, list[dict[str, Any]]]) -> None:
    """A name that no DNS knows reaches the receiver through the checked address, and the receiver sees the name."""
    port, got = listening
    resolver = FakeResolver({"receiver.invalid": ["127.0.0.1"]})
    async with httpx.AsyncClient() as http:
        outcome = await deliver(http, f"http://receiver.invalid:{port}/hook?x=1", {"n": 1}, event_id="e",
                                development=True, resolve=resolver)
    assert outcome == Outcome.DELIVERED
    assert got == [{"host": f"receiver.invalid:{port}", "path": "/hook?x=1", "body": {"n": 1}}]
