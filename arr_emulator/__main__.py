"""``python -m arr_emulator``: serve the emulator with uvicorn."""

from __future__ import annotations

import argparse
import os

import uvicorn

from . import EmulatorState, create_app

DEFAULT_ACCOUNT_ID = "00000000-0000-0000-0000-0000000000a1"
DEFAULT_ACCOUNT_KEY = "emulator-account-key"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m arr_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("ARR_EMULATOR_PORT", "7072")))
    parser.add_argument("--account-id", default=os.environ.get("ARR_ACCOUNT_ID", DEFAULT_ACCOUNT_ID))
    parser.add_argument("--account-key", default=os.environ.get("ARR_ACCOUNT_KEY", DEFAULT_ACCOUNT_KEY))
    parser.add_argument("--startup-seconds", type=float, default=10.0, help="time from create to Ready")
    parser.add_argument("--region", default="eastus")
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args()
    state = EmulatorState(accounts={args.account_id: args.account_key}, region=args.region,
                          startup_seconds=args.startup_seconds, page_size=args.page_size)
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level="critical", backlog=2048,
                server_header=False,
                timeout_keep_alive=30)


if __name__ == "__main__":
    main()
