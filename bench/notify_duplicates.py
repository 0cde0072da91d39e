"""Duplicate deliveries under load (issue 19.6): N subscriptions whose receivers fail, one session's changes.

Starts Azurite (queues and tables, in memory), the ARR emulator and the function app on the local host
(``python -m devhost``), all on loopback. Subscribes N receivers (one path each on one local receiver that answers
500 to every POST), starts one session (Starting, then Ready 2 s later: 2 x N deliveries, each retried after 5 s,
10 s, 20 s ...), watches for ``--seconds`` and stops the host. Prints, from the receiver and the host's log:

- the POSTs the receivers got, for how many (receiver, event) pairs, and the runs of ``DeliverNotification`` the
  host made (one POST a run; a run cut short by the host's stop is not in its log);
- duplicates: runs of a message beyond its first (dequeue count 2 or more). A message is one attempt for one
  (receiver, event), so each is a POST of a (receiver, event, attempt) that the receiver already had. With
  ``--trace`` also the messages queued again for a (receiver, event, attempt) that had one (an announcement that
  failed partway and was made again): each is a duplicate POST once it runs;
- enqueue failures: delivery runs that ended on a queue error (``queue arr-notify did not answer within 5 s``): the
  retry was not queued and the host runs the message again, a duplicate to come; and the other functions' runs and
  announcements that a queue error ended;
- with ``--trace``, each ``StorageQueues.send``'s time and the default executor's backlog (``bench/notify_host``);
- the wall time.

``--resolve-seconds S`` names the receivers by a name whose lookup takes S seconds in the host (a slow DNS server,
simulated in the host's ``socket.getaddrinfo``: nothing leaves the machine). That is what made queue sends wait
past 5 s before the fix: the lookups held every thread of the event loop's default executor, which the queue client
needed twice per send.

``.venv/bin/python bench/notify_duplicates.py --subscriptions 28`` (and ``--subscriptions 100``, and either with
``--resolve-seconds 3``). Not a test: the numbers depend on the machine. tests/integration/test_notifications.py
(``test_receivers_that_resolve_slowly_get_no_duplicate``) holds the line at 28.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devhost.stack import AZURITE_ALL, azurite_command, azurite_connection_string, free_port, wait_for_port

ACCOUNT_ID, ACCOUNT_KEY = "00000000-0000-0000-0000-0000000000d1", "bench-notify-key"
FUNCTION_KEY = "bench-function-key"
HOOKS = Path(__file__).resolve().parent / "notify_host"

_RUN = re.compile(r"notification delivery \(attempt (\d+)\)")  # DeliverNotification's own line, after a run
_FAILED = re.compile(r"queue function (\w+) failed on message (\S+) \(dequeue count (\d+)\)")
_QUEUE_ERROR = re.compile(r"^arr_core\.errors\.\w+: queue ([\w-]+) ")  # a traceback's last line
_QUEUE_WARNING = re.compile(r"WARNING .*\(queue ([\w-]+) (?:did not answer|could not be reached)")  # an announcement
_SEND = re.compile(r"TRACE send (\S+) ([\d.]+) s (\w+)(?: attempt=(\S+) event=(\S+) url=(\S+))?")
_EXECUTOR = re.compile(r"TRACE executor busy (\d+)/(\d+) queued (\d+)")


@dataclass
class Receiver:
    """Answers 500 to every POST; keeps (path, event id) per POST."""

    port: int
    got: Counter[tuple[str, str]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self) -> ThreadingHTTPServer:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.got[(self.path, self.headers.get("X-Event-Id", ""))] += 1
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # every delivery at once finds the receiver listening
            daemon_threads = True

        server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


def host_env(connection: str, emulator_url: str, *, trace: bool, lease: float | None,
             resolve: float) -> dict[str, str]:
    env = {**os.environ, "AzureWebJobsStorage": connection, "ARR_ENDPOINT": emulator_url,
           "ARR_STS_ENDPOINT": emulator_url, "ARR_ACCOUNT_ID": ACCOUNT_ID, "ARR_ACCOUNT_KEY": ACCOUNT_KEY,
           "ARR_ACCOUNT_DOMAIN": "eastus.mixedreality.azure.com", "ARR_HISTORY_TABLE": f"b{uuid.uuid4().hex[:12]}",
           "ARR_POLL_SECONDS": "1", "ARR_CLEANUP_SCHEDULE": "0 */5 * * * *"}
    if lease is not None:
        env["DEVHOST_QUEUE_LEASE_SECONDS"] = str(lease)
    if trace or resolve:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HOOKS), str(ROOT), env.get("PYTHONPATH")]))
        env["BENCH_TRACE"] = "1" if trace else ""
        env["BENCH_SLOW_RESOLVE"] = str(resolve)
    return {k: v for k, v in env.items() if not k.startswith("COVERAGE_")}


def read_log(text: str) -> dict[str, Any]:
    """What the host's log says about the deliveries."""
    runs: Counter[int] = Counter()  # DeliverNotification's runs by dequeue count
    enqueue_failures = 0  # DeliverNotification runs that ended on a queue error (the retry was not queued)
    other_failures: Counter[str] = Counter()  # other functions' runs, and announcements, that did
    failed: str | None = None  # the function whose failure the traceback being read belongs to
    sends: list[float] = []
    send_failures: Counter[str] = Counter()
    queued: Counter[tuple[str, str, str]] = Counter()  # (url, event, attempt) -> messages queued for it
    busy: list[tuple[int, int, int]] = []
    for line in text.splitlines():
        if line[:2].isdigit() and not _FAILED.search(line):  # a new log line: any traceback read has ended
            failed = None
        if m := _RUN.search(line):
            runs[int(m.group(1))] += 1
        elif m := _FAILED.search(line):
            failed = m.group(1)
            if failed == "DeliverNotification":
                runs[int(m.group(3))] += 1
        elif (m := _QUEUE_ERROR.match(line)) and failed is not None:
            if failed == "DeliverNotification":
                enqueue_failures += 1
            else:
                other_failures[f"{failed} on {m.group(1)}"] += 1
            failed = None
        elif m := _QUEUE_WARNING.search(line):
            other_failures[f"announcement on {m.group(1)}"] += 1
        elif m := _SEND.search(line):
            sends.append(float(m.group(2)))
            if m.group(3) != "ok":
                send_failures[m.group(3)] += 1
            elif m.group(4):
                queued[(m.group(6), m.group(5), m.group(4))] += 1
        elif m := _EXECUTOR.search(line):
            busy.append((int(m.group(1)), int(m.group(2)), int(m.group(3))))
    return {"runs": runs, "enqueue_failures": enqueue_failures, "other_failures": other_failures, "sends": sends,
            "send_failures": send_failures, "queued": queued, "executor": busy}


def run(subscriptions: int, seconds: float, *, trace: bool, keep_log: bool, lease: float | None,
        resolve: float) -> dict[str, Any]:
    began = time.monotonic()
    table, blob, queue, emulator_port, host_port = (free_port() for _ in range(5))
    connection = azurite_connection_string(table, blob_port=blob, queue_port=queue)
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    logs = Path(tempfile.mkdtemp(prefix="notify-bench-"))
    host_log = logs / "host.log"
    processes: list[subprocess.Popen[bytes]] = []
    receiver = Receiver(free_port())
    server = receiver.serve()
    try:
        processes.append(subprocess.Popen(azurite_command(table, blob_port=blob, queue_port=queue), cwd=ROOT,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        processes.append(subprocess.Popen([sys.executable, "-m", "arr_emulator", "--port", str(emulator_port),
                                           "--account-id", ACCOUNT_ID, "--account-key", ACCOUNT_KEY], cwd=ROOT,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for_port(queue, processes[0])
        wait_for_port(emulator_port, processes[1])
        httpx.post(f"{emulator_url}/_emulator/config", json={"startupSeconds": 2}).raise_for_status()
        with host_log.open("wb") as out:
            host = subprocess.Popen([sys.executable, "-m", "devhost", "--port", str(host_port), "--settings",
                                     "/nonexistent", "--function-key", FUNCTION_KEY, "--no-timers"], cwd=ROOT,
                                    env=host_env(connection, emulator_url, trace=trace, lease=lease, resolve=resolve),
                                    stdout=out, stderr=subprocess.STDOUT)
        processes.append(host)
        try:
            wait_for_port(host_port, host)
        except RuntimeError as exc:
            raise SystemExit(f"{exc}; the host's log:\n{host_log.read_text(errors='replace')[-3000:]}") from None
        with httpx.Client(base_url=f"http://127.0.0.1:{host_port}", headers={"x-functions-key": FUNCTION_KEY},
                          timeout=60) as http:
            name = "receiver.slow.localhost" if resolve else "127.0.0.1"
            for i in range(subscriptions):
                r = http.post("/api/subscriptions",
                              json={"notificationUrl": f"http://{name}:{receiver.port}/r{i}"})
                r.raise_for_status()
            started = time.monotonic()
            r = http.post("/api/sessions", json={"leaseMinutes": 10})
            r.raise_for_status()
            time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        host.terminate()
        host.wait(timeout=40)
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        server.shutdown()
    text = host_log.read_text(errors="replace")
    found = read_log(text)
    with receiver.lock:
        got = Counter(receiver.got)
    if keep_log:
        print(f"host log: {host_log}")
    else:
        host_log.unlink()
        logs.rmdir()
    runs: Counter[int] = found["runs"]
    sends: list[float] = found["sends"]
    return {
        "subscriptions": subscriptions,
        "resolve_s": resolve,
        "window_s": seconds,
        "posts": sum(got.values()),
        "receiver_events": len(got),
        "runs": sum(runs.values()),
        "duplicates": sum(n for count, n in runs.items() if count >= 2),
        # with --trace: messages queued again for a (receiver, event, attempt) that had one (an announcement
        # repeated after its run failed partway), each a duplicate POST once run
        "queued_again": sum(n - 1 for n in found["queued"].values()) if trace else None,
        "runs_by_dequeue_count": dict(sorted(runs.items())),
        "enqueue_failures": found["enqueue_failures"],
        "other_queue_failures": dict(found["other_failures"]),
        "queue_sends": len(sends),
        "send_p50_s": round(statistics.median(sends), 3) if sends else None,
        "send_p99_s": round(sorted(sends)[int(0.99 * (len(sends) - 1))], 3) if sends else None,
        "send_max_s": round(max(sends), 3) if sends else None,
        "send_failures": dict(found["send_failures"]),
        "executor_max_queued": max((q for _, _, q in found["executor"]), default=None),
        "wall_s": round(time.monotonic() - began, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=28)
    parser.add_argument("--seconds", type=float, default=40.0, help="how long to watch after the session start")
    parser.add_argument("--trace", action="store_true", help="time every queue send and sample the executor")
    parser.add_argument("--lease-seconds", type=float, help="the host's message lease (the tests' hosts: 4 s)")
    parser.add_argument("--resolve-seconds", type=float, default=0.0,
                        help="receivers by a name whose lookup takes this long (a slow DNS, simulated in the host)")
    parser.add_argument("--keep-log", action="store_true", help="keep the host's log and print its path")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args()
    if not AZURITE_ALL.exists():
        raise SystemExit(f"{AZURITE_ALL} is missing: run `npm ci` (make install does)")
    result = run(args.subscriptions, args.seconds, trace=args.trace, keep_log=args.keep_log,
                 lease=args.lease_seconds, resolve=args.resolve_seconds)
    if args.json:
        print(json.dumps(result))
        return
    named = (f"by a name that takes {result['resolve_s']:g} s to resolve" if result["resolve_s"]
             else "by address (127.0.0.1)")
    print(f"{result['subscriptions']} failing receivers {named}, one session, {result['window_s']:.0f} s: "
          f"{result['posts']} POSTs for {result['receiver_events']} (receiver, event) pairs, "
          f"{result['runs']} delivery runs {result['runs_by_dequeue_count']}")
    again = f", messages queued again for one: {result['queued_again']}" if result["queued_again"] is not None else ""
    print(f"duplicates (runs of a message beyond its first): {result['duplicates']}{again}; "
          f"enqueue failures (a delivery's retry not queued): {result['enqueue_failures']}; other queue failures: "
          f"{result['other_queue_failures'] or 0}")
    if result["queue_sends"]:
        print(f"queue sends: {result['queue_sends']}, p50 {result['send_p50_s']} s, p99 {result['send_p99_s']} s, "
              f"max {result['send_max_s']} s, failed {result['send_failures'] or 0}; default executor: "
              + (f"at most {result['executor_max_queued']} jobs waiting for a thread"
                 if result["executor_max_queued"] is not None else "not used"))
    print(f"wall time {result['wall_s']} s")


if __name__ == "__main__":
    main()
