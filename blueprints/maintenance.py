"""Functions that keep sessions from being forgotten: the cleanup (timer and on demand), its overrides, history and
usage."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import azure.functions as func

from arr_core.api.present import build_view
from arr_core.api.views import (
    CleanupRuns,
    HistoryPage,
    OverrideList,
    OverrideRequest,
    OverrideView,
    SessionEvent,
    SessionEvents,
)
from arr_core.domain.overrides import OVERRIDE_ID, Override
from arr_core.errors import ArrError, CleanupRunning, DeadlineExceeded, HistoryError, OverrideNotFound
from arr_core.services.context import AppContext, get_context

from .http import Api, absolute_url, app_links, json_response, read_body, session_id_of, signed_url
from .queries import CleanupQuery, HistoryQuery, RunsQuery, UsageQuery, parse_query
from .schedules import tick_schedules

bp = Api()
log = logging.getLogger("arr_sessions.cleanup")


async def after_cleanup(context: AppContext) -> None:
    """What rides on each cleanup run (the timer's, or one asked for), best effort, each one host at a time: the
    schedules start the sessions that are due (first: their Ready-by times are fixed), and the warm pools are
    refilled, kept warm and closed; then the budget is checked (it may stop what they started)."""
    await tick_schedules(context)
    await _tend_pools(context)
    await _keep_budget(context)


async def _keep_budget(context: AppContext) -> None:
    try:
        tick = await context.budget.tick()
    except (HistoryError, DeadlineExceeded) as exc:
        log.warning("budget not checked: %s", exc)
        return
    if tick.spend is not None and (tick.announced or tick.stopped or tick.failed):
        log.info("budget: %.2f spent this month; crossed now %s; stopped %d, failed %d", tick.spend.amount,
                 ", ".join(tick.announced) or "nothing new", len(tick.stopped), len(tick.failed))


async def _tend_pools(context: AppContext) -> None:
    try:
        tick = await context.pools.tick()
    except (HistoryError, ArrError, DeadlineExceeded) as exc:
        log.warning("warm pools not tended: %s", exc)
        return
    if tick is not None and (tick.started or tick.extended or tick.stopped or tick.failed):
        log.info("warm pools: started %d, kept warm %d, stopped %d, failed %d%s", len(tick.started),
                 len(tick.extended), len(tick.stopped), len(tick.failed),
                 f" ({tick.failed[0]})" if tick.failed else "")


@bp.endpoint("RunCleanup", "POST", "cleanup")
async def run_cleanup(req: func.HttpRequest) -> func.HttpResponse:
    query = parse_query(req, CleanupQuery)
    context = await get_context()
    report = await context.maintenance.run_cleanup(dry_run=query.dry_run, mode=query.mode, links=app_links(),
                                                   signer=signed_url)
    if not query.dry_run:
        await after_cleanup(context)
    return json_response(report)


@bp.endpoint("ListHistory", "GET", "history")
async def list_history(req: func.HttpRequest) -> func.HttpResponse:
    query = parse_query(req, HistoryQuery)
    start, end = query.window(datetime.now(UTC))
    context = await get_context()
    records, token = await context.queries.history_page(
        start, end, requested_by=query.requested_by, size=query.size, statuses=set(query.status or ()) or None,
        top=query.top, token=query.continuation_token, order=query.order)
    links = app_links()
    next_link = None
    if token is not None:
        params = {k: v for k, v in req.params.items() if k not in ("code", "continuationToken")}
        params |= {"from": start.isoformat(), "to": end.isoformat(), "continuationToken": token}
        next_link = absolute_url("history", **params)
    views = [build_view(r.session_id, None, r, links) for r in records]
    return json_response(HistoryPage(sessions=views, next_link=next_link))


@bp.endpoint("GetUsage", "GET", "usage")
async def get_usage(req: func.HttpRequest) -> func.HttpResponse:
    query = parse_query(req, UsageQuery)
    start, end = query.window(datetime.now(UTC))
    context = await get_context()
    return json_response(await context.queries.usage(start, end, query.group_by))


@bp.function_name("lease_cleanup")
@bp.timer_trigger(schedule="%ARR_CLEANUP_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
async def lease_cleanup(timer: func.TimerRequest) -> None:
    context = await get_context()
    try:
        report = await context.maintenance.run_cleanup(links=app_links(), signer=signed_url)
    except CleanupRunning as exc:  # every instance's timer fires; one of them runs
        log.info("cleanup skipped: %s", exc)
        await after_cleanup(context)
        return
    log.info("cleanup (%s%s): stopped %d, kept %d, reconciled %d, errors %d, deferred %d", report.mode,
             ", past due" if timer.past_due else "", len(report.stopped), len(report.kept),
             len(report.reconciled), len(report.errors), len(report.deferred))
    await after_cleanup(context)


@bp.endpoint("ListCleanupRuns", "GET", "cleanup/runs")
async def list_cleanup_runs(req: func.HttpRequest) -> func.HttpResponse:
    query = parse_query(req, RunsQuery)
    context = await get_context()
    runs = await context.queries.runs(query.before or datetime.now(UTC), query.top)
    next_link = None
    if len(runs) == query.top:
        next_link = absolute_url("cleanup/runs", before=runs[-1].ran_at.isoformat(), top=str(query.top))
    return json_response(CleanupRuns(runs=runs, next_link=next_link))


@bp.endpoint("ListSessionEvents", "GET", "sessions/{id}/events")
async def list_session_events(req: func.HttpRequest) -> func.HttpResponse:
    session_id = session_id_of(req)
    context = await get_context()
    events = [SessionEvent(seq=seq, type=e.type, at=e.at, from_status=e.from_status, to_status=e.to_status,
                           actor=e.actor, detail=e.detail) for seq, e in await context.queries.events(session_id)]
    return json_response(SessionEvents(session_id=session_id, events=events))


# -- overrides of the nightly shutdown ---------------------------------------------------------------------------

def _override_view(override: Override) -> OverrideView:
    return OverrideView(id=override.id, session_id=override.session_id, labels=override.labels or None,
                        until=override.until, reason=override.reason, requested_by=override.requested_by,
                        created_at=override.created_at)


@bp.endpoint("AddOverride", "POST", "overrides")
async def add_override(req: func.HttpRequest) -> func.HttpResponse:
    request = read_body(req, OverrideRequest)
    context = await get_context()
    override = await context.maintenance.add_override(request)
    return json_response(_override_view(override), 201,
                         headers={"Location": absolute_url(f"overrides/{override.id}")})


@bp.endpoint("ListOverrides", "GET", "overrides")
async def list_overrides(req: func.HttpRequest) -> func.HttpResponse:
    context = await get_context()
    return json_response(OverrideList(overrides=[_override_view(o) for o in await context.maintenance.list_overrides()]))


@bp.endpoint("RemoveOverride", "DELETE", "overrides/{id}")
async def remove_override(req: func.HttpRequest) -> func.HttpResponse:
    override_id = req.route_params.get("id", "")
    if not OVERRIDE_ID.fullmatch(override_id):
        raise OverrideNotFound(f"no override {override_id[:64]!r}", field="id")
    context = await get_context()
    return json_response(_override_view(await context.maintenance.remove_override(override_id)))
