"""The options every command takes (where to go, ``--json``, ``--verbose``), declared once.

Click (and so Typer) reads a parent command's options only before the subcommand's name, yet people write
``arr-sessions list --app URL``. So each command gets these options itself: :func:`with_common` appends them to the
command's signature and hands them to it as one :class:`Common`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from .config import Flags

TARGET = "Target (default: arrconfig.json, then the environment)"
OUTPUT = "Output"


@dataclass(frozen=True)
class Common(Flags):
    """What every command takes: the target's flags, and how to answer."""

    json: bool = False
    verbose: bool = False

    def flags(self) -> Flags:
        return self


_OPTIONS: list[tuple[str, Any, Any]] = [
    ("config", Path | None, typer.Option(
        "--config", "-c", metavar="PATH", rich_help_panel=TARGET, show_default=False,
        help="RenderingSession.ps1's arrconfig.json \\[env: ARR_SESSIONS_CONFIG; default: ./arrconfig.json]")),
    ("app", str | None, typer.Option(
        "--app", metavar="URL", rich_help_panel=TARGET, show_default=False,
        help="Go through the deployed arr-sessions app at URL instead of ARR \\[env: ARR_SESSIONS_APP_URL]")),
    ("function_key", str | None, typer.Option(
        "--function-key", metavar="KEY", rich_help_panel=TARGET, show_default=False,
        help="The app's function key; better set ARR_SESSIONS_FUNCTION_KEY (flags show in the process list)")),
    ("account_id", str | None, typer.Option(
        "--account-id", metavar="GUID", rich_help_panel=TARGET, show_default=False,
        help="ARR account id \\[env: ARR_ACCOUNT_ID; arrconfig: accountSettings.arrAccountId]")),
    ("account_key", str | None, typer.Option(
        "--account-key", metavar="KEY", rich_help_panel=TARGET, show_default=False,
        help="ARR account key; better set ARR_ACCOUNT_KEY or arrconfig.json. Without one: Azure sign-in "
             "(managed identity, az login)")),
    ("account_domain", str | None, typer.Option(
        "--account-domain", metavar="REGION|URL", rich_help_panel=TARGET, show_default=False,
        help="The account's domain: a region or a URL \\[env: ARR_ACCOUNT_DOMAIN; arrconfig: "
             "accountSettings.arrAccountDomain]")),
    ("rendering_domain", str | None, typer.Option(
        "--rendering-domain", metavar="REGION|URL", rich_help_panel=TARGET, show_default=False,
        help="Where sessions run: a region or a URL \\[env: ARR_ENDPOINT or ARR_REGION; arrconfig: "
             "renderingSessionSettings.remoteRenderingDomain]")),
    ("json", bool, typer.Option("--json", metavar="", rich_help_panel=OUTPUT,
                                help="Print JSON for scripts, nothing else")),
    ("verbose", bool, typer.Option("--verbose", "-v", metavar="", rich_help_panel=OUTPUT,
                                   help="Log each call to ARR or the app (with its MS-CV) on stderr")),
]
_DEFAULTS = {name: Common.__dataclass_fields__[name].default for name, _, _ in _OPTIONS}


def with_common(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func(common: Common, **own)`` as a Typer command taking its own options plus the common ones."""
    signature = inspect.signature(func, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "common"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=_DEFAULTS[name],
                               annotation=Annotated[kind, option])
             for name, kind, option in _OPTIONS]

    @functools.wraps(func)
    def command(**kwargs: Any) -> Any:
        common = Common(**{name: kwargs.pop(name) for name, _, _ in _OPTIONS})
        return func(common=common, **kwargs)

    command.__signature__ = signature.replace(parameters=own + added)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in own + added}
    del command.__wrapped__  # type: ignore[attr-defined]  # Typer must see this signature, not func's
    return command
