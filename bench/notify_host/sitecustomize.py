"""What bench/notify_duplicates.py adds to the host it starts (on the host's PYTHONPATH; never imported by the app).

``BENCH_SLOW_RESOLVE=S``: a lookup of a name under ``slow.localhost`` takes S seconds in ``socket.getaddrinfo`` (the
thread that calls it is held, as a slow DNS server holds it) and then resolves to 127.0.0.1; other names as usual.

``BENCH_TRACE=1`` prints to stderr, which the bench reads from the host's log:

- ``TRACE send <queue> <seconds> s <ok|error> [attempt=N event=E url=U]``: each ``StorageQueues.send``, timed, and
  for a delivery the (receiver, event, attempt) it queues;
- ``TRACE executor busy <running>/<threads> queued <waiting> ...``: the event loop's default executor, sampled every
  0.25 s while anything runs or waits in it, with what was submitted since the last sample and the longest wait
  for a thread.
"""

from __future__ import annotations

import asyncio
import collections
import importlib.abc
import importlib.machinery
import os
import sys
import threading
import time

_SLOW = float(os.environ.get("BENCH_SLOW_RESOLVE", "0") or 0)
_TRACE = os.environ.get("BENCH_TRACE") == "1"
if _SLOW:
    from devhost.faults import slow_dns  # the repository's root is on PYTHONPATH (bench/notify_duplicates.py)

    slow_dns(_SLOW)

_lock = threading.Lock()
_state = {"running": 0, "queued": 0, "threads": 0, "max_wait": 0.0}
_submitted: collections.Counter[str] = collections.Counter()
_original_run_in_executor = asyncio.BaseEventLoop.run_in_executor


def _name(func: object) -> str:
    inner = getattr(func, "func", func)  # functools.partial
    return getattr(inner, "__qualname__", type(inner).__name__)


def _run_in_executor(self: asyncio.BaseEventLoop, executor: object, func: object, *args: object) -> object:
    if executor is not None:
        return _original_run_in_executor(self, executor, func, *args)
    queued_at = time.monotonic()
    name = _name(func)
    with _lock:
        _state["queued"] += 1
        _submitted[name] += 1

    def timed(*inner: object) -> object:
        with _lock:
            _state["queued"] -= 1
            _state["running"] += 1
            _state["max_wait"] = max(_state["max_wait"], time.monotonic() - queued_at)
        try:
            return func(*inner)  # type: ignore[operator]
        finally:
            with _lock:
                _state["running"] -= 1

    future = _original_run_in_executor(self, None, timed, *args)
    executor_ = getattr(self, "_default_executor", None)
    if executor_ is not None:
        _state["threads"] = getattr(executor_, "_max_workers", 0)
    return future


if _TRACE:
    asyncio.BaseEventLoop.run_in_executor = _run_in_executor  # type: ignore[method-assign]


def _sampler() -> None:
    while True:
        time.sleep(0.25)
        with _lock:
            running, queued, threads, wait = (_state["running"], _state["queued"], _state["threads"],
                                              _state["max_wait"])
            what = dict(_submitted)
            _submitted.clear()
            _state["max_wait"] = 0.0
        if running or queued or what:
            sys.stderr.write(f"TRACE executor busy {running}/{threads} queued {queued} max_wait {wait:.3f} s "
                             f"submitted {what}\n")
            sys.stderr.flush()


if _TRACE:
    threading.Thread(target=_sampler, daemon=True, name="trace-executor").start()


def _patch_queues(module: object) -> None:
    cls = module.StorageQueues  # type: ignore[attr-defined]
    original = cls.send

    async def send(self: object, queue: str, body: object, **kwargs: object) -> None:
        began = time.monotonic()
        outcome = "ok"
        try:
            await original(self, queue, body, **kwargs)
        except BaseException as exc:
            outcome = type(exc).__name__
            raise
        finally:
            what = ""
            if isinstance(body, dict) and "eventId" in body:  # a delivery: which (receiver, event, attempt)
                what = f" attempt={body.get('attempt')} event={body['eventId']} url={body.get('url')}"
            sys.stderr.write(f"TRACE send {queue} {time.monotonic() - began:.3f} s {outcome}{what}\n")
            sys.stderr.flush()

    cls.send = send


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object, target: object = None) -> object:
        if name != "arr_core.store.azure_queues":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)  # type: ignore[arg-type]
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def patched(module: object) -> None:
            exec_module(module)  # type: ignore[arg-type]
            _patch_queues(module)

        loader.exec_module = patched  # type: ignore[method-assign]
        return spec


if _TRACE:
    sys.meta_path.insert(0, _Finder())
