"""Requests on the hot path of one session start: ARR/STS calls and Table Storage operations, counted for real.

Runs the SessionService against the emulator and Azurite, with and without an Idempotency-Key, on a warm process
(token cached, table created) and prints the counts per start.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arr_core.api.views import StartSessionRequest  # noqa: E402
from arr_core.services.context import AppContext  # noqa: E402
from arr_core.services.settings import AppSettings  # noqa: E402
from devhost.stack import azurite_command, azurite_connection_string, free_port, wait_for_port  # noqa: E402

ACCOUNT_ID, ACCOUNT_KEY = "00000000-0000-0000-0000-0000000000c1", "count-key"
TABLE_METHODS = ("create_entity", "get_entity", "upsert_entity", "update_entity", "submit_transaction",
                 "query_entities", "create_table")


async def measure(url: str, azurite_port: int) -> None:
    settings = AppSettings(account_id=ACCOUNT_ID, account_domain="count", endpoint=url, sts_endpoint=url,
                           account_key=ACCOUNT_KEY, storage_connection=azurite_connection_string(azurite_port),
                           history_table=f"count{uuid.uuid4().hex[:8]}")
    context = AppContext.from_settings(settings)
    arr_calls: Counter[str] = Counter()
    table_calls: Counter[str] = Counter()

    async def on_request(request: httpx.Request) -> None:
        arr_calls["sts" if request.url.path.lower().endswith("/token") else request.method] += 1

    context.arr._http.event_hooks["request"].append(on_request)
    table = context.history.table.client  # the SDK client under the Azure adapter
    for name in TABLE_METHODS:
        original = getattr(table, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            table_calls[_name] += 1
            return _original(*args, **kwargs)

        setattr(table, name, counted)
    await context.sessions.start(StartSessionRequest(lease_minutes=10))  # warm-up: token, table
    for label, key in (("without Idempotency-Key", None), ("with Idempotency-Key", "k-" + uuid.uuid4().hex)):
        arr_calls.clear()
        table_calls.clear()
        runs = 20
        for i in range(runs):
            await context.sessions.start(StartSessionRequest(lease_minutes=10), f"{key}-{i}" if key else None)
        print(f"per start {label}: ARR calls {sum(arr_calls.values()) / runs:.1f} {dict(arr_calls)}, "
              f"Table operations {sum(table_calls.values()) / runs:.1f} {dict(table_calls)}")
    await context.aclose()


def main() -> None:
    azurite_port, emulator_port = free_port(), free_port()
    processes = [
        subprocess.Popen(azurite_command(azurite_port), cwd=ROOT, stdout=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "arr_emulator", "--port", str(emulator_port), "--account-id",
                          ACCOUNT_ID, "--account-key", ACCOUNT_KEY], cwd=ROOT, stdout=subprocess.DEVNULL),
    ]
    try:
        wait_for_port(azurite_port, processes[0])
        wait_for_port(emulator_port, processes[1])
        asyncio.run(measure(f"http://127.0.0.1:{emulator_port}", azurite_port))
    finally:
        for process in processes:
            process.terminate()


if __name__ == "__main__":
    main()
