"""Capture the app's real log lines as the rows an ``AppTraces`` query sees (issue 23), into ``apptraces.jsonl``,
and the HTTP answers as ``AppRequests`` rows, into ``apprequests.jsonl``.

Starts Azurite (blobs, queues, tables, in memory), the ARR emulator (sessions Ready in 2 s) and the local functions
host (``python -m devhost``, its timers on: the cleanup every 10 s) on free loopback ports, with one logging handler
added that writes each record of the app's loggers (``arr_core.*``, ``arr_sessions.*``) and of the host's queue
listener (``devhost.queues``) as one row. Then drives, in order:

1. a start by ``alice`` with a callback URL nobody listens on (its notifications fail: ``notification ... no
   address of the receiver accepted a connection`` and a retry queued);
2. a start by ``bob`` with a one-minute lease (ARR ends it: the cleanup reconciles it), and one by ``carol`` kept
   alive overnight; the nightly shutdown is set to the next UTC minute, so that a cleanup run in nightly mode stops
   alice's and keeps carol's (``cleanup (nightly): stopped 1, kept 1, ...``);
3. a stop of bob's session by hand (``POST /api/sessions/{id}/stop``), once ARR has ended it;
4. ``POST /api/cleanup`` (and a dry run of the nightly mode);
5. a message on ``arr-notify`` that is not base64: the host moves it to ``arr-notify-poison``;
6. a request for a session that does not exist (404) and a start with a bad body (400).

The mapping assumed from a Python record to an AppTraces row (docs/operations.md, "Logs in Application Insights"):
``Message`` = ``record.getMessage()``; ``SeverityLevel`` = 0 Verbose (DEBUG), 1 Information, 2 Warning, 3 Error,
4 Critical; ``OperationName`` = the function's name (as for AppRequests); ``OperationId`` = one id per invocation;
``Properties`` = what the Functions host adds to a worker's log (``Category`` = ``Function.<name>.User``,
``LogLevel``, ``InvocationId``, ``HostInstanceId``, ``ProcessId``). The record's ``extra`` fields are NOT in
``Properties``: the host's own telemetry drops them (only an OpenTelemetry exporter in the worker would send them).
They are kept beside the row, under ``_python``, which no query may read.

``.venv/bin/python tests/reference/logs/capture.py`` (about 3 minutes). Timestamps, ids and ports change on each run;
the tests read the text of the messages and the names of the fields, not those.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

from devhost.stack import azurite_command, azurite_connection_string, free_port, wait_for_port  # noqa: E402

ACCOUNT_ID, ACCOUNT_KEY = "00000000-0000-0000-0000-0000000000c3", "capture-logs-key"

# Runs in the functions host's process: one handler on the root logger, and each invocation tagged with its
# function's name and an id (as the worker's invocation context is), then devhost's own main().
HOST_WRAPPER = r"""
import contextvars, json, logging, os, sys, uuid
from datetime import datetime, UTC

import devhost.host as host

OUT = open(os.environ["CAPTURE_TRACES"], "a", buffering=1, encoding="utf-8")
CURRENT = contextvars.ContextVar("invocation", default=None)
HOST_INSTANCE = str(uuid.uuid4())
LEVELS = {10: (0, "Debug"), 20: (1, "Information"), 30: (2, "Warning"), 40: (3, "Error"), 50: (4, "Critical")}
STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}

_invoke = host.invoke
async def invoke(function, arg_name, value, name):
    token = CURRENT.set((name, uuid.uuid4().hex, str(uuid.uuid4())))
    try:
        return await _invoke(function, arg_name, value, name)
    finally:
        CURRENT.reset(token)
host.invoke = invoke

class Rows(logging.Handler):
    def emit(self, record):
        if not record.name.startswith(("arr_core", "arr_sessions", "devhost.queues")):
            return
        severity, level = LEVELS.get(record.levelno, (1, "Information"))
        name, operation, invocation = CURRENT.get() or (None, None, None)
        host_line = record.name.startswith("devhost")
        properties = {"Category": "Host.Triggers.Queue" if host_line else f"Function.{name}.User",
                      "LogLevel": level, "HostInstanceId": HOST_INSTANCE, "ProcessId": str(os.getpid())}
        if invocation and not host_line:
            properties["InvocationId"] = invocation
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info).splitlines()[-1]
        row = {"TimeGenerated": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
               "Message": message, "SeverityLevel": severity, "OperationName": name or "",
               "OperationId": operation or "", "AppRoleName": "func-arr-capture", "Properties": properties,
               "_python": {"logger": record.name,
                           "extra": {k: v for k, v in vars(record).items() if k not in STANDARD}}}
        OUT.write(json.dumps(row, default=str) + "\n")

root = logging.getLogger()
root.setLevel(logging.INFO)
root.addHandler(Rows())
console = logging.StreamHandler()
console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
root.addHandler(console)
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("azure").setLevel(logging.WARNING)

from devhost.__main__ import main
main()
"""


def request_row(function: str, response: httpx.Response, started: float) -> dict[str, Any]:
    """An AppRequests row as the host records an HTTP invocation (Name = the function, ResultCode = the status)."""
    path = response.request.url.path
    return {"TimeGenerated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "Name": function,
            "OperationName": function, "Url": f"https://func-arr-capture.azurewebsites.net{path}",
            "ResultCode": str(response.status_code), "Success": response.status_code < 400,
            "DurationMs": round(response.elapsed.total_seconds() * 1000, 1), "AppRoleName": "func-arr-capture"}


def main() -> int:
    ports = {name: free_port() for name in ("table", "blob", "queue", "emulator", "functions")}
    work = Path(tempfile.mkdtemp(prefix="arr-capture-"))
    traces = work / "apptraces.jsonl"
    storage = azurite_connection_string(ports["table"], blob_port=ports["blob"], queue_port=ports["queue"])
    emulator = f"http://127.0.0.1:{ports['emulator']}"
    nightly = time.strftime("%H:%M", time.gmtime(time.time() + 120))  # the next whole minute but one, UTC
    env = {**os.environ, "AzureWebJobsStorage": storage, "ARR_ENDPOINT": emulator, "ARR_STS_ENDPOINT": emulator,
           "ARR_ACCOUNT_ID": ACCOUNT_ID, "ARR_ACCOUNT_KEY": ACCOUNT_KEY, "ARR_REGION": "",
           "ARR_CLEANUP_SCHEDULE": "*/10 * * * * *", "ARR_NIGHTLY_SHUTDOWN_AT": nightly, "ARR_TIME_ZONE": "UTC",
           "ARR_POLL_SECONDS": "1",
           "ARR_RATE_STANDARD_PER_HOUR": "3.0", "ARR_RATE_PREMIUM_PER_HOUR": "12.0",
           "ARR_HISTORY_TABLE": "capturelogs", "CAPTURE_TRACES": str(traces), "PYTHONUNBUFFERED": "1"}
    env.pop("DEVHOST_FUNCTION_KEYS", None)
    commands = {
        "table": azurite_command(ports["table"], blob_port=ports["blob"], queue_port=ports["queue"]),
        "emulator": [sys.executable, "-m", "arr_emulator", "--port", str(ports["emulator"]), "--account-id",
                     ACCOUNT_ID, "--account-key", ACCOUNT_KEY, "--startup-seconds", "2"],
        "functions": [sys.executable, "-c", HOST_WRAPPER, "--port", str(ports["functions"])],
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    requests: list[dict[str, Any]] = []
    try:
        for name, command in commands.items():
            log_file = (work / f"{name}.log").open("wb")
            processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
            wait_for_port(ports[name], processes[name], timeout=60)
        base = f"http://127.0.0.1:{ports['functions']}/api"
        with httpx.Client(base_url=base, timeout=60) as client:
            def call(function: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
                started = time.time()
                response = client.request(method, path, **kwargs)
                requests.append(request_row(function, response, started))
                print(f"{function}: {response.status_code}", flush=True)
                return response

            dead_port = free_port()  # nothing listens there: every delivery fails
            alice = call("StartSession", "POST", "/sessions", json={
                "requestedBy": "alice", "reason": "design review", "size": "Standard",
                "callbackUrl": f"http://127.0.0.1:{dead_port}/arr-callback"}).json()
            bob = call("StartSession", "POST", "/sessions", json={
                "requestedBy": "bob", "reason": "quick check", "leaseMinutes": 1, "size": "Premium"}).json()
            carol = call("StartSession", "POST", "/sessions", json={
                "requestedBy": "carol", "reason": "overnight bake", "keepAlive": True}).json()
            for session in (alice, bob, carol):
                for _ in range(30):
                    view = call("GetSession", "GET", f"/sessions/{session['id']}").json()
                    if view.get("status") == "Ready":
                        break
                    time.sleep(1)
            call("ListSessions", "GET", "/sessions")
            time.sleep(5)  # the watcher announces Ready; alice's delivery fails
            call("RunCleanup", "POST", "/cleanup")
            call("RunCleanup", "POST", "/cleanup", params={"mode": "nightly", "dryRun": "true"})
            call("GetSession", "GET", "/sessions/no-such-session")
            call("StartSession", "POST", "/sessions", json={"leaseMinutes": "soon"})
            # A message on arr-notify that is not base64: the host moves it to arr-notify-poison without running it.
            from azure.storage.queue import QueueClient
            with QueueClient.from_connection_string(storage, "arr-notify") as queue:
                queue.send_message("not base64 {")
            deadline = time.monotonic() + 200  # bob's lease (one minute from Ready), then the nightly run
            stopped_by_hand = False
            while time.monotonic() < deadline:
                text = traces.read_text(encoding="utf-8") if traces.exists() else ""
                if not stopped_by_hand and "reconciled 1" in text:
                    call("StopSession", "POST", f"/sessions/{bob['id']}/stop", json={"requestedBy": "bob"})
                    stopped_by_hand = True
                if "cleanup (nightly): stopped 1" in text and stopped_by_hand:
                    break
                time.sleep(2)
            time.sleep(12)  # one more cleanup run
            call("StopSession", "POST", f"/sessions/{carol['id']}/stop", json={"requestedBy": "carol"})
            call("GetSession", "GET", f"/sessions/{alice['id']}")
    finally:
        for name in reversed(list(processes)):
            processes[name].send_signal(signal.SIGTERM)
            try:
                processes[name].wait(15)
            except subprocess.TimeoutExpired:
                processes[name].kill()
    rows = [json.loads(line) for line in traces.read_text(encoding="utf-8").splitlines() if line.strip()]
    (HERE / "apptraces.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows),
                                          encoding="utf-8")
    (HERE / "apprequests.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in requests),
                                            encoding="utf-8")
    print(f"{len(rows)} trace rows, {len(requests)} request rows; host logs in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
