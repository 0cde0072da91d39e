"""Functions that keep sessions from being forgotten: the cleanup (timer and on demand), history and usage."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import azure.functions as func

from arr_core.context import get_context
from arr_core.lifecycle import build_view
from arr_core.continuation import InvalidToken
from arr_core.errors import CleanupRunning
from arr_core.views import FieldError, HistoryPage

from .http import BadInput, absolute_url, handled, int_param, json_response, links_for

bp = func.Blueprint()
log = logging.getLogger("arr_sessions.cleanup")
STATUSES = {"Requested", "Starting", "Ready", "Stopped", "Expired", "Error"}


EARLIEST = datetime(2019, 1, 1, tzinfo=timezone.utc)  # before ARR's first API version
LATEST = datetime(2200, 1, 1, tzinfo=timezone.utc)


def _time_param(req: func.HttpRequest, name: str) -> datetime | None:
    raw = req.params.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace(" ", "+"))
        value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        if not EARLIEST <= value <= LATEST:
            raise ValueError
    except (ValueError, OverflowError):
        raise BadInput(f"{name} must be an ISO 8601 date or time from 2019 to 2200",
                       [FieldError(field=name, message="not an ISO 8601 time in range")]) from None
    return value


def _range(req: func.HttpRequest, default_days: int) -> tuple[datetime, datetime]:
    end = _time_param(req, "to") or datetime.now(timezone.utc)
    start = _time_param(req, "from") or end - timedelta(days=default_days)
    if start >= end:
        raise BadInput("from must be before to", [FieldError(field="from", message="not before to")])
    if end - start > timedelta(days=400):
        raise BadInput("the range may span at most 400 days", [FieldError(field="from", message="range too long")])
    return start, end


def _bool_param(req: func.HttpRequest, name: str) -> bool:
    raw = (req.params.get(name) or "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise BadInput(f"{name} must be true or false", [FieldError(field=name, message="not a boolean")])
    return raw in ("true", "1")


@bp.function_name("RunCleanup")
@bp.route(route="cleanup", methods=["POST"])
@handled
async def run_cleanup(req: func.HttpRequest) -> func.HttpResponse:
    dry_run = _bool_param(req, "dryRun")
    mode = req.params.get("mode", "lease")
    if mode not in ("lease", "nightly"):
        raise BadInput("mode must be lease or nightly", [FieldError(field="mode", message="unknown mode")])
    context = await get_context()
    return json_response(await context.maintenance.run_cleanup(dry_run=dry_run, mode=mode))


@bp.function_name("ListHistory")
@bp.route(route="history", methods=["GET"])
@handled
async def list_history(req: func.HttpRequest) -> func.HttpResponse:
    start, end = _range(req, 7)
    top = int_param(req, "top", 100, 1, 1000)
    size = req.params.get("size")
    if size is not None and size not in ("Standard", "Premium"):
        raise BadInput("size must be Standard or Premium", [FieldError(field="size", message="unknown size")])
    statuses = {s.strip() for s in req.params["status"].split(",")} if req.params.get("status") else None
    if statuses and not statuses <= STATUSES:
        raise BadInput("unknown status", [FieldError(field="status", message=f"one of {sorted(STATUSES)}")])
    context = await get_context()
    try:
        records, token = await context.maintenance.history_page(
            start, end, requested_by=req.params.get("requestedBy"), size=size, statuses=statuses, top=top,
            token=req.params.get("continuationToken"))
    except InvalidToken as exc:
        raise BadInput(str(exc), [FieldError(field="continuationToken", message=str(exc))]) from None
    links = links_for(req)
    next_link = None
    if token is not None:
        params = {k: v for k, v in req.params.items() if k not in ("code", "continuationToken")}
        params |= {"from": start.isoformat(), "to": end.isoformat(), "continuationToken": token}
        next_link = absolute_url(req, "history", **params)
    views = [build_view(r.session_id, None, r, links) for r in records]
    return json_response(HistoryPage(sessions=views, next_link=next_link))


@bp.function_name("GetUsage")
@bp.route(route="usage", methods=["GET"])
@handled
async def get_usage(req: func.HttpRequest) -> func.HttpResponse:
    start, end = _range(req, 30)
    group_by = req.params.get("groupBy", "day")
    if group_by not in ("day", "size", "requestedBy"):
        raise BadInput("groupBy must be day, size or requestedBy", [FieldError(field="groupBy", message="unknown")])
    context = await get_context()
    return json_response(await context.maintenance.usage(start, end, group_by))


@bp.function_name("lease_cleanup")
@bp.timer_trigger(schedule="%ARR_CLEANUP_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
async def lease_cleanup(timer: func.TimerRequest) -> None:
    context = await get_context()
    try:
        report = await context.maintenance.run_cleanup()
    except CleanupRunning as exc:  # every instance's timer fires; one of them runs
        log.info("cleanup skipped: %s", exc)
        return
    log.info("cleanup (%s%s): stopped %d, kept %d, reconciled %d, errors %d, deferred %d", report.mode,
             ", past due" if timer.past_due else "", len(report.stopped), len(report.kept),
             len(report.reconciled), len(report.errors), len(report.deferred))
