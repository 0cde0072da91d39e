"""Queue triggers in the local host, against Azurite's Queue service: the Functions host's conventions.

The host runs ``tests/apps/queue_app.py`` (messages base64, as the host expects), and each test enqueues with
azure-storage-queue and waits, with a deadline, for the exact outcome: processed and deleted, retried, moved to
``<queue>-poison``, or visible again after a shutdown. The listener itself also runs in-process for what would take
minutes through a host (the 10-minute lease and its renewal) and for host.json settings.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueServiceClient
from azure.storage.queue.aio import QueueServiceClient as AsyncQueueServiceClient
from conftest import Azurite, Host, start_host, stop
from polling import wait_for, wait_for_async

from devhost.host import invoke
from devhost.queues import (
    POLL_GRACE_SECONDS,
    QueueFunction,
    QueueListener,
    QueuesOptions,
    load_queues_options,
    normalize_queue_name,
    parse_timespan,
    poison_queue_name,
    resolve_connection,
    resolve_expression,
    service_client,
    to_queue_message,
)
from devhost.stack import DEV_ACCOUNT_KEY

APP = "tests.apps.queue_app"


def encode(body: bytes) -> str:
    return base64.b64encode(body).decode()


def entries(log: Path, message_id: str | None = None) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text().splitlines() if line]
    return [e for e in lines if message_id is None or e["id"] == message_id]


def count(service: QueueServiceClient, queue: str) -> int | None:
    """Messages in the queue, visible or not (None: no such queue)."""
    try:
        return service.get_queue_client(queue).get_queue_properties().approximate_message_count
    except ResourceNotFoundError:
        return None


def send(service: QueueServiceClient, queue: str, content: str) -> Any:
    client = service.get_queue_client(queue)
    try:
        return client.send_message(content)
    except ResourceNotFoundError:
        client.create_queue()
        return client.send_message(content)


@pytest.fixture(scope="module")
def script_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A host.json with no queue settings: the host's defaults apply."""
    root = tmp_path_factory.mktemp("script-root")
    (root / "host.json").write_text('{"version": "2.0"}')
    return root


def host_env(azurite: Azurite, root: Path, log: Path, **extra: str) -> dict[str, str]:
    return {"AzureWebJobsStorage": azurite.connection_string, "BlocksStorage": azurite.connection_string,
            "AzureWebJobsScriptRoot": str(root), "QUEUE_APP_LOG": str(log), "QUEUE_APP_QUEUE": "DevHost-From-Setting",
            "BLOCKS_QUEUE": "devhost-blocks-idle", **extra}


@pytest.fixture(scope="module")
def queue_host(azurite_queues: Azurite, script_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    log = tmp_path_factory.mktemp("queue-log") / "calls.jsonl"
    host = start_host(host_env(azurite_queues, script_root, log), APP)
    host.calls = log  # type: ignore[attr-defined]
    yield host
    stop(host.process)


@pytest.fixture(scope="module")
def queues(azurite_queues: Azurite) -> Iterator[QueueServiceClient]:
    with QueueServiceClient.from_connection_string(azurite_queues.connection_string) as service:
        yield service


# -- through the host -----------------------------------------------------------------------------------------------


def test_message_is_processed_once_and_deleted(queue_host: Host, queues: QueueServiceClient) -> None:
    """A base64 message reaches the async function once, on the event loop, as the worker's QueueMessage with the
    trigger metadata; the host hid it for 10 minutes while it ran, then deleted it."""
    log: Path = queue_host.calls  # type: ignore[attr-defined]
    sent = send(queues, "arr-watch", encode(b'{"sessionId": "s-1"}'))
    binary = send(queues, "arr-watch", encode(b"\xff\x00\xfe"))
    wait_for(lambda: count(queues, "arr-watch") == 0, "both messages deleted")
    [call] = entries(log, sent.id)
    assert call["function"] == "watch" and call["type"] == "azure.functions.queue.QueueMessage"
    assert base64.b64decode(call["body"]) == b'{"sessionId": "s-1"}'
    assert call["dequeue_count"] == 1 and call["pop_receipt"] and call["thread"] == "MainThread"
    inserted = datetime.fromisoformat(call["insertion_time"])
    assert inserted == sent.inserted_on and datetime.fromisoformat(call["expiration_time"]) == sent.expires_on
    lease = (datetime.fromisoformat(call["time_next_visible"]) - inserted).total_seconds()
    assert 600 <= lease <= 610
    [raw] = entries(log, binary.id)
    assert base64.b64decode(raw["body"]) == b"\xff\x00\xfe"  # bytes, exactly


def test_failures_are_retried_until_success(queue_host: Host, queues: QueueServiceClient) -> None:
    """Fails on dequeue counts 1 and 2, succeeds on 3 (visibilityTimeout 0: retried at once); then deleted."""
    log: Path = queue_host.calls  # type: ignore[attr-defined]
    sent = send(queues, "devhost-flaky", encode(b"retry me"))
    wait_for(lambda: count(queues, "devhost-flaky") == 0, "the flaky message deleted")
    assert [e["dequeue_count"] for e in entries(log, sent.id)] == [1, 2, 3]
    assert count(queues, "devhost-flaky-poison") is None  # no poison queue was ever needed


def test_always_failing_message_ends_in_poison_queue_after_five_attempts(queue_host: Host,
                                                                       queues: QueueServiceClient) -> None:
    """maxDequeueCount 5: five attempts, then copied to <queue>-poison (same content) and deleted."""
    log: Path = queue_host.calls  # type: ignore[attr-defined]
    content = encode(b"hopeless")
    sent = send(queues, "devhost-fails", content)
    wait_for(lambda: count(queues, "devhost-fails-poison") == 1 and count(queues, "devhost-fails") == 0,
             "the message moved to devhost-fails-poison")
    assert [e["dequeue_count"] for e in entries(log, sent.id)] == [1, 2, 3, 4, 5]
    [poisoned] = queues.get_queue_client("devhost-fails-poison").peek_messages(max_messages=32)
    assert poisoned.content == content


def test_undecodable_message_goes_to_poison_queue_without_running(queue_host: Host,
                                                                  queues: QueueServiceClient) -> None:
    """Not base64 (the default messageEncoding): moved to the poison queue at once; the function never sees it."""
    log: Path = queue_host.calls  # type: ignore[attr-defined]
    sent = send(queues, "arr-watch", "plain text, not base64!")
    wait_for(lambda: count(queues, "arr-watch-poison") == 1 and count(queues, "arr-watch") == 0,
             "the undecodable message moved to arr-watch-poison")
    assert entries(log, sent.id) == []
    [poisoned] = queues.get_queue_client("arr-watch-poison").peek_messages(max_messages=32)
    assert poisoned.content == "plain text, not base64!"


def test_queue_name_from_app_setting(queue_host: Host, queues: QueueServiceClient) -> None:
    """%QUEUE_APP_QUEUE% is resolved (and lower-cased, as the host does); connection "Storage" finds
    AzureWebJobsStorage."""
    log: Path = queue_host.calls  # type: ignore[attr-defined]
    sent = send(queues, "devhost-from-setting", encode(b"named by a setting"))
    wait_for(lambda: count(queues, "devhost-from-setting") == 0, "the message deleted")
    [call] = entries(log, sent.id)
    assert call["function"] == "from_setting" and call["dequeue_count"] == 1


def test_sync_function_runs_in_a_thread(queue_host: Host, queues: QueueServiceClient) -> None:
    log: Path = queue_host.calls  # type: ignore[attr-defined]
    sent = send(queues, "devhost-sync", encode(b"sync"))
    wait_for(lambda: count(queues, "devhost-sync") == 0, "the message deleted")
    [call] = entries(log, sent.id)
    assert call["function_name"] == "sync_one" and call["thread"] != "MainThread"
    assert base64.b64decode(call["body"]) == b"sync"


def test_messages_of_a_batch_run_concurrently(queue_host: Host, queues: QueueServiceClient) -> None:
    """Ten messages: each processed exactly once, several at a time on the one event loop."""
    log: Path = queue_host.calls  # type: ignore[attr-defined]
    sent = [send(queues, "devhost-slow", encode(f"slow {i}".encode())) for i in range(10)]
    wait_for(lambda: count(queues, "devhost-slow") == 0, "all ten deleted")
    calls = [e for e in entries(log) if e["function"] == "slow"]
    assert sorted(e["id"] for e in calls) == sorted(m.id for m in sent)
    assert max(e["peak"] for e in calls) >= 2  # a serial host would never run two at once


def test_shutdown_releases_an_in_flight_message(azurite_queues: Azurite, queues: QueueServiceClient,
                                                script_root: Path, tmp_path: Path) -> None:
    """A message whose function is running when the host stops is visible again at once (visibilityTimeout 0),
    with the dequeue count of that attempt; the next host processes it. The stop leaves no task behind."""
    log = tmp_path / "calls.jsonl"
    # This host runs `blocks` alone: the other functions' connection (AzureWebJobsStorage) is left empty.
    env = host_env(azurite_queues, script_root, log, AzureWebJobsStorage="", BLOCKS_QUEUE="devhost-blocks")
    first = start_host(env, APP)
    try:
        sent = send(queues, "devhost-blocks", encode(b"long job"))
        wait_for(lambda: entries(log, sent.id), "the function started")
    finally:
        stop(first.process)
    output = Path(first.process.log_path).read_text()  # type: ignore[attr-defined]
    assert "queue function watch will not run" in output  # reported, and the rest ran
    assert "Task was destroyed" not in output and "never retrieved" not in output
    [visible] = queues.get_queue_client("devhost-blocks").peek_messages(max_messages=32)  # peek sees visible only
    assert visible.id == sent.id and visible.dequeue_count == 1

    second = start_host(env, APP)
    try:
        wait_for(lambda: count(queues, "devhost-blocks") == 0, "the released message processed and deleted")
    finally:
        stop(second.process)
    assert [e["dequeue_count"] for e in entries(log, sent.id)] == [1, 2]


# -- the listener in-process ----------------------------------------------------------------------------------------


class _Function:
    """What ``FunctionApp.get_functions()`` yields, as far as the listener uses it."""

    def __init__(self, user_function: Callable[..., Any]) -> None:
        self.user_function = user_function

    def get_user_function(self) -> Callable[..., Any]:
        return self.user_function


async def _listen(azurite: Azurite, queue: str, user_function: Callable[..., Any], options: QueuesOptions,
                  until: Callable[[QueueListener], bool], *, lease_seconds: float = 600,
                  timeout: float = 20.0) -> QueueListener:
    """Run one listener until ``until(listener)`` holds, then stop it."""
    service = AsyncQueueServiceClient.from_connection_string(azurite.connection_string)
    function = QueueFunction(user_function.__name__, _Function(user_function), "msg", queue, "AzureWebJobsStorage")
    listener = QueueListener(function, service.get_queue_client(queue), service.get_queue_client(f"{queue}-poison"),
                             options, invoke, lease_seconds=lease_seconds)
    listener.start()
    try:
        await wait_for_async(lambda: until(listener), lambda: f"listener on {queue} finished: {listener.counters}",
                             timeout=timeout)
    finally:
        await listener.stop()
        await service.close()
    return listener


async def test_lease_is_renewed_while_the_function_runs(azurite_queues: Azurite) -> None:
    """With a 2 s lease (10 min in the host), a 3.5 s function keeps its message hidden past the lease: renewed at
    half-time, then deleted with the renewed pop receipt."""
    async with AsyncQueueServiceClient.from_connection_string(azurite_queues.connection_string) as service:
        queue = service.get_queue_client("devhost-lease")
        await queue.create_queue()
        await queue.send_message(encode(b"long"))
        seen: list[int] = []

        async def long_running(msg: Any) -> None:
            await asyncio.sleep(1.0)
            for _ in range(5):  # 1.0 .. 3.5 s after it started: the 2 s lease is long gone unless renewed
                seen.append(len([m async for m in queue.receive_messages(visibility_timeout=1)]))
                await asyncio.sleep(0.5)

        listener = await _listen(azurite_queues, "devhost-lease", long_running, QueuesOptions(),
                                 lambda lis: lis.counters.succeeded == 1, lease_seconds=2)
        assert seen == [0, 0, 0, 0, 0]
        assert listener.counters.invocations == 1 and listener.counters.errors == []
        assert (await queue.get_queue_properties()).approximate_message_count == 0


async def test_message_dequeued_too_often_goes_to_poison_without_running(azurite_queues: Azurite) -> None:
    """A message already dequeued five times (its runs were lost) is moved to the poison queue, not run again."""
    async with AsyncQueueServiceClient.from_connection_string(azurite_queues.connection_string) as service:
        queue = service.get_queue_client("devhost-lost")
        await queue.create_queue()
        await queue.send_message(encode(b"lost five times"))
        for _ in range(5):
            [message] = [m async for m in queue.receive_messages(visibility_timeout=30)]
            await queue.update_message(message.id, message.pop_receipt, visibility_timeout=0)
        assert message.dequeue_count == 5
        calls: list[Any] = []

        async def never(msg: Any) -> None:
            calls.append(msg)

        listener = await _listen(azurite_queues, "devhost-lost", never, QueuesOptions(),
                                 lambda lis: lis.counters.poisoned == 1)
        assert calls == [] and listener.counters.invocations == 0
        [poisoned] = await service.get_queue_client("devhost-lost-poison").peek_messages()
        assert base64.b64decode(poisoned.content) == b"lost five times"


async def test_host_json_visibility_timeout_and_max_dequeue_count(azurite_queues: Azurite) -> None:
    """visibilityTimeout 00:00:01 delays the retry by a second; maxDequeueCount 2 poisons after two attempts;
    messageEncoding none passes the text as it is."""
    async with AsyncQueueServiceClient.from_connection_string(azurite_queues.connection_string) as service:
        queue = service.get_queue_client("devhost-settings")
        await queue.create_queue()
        await queue.send_message("raw text")
        attempts: list[tuple[float, int, bytes]] = []

        async def fails(msg: Any) -> None:
            attempts.append((time.monotonic(), msg.dequeue_count, msg.get_body()))
            raise RuntimeError("fails")

        options = QueuesOptions.from_settings({"visibilityTimeout": "00:00:01", "maxDequeueCount": "2",
                                               "messageEncoding": "none"})
        await _listen(azurite_queues, "devhost-settings", fails, options, lambda lis: lis.counters.poisoned == 1)
        assert [(count, body) for _, count, body in attempts] == [(1, b"raw text"), (2, b"raw text")]
        assert 0.9 <= attempts[1][0] - attempts[0][0] <= 4.0
        [poisoned] = await service.get_queue_client("devhost-settings-poison").peek_messages()
        assert poisoned.content == "raw text"


# -- settings, names, connections (no storage) ----------------------------------------------------------------------


def test_host_json_defaults_and_overrides(tmp_path: Path) -> None:
    """The host's defaults; host.json's extensions.queues (any key case); AzureFunctionsJobHost__ settings win."""
    defaults = load_queues_options(tmp_path, {})  # no host.json at all
    assert defaults == QueuesOptions()
    assert (defaults.max_polling_interval, defaults.visibility_timeout, defaults.batch_size,
            defaults.new_batch_threshold, defaults.max_dequeue_count, defaults.message_encoding) == (
        60.0, 0.0, 16, 8, 5, "base64")
    assert defaults.dev_polling_interval == 2.0  # capped for local development
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0", "Extensions": {"queues": {
        "maxPollingInterval": "00:00:00.500", "VisibilityTimeout": "00:00:30", "batchSize": 4,
        "maxDequeueCount": 3, "messageEncoding": "None"}}}))
    options = load_queues_options(tmp_path, {"AzureFunctionsJobHost__extensions__queues__batchSize": "8",
                                             "AzureFunctionsJobHost__extensions__queues__newBatchThreshold": "1"})
    assert options == QueuesOptions(max_polling_interval=0.5, visibility_timeout=30.0, batch_size=8,
                                    explicit_new_batch_threshold=1, max_dequeue_count=3, message_encoding="none")
    assert options.dev_polling_interval == 0.5 and options.new_batch_threshold == 1
    for bad in ({"batchSize": 33}, {"maxDequeueCount": 0}, {"messageEncoding": "utf8"},
                {"maxPollingInterval": "00:00:00.050"}, {"visibilityTimeout": 30}):
        with pytest.raises(ValueError):
            QueuesOptions.from_settings(bad)
    assert parse_timespan("1.02:03:04.5") == 93784.5 and parse_timespan("00:01") == 60.0


def test_queue_names_and_setting_expressions() -> None:
    env = {"ENV": "Dev", "Q": "arr-watch"}
    assert resolve_expression("%Q%", env) == "arr-watch"
    assert resolve_expression("arr-%ENV%-watch", env) == "arr-Dev-watch"
    with pytest.raises(ValueError, match="MISSING"):
        resolve_expression("%MISSING%", env)
    assert normalize_queue_name("Arr-Dev-Watch") == "arr-dev-watch"
    for bad in ("ab", "a--b", "-ab", "ab-", "a_b", "x" * 64):
        with pytest.raises(ValueError, match="invalid queue name"):
            normalize_queue_name(bad)
    assert poison_queue_name("arr-watch") == "arr-watch-poison"
    assert poison_queue_name("arr-watch-poison") is None and poison_queue_name("x" * 57) is None


async def test_connections() -> None:
    """The setting named by `connection`, else AzureWebJobs<connection>; UseDevelopmentStorage=true is the local
    development account; the development account with no local QueueEndpoint is refused (it would go to Azure)."""
    assert resolve_connection("MyStorage", {"MyStorage": "a"}) == "a"
    assert resolve_connection("Storage", {"AzureWebJobsStorage": "b"}) == "b"
    assert resolve_connection(None, {"AzureWebJobsStorage": "c"}) == "c"
    with pytest.raises(ValueError, match="Other"):
        resolve_connection("Other", {"AzureWebJobsStorage": "c"})
    client = service_client("UseDevelopmentStorage=true")
    assert client.url.rstrip("/") == "http://127.0.0.1:10001/devstoreaccount1" and client.account_name == "devstoreaccount1"
    await client.close()
    with pytest.raises(ValueError, match="QueueEndpoint"):
        service_client("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
                       "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;")


def test_message_conversion() -> None:
    """base64 and none encodings; text and binary bodies; a body that is not base64 is refused."""

    class Received:
        id, dequeue_count, pop_receipt = "m1", 2, "r1"
        inserted_on = datetime.fromisoformat("2026-03-29T10:00:00+00:00")
        expires_on = datetime.fromisoformat("2026-04-05T10:00:00+00:00")
        next_visible_on = datetime.fromisoformat("2026-03-29T10:10:00+00:00")
        content = encode("héllo".encode())

    message = to_queue_message(Received(), "base64")
    assert (message.id, message.dequeue_count, message.pop_receipt, message.get_body()) == (
        "m1", 2, "r1", "héllo".encode())
    assert (message.insertion_time, message.expiration_time, message.time_next_visible) == (
        Received.inserted_on, Received.expires_on, Received.next_visible_on)
    Received.content = encode(b"\x00\xff")
    assert to_queue_message(Received(), "base64").get_body() == b"\x00\xff"
    Received.content = "plain {json}"
    assert to_queue_message(Received(), "none").get_body() == b"plain {json}"
    with pytest.raises(ValueError, match="not base64"):
        to_queue_message(Received(), "base64")


async def test_stop_does_not_wait_for_storage_that_stopped_answering() -> None:
    """``make run`` stops Azurite and the host together: a poll in flight to storage that accepted the connection
    and never answers must not hold the host's shutdown (it did, for the 10 s after which the stack kills it)."""
    silent = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
    port = silent.getsockname()[1]
    connection = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_ACCOUNT_KEY};"
                  f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    service = AsyncQueueServiceClient.from_connection_string(connection)
    listener = QueueListener(QueueFunction("never", _Function(lambda msg: None), "msg", "devhost-silent", None),
                             service.get_queue_client("devhost-silent"), None, QueuesOptions(), invoke)
    listener.start()
    try:
        await wait_for_async(lambda: accepted, "the listener polled", timeout=10)
        await asyncio.sleep(0.2)  # the request is on the wire, waiting for an answer that never comes
        started = time.monotonic()
        await asyncio.wait_for(listener.stop(), 5)
        assert time.monotonic() - started < POLL_GRACE_SECONDS + 2
        assert listener.counters.invocations == 0
    finally:
        await service.close()
        for sock in accepted:
            sock.close()
        silent.close()
