"""``python -m devhost``: serve ``function_app.py``'s functions on http://127.0.0.1:7071/api/ like ``func start``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

import azure.functions as func
import uvicorn

from .host import FunctionsHost
from .settings import load_local_settings


def find_app(module_name: str) -> func.FunctionRegister:
    """The single FunctionApp instance of the module, as the worker's indexer requires."""
    module = importlib.import_module(module_name)
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if len(apps) != 1:
        msg = f"{module_name} must define exactly one FunctionApp, found {len(apps)}"
        raise SystemExit(msg)
    return apps[0]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("FUNCTIONS_PORT", "7071")))
    parser.add_argument("--settings", default="local.settings.json")
    parser.add_argument("--module", default="function_app")
    parser.add_argument("--function-key", action="append", default=[],
                        help="require this key on FUNCTION-level routes (repeatable; also DEVHOST_FUNCTION_KEYS)")
    parser.add_argument("--master-key", default=os.environ.get("DEVHOST_MASTER_KEY"))
    parser.add_argument("--no-timers", action="store_true", help="run timer functions only on demand")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("azure").setLevel(logging.WARNING)
    load_local_settings(args.settings)
    # The app's own address, as Core Tools sets it (``localhost:<port>``; kept when the environment gives one, as
    # tests that play Azure do): the app builds its links on it, never on a request's Host header.
    own = "localhost" if args.host in ("0.0.0.0", "::") else args.host
    os.environ.setdefault("WEBSITE_HOSTNAME", f"{own}:{args.port}")
    sys.path.insert(0, os.getcwd())
    keys = args.function_key + [k for k in os.environ.get("DEVHOST_FUNCTION_KEYS", "").split(",") if k]
    host = FunctionsHost(find_app(args.module), function_keys=keys, master_key=args.master_key,
                         run_timers=not args.no_timers)
    uvicorn.run(host.asgi, host=args.host, port=args.port, log_level="warning", backlog=2048)


if __name__ == "__main__":
    main()
