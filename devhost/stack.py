"""``make run``: Azurite (Table, Blob and Queue storage, in memory), the ARR emulator and the functions host.

Prints the URLs, whether function keys are on, and the next step (a request that works as printed), and stops all
three on Ctrl-C or as soon as one of them dies. Ports: ``AZURITE_TABLE_PORT`` (10002), ``AZURITE_BLOB_PORT``
(10000), ``AZURITE_QUEUE_PORT`` (10001), ``ARR_EMULATOR_PORT`` (7072), ``FUNCTIONS_PORT`` (7071). Blob and Queue
are there for the real host: ``func start`` keeps the timer's schedule monitor and its singleton lock in blob storage
(``UseDevelopmentStorage=true`` finds them on these ports).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE = ROOT / "node_modules" / ".bin" / "azurite-table"
AZURITE_ALL = ROOT / "node_modules" / ".bin" / "azurite"
DEV_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_connection_string(port: int, *, blob_port: int | None = None, queue_port: int | None = None) -> str:
    """Azurite's well-known development account (a public, documented key, not a secret)."""
    endpoints = {"Table": port, "Blob": blob_port, "Queue": queue_port}
    return (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_ACCOUNT_KEY};"
            + "".join(f"{kind}Endpoint=http://127.0.0.1:{p}/devstoreaccount1;" for kind, p in endpoints.items() if p))


def free_port() -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"process for port {port} exited with code {process.returncode}"
            raise RuntimeError(msg)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    msg = f"nothing listened on port {port} after {timeout:.0f} s"
    raise RuntimeError(msg)


def azurite_command(port: int, *, blob_port: int | None = None, queue_port: int | None = None) -> list[str]:
    """Azurite's Table service alone (tests), or with Blob and Queue when their ports are given (``make run``)."""
    both = blob_port is not None and queue_port is not None
    command = [str(AZURITE_ALL if both else AZURITE), "--inMemoryPersistence", "--disableTelemetry",
               "--skipApiVersionCheck", "--silent", "--tableHost", "127.0.0.1", "--tablePort", str(port)]
    if both:
        command += ["--blobHost", "127.0.0.1", "--blobPort", str(blob_port),
                    "--queueHost", "127.0.0.1", "--queuePort", str(queue_port)]
    return command


def ensure_local_settings() -> Path:
    settings = ROOT / "local.settings.json"
    if not settings.exists():
        shutil.copy(ROOT / "local.settings.example.json", settings)
        print(f"created {settings.name} from local.settings.example.json")
    return settings


def next_steps(port: int, *, keys_on: bool) -> str:
    """What to do now: a request that works as printed, and how function keys stand (README "Try a session")."""
    base = f"http://localhost:{port}/api"
    key_header = " -H 'x-functions-key: <your key>'" if keys_on else ""
    if keys_on:
        keys = ("Function keys are ON (DEVHOST_FUNCTION_KEYS): send one in the x-functions-key header or as ?code= "
                "(health and the OpenAPI document need none).")
    else:
        keys = ("Function keys are off, as under `func start`: no key needed here. To require one: "
                "DEVHOST_FUNCTION_KEYS=<key> make run")
    return (f"{keys}\n"
            "Next, start a session (the README's \"Try a session\" follows it until Ready and stops it):\n"
            f"  curl -s -X POST {base}/sessions -H 'Content-Type: application/json'{key_header} "
            "-d '{\"requestedBy\": \"me\", \"reason\": \"trying it\"}'")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # Ctrl-C, or a TERM from a supervisor, stops all three (a background job inherits SIGINT as ignored).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    ports = {"azurite": int(os.environ.get("AZURITE_TABLE_PORT", "10002")),
             "azurite blob": int(os.environ.get("AZURITE_BLOB_PORT", "10000")),
             "azurite queue": int(os.environ.get("AZURITE_QUEUE_PORT", "10001")),
             "emulator": int(os.environ.get("ARR_EMULATOR_PORT", "7072")),
             "functions": int(os.environ.get("FUNCTIONS_PORT", "7071"))}
    taken = [f"{name} port {port}" for name, port in ports.items() if port_taken(port)]
    if taken:
        print(f"cannot start: {', '.join(taken)} already in use. Stop what uses it, or set AZURITE_TABLE_PORT, "
              "AZURITE_BLOB_PORT, AZURITE_QUEUE_PORT, ARR_EMULATOR_PORT or FUNCTIONS_PORT.", file=sys.stderr)
        return 2
    settings = ensure_local_settings()
    values = json.loads(settings.read_text()).get("Values", {})
    emulator_url = f"http://127.0.0.1:{ports['emulator']}"
    env = dict(os.environ)
    storage = {"blob_port": ports["azurite blob"], "queue_port": ports["azurite queue"]}
    env.setdefault("AzureWebJobsStorage", azurite_connection_string(ports["azurite"], **storage))
    env.setdefault("ARR_ENDPOINT", emulator_url)
    env.setdefault("ARR_STS_ENDPOINT", emulator_url)
    account_id = env.get("ARR_ACCOUNT_ID") or values.get("ARR_ACCOUNT_ID", "")
    account_key = env.get("ARR_ACCOUNT_KEY") or values.get("ARR_ACCOUNT_KEY", "")
    commands = {
        "azurite": azurite_command(ports["azurite"], **storage),
        "emulator": [sys.executable, "-m", "arr_emulator", "--port", str(ports["emulator"]),
                     "--account-id", account_id, "--account-key", account_key],
        "functions": [sys.executable, "-m", "devhost", "--port", str(ports["functions"])],
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, command in commands.items():
            processes[name] = subprocess.Popen(command, cwd=ROOT, env=env)
            wait_for_port(ports[name], processes[name])
        print(f"\nready in {time.monotonic() - started:.1f} s")
        print(f"  functions     http://127.0.0.1:{ports['functions']}/api/health  (OpenAPI: /api/openapi.json)")
        print(f"  ARR emulator  {emulator_url}  (state: {emulator_url}/_emulator/state)")
        print(f"  Azurite       tables http://127.0.0.1:{ports['azurite']}/devstoreaccount1, "
              f"blobs :{ports['azurite blob']}, queues :{ports['azurite queue']} (in memory)")
        print(next_steps(ports["functions"], keys_on=bool(env.get("DEVHOST_FUNCTION_KEYS")
                                                          or values.get("DEVHOST_FUNCTION_KEYS"))))
        print("Ctrl-C stops all three.\n", flush=True)
        while all(p.poll() is None for p in processes.values()):
            time.sleep(0.5)
        dead = [n for n, p in processes.items() if p.poll() is not None]
        print(f"{', '.join(dead)} stopped; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_all(processes)


def stop_all(processes: dict[str, subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """TERM the functions first, then what they use (so that the host stops cleanly), each killed after
    ``grace`` seconds. A second Ctrl-C or TERM meanwhile kills what is left at once, and never leaves a part
    running."""
    hurry = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: hurry.set())
    signal.signal(signal.SIGTERM, lambda *_: hurry.set())
    for name in reversed(processes):
        process = processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while process.poll() is None and time.monotonic() < deadline and not hurry.is_set():
            time.sleep(0.05)
        if process.poll() is None:
            print(f"killing {name}: asked twice to stop" if hurry.is_set()
                  else f"{name} did not stop within {grace:g} s; killing it", file=sys.stderr)
            process.kill()
            process.wait()


if __name__ == "__main__":
    sys.exit(main())
