"""Queue-triggered functions that exercise the local host's queue conventions (not the product's functions).

Each invocation appends a JSON line to ``QUEUE_APP_LOG``: the function, the message as the function saw it, and the
thread it ran on.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading

import azure.functions as func

app = func.FunctionApp()
LOG = os.environ.get("QUEUE_APP_LOG", "/tmp/queue-app.jsonl")
RUNNING = {"now": 0, "peak": 0}


def record(function: str, msg: func.QueueMessage, **extra: object) -> None:
    def iso(value: object) -> str | None:
        return value.isoformat() if value is not None else None  # type: ignore[attr-defined]

    entry = {"function": function, "type": f"{type(msg).__module__}.{type(msg).__name__}", "id": msg.id,
             "body": base64.b64encode(msg.get_body()).decode(), "dequeue_count": msg.dequeue_count,
             "pop_receipt": msg.pop_receipt, "insertion_time": iso(msg.insertion_time),
             "expiration_time": iso(msg.expiration_time), "time_next_visible": iso(msg.time_next_visible),
             "thread": threading.current_thread().name, **extra}
    with open(LOG, "a") as log:
        log.write(json.dumps(entry) + "\n")


@app.queue_trigger(arg_name="msg", queue_name="arr-watch", connection="AzureWebJobsStorage")
async def watch(msg: func.QueueMessage) -> None:
    record("watch", msg)


@app.queue_trigger(arg_name="msg", queue_name="devhost-flaky", connection="AzureWebJobsStorage")
async def flaky(msg: func.QueueMessage) -> None:
    record("flaky", msg)
    if msg.dequeue_count < 3:
        raise RuntimeError(f"attempt {msg.dequeue_count} fails")


@app.queue_trigger(arg_name="msg", queue_name="devhost-fails", connection="AzureWebJobsStorage")
async def always_fails(msg: func.QueueMessage) -> None:
    record("always_fails", msg)
    raise RuntimeError("always")


# "Storage" is not an app setting: the host then reads AzureWebJobsStorage ("AzureWebJobs" + the name).
@app.queue_trigger(arg_name="msg", queue_name="%QUEUE_APP_QUEUE%", connection="Storage")
async def from_setting(msg: func.QueueMessage) -> None:
    record("from_setting", msg)


@app.queue_trigger(arg_name="msg", queue_name="devhost-sync", connection="AzureWebJobsStorage")
def sync_one(msg: func.QueueMessage, context: func.Context) -> None:
    record("sync_one", msg, function_name=context.function_name)


@app.queue_trigger(arg_name="msg", queue_name="devhost-slow", connection="AzureWebJobsStorage")
async def slow(msg: func.QueueMessage) -> None:
    RUNNING["now"] += 1
    RUNNING["peak"] = max(RUNNING["peak"], RUNNING["now"])
    await asyncio.sleep(0.5)
    RUNNING["now"] -= 1
    record("slow", msg, peak=RUNNING["peak"])


# Its own connection setting, so that a host can run this function alone (the shutdown test).
@app.queue_trigger(arg_name="msg", queue_name="%BLOCKS_QUEUE%", connection="BlocksStorage")
async def blocks(msg: func.QueueMessage) -> None:
    record("blocks", msg)
    if msg.dequeue_count == 1:
        await asyncio.sleep(3600)
