"""A local Azure Functions host for the real functions of ``function_app.py``, for machines without Core Tools.

It uses only the public ``azure-functions`` API, the way the Python worker does: ``get_functions()`` once, a
``func.HttpRequest`` per call, ``get_user_function()`` to run it. It follows the host's conventions: the ``api``
route prefix, ASP.NET route templates, function keys (``x-functions-key`` header or ``code`` parameter) when keys
are configured, async functions on one event loop and sync ones in threads, timer functions on their NCRONTAB
schedules and on demand at ``POST /admin/functions/{name}``, and queue functions on their Azure Queue storage queues
with host.json's ``extensions.queues`` settings (``devhost.queues``: batches, retries, ``<queue>-poison``). Other
triggers are reported and not run.

Where no function runs, the answers are its own, as problem+json (like the app's errors): 401 without a valid key,
404 for no route, 405 with ``Allow`` for a route that lacks the method. The real host answers 401 and 404 with an
empty body, and a method a route lacks with an empty 404 (Azure/azure-functions-host#10098); neither serves HEAD
for a GET function (#11625), so HEAD is a 405 here and a 404 in Azure.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
import azure.functions as func
from azure.functions.timer import TimerRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .queues import QueueFunction, QueueListeners, load_queues_options, normalize_queue_name, resolve_expression
from .schedule import Schedule, parse_schedule, resolve_setting

log = logging.getLogger("devhost")

_TOKEN = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?(\??)\}")


def compile_route(template: str) -> re.Pattern[str]:
    """An ASP.NET route template (``sessions/{id}``, ``{id?}``, ``{*rest}``, ``{n:int}``) as a regex."""
    pattern, position = "", 0
    template = template.strip("/")
    for match in _TOKEN.finditer(template):
        literal = template[position : match.start()]
        catch_all, name, optional = match.groups()
        group = f"(?P<{name}>.*)" if catch_all else f"(?P<{name}>[^/]+)"
        if optional and literal.endswith("/"):
            pattern += re.escape(literal[:-1]) + f"(?:/{group})?"
        else:
            pattern += re.escape(literal) + (f"{group}?" if optional else group)
        position = match.end()
    pattern += re.escape(template[position:])
    return re.compile(rf"^{pattern}/?\Z", re.IGNORECASE)  # \Z, not $: a trailing newline is no route


class _Context:
    """What the worker passes as ``context``."""

    def __init__(self, name: str) -> None:
        self.invocation_id = str(uuid.uuid4())
        self.function_name = name
        self.function_directory = "."
        self.trace_context = None
        self.retry_context = None
        self.thread_local_storage = None


async def invoke(function: Any, arg_name: str, value: Any, name: str) -> Any:
    """Call a user function the way the worker does: awaited if async, in a thread if not."""
    user_function = function.get_user_function()
    kwargs = {arg_name: value}
    if "context" in inspect.signature(user_function).parameters:
        kwargs["context"] = _Context(name)
    if inspect.iscoroutinefunction(user_function):
        return await user_function(**kwargs)
    return await anyio.to_thread.run_sync(lambda: user_function(**kwargs))


@dataclass
class HttpFunction:
    name: str
    function: Any
    arg_name: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    auth_level: str


@dataclass
class TimerFunction:
    name: str
    function: Any
    arg_name: str
    schedule: Schedule
    run_on_startup: bool


def _auth_level(trigger: Any) -> str:
    level = getattr(trigger, "auth_level", None)
    return str(getattr(level, "value", level) or "function").lower()


def host_problem(status: int, title: str, detail: str, *, headers: dict[str, str] | None = None) -> Response:
    """An answer of the host itself (no function ran) as RFC 9457 problem+json, like the app's own errors."""
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail},
                      separators=(",", ":"))
    return Response(body, status_code=status, headers=headers, media_type="application/problem+json")


def _not_found(request: Request) -> Response:
    path = request.scope["path"]  # as sent: request.url drops tabs and newlines
    return host_problem(404, "Not found", f"no function answers {request.method} {path[:200]!r}")


def disabled(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """The app setting ``AzureWebJobs.<name>.Disabled`` (true or 1) turns a function off, as in Azure: its trigger
    does not run (an HTTP route is then not found)."""
    value = (os.environ if environ is None else environ).get(f"AzureWebJobs.{name}.Disabled", "")
    return value.strip().lower() in ("true", "1")


class FunctionsHost:
    """Serves one ``func.FunctionApp`` as an ASGI app."""

    def __init__(
        self,
        app: func.FunctionRegister,
        *,
        function_keys: Iterable[str] = (),
        master_key: str | None = None,
        route_prefix: str = "api",
        run_timers: bool = True,
        run_queues: bool = True,
        script_root: str | Path | None = None,
    ) -> None:
        """``script_root`` holds host.json (default: ``AzureWebJobsScriptRoot``, else the working directory)."""
        self.function_keys = {k for k in function_keys if k}
        self.master_key = master_key or (secrets.token_urlsafe(24) if self.function_keys else None)
        self.route_prefix = route_prefix.strip("/")
        self.run_timers = run_timers
        self.http: list[HttpFunction] = []
        self.timers: dict[str, TimerFunction] = {}
        self.timer_runs: dict[str, int] = {}
        self.run_queues = run_queues
        self.queue_functions: list[QueueFunction] = []
        for function in app.get_functions():  # callable only once per app instance
            trigger = function.get_trigger()
            name = function.get_function_name()
            kind = trigger.get_binding_name()
            if disabled(name):
                log.info("function %s is disabled (AzureWebJobs.%s.Disabled)", name, name)
                continue
            if kind == "httpTrigger":
                methods = frozenset(str(getattr(m, "value", m)).upper() for m in (trigger.methods or []))
                self.http.append(HttpFunction(
                    name, function, trigger.name, compile_route(trigger.route or name),
                    methods or frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}),
                    _auth_level(trigger)))
            elif kind == "timerTrigger":
                schedule = parse_schedule(resolve_setting(trigger.schedule))
                self.timers[name] = TimerFunction(name, function, trigger.name, schedule,
                                                  bool(getattr(trigger, "run_on_startup", False)))
            elif kind == "queueTrigger":
                queue_name = normalize_queue_name(resolve_expression(trigger.queue_name))
                self.queue_functions.append(QueueFunction(name, function, trigger.name, queue_name,
                                                          getattr(trigger, "connection", None)))
            else:
                log.warning("function %s has a %s trigger, which this host does not run", name, kind)
        root = script_root or os.environ.get("AzureWebJobsScriptRoot") or os.getcwd()
        self.queues = QueueListeners(self.queue_functions, load_queues_options(root) if self.queue_functions
                                     else None, invoke)
        self._tasks: list[asyncio.Task[None]] = []
        self.asgi = Starlette(
            routes=[Route("/admin/functions/{name}", self._admin_invoke, methods=["POST"]),
                    Route("/{path:path}", self._dispatch, methods=["GET", "POST", "PUT", "PATCH", "DELETE",
                                                                   "HEAD", "OPTIONS"])],
            lifespan=self._lifespan,
            # What Starlette's router refuses itself (a path with a newline, a method such as TRACE that no route
            # lists) goes through the same rules as the rest.
            exception_handlers={404: self._unrouted, 405: self._unrouted},
        )

    # -- keys -----------------------------------------------------------------------------------------------

    def _authorized(self, request: Request, level: str) -> bool:
        if level == "anonymous" or not (self.function_keys or self.master_key):
            return True
        given = request.headers.get("x-functions-key") or request.query_params.get("code")
        if not given:
            return False
        allowed = {self.master_key} if level == "admin" else self.function_keys | {self.master_key}
        return any(secrets.compare_digest(given, key) for key in allowed if key)

    # -- HTTP -----------------------------------------------------------------------------------------------

    async def _dispatch(self, request: Request) -> Response:
        path = request.scope["path"].strip("/")  # as sent: request.url drops tabs and newlines
        prefix = f"{self.route_prefix}/" if self.route_prefix else ""
        if prefix and not (path + "/").lower().startswith(prefix.lower()):
            return _not_found(request)
        route_path = path[len(prefix):] if prefix else path
        allowed: set[str] = set()
        for function in self.http:
            match = function.pattern.match(route_path)
            if match is None:
                continue
            if request.method not in function.methods:
                allowed |= function.methods
                continue
            if not self._authorized(request, function.auth_level):
                return host_problem(401, "Unauthorized", "this function needs a function key: send it in the "
                                    "x-functions-key header or the code query parameter")
            return await self._call_http(function, request, {k: v for k, v in match.groupdict().items() if v})
        if not allowed:
            return _not_found(request)
        # RFC 9110: 405 names the methods the resource has. HEAD is not among them for a GET route: the Functions
        # host does not map HEAD onto GET functions (in Azure, a method a route lacks is an empty 404).
        methods = ", ".join(sorted(allowed))
        return host_problem(405, "Method not allowed", f"{request.method} is not allowed here; use {methods}",
                            headers={"Allow": methods})

    async def _unrouted(self, request: Request, exc: Exception) -> Response:
        return await self._dispatch(request)

    async def _call_http(self, function: HttpFunction, request: Request, route_params: dict[str, str]) -> Response:
        body = await request.body()
        http_request = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params={k: v for k, v in request.query_params.multi_items()[::-1]},  # first value wins
            route_params=route_params,
            body=body,
        )
        try:
            result = await invoke(function.function, function.arg_name, http_request, function.name)
        except Exception:
            log.exception("function %s failed", function.name)
            return Response(status_code=500)
        return self._to_response(result)

    @staticmethod
    def _to_response(result: Any) -> Response:
        if result is None:
            return Response(status_code=204)
        if isinstance(result, (str, bytes)):
            return Response(result, status_code=200, media_type="text/plain")
        headers = dict(result.headers)
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = f"{result.mimetype}; charset={result.charset}"
        return Response(result.get_body(), status_code=result.status_code, headers=headers)

    # -- timers ---------------------------------------------------------------------------------------------

    async def run_timer(self, name: str, *, past_due: bool = False) -> None:
        timer = self.timers[name]
        self.timer_runs[name] = self.timer_runs.get(name, 0) + 1
        try:
            await invoke(timer.function, timer.arg_name, TimerRequest(past_due=past_due, schedule={"AdjustForDST": False}), name)
        except Exception:
            log.exception("timer function %s failed", name)

    async def _admin_invoke(self, request: Request) -> Response:
        name = request.path_params["name"]
        if not self._authorized(request, "admin"):
            return Response(status_code=401)
        match = next((n for n in self.timers if n.lower() == name.lower()), None)
        if match is None:
            return JSONResponse({"error": f"no timer function named {name}"}, status_code=404)
        task = asyncio.create_task(self.run_timer(match))
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)
        return Response(status_code=202)

    async def _schedule_loop(self, timer: TimerFunction) -> None:
        if timer.run_on_startup:
            await self.run_timer(timer.name)
        while True:
            now = datetime.now(UTC)
            due = timer.schedule.next_after(now)
            await asyncio.sleep(max(0.0, (due - now).total_seconds()))
            late = (datetime.now(UTC) - due).total_seconds() > 5
            await self.run_timer(timer.name, past_due=late)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        if self.run_timers:
            self._tasks += [asyncio.create_task(self._schedule_loop(t)) for t in self.timers.values()]
        if self.run_queues:
            self.queues.start()
        try:
            yield
        finally:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await self.queues.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
