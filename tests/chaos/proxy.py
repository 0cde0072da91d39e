"""A small fault-injecting HTTP reverse proxy for the chaos tests, served in-process from a background thread.

Put it in front of Azurite's Table endpoint or of the ARR emulator. Requests and answers pass verbatim (method,
raw path and query, headers, body: Azurite's multipart ``$batch`` included) unless a rule says otherwise. A rule
matches by method, path regex and optionally a body substring; it lets the first ``skip`` matches through, then
acts on the next ``times`` (None: all of them):

- ``hold``: the request waits until :meth:`Rule.release` (then it is forwarded, or dropped: never forwarded);
  :meth:`Rule.wait_held` returns once a request is being held (the test's "stopped exactly here" signal);
- ``fail``: the proxy answers ``status`` with ``body`` itself; the upstream never sees the request;
- ``count``: nothing but counting.

Every rule counts the requests it matched (``seen``), acted on (``acted``) and, for holds, finished (``done``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import uvicorn
from polling import wait_for
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devhost.stack import free_port

HOP_BY_HOP = {b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade"}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "MERGE", "HEAD", "OPTIONS"]


@dataclass
class Rule:
    action: str  # "hold", "fail" or "count"
    method: str | None
    path: str
    body: str | None = None
    skip: int = 0
    times: int | None = 1
    status: int = 503
    fail_body: bytes = b""
    fail_type: str = "application/json"
    seen: int = 0
    acted: int = 0
    done: int = 0
    held: threading.Event = field(default_factory=threading.Event)
    _released: threading.Event = field(default_factory=threading.Event)
    _forward: bool = True

    def matches(self, method: str, path: str, body: bytes) -> bool:
        return ((self.method is None or self.method == method) and re.search(self.path, path) is not None
                and (self.body is None or self.body.encode() in body))

    def wait_held(self, timeout: float = 15.0) -> None:
        if not self.held.wait(timeout):
            raise AssertionError(f"no request matching {self.method} {self.path} was held within {timeout} s "
                                 f"(seen {self.seen})")

    def release(self, *, forward: bool = True) -> None:
        """Let held requests go on: forwarded upstream, or dropped (the upstream never sees them)."""
        self._forward = forward
        self._released.set()

    def wait_done(self, count: int = 1, timeout: float = 15.0) -> None:
        wait_for(lambda: self.done >= count, f"{count} held request(s) on {self.path} finished", timeout=timeout,
                 interval=0.02)


class FaultProxy:
    """``with FaultProxy("http://127.0.0.1:10002") as proxy:`` then point a client at ``proxy.url``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.rules: list[Rule] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._client: httpx.AsyncClient | None = None
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=METHODS)], lifespan=self._lifespan)
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error",
                                                     timeout_graceful_shutdown=1))
        self._thread = threading.Thread(target=self._server.run, name=f"proxy-{self.port}", daemon=True)

    # -- rules (called from the test) -----------------------------------------------------------------------

    def add(self, action: str, method: str | None, path: str, **options: object) -> Rule:
        rule = Rule(action, method, path, **options)  # type: ignore[arg-type]
        with self._lock:
            self.rules.append(rule)
        return rule

    def hold(self, method: str | None, path: str, **options: object) -> Rule:
        return self.add("hold", method, path, **options)

    def fail(self, method: str | None, path: str, status: int = 503, body: bytes = b"", **options: object) -> Rule:
        options.setdefault("times", None)
        return self.add("fail", method, path, status=status, fail_body=body, **options)

    def count(self, method: str | None, path: str, **options: object) -> Rule:
        return self.add("count", method, path, times=None, **options)

    def clear(self) -> None:
        """Remove every rule; held requests are dropped."""
        with self._lock:
            rules, self.rules = self.rules, []
        for rule in rules:
            if not rule._released.is_set():
                rule.release(forward=False)

    # -- serving --------------------------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        wait_for(lambda: self._server.started or not self._thread.is_alive(), f"fault proxy for {self.upstream}",
                 timeout=10, interval=0.01, fail=False)
        if not self._server.started:
            raise RuntimeError(f"fault proxy for {self.upstream} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()
        self._server.should_exit = True
        self._thread.join(10)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=500)) as client:
            self._client = client
            yield

    def _choose(self, method: str, path: str, body: bytes) -> Rule | None:
        chosen = None
        with self._lock:
            self.requests += 1
            for rule in self.rules:
                if not rule.matches(method, path, body):
                    continue
                rule.seen += 1
                wants = rule.seen > rule.skip and (rule.times is None or rule.acted < rule.times)
                if chosen is None and wants and rule.action != "count":
                    chosen = rule
                    rule.acted += 1
        return chosen

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        rule = self._choose(request.method, request.url.path, body)
        if rule is not None and rule.action == "fail":
            return Response(rule.fail_body, rule.status, media_type=rule.fail_type)
        if rule is not None and rule.action == "hold":
            rule.held.set()
            while not rule._released.is_set():
                await asyncio.sleep(0.02)
            if not rule._forward:
                rule.done += 1
                return Response(b"dropped by the fault proxy", 502)
        try:
            return await self._forward(request, body)
        finally:
            if rule is not None:
                rule.done += 1

    async def _forward(self, request: Request, body: bytes) -> Response:
        assert self._client is not None
        target = self.upstream + request.scope["raw_path"].decode("latin-1")
        if request.scope["query_string"]:
            target += "?" + request.scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in request.headers.raw if k.lower() not in HOP_BY_HOP]
        try:
            upstream = await self._client.send(
                self._client.build_request(request.method, httpx.URL(target), headers=headers, content=body),
                stream=True)
        except httpx.HTTPError as exc:
            return Response(f"fault proxy: upstream unreachable ({type(exc).__name__})".encode(), 502)
        try:
            content = b"".join([chunk async for chunk in upstream.aiter_raw()])
        finally:
            await upstream.aclose()
        response = Response(content, upstream.status_code)
        response.raw_headers = [(k, v) for k, v in upstream.headers.raw if k.lower() not in HOP_BY_HOP]
        response.raw_headers.append((b"content-length", str(len(content)).encode()))
        return response
