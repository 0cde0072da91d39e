"""The commands: start, get, list, extend, stop against ARR or the app; history, usage, cleanup, events, keep-alive
via the app.

Each command resolves its target (:mod:`.config`), does its work in one event loop, and prints through
:mod:`.render`. Exit codes are those of :mod:`.errors`.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from . import __version__, render
from .config import Resolved, duration_seconds, lease_minutes, resolve, size_name
from .errors import INTERRUPTED, OK, SESSION_ENDED, TIMED_OUT, UsageError, app_only, as_cli_error
from .options import Common, global_options, with_common
from .targets import TERMINAL, Poll, Session, StartRequest, Target, open_target
from .untrusted import printable
from .waiting import WaitOutcome, wait_for_session

app = typer.Typer(
    name="arr-sessions",
    help="Start, watch, extend and stop Azure Remote Rendering sessions; with the arr-sessions app also their "
         "history, usage, cleanup and events.\n\n"
         "Goes to ARR directly (arrconfig.json of RenderingSession.ps1, ARR_* variables, or flags) or, with "
         "--app URL, through the deployed app.\n\n"
         "The Target and Output options go before or after the command: `arr-sessions -v list` and "
         "`arr-sessions list -v` are the same (given both ways, the one after the command wins).\n\n"
         "Exit codes: 0 ok (a stop of an ended session included); 1 the session ended (Error, Expired, Stopped) "
         "while waiting; 2 usage or config error (a function key missing or refused included); 3 service error "
         "(ARR's MS-CV is printed when ARR was asked); 4 --timeout ran out; 5 an answer could not be read (not JSON, "
         "of another shape, nested too deeply, larger than 16 MiB); 130 Ctrl-C.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

WAIT = "Waiting"
EITHER_SIDE = ("The Target and Output options go before or after the command: arr-sessions -v list = "
               "arr-sessions list -v.")
DEFAULT_POLL_SECONDS = 10.0


class Size(str, Enum):
    standard = "standard"
    premium = "premium"


class GroupBy(str, Enum):
    day = "day"
    size = "size"
    requestedBy = "requestedBy"


class Mode(str, Enum):
    lease = "lease"
    nightly = "nightly"


@dataclass
class Run:
    """One command's run: its output, and what Ctrl-C should say."""

    common: Common
    resolved: Resolved | None = None
    out: Console = field(default_factory=lambda: render.console())
    err: Console = field(default_factory=lambda: render.console(stderr=True))
    session_id: str | None = None  # set once a session is known (for the Ctrl-C message)
    started_create: bool = False

    @property
    def json(self) -> bool:
        return self.common.json

    def again(self, command: str) -> str:
        """The command line to do ``command`` next, with the target flag if one was given (never a key)."""
        extra = ""
        if self.common.app and self.resolved is not None and self.resolved.is_app:
            extra += f" --app {self.resolved.target.url}"  # type: ignore[union-attr]
        if self.common.config:
            extra += f" --config {self.common.config}"
        return f"arr-sessions {command}{extra}"


def _logging(verbose: bool, err: Console) -> None:
    """Without --verbose nothing is logged (the live display would be torn); with it, every call and retry: to
    ARR (``arr_core``, with its MS-CV) and to the app (``arr_cli.app``: method, path, status, time)."""
    for name in ("arr_core", "arr_cli", "azure", "httpx"):
        logging.getLogger(name).setLevel(logging.INFO if verbose and name.startswith("arr_")
                                         else logging.CRITICAL + 1)
    if verbose:
        logging.basicConfig(level=logging.WARNING, handlers=[render.LogLines(err)])
    else:
        logging.getLogger().addHandler(logging.NullHandler())


def _execute(run: Run, command: str, work: Callable[[Target, Run], Awaitable[int]], *,
             needs_app: bool = False) -> None:
    """Resolve the target, run ``work`` in one event loop, and exit with its code or the error's."""
    _logging(run.common.verbose, run.err)
    try:
        run.resolved = resolve(run.common.flags(), command=command, needs_app_target=needs_app)
        if run.common.verbose:
            run.err.print(Text(f"Target: {run.resolved.target.describe()}", style="dim"))
        code = asyncio.run(_with_target(run, work))
    except KeyboardInterrupt:
        _interrupted(run)
        raise typer.Exit(INTERRUPTED) from None
    except Exception as exc:
        problem = as_cli_error(exc)
        if problem is None:
            raise
        render.error(run.err, problem)
        raise typer.Exit(problem.exit_code) from None
    raise typer.Exit(code)


async def _with_target(run: Run, work: Callable[[Target, Run], Awaitable[int]]) -> int:
    assert run.resolved is not None
    target = open_target(run.resolved)
    try:
        return await work(target, run)
    finally:
        await target.aclose()


def _interrupted(run: Run) -> None:
    if run.session_id:
        run.err.print(Text.assemble("\nInterrupted. ", (f"Session {run.session_id}", "bold"), " keeps running "
                                    "(it is billed). Stop it with: ", (run.again(f"stop {run.session_id}"), "bold")))
    elif run.started_create:
        run.err.print("\nInterrupted while the session was being created: it may exist. "
                      f"See {run.again('list')}")
    else:
        run.err.print("\nInterrupted.")


def _session_id(value: str, what: str = "ID") -> str:
    from arr_core.arr.validation import SESSION_ID_PATTERN

    if not SESSION_ID_PATTERN.fullmatch(value):
        raise UsageError(f"{what} must be 1-256 letters, digits, '-' or '_', not {value!r}")
    return value


# -- showing results -------------------------------------------------------------------------------------------

def _show_session(run: Run, session: Session, headline: Text | str | None = None) -> None:
    if run.json:
        render.print_json(session)
        return
    if headline:
        run.out.print(headline if isinstance(headline, Text) else Text(headline))
    run.out.print(render.session_details(session))


async def _wait(target: Target, run: Run, session_id: str, *, first: Poll | None, poll: float,
                timeout: str | None, started: float) -> int:
    limit = duration_seconds(timeout, what="--timeout") if timeout else None
    run.session_id = session_id
    with render.progress(run.err) as reporter:
        outcome = await wait_for_session(target, session_id, reporter, first=first.session if first else None,
                                         first_retry_after=first.retry_after if first else None,
                                         poll_seconds=poll, timeout=limit, started=started)
    return _waited(run, outcome, timeout)


def _waited(run: Run, outcome: WaitOutcome, timeout: str | None) -> int:
    session, took = outcome.session, render.clock_text(outcome.elapsed)
    sid = str(session.get("id"))
    checks = f"{outcome.checks} check{'s' if outcome.checks != 1 else ''}"
    if outcome.timed_out:
        _show_session(run, session, Text.assemble(
            ("Still ", "yellow"), render.status_text(outcome.status), f" after {took} (--timeout {timeout}): "
            "stopped waiting. The session keeps running.\n",
            "Wait again: ", (run.again(f"get {sid} --wait"), "bold"), "\nStop it:    ",
            (run.again(f"stop {sid}"), "bold")))
        return TIMED_OUT
    if outcome.ready:
        _show_session(run, session, Text.assemble(("Ready", "bold green"), f" after {took} ({checks})."))
        return OK
    error = session.get("error")
    why = printable(f": {error.get('code')}: {error.get('message')}") if isinstance(error, dict) else ""
    _show_session(run, session, Text.assemble(("Session ended ", "bold red"), render.status_text(outcome.status),
                                              f" after {took}{why}"))
    return SESSION_ENDED


# -- commands ----------------------------------------------------------------------------------------------------

WaitFlag = Annotated[bool, typer.Option("--wait", "-w", metavar="", rich_help_panel=WAIT,
                                        help="Wait until it is Ready, or has ended")]
Timeout = Annotated[str | None, typer.Option(
    "--timeout", metavar="DURATION", rich_help_panel=WAIT, show_default=False,
    help="Stop waiting after this long (90, 90s, 10m, 1h); exit 4, the session keeps running")]
PollSeconds = Annotated[float, typer.Option(
    "--poll", metavar="SECONDS", min=1.0, rich_help_panel=WAIT,
    help="Seconds between checks; never faster than the service asks (the app's Retry-After, ARR's 429)")]
SessionIdArg = Annotated[str, typer.Argument(metavar="ID", help="The session's id", show_default=False)]
RequestedBy = Annotated[str | None, typer.Option(
    "--requested-by", metavar="NAME", show_default=False,
    help="Who asks, for the history (app only) \\[default: your user name]")]
Reason = Annotated[str | None, typer.Option("--reason", show_default=False, help="Why, for the history (app only)")]


@app.command("start", epilog=EITHER_SIDE)
@with_common
def start(
    common: Common,
    wait: WaitFlag = False,
    size: Annotated[Size | None, typer.Option(
        "--size", case_sensitive=False, show_default=False,
        help="standard or premium \\[arrconfig: vmSize; default: Standard, or the app's]")] = None,
    lease: Annotated[str | None, typer.Option(
        "--lease", metavar="MINUTES|HH:MM:SS", show_default=False,
        help="Lease from Ready: minutes (90) or a time span (1:30:00) \\[arrconfig: maxLeaseTime; default: 60, or "
             "the app's]")] = None,
    session_id: Annotated[str | None, typer.Option(
        "--id", metavar="ID", show_default=False, help="Your own session id (letters, digits, - and _)")] = None,
    keep_alive: Annotated[bool, typer.Option(
        "--keep-alive", metavar="", help="Exempt from the app's nightly shutdown (app only; change it later with "
                                         "`keep-alive`)")] = False,
    reason: Reason = None,
    requested_by: RequestedBy = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", metavar="KEY=VALUE", show_default=False, help="A label kept in the history; repeatable "
        "(app only)")] = None,
    timeout: Timeout = None,
    poll: PollSeconds = DEFAULT_POLL_SECONDS,
) -> None:
    """Start a session; with --wait, wait until it is Ready (a live display; Ctrl-C leaves it running)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        assert run.resolved is not None
        labels = _labels(label or [])
        request = StartRequest(
            session_id=_session_id(session_id, "--id") if session_id else None,
            size=size_name(size.value, what="--size") if size else run.resolved.size,
            lease_minutes=lease_minutes(lease, what="--lease") if lease else run.resolved.lease_minutes,
            requested_by=_requester(target, requested_by),
            reason=reason, labels=labels or None, keep_alive=True if keep_alive else None)
        if timeout:
            duration_seconds(timeout, what="--timeout")  # refuse a bad flag before anything starts
        started = time.monotonic()
        run.started_create, run.session_id = True, request.session_id
        answer = await target.start(request)
        run.session_id = str(answer.session["id"])
        if not wait:
            _show_session(run, answer.session, Text.assemble(
                "Started ", (run.session_id, "bold"), ". Wait for it with ",
                (run.again(f"get {run.session_id} --wait"), "bold")))
            return OK
        return await _wait(target, run, run.session_id, first=answer, poll=poll, timeout=timeout, started=started)

    _execute(run, "start", work)


def _labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--label must be KEY=VALUE, not {item!r}")
        labels[key.strip()] = value
    return labels


def _requester(target: Target, given: str | None) -> str | None:
    """Who asks, as the app records it: --requested-by, else the user name (none for ARR, which keeps no history:
    a flag given for it is refused)."""
    return given or (_user() if target.is_app else None)


def _refuse_app_only(target: Target, **flags: str | None) -> None:
    """Flags given for the history, refused before anything is sent when ARR alone is the target."""
    if not target.is_app:
        for name, value in flags.items():
            if value:
                raise app_only(f"--{name.replace('_', '-')}")


def _user() -> str | None:
    try:
        return getpass.getuser() or None
    except (KeyError, OSError):  # no name for this uid (a container)
        return None


@app.command("get", epilog=EITHER_SIDE)
@with_common
def get(common: Common, session_id: SessionIdArg, wait: WaitFlag = False, timeout: Timeout = None,
        poll: PollSeconds = DEFAULT_POLL_SECONDS) -> None:
    """Show a session; with --wait, wait until it is Ready or has ended."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        sid = _session_id(session_id)
        if wait:
            if timeout:
                duration_seconds(timeout, what="--timeout")
            return await _wait(target, run, sid, first=None, poll=poll, timeout=timeout, started=time.monotonic())
        _show_session(run, await target.get(sid))
        return OK

    _execute(run, "get", work)


@app.command("list", epilog=EITHER_SIDE)
@with_common
def list_(common: Common) -> None:
    """List the active sessions (Starting and Ready: ARR lists no others)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        body = await target.list()
        if run.json:
            render.print_json(body)
            return OK
        sessions = body.get("sessions") or []
        if not sessions:
            run.out.print("No active sessions.")
        else:
            run.out.print(render.sessions_table(sessions))
        if body.get("history") == "unavailable":
            run.err.print(Text("The app's history did not answer: who and why are missing.", style="yellow"))
        return OK

    _execute(run, "list", work)


@app.command("extend", epilog=EITHER_SIDE)
@with_common
def extend(
    common: Common,
    session_id: SessionIdArg,
    lease: Annotated[str | None, typer.Option(
        "--lease", metavar="MINUTES|HH:MM:SS", show_default=False,
        help="The new total lease, counted from Ready (ARR wants it larger than now)")] = None,
    by: Annotated[int | None, typer.Option("--by", metavar="MINUTES", min=1, show_default=False,
                                           help="Minutes to add to the lease")] = None,
    reason: Reason = None,
    requested_by: RequestedBy = None,
) -> None:
    """Extend a session's lease: a new total (--lease N) or more minutes (--by N)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        if (lease is None) == (by is None):
            raise UsageError("give exactly one of --lease N (the new total) and --by N (minutes to add)")
        sid = _session_id(session_id)
        total = lease_minutes(lease, what="--lease") if lease is not None else None
        if total == 0:
            raise UsageError("--lease must be more than 0 minutes")
        _refuse_app_only(target, reason=reason, requested_by=requested_by)
        session = await target.extend(sid, lease_minutes=total, by_minutes=by, reason=reason,
                                      requested_by=_requester(target, requested_by))
        _show_session(run, session, Text.assemble("Lease of ", (sid, "bold"),
                                                  f" is now {session.get('leaseMinutes')} minutes."))
        return OK

    _execute(run, "extend", work)


@app.command("stop", epilog=EITHER_SIDE)
@with_common
def stop(common: Common, session_id: SessionIdArg, reason: Reason = None, requested_by: RequestedBy = None) -> None:
    """Stop a session: billing ends. A stop cannot be undone; a session that has already ended is left as it is
    (exit 0)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        sid = _session_id(session_id)
        _refuse_app_only(target, reason=reason, requested_by=requested_by)
        current = await target.get(sid)
        if current.get("status") in TERMINAL:
            ended = f" at {render.when(current['endedAt'])}" if current.get("endedAt") else ""
            _show_session(run, current, Text.assemble(
                "Session ", (sid, "bold"), " had already ended: ", render.status_text(current.get("status")),
                f"{ended}. Nothing to stop."))
            return OK
        session = await target.stop(sid, reason=reason, requested_by=_requester(target, requested_by))
        _show_session(run, session, Text.assemble("Stopped ", (sid, "bold"), "."))
        return OK

    _execute(run, "stop", work)


@app.command("keep-alive", epilog=EITHER_SIDE)
@with_common
def keep_alive(
    common: Common,
    session_id: SessionIdArg,
    off: Annotated[bool, typer.Option("--off", metavar="", help="Hand it back to the nightly shutdown")] = False,
    reason: Reason = None,
    requested_by: RequestedBy = None,
) -> None:
    """Keep a running session out of the app's nightly shutdown, or (--off) hand it back to it (app only)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        sid = _session_id(session_id)
        session = await target.keep_alive(sid, not off, reason=reason,  # type: ignore[attr-defined]
                                          requested_by=_requester(target, requested_by))
        if session.get("keepAlive"):
            headline = Text.assemble("Session ", (sid, "bold"), " is kept alive: the nightly shutdown leaves it "
                                     "running (its lease still ends it).")
        else:
            headline = Text.assemble("Session ", (sid, "bold"), " is no longer kept alive: the nightly shutdown "
                                     "stops it.")
        _show_session(run, session, headline)
        return OK

    _execute(run, "keep-alive", work, needs_app=True)


def _instant(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{what} must be a date or time in ISO 8601 (2026-11-01 or 2026-11-01T08:00:00Z), "
                         f"not {value!r}") from None
    return value


FromOpt = Annotated[str | None, typer.Option("--from", metavar="WHEN", show_default=False,
                                             help="ISO 8601 date or time \\[default: the app's: 7 or 30 days ago]")]
ToOpt = Annotated[str | None, typer.Option("--to", metavar="WHEN", show_default=False,
                                           help="ISO 8601 date or time \\[default: now]")]


@app.command("history", epilog=EITHER_SIDE)
@with_common
def history(
    common: Common,
    since: FromOpt = None,
    until: ToOpt = None,
    requested_by: Annotated[str | None, typer.Option("--requested-by", metavar="NAME", show_default=False,
                                                     help="Only sessions this caller asked for")] = None,
    size: Annotated[Size | None, typer.Option("--size", case_sensitive=False, show_default=False,
                                              help="Only this size")] = None,
    status: Annotated[str | None, typer.Option("--status", metavar="LIST", show_default=False,
                                               help="Only these statuses, comma-separated (Ready,Stopped)")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000, help="At most this many sessions")] = 100,
) -> None:
    """Past and present sessions from the app's history (app only)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        params = {k: v for k, v in {
            "from": _instant(since, "--from"), "to": _instant(until, "--to"), "requestedBy": requested_by,
            "size": size_name(size.value, what="--size") if size else None, "status": status}.items() if v}
        body = await target.history(params, limit)  # type: ignore[attr-defined]
        if run.json:
            render.print_json(body)
            return OK
        sessions = body["sessions"]
        if not sessions:
            run.out.print("No sessions in that time.")
        else:
            run.out.print(render.sessions_table(sessions, ended=True))
        if body.get("nextLink"):
            run.err.print(Text(f"More sessions than --limit {limit}: raise it, or narrow --from/--to.", style="dim"))
        return OK

    _execute(run, "history", work, needs_app=True)


@app.command("usage", epilog=EITHER_SIDE)
@with_common
def usage(
    common: Common,
    by: Annotated[GroupBy, typer.Option("--by", help="Group by day, size or requestedBy")] = GroupBy.day,
    since: FromOpt = None,
    until: ToOpt = None,
) -> None:
    """Billed minutes and estimated cost from the app's history (app only)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        params = {k: v for k, v in {"groupBy": by.value, "from": _instant(since, "--from"),
                                    "to": _instant(until, "--to")}.items() if v}
        body = await target.usage(params)  # type: ignore[attr-defined]
        if run.json:
            render.print_json(body)
        else:
            run.out.print(render.usage_table(body, by.value))
        return OK

    _execute(run, "usage", work, needs_app=True)


@app.command("cleanup", epilog=EITHER_SIDE)
@with_common
def cleanup(
    common: Common,
    dry_run: Annotated[bool, typer.Option("--dry-run", metavar="", help="Decide, but stop nothing")] = False,
    mode: Annotated[Mode, typer.Option("--mode", help="lease (the timer's rules) or nightly (stop every session "
                                                      "not kept alive)")] = Mode.lease,
) -> None:
    """Run the app's cleanup now: stop sessions past their lease (app only)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        body = await target.cleanup(dry_run=dry_run, mode=mode.value)  # type: ignore[attr-defined]
        if run.json:
            render.print_json(body)
            return OK
        if any(body.get(k) for k in ("stopped", "kept", "reconciled", "errors", "deferred")):
            run.out.print(render.cleanup_table(body))
        else:
            run.out.print(f"Cleanup{' (dry run)' if dry_run else ''}: no session to look at.")
        return OK

    _execute(run, "cleanup", work, needs_app=True)


@app.command("events", epilog=EITHER_SIDE)
@with_common
def events(common: Common, session_id: SessionIdArg) -> None:
    """What happened to a session, from the app's history: requested, Ready, extended, stopped ... (app only)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        body = await target.events(_session_id(session_id))  # type: ignore[attr-defined]
        if run.json:
            render.print_json(body)
        else:
            run.out.print(render.events_table(body))
        return OK

    _execute(run, "events", work, needs_app=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"arr-sessions {__version__}")
        raise typer.Exit(0)


@app.callback()
@global_options
def main_options(
    version: Annotated[bool, typer.Option("--version", metavar="", callback=_version, is_eager=True,
                                          help="Print the version and exit")] = False,
) -> None:
    """Azure Remote Rendering sessions from a terminal."""
