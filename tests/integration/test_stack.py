"""``make run`` (``python -m devhost.stack``): all parts start, answer, and stop together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import start_stack

from devhost.stack import next_steps, stop_all

ROOT = Path(__file__).resolve().parents[2]


def test_make_run_serves_the_functions_with_table_blob_and_queue_storage(tmp_path: Path) -> None:
    """The stack answers /api/health, and Azurite serves Blob and Queue beside Table (the real host's timer keeps
    its schedule monitor and lock in blobs); the next step it prints runs as printed; Ctrl-C (here TERM) stops
    every process, none killed, and exits 0."""
    env = dict(os.environ)
    env.pop("AzureWebJobsStorage", None)
    env.pop("DEVHOST_FUNCTION_KEYS", None)
    started = start_stack(tmp_path / "stack.log", env, timeout=60)
    stack, ports, log = started.process, started.ports, started.log
    try:
        health = httpx.get(f"http://127.0.0.1:{ports['FUNCTIONS_PORT']}/api/health", timeout=30)
        assert (health.status_code, health.json()["status"]) == (200, "ok")
        for kind in ("BLOB", "QUEUE"):  # Azurite's services answer their own protocol (an unsigned call is refused)
            answer = httpx.get(f"http://127.0.0.1:{ports[f'AZURITE_{kind}_PORT']}/devstoreaccount1?comp=list")
            assert answer.status_code in (400, 403) and "x-ms-request-id" in answer.headers, (kind, answer.text)
        printed = log.read_text()
        assert f"blobs :{ports['AZURITE_BLOB_PORT']}, queues :{ports['AZURITE_QUEUE_PORT']}" in printed
        # The next step it prints works as printed: keys are off, and the request starts a session.
        assert "Function keys are off" in printed and "DEVHOST_FUNCTION_KEYS=<key> make run" in printed
        lines = printed.splitlines()
        example = lines[lines.index(next(line for line in lines if line.startswith("Next,"))) + 1].strip()
        assert example.startswith(f"curl -s -X POST http://localhost:{ports['FUNCTIONS_PORT']}/api/sessions")
        started = subprocess.run(["bash", "-e", "-c", example], capture_output=True, text=True, timeout=60, check=True)
        assert json.loads(started.stdout)["status"] == "Starting", started.stdout
    finally:
        stack.send_signal(signal.SIGTERM)
        code = stack.wait(timeout=30)
    assert code == 0, log.read_text()
    assert "killing" not in log.read_text()  # each stopped on TERM; none had to be killed
    time.sleep(0.5)
    for port in ports.values():
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
        except httpx.TransportError:
            continue
        raise AssertionError(f"port {port} still answers after the stack stopped")


def test_with_keys_on_the_printed_step_says_so_and_sends_one() -> None:
    """``DEVHOST_FUNCTION_KEYS=<key> make run``: the printed request carries a key header to fill in."""
    printed = next_steps(7071, keys_on=True)
    assert "Function keys are ON" in printed and "x-functions-key: <your key>" in printed
    assert "x-functions-key" not in next_steps(7071, keys_on=False)


CHILD = """
import signal, sys, time
name, log, obey = sys.argv[1], sys.argv[2], sys.argv[3] == "obey"
def term(*_):
    with open(log, "a") as out:
        out.write(name + "\\n")
    if obey:
        sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("ready", flush=True)
time.sleep(60)
"""


def children(log: Path, **obeys: bool) -> dict[str, subprocess.Popen[bytes]]:
    started = {}
    for name, obey in obeys.items():
        process = subprocess.Popen([sys.executable, "-c", CHILD, name, str(log), "obey" if obey else "ignore"],
                                   stdout=subprocess.PIPE)
        assert process.stdout is not None and process.stdout.readline() == b"ready\n"
        started[name] = process
    return started


@pytest.fixture
def own_signals() -> Iterator[None]:
    """stop_all takes over SIGINT and SIGTERM, as the stack's last act; the test process gets them back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_the_functions_stop_before_what_they_use_and_a_stubborn_part_is_killed(
        tmp_path: Path, own_signals: None, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "terms"
    processes = children(log, azurite=True, emulator=False, functions=True)
    stop_all(processes, grace=0.5)
    assert log.read_text().split() == ["functions", "emulator", "azurite"]
    assert all(p.poll() is not None for p in processes.values())
    assert capsys.readouterr().err == "emulator did not stop within 0.5 s; killing it\n"


def test_a_second_interrupt_kills_what_is_left_at_once(tmp_path: Path, own_signals: None,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    processes = children(tmp_path / "terms", azurite=True, functions=False)
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    started = time.monotonic()
    stop_all(processes, grace=30)
    assert time.monotonic() - started < 10
    assert all(p.poll() is not None for p in processes.values())
    assert capsys.readouterr().err == "killing functions: asked twice to stop\nkilling azurite: asked twice to stop\n"
