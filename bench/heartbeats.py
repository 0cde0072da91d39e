"""Heartbeat load (issue 22): 500 sessions whose clients heartbeat every 30 s against one host.

Starts Azurite (tables, blobs, queues; in memory), the ARR emulator and ONE function host (``python -m devhost``,
function keys on, idle stop on: ``ARR_IDLE_MINUTES=15``), with a counting reverse proxy between the host and
Azurite's Table endpoint (every Table request the host makes passes through it: reads are GET, writes PUT, POST,
MERGE, DELETE, an entity group transaction one POST). Then:

- starts ``--sessions`` sessions through the app (``POST /api/sessions``), Ready at once on the emulator;
- runs one client per session, all at once in this process: each sends ``POST /api/sessions/{id}/heartbeat``
  every ``--interval`` seconds (the first at a random offset within the interval, as clients connect at different
  times) for ``--seconds`` of real time (the app's clock is the real one: its once-a-minute coalescing cannot be
  simulated faster);
- reads the host's CPU time (``/proc/<pid>/stat``, user + system, all its threads) before and after, minus what
  the idle host spent in a quiet window of the same length per second before the load (its timers and queue
  polling), and the proxy's counts.

Prints heartbeats sent and answered, their latency (p50, p99, max), Table requests per minute (writes and reads)
over the whole run and over the steady part (after every client's first heartbeat, which writes the record and the
session's one ``heartbeat`` event), what one write per heartbeat would have cost, and the host's CPU per heartbeat.
Exits 0 either way. Not a test: the numbers depend on the machine (the load, Azurite, the emulator and the host
share its cores).

``.venv/bin/python bench/heartbeats.py`` (``--sessions 500 --interval 30 --seconds 150``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the chaos tests' reverse proxy counts the Table requests

from chaos.proxy import FaultProxy

from devhost.stack import azurite_command, azurite_connection_string, free_port, wait_for_port

ACCOUNT_ID = "00000000-0000-0000-0000-0000000000d1"
ACCOUNT_KEY = "heartbeat-bench-key"
FUNCTION_KEY = "heartbeat-bench-function-key"
WRITE_METHODS = ("PUT", "POST", "MERGE", "PATCH", "DELETE")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15 of the line)


class TableCounts:
    def __init__(self, proxy: FaultProxy) -> None:
        self.rules = {method: proxy.count(method, r".*") for method in ("GET", *WRITE_METHODS)}

    def now(self) -> Counter[str]:
        return Counter({method: rule.seen for method, rule in self.rules.items()})

    @staticmethod
    def writes(counts: Counter[str]) -> int:
        return sum(counts[m] for m in WRITE_METHODS)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def start_sessions(host: str, count: int) -> list[str]:
    ids = [f"hb-{uuid.uuid4().hex[:10]}" for _ in range(count)]
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=host, headers={"x-functions-key": FUNCTION_KEY}, timeout=60) as client:

        async def start(session_id: str) -> None:
            async with gate:
                r = await client.post("/api/sessions", json={"sessionId": session_id, "leaseMinutes": 120,
                                                             "requestedBy": "heartbeat-bench"})
                r.raise_for_status()

        await asyncio.gather(*(start(s) for s in ids))
    return ids


async def memory_round(host: str, ids: list[str], pid: int) -> tuple[float, int, int]:
    """Every session heartbeats once, then once more at once: memory answers most of the second round (not those
    whose first was answered from a recording almost a minute old). The host's CPU during the second round, its
    heartbeats, and how many of them were written."""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=host, headers={"x-functions-key": FUNCTION_KEY}, timeout=30,
                                 limits=limits) as client:

        async def round_() -> list[httpx.Response]:
            return await asyncio.gather(*(client.post(f"/api/sessions/{s}/heartbeat", json={"client": "bench"})
                                          for s in ids))

        await round_()
        before = cpu_seconds(pid)
        answers = await round_()
        cpu = cpu_seconds(pid) - before
    written = sum(1 for r in answers if r.status_code == 200 and r.json()["recordedAt"] == r.json()["at"])
    return cpu, len(answers), written


async def heartbeat_load(host: str, ids: list[str], interval: float, seconds: float,
                         marks: list[float]) -> tuple[Counter[str], list[float], int]:
    """Every session's client heartbeats every ``interval`` s for ``seconds``; the answers' statuses, their
    latencies, and how many were written (recordedAt == at) rather than answered from memory."""
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    written = 0
    loop = asyncio.get_running_loop()
    ends = loop.time() + seconds
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=host, headers={"x-functions-key": FUNCTION_KEY}, timeout=30,
                                 limits=limits) as client:

        async def client_of(session_id: str) -> None:
            nonlocal written
            next_at = loop.time() + random.uniform(0, interval)
            while next_at < ends:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                sent = time.perf_counter()
                try:
                    r = await client.post(f"/api/sessions/{session_id}/heartbeat", json={"client": "bench"})
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                else:
                    latencies.append(time.perf_counter() - sent)
                    statuses[str(r.status_code)] += 1
                    if r.status_code == 200 and r.json()["recordedAt"] == r.json()["at"]:
                        written += 1
                next_at += interval

        async def mark() -> None:  # when every client has sent its first heartbeat
            await asyncio.sleep(interval + 1)
            marks.append(time.monotonic())

        await asyncio.gather(mark(), *(client_of(s) for s in ids))
    return statuses, latencies, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--quiet-seconds", type=float, default=15.0, help="the idle host's own CPU, measured first")
    args = parser.parse_args()

    table, blob, queue, emulator_port, host_port = (free_port() for _ in range(5))
    logs = Path(tempfile.mkdtemp(prefix="heartbeat-bench-"))
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    processes: list[subprocess.Popen[bytes]] = []

    def spawn(command: list[str], log: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (logs / log).open("wb") as out:
            process = subprocess.Popen(command, cwd=ROOT, env=env or clean_env, stdout=out, stderr=subprocess.STDOUT)
        processes.append(process)
        return process

    try:
        azurite = spawn(azurite_command(table, blob_port=blob, queue_port=queue), "azurite.log")
        emulator = spawn([sys.executable, "-m", "arr_emulator", "--port", str(emulator_port), "--account-id",
                          ACCOUNT_ID, "--account-key", ACCOUNT_KEY], "emulator.log")
        wait_for_port(queue, azurite)
        wait_for_port(emulator_port, emulator)
        emulator_url = f"http://127.0.0.1:{emulator_port}"
        httpx.post(f"{emulator_url}/_emulator/config", json={"startupSeconds": 0, "capacity": None}).raise_for_status()
        with FaultProxy(f"http://127.0.0.1:{table}") as proxy:
            env = {**clean_env, "AzureWebJobsStorage": azurite_connection_string(proxy.port, blob_port=blob,
                                                                                 queue_port=queue),
                   "ARR_ENDPOINT": emulator_url, "ARR_STS_ENDPOINT": emulator_url, "ARR_ACCOUNT_ID": ACCOUNT_ID,
                   "ARR_ACCOUNT_KEY": ACCOUNT_KEY, "ARR_ACCOUNT_DOMAIN": "eastus.mixedreality.azure.com",
                   "ARR_HISTORY_TABLE": f"hb{uuid.uuid4().hex[:10]}", "ARR_CLEANUP_SCHEDULE": "0 */5 * * * *",
                   "ARR_IDLE_MINUTES": "15", "ARR_POLL_SECONDS": "1"}
            host = spawn([sys.executable, "-m", "devhost", "--port", str(host_port), "--settings", "/nonexistent",
                          "--module", "function_app", "--function-key", FUNCTION_KEY, "--no-timers"], "host.log", env)
            wait_for_port(host_port, host, timeout=60)
            url = f"http://127.0.0.1:{host_port}"
            started = time.monotonic()
            ids = asyncio.run(start_sessions(url, args.sessions))
            print(f"started {len(ids)} sessions through the app in {time.monotonic() - started:.1f} s")

            counts = TableCounts(proxy)
            quiet_cpu = cpu_seconds(host.pid)
            time.sleep(args.quiet_seconds)
            idle_rate = (cpu_seconds(host.pid) - quiet_cpu) / args.quiet_seconds
            quiet_table = counts.now()

            marks: list[float] = []
            cpu_before, table_before, began = cpu_seconds(host.pid), counts.now(), time.monotonic()
            steady: list[Counter[str]] = []

            async def load() -> tuple[Counter[str], list[float], int]:
                async def snapshot() -> None:
                    while not marks:
                        await asyncio.sleep(0.05)
                    steady.append(counts.now())

                result, _ = await asyncio.gather(heartbeat_load(url, ids, args.interval, args.seconds, marks),
                                                 snapshot())
                return result

            statuses, latencies, written = asyncio.run(load())
            elapsed = time.monotonic() - began
            cpu = cpu_seconds(host.pid) - cpu_before
            table_after = counts.now()
            memory_cpu, memory_sent, memory_written = asyncio.run(memory_round(url, ids, host.pid))
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()

    sent = sum(statuses.values())
    total = table_after - table_before
    minutes = elapsed / 60
    steady_counts = table_after - steady[0] if steady else Counter()
    steady_minutes = (began + elapsed - marks[0]) / 60 if marks else 0.0
    net_cpu = cpu - idle_rate * elapsed
    print(f"{args.sessions} sessions, a heartbeat every {args.interval:.0f} s each, for {elapsed:.0f} s "
          f"({args.sessions * 60 / args.interval:.0f} heartbeats a minute)")
    print(f"heartbeats: sent {sent}, answered {dict(statuses)}, written {written}, from memory {sent - written}")
    if latencies:
        print(f"latency: p50 {percentile(latencies, 0.5) * 1000:.1f} ms, p99 {percentile(latencies, 0.99) * 1000:.1f} ms, "
              f"max {max(latencies) * 1000:.1f} ms (mean {statistics.fmean(latencies) * 1000:.1f} ms)")
    print(f"Table requests, whole run: {TableCounts.writes(total) / minutes:.0f} writes/min, "
          f"{total['GET'] / minutes:.0f} reads/min ({dict(total)}); the idle host before: "
          f"{sum(quiet_table.values())} requests in {args.quiet_seconds:.0f} s")
    if steady_minutes > 0:
        print(f"Table requests, steady (after every client's first heartbeat, {steady_minutes * 60:.0f} s): "
              f"{TableCounts.writes(steady_counts) / steady_minutes:.0f} writes/min, "
              f"{steady_counts['GET'] / steady_minutes:.0f} reads/min; one write per heartbeat would be "
              f"{args.sessions * 60 / args.interval:.0f} writes/min")
    print(f"host CPU: {cpu:.2f} s in {elapsed:.0f} s ({cpu / elapsed * 100:.1f}% of a core); idle host "
          f"{idle_rate * 100:.2f}% of a core; per heartbeat {cpu / max(sent, 1) * 1000:.2f} ms "
          f"({net_cpu / max(sent, 1) * 1000:.2f} ms net of the idle host's own)")
    # Two runs with different shares of written heartbeats: cpu = m * (from memory) + w * (written), solved for m, w.
    a, b, c, d = sent - written, written, memory_sent - memory_written, memory_written
    determinant = a * d - b * c
    print(f"a round of {memory_sent} heartbeats sent at once: host CPU {memory_cpu:.2f} s, {memory_written} of them "
          f"written ({memory_cpu / max(memory_sent, 1) * 1000:.2f} ms each)")
    if determinant:
        per_memory = (net_cpu * d - b * memory_cpu) / determinant
        per_written = (a * memory_cpu - c * net_cpu) / determinant
        print(f"host CPU per heartbeat, from the two runs (net of the idle host): answered from memory "
              f"{per_memory * 1000:.2f} ms, written {per_written * 1000:.2f} ms")
    print(f"logs: {logs}")


if __name__ == "__main__":
    main()
