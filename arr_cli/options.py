"""The options every command takes (where to go, ``--json``, ``--verbose``), declared once.

Click (and so Typer) reads a parent command's options only before the subcommand's name, and a command's only
after it, yet people write both ``arr-sessions -v list`` and ``arr-sessions list -v``. So the options are declared
on both: :func:`global_options` puts them on the group (what comes before the command's name) and keeps what they
say in the context, and :func:`with_common` appends them to each command's signature and hands the command one
:class:`Common`, what was given after its name over what was given before it.
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
                                   help="Log each call to ARR (with its MS-CV) or to the app (method, path, status, "
                                        "time) on stderr")),
]
_DEFAULTS = {name: Common.__dataclass_fields__[name].default for name, _, _ in _OPTIONS}
_CONTEXT = "arr_cli_context"  # a parameter name no command uses: Typer hands the Click context in it


def merged(before: Common | None, after: Common) -> Common:
    """The options given after the command's name over those given before it (a flag is on if either sets it)."""
    if before is None:
        return after
    return Common(**{name: getattr(after, name) if getattr(after, name) != _DEFAULTS[name] else getattr(before, name)
                     for name, _, _ in _OPTIONS})


def _with_options(func: Callable[..., Any], hand: Callable[[Any, Common, dict[str, Any]], Any],
                  exclude: str | None = None) -> Callable[..., Any]:
    """``func`` as Typer sees it: its parameters (but ``exclude``), the common options and the Click context;
    ``hand(context, common, own)`` calls it."""
    signature = inspect.signature(func, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != exclude]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=_DEFAULTS[name],
                               annotation=Annotated[kind, option])
             for name, kind, option in _OPTIONS]
    context = inspect.Parameter(_CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        ctx = kwargs.pop(_CONTEXT)
        common = Common(**{name: kwargs.pop(name) for name, _, _ in _OPTIONS})
        return hand(ctx, common, kwargs)

    parameters = [*own, *added, context]
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__  # type: ignore[attr-defined]  # Typer must see this signature, not func's
    return wrapper


def global_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The group's callback ``func(**own)``, also taking the common options (before the command's name), which
    it keeps in the context for :func:`with_common`."""
    def hand(ctx: Any, common: Common, own: dict[str, Any]) -> Any:
        ctx.obj = common
        return func(**own)

    return _with_options(func, hand)


def with_common(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func(common: Common, **own)`` as a Typer command taking its own options plus the common ones, which may
    also come before its name (:func:`global_options`)."""
    def hand(ctx: Any, common: Common, own: dict[str, Any]) -> Any:
        before = ctx.obj if isinstance(ctx.obj, Common) else None
        return func(common=merged(before, common), **own)

    return _with_options(func, hand, exclude="common")
