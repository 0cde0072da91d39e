"""Fixtures that start the real parts: Azurite, the ARR emulator and the local functions host, on free ports.

Nothing is skipped when a part is missing: a missing Azurite fails the test run with the command to fix it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient
from polling import wait_for

from devhost.stack import AZURITE, AZURITE_ALL, azurite_command, azurite_connection_string, free_port

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_ID = "00000000-0000-0000-0000-0000000000a1"
ACCOUNT_KEY = "test-account-key-not-a-secret"
FUNCTION_KEY = "test-function-key"


LOG_DIR = Path(os.environ.get("TEST_SERVICE_LOGS", "/tmp/arr-sessions-test-logs"))


def wait_until_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    def listening() -> bool:
        if process.poll() is not None:
            log = Path(getattr(process, "log_path", ""))
            out = log.read_text(errors="replace") if log.is_file() else ""
            pytest.fail(f"process on port {port} exited with {process.returncode}:\n{out[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    wait_for(listening, f"something listening on port {port}", timeout=timeout)


def not_a_regular_file(path: Path, kind: str) -> None:
    """Put at ``path`` something no regular file: ``fifo`` (a real one, ``os.mkfifo``), ``directory``, or a
    symbolic link to the device ``kind`` names (``/dev/zero``, ``/dev/urandom``)."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(kind)


def untraced(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` without coverage's settings: a Python subprocess started with it is not measured (the emulator
    and the fuzzer are not the code under test, and coverage's tracer would halve their speed)."""
    return {name: value for name, value in environ.items() if not name.startswith("COVERAGE_")}


def start(command: list[str], port: int, env: dict[str, str] | None = None, *,
          measured: bool = True) -> subprocess.Popen[bytes]:
    """Start a service; its output goes to a log file (a pipe nobody reads would block it once full)."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{Path(command[0]).name}-{port}.log"
    environ = {**os.environ, **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=environ if measured else untraced(environ),
                                   stdout=log, stderr=subprocess.STDOUT)
    process.log_path = str(log_path)  # type: ignore[attr-defined]
    wait_until_listening(port, process)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@dataclass
class Azurite:
    port: int
    connection_string: str
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Real Azurite Table Storage, in memory, for the whole test session."""
    if not AZURITE.exists():
        pytest.fail(f"{AZURITE} is missing: run `npm ci` (make test does)")
    port = free_port()
    process = start(azurite_command(port), port)
    yield Azurite(port, azurite_connection_string(port), process)
    stop(process)


@contextlib.contextmanager
def running_azurite_with_queues() -> Iterator[Azurite]:
    """Real Azurite with its Queue service (and Blob and Table, which come with it), in memory.

    ``port`` is the Queue port; the connection string names all three endpoints.
    """
    if not AZURITE_ALL.exists():
        pytest.fail(f"{AZURITE_ALL} is missing: run `npm ci` (make test does)")
    table, blob, queue = free_port(), free_port(), free_port()
    process = start(azurite_command(table, blob_port=blob, queue_port=queue), queue)
    try:
        yield Azurite(queue, azurite_connection_string(table, blob_port=blob, queue_port=queue), process)
    finally:
        stop(process)


@pytest.fixture(scope="session")
def azurite_queues() -> Iterator[Azurite]:
    """An Azurite with queues for the whole session. Every host on it shares the app's fixed queue names (as two
    instances of one app do): a test that counts which host ran a message takes :func:`own_azurite_queues`."""
    with running_azurite_with_queues() as azurite:
        yield azurite


@pytest.fixture
def own_azurite_queues() -> Iterator[Azurite]:
    """An Azurite with queues for one test alone: no host of another test can take its messages."""
    with running_azurite_with_queues() as azurite:
        yield azurite


@dataclass
class Emulator:
    """A running ARR emulator and its control API."""

    url: str
    account_id: str
    account_key: str
    process: subprocess.Popen[bytes]

    def control(self, method: str, path: str, json: Any = None) -> Any:
        response = httpx.request(method, f"{self.url}/_emulator/{path}", json=json, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None

    def reset(self, **config: Any) -> None:
        self.control("POST", "reset")
        self.control("POST", "config", {"startupSeconds": 10, "pageSize": 100, "capacity": None, "latencyMs": 0,
                                        **config})

    def advance(self, seconds: float) -> None:
        self.control("POST", "clock/advance", {"seconds": seconds})

    def fault(self, **fault: Any) -> None:
        self.control("POST", "faults", fault)

    def state(self) -> dict[str, Any]:
        return self.control("GET", "state")

    def client_settings(self) -> dict[str, str]:
        return {"endpoint": self.url, "sts_endpoint": self.url, "account_id": self.account_id,
                "account_domain": "eastus.mixedreality.azure.com"}


@pytest.fixture(scope="session")
def emulator_process() -> Iterator[Emulator]:
    port = free_port()
    process = start([sys.executable, "-m", "arr_emulator", "--port", str(port), "--account-id", ACCOUNT_ID,
                     "--account-key", ACCOUNT_KEY], port, measured=False)
    yield Emulator(f"http://127.0.0.1:{port}", ACCOUNT_ID, ACCOUNT_KEY, process)
    stop(process)


@pytest.fixture
def emulator(emulator_process: Emulator) -> Emulator:
    """The session's emulator, reset to a clean account for each test."""
    emulator_process.reset()
    return emulator_process


def function_app_env(emulator: Emulator, azurite: Azurite, table: str, **extra: str) -> dict[str, str]:
    """The app settings that point the real function app at the emulator and Azurite."""
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "ARR_ENDPOINT": emulator.url,
        "ARR_STS_ENDPOINT": emulator.url,
        "ARR_ACCOUNT_ID": emulator.account_id,
        "ARR_ACCOUNT_KEY": emulator.account_key,
        "ARR_ACCOUNT_DOMAIN": "eastus.mixedreality.azure.com",
        "ARR_HISTORY_TABLE": table,
        "ARR_CLEANUP_SCHEDULE": "0 */5 * * * *",
        **extra,
    }


@dataclass
class Host:
    url: str
    process: subprocess.Popen[bytes]
    key: str = FUNCTION_KEY

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"x-functions-key": self.key}, timeout=60, **kwargs)


def start_host(env: dict[str, str], module: str = "function_app", *extra_args: str, measured: bool = True) -> Host:
    """The app on the local host; ``measured=False`` leaves coverage's tracer out of it (for a host whose every
    line other tests measure, and whose speed is what the test needs)."""
    port = free_port()
    command = [sys.executable, "-m", "devhost", "--port", str(port), "--settings", "/nonexistent",
               "--module", module, "--function-key", FUNCTION_KEY, "--master-key", "test-master-key", *extra_args]
    return Host(f"http://127.0.0.1:{port}", start(command, port, env, measured=measured))


@pytest.fixture(scope="module")
def table_name() -> str:
    """A history table of the module's own, so that modules do not see each other's sessions."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def app_settings() -> dict[str, str]:
    """Extra app settings for the module's function app; a module overrides this fixture to change them."""
    return {}


@pytest.fixture(scope="module")
def app_host(emulator_process: Emulator, azurite: Azurite, table_name: str,
             app_settings: dict[str, str]) -> Iterator[Host]:
    """The real function app on the local host, pointed at the emulator and Azurite (timers on demand only)."""
    host = start_host(function_app_env(emulator_process, azurite, table_name, **app_settings),
                      "function_app", "--no-timers")
    yield host
    stop(host.process)


@pytest.fixture
def http(app_host: Host, emulator: Emulator) -> Iterator[httpx.Client]:
    """A client of the module's function app (with its function key), the emulator reset for the test."""
    with app_host.client() as client:
        yield client


@pytest.fixture
def table(azurite: Azurite, table_name: str) -> Iterator[TableClient]:
    """The module's history table, as a test reads it (created if the app has not yet)."""
    with TableClient.from_connection_string(azurite.connection_string, table_name=table_name) as client:
        try:
            client.create_table()
        except ResourceExistsError:
            pass
        yield client


STACK_PORTS = ("AZURITE_TABLE_PORT", "AZURITE_BLOB_PORT", "AZURITE_QUEUE_PORT", "ARR_EMULATOR_PORT", "FUNCTIONS_PORT")


@dataclass
class Stack:
    """``make run``'s stack (``python -m devhost.stack``) on free ports, its output in ``log``."""

    process: subprocess.Popen[bytes]
    ports: dict[str, int]
    log: Path


def start_stack(log: Path, env: dict[str, str], *, timeout: float = 90) -> Stack:
    """Start the stack with ``env`` (plus free ports) and wait until it says it is ready."""
    ports = {name: free_port() for name in STACK_PORTS}
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "devhost.stack"], cwd=ROOT,
                                   env={**env, **{name: str(port) for name, port in ports.items()}},
                                   stdout=out, stderr=subprocess.STDOUT)
    def ready() -> bool:
        return b"ready in" in log.read_bytes()

    wait_for(lambda: ready() or process.poll() is not None, "make run's stack ready", timeout=timeout, interval=0.2,
             fail=False)
    if not ready():
        process.kill()
        pytest.fail(f"make run's stack did not start:\n{log.read_text()[-3000:]}")
    return Stack(process, ports, log)


def azure_history(connection_string: str, table_name: str, **options: Any) -> Any:
    """The app's history store over Azure Table Storage (Azurite here), as the function app builds it."""
    from arr_core.store.azure_table import AzureTable, StorageTarget
    from arr_core.store.history import HistoryStore

    return HistoryStore(AzureTable.connect(StorageTarget(connection_string=connection_string), table_name), **options)


# The modules that take minutes run first: `make test` hands whole modules to its two workers (--dist loadfile), in
# collection order, so a long module collected last kept one worker busy while the other had nothing left to do.
LONG_MODULES = ("test_schemathesis.py", "test_schedule_lead.py", "test_emulator.py", "test_dashboard.py",
                "test_cli.py", "test_notifications.py", "test_cleanup_integration.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONG_MODULES.index(name) if name in LONG_MODULES else len(LONG_MODULES)

    items.sort(key=rank)  # stable: each module keeps its own order
