"""One delivery attempt: which address is called, with what, and what each answer means."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from arr_core.outbound.webhooks import Outcome, deliver, pinned, system_resolver

from .harness import FakeResolver


class Recorder:
    def __init__(self, *, refuse: set[str] = frozenset(), silent: set[str] = frozenset()) -> None:
        self.refuse, self.silent = refuse, silent
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in self.refuse:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.host in self.silent:
            raise httpx.ConnectTimeout("timed out", request=request)
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
    url, headers, extensions = pinned(httpx.URL("https://hooks.example:8443/a/b?c=d"), "93.184.216.34")
    assert (str(url), headers["Host"], extensions) == ("https://93.184.216.34:8443/a/b?c=d", "hooks.example:8443",
                                                       {"sni_hostname": "hooks.example"})


def test_an_international_name_goes_to_host_and_tls_in_its_ascii_form() -> None:
    _, headers, extensions = pinned(httpx.URL("https://bücher.example/hook"), "93.184.216.34")
    assert headers["Host"] == extensions["sni_hostname"] == "xn--bcher-kva.example"


async def test_an_address_that_never_answers_the_connection_is_passed_over_too() -> None:
    """An IPv6 route that drops packets times out the connection: the IPv4 address is tried next."""
    resolver = FakeResolver({"hooks.example": ["2606:2800:220:1:248:1893:25c8:1946", "93.184.216.34"]})
    recorder = Recorder(silent={"2606:2800:220:1:248:1893:25c8:1946"})
    assert await send("https://hooks.example/r", resolver, recorder) == Outcome.DELIVERED
    assert [str(r.url) for r in recorder.requests] == ["https://93.184.216.34/r"]


async def test_the_name_is_looked_up_in_the_form_host_and_tls_carry() -> None:
    """IDNA 2003 (Python's codec) maps faß.de to fass.de, another domain; httpx's IDNA 2008 keeps xn--fa-hia.de.
    The lookup uses the second, as the Host header and TLS do."""
    resolver = FakeResolver({"xn--fa-hia.de": ["93.184.216.34"], "fass.de": ["93.184.216.99"]})
    recorder = Recorder()
    assert await send("https://faß.de/hook", resolver, recorder) == Outcome.DELIVERED
    [request] = recorder.requests
    assert (request.url.host, request.headers["host"]) == ("93.184.216.34", "xn--fa-hia.de")


@pytest.mark.parametrize("url", ["https://☃.example/", "https://example.com:abc/", "http://localhost:99999/",
                                 f"https://{'a' * 64}.example/", "https://a..example/"])
async def test_a_url_the_app_cannot_call_is_refused_not_raised(url: str) -> None:
    recorder = Recorder()
    resolver = FakeResolver({"localhost": ["127.0.0.1"]})
    assert await send(url, resolver, recorder, development=True) == Outcome.REFUSED
    assert recorder.requests == []


async def test_the_apps_delivery_client_ignores_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy would look the receiver's name up again (and check TLS against the address): the app's notifier
    client does not read HTTPS_PROXY."""
    from arr_core.services.context import AppContext
    from arr_core.services.settings import AppSettings

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    settings = AppSettings(account_id="00000000-0000-0000-0000-0000000000a1", account_domain="eastus.example",
                           endpoint="https://arr.example", account_key="k",
                           storage_connection="UseDevelopmentStorage=true")
    context = AppContext.from_settings(settings)
    try:
        assert context.notifier.http.trust_env is False
    finally:
        await context.aclose()


def test_a_receivers_name_is_looked_up_without_the_event_loops_default_executor() -> None:
    """Every thread of the loop's default executor held, and a receiver's name still resolves: lookups, which a slow
    DNS makes last seconds, run on threads of their own and cannot starve the storage and ARR clients, which need
    that executor (issue 19.6). ``localhost`` is in /etc/hosts: no DNS server is asked."""
    release = threading.Event()

    async def resolve_while_held() -> list[str]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(1))
        held = loop.run_in_executor(None, release.wait)
        try:
            return await asyncio.wait_for(system_resolver("localhost"), 2)
        finally:
            release.set()
            await held

    assert "127.0.0.1" in asyncio.run(resolve_while_held())
