"""Schedules ("Ready by T", issue 21): their CRUD over HTTP, and their tick, which rides on each cleanup run
(:func:`tick_schedules`, called by :mod:`blueprints.maintenance`)."""

from __future__ import annotations

import logging
from datetime import timedelta

import azure.functions as func

from arr_core.api.views import WEEKDAYS, MonthlyDay, NextOccurrence, ScheduleList, ScheduleRequest, ScheduleView
from arr_core.domain.schedules import SCHEDULE_ID, TZ_DATABASE, create_at
from arr_core.errors import AppError, ScheduleNotFound
from arr_core.services.context import AppContext, get_context
from arr_core.services.schedules import Planned, session_id_for

from .http import Api, absolute_url, json_response, read_body

bp = Api()
log = logging.getLogger("arr_sessions.schedules")


async def tick_schedules(context: AppContext) -> None:
    """Start the scheduled sessions that are due, best effort: a failure is logged, and what runs after the cleanup
    goes on. One line in the log when it started, fell back, skipped or failed anything."""
    try:
        report = await context.schedules.tick()
    except AppError as exc:  # storage or ARR trouble: the next run tries again, within the grace
        log.warning("schedules not ticked: %s", exc)
        return
    except Exception:  # a bug must not stop the cleanup's other work
        log.exception("schedules not ticked")
        return
    if report.started or report.fell_back or report.skipped or report.errors:  # not for "already" alone
        log.info("%s", report.summary())


def schedule_view(planned: Planned) -> ScheduleView:
    schedule, occurrence = planned.schedule, planned.next
    upcoming = None
    if occurrence is not None:
        tz = schedule.tz
        upcoming = NextOccurrence(local_date=occurrence.local_date, ready_by=occurrence.ready_by.astimezone(tz),
                                  create_at=create_at(occurrence, planned.lead).astimezone(tz),
                                  lead_minutes=round(planned.lead / timedelta(minutes=1), 2),
                                  session_id=session_id_for(occurrence))
    monthly = schedule.monthly
    return ScheduleView(
        id=schedule.id, description=schedule.describe(), time_zone=schedule.time_zone,
        ready_by=f"{schedule.ready_by:%H:%M}", duration_minutes=schedule.duration_minutes, size=schedule.size,
        weekdays=[WEEKDAYS[d] for d in sorted(schedule.weekdays)] if monthly is None else None,
        monthly=MonthlyDay(nth=monthly.nth, weekday=WEEKDAYS[monthly.weekday]) if monthly else None,
        exceptions=sorted(schedule.exceptions), fallbacks=list(schedule.fallbacks), labels=dict(schedule.labels),
        requested_by=schedule.requested_by, enabled=schedule.enabled, created_at=schedule.created_at,
        updated_at=schedule.updated_at, next=upcoming)


def schedule_id_of(req: func.HttpRequest) -> str:
    """The ``{id}`` of a schedule route; one that cannot be a schedule's id is a 404 (as an unknown one is)."""
    schedule_id = req.route_params.get("id", "")
    if not SCHEDULE_ID.fullmatch(schedule_id):
        raise ScheduleNotFound(f"no schedule {schedule_id[:64]!r}", field="id")
    return schedule_id


async def _view(context: AppContext, schedule_id: str) -> ScheduleView:
    (planned,) = await context.schedules.plan([await context.schedules.get(schedule_id)])
    return schedule_view(planned)


@bp.endpoint("CreateSchedule", "POST", "schedules")
async def create_schedule(req: func.HttpRequest) -> func.HttpResponse:
    request = read_body(req, ScheduleRequest)
    context = await get_context()
    schedule = await context.schedules.create(request)
    (planned,) = await context.schedules.plan([schedule])
    return json_response(schedule_view(planned), 201, headers={"Location": absolute_url(f"schedules/{schedule.id}")})


@bp.endpoint("ListSchedules", "GET", "schedules")
async def list_schedules(req: func.HttpRequest) -> func.HttpResponse:
    context = await get_context()
    planned = await context.schedules.plan(await context.schedules.list())
    return json_response(ScheduleList(schedules=[schedule_view(p) for p in planned], time_zone_database=TZ_DATABASE))


@bp.endpoint("GetSchedule", "GET", "schedules/{id}")
async def get_schedule(req: func.HttpRequest) -> func.HttpResponse:
    schedule_id = schedule_id_of(req)
    context = await get_context()
    return json_response(await _view(context, schedule_id))


@bp.endpoint("ReplaceSchedule", "PUT", "schedules/{id}")
async def replace_schedule(req: func.HttpRequest) -> func.HttpResponse:
    schedule_id = schedule_id_of(req)
    request = read_body(req, ScheduleRequest)
    context = await get_context()
    schedule = await context.schedules.replace(schedule_id, request)
    (planned,) = await context.schedules.plan([schedule])
    return json_response(schedule_view(planned))


@bp.endpoint("DeleteSchedule", "DELETE", "schedules/{id}")
async def delete_schedule(req: func.HttpRequest) -> func.HttpResponse:
    schedule_id = schedule_id_of(req)
    context = await get_context()
    removed = await context.schedules.delete(schedule_id)
    return json_response(schedule_view(Planned(removed, None, timedelta(0))))
