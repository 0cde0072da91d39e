"""Queue-triggered functions as the Functions host runs them, against Azure Queue storage (Azurite locally).

The host's conventions (Microsoft Learn, "Azure Queue storage trigger for Azure Functions" and its host.json
settings; the queue listener and processor of the WebJobs storage extension):

- ``host.json`` ``extensions.queues``: ``maxPollingInterval`` (default 1 min; for local development the host
  defaults to 2 s, and here it is capped at 2 s), ``visibilityTimeout`` (delay before a failed message is retried,
  default 0), ``batchSize`` (16, at most 32), ``newBatchThreshold`` (``batchSize / 2``), ``maxDequeueCount`` (5),
  ``messageEncoding`` (``base64`` or ``none``). App settings ``AzureFunctionsJobHost__extensions__queues__<name>``
  override them, as they do for the real host.
- Polling: a batch of up to ``batchSize`` messages, hidden for 10 minutes while they run (renewed at half-time);
  the next batch once no more than ``newBatchThreshold`` are still running; a randomized exponential back-off from
  100 ms up to the maximum polling interval while the queue is empty. The queue is created if missing.
- Success deletes the message. A failure makes it visible again after ``visibilityTimeout``; once its dequeue
  count has reached ``maxDequeueCount`` it is copied to ``<queue>-poison`` and deleted. A message dequeued more
  often than that (its runs were lost), or one that is not base64 where base64 is expected, goes to the poison
  queue without running. A queue with no poison queue (its name ends in ``-poison``, or is too long for the
  suffix) keeps failed messages hidden until their lease ends.
- ``connection`` names an app setting holding a connection string (``AzureWebJobs<name>`` also; empty means
  ``AzureWebJobsStorage``). ``UseDevelopmentStorage=true`` is the development account on 127.0.0.1:10001. A
  connection string for the development account without a local QueueEndpoint is refused (it would go to Azure);
  a function whose connection fails is reported and not run, and the others run, as in the host.
- ``queue_name`` may hold ``%SETTING%`` expressions; the name is lower-cased and validated, as the host does.
- On shutdown polling stops (a poll in flight gets a second, then is abandoned; a message it had taken
  reappears when its lease ends), async invocations are cancelled and their messages made visible again after
  ``visibilityTimeout`` (they keep the dequeue count of that attempt); sync ones, which cannot be interrupted, are
  waited for. Anything still running after the grace period keeps its message hidden until its lease ends.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import inspect
import ipaddress
import json
import logging
import os
import random
import re
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.functions.meta import Datum
from azure.functions.queue import QueueMessage, QueueMessageInConverter
from azure.storage.queue.aio import QueueClient, QueueServiceClient

log = logging.getLogger("devhost.queues")

LEASE_SECONDS = 600.0  # the host hides a message for 10 minutes while its function runs, renewed at half-time
MIN_POLLING_INTERVAL = 0.1  # QueuePollingIntervals.Minimum
DEV_MAX_POLLING_INTERVAL = 2.0  # "for local development the maximum polling interval defaults to two seconds"
MAX_BATCH_SIZE = 32  # the most messages one Get Messages call returns
POLL_GRACE_SECONDS = 1.0  # on shutdown, how long a poll in flight may still take
POISON_SUFFIX = "-poison"
OVERRIDE_PREFIX = "azurefunctionsjobhost__extensions__queues__"
DEV_ACCOUNT = "devstoreaccount1"

_EXPRESSION = re.compile(r"%([^%]+)%")
_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$")


# -- settings -----------------------------------------------------------------------------------------------------


def parse_timespan(value: Any) -> float:
    """A .NET TimeSpan as host.json writes it (``[d.]hh:mm[:ss[.fffffff]]``), in seconds."""
    match = _TIMESPAN.match(str(value).strip()) if isinstance(value, str) else None
    if match is None:
        msg = f"not a TimeSpan ([d.]hh:mm:ss[.fffffff]): {value!r}"
        raise ValueError(msg)
    days, hours, minutes, seconds, fraction = match.groups()
    return (int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
            + float(f"0.{fraction}" if fraction else 0))


@dataclass(frozen=True)
class QueuesOptions:
    """``extensions.queues`` of host.json, with the host's defaults; durations in seconds."""

    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    batch_size: int = 16
    explicit_new_batch_threshold: int | None = None
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @property
    def new_batch_threshold(self) -> int:
        if self.explicit_new_batch_threshold is not None:
            return self.explicit_new_batch_threshold
        return self.batch_size // 2

    @property
    def dev_polling_interval(self) -> float:
        """The longest wait between polls of an empty queue here: host.json's value, capped at 2 s for dev."""
        return min(self.max_polling_interval, DEV_MAX_POLLING_INTERVAL)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> QueuesOptions:
        """From host.json's ``queues`` object (keys in any case), checked as the host checks them."""
        values = {str(k).lower(): v for k, v in settings.items()}
        options: dict[str, Any] = {}
        if "maxpollinginterval" in values:
            options["max_polling_interval"] = parse_timespan(values["maxpollinginterval"])
            if options["max_polling_interval"] < MIN_POLLING_INTERVAL:
                msg = "maxPollingInterval must not be less than 00:00:00.100"
                raise ValueError(msg)
        if "visibilitytimeout" in values:
            options["visibility_timeout"] = parse_timespan(values["visibilitytimeout"])
        if "batchsize" in values:
            options["batch_size"] = _integer(values["batchsize"], "batchSize", 1, MAX_BATCH_SIZE)
        if "newbatchthreshold" in values:
            options["explicit_new_batch_threshold"] = _integer(values["newbatchthreshold"], "newBatchThreshold", 0)
        if "maxdequeuecount" in values:
            options["max_dequeue_count"] = _integer(values["maxdequeuecount"], "maxDequeueCount", 1)
        if "messageencoding" in values:
            encoding = str(values["messageencoding"]).lower()
            if encoding not in ("base64", "none"):
                msg = f"messageEncoding must be base64 or none, not {values['messageencoding']!r}"
                raise ValueError(msg)
            options["message_encoding"] = encoding
        return cls(**options)


def _integer(value: Any, name: str, low: int, high: int | None = None) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        msg = f"{name} must be an integer {bounds}, not {value!r}"
        raise ValueError(msg)
    return number


def _get(mapping: Mapping[str, Any], key: str) -> Any:
    """A key of a host.json object, in any case (the host's configuration is case-insensitive)."""
    return next((v for k, v in mapping.items() if k.lower() == key.lower()), None)


def load_queues_options(script_root: str | Path, environ: Mapping[str, str] | None = None) -> QueuesOptions:
    """``extensions.queues`` of ``<script_root>/host.json``, then ``AzureFunctionsJobHost__extensions__queues__*``
    app settings over it; a missing host.json means the defaults."""
    environ = os.environ if environ is None else environ
    settings: dict[str, Any] = {}
    path = Path(script_root) / "host.json"
    if path.is_file():
        document = json.loads(path.read_text(encoding="utf-8-sig"))
        queues = _get(_get(document, "extensions") or {}, "queues") or {}
        if not isinstance(queues, dict):
            msg = f"{path}: extensions.queues must be an object"
            raise ValueError(msg)
        settings.update(queues)
    for name, value in environ.items():
        if name.lower().startswith(OVERRIDE_PREFIX):
            settings[name[len(OVERRIDE_PREFIX):]] = value
    return QueuesOptions.from_settings(settings)


def resolve_expression(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Every ``%NAME%`` in ``value`` replaced by the app setting NAME, as the host resolves binding expressions."""
    environ = os.environ if environ is None else environ

    def setting(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            msg = f"{value!r} names app setting {name!r}, which is not set"
            raise ValueError(msg)
        return environ[name]

    return _EXPRESSION.sub(setting, value)


def normalize_queue_name(name: str) -> str:
    """Lower-cased and checked against Azure's rules (3-63 of a-z, 0-9 and single inner hyphens), like the host."""
    normalized = name.strip().lower()
    if not _QUEUE_NAME.match(normalized):
        msg = (f"invalid queue name {name!r}: 3-63 characters of a-z, 0-9 and '-', starting and ending with a "
               "letter or digit, no two hyphens in a row")
        raise ValueError(msg)
    return normalized


def poison_queue_name(name: str) -> str | None:
    """``<name>-poison``; none for a poison queue itself, or where the suffix would make the name too long."""
    if name.endswith(POISON_SUFFIX) or len(name) + len(POISON_SUFFIX) > 63:
        return None
    return name + POISON_SUFFIX


def resolve_connection(connection: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The connection string in the app setting ``connection`` names (or ``AzureWebJobs<connection>``)."""
    environ = os.environ if environ is None else environ
    name = connection or "AzureWebJobsStorage"
    for candidate in (name, f"AzureWebJobs{name}"):
        if environ.get(candidate):
            return environ[candidate]
    msg = (f"connection {name!r}: neither app setting {name} nor AzureWebJobs{name} holds a storage connection "
           "string (identity-based connections are not supported by this host)")
    raise ValueError(msg)


def _is_loopback(host: str) -> bool:
    host = host.rsplit(":", 1)[0].strip("[]") if host.count(":") == 1 or host.startswith("[") else host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def service_client(connection_string: str) -> QueueServiceClient:
    """An async Queue service client for a connection string (``UseDevelopmentStorage=true`` included).

    Without aiohttp's ``trust_env`` unless a proxy is set: it would look up ~/.netrc and the proxies in the event
    loop's default executor on every poll, renewal and delete, so that the app's own use of those threads (a
    receiver's slow DNS) would stall the host's leases here, which the real host, in its own process, does not."""
    client = QueueServiceClient.from_connection_string(connection_string,
                                                       use_env_settings=bool(urllib.request.getproxies()))
    if client.account_name == DEV_ACCOUNT and not _is_loopback(client.primary_hostname):
        msg = (f"the connection string names the development account {DEV_ACCOUNT} but no local QueueEndpoint "
               f"(it would reach {client.primary_hostname}); add QueueEndpoint=http://127.0.0.1:<port>/{DEV_ACCOUNT}")
        raise ValueError(msg)
    return client


# -- messages -----------------------------------------------------------------------------------------------------


def _timestamp(value: datetime | None) -> Datum | None:
    if value is None:
        return None
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return Datum(utc.isoformat(), "string")


def to_queue_message(message: Any, encoding: str) -> QueueMessage:
    """The ``func.QueueMessage`` the Python worker would pass for a received message: the body decoded per
    ``messageEncoding``, and the trigger metadata (Id, DequeueCount, times, PopReceipt) the host sends with it.
    Raises ``ValueError`` for a body that is not base64 when base64 is expected."""
    text = message.content or ""
    if encoding == "base64":
        try:
            body = base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            msg = f"message {message.id} is not base64 (host.json messageEncoding is base64)"
            raise ValueError(msg) from exc
    else:
        body = text.encode("utf-8")
    try:
        datum = Datum(body.decode("utf-8"), "string")
    except UnicodeDecodeError:
        datum = Datum(body, "bytes")
    metadata = {
        "Id": Datum(message.id, "string"),
        "DequeueCount": Datum(json.dumps(message.dequeue_count), "json"),
        "InsertionTime": _timestamp(message.inserted_on),
        "ExpirationTime": _timestamp(message.expires_on),
        "NextVisibleTime": _timestamp(message.next_visible_on),
        "PopReceipt": Datum(message.pop_receipt, "string"),
    }
    return QueueMessageInConverter.decode(datum, trigger_metadata={k: v for k, v in metadata.items() if v is not None})


# -- listening ----------------------------------------------------------------------------------------------------


@dataclass
class QueueFunction:
    name: str
    function: Any
    arg_name: str
    queue_name: str
    connection: str | None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function.get_user_function())


Invoker = Callable[[Any, str, Any, str], Awaitable[Any]]


class _Backoff:
    """Randomized exponential back-off between polls of an empty queue (the host's delay strategy)."""

    def __init__(self, minimum: float, maximum: float) -> None:
        self.minimum, self.maximum = minimum, max(minimum, maximum)
        self.current = minimum

    def next(self, found_messages: bool) -> float:
        if found_messages:
            self.current = self.minimum
        else:
            self.current = min(self.maximum, self.current * 2)
        return min(self.maximum, self.current * random.uniform(0.8, 1.2))


@dataclass
class _Lease:
    receipt: str


@dataclass
class _Counters:
    """What a listener did, for logs and tests."""

    invocations: int = 0
    succeeded: int = 0
    failed: int = 0
    poisoned: int = 0
    released_on_shutdown: int = 0
    errors: list[str] = field(default_factory=list)


class QueueListener:
    """Polls one queue for one function and runs it for each message."""

    def __init__(self, function: QueueFunction, queue: QueueClient, poison: QueueClient | None,
                 options: QueuesOptions, invoke: Invoker, *, lease_seconds: float = LEASE_SECONDS) -> None:
        self.function = function
        self.queue = queue
        self.poison = poison
        self.options = options
        self.invoke = invoke
        self.lease_seconds = lease_seconds
        self.counters = _Counters()
        self._created = False
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()  # a message finished, or stop() was called
        self._poll_task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._invocations: set[asyncio.Task[Any]] = set()
        self._last_error: str | None = None

    def start(self) -> None:
        self._poll_task = asyncio.create_task(self._poll(), name=f"queue listener {self.function.name}")

    async def stop(self, grace: float = 30.0) -> None:
        """Stop polling; cancel async invocations (their messages are released), wait for sync ones."""
        self._stopping.set()
        self._wake.set()
        if self._poll_task is not None:
            # A poll in flight gets a moment to bring its messages in (cancelled, it could leave some hidden for
            # their whole lease); then it is abandoned, as the host's cancellation token abandons it: storage that
            # stopped answering (make run stops Azurite beside the host) must not hold the shutdown.
            await asyncio.wait({self._poll_task}, timeout=POLL_GRACE_SECONDS)
            self._poll_task.cancel()
            await asyncio.gather(self._poll_task, return_exceptions=True)
        if self.function.is_async:
            for invocation in list(self._invocations):
                invocation.cancel()
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in pending:  # a sync function still running: its message stays hidden until the lease ends
                log.warning("%s still running at shutdown; its message reappears when its lease ends",
                            self.function.name)
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # -- polling ------------------------------------------------------------------------------------------------

    async def _poll(self) -> None:
        backoff = _Backoff(MIN_POLLING_INTERVAL, self.options.dev_polling_interval)
        found_since_delay = False
        while not self._stopping.is_set():
            batch = await self._receive()
            if batch:
                for message in batch:
                    task = asyncio.create_task(self._process(message), name=f"{self.function.name} {message.id}")
                    self._in_flight.add(task)
                    task.add_done_callback(self._finished)
                found_since_delay = True
                await self._wait_below_threshold()
                continue
            await self._nap(backoff.next(found_since_delay))
            found_since_delay = False

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()

    async def _nap(self, seconds: float) -> None:
        self._wake.clear()
        if self._stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _wait_below_threshold(self) -> None:
        while len(self._in_flight) > self.options.new_batch_threshold and not self._stopping.is_set():
            self._wake.clear()
            await self._wake.wait()

    async def _receive(self) -> list[Any]:
        try:
            if not self._created:
                with contextlib.suppress(ResourceExistsError):
                    await self.queue.create_queue()
                self._created = True
            pages = self.queue.receive_messages(messages_per_page=self.options.batch_size,
                                                visibility_timeout=int(self.lease_seconds)).by_page()
            page = await anext(pages, None)
            batch = [message async for message in page] if page is not None else []
        except ResourceNotFoundError:  # deleted under us: create it again on the next poll
            self._created = False
            return []
        except (AzureError, OSError) as exc:  # storage unreachable or failing: keep polling, say so once
            self._report(f"polling queue {self.queue.queue_name} failed: {exc.__class__.__name__}: {exc}")
            return []
        self._last_error = None
        return batch

    def _report(self, error: str) -> None:
        first_line = error.splitlines()[0]
        if first_line != self._last_error:
            log.error("%s: %s", self.function.name, first_line)
            self.counters.errors.append(first_line)
        self._last_error = first_line

    # -- one message --------------------------------------------------------------------------------------------

    async def _process(self, message: Any) -> None:
        lease = _Lease(message.pop_receipt)
        renewer = asyncio.create_task(self._keep_hidden(message.id, lease))
        try:
            outcome = await self._run(message)
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
        await self._complete(message, lease, outcome)

    async def _run(self, message: Any) -> str:
        if message.dequeue_count > self.options.max_dequeue_count:
            return "poison"  # its earlier runs were lost (the host stopped): it is not tried again
        if self._stopping.is_set():  # received as the host stopped: released without running
            return "cancelled"
        try:
            value = to_queue_message(message, self.options.message_encoding)
        except ValueError as exc:  # retrying cannot help: the host moves it to the poison queue at once
            log.error("%s: %s", self.function.name, exc)
            return "undecodable"
        self.counters.invocations += 1
        invocation = asyncio.create_task(
            self.invoke(self.function.function, self.function.arg_name, value, self.function.name))
        self._invocations.add(invocation)
        try:
            await asyncio.wait({invocation})
        except asyncio.CancelledError:  # stopped after the grace period
            invocation.cancel()
            if self.function.is_async:  # a thread cannot be interrupted: not waited for
                await asyncio.gather(invocation, return_exceptions=True)
            raise
        finally:
            self._invocations.discard(invocation)
        if invocation.cancelled():
            return "cancelled"
        exception = invocation.exception()
        if exception is not None:
            log.error("queue function %s failed on message %s (dequeue count %d)", self.function.name,
                      message.id, message.dequeue_count, exc_info=exception)
            return "failed"
        return "succeeded"

    async def _keep_hidden(self, message_id: str, lease: _Lease) -> None:
        """Renew the message's invisibility at half its lease while the function runs."""
        interval = self.lease_seconds / 2
        while True:
            await asyncio.sleep(interval)
            try:
                updated = await self.queue.update_message(message_id, lease.receipt,
                                                          visibility_timeout=int(self.lease_seconds))
            except (ResourceNotFoundError, HttpResponseError) as exc:
                if _gone(exc):
                    return
                log.warning("%s: renewing message %s failed: %s", self.function.name, message_id, exc)
                interval = max(1.0, interval / 2)
                continue
            lease.receipt = updated.pop_receipt
            interval = self.lease_seconds / 2

    async def _complete(self, message: Any, lease: _Lease, outcome: str) -> None:
        try:
            if outcome == "succeeded":
                self.counters.succeeded += 1
                await self._delete(message.id, lease.receipt)
                return
            if outcome == "cancelled":
                self.counters.released_on_shutdown += 1
                log.info("%s: stopped while running message %s; it is visible again in %g s", self.function.name,
                         message.id, self.options.visibility_timeout)
                await self._release(message.id, lease.receipt)
                return
            if outcome == "failed":
                self.counters.failed += 1
            if self.poison is None:
                return  # no poison queue: stays hidden until its lease ends rather than loop fast
            if outcome in ("poison", "undecodable") or message.dequeue_count >= self.options.max_dequeue_count:
                await self._move_to_poison(message, lease, undecodable=outcome == "undecodable")
            else:
                await self._release(message.id, lease.receipt)
        except Exception:  # the message reappears when its lease ends
            log.exception("%s: completing message %s failed", self.function.name, message.id)

    async def _delete(self, message_id: str, receipt: str) -> None:
        try:
            await self.queue.delete_message(message_id, receipt)
        except (ResourceNotFoundError, HttpResponseError) as exc:
            if not _gone(exc):
                raise

    async def _release(self, message_id: str, receipt: str) -> None:
        try:
            await self.queue.update_message(message_id, receipt,
                                            visibility_timeout=int(self.options.visibility_timeout))
        except (ResourceNotFoundError, HttpResponseError) as exc:
            if not _gone(exc):
                raise

    async def _move_to_poison(self, message: Any, lease: _Lease, *, undecodable: bool = False) -> None:
        assert self.poison is not None
        reason = ("cannot be decoded" if undecodable
                  else f"has reached MaxDequeueCount of {self.options.max_dequeue_count}")
        log.warning("message %s %s; moving it to queue %s", message.id, reason, self.poison.queue_name)
        try:
            await self.poison.send_message(message.content)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                await self.poison.create_queue()
            await self.poison.send_message(message.content)
        self.counters.poisoned += 1
        await self._delete(message.id, lease.receipt)


def _gone(exc: Exception) -> bool:
    """The message was deleted, its queue removed, or someone else holds it now (a newer pop receipt)."""
    if isinstance(exc, ResourceNotFoundError):
        return True
    return getattr(exc, "status_code", None) == 400 and getattr(exc, "error_code", None) == "PopReceiptMismatch"


class QueueListeners:
    """The listeners of all queue functions of an app, sharing one service client per connection string."""

    def __init__(self, functions: Iterable[QueueFunction], options: QueuesOptions | None, invoke: Invoker, *,
                 lease_seconds: float = LEASE_SECONDS, environ: Mapping[str, str] | None = None) -> None:
        self.functions = list(functions)
        self.options = options or QueuesOptions()
        self.invoke = invoke
        self.environ = os.environ if environ is None else environ
        # Tests of a killed host shorten the lease, so that its messages come back in seconds rather than minutes.
        self.lease_seconds = float(self.environ.get("DEVHOST_QUEUE_LEASE_SECONDS", lease_seconds))
        self.listeners: dict[str, QueueListener] = {}
        self._clients: dict[str, QueueServiceClient] = {}

    def start(self) -> None:
        """Start a listener per function (inside the event loop); a function whose connection cannot be made is
        reported and left out, as the host leaves a function with a broken binding in error and runs the rest."""
        for function in self.functions:
            try:
                connection_string = resolve_connection(function.connection, self.environ)
                if connection_string not in self._clients:
                    self._clients[connection_string] = service_client(connection_string)
            except ValueError as exc:
                log.error("queue function %s will not run: %s", function.name, exc)
                continue
            client = self._clients[connection_string]
            poison_name = poison_queue_name(function.queue_name)
            listener = QueueListener(function, client.get_queue_client(function.queue_name),
                                     client.get_queue_client(poison_name) if poison_name else None,
                                     self.options, self.invoke, lease_seconds=self.lease_seconds)
            listener.start()
            self.listeners[function.name] = listener
            log.info("queue function %s listens on %s (%s)", function.name, function.queue_name,
                     client.primary_hostname)

    async def stop(self, grace: float = 30.0) -> None:
        await asyncio.gather(*(listener.stop(grace) for listener in self.listeners.values()))
        for listener in self.listeners.values():
            await listener.queue.close()
            if listener.poison is not None:
                await listener.poison.close()
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
