"""The commands: start, get, list, extend, stop against ARR or the app; history, usage, cleanup, events, keep-alive,
the overrides of the nightly shutdown (``override add|list|remove``), the warm pools (``pool list|claim``), the
budget and the schedules (``schedule list|add|remove``) via the app.

Each command resolves its target (:mod:`.config`), does its work in one event loop, and prints through
:mod:`.render`. Exit codes are those of :mod:`.errors`.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
         "history, usage, cleanup, events, overrides of the nightly shutdown, warm pools, budget and schedules.\n\n"
         "Goes to ARR directly (arrconfig.json of RenderingSession.ps1, ARR_* variables, or flags) or, with "
         "--app URL, through the deployed app.\n\n"
         "The Target and Output options go before or after the command: `arr-sessions -v list` and "
         "`arr-sessions list -v` are the same (given both ways, the one after the command wins).\n\n"
         "Exit codes: 0 ok (a stop of an ended session included); 1 the session ended (Error, Expired, Stopped) "
         "while waiting; 2 usage or config error (a function key missing or refused included); 3 service error "
         "(ARR's MS-CV is printed when ARR was asked); 4 --timeout ran out; 5 an answer could not be read (not JSON, "
         "of another shape, nested too deeply, larger than 16 MiB); 6 `pool claim` found the pool empty; 7 `budget`: the "
         "app has no budget; 130 Ctrl-C.",
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


# -- overrides of the nightly shutdown ---------------------------------------------------------------------------

override_app = typer.Typer(
    name="override",
    help="Overrides of the app's nightly shutdown: a session, or every session with some labels, left running by it "
         "until a time; each ends by itself (app only).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(override_app, name="override")

_DURATION = re.compile(r"\s*(\d{1,5})\s*([mhd])\s*")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def _until(value: str, now: datetime) -> datetime:
    """``--until``: a duration from now (``90m``, ``3h``, ``2d``) or an ISO 8601 date or time, UTC unless it carries
    an offset (as the app reads it); later than ``now``."""
    match = _DURATION.fullmatch(value)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        if amount == 0:
            raise UsageError(f"--until must be later than now, not {value!r}")
        return now + timedelta(**{_UNITS[unit]: amount})
    try:
        until = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(f"--until must be a duration from now (90m, 3h, 2d) or a time in ISO 8601 "
                         f"(2026-11-02T09:00, UTC unless it has an offset such as +01:00), not {value!r}") from None
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    if until <= now:
        raise UsageError(f"--until must be in the future: {value!r} is {render.when(until.isoformat())}, now is "
                         f"{render.when(now.isoformat())}")
    return until


def _override_id(value: str) -> str:
    from arr_core.domain.overrides import OVERRIDE_ID

    if not OVERRIDE_ID.fullmatch(value):
        raise UsageError(f"ID must be an override id, 'ovr-' and 12 hex digits (`arr-sessions override list` shows "
                         f"them), not {value!r}")
    return value


def _show_override(run: Run, override: dict[str, object], headline: Text) -> None:
    if run.json:
        render.print_json(override)
        return
    run.out.print(headline)
    run.out.print(render.override_details(override))


@override_app.command("add", epilog=EITHER_SIDE)
@with_common
def override_add(
    common: Common,
    until: Annotated[str, typer.Option(
        "--until", metavar="WHEN", show_default=False,
        help="When it ends by itself: a duration from now (90m, 3h, 2d) or an ISO 8601 time (2026-11-02T09:00, "
             "UTC unless it has an offset); at most the app's limit ahead (31 days)")],
    session_id: Annotated[str | None, typer.Option(
        "--session", metavar="ID", show_default=False, help="The session to keep (not with --label)")] = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", metavar="KEY=VALUE", show_default=False,
        help="Keep every session that has all these labels; repeatable (not with --session)")] = None,
    reason: Annotated[str | None, typer.Option(
        "--reason", show_default=False, help="Why, for the cleanup's report of what it kept")] = None,
    requested_by: RequestedBy = None,
) -> None:
    """Keep a session, or every session with some labels, out of the nightly shutdown until a time (app only)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        labels = _labels(label or [])
        if bool(session_id) == bool(labels):
            raise UsageError("give exactly one of --session ID and --label KEY=VALUE (repeatable)")
        end = _until(until, datetime.now(UTC))
        override = await target.add_override({  # type: ignore[attr-defined]
            "sessionId": _session_id(session_id, "--session") if session_id else None, "labels": labels or None,
            "until": end.astimezone(UTC).replace(microsecond=0).isoformat(), "reason": reason,
            "requestedBy": _requester(target, requested_by)})
        oid = str(override["id"])
        _show_override(run, override, Text.assemble(
            "Override ", (oid, "bold"), ": the nightly shutdown leaves ", render.override_scope(override),
            f" running until {render.when(override.get('until'))} (its lease still ends it).\nLift it with: ",
            (run.again(f"override remove {oid}"), "bold")))
        return OK

    _execute(run, "override", work, needs_app=True)


@override_app.command("list", epilog=EITHER_SIDE)
@with_common
def override_list(common: Common) -> None:
    """List the overrides not yet ended, the longest first (app only)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        body = await target.list_overrides()  # type: ignore[attr-defined]
        if run.json:
            render.print_json(body)
            return OK
        overrides = body.get("overrides") or []
        if overrides:
            run.out.print(render.overrides_table(overrides))
        else:
            run.out.print("No overrides: the nightly shutdown stops every session not kept alive.")
        return OK

    _execute(run, "override", work, needs_app=True)


@override_app.command("remove", epilog=EITHER_SIDE)
@with_common
def override_remove(common: Common, override_id: Annotated[str, typer.Argument(
        metavar="ID", help="The override's id (ovr-...; `arr-sessions override list` shows them)",
        show_default=False)]) -> None:
    """Lift an override now: the next nightly shutdown stops what it kept (app only)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        oid = _override_id(override_id)
        override = await target.remove_override(oid)  # type: ignore[attr-defined]
        _show_override(run, override, Text.assemble(
            "Lifted override ", (oid, "bold"), ": the next nightly shutdown stops ", render.override_scope(override),
            ", unless keepAlive or another override keeps it."))
        return OK

    _execute(run, "override", work, needs_app=True)


# -- warm pools ------------------------------------------------------------------------------------------------

pool_app = typer.Typer(
    name="pool",
    help="The app's warm pools (ARR_POOLS): sessions kept Ready during a team's hours, one handed to whoever claims "
         "it (app only).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(pool_app, name="pool")


def _pool_name(value: str) -> str:
    from .answers import POOL_NAME

    if not POOL_NAME.fullmatch(value):
        raise UsageError(f"NAME must be a pool's name, 1-31 lowercase letters, digits or '-' (`arr-sessions pool "
                         f"list` shows them), not {value!r}")
    return value


@pool_app.command("list", epilog=EITHER_SIDE)
@with_common
def pool_list(common: Common) -> None:
    """List the warm pools: open or closed, sessions Ready to claim, starting and claimed, window, cost per hour
    (app only)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        body = await target.list_pools()  # type: ignore[attr-defined]
        if run.json:
            render.print_json(body)
            return OK
        pools = body.get("pools") or []
        if pools:
            run.out.print(render.pools_table(pools))
        else:
            run.out.print("No pools: the app has no ARR_POOLS.")
        return OK

    _execute(run, "pool", work, needs_app=True)


@pool_app.command("claim", epilog=EITHER_SIDE)
@with_common
def pool_claim(
    common: Common,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The pool's name (`arr-sessions pool list` shows them)",
                                        show_default=False)],
    lease: Annotated[str | None, typer.Option(
        "--lease", metavar="MINUTES|HH:MM:SS", show_default=False,
        help="Minutes the session must still run from now (90, or 1:30:00) \\[default: the app's]")] = None,
    requested_by: Annotated[str | None, typer.Option(
        "--requested-by", metavar="NAME", show_default=False,
        help="Whose the session becomes, in history and usage \\[default: your user name]")] = None,
) -> None:
    """Claim a Ready session of a warm pool: it is yours at once (exit 6 when the pool has none Ready now). A retry
    of the claim by the command itself never takes a second session (app only)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        pool = _pool_name(name)
        minutes = lease_minutes(lease, what="--lease") if lease is not None else None
        if minutes == 0:
            raise UsageError("--lease must be more than 0 minutes")
        who = _requester(target, requested_by)
        if not who:
            raise UsageError("a claim says whose the session becomes, and no user name is known here",
                             hint="Give --requested-by NAME.")
        session = await target.claim_pool(pool, requested_by=who,  # type: ignore[attr-defined]
                                          lease_minutes=minutes)
        sid = str(session["id"])
        run.session_id = sid
        left = session.get("remainingMinutes")
        lease_left = f", {left} minutes left on its lease" if left is not None else ""
        _show_session(run, session, Text.assemble(
            "Claimed session ", (sid, "bold"), f" from pool {pool} for {printable(str(session.get('requestedBy') or who))}"
            f"{lease_left}. It is billed until it is stopped.\nStop it with: ", (run.again(f"stop {sid}"), "bold")))
        return OK

    _execute(run, "pool", work, needs_app=True)


# -- the budget ----------------------------------------------------------------------------------------------------

@app.command("budget", epilog=EITHER_SIDE)
@with_common
def budget(common: Common) -> None:
    """The app's monthly budget: spent of the amount, the thresholds crossed, whether starts are refused (exit 7
    when the app has none; app only)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        body = await target.budget()  # type: ignore[attr-defined]
        if run.json:
            render.print_json(body)
            return OK
        run.out.print(render.budget_details(body))
        return OK

    _execute(run, "budget", work, needs_app=True)


# -- schedules ------------------------------------------------------------------------------------------------------

schedule_app = typer.Typer(
    name="schedule",
    help="The app's schedules: a session Ready by a local time on some days (weekdays, or a day of each month), "
         "except on holidays (app only).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(schedule_app, name="schedule")

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_READY_BY = re.compile(r"(?:[01]\d|2[0-3]):[0-5]\d")
_NTH = {"1": 1, "first": 1, "1st": 1, "2": 2, "second": 2, "2nd": 2, "3": 3, "third": 3, "3rd": 3, "4": 4,
        "fourth": 4, "4th": 4, "last": -1, "-1": -1}
_DATE = re.compile(r"\d{4}-\d\d-\d\d")


def _weekday(word: str, what: str) -> str:
    found = [day for day in WEEKDAYS if word.strip().lower()[:3] == day.lower() and len(word.strip()) >= 3]
    if not found:
        raise UsageError(f"{what} must name weekdays (Mon, Tue, Wed, Thu, Fri, Sat, Sun), not {word.strip()!r}")
    return found[0]


def _days(value: str) -> list[str]:
    """``--days``: weekdays separated by commas, with ranges: ``Mon-Fri``, ``Mon,Wed,Fri``, ``Mon-Wed,Sat``."""
    days: set[str] = set()
    for part in value.split(","):
        first, sep, last = part.partition("-")
        if not sep:
            days.add(_weekday(first, "--days"))
            continue
        a, b = WEEKDAYS.index(_weekday(first, "--days")), WEEKDAYS.index(_weekday(last, "--days"))
        if b < a:
            raise UsageError(f"--days: a range goes from Mon towards Sun, not {part.strip()!r}")
        days.update(WEEKDAYS[a:b + 1])
    return [day for day in WEEKDAYS if day in days]


def _monthly(value: str) -> dict[str, object]:
    """``--monthly``: which weekday of each month, ``"last Fri"``, ``"2 Tue"``, ``"first Mon"``."""
    words = value.replace(":", " ").split()
    if len(words) != 2 or words[0].lower() not in _NTH:
        raise UsageError(f"--monthly must be the nth weekday of the month: 1, 2, 3, 4 or last, then the day (\"last "
                         f"Fri\", \"2 Tue\"), not {value!r}")
    return {"nth": _NTH[words[0].lower()], "weekday": _weekday(words[1], "--monthly")}


def _local_date(value: str) -> str:
    try:
        if not _DATE.fullmatch(value.strip()):
            raise ValueError
        datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(f"--except must be a local date, YYYY-MM-DD (2026-12-24), not {value!r}") from None
    return value.strip()


def _schedule_id(value: str) -> str:
    from .answers import SCHEDULE_ID

    if not SCHEDULE_ID.fullmatch(value):
        raise UsageError(f"ID must be a schedule id, 'sch-' and 12 hex digits (`arr-sessions schedule list` shows "
                         f"them), not {value!r}")
    return value


def _show_schedule(run: Run, schedule: dict[str, object], headline: Text) -> None:
    if run.json:
        render.print_json(schedule)
        return
    run.out.print(headline)
    run.out.print(render.schedule_details(schedule))


@schedule_app.command("list", epilog=EITHER_SIDE)
@with_common
def schedule_list(common: Common) -> None:
    """List the schedules, each with its next session: when it is Ready (local time) and when it is created (app
    only)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        body = await target.list_schedules()  # type: ignore[attr-defined]
        if run.json:
            render.print_json(body)
            return OK
        schedules = body.get("schedules") or []
        if schedules:
            run.out.print(render.schedules_table(schedules, body.get("timeZoneDatabase")))
        else:
            run.out.print("No schedules.")
        return OK

    _execute(run, "schedule", work, needs_app=True)


@schedule_app.command("add", epilog=EITHER_SIDE)
@with_common
def schedule_add(
    common: Common,
    ready_by: Annotated[str, typer.Option(
        "--ready-by", metavar="HH:MM", show_default=False,
        help="The local time (24 h) by which the session is Ready")],
    time_zone: Annotated[str, typer.Option(
        "--time-zone", metavar="ZONE", show_default=False,
        help="The IANA time zone of --ready-by and --except (Europe/Berlin); the app's tzdata knows it")],
    duration: Annotated[str, typer.Option(
        "--duration", metavar="MINUTES|HH:MM:SS", show_default=False,
        help="How long the session is needed from --ready-by (60, or 1:30:00)")],
    days: Annotated[str | None, typer.Option(
        "--days", metavar="DAYS", show_default=False,
        help="The weekdays it runs: Mon-Fri, Mon,Wed,Fri (not with --monthly)")] = None,
    monthly: Annotated[str | None, typer.Option(
        "--monthly", metavar="'NTH DAY'", show_default=False,
        help="The day of each month it runs: 'last Fri', '2 Tue' (1-4 or last; not with --days)")] = None,
    size: Annotated[Size | None, typer.Option(
        "--size", case_sensitive=False, show_default=False, help="standard or premium \\[default: the app's]")] = None,
    exceptions: Annotated[list[str] | None, typer.Option(
        "--except", metavar="YYYY-MM-DD", show_default=False,
        help="A local date it does not run (a holiday); repeatable")] = None,
    fallbacks: Annotated[list[Size] | None, typer.Option(
        "--fallback", metavar="SIZE", case_sensitive=False, show_default=False,
        help="A size tried next when ARR has no capacity for --size; repeatable")] = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", metavar="KEY=VALUE", show_default=False, help="A label of its sessions; repeatable")] = None,
    requested_by: Annotated[str | None, typer.Option(
        "--requested-by", metavar="NAME", show_default=False,
        help="Who its sessions are for, in history and usage \\[default: your user name]")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", metavar="", help="Keep it, but start nothing yet")] = False,
) -> None:
    """Add a schedule: a session Ready by a local time on some days. Saving it starts nothing at once (app only)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        if bool(days) == bool(monthly):
            raise UsageError("give exactly one of --days (weekdays) and --monthly (a day of each month)")
        if not _READY_BY.fullmatch(ready_by.strip()):
            raise UsageError(f"--ready-by must be a local time, HH:MM on 24 hours (09:00, 16:30), not {ready_by!r}")
        minutes = lease_minutes(duration, what="--duration")
        if minutes == 0:
            raise UsageError("--duration must be more than 0 minutes")
        body = {
            "timeZone": time_zone.strip(), "readyBy": ready_by.strip(), "durationMinutes": minutes,
            "size": size_name(size.value, what="--size") if size else None,
            "weekdays": _days(days) if days else None, "monthly": _monthly(monthly) if monthly else None,
            "exceptions": [_local_date(d) for d in exceptions] if exceptions else None,
            "fallbacks": [size_name(f.value, what="--fallback") for f in fallbacks] if fallbacks else None,
            "labels": _labels(label or []) or None, "requestedBy": _requester(target, requested_by),
            "enabled": False if disabled else None}
        schedule = await target.add_schedule(body)  # type: ignore[attr-defined]
        sid = str(schedule["id"])
        _show_schedule(run, schedule, Text.assemble(
            "Schedule ", (sid, "bold"), f": {printable(str(schedule.get('description') or ''))}. Saving it started "
            "nothing.\nRemove it with: ", (run.again(f"schedule remove {sid}"), "bold")))
        return OK

    _execute(run, "schedule", work, needs_app=True)


@schedule_app.command("remove", epilog=EITHER_SIDE)
@with_common
def schedule_remove(common: Common, schedule_id: Annotated[str, typer.Argument(
        metavar="ID", help="The schedule's id (sch-...; `arr-sessions schedule list` shows them)",
        show_default=False)]) -> None:
    """Remove a schedule: it starts nothing more; the sessions it started run on until their lease ends (app
    only)."""
    run = Run(common)

    async def work(target: Target, run: Run) -> int:
        sid = _schedule_id(schedule_id)
        schedule = await target.remove_schedule(sid)  # type: ignore[attr-defined]
        _show_schedule(run, schedule, Text.assemble(
            "Removed schedule ", (sid, "bold"), ": it starts nothing more; the sessions it started run on until their "
            "lease ends."))
        return OK

    _execute(run, "schedule", work, needs_app=True)


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
