"""HTTP functions for sessions: start, read, wait until ready, extend, stop, list; plus health and OpenAPI.

Each function parses its input, calls :class:`arr_core.services.sessions.SessionService`, and shapes the answer for Logic
Apps and Power Automate (202 + Location + Retry-After while a session starts).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import azure.functions as func
from pydantic import BaseModel

from arr_core.api import signed_links
from arr_core.api.present import build_view
from arr_core.api.views import (
    ComponentHealth,
    ExtendSessionRequest,
    Health,
    SessionList,
    StartSessionRequest,
    StopSessionRequest,
)
from arr_core.arr.models import SessionStatus
from arr_core.errors import Misconfigured
from arr_core.services.context import get_context, load_settings

if TYPE_CHECKING:
    from arr_core.services.sessions import SessionState

from .http import (
    Api,
    absolute_url,
    app_links,
    idempotency_key,
    json_response,
    read_body,
    read_json_object,
    ready_location,
    session_id_of,
    validate,
)
from .openapi import openapi_document
from .queries import ListQuery, SignedLinkQuery, StartQuery, StopQuery, parse_query

bp = Api()
R = TypeVar("R", bound=BaseModel)


def _view(state: SessionState) -> func.HttpResponse:
    return json_response(build_view(state.session_id, state.arr, state.record, app_links()))


def _pending(state: SessionState, poll_seconds: int) -> func.HttpResponse:
    """202 with Location (the signed ready monitor) and Retry-After: Logic Apps' asynchronous pattern."""
    view = build_view(state.session_id, state.arr, state.record, app_links())
    headers = {"Location": ready_location(state.session_id), "Retry-After": str(poll_seconds)}
    return json_response(view, 202, headers=headers)


def _query_wins(from_body: R, from_query: BaseModel) -> R:
    """A request from its body, with the fields the query gives instead (for senders that cannot shape a body)."""
    return from_body.model_copy(update=from_query.model_dump(exclude_unset=True))


def _start_request(req: func.HttpRequest) -> StartSessionRequest:
    body = {} if parse_query(req, StartQuery).payload == "ignore" else read_json_object(req)
    return _query_wins(validate(StartSessionRequest, body), parse_query(req, StartSessionRequest))


def _stop_request(req: func.HttpRequest) -> StopSessionRequest:
    return _query_wins(read_body(req, StopSessionRequest), parse_query(req, StopQuery))


@bp.endpoint("StartSession", "POST", "sessions")
async def start_session(req: func.HttpRequest) -> func.HttpResponse:
    request = _start_request(req)
    key = idempotency_key(req)
    context = await get_context()
    result = await context.sessions.start(request, key)
    await context.notifier.started(result, app_links())
    return _pending(result, context.settings.poll_seconds)


@bp.endpoint("GetSession", "GET", "sessions/{id}")
async def get_session(req: func.HttpRequest) -> func.HttpResponse:
    context = await get_context()
    return _view(await context.sessions.read(session_id_of(req)))


@bp.endpoint("WaitUntilReady", "GET", "sessions/{id}/ready")
async def wait_until_ready(req: func.HttpRequest) -> func.HttpResponse:
    return await _ready_or_pending(session_id_of(req))


@bp.endpoint("WaitUntilReadySigned", "GET", "signed/sessions/{id}/ready", anonymous=True)
async def wait_until_ready_signed(req: func.HttpRequest) -> func.HttpResponse:
    """The same monitor on a link the app signed (the Location of a 202): pollers that hold no key use it."""
    session_id = session_id_of(req)
    query = parse_query(req, SignedLinkQuery)
    signed_links.check(load_settings().link_signing_keys, signed_links.signed_path(session_id), query.expires,
                       query.signature, datetime.now(UTC))
    return await _ready_or_pending(session_id)


async def _ready_or_pending(session_id: str) -> func.HttpResponse:
    context = await get_context()
    state = await context.sessions.wait_until_ready(session_id)  # SessionEnded once it has ended
    if state.status == SessionStatus.READY:
        return _view(state)
    return _pending(state, context.settings.poll_seconds)


@bp.endpoint("ExtendSession", "PATCH", "sessions/{id}")
async def extend_session(req: func.HttpRequest) -> func.HttpResponse:
    session_id = session_id_of(req)
    request = read_body(req, ExtendSessionRequest)
    context = await get_context()
    return _view(await context.sessions.extend(session_id, request))


@bp.endpoint("StopSession", "POST", "sessions/{id}/stop")
async def stop_session(req: func.HttpRequest) -> func.HttpResponse:
    session_id = session_id_of(req)
    request = _stop_request(req)
    context = await get_context()
    state = await context.sessions.stop(session_id, request.reason, actor=request.requested_by)
    await context.notifier.changed(state.record, app_links())
    return _view(state)


@bp.endpoint("ListSessions", "GET", "sessions")
async def list_sessions(req: func.HttpRequest) -> func.HttpResponse:
    statuses = parse_query(req, ListQuery).status
    context = await get_context()
    active = await context.sessions.list_active(set(statuses) if statuses else None)
    links = app_links()
    return json_response(SessionList(sessions=[build_view(s.session_id, s.arr, s.record, links) for s in active.states],
                                     history="ok" if active.history_available else "unavailable",
                                     nightly_shutdown=context.maintenance.next_nightly_shutdown()))


@bp.endpoint("Health", "GET", "health", anonymous=True)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    try:
        context = await get_context()
    except Misconfigured as exc:
        misconfigured = ComponentHealth(status="misconfigured", detail=str(exc))
        return json_response(Health(status="misconfigured", arr=misconfigured, history=misconfigured), 503)
    report = await context.sessions.health()
    return json_response(report, 200 if report.status == "ok" else 503)


@bp.endpoint("OpenApi", "GET", "openapi.json", anonymous=True)
async def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(openapi_document(absolute_url("")))
