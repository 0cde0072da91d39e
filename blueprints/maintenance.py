"""Functions that keep sessions from being forgotten: the cleanup (timer and on demand), history and usage."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import azure.functions as func

from arr_core.context import get_context
from arr_core.errors import CleanupRunning, InvalidInput
from arr_core.lifecycle import build_view
from arr_core.records import RECORD_STATUSES
from arr_core.views import HistoryPage, StartSessionRequest

from .http import absolute_url, handled, int_param, json_response, links_for, validate

bp = func.Blueprint()
log = logging.getLogger("arr_sessions.cleanup")
STATUSES = set(RECORD_STATUSES)
MAX_TOKEN_CHARS = 2048  # ours are ~300: anything longer was not issued here (and would overflow the filter)


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
        raise InvalidInput(f"{name} must be an ISO 8601 date or time from 2019 to 2200", field=name) from None
    return value


def _range(req: func.HttpRequest, default_days: int) -> tuple[datetime, datetime]:
    end = _time_param(req, "to") or datetime.now(timezone.utc)
    start = _time_param(req, "from") or end - timedelta(days=default_days)
    if start >= end:
        raise InvalidInput("from must be before to", field="from")
    if end - start > timedelta(days=400):
        raise InvalidInput("the range may span at most 400 days", field="from")
    return start, end


def _bool_param(req: func.HttpRequest, name: str) -> bool:
    raw = (req.params.get(name) or "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise InvalidInput(f"{name} must be true or false", field=name)
    return raw in ("true", "1")


@bp.function_name("RunCleanup")
@bp.route(route="cleanup", methods=["POST"])
@handled
async def run_cleanup(req: func.HttpRequest) -> func.HttpResponse:
    dry_run = _bool_param(req, "dryRun")
    mode = req.params.get("mode", "lease")
    if mode not in ("lease", "nightly"):
        raise InvalidInput("mode must be lease or nightly", field="mode")
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
        raise InvalidInput("size must be Standard or Premium", field="size")
    statuses = {s.strip() for s in req.params["status"].split(",")} if req.params.get("status") else None
    if statuses and not statuses <= STATUSES:
        raise InvalidInput("unknown status", field="status")
    requested_by = req.params.get("requestedBy")
    if requested_by is not None:
        requested_by = validate(StartSessionRequest, {"requestedBy": requested_by}).requested_by
    token = req.params.get("continuationToken")
    if token is not None and len(token) > MAX_TOKEN_CHARS:
        raise InvalidInput("the continuation token is not one this app issued", field="continuationToken")
    context = await get_context()
    records, token = await context.history.history_page(
        start, end, requested_by=requested_by, size=size, statuses=statuses, top=top, token=token)
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
        raise InvalidInput("groupBy must be day, size or requestedBy", field="groupBy")
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
