"""The app under Microsoft's own Python worker: ``azure-functions-runtime`` on Python 3.13, fed FunctionRpc messages.

``tests/runtime/driver.py`` runs in ``.venv-runtime`` (``make runtime-venv``) and plays the Functions host: it
sends WorkerInit, FunctionsMetadata, FunctionLoad and Invocation requests (``StreamingMessage``s built from the
compiled FunctionRpc.proto Microsoft ships on PyPI) to the runtime's ``handle_event``, which indexes
``function_app.py`` and runs the functions against the ARR emulator and Azurite, as in Azure. This side routes
requests by the metadata the runtime reported (ASP.NET templates under ``api/``, function keys), and checks that
metadata against what the local host (``devhost``) serves.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from azure.data.tables import TableClient
from conftest import LOG_DIR, ROOT, Azurite, Emulator, Host, function_app_env

from devhost import compile_route

RUNTIME_VENV = Path(os.environ.get("RUNTIME_VENV", ROOT / ".venv-runtime"))
DRIVER = ROOT / "tests" / "runtime" / "driver.py"
PROTOS = RUNTIME_VENV / "functionrpc" / "tests" / "protos"
BASE_URL = "http://localhost:7071"  # the host's own URL, as the worker sees it in RpcHttp.url
KEY = "runtime-test-function-key"
SCHEDULE = "0 */5 * * * *"
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")  # a trigger without methods takes all

DEVHOST_TABLE = """
import json, sys
from devhost.__main__ import find_app
from devhost.host import FunctionsHost
host = FunctionsHost(find_app("function_app"), run_timers=False)
print(json.dumps({
    "http": {f.name: {"pattern": f.pattern.pattern, "methods": sorted(f.methods), "auth": f.auth_level,
                      "arg": f.arg_name} for f in host.http},
    "timer": {t.name: {"schedule": t.schedule.expression, "arg": t.arg_name, "run_on_startup": t.run_on_startup}
              for t in host.timers.values()},
    "queue": {q.name: {"queue": q.queue_name, "arg": q.arg_name, "connection": q.connection}
              for q in getattr(host, "queue_functions", [])},
}))
"""


class Worker:
    """The driver process: one JSON command per line in, one answer per line out."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        python = RUNTIME_VENV / "bin" / "python"
        if not (RUNTIME_VENV / ".installed").is_file() or not python.exists() or not PROTOS.is_dir():
            pytest.fail(f"{RUNTIME_VENV} is missing or incomplete: run `make runtime-venv` (make test does)")
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"real-runtime-{name}-{os.getpid()}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen([str(python), str(DRIVER), "--protos", str(PROTOS)], cwd=ROOT,
                                            env={**os.environ, **env}, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=log, text=True)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.process.stdout, selectors.EVENT_READ)

    def call(self, timeout: float = 60, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        if not self.selector.select(timeout):
            pytest.fail(f"the driver did not answer {command['op']} within {timeout} s; log: {self.log_path}")
        line = self.process.stdout.readline()
        if not line:
            pytest.fail(f"the driver exited ({self.process.poll()}):\n{self.log_path.read_text()[-3000:]}")
        answer = json.loads(line)
        if "error" in answer:
            pytest.fail(f"the driver failed on {command['op']}:\n{answer['error']}")
        return answer

    def stop(self) -> None:
        """Ask the driver to quit (end of stdin does too); kill it if it does not within 10 s."""
        assert self.process.stdin is not None and self.process.stdout is not None
        with contextlib.suppress(OSError):
            self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.selector.close()
        self.process.stdout.close()


@dataclass
class Route:
    name: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    auth: str


class RuntimeHost:
    """The host's side of HTTP: route by the runtime's metadata, check the function key, invoke, answer."""

    def __init__(self, worker: Worker, init: dict[str, Any]) -> None:
        self.worker = worker
        self.init = init
        self.functions = {f["name"]: f for f in init.get("functions", [])}
        self.routes: list[Route] = []
        for name, function in self.functions.items():
            trigger = trigger_of(function)
            if trigger["type"] == "httpTrigger":
                self.routes.append(Route(name, compile_route(trigger.get("route") or name),
                                         frozenset(m.upper() for m in trigger.get("methods") or ALL_METHODS),
                                         trigger.get("authLevel", "FUNCTION").lower()))
        self.invoked: list[str] = []

    def request(self, method: str, path: str, *, params: dict[str, str] | None = None, json_body: Any = None,
                content: bytes | None = None, headers: dict[str, str] | None = None,
                key: str | None = KEY) -> httpx.Response:
        url = urlsplit(path if path.startswith("http") else BASE_URL + path)
        query = dict(parse_qsl(url.query, keep_blank_values=True)) | (params or {})
        body = json.dumps(json_body).encode() if json_body is not None else (content or b"")
        sent = {"host": urlsplit(BASE_URL).netloc, "user-agent": "real-runtime-test"}
        if json_body is not None:
            sent["content-type"] = "application/json"
        if body:
            sent["content-length"] = str(len(body))
        if key is not None:
            sent["x-functions-key"] = key
        sent |= {k.lower(): v for k, v in (headers or {}).items()}
        route_path = url.path.strip("/")
        if not route_path.lower().startswith("api/"):
            return httpx.Response(404)
        route_path = route_path[len("api/"):]
        matched = False
        for route in self.routes:
            match = route.pattern.match(route_path)
            if match is None:
                continue
            matched = True
            if method.upper() not in route.methods:
                continue
            if route.auth != "anonymous" and KEY not in (sent.get("x-functions-key"), query.get("code")):
                return httpx.Response(401)
            self.invoked.append(route.name)
            full_url = f"{BASE_URL}{url.path}" + (f"?{urlencode(query)}" if query else "")
            answer = self.worker.call(op="http", function=route.name, method=method.upper(), url=full_url,
                                      headers=sent, query=query,
                                      params={k: v for k, v in match.groupdict().items() if v},
                                      body_b64=base64.b64encode(body).decode())
            assert answer["status"] == "Success", answer
            assert answer["return_kind"] == "http", answer
            return httpx.Response(answer["status_code"], headers=answer["headers"],
                                  content=base64.b64decode(answer["body_b64"]))
        return httpx.Response(405 if matched else 404)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def timer(self, name: str, past_due: bool = False) -> dict[str, Any]:
        self.invoked.append(name)
        return self.worker.call(op="timer", function=name, past_due=past_due)


def trigger_of(function: dict[str, Any]) -> dict[str, Any]:
    return next(b for b in function["raw_bindings"] if b["direction"] == "IN" and b["type"].endswith("Trigger"))


def start_runtime(env: dict[str, str], app_dir: Path, name: str) -> RuntimeHost:
    worker = Worker(env, name)
    try:
        return RuntimeHost(worker, worker.call(op="init", app_dir=str(app_dir)))
    except BaseException:
        worker.stop()
        raise


def deployable_copy(target: Path) -> Path:
    """The app as it would be deployed: the top-level entries that .funcignore keeps (and no venv or cache)."""
    ignored = [line.strip() for line in (ROOT / ".funcignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    ignored += [".venv*", "node_modules", "__pycache__", ".*cache*", ".coverage*"]
    target.mkdir()
    for entry in ROOT.iterdir():
        if any(fnmatch.fnmatch(entry.name, pattern.strip("/")) for pattern in ignored):
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(entry, target / entry.name)
    return target


def devhost_table() -> dict[str, Any]:
    """What ``python -m devhost`` serves for function_app.py: built by FunctionsHost itself, in its own process
    (``get_functions()`` can run once per app instance)."""
    out = subprocess.run([sys.executable, "-c", DEVHOST_TABLE], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60, env={**os.environ, "ARR_CLEANUP_SCHEDULE": SCHEDULE})
    return json.loads(out.stdout)


def differences(functions: list[dict[str, Any]], served: dict[str, Any],
                settings: dict[str, str] | None = None) -> list[str]:
    """Every way the runtime's metadata differs from the devhost's table (empty when they agree). A timer's
    ``%SETTING%`` schedule is resolved from ``settings`` as the host resolves it from app settings."""
    settings = {"ARR_CLEANUP_SCHEDULE": SCHEDULE} if settings is None else settings
    found: dict[str, dict[str, Any]] = {"http": {}, "timer": {}, "queue": {}}
    for function in functions:
        trigger = trigger_of(function)
        if trigger["type"] == "httpTrigger":
            found["http"][function["name"]] = {
                "pattern": compile_route(trigger.get("route") or function["name"]).pattern,
                "methods": sorted(m.upper() for m in trigger.get("methods") or ALL_METHODS),
                "auth": trigger.get("authLevel", "FUNCTION").lower(), "arg": trigger["name"]}
        elif trigger["type"] == "timerTrigger":
            schedule = re.sub(r"^%([^%]+)%$", lambda m: settings.get(m.group(1), f"<{m.group(1)} unset>"),
                              trigger["schedule"])
            found["timer"][function["name"]] = {"schedule": schedule,
                                                "arg": trigger["name"],
                                                "run_on_startup": trigger.get("runOnStartup", False)}
        elif trigger["type"] == "queueTrigger":
            queue = re.sub(r"%([^%]+)%", lambda m: settings.get(m.group(1), f"<{m.group(1)} unset>"),
                           trigger["queueName"])
            found["queue"][function["name"]] = {"queue": queue.strip().lower(), "arg": trigger["name"],
                                                "connection": trigger.get("connection")}
        else:
            found.setdefault(trigger["type"], {})[function["name"]] = trigger
    problems = []
    for kind in sorted(set(found) | set(served)):
        mine, theirs = found.get(kind, {}), served.get(kind, {})
        for name in sorted(set(mine) | set(theirs)):
            if mine.get(name) != theirs.get(name):
                problems.append(f"{kind} {name}: runtime {mine.get(name)} != devhost {theirs.get(name)}")
    return problems


@pytest.fixture(scope="module")
def served() -> dict[str, Any]:
    return devhost_table()


@pytest.fixture(scope="module")
def app_settings() -> dict[str, str]:
    """The settings of both the runtime's app and the devhost's (conftest's ``app_host``) in this module."""
    return {"ARR_CLEANUP_SCHEDULE": SCHEDULE, "ARR_MAX_LEASE_MINUTES": "240", "ARR_POLL_SECONDS": "3"}


@pytest.fixture(scope="module")
def runtime(emulator_process: Emulator, azurite: Azurite, table_name: str,
            app_settings: dict[str, str]) -> Iterator[RuntimeHost]:
    """function_app.py under azure-functions-runtime, pointed at the emulator and Azurite."""
    env = function_app_env(emulator_process, azurite, table_name, **app_settings)
    host = start_runtime(env, ROOT, "app")
    yield host
    host.worker.stop()


def test_the_runtime_indexes_and_loads_every_function(runtime: RuntimeHost, served: dict[str, Any]) -> None:
    """WorkerInit indexes the app (worker indexing), the metadata lists every function the devhost serves, and
    every load succeeds."""
    init = runtime.init
    assert init["init"] == {"status": "Success"}, init["init"]
    assert init["worker"]["runtime"] == "python" and init["worker"]["runtime_version"] == "3.13"
    assert init["metadata"] == {"status": "Success"} and init["use_default_metadata_indexing"] is False
    assert sorted(f["name"] for f in init["functions"]) == sorted(name for kind in served.values() for name in kind)
    assert len(init["functions"]) >= 12
    assert init["loads"] == {f["name"]: {"status": "Success"} for f in init["functions"]}, init["loads"]
    for function in init["functions"]:
        assert function["language"] == "python" and function["script_file"].endswith("function_app.py")
        assert function["properties"] == {"worker_indexed": "True"} and function["status"] is None
    assert init["seconds"] < 30


def test_metadata_is_what_the_devhost_serves(runtime: RuntimeHost, served: dict[str, Any]) -> None:
    """Names, routes, methods, auth levels and trigger arguments equal the devhost's; the timer names its setting."""
    assert differences(runtime.init["functions"], served) == []
    http = {name: trigger_of(f) for name, f in runtime.functions.items() if trigger_of(f)["type"] == "httpTrigger"}
    assert (http["StartSession"]["route"], http["StartSession"]["methods"], http["StartSession"]["authLevel"]) \
        == ("sessions", ["POST"], "FUNCTION")
    assert (http["Health"]["authLevel"], http["OpenApi"]["authLevel"]) == ("ANONYMOUS", "ANONYMOUS")
    timer = trigger_of(runtime.functions["lease_cleanup"])
    assert timer["schedule"] == "%ARR_CLEANUP_SCHEDULE%" and timer["runOnStartup"] is False
    assert all(f["bindings"]["$return"] == {"type": "http", "direction": "out"}
               for name, f in runtime.functions.items() if name in http)


def test_session_lifecycle_through_the_runtime(runtime: RuntimeHost, emulator: Emulator, table: TableClient) -> None:
    """StartSession (202 + Location + Retry-After) -> WaitUntilReady to 200 -> Get -> Extend -> Stop -> history."""
    first = len(runtime.invoked)
    r = runtime.post("/api/sessions", params={"code": KEY},
                     json_body={"size": "Standard", "leaseMinutes": 30, "requestedBy": "flow@contoso",
                                "reason": "design review", "labels": {"team": "viz"}, "keepAlive": False})
    assert r.status_code == 202, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["Location"].startswith(BASE_URL + "/api/sessions/")
    assert r.headers["Location"].endswith("/ready") and r.headers["Retry-After"] == "3"  # never the caller's code
    view = r.json()
    session_id = view["id"]
    assert view["status"] == "Starting" and view["requestedBy"] == "flow@contoso" and view["labels"] == {"team": "viz"}
    assert set(view["links"]) == {"self", "ready", "stop"}

    polls = 0
    while r.status_code == 202:
        assert polls < 20
        emulator.advance(int(r.headers["Retry-After"]))
        r = runtime.get(r.headers["Location"])
        polls += 1
    assert r.status_code == 200 and polls >= 1
    ready = r.json()
    assert ready["status"] == "Ready" and ready["hostname"] and ready["handshakePort"]
    assert ready["remainingMinutes"] == 30

    got = runtime.get(f"/api/sessions/{session_id}")
    assert got.status_code == 200 and got.json()["status"] == "Ready" and got.json()["id"] == session_id

    emulator.advance(120)
    extended = runtime.patch(f"/api/sessions/{session_id}", json_body={"extendByMinutes": 15})
    assert extended.status_code == 200, extended.text
    assert extended.json()["leaseMinutes"] == 45 and extended.json()["elapsedMinutes"] == 2

    stopped = runtime.post(f"/api/sessions/{session_id}/stop", json_body={"reason": "review done"})
    assert stopped.status_code == 200 and stopped.json()["status"] == "Stopped"
    read = runtime.get(f"/api/sessions/{session_id}").json()
    assert read["status"] == "Stopped" and read["endedAt"] is not None and read["billedMinutes"] == 2

    history = runtime.get("/api/history")
    assert history.status_code == 200
    [listed] = [s for s in history.json()["sessions"] if s["id"] == session_id]
    assert listed["status"] == "Stopped" and listed["requestedBy"] == "flow@contoso"
    index = table.get_entity("id", session_id)
    record = table.get_entity(index["RecordPartition"], index["RecordRow"])
    assert record["Status"] == "Stopped" and record["StopReason"] == "review done" and record["LeaseMinutes"] == 45
    assert runtime.invoked[first:] == ["StartSession", *["WaitUntilReady"] * polls, "GetSession", "ExtendSession",
                                       "StopSession", "GetSession", "ListHistory"]


def test_errors_are_problems_through_the_runtime(runtime: RuntimeHost, emulator: Emulator) -> None:
    """A non-JSON start is a 400 problem naming the body; an unknown session a 404; no key a 401 (the host's)."""
    bad = runtime.post("/api/sessions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/problem+json")
    assert "body" in [e["field"] for e in bad.json()["errors"]]
    assert emulator.state()["requests"]["create"] == 0
    assert runtime.get("/api/sessions/nope-nope").status_code == 404
    assert runtime.get("/api/sessions/nope-nope/ready").status_code == 404
    assert runtime.get("/api/sessions", key=None).status_code == 401


def test_health_and_openapi_through_the_runtime(runtime: RuntimeHost, app_host: Host, emulator: Emulator) -> None:
    """Health and OpenApi answer without a key, exactly as the devhost answers (the document names each host)."""
    from openapi_spec_validator import validate

    health = runtime.get("/api/health", key=None)
    served_health = httpx.get(f"{app_host.url}/api/health", timeout=60)
    assert health.status_code == served_health.status_code == 200
    assert health.json() == served_health.json() and health.json()["status"] == "ok"
    doc = runtime.get("/api/openapi.json", key=None)
    assert doc.status_code == 200 and doc.headers["content-type"].startswith("application/json")
    assert runtime.invoked[-2:] == ["Health", "OpenApi"]
    served_doc = httpx.get(f"{app_host.url}/api/openapi.json", timeout=60).json()
    assert doc.json()["host"] == urlsplit(BASE_URL).netloc and served_doc["host"] == urlsplit(app_host.url).netloc
    assert {**doc.json(), "host": None} == {**served_doc, "host": None}
    validate(doc.json())
    operations = {op.get("operationId") for path in doc.json()["paths"].values() for op in path.values()}
    assert {"StartSession", "GetSession", "WaitUntilReady", "ExtendSession", "StopSession", "ListHistory",
            "Health", "OpenApi"} <= operations


def test_timer_runs_the_cleanup_through_the_runtime(runtime: RuntimeHost, emulator: Emulator,
                                                    table: TableClient) -> None:
    """The lease_cleanup timer, invoked with the host's TimerInfo, runs the cleanup: one more run record."""
    before = len(list(table.query_entities("Kind eq 'run'")))
    answer = runtime.timer("lease_cleanup", past_due=True)
    assert answer == {"status": "Success", "return_kind": None}, answer
    assert len(list(table.query_entities("Kind eq 'run'"))) == before + 1


def test_a_changed_route_or_method_is_caught(tmp_path: Path, served: dict[str, Any]) -> None:
    """The same comparison fails on a copy of the app whose StopSession route and ExtendSession method differ."""
    app = deployable_copy(tmp_path / "app")
    sessions = app / "blueprints" / "sessions.py"
    source = sessions.read_text()
    broken = source.replace('"StopSession", "POST", "sessions/{id}/stop"', '"StopSession", "POST", "sessions/{id}/end"')
    broken = broken.replace('"ExtendSession", "PATCH"', '"ExtendSession", "PUT"')
    assert broken.count('"sessions/{id}/end"') == 1 and broken.count('"ExtendSession", "PUT"') == 1
    sessions.write_text(broken)
    host = start_runtime({"ARR_CLEANUP_SCHEDULE": SCHEDULE}, app, "broken-copy")
    try:
        assert host.init["init"] == {"status": "Success"} and host.functions["StopSession"]["directory"] == str(app)
        found = differences(host.init["functions"], served)
    finally:
        host.worker.stop()
    assert [line.split(":")[0] for line in found] == ["http ExtendSession", "http StopSession"], found
    assert "'PUT'" in found[0] and "end" in found[1]
