"""Fixtures of the chaos suite: fault proxies, kill -9 at a named point, Azurite restarted/frozen/killed, two hosts.

``chaos`` (shared Azurite) and ``chaos_own`` (an Azurite of the test's own, that it may restart, freeze or kill)
give a :class:`Chaos`: a fresh history table, a :class:`~chaos.proxy.FaultProxy` in front of the Table endpoint
and one in front of the ARR emulator, and a factory of function hosts pointed at them. Every response a host gives
through :meth:`Chaos.client` is recorded, so that a test can count the invariants at its end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from conftest import Azurite, Emulator, Host, function_app_env, start, start_host, stop
from polling import wait_for

from devhost.stack import azurite_command, azurite_connection_string, free_port

from .proxy import FaultProxy, Rule

BOUND_SECONDS = 100.0  # no answer may take longer (Logic Apps give up at 120 s)
MASTER_KEY = "test-master-key"

# Named points at which a host is killed: the proxy, method and path of the request held there.
POINTS = {
    "before-arr-put": ("arr", "PUT", r"/accounts/[^/]+/sessions/[^/:]+$"),  # intent written, ARR not yet asked
    "mid-stop": ("arr", "POST", r"/sessions/[^/]+/:stop$"),  # the stop is on its way to ARR
}


# -- Azurite of a test's own ---------------------------------------------------------------------------------------

class OwnAzurite:
    """Azurite on a port of its own: in memory, or persistent in ``location`` (its tables survive a restart)."""

    def __init__(self, location: Path | None = None) -> None:
        self.port = free_port()
        self.location = location
        self.connection_string = azurite_connection_string(self.port)
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        command = azurite_command(self.port)
        if self.location is not None:
            command[command.index("--inMemoryPersistence")] = "--location"
            command.insert(command.index("--location") + 1, str(self.location))
        return command

    def start(self) -> None:
        self.process = start(self.command(), self.port)

    def kill(self) -> None:
        """SIGKILL: gone at once, connections refused (in memory: every table lost)."""
        assert self.process is not None
        self.resume()
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM: a persistent Azurite writes its data out first."""
        assert self.process is not None
        self.resume()
        stop(self.process)

    def restart(self) -> None:
        """In memory: all tables gone. Persistent: the tables survive."""
        if self.location is None:
            self.kill()
        else:
            self.stop()
        self.start()

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP: connections are accepted and nothing is answered; always resumed on the way out."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            self.resume()


# -- the stack of one test -----------------------------------------------------------------------------------------

@dataclass
class Answer:
    method: str
    url: str
    status: int
    seconds: float


@dataclass
class Chaos:
    emulator: Emulator
    storage: Any  # Azurite or OwnAzurite: .port and .connection_string
    table_name: str
    table_proxy: FaultProxy
    arr_proxy: FaultProxy
    hosts: list[Host] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    clients: list[httpx.Client] = field(default_factory=list)

    # -- hosts ----------------------------------------------------------------------------------------------

    def start_host(self, *, via_proxy: bool = True, **settings: str) -> Host:
        """A function host on this test's table; through the fault proxies unless ``via_proxy`` is False."""
        storage = azurite_connection_string(self.table_proxy.port) if via_proxy else self.storage.connection_string
        arr = self.arr_proxy.url if via_proxy else self.emulator.url
        env = function_app_env(self.emulator, Azurite(0, storage, None), self.table_name,  # type: ignore[arg-type]
                               **settings)
        env["ARR_ENDPOINT"] = arr  # the STS stays direct: rules are about sessions
        host = start_host(env, "function_app", "--no-timers")
        self.hosts.append(host)
        return host

    def client(self, host: Host, timeout: float = 30.0) -> httpx.Client:
        """A client of ``host`` that records every answer and how long it took."""

        def sent(request: httpx.Request) -> None:
            request.extensions["t0"] = time.monotonic()

        def answered(response: httpx.Response) -> None:
            self.answers.append(Answer(response.request.method, str(response.request.url), response.status_code,
                                       time.monotonic() - response.request.extensions["t0"]))

        client = httpx.Client(base_url=host.url, headers={"x-functions-key": host.key}, timeout=timeout,
                              event_hooks={"request": [sent], "response": [answered]})
        self.clients.append(client)
        return client

    @staticmethod
    def kill(host: Host) -> None:
        host.process.kill()
        host.process.wait()

    def run_timer(self, host: Host, name: str = "lease_cleanup") -> httpx.Response:
        return httpx.post(f"{host.url}/admin/functions/{name}", json={"input": ""},
                          headers={"x-functions-key": MASTER_KEY}, timeout=10)

    def crash_at(self, point: str, host: Host, send: Callable[[], Any], *, forward: bool = False) -> Rule:
        """Send a request to ``host`` in the background, stop it exactly at ``point`` (a request held at a fault
        proxy), kill -9 the host, then let the held request go on (``forward``) or never arrive. Returns the rule
        that held it.

        ``after-key-claim``: the Idempotency-Key's row is in the table; the host's next Table request is held.
        ``before-arr-put``: the intent record is written; ARR's PUT is held. ``mid-stop``: ARR's :stop is held.
        """
        if point == "after-key-claim":
            key_insert = self.table_proxy.hold("POST", rf"/{self.table_name}$", body='"idem"')
            background(send)
            key_insert.wait_held()
            held = self.table_proxy.hold(None, r".*")  # whatever the host asks of the table next
            key_insert.release()
        else:
            proxy_name, method, path = POINTS[point]
            held = (self.arr_proxy if proxy_name == "arr" else self.table_proxy).hold(method, path)
            background(send)
        held.wait_held()
        self.kill(host)
        held.release(forward=forward)
        held.wait_done()
        self.table_proxy.clear()
        self.arr_proxy.clear()
        return held

    # -- storage, seen directly (not through the proxy) ---------------------------------------------------

    @property
    def table(self) -> TableClient:
        return TableClient.from_connection_string(self.storage.connection_string, table_name=self.table_name)

    def entities(self, query: str, **parameters: Any) -> list[dict[str, Any]]:
        """Entities of this test's table ([] while the table does not exist)."""
        with self.table as table:
            try:
                return [dict(e) for e in table.query_entities(query, parameters=parameters)]
            except ResourceNotFoundError:
                return []

    def wait_for(self, query: str, timeout: float = 15.0, **parameters: Any) -> list[dict[str, Any]]:
        """Entities matching ``query`` once there are any, or [] after ``timeout``."""
        return wait_for(lambda: self.entities(query, **parameters), f"entities where {query}", timeout=timeout,
                        interval=0.1, fail=False)

    def records(self) -> list[dict[str, Any]]:
        return self.entities("Kind eq 'session'")

    def record(self, session_id: str) -> dict[str, Any]:
        [record] = self.entities("Kind eq 'session' and SessionId eq @s", s=session_id)
        return record

    def records_per_session(self) -> Counter[str]:
        return Counter(r["SessionId"] for r in self.records())

    def events(self, kind: str, session_id: str | None = None) -> list[dict[str, Any]]:
        if session_id is None:
            return self.entities("Kind eq 'event' and Type eq @t", t=kind)
        return self.entities("Kind eq 'event' and Type eq @t and SessionId eq @s", t=kind, s=session_id)

    def rewrite(self, entity: dict[str, Any], **values: Any) -> None:
        """Change some properties of a stored entity (e.g. make it look older)."""
        with self.table as table:
            table.update_entity({"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"], **values},
                                mode=UpdateMode.MERGE)

    def delete_table(self) -> None:
        with self.table as table:
            table.delete_table()

    # -- ARR ------------------------------------------------------------------------------------------------

    def arr_sessions(self) -> dict[str, str]:
        """ARR's sessions (all, ended ones too): id -> status."""
        return {s["id"]: s["status"] for s in self.emulator.state()["sessions"]}

    def start_outside(self, ids: list[str], lease: int = 600) -> None:
        """Sessions started at ARR directly, as another tool (or a crash before our write) would leave them."""
        account = self.emulator.account_id
        with httpx.Client(base_url=self.emulator.url, timeout=60) as arr:
            token = arr.get(f"/Accounts/{account}/token",
                            headers={"Authorization": f"Bearer {account}:{self.emulator.account_key}"})
            auth = {"Authorization": f"Bearer {token.raise_for_status().json()['AccessToken']}"}
            for session_id in ids:
                arr.put(f"/accounts/{account}/sessions/{session_id}", params={"api-version": "2021-01-01"},
                        json={"maxLeaseTimeMinutes": lease, "size": "Standard"}, headers=auth).raise_for_status()

    # -- invariants -----------------------------------------------------------------------------------------

    def assert_invariants(self, arr_sessions: int) -> None:
        """ARR runs exactly ``arr_sessions`` sessions; each has exactly one history record and no session has
        more; no answer was a 500 or slower than the bound."""
        arr = self.arr_sessions()
        assert len(arr) == arr_sessions, f"{len(arr)} ARR sessions, expected {arr_sessions}"
        per_session = self.records_per_session()
        assert {i: per_session.get(i, 0) for i in arr} == dict.fromkeys(arr, 1), per_session
        assert [i for i, n in per_session.items() if n > 1] == []
        assert [a for a in self.answers if a.status == 500] == []
        assert [a for a in self.answers if a.seconds > BOUND_SECONDS] == []

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for host in self.hosts:
            if host.process.poll() is None:
                stop(host.process)


def background(send: Callable[[], Any]) -> threading.Thread:
    """Run ``send`` in a thread whose failure (the host was killed under it) is expected and swallowed."""

    def run() -> None:
        with contextlib.suppress(Exception):
            send()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def follow(client: httpx.Client, response: httpx.Response, emulator: Emulator, *, pause: float = 0.0,
           max_polls: int = 12) -> tuple[httpx.Response, int]:
    """Poll ``Location`` while 202 like a Logic App: ``Retry-After`` is honoured on the emulator's clock, plus a
    real ``pause`` (the app's own clock is real: a start cut short is driven again after a few seconds). Stops
    after ``max_polls`` (the last 202 is returned: a start that never ends)."""
    polls = 0
    while response.status_code == 202 and polls < max_polls:
        emulator.advance(int(response.headers.get("Retry-After", "10")))
        time.sleep(pause)
        response = client.get(response.headers["Location"])
        polls += 1
    return response, polls


def is_problem(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("application/problem+json")


@contextlib.contextmanager
def _stack(emulator: Emulator, storage: Any) -> Iterator[Chaos]:
    with FaultProxy(f"http://127.0.0.1:{storage.port}") as table_proxy, \
            FaultProxy(emulator.url) as arr_proxy:
        chaos = Chaos(emulator, storage, f"c{uuid.uuid4().hex[:12]}", table_proxy, arr_proxy)
        try:
            yield chaos
        finally:
            chaos.close()


@pytest.fixture
def chaos(emulator: Emulator, azurite: Azurite) -> Iterator[Chaos]:
    """A fresh table on the session's Azurite, fault proxies in front of it and of the emulator."""
    emulator.reset(startupSeconds=0)
    with _stack(emulator, azurite) as stack:
        yield stack


@pytest.fixture
def own_azurite(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OwnAzurite]:
    """An Azurite of the test's own: in memory, or persistent when the test is marked ``persistent`` via
    ``@pytest.mark.parametrize("own_azurite", ["persistent"], indirect=True)``."""
    persistent = getattr(request, "param", "memory") == "persistent"
    own = OwnAzurite(tmp_path / "azurite" if persistent else None)
    if own.location is not None:
        own.location.mkdir()
    own.start()
    try:
        yield own
    finally:
        own.resume()
        if own.process is not None and own.process.poll() is None:
            own.process.kill()
            own.process.wait()


@pytest.fixture
def chaos_own(emulator: Emulator, own_azurite: OwnAzurite) -> Iterator[Chaos]:
    """Like ``chaos``, on an Azurite of the test's own (``chaos_own.storage``) that it may restart, freeze, kill."""
    emulator.reset(startupSeconds=0)
    with _stack(emulator, own_azurite) as stack:
        yield stack
