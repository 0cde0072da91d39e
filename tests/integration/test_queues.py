"""StorageQueues (arr_core/store/azure_queues.py) against a real Azurite Queue service, built as the app builds it
(``context.build_queues`` from the ``AzureWebJobsStorage`` setting).

- A message is compact JSON, base64-encoded: what the Functions host's queue trigger decodes by default.
- A delay makes the message invisible until it has passed (capped at the service's 7 days; a negative one is none).
- The first send creates its queue; a queue deleted meanwhile (an emulator restarted) is created again.
- An endpoint that refuses or never answers is a QueueUnavailable within the call's bound (``CALL_SECONDS``), and
  within the request's budget when that is shorter (then DeadlineExceeded, like every storage call); a refused
  connection at once, after one quick retry.
- A send needs no thread of the event loop's default executor (which receivers' DNS lookups may hold).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy
from conftest import Azurite
from polling import wait_for

from arr_core import deadline
from arr_core.errors import DeadlineExceeded, QueueUnavailable
from arr_core.services import context
from arr_core.services.settings import AppSettings
from arr_core.store.azure_queues import CALL_SECONDS
from arr_core.store.queues import MAX_DELAY
from devhost.stack import azurite_connection_string, free_port

BODY = {"sessionId": "s-1", "attempt": 2, "labels": {"team": "viz"}, "note": "é ✓"}


def queue_name() -> str:
    return f"q-{uuid.uuid4().hex[:12]}"


def queues_for(connection_string: str) -> Any:
    return context.build_queues(AppSettings.from_env({"AzureWebJobsStorage": connection_string}))


@pytest.fixture
async def queues(azurite_queues: Azurite) -> AsyncIterator[Any]:
    built = queues_for(azurite_queues.connection_string)
    yield built
    await built.aclose()


def raw(azurite: Azurite, queue: str) -> QueueClient:
    """The queue as the host's trigger reads it: no decode policy, the text as stored."""
    return QueueClient.from_connection_string(azurite.connection_string, queue)


def exists(azurite: Azurite, queue: str) -> bool:
    try:
        raw(azurite, queue).get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


async def test_a_message_is_compact_json_in_base64_as_the_functions_host_reads_it(queues: Any,
                                                                                azurite_queues: Azurite) -> None:
    queue = queue_name()
    assert not exists(azurite_queues, queue)
    await queues.send(queue, BODY)
    [message] = raw(azurite_queues, queue).peek_messages(max_messages=32)
    stored = message.content
    expected = json.dumps(BODY, separators=(",", ":"))
    assert stored == base64.b64encode(expected.encode()).decode()  # base64 of the UTF-8 JSON, nothing else
    assert json.loads(base64.b64decode(stored, validate=True)) == BODY
    decoding = QueueClient.from_connection_string(azurite_queues.connection_string, queue,
                                                  message_decode_policy=TextBase64DecodePolicy())
    assert [json.loads(m.content) for m in decoding.peek_messages()] == [BODY]


async def test_messages_keep_their_order_on_one_queue_and_queues_are_apart(queues: Any,
                                                                           azurite_queues: Azurite) -> None:
    first, second = queue_name(), queue_name()
    for n in range(3):
        await queues.send(first, {"n": n})
    await queues.send(second, {"n": "other"})
    contents = [json.loads(base64.b64decode(m.content)) for m in raw(azurite_queues, first).peek_messages(5)]
    assert contents == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert raw(azurite_queues, second).get_queue_properties().approximate_message_count == 1


async def test_a_delay_makes_the_message_invisible_until_it_has_passed(queues: Any, azurite_queues: Azurite) -> None:
    queue = queue_name()
    sent = time.monotonic()
    await queues.send(queue, BODY, delay=timedelta(seconds=2))
    client = raw(azurite_queues, queue)
    assert client.get_queue_properties().approximate_message_count == 1  # there, but hidden
    assert list(client.peek_messages()) == []
    assert list(client.receive_messages()) == []
    [message] = wait_for(lambda: list(client.peek_messages()), "the delayed message visible", timeout=10)
    assert time.monotonic() - sent >= 1.5
    assert json.loads(base64.b64decode(message.content)) == BODY


async def test_a_negative_delay_is_none_and_a_delay_past_seven_days_is_cut_to_them(queues: Any,
                                                                                   azurite_queues: Azurite) -> None:
    queue = queue_name()
    await queues.send(queue, {"n": "now"}, delay=timedelta(seconds=-30))
    assert [json.loads(base64.b64decode(m.content)) for m in raw(azurite_queues, queue).peek_messages()] == [
        {"n": "now"}]
    later = queue_name()
    await queues.send(later, {"n": "later"}, delay=MAX_DELAY * 3)  # the service refuses more than 7 days
    client = raw(azurite_queues, later)
    assert client.get_queue_properties().approximate_message_count == 1
    assert list(client.peek_messages()) == []


async def test_a_queue_deleted_meanwhile_is_created_again(queues: Any, azurite_queues: Azurite) -> None:
    """The client remembers it created the queue; once the queue is gone (Azurite restarted, someone deleted it)
    the next send creates it again instead of failing every message from then on."""
    queue = queue_name()
    await queues.send(queue, {"n": 1})
    raw(azurite_queues, queue).delete_queue()
    assert not exists(azurite_queues, queue)
    await queues.send(queue, {"n": 2})
    assert [json.loads(base64.b64decode(m.content)) for m in raw(azurite_queues, queue).peek_messages(5)] == [
        {"n": 2}]
    await queues.send(queue, {"n": 3})
    assert raw(azurite_queues, queue).get_queue_properties().approximate_message_count == 2


async def test_a_queue_that_exists_already_is_used_as_it_is(queues: Any, azurite_queues: Azurite) -> None:
    queue = queue_name()
    client = raw(azurite_queues, queue)
    client.create_queue()
    client.send_message("already here")
    await queues.send(queue, BODY)
    assert client.get_queue_properties().approximate_message_count == 2


@pytest.fixture
def silent_endpoint() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for sock in accepted:
        sock.close()
    server.close()


async def _refused_within(queues: Any, bound: float, error: type[Exception]) -> tuple[float, Exception]:
    started = time.monotonic()
    with pytest.raises(error) as caught:
        await queues.send(queue_name(), BODY)
    took = time.monotonic() - started
    assert took < bound + 1.0, f"{took:.1f} s"
    return took, caught.value


async def test_an_endpoint_that_never_answers_is_queue_unavailable_after_the_calls_bound(
        silent_endpoint: int) -> None:
    queues = queues_for(azurite_connection_string(free_port(), queue_port=silent_endpoint))
    try:
        took, error = await _refused_within(queues, CALL_SECONDS, QueueUnavailable)
    finally:
        await queues.aclose()
    assert took >= CALL_SECONDS - 0.5  # it did wait for the answer, as long as its bound
    assert f"did not answer within {CALL_SECONDS:.0f} s" in str(error) and "queue q-" in str(error)


async def test_an_endpoint_that_refuses_connections_is_queue_unavailable_at_once() -> None:
    """A refused connection is tried once more, 0.1-0.3 s later, and is then QueueUnavailable ("could not be
    reached"), well within the bound: not the SDK's default of 3 retries from 15 s, which the bound cut into "did
    not answer within 5 s" (issue 19.6)."""
    queues = queues_for(azurite_connection_string(free_port(), queue_port=free_port()))
    try:
        _, error = await _refused_within(queues, 0.5, QueueUnavailable)
    finally:
        await queues.aclose()
    assert "could not be reached" in str(error) and "queue q-" in str(error)


def test_a_send_needs_no_thread_of_the_event_loops_default_executor(azurite_queues: Azurite) -> None:
    """Every thread of the loop's default executor held (as receivers' slow DNS lookups held them, issue 19.6), and
    a send still ends at once: the client makes no trip through it. (With aiohttp's ``trust_env`` it made two per
    request, for ~/.netrc and the proxy variables, and waited there past its bound.)"""
    release = threading.Event()

    async def send_while_held() -> float:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(2))
        held = [loop.run_in_executor(None, release.wait) for _ in range(2)]
        queues = queues_for(azurite_queues.connection_string)
        try:
            began = time.monotonic()
            await queues.send(queue_name(), BODY)  # the first: creates the queue too
            await queues.send(queue_name(), BODY)
            return time.monotonic() - began
        finally:
            release.set()
            await asyncio.gather(*held)
            await queues.aclose()

    took = asyncio.run(send_while_held())
    assert took < 1.0, f"{took:.1f} s"


async def test_within_a_shorter_request_budget_the_budget_is_the_bound(silent_endpoint: int) -> None:
    queues = queues_for(azurite_connection_string(free_port(), queue_port=silent_endpoint))
    try:
        async with deadline.budget(1.0):
            took, _ = await _refused_within(queues, 1.0, DeadlineExceeded)
    finally:
        await queues.aclose()
    assert took >= 0.8


async def test_the_development_account_without_a_queue_endpoint_refuses_at_once() -> None:
    """``UseDevelopmentStorage``-style settings with Azurite's account but no QueueEndpoint: the SDK would go to
    devstoreaccount1.queue.core.windows.net; the app refuses every message at once instead."""
    queues = queues_for(azurite_connection_string(free_port()))  # Table only
    try:
        took, error = await _refused_within(queues, 0.0, QueueUnavailable)
    finally:
        await queues.aclose()
    assert "QueueEndpoint" in str(error)
