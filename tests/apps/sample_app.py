"""A small function app that exercises the local host's conventions (not the product's functions)."""

from __future__ import annotations

import asyncio
import json
import os
import threading

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
TIMER_LOG = os.environ.get("SAMPLE_TIMER_LOG", "/tmp/sample-timer.log")


@app.route(route="open", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def open_route(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("open")


@app.route(route="items/{item_id}/parts/{part?}", methods=["GET", "POST"])
async def item(req: func.HttpRequest) -> func.HttpResponse:
    body = {"route": dict(req.route_params), "params": dict(req.params), "method": req.method,
            "body": req.get_body().decode(), "url": req.url, "thread": threading.current_thread().name}
    return func.HttpResponse(json.dumps(body), mimetype="application/json")


IN_FLIGHT = {"now": 0, "peak": 0}


@app.route(route="slow", methods=["GET"])
async def slow(req: func.HttpRequest) -> func.HttpResponse:
    IN_FLIGHT["now"] += 1
    IN_FLIGHT["peak"] = max(IN_FLIGHT["peak"], IN_FLIGHT["now"])
    await asyncio.sleep(0.5)
    IN_FLIGHT["now"] -= 1
    return func.HttpResponse(str(IN_FLIGHT["peak"]))


@app.route(route="sync", methods=["GET"])
def sync_route(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"thread": threading.current_thread().name,
                                         "function": context.function_name}), mimetype="application/json")


@app.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("kaboom")


@app.timer_trigger(schedule="%SAMPLE_SCHEDULE%", arg_name="timer", run_on_startup=False)
async def tick(timer: func.TimerRequest) -> None:
    _append(TIMER_LOG, f"tick past_due={timer.past_due}\n")


def _append(path: str, line: str) -> None:
    with open(path, "a") as log:
        log.write(line)
