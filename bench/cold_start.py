"""Cold start and memory of the host (issue 24): first 202 after a process start, peak RSS under load.

Starts Azurite (tables, queues and blobs, in memory) and the ARR emulator once, then the function app on the local
host (``python -m devhost``, as ``make run`` serves it; not Microsoft's .NET host and worker, whose own memory is not
in these figures). Measured in one run, on one machine:

- cold start, ``--runs`` times (default 5): from ``Popen`` of a fresh ``python -m devhost`` to the first 202 of
  ``POST /api/sessions`` (polled from the moment the process starts), split into "port open" (interpreter, imports,
  uvicorn) and the first request itself (token from the emulator's STS, the first Table and ARR calls); a second
  request's time beside it. An untimed run first creates the history table and the queues, as a deployed app finds
  them. Median and max.
- memory, in one more fresh host: RSS once idle after its first start, then its peak RSS (``VmHWM`` of
  ``/proc/<pid>/status``) after ``--concurrent`` (default 300) concurrent starts, and during the nightly run
  (``POST /api/cleanup?mode=nightly``, stop concurrency 32, 20 ms per ARR call) over ``--sessions`` (default 1000)
  sessions. The peak is reset before the nightly run where Linux lets it (``clear_refs``), so that figure is the
  nightly run's own.

``.venv/bin/python bench/cold_start.py``. Not a test: the numbers depend on the machine. Exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devhost.stack import azurite_command, azurite_connection_string, free_port, wait_for_port  # noqa: E402

ACCOUNT_ID, ACCOUNT_KEY = "00000000-0000-0000-0000-0000000000e1", "bench-cold-key"
FUNCTION_KEY = "bench-function-key"
LATENCY_MS = 20.0
STOP_CONCURRENCY = 32
INSTANCE_MB = 512


def host_env(connection: str, emulator_url: str, table: str) -> dict[str, str]:
    env = {**os.environ, "AzureWebJobsStorage": connection, "ARR_ENDPOINT": emulator_url,
           "ARR_STS_ENDPOINT": emulator_url, "ARR_ACCOUNT_ID": ACCOUNT_ID, "ARR_ACCOUNT_KEY": ACCOUNT_KEY,
           "ARR_ACCOUNT_DOMAIN": "eastus.mixedreality.azure.com", "ARR_HISTORY_TABLE": table,
           "ARR_CLEANUP_SCHEDULE": "0 */5 * * * *", "ARR_STOP_CONCURRENCY": str(STOP_CONCURRENCY),
           "ARR_CLEANUP_BUDGET_SECONDS": "90"}
    return {k: v for k, v in env.items() if not k.startswith("COVERAGE_")}


def status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Host:
    """One ``python -m devhost`` process, its log in a temporary file."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log = Path(tempfile.mkstemp(prefix="cold-start-host-", suffix=".log")[1])
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start the process; returns the perf_counter at the moment just before ``Popen``."""
        with self.log.open("wb") as out:
            began = time.perf_counter()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devhost", "--port", str(self.port), "--settings", "/nonexistent",
                 "--function-key", FUNCTION_KEY, "--no-timers"], cwd=ROOT, env=self.env, stdout=out,
                stderr=subprocess.STDOUT)
        return began

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.unlink(missing_ok=True)

    def failed(self, why: str) -> SystemExit:
        return SystemExit(f"{why}; the host's log:\n{self.log.read_text(errors='replace')[-3000:]}")


def first_202(host: Host, began: float, timeout: float = 60.0) -> dict[str, float]:
    """Poll until the port answers, then POST a start: seconds from ``began`` to each, and a second request's time."""
    url = f"http://127.0.0.1:{host.port}"
    with httpx.Client(base_url=url, headers={"x-functions-key": FUNCTION_KEY}, timeout=60) as http:
        while True:
            if host.process is not None and host.process.poll() is not None:
                raise host.failed(f"the host exited with {host.process.returncode}")
            if time.perf_counter() - began > timeout:
                raise host.failed(f"no 202 within {timeout:.0f} s")
            try:
                response = http.post("/api/sessions", json={"leaseMinutes": 60})
            except httpx.TransportError:
                time.sleep(0.002)
                continue
            answered = time.perf_counter()
            if response.status_code != 202:
                raise host.failed(f"the first start answered {response.status_code}: {response.text[:300]}")
            break
        # When the port opened: the first request was sent right after it did, so its start is that moment. Measure
        # the request alone again to split the total (a second, warm start).
        second_began = time.perf_counter()
        again = http.post("/api/sessions", json={"leaseMinutes": 60})
        second = time.perf_counter() - second_began
        if again.status_code != 202:
            raise host.failed(f"the second start answered {again.status_code}")
    return {"total": answered - began, "second": second}


def port_open_time(host: Host, began: float, timeout: float = 60.0) -> float:
    """Seconds from ``began`` until the host's port accepts a connection (polled every 2 ms)."""
    while time.perf_counter() - began < timeout:
        if host.process is not None and host.process.poll() is not None:
            raise host.failed(f"the host exited with {host.process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", host.port), timeout=0.5).close()
            return time.perf_counter() - began
        except OSError:
            time.sleep(0.002)
    raise host.failed(f"nothing listened within {timeout:.0f} s")


async def starts(url: str, count: int, concurrency: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, headers={"x-functions-key": FUNCTION_KEY}, timeout=120,
                                 limits=httpx.Limits(max_connections=concurrency)) as http:

        async def one() -> None:
            async with limit:
                response = await http.post("/api/sessions", json={"leaseMinutes": 240})
                statuses[response.status_code] += 1

        await asyncio.gather(*(one() for _ in range(count)))
    return statuses


def cold_runs(env: dict[str, str], runs: int) -> list[dict[str, float]]:
    results = []
    for run in range(runs + 1):  # run 0: untimed, creates the table and the queues
        for how in ("request", "port"):  # the first 202; then, in a fresh host again, when the port opened
            if run == 0 and how == "port":
                continue
            host = Host(env)
            try:
                began = host.start()
                if how == "request":
                    result = first_202(host, began)
                else:
                    result = {"port": port_open_time(host, began)}
            finally:
                host.stop()
            if run:
                if how == "request":
                    results.append(result)
                else:
                    results[-1] |= result
    return results


def memory(env: dict[str, str], emulator_url: str, concurrent: int, sessions: int) -> dict[str, Any]:
    host = Host(env)
    url = f"http://127.0.0.1:{host.port}"
    found: dict[str, Any] = {}
    try:
        first_202(host, host.start())  # two sessions
        time.sleep(1.0)
        found["idle_rss"] = status_kb(host.pid, "VmRSS")
        found["idle_hwm"] = status_kb(host.pid, "VmHWM")
        began = time.perf_counter()
        found["burst_statuses"] = asyncio.run(starts(url, concurrent, concurrent))
        found["burst_s"] = time.perf_counter() - began
        found["burst_hwm"] = status_kb(host.pid, "VmHWM")
        found["burst_rss"] = status_kb(host.pid, "VmRSS")
        rest = max(0, sessions - concurrent - 2)
        found["rest_statuses"] = asyncio.run(starts(url, rest, 50))
        found["before_nightly_rss"] = status_kb(host.pid, "VmRSS")
        found["before_nightly_hwm"] = status_kb(host.pid, "VmHWM")
        found["reset"] = reset_peak(host.pid)
        httpx.post(f"{emulator_url}/_emulator/config", json={"latencyMs": LATENCY_MS}).raise_for_status()
        began = time.perf_counter()
        response = httpx.post(f"{url}/api/cleanup", params={"mode": "nightly"},
                              headers={"x-functions-key": FUNCTION_KEY}, timeout=300)
        found["nightly_s"] = time.perf_counter() - began
        httpx.post(f"{emulator_url}/_emulator/config", json={"latencyMs": 0}).raise_for_status()
        found["nightly_status"] = response.status_code
        if response.status_code == 200:
            report = response.json()
            found["nightly_counts"] = {k: len(report.get(k) or []) for k in ("stopped", "kept", "errors", "deferred")}
        else:
            found["nightly_counts"] = response.text[:300]
        found["nightly_hwm"] = status_kb(host.pid, "VmHWM")
        found["nightly_rss"] = status_kb(host.pid, "VmRSS")
    finally:
        host.stop()
    return found


def mib(kb: int | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=300)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    began = time.perf_counter()
    table, blob, queue, emulator_port = (free_port() for _ in range(4))
    connection = azurite_connection_string(table, blob_port=blob, queue_port=queue)
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    env = host_env(connection, emulator_url, f"cold{uuid.uuid4().hex[:8]}")
    processes = [
        subprocess.Popen(azurite_command(table, blob_port=blob, queue_port=queue), cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "arr_emulator", "--port", str(emulator_port), "--account-id",
                          ACCOUNT_ID, "--account-key", ACCOUNT_KEY, "--page-size", "100"], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        wait_for_port(queue, processes[0])
        wait_for_port(emulator_port, processes[1])
        cold = cold_runs(env, args.runs)
        mem = None if args.no_memory else memory(env, emulator_url, args.concurrent, args.sessions)
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    def column(key: str) -> list[float]:
        return [r[key] * 1000 for r in cold]

    print(f"cold start: python -m devhost to the first 202 of POST /api/sessions, {args.runs} fresh hosts "
          "(after an untimed one that created the table and queues)")
    print(f"{'':<44} {'median':>8} {'max':>8}  runs (ms)")
    for label, key in (("process start -> first 202", "total"), ("process start -> port open (other hosts)", "port"),
                       ("a second start on the warm host", "second")):
        values = column(key)
        print(f"{label:<44} {statistics.median(values):8.0f} {max(values):8.0f}  "
              + " ".join(f"{v:.0f}" for v in values))
    first_request = statistics.median(column("total")) - statistics.median(column("port"))
    print(f"{'the first request itself (difference)':<44} {first_request:8.0f}")
    if mem is not None:
        print("memory of the host process (python -m devhost: uvicorn + the app; Microsoft's .NET host not included)")
        print(f"  idle after its first 2 starts            RSS {mib(mem['idle_rss'])}, peak {mib(mem['idle_hwm'])}")
        print(f"  after {args.concurrent} concurrent starts  {'':<15}peak {mib(mem['burst_hwm'])} "
              f"(RSS after {mib(mem['burst_rss'])}; {mem['burst_s']:.1f} s; statuses "
              f"{dict(mem['burst_statuses'])})")
        print(f"  before the nightly run ({args.sessions} + {2 * (args.runs + 1)} earlier)  "
              f"RSS {mib(mem['before_nightly_rss'])}, peak so far {mib(mem['before_nightly_hwm'])} "
              f"(the other starts: {dict(mem['rest_statuses'])})")
        reset = "peak during it" if mem["reset"] else "peak so far (reset refused)"
        print(f"  nightly run ({LATENCY_MS:.0f} ms/ARR call, C={STOP_CONCURRENCY})  {reset} "
              f"{mib(mem['nightly_hwm'])} (RSS after {mib(mem['nightly_rss'])}; {mem['nightly_s']:.1f} s; "
              f"HTTP {mem['nightly_status']}; {mem['nightly_counts']})")
        peak = max(v for v in (mem["burst_hwm"], mem["before_nightly_hwm"], mem["nightly_hwm"]) if v is not None)
        print(f"  highest peak {mib(peak)} = {peak / 1024 / INSTANCE_MB:.0%} of a {INSTANCE_MB} MB instance "
              f"(margin {INSTANCE_MB - peak / 1024:.0f} MB before the .NET host's own share)")
    print(f"bench wall time {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
