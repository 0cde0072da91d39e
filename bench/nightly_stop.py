"""Nightly stop of 1000 sessions against the ARR emulator with 20 ms of injected latency per call.

Measured in one run, on one machine:
- ours: ``Maintenance.run_cleanup(mode="nightly")`` as the timer runs it (bounded concurrency, history kept in
  Azurite, changes announced);
- the lower bound ``ceil(N / C) x RTT`` for C concurrent stops of RTT each;
- the same job as a user would write it with the official SDK: list, then a loop over ``stop_rendering_session``.
Prints the times and their ratios. Not a test: the numbers depend on the machine.

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


async def ours(url: str, azurite_port: int) -> tuple[float, int, float, float]:
    """Wall time of the nightly run, sessions stopped, and this process's CPU seconds per start and per stop."""
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
    started, cpu = time.perf_counter(), time.process_time()
    with _Profiled("nightly"):
        # With links, as the app's timer runs it: its changes are announced (nobody listens here, so each ended
        # session is marked once, and the cleanup stops reading it).
        report = await context.maintenance.run_cleanup(mode="nightly", budget_seconds=90, links=app_links())
    elapsed = time.perf_counter() - started
    cpu_per_stop = (time.process_time() - cpu) / max(1, len(report.stopped))
    await context.aclose()
    return elapsed, len(report.stopped), cpu_per_start, cpu_per_stop


def sdk_loop(url: str) -> tuple[float, int, float]:
    from azure.core.credentials import AccessToken
    from azure.mixedreality.remoterendering import RemoteRenderingClient

    token = httpx.get(f"{url}/Accounts/{ACCOUNT_ID}/token", params={"api-version": "2019-02-28-preview"},
                      headers={"Authorization": f"Bearer {ACCOUNT_ID}:{ACCOUNT_KEY}"}).json()["AccessToken"]
    client = RemoteRenderingClient(endpoint=url, account_id=ACCOUNT_ID, account_domain="bench",
                                   credential=AccessToken(token, int(time.time()) + 3600))
    started, cpu = time.perf_counter(), time.process_time()
    stopped = 0
    for session in list(client.list_rendering_sessions(enforce_https=False)):  # what a user writes
        client.stop_rendering_session(session.id, enforce_https=False)
        stopped += 1
    return time.perf_counter() - started, stopped, (time.process_time() - cpu) / max(1, stopped)


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
        our_time, our_count, cpu_start, cpu_stop = asyncio.run(ours(url, azurite_port))
        control(url, "reset")
        control(url, "config", {"latencyMs": 0})
        asyncio.run(create_directly(url, N))
        control(url, "config", {"latencyMs": LATENCY_MS})
        sdk_time, sdk_count, sdk_cpu_stop = sdk_loop(url)
    finally:
        for process in processes:
            process.terminate()
    bound = math.ceil(N / CONCURRENCY) * LATENCY_MS / 1000
    print(f"sessions {N}, injected latency {LATENCY_MS:.0f} ms per ARR call, stop concurrency {CONCURRENCY}")
    print(f"ours (run_cleanup nightly, with history)   {our_time:7.2f} s  stopped {our_count}")
    print(f"lower bound ceil(N/C) x RTT                {bound:7.2f} s")
    print(f"SDK loop over stop_rendering_session        {sdk_time:7.2f} s  stopped {sdk_count}")
    print(f"ratio ours / lower bound  = {our_time / bound:.2f}")
    print(f"ratio SDK loop / ours     = {sdk_time / our_time:.2f}")
    print(f"app CPU per start (intent + ARR + history)  {cpu_start * 1000:6.2f} ms")
    print(f"app CPU per stop, ours (intent, ARR, history) {cpu_stop * 1000:6.2f} ms")
    print(f"app CPU per stop, SDK loop (ARR only)       {sdk_cpu_stop * 1000:6.2f} ms")
    print(f"ratio CPU per stop SDK / ours = {sdk_cpu_stop / cpu_stop:.2f}")


if __name__ == "__main__":
    main()
