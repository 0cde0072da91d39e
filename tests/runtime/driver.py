"""Drive Microsoft's in-process Python worker, ``azure-functions-runtime`` (Python 3.13+), the way the host does.

Run by the Python of ``.venv-runtime`` (see ``tests/runtime/build_venv.py``), never by the project's 3.11 venv::

    .venv-runtime/bin/python tests/runtime/driver.py --protos .venv-runtime/functionrpc/tests/protos

The Functions host talks to the worker over gRPC with ``StreamingMessage``s of ``FunctionRpc.proto``; in Python
3.13+ the worker's process (the "proxy worker") hands each message to ``azure_functions_runtime.handle_event`` as
an object with ``.request`` (the ``StreamingMessage``) and ``.properties`` (``host`` and the ``protos`` module).
This script plays host and proxy: it builds the messages from the compiled ``FunctionRpc.proto`` that Microsoft
ships on PyPI (``tests/protos`` inside the ``azure-functions-runtime-v1`` wheel; loaded here from a private
folder, under a private package name, without its gRPC stubs), sends each one through the wire format (serialized
and parsed again, as gRPC would) and reads the answers the same way.

It speaks JSON lines: one command per line on stdin, one answer per line on stdout (the real stdout; anything the
app or the runtime prints goes to stderr). Commands:

- ``{"op": "init", "app_dir": DIR}``: WorkerInitRequest, FunctionsMetadataRequest, one FunctionLoadRequest per
  function; answers with each status and every function's metadata (bindings as the host reads them).
- ``{"op": "http", "function": NAME, "method", "url", "headers", "query", "params", "body_b64"}``: an
  InvocationRequest whose trigger is an ``RpcHttp`` built as the host builds it for a worker that announced
  ``RpcHttpBodyOnly`` and ``RawHttpBodyBytes``; answers with status, headers and the body (base64).
- ``{"op": "timer", "function": NAME, "past_due": bool}``: an InvocationRequest with the host's ``TimerInfo``.
- ``{"op": "quit"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import json
import logging
import os
import sys
import time
import traceback
import types
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

PROTOS_PACKAGE = "_functionrpc_protos"
HOST_VERSION = "4.1040.100.0"  # any 4.x host; the worker only logs it


class WorkerRequest:
    """What the proxy worker passes to each ``handle_event`` function."""

    def __init__(self, name: str, request: Any, properties: dict[str, Any]) -> None:
        self.name = name
        self.request = request
        self.properties = properties


def load_protos(folder: str) -> types.ModuleType:
    """The compiled FunctionRpc.proto (``FunctionRpc_pb2`` and its imports) as one module of message classes.

    The folder's own ``__init__`` also imports the gRPC service stubs (``grpcio``), which a worker driven
    in-process does not need: the package is made here, and only the ``*_pb2`` modules are imported into it.
    """
    package = types.ModuleType(PROTOS_PACKAGE)
    package.__path__ = [folder]
    sys.modules[PROTOS_PACKAGE] = package
    rpc = importlib.import_module(f"{PROTOS_PACKAGE}.FunctionRpc_pb2")
    nullable = importlib.import_module(f"{PROTOS_PACKAGE}.shared.NullableTypes_pb2")
    claims = importlib.import_module(f"{PROTOS_PACKAGE}.identity.ClaimsIdentityRpc_pb2")
    for module in (claims, nullable, rpc):
        for name in dir(module):
            if not name.startswith("_"):
                setattr(package, name, getattr(module, name))
    return package


class Driver:
    def __init__(self, protos: types.ModuleType) -> None:
        self.protos = protos
        self.functions: dict[str, dict[str, Any]] = {}  # name -> metadata
        self.capabilities: dict[str, str] = {}
        self.handlers: Any = None

    # -- the wire ---------------------------------------------------------------------------------------------

    def over_the_wire(self, **content: Any) -> Any:
        """A ``StreamingMessage`` as the worker receives it: serialized by the host, parsed by the worker."""
        message = self.protos.StreamingMessage(request_id=str(uuid.uuid4()), **content)
        return self.protos.StreamingMessage.FromString(message.SerializeToString())

    def back_over_the_wire(self, field: str, response: Any) -> Any:
        """The worker's answer as the host reads it (a type error here is a message the host could not send)."""
        message = self.protos.StreamingMessage(request_id=str(uuid.uuid4()), **{field: response})
        return getattr(self.protos.StreamingMessage.FromString(message.SerializeToString()), field)

    async def send(self, name: str, field: str, response_field: str, content: Any) -> Any:
        request = WorkerRequest(name, self.over_the_wire(**{field: content}),
                                {"host": "127.0.0.1", "protos": self.protos})
        response = await getattr(self.handlers, field)(request)
        return self.back_over_the_wire(response_field, response)

    def status(self, result: Any) -> dict[str, Any]:
        name = self.protos.StatusResult.Status.Name(result.status)
        out: dict[str, Any] = {"status": name}
        if result.HasField("exception"):
            out["exception"] = {"type": result.exception.type, "message": result.exception.message,
                                "stack_trace": result.exception.stack_trace}
        return out

    # -- commands ---------------------------------------------------------------------------------------------

    async def init(self, app_dir: str) -> dict[str, Any]:
        """Start-up as the host does it: init (the worker indexes the app), metadata, then load each function."""
        app_dir = os.path.abspath(app_dir)
        # In Azure the worker runs in the app's folder (/home/site/wwwroot), which is on sys.path.
        os.chdir(app_dir)
        sys.path.insert(0, app_dir)
        started = time.perf_counter()
        import azure_functions_runtime.handle_event as handlers  # only now: the app folder is on sys.path

        self.handlers = handlers
        p = self.protos
        init = await self.send("WorkerInitRequest", "worker_init_request", "worker_init_response",
                               p.WorkerInitRequest(host_version=HOST_VERSION, function_app_directory=app_dir,
                                                   worker_directory=os.path.dirname(handlers.__file__)))
        self.capabilities = dict(init.capabilities)
        answer: dict[str, Any] = {"init": self.status(init.result), "capabilities": self.capabilities,
                                  "worker": {"runtime": init.worker_metadata.runtime_name,
                                             "runtime_version": init.worker_metadata.runtime_version,
                                             "worker_version": init.worker_metadata.worker_version}}
        if answer["init"]["status"] != "Success":
            return answer
        metadata = await self.send("FunctionsMetadataRequest", "functions_metadata_request",
                                   "function_metadata_response",
                                   p.FunctionsMetadataRequest(function_app_directory=app_dir))
        answer["metadata"] = self.status(metadata.result)
        answer["use_default_metadata_indexing"] = metadata.use_default_metadata_indexing
        answer["functions"] = []
        answer["loads"] = {}
        for function in metadata.function_metadata_results:
            described = {
                "name": function.name, "function_id": function.function_id, "language": function.language,
                "script_file": function.script_file, "entry_point": function.entry_point,
                "directory": function.directory, "properties": dict(function.properties),
                "raw_bindings": [json.loads(raw) for raw in function.raw_bindings],
                "bindings": {name: {"type": b.type, "direction": p.BindingInfo.Direction.Name(b.direction)}
                             for name, b in function.bindings.items()},
                "status": self.status(function.status) if function.HasField("status") else None,
            }
            answer["functions"].append(described)
            self.functions[function.name] = described
            load = await self.send("FunctionLoadRequest", "function_load_request", "function_load_response",
                                   p.FunctionLoadRequest(function_id=function.function_id, metadata=function))
            answer["loads"][function.name] = self.status(load.result)
        answer["seconds"] = round(time.perf_counter() - started, 3)
        return answer

    def trigger(self, name: str) -> dict[str, Any]:
        function = self.functions[name]
        return next(b for b in function["raw_bindings"]
                    if b["direction"].lower() == "in" and b["type"].endswith("Trigger"))

    async def invoke(self, name: str, data: Any, trigger_metadata: dict[str, Any]) -> Any:
        p = self.protos
        function = self.functions[name]
        request = p.InvocationRequest(
            invocation_id=str(uuid.uuid4()), function_id=function["function_id"],
            input_data=[p.ParameterBinding(name=self.trigger(name)["name"], data=data)],
            trigger_metadata=trigger_metadata,
            trace_context=p.RpcTraceContext(trace_parent=f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"))
        return await self.send("InvocationRequest", "invocation_request", "invocation_response", request)

    async def http(self, command: dict[str, Any]) -> dict[str, Any]:
        """An HTTP invocation with the ``RpcHttp`` the host sends to a worker that announced ``RpcHttpBodyOnly``
        and ``RawHttpBodyBytes`` (GrpcMessageConversionExtensions.ToRpcHttp/PopulateBody): lower-case header
        names, query values that are not empty, the route's values as ``params``, the body as bytes when there
        is one. No HTTP trigger metadata (the worker announced ``RpcHttpTriggerMetadataRemoved``)."""
        p = self.protos
        missing = {"RpcHttpBodyOnly", "RawHttpBodyBytes"} - set(self.capabilities)
        if missing or "HttpUri" in self.capabilities:
            msg = f"this driver builds RpcHttp only for RpcHttpBodyOnly + RawHttpBodyBytes, without HttpUri: " \
                  f"the worker announced {sorted(self.capabilities)}"
            raise RuntimeError(msg)
        body = base64.b64decode(command.get("body_b64") or "")
        http = p.RpcHttp(
            method=command["method"], url=command["url"],
            headers={k.lower(): v for k, v in command.get("headers", {}).items()},
            query={k: v for k, v in command.get("query", {}).items() if v},
            params=command.get("params", {}),
        )
        if body:
            http.body.CopyFrom(p.TypedData(bytes=body))
        response = await self.invoke(command["function"], p.TypedData(http=http), {})
        answer = self.status(response.result)
        value = response.return_value
        kind = value.WhichOneof("data")
        answer["return_kind"] = kind
        if kind == "http":
            body_kind = value.http.body.WhichOneof("data")
            raw = getattr(value.http.body, body_kind) if body_kind else b""
            answer.update(status_code=int(value.http.status_code or 200), headers=dict(value.http.headers),
                          body_kind=body_kind,
                          body_b64=base64.b64encode(raw.encode() if isinstance(raw, str) else raw).decode())
        return answer

    async def timer(self, command: dict[str, Any]) -> dict[str, Any]:
        """A timer invocation with the host's TimerInfo, as JSON, and the ``sys`` trigger metadata."""
        p = self.protos
        now = datetime.now(UTC)
        info = {"Schedule": {"AdjustForDST": True},
                "ScheduleStatus": {"Last": (now - timedelta(minutes=5)).isoformat(), "Next": now.isoformat(),
                                   "LastUpdated": (now - timedelta(minutes=5)).isoformat()},
                "IsPastDue": bool(command.get("past_due", False))}
        data = p.TypedData(json=json.dumps(info))
        system = p.TypedData(json=json.dumps({"MethodName": command["function"], "UtcNow": now.isoformat(),
                                              "RandGuid": str(uuid.uuid4())}))
        response = await self.invoke(command["function"], data, {self.trigger(command["function"])["name"]: data,
                                                                  "sys": system})
        answer = self.status(response.result)
        answer["return_kind"] = response.return_value.WhichOneof("data")
        return answer


async def serve(driver: Driver, out: Any) -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        command = json.loads(line)
        op = command.get("op")
        try:
            if op == "quit":
                answer: dict[str, Any] = {"ok": True}
            elif op == "init":
                answer = await driver.init(command["app_dir"])
            elif op == "http":
                answer = await driver.http(command)
            elif op == "timer":
                answer = await driver.timer(command)
            else:
                answer = {"error": f"unknown op {op!r}"}
        except Exception:  # noqa: BLE001 (the test reads the traceback; the driver keeps serving)
            answer = {"error": traceback.format_exc()}
        out.write(json.dumps(answer) + "\n")
        out.flush()
        if op == "quit":
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protos", required=True, help="the folder of FunctionRpc_pb2.py")
    args = parser.parse_args()
    if sys.version_info < (3, 13):
        sys.exit(f"azure-functions-runtime needs Python 3.13 or newer, not {sys.version.split()[0]}")
    # Answers go to the real stdout; whatever else writes to stdout (print, a handler) goes to stderr.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("azure", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("azure.functions").setLevel(logging.INFO)  # the runtime's own logger
    asyncio.run(serve(Driver(load_protos(os.path.abspath(args.protos))), out))


if __name__ == "__main__":
    main()
