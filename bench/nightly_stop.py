"""Nightly stop of 1000 sessions against the ARR emulator with 20 ms of injected latency per call.

Measured in one run, on one machine:
- ours: ``Maintenance.run_cleanup(mode="nightly")`` as the timer runs it (bounded concurrency, history kept in
  Azurite, changes announced);
- the lower bound ``ceil(N / C) x RTT`` for C concurrent stops of RTT each;
- the same job as a user would write it with the official SDK: list, then a loop over ``stop_rendering_session``;
- the best a Python user would write with it: the SDK's async client (``azure.mixedreality.remoterendering.aio``)
  driven with ``asyncio`` at the same concurrency (a semaphore of C), writing one history row per stopped session
  with the async ``azure.data.tables.aio.TableClient`` to Azurite (the least one needs to know later what was
  stopped: which session, when, why).
Prints wall time and CPU per stop (this process's ``time.process_time()``; ours and both peers run in it, the
emulator and Azurite in their own processes) for each, and the goals of issue 24 as ratios, PASS or FAIL; also this
process's peak RSS during our nightly run. Exits 0 either way. Not a test: the numbers depend on the machine.

``BENCH_PROFILE=1`` also profiles our process (cProfile) during the starts and during the nightly run, and prints
the top 30 functions of each by cumulative and by own time (``BENCH_PROFILE_OUT=DIR`` keeps the raw ``.prof``
files); ``BENCH_PROFILE=pyinstrument`` samples instead (far less overhead; pyinstrument must be importable) and
prints its call tree. Profiling slows everything: the wall and CPU numbers of a profiled run are not the benchmark's.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import math
import os
import pstats
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arr_core import AccountKeyCredential, ArrClient, RetryPolicy
from arr_core.api.views import StartSessionRequest
from arr_core.services.context import AppContext
from arr_core.services.settings import AppSettings
from blueprints.http import app_links
from devhost.stack import azurite_command, azurite_connection_string, free_port, wait_for_port

N = int(os.environ.get("BENCH_SESSIONS", "1000"))
LATENCY_MS = 20.0
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
ACCOUNT_ID = "00000000-0000-0000-0000-0000000000b1"
ACCOUNT_KEY = "bench-key"
PROFILE = os.environ.get("BENCH_PROFILE", "")
PROFILE_OUT = os.environ.get("BENCH_PROFILE_OUT")
PROFILE_TOP = 30


class _Profiled:
    """cProfile (BENCH_PROFILE=1) or pyinstrument (BENCH_PROFILE=pyinstrument) around one phase; else nothing."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.profile: Any = None
        if PROFILE == "1":
            self.profile = cProfile.Profile()
        elif PROFILE == "pyinstrument":
            from pyinstrument import Profiler  # a profiling aid, not a requirement

            self.profile = Profiler(interval=0.001, async_mode="disabled")

    def __enter__(self) -> None:
        if self.profile is not None:
            self.profile.start() if PROFILE == "pyinstrument" else self.profile.enable()

    def __exit__(self, *exc: object) -> None:
        if self.profile is None:
            return
        if PROFILE == "pyinstrument":
            self.profile.stop()
            print(f"--- pyinstrument profile of {self.name} ---")
            print(self.profile.output_text(unicode=False, color=False, show_all=False))
            return
        self.profile.disable()
        if PROFILE_OUT:
            Path(PROFILE_OUT).mkdir(parents=True, exist_ok=True)
            self.profile.dump_stats(str(Path(PROFILE_OUT) / f"{self.name}.prof"))
        for key in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(self.profile, stream=out).strip_dirs().sort_stats(key).print_stats(PROFILE_TOP)
            print(f"--- profile of {self.name}, top {PROFILE_TOP} by {key} ---")
            print(out.getvalue().split("\n\n", 1)[-1].strip())  # without the header lines


def control(url: str, path: str, body: dict | None = None) -> None:
    httpx.post(f"{url}/_emulator/{path}", json=body or {}, timeout=30).raise_for_status()


async def create_directly(url: str, count: int) -> None:
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=200), timeout=60)
    async with ArrClient(url, ACCOUNT_ID, "bench", AccountKeyCredential(ACCOUNT_KEY), sts_endpoint=url,
                         http_client=http) as client:
        for start in range(0, count, 200):
            await asyncio.gather(*(client.create_session(f"sdk-{i}", lease_minutes=600)
                                   for i in range(start, min(count, start + 200))))
    await http.aclose()


def _status_kb(field: str) -> int | None:
    """A ``/proc/self/status`` field in kB (VmRSS, VmHWM), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Start VmHWM again from the current RSS (Linux >= 4.0: ``5`` to ``clear_refs``); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


async def ours(url: str, azurite_port: int) -> tuple[float, int, float, float, dict[str, Any]]:
    """Wall time of the nightly run, sessions stopped, this process's CPU seconds per start and per stop, memory."""
    settings = AppSettings(account_id=ACCOUNT_ID, account_domain="bench", endpoint=url, sts_endpoint=url,
                           account_key=ACCOUNT_KEY, storage_connection=azurite_connection_string(azurite_port),
                           history_table=f"bench{uuid.uuid4().hex[:8]}", stop_concurrency=CONCURRENCY)
    context = AppContext.from_settings(settings)
    context.arr.retry = RetryPolicy()
    limit = asyncio.Semaphore(50)

    async def start(i: int) -> None:
        async with limit:
            await context.sessions.start(StartSessionRequest(session_id=f"ours-{i}", lease_minutes=240))

    cpu = time.process_time()
    with _Profiled("starts"):
        await asyncio.gather(*(start(i) for i in range(N)))
    cpu_per_start = (time.process_time() - cpu) / N
    control(url, "config", {"latencyMs": LATENCY_MS})
    memory: dict[str, Any] = {"after_starts_hwm": _status_kb("VmHWM"), "before_rss": _status_kb("VmRSS")}
    memory["reset"] = _reset_peak_rss()
    started, cpu = time.perf_counter(), time.process_time()
    with _Profiled("nightly"):
        # With links, as the app's timer runs it: its changes are announced (nobody listens here, so each ended
        # session is marked once, and the cleanup stops reading it).
        report = await context.maintenance.run_cleanup(mode="nightly", budget_seconds=90, links=app_links())
    elapsed = time.perf_counter() - started
    cpu_per_stop = (time.process_time() - cpu) / max(1, len(report.stopped))
    memory["nightly_hwm"] = _status_kb("VmHWM")
    await context.aclose()
    return elapsed, len(report.stopped), cpu_per_start, cpu_per_stop, memory


def emulator_token(url: str) -> str:
    """An access token from the emulator's STS, as the sequential peer has always used (static for the run)."""
    return httpx.get(f"{url}/Accounts/{ACCOUNT_ID}/token", params={"api-version": "2019-02-28-preview"},
                     headers={"Authorization": f"Bearer {ACCOUNT_ID}:{ACCOUNT_KEY}"}).json()["AccessToken"]


def sdk_loop(url: str) -> tuple[float, int, float]:
    from azure.core.credentials import AccessToken
    from azure.mixedreality.remoterendering import RemoteRenderingClient

    client = RemoteRenderingClient(endpoint=url, account_id=ACCOUNT_ID, account_domain="bench",
                                   credential=AccessToken(emulator_token(url), int(time.time()) + 3600))
    started, cpu = time.perf_counter(), time.process_time()
    stopped = 0
    for session in list(client.list_rendering_sessions(enforce_https=False)):  # what a user writes
        client.stop_rendering_session(session.id, enforce_https=False)
        stopped += 1
    return time.perf_counter() - started, stopped, (time.process_time() - cpu) / max(1, stopped)


async def sdk_concurrent(url: str, azurite_port: int) -> tuple[float, int, float]:
    """The SDK's async client at C concurrent stops, one history row per stopped session in Azurite.

    Wall time, sessions stopped and CPU seconds per stop, from the list to the last row written. The table is
    created before the clock starts (ours has its table from the starts, and the token cached, before its run).
    """
    from azure.core.credentials import AccessToken
    from azure.data.tables.aio import TableClient
    from azure.mixedreality.remoterendering.aio import RemoteRenderingClient

    client = RemoteRenderingClient(endpoint=url, account_id=ACCOUNT_ID, account_domain="bench",
                                   credential=AccessToken(emulator_token(url), int(time.time()) + 3600))
    table = TableClient.from_connection_string(azurite_connection_string(azurite_port),
                                               table_name=f"peer{uuid.uuid4().hex[:8]}")
    async with client, table:
        await table.create_table()
        limit = asyncio.Semaphore(CONCURRENCY)
        run = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")

        async def stop(session_id: str) -> None:
            async with limit:
                await client.stop_rendering_session(session_id, enforce_https=False)
                await table.create_entity({"PartitionKey": run, "RowKey": session_id, "reason": "nightly",
                                           "stoppedAt": datetime.now(UTC)})

        started, cpu = time.perf_counter(), time.process_time()
        sessions = [session.id async for session in await client.list_rendering_sessions(enforce_https=False)]
        await asyncio.gather(*(stop(session_id) for session_id in sessions))
        elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu
        written = 0
        async for _ in table.list_entities(select=["RowKey"]):
            written += 1
        if written != len(sessions):
            raise SystemExit(f"the concurrent peer wrote {written} history rows for {len(sessions)} stops")
    return elapsed, len(sessions), cpu_used / max(1, len(sessions))


def _goal(label: str, value: float, goal: str, passed: bool) -> str:
    return f"{label:<52} {value:7.2f}  goal {goal:<6} {'PASS' if passed else 'FAIL'}"


def main() -> None:
    azurite_port, emulator_port = free_port(), free_port()
    url = f"http://127.0.0.1:{emulator_port}"
    processes = [
        subprocess.Popen(azurite_command(azurite_port), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT),
        subprocess.Popen([sys.executable, "-m", "arr_emulator", "--port", str(emulator_port), "--account-id",
                          ACCOUNT_ID, "--account-key", ACCOUNT_KEY, "--startup-seconds", "0", "--page-size", "100"],
                         cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT),
    ]
    try:
        wait_for_port(azurite_port, processes[0])
        wait_for_port(emulator_port, processes[1])
        began = time.perf_counter()
        our_time, our_count, cpu_start, cpu_stop, memory = asyncio.run(ours(url, azurite_port))
        for_peer: dict[str, tuple[float, int, float]] = {}
        for name in ("loop", "async"):
            control(url, "reset")
            control(url, "config", {"latencyMs": 0})
            asyncio.run(create_directly(url, N))
            control(url, "config", {"latencyMs": LATENCY_MS})
            for_peer[name] = sdk_loop(url) if name == "loop" else asyncio.run(sdk_concurrent(url, azurite_port))
        total = time.perf_counter() - began
    finally:
        for process in processes:
            process.terminate()
    (loop_time, loop_count, loop_cpu), (peer_time, peer_count, peer_cpu) = for_peer["loop"], for_peer["async"]
    bound = math.ceil(N / CONCURRENCY) * LATENCY_MS / 1000
    print(f"sessions {N}, injected latency {LATENCY_MS:.0f} ms per ARR call, stop concurrency {CONCURRENCY}")
    print(f"{'':<52} {'wall s':>7}  {'CPU/stop ms':>11}  stopped")
    rows = [("ours (run_cleanup nightly, history, announced)", our_time, cpu_stop, our_count),
            (f"SDK async client, {CONCURRENCY} concurrent + 1 Table row each", peer_time, peer_cpu, peer_count),
            ("SDK loop over stop_rendering_session (ARR only)", loop_time, loop_cpu, loop_count),
            ("lower bound ceil(N/C) x RTT", bound, None, None)]
    for label, wall, cpu, count in rows:
        print(f"{label:<52} " + (f"{wall:7.2f}" if wall is not None else " " * 7)
              + (f"  {cpu * 1000:11.2f}" if cpu is not None else "") + (f"  {count}" if count is not None else ""))
    print(f"app CPU per start (intent + ARR + history)           {cpu_start * 1000:7.2f} ms")
    print("goals (issue 24), one run:")
    print(_goal("ours wall / concurrent peer's wall", our_time / peer_time, "<= 1", our_time <= peer_time))
    print(_goal("ours CPU per stop / concurrent peer's", cpu_stop / peer_cpu, "<= 1", cpu_stop <= peer_cpu))
    print(_goal("sequential SDK loop wall / ours", loop_time / our_time, ">= 10", loop_time >= 10 * our_time))
    print(_goal("ours wall / lower bound", our_time / bound, "<= 3", our_time <= 3 * bound))
    print(f"(for reference: concurrent peer / lower bound = {peer_time / bound:.2f}, "
          f"sequential loop / concurrent peer = {loop_time / peer_time:.2f})")
    if memory["nightly_hwm"] is not None:
        during = "during the nightly run" if memory["reset"] else "so far (starts and nightly run; reset refused)"
        print(f"this process's peak RSS {during}: {memory['nightly_hwm'] / 1024:.0f} MiB "
              f"(RSS before it {memory['before_rss'] / 1024:.0f} MiB; peak over the {N} starts "
              f"{memory['after_starts_hwm'] / 1024:.0f} MiB); ours runs in-process, not in the host")
    print(f"bench wall time {total:.1f} s")


if __name__ == "__main__":
    main()
