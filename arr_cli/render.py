"""What a person sees: tables, a session's details, the live wait, errors. ``--json`` bypasses all of it.

Results go to stdout, everything else (progress, notes, errors) to stderr, so ``--json`` output can be piped and a
table can be grepped while the wait still shows. The live display is drawn only on a terminal; elsewhere (CI
logs, a pipe) the wait prints one line per change instead.

Whatever a service or a file said reaches the terminal with its control characters escaped
(:func:`~arr_cli.untrusted.printable`: ``\x1b``, ``\u202e``): each value as it becomes a cell, a row, a title or a
line, and then once more as the console writes (:class:`EscapingConsole`), so that nothing built elsewhere can slip a
raw escape sequence through. ``--json`` escapes the same characters with JSON's own escapes.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.segment import Segment
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from .errors import SERVICE, UNREADABLE, CliError
from .targets import Session
from .untrusted import json_printable, printable
from .waiting import Tick

STATUS_STYLE = {"Starting": "yellow", "Ready": "bold green", "Stopped": "dim", "Expired": "magenta",
                "Error": "bold red"}


class EscapingConsole(Console):
    """A console that writes no control character it did not make itself: its own cursor moves and styles are
    control segments, left alone; in the text, any control character but the line breaks is escaped."""

    def render(self, renderable: Any, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            yield segment if segment.control else Segment(printable(segment.text, keep="\n"), segment.style)


def console(*, stderr: bool = False) -> Console:
    """stdout for results, stderr for the rest. Off a terminal (a pipe, a file) lines are not folded at 80
    columns: a hostname or an error message is copied whole; messages on stderr are never folded. That holds whatever
    ``COLUMNS`` says: bash (``checkwinsize``, on by default) exports its terminal's width to the commands of every
    script it runs, so a table piped to ``grep`` in a script would be folded at it."""
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else 200
    return EscapingConsole(stderr=stderr, highlight=False, soft_wrap=stderr, width=width)


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout: no colour, no wrapping, whatever the terminal; every control and
    bidirectional character as a JSON escape (the same value, nothing raw on a terminal)."""
    sys.stdout.write(json_printable(json.dumps(data, indent=2, ensure_ascii=False, default=str)) + "\n")
    sys.stdout.flush()


def clock_text(seconds: float) -> str:
    """``0:07``, ``12:30``, ``1:02:03``."""
    whole = int(max(0.0, seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


SHORT = "%Y-%m-%d %H:%M"  # in tables, whose headers say UTC
SECONDS = "%Y-%m-%d %H:%M:%S"


def when(value: object, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    """An ISO 8601 instant from the API, in UTC, as ``fmt`` says; anything else as it came."""
    if not value:
        return ""
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return printable(str(value))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime(fmt)


class Trimmed:
    """``renderable`` without the spaces that pad its lines on the right (a table's cells, a left-aligned title):
    piped, a table's lines end with their last word."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in console.render_lines(self.renderable, options, pad=False):
            while line and not line[-1].control and not line[-1].text.rstrip(" "):
                line.pop()
            if line and not line[-1].control:
                last = line[-1]
                line[-1] = Segment(last.text.rstrip(" "), last.style, last.control)
            yield from line
            yield Segment.line()


def status_text(status: object) -> Text:
    return Text(printable(str(status or "?")), style=STATUS_STYLE.get(str(status), ""))


def _minutes(value: object) -> str:
    return "" if value is None else f"{value} min"


def _cells(*values: object) -> list[Text]:
    """Cells as plain text: ids, reasons and messages come from users and services, never as markup, and never
    with a control character of theirs."""
    return [value if isinstance(value, Text) else Text("" if value is None else printable(str(value)))
            for value in values]


# -- one session ---------------------------------------------------------------------------------------------------

def session_details(session: Session) -> Trimmed:
    """A session's fields, one per line, as RenderingSession.ps1 prints them (what is unknown is left out)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")

    def row(label: str, value: object) -> None:
        if value not in (None, "", {}, []):
            grid.add_row(*_cells(label, value))

    row("Session", session.get("id"))
    row("Status", status_text(session.get("status")))
    size = session.get("size") or ""
    if session.get("teraflops"):
        size = f"{size} ({session['teraflops']:g} teraflops)"
    row("Size", size)
    lease = session.get("leaseMinutes")
    if lease is not None:
        parts = [f"{lease} min"]
        if session.get("remainingMinutes") is not None:
            parts.append(f"{session['remainingMinutes']} left")
        if session.get("elapsedMinutes"):
            parts.append(f"{session['elapsedMinutes']} used")
        row("Lease", ", ".join(parts))
    if session.get("hostname"):
        row("Connect", f"{session['hostname']}:{session.get('handshakePort') or '?'}")
        if session.get("arrInspectorPort"):
            row("Inspector", f"{session['hostname']}:{session['arrInspectorPort']}")
    row("Created", when(session.get("createdAt")))
    row("Ready at", when(session.get("readyAt")))
    row("Ended at", when(session.get("endedAt")))
    row("Billed", _minutes(session.get("billedMinutes")))
    row("Requested by", session.get("requestedBy"))
    row("Reason", session.get("reason"))
    labels = session.get("labels") or {}
    row("Labels", ", ".join(f"{k}={v}" for k, v in sorted(labels.items())))
    if session.get("keepAlive"):
        row("Keep alive", "yes: the nightly shutdown leaves it running")
    error = session.get("error")
    if isinstance(error, dict):
        row("Error", Text(printable(f"{error.get('code')}: {error.get('message')}"), style="red"))
    return Trimmed(grid)


# -- lists ---------------------------------------------------------------------------------------------------------

def sessions_table(sessions: list[Session], *, title: str | None = None, ended: bool = False) -> Trimmed:
    """Sessions in rows. ``ended`` adds when each ended and what it billed (history)."""
    table = Table(title=title, title_justify="left", header_style="bold", pad_edge=False, box=None)
    table.add_column("ID", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Size", no_wrap=True)
    table.add_column("Lease", justify="right", no_wrap=True)
    if not ended:
        table.add_column("Left", justify="right", no_wrap=True)
    table.add_column("Created (UTC)", no_wrap=True)
    if ended:
        table.add_column("Ended (UTC)", no_wrap=True)
        table.add_column("Billed", justify="right", no_wrap=True)
    show_who = any(s.get("requestedBy") for s in sessions)
    if show_who:
        table.add_column("Requested by", overflow="fold")
    for s in sessions:
        cells: list[Any] = [s.get("id"), status_text(s.get("status")), s.get("size"), _minutes(s.get("leaseMinutes"))]
        if not ended:
            cells.append(_minutes(s.get("remainingMinutes")))
        cells.append(when(s.get("createdAt"), SHORT))
        if ended:
            cells += [when(s.get("endedAt"), SHORT), _minutes(s.get("billedMinutes"))]
        if show_who:
            cells.append(s.get("requestedBy"))
        table.add_row(*_cells(*cells))
    return Trimmed(table)


def usage_table(report: dict[str, Any], group_by: str) -> Trimmed:
    currency = report.get("currency") or ""
    table = Table(title=f"Usage {when(report.get('from'), SHORT)} to {when(report.get('to'), SHORT)} UTC",
                  title_justify="left",
                  header_style="bold", pad_edge=False, box=None, show_footer=True, footer_style="bold")
    total = report.get("total") or {}
    table.add_column({"day": "Day", "size": "Size", "requestedBy": "Requested by"}.get(group_by, group_by),
                     footer="Total")
    table.add_column("Sessions", justify="right", footer=str(total.get("sessions", "")))
    table.add_column("Billed minutes", justify="right", footer=str(total.get("billedMinutes", "")))
    table.add_column(f"Estimated cost ({printable(str(currency))})" if currency else "Estimated cost",
                     justify="right", footer=_cost(total.get("estimatedCost")))
    for row in report.get("rows") or []:
        table.add_row(*_cells(row.get("key"), row.get("sessions"), row.get("billedMinutes"),
                              _cost(row.get("estimatedCost"))))
    return Trimmed(table)


def _cost(value: object) -> str:
    return "n/a" if value is None else f"{float(value):.2f}"  # type: ignore[arg-type]


def cleanup_table(report: dict[str, Any]) -> Trimmed:
    mode = report.get("mode") or "lease"
    title = f"Cleanup ({printable(str(mode))}{', dry run: nothing was stopped' if report.get('dryRun') else ''})"
    table = Table(title=title, title_justify="left", header_style="bold", pad_edge=False, box=None)
    table.add_column("Outcome", no_wrap=True)
    table.add_column("Session", no_wrap=True)
    table.add_column("Why", overflow="fold")
    would = "would stop" if report.get("dryRun") else "stopped"
    for key, label, style in (("stopped", would, "yellow"), ("errors", "failed", "red"), ("kept", "kept", ""),
                              ("reconciled", "reconciled", "dim"), ("deferred", "deferred", "dim")):
        for item in report.get(key) or []:
            table.add_row(*_cells(Text(label, style=style), item.get("id"), item.get("reason")))
    return Trimmed(table)


def events_table(body: dict[str, Any]) -> Trimmed:
    table = Table(title=Text(printable(f"Events of {body.get('sessionId') or 'the session'}")), title_justify="left",
                  header_style="bold", pad_edge=False, box=None)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("At (UTC)", no_wrap=True)
    table.add_column("Event", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("By", no_wrap=True)
    table.add_column("Detail", overflow="fold")
    for event in body.get("events") or []:
        change = ""
        if event.get("toStatus"):
            change = f"{event.get('fromStatus') or '-'} -> {event['toStatus']}"
        detail = event.get("detail") or {}
        detail_text = (", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in detail.items()
                                 if v is not None) if isinstance(detail, dict) else str(detail))
        table.add_row(*_cells(event.get("seq"), when(event.get("at"), SECONDS), event.get("type"), change,
                              event.get("actor"),
                              detail_text))
    return Trimmed(table)


# -- overrides of the nightly shutdown ---------------------------------------------------------------------------

def override_scope(override: dict[str, Any]) -> str:
    """What an override keeps: ``session s1``, or ``sessions labelled team=viz, project=atrium``."""
    if override.get("sessionId"):
        return f"session {override['sessionId']}"
    labels = override.get("labels") or {}
    return "sessions labelled " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def time_left(until: object, now: datetime) -> str:
    """How long until ``until`` (an ISO 8601 instant): ``2 d 3 h``, ``11 h 58 min``, ``45 min``; ``ended`` once past;
    "" when it is no instant."""
    try:
        end = datetime.fromisoformat(str(until))
    except ValueError:
        return ""
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    minutes = int((end - now).total_seconds() // 60)
    if minutes < 0:
        return "ended"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {mins} min" if hours else f"{mins} min"


def override_details(override: dict[str, Any], now: datetime | None = None) -> Trimmed:
    """An override's fields, one per line (what is unknown is left out)."""
    now = now or datetime.now(UTC)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in (("Override", override.get("id")), ("Keeps", override_scope(override)),
                         ("Until", f"{when(override.get('until'))} ({time_left(override.get('until'), now)} left)"),
                         ("Reason", override.get("reason")), ("Requested by", override.get("requestedBy")),
                         ("Created", when(override.get("createdAt")))):
        if value not in (None, ""):
            grid.add_row(*_cells(label, value))
    return Trimmed(grid)


def overrides_table(overrides: list[dict[str, Any]], now: datetime | None = None) -> Trimmed:
    """Overrides in rows, as the app lists them (the longest first)."""
    now = now or datetime.now(UTC)
    table = Table(title="Overrides of the nightly shutdown", title_justify="left", header_style="bold",
                  pad_edge=False, box=None)
    table.add_column("ID", no_wrap=True)
    table.add_column("Keeps", overflow="fold")
    table.add_column("Until (UTC)", no_wrap=True)
    table.add_column("Left", justify="right", no_wrap=True)
    table.add_column("Requested by", overflow="fold")
    table.add_column("Reason", overflow="fold")
    for o in overrides:
        table.add_row(*_cells(o.get("id"), override_scope(o), when(o.get("until"), SHORT),
                              time_left(o.get("until"), now), o.get("requestedBy"), o.get("reason")))
    return Trimmed(table)


# -- warm pools ------------------------------------------------------------------------------------------------------

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _days_text(days: list[str]) -> str:
    """``Mon-Fri``, ``Mon, Wed, Fri``, ``every day``: runs of three or more days in a row are joined."""
    known = [d for d in DAY_NAMES if d in days]
    if len(known) == len(DAY_NAMES):
        return "every day"
    if len(known) != len(days):  # a day this CLI does not know: as the app said it
        return ", ".join(days)
    parts: list[str] = []
    run: list[str] = []
    for day in DAY_NAMES + ("",):
        if day in known:
            run.append(day)
            continue
        if len(run) >= 3:
            parts.append(f"{run[0]}-{run[-1]}")
        else:
            parts.extend(run)
        run = []
    return ", ".join(parts)


def pool_window(pool: dict[str, Any]) -> str:
    """When a pool's window is open: ``Mon-Fri 08:30-18:00 (Europe/Berlin)``; ``all day`` when it opens and closes
    at the same time (``always`` on every day), ``next day`` when it closes before it opens."""
    opens, closes = str(pool.get("opens") or "?"), str(pool.get("closes") or "?")
    days = _days_text([str(d) for d in pool.get("days") or []])
    if opens == closes:
        when_open = "always" if days == "every day" else f"{days} all day"
    else:
        when_open = f"{days} {opens}-{closes}{' next day' if closes < opens else ''}"
    zone = pool.get("timeZone")
    return f"{when_open} ({zone})" if zone else when_open


def _per_hour(amount: object, currency: object) -> str:
    if amount is None:
        return "n/a"
    return f"{float(amount):.2f} {currency or ''}".rstrip()  # type: ignore[arg-type]


def pools_table(pools: list[dict[str, Any]]) -> Trimmed:
    """Warm pools in rows, as the app lists them."""
    table = Table(title="Warm pools", title_justify="left", header_style="bold", pad_edge=False, box=None)
    table.add_column("Pool", no_wrap=True)
    table.add_column("Size", no_wrap=True)
    table.add_column("Open", no_wrap=True)
    table.add_column("Ready", justify="right", no_wrap=True)
    table.add_column("Starting", justify="right", no_wrap=True)
    table.add_column("Claimed", justify="right", no_wrap=True)
    table.add_column("Window", overflow="fold")
    table.add_column("Cost/hour", justify="right", no_wrap=True)
    for pool in pools:
        is_open = pool.get("open")
        table.add_row(*_cells(pool.get("name"), pool.get("size"),
                              Text("open", style="green") if is_open else Text("closed", style="dim"),
                              pool.get("ready"), pool.get("starting"), pool.get("claimed"), pool_window(pool),
                              _per_hour(pool.get("costPerHour"), pool.get("currency"))))
    return Trimmed(table)


# -- the budget ------------------------------------------------------------------------------------------------------

def budget_details(budget: dict[str, Any]) -> Group:
    """The month's budget: spent of the amount and the percentage, whether starts are refused, the thresholds and
    which are crossed."""
    currency = printable(str(budget.get("currency") or ""))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    month = printable(str(budget.get("month") or "this month"))
    zone = printable(str(budget.get("timeZone") or ""))
    grid.add_row(*_cells("Budget", f"{month}{f' ({zone})' if zone else ''}"))
    percent = budget.get("percent")
    share = f" ({float(percent):g}%)" if percent is not None else ""
    money = f"{float(budget['spent']):.2f} of {float(budget['amount']):.2f}" + (f" {currency}" if currency else "")
    grid.add_row(*_cells("Spent", money + share))
    hit = [t for t in budget.get("thresholds") or [] if t.get("crossed")]
    grid.add_row(*_cells("Crossed", ", ".join(f"{float(t['percent']):g}% ({t.get('action')})" for t in hit) or "none"))
    grid.add_row(*_cells("Starts", Text('refused: a start is answered 409 "Budget exceeded"', style="bold red")
                         if budget.get("refusingStarts") else "allowed"))
    unpriced = budget.get("unpricedMinutes")
    if unpriced:
        grid.add_row(*_cells("Unpriced", f"{unpriced} min of sizes without a rate (not in the spend)"))
    table = Table(title="Thresholds", title_justify="left", header_style="bold", pad_edge=False, box=None)
    table.add_column("Percent", justify="right", no_wrap=True)
    table.add_column("Action", no_wrap=True)
    table.add_column("Crossed", no_wrap=True)
    for threshold in budget.get("thresholds") or []:
        crossed = threshold.get("crossed")
        table.add_row(*_cells(f"{float(threshold['percent']):g}%", threshold.get("action"),
                              Text("yes", style="bold yellow") if crossed else "no"))
    return Group(Trimmed(grid), Trimmed(table)) if budget.get("thresholds") else Group(Trimmed(grid))


# -- schedules -------------------------------------------------------------------------------------------------------

def local_time(value: object, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An ISO 8601 time with an offset as its own wall clock says it, and the offset: ``2026-12-08 09:00 +01:00``
    (a schedule's times are in its zone); anything else as it came."""
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return printable(str(value or ""))
    offset = parsed.strftime("%z")
    return parsed.strftime(fmt) + (f" {offset[:3]}:{offset[3:]}" if offset else "")


def _next_text(schedule: dict[str, Any]) -> str:
    upcoming = schedule.get("next")
    if not upcoming:
        return "none: it is disabled" if schedule.get("enabled") is False else "none"
    created = local_time(upcoming.get("createAt"), "%H:%M")
    lead = upcoming.get("leadMinutes")
    lead_text = f", {float(lead):g} min ahead" if lead is not None else ""
    return (f"Ready by {local_time(upcoming.get('readyBy'))}: session {upcoming.get('sessionId') or '?'}, created at "
            f"{created}{lead_text}")


def schedules_table(schedules: list[dict[str, Any]], database: object = None) -> Trimmed:
    """Schedules in rows, with the next session of each: when it is Ready, in the schedule's own time zone (the
    offset said), and the time-zone database those local times come from."""
    title = "Schedules" + (f" (local times from {printable(str(database))})" if database else "")
    table = Table(title=title, title_justify="left", header_style="bold", pad_edge=False, box=None)
    table.add_column("ID", no_wrap=True)
    table.add_column("Schedule", overflow="fold")
    table.add_column("Next Ready by (local)", no_wrap=True)
    table.add_column("Time zone", no_wrap=True)
    table.add_column("Requested by", overflow="fold")
    for schedule in schedules:
        upcoming = schedule.get("next") or {}
        nxt = local_time(upcoming.get("readyBy")) if upcoming else ("disabled" if schedule.get("enabled") is False
                                                                    else "none")
        table.add_row(*_cells(schedule.get("id"), schedule.get("description"), nxt, schedule.get("timeZone"),
                              schedule.get("requestedBy")))
    return Trimmed(table)


def schedule_details(schedule: dict[str, Any]) -> Trimmed:
    """A schedule's fields, one per line (what is empty is left out)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    labels = schedule.get("labels") or {}
    for label, value in (("Schedule", schedule.get("id")), ("Runs", schedule.get("description")),
                         ("Except", ", ".join(str(d) for d in schedule.get("exceptions") or [])),
                         ("Fallbacks", ", ".join(str(f) for f in schedule.get("fallbacks") or [])),
                         ("Labels", ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))),
                         ("Requested by", schedule.get("requestedBy")),
                         ("Enabled", None if schedule.get("enabled") is not False else "no: it starts nothing"),
                         ("Next", _next_text(schedule)), ("Created", when(schedule.get("createdAt")))):
        if value not in (None, ""):
            grid.add_row(*_cells(label, value))
    return Trimmed(grid)


# -- the wait ------------------------------------------------------------------------------------------------------

class LiveProgress:
    """The wait on a terminal: a spinner, the status, the time elapsed and the next check's countdown, redrawn
    4 times a second; removed when the wait ends (the result is printed after it)."""

    def __init__(self, err: Console) -> None:
        self._spinner = Spinner("dots", style="cyan")
        self._live = Live(Group(self._spinner, Text("")), console=err, refresh_per_second=8, transient=True,
                          redirect_stdout=False, redirect_stderr=False)

    def __enter__(self) -> Self:
        self._live.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._live.__exit__(exc_type, exc, tb)

    def update(self, tick: Tick) -> None:
        line = Text.assemble(
            (printable(tick.session_id), "bold"), "  ", status_text(tick.status) if tick.status != "?" else "…", "  ",
            (clock_text(tick.elapsed), "bold"), " elapsed  ",
            "checking now" if tick.next_check_in is None else f"next check in {math.ceil(tick.next_check_in)} s",
            (f" ({tick.pace})", "dim"),
        )
        self._spinner.update(text=line)
        hint = Text("Ctrl-C stops waiting; the session keeps running.", style="dim")
        rows = [self._spinner, Text(printable(tick.note), style="yellow")] if tick.note else [self._spinner]
        self._live.update(Group(*rows, hint))


class LineProgress:
    """The wait where nothing can be redrawn (a pipe, a CI log): one line when the status or a note changes."""

    def __init__(self, err: Console) -> None:
        self._err = err
        self._last: tuple[str, str | None, str] | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *args: object) -> None:
        return None

    def update(self, tick: Tick) -> None:
        if tick.status == "?" or (tick.status, tick.note, tick.pace) == self._last:
            return
        self._last = (tick.status, tick.note, tick.pace)
        text = f"[{clock_text(tick.elapsed)}] {tick.session_id}: {tick.status} (checking {tick.pace})"
        self._err.print(printable(text + (f"; {tick.note}" if tick.note else "")), markup=False, highlight=False)


def progress(err: Console) -> LiveProgress | LineProgress:
    return LiveProgress(err) if err.is_terminal and not err.is_dumb_terminal else LineProgress(err)


# -- errors --------------------------------------------------------------------------------------------------------

def error(err: Console, problem: CliError) -> None:
    """``Error: ...``, then the hint and ARR's MS-CV on lines of their own.

    The MS-CV line comes when ARR was asked: directly (``MS-CV: none ...`` when no answer carried one), or by the
    app, whose problem document passes ARR's on. The app has no correlation id of its own to show."""
    err.print(Text.assemble(("Error: ", "bold red"), printable(problem.message, keep="\n")))
    if problem.hint:
        err.print(Text(printable(problem.hint, keep="\n"), style="dim"))
    if problem.exit_code not in (SERVICE, UNREADABLE):
        return
    cv = problem.correlation_id
    if problem.from_arr:
        err.print(Text(printable(f"MS-CV: {cv}") if cv else "MS-CV: none (no answer from ARR carried one)",
                       style="" if cv else "dim"))
    elif cv:
        err.print(Text(printable(f"MS-CV: {cv} (ARR's, passed on by the app)")))


class LogLines(logging.Handler):
    """``-v``'s log: one line per record on ``err`` (above the live display while a wait shows), ``[12:00:01]
    message``, the level named from WARNING up; never padded to the terminal's width."""

    def __init__(self, err: Console) -> None:
        super().__init__()
        self._err = err

    def emit(self, record: logging.LogRecord) -> None:
        try:
            at = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
            level = f"{record.levelname} " if record.levelno >= logging.WARNING else ""
            self._err.print(Text(printable(f"[{at}] {level}{record.getMessage()}"), style="dim"), soft_wrap=True)
        except Exception:  # noqa: BLE001 - a log line must never end the command
            self.handleError(record)
