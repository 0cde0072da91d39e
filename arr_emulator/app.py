"""The emulator's HTTP face: the Mixed Reality STS, the five ARR session operations, and a test-control API.

Status codes, headers and error bodies follow the 2021-01-01 spec and the recordings (see
``shared/reference/ARR-API-NOTES.md``). Where the real service's behaviour is unknown the choice is noted here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
from dataclasses import fields
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .state import SUPPORTED_API_VERSIONS, EmulatedSession, EmulatorState, Fault

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
NO_CACHE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}


class DropConnection(Exception):
    """Aborts a response that has started, so that the server cuts the connection mid-response."""


class _CutOffResponse(Response):
    """Starts a 200 that promises 1000 bytes, sends a few, then drops the connection, as a failing network would."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"1000"), (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"id": "trunc', "more_body": True})
        raise DropConnection


def _ms_cv() -> str:
    return base64.b64encode(secrets.token_bytes(16)).decode()[:22] + ".0"


def _headers(request: Request, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {"MS-CV": _ms_cv(), "X-Content-Type-Options": "nosniff"}
    if not request.url.path.lower().endswith("/token"):
        headers["api-supported-versions"] = ", ".join(SUPPORTED_API_VERSIONS)
    if request.method == "GET":
        headers |= NO_CACHE
    return headers | (extra or {})


def _json(request: Request, status: int, body: Any, extra: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, separators=(",", ":")).encode()
    return Response(content, status, headers=_headers(request, extra), media_type="application/json; charset=utf-8")


def _error(request: Request, status: int, code: str, message: str, extra: dict[str, str] | None = None) -> Response:
    return _json(request, status, {"error": {"code": code, "message": message}}, extra)


def _empty(request: Request, status: int, extra: dict[str, str] | None = None) -> Response:
    return Response(b"", status, headers=_headers(request, extra))


def _state(request: Request) -> EmulatorState:
    return request.app.state.emulator


async def _fault(request: Request, operation: str) -> Response | None:
    """Apply configured latency and the next scripted fault for this operation, if any."""
    state = _state(request)
    state.requests[operation] += 1
    fault = state.take_fault(operation)
    latency = state.latency_ms + (fault.latency_ms if fault else 0.0)
    if latency:
        await asyncio.sleep(latency / 1000)
    if fault is None:
        return None
    if fault.drop:
        return _CutOffResponse()
    if fault.status is None:
        return None
    extra = {"Retry-After": str(int(fault.retry_after))} if fault.retry_after is not None else None
    if fault.status == 429:
        return _empty(request, 429, extra)
    messages = {500: ("InternalServerError", "An internal server error occurred."),
                503: ("ServiceUnavailable", "The service is temporarily unavailable.")}
    code, message = messages.get(fault.status, ("Error", f"Scripted fault {fault.status}."))
    return _error(request, fault.status, code, message, extra)


def _check_api_version(request: Request) -> Response | None:
    version = request.query_params.get("api-version")
    if version is None:
        return _error(request, 400, "BadRequest", "The api-version query parameter is required.")
    if version not in SUPPORTED_API_VERSIONS:
        supported = ", ".join(SUPPORTED_API_VERSIONS)
        return _error(request, 400, "BadRequest", f"Unsupported api-version '{version}'. Supported: {supported}.")
    return None


def _authorize(request: Request, account_id: str) -> Response | None:
    """401 (with WWW-Authenticate, empty body) unless the bearer token is one the STS issued for this account."""
    auth = request.headers.get("Authorization", "")
    token = auth[7:] if auth.startswith("Bearer ") else ""
    issued_for = _state(request).token_account(token) if token else None
    if issued_for is None:
        return _empty(request, 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if issued_for != account_id:
        return _empty(request, 403)
    return None


async def _guard(request: Request, operation: str) -> Response | None:
    return (await _fault(request, operation) or _check_api_version(request)
            or _authorize(request, request.path_params["account_id"]))


async def _body(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


# -- STS ---------------------------------------------------------------------------------------------------------

async def get_token(request: Request) -> Response:
    """``GET /Accounts/{id}/token``: ``Bearer id:key``, or (when allowed) any Entra ID token, buys a 24 h token."""
    if (response := await _fault(request, "token")) is not None:
        return response
    state = _state(request)
    account_id = request.path_params["account_id"]
    auth = request.headers.get("Authorization", "")
    credential = auth[7:] if auth.startswith("Bearer ") else ""
    if not credential:
        return _empty(request, 401, {"WWW-Authenticate": "Invalid token: no bearer credential"})
    if ":" in credential:
        given_id, _, key = credential.partition(":")
        valid = given_id == account_id and state.accounts.get(account_id) == key
    else:
        valid = state.accept_aad_tokens and account_id in state.accounts and credential.count(".") == 2
    if not valid:
        return _empty(request, 401, {"WWW-Authenticate": "Invalid token: the credential was not accepted"})
    return _json(request, 200, {"AccessToken": state.issue_token(account_id)})


# -- sessions ----------------------------------------------------------------------------------------------------

def _validate_create(body: dict[str, Any] | None) -> tuple[str, str] | None:
    if body is None:
        return "BadRequest", "The request body must be a JSON object."
    lease, size = body.get("maxLeaseTimeMinutes"), body.get("size")
    if isinstance(lease, bool) or not isinstance(lease, int):
        return "BadRequest", "The maxLeaseTimeMinutes field is required and must be an integer."
    if lease < 0:
        return "BadRequest", "The maxLeaseTimeMinutes value cannot be negative."
    if lease > 1440:
        return "BadRequest", "The maxLeaseTimeMinutes value cannot be larger than 1440."
    if not isinstance(size, str) or size.lower() not in ("standard", "premium"):
        return "BadRequest", f"Can't specify this VM size: {size}"
    return None


async def create_session(request: Request) -> Response:
    if (response := await _guard(request, "create")) is not None:
        return response
    state, account_id, session_id = _state(request), request.path_params["account_id"], request.path_params["sid"]
    if not SESSION_ID.fullmatch(session_id):
        return _error(request, 400, "BadRequest", "The session id is invalid.")
    body = await _body(request)
    if (problem := _validate_create(body)) is not None:
        return _error(request, 400, *problem)
    assert body is not None
    size = "Premium" if body["size"].lower() == "premium" else "Standard"
    status, session = state.create(account_id, session_id, size, body["maxLeaseTimeMinutes"])
    if status == 409:
        return _error(request, 409, "Conflict", "A resource already exists under the given ID.")
    return _json(request, status, session.to_json(state.now()))


async def _existing(request: Request, operation: str) -> EmulatedSession | Response:
    """The addressed session, or the response that ends the request (fault, api-version, auth, 404)."""
    if (response := await _guard(request, operation)) is not None:
        return response
    session = _state(request).get(request.path_params["account_id"], request.path_params["sid"])
    return _empty(request, 404) if session is None else session


async def get_session(request: Request) -> Response:
    session = await _existing(request, "get")
    if isinstance(session, Response):
        return session
    return _json(request, 200, session.to_json(_state(request).now()))


async def update_session(request: Request) -> Response:
    session = await _existing(request, "update")
    if isinstance(session, Response):
        return session
    state = _state(request)
    body = await _body(request)
    lease = body.get("maxLeaseTimeMinutes") if body else None
    if isinstance(lease, bool) or not isinstance(lease, int):
        return _error(request, 400, "BadRequest", "The maxLeaseTimeMinutes field is required and must be an integer.")
    if lease <= session.lease_minutes or lease > 1440:
        return _error(request, 422, "UnprocessableEntity",
                      f"The maxLeaseTimeMinutes value must be larger than the current value of "
                      f"{session.lease_minutes} and at most 1440.")
    # Choice: extending an ended session is refused like a bad value (the real answer is not recorded).
    if session.status(state.now()) not in ("Starting", "Ready"):
        return _error(request, 422, "UnprocessableEntity", "The session has ended and can no longer be updated.")
    session.lease_minutes = lease
    return _json(request, 200, session.to_json(state.now()))


async def stop_session(request: Request) -> Response:
    session = await _existing(request, "stop")
    if isinstance(session, Response):
        return session
    _state(request).stop(session)  # Choice: stopping an ended session is a no-op 204.
    return _empty(request, 204)


async def list_sessions(request: Request) -> Response:
    if (response := await _guard(request, "list")) is not None:
        return response
    state = _state(request)
    account_id = request.path_params["account_id"]
    try:
        skip = int(request.query_params.get("$skip", "0"))
    except ValueError:
        return _error(request, 400, "BadRequest", "The $skip parameter must be an integer.")
    active = state.active(account_id)
    page = active[skip : skip + state.page_size]
    now = state.now()
    body: dict[str, Any] = {"sessions": [s.to_json(now) for s in page]}
    if skip + state.page_size < len(active):
        version = request.query_params["api-version"]
        base = str(request.base_url).rstrip("/")
        body["@nextLink"] = f"{base}/accounts/{account_id}/sessions?api-version={version}&$skip={skip + len(page)}"
    return _json(request, 200, body)


# -- test control ------------------------------------------------------------------------------------------------

async def control_state(request: Request) -> Response:
    return JSONResponse(_state(request).snapshot())


async def control_reset(request: Request) -> Response:
    _state(request).reset()
    return Response(status_code=204)


async def control_advance(request: Request) -> Response:
    body = await _body(request) or {}
    _state(request).advance(float(body.get("seconds", 0)))
    return JSONResponse(_state(request).snapshot() | {"sessions": None})


async def control_backdate(request: Request) -> Response:
    """Move a session's creation into the past, so that callers with a real clock see it as old."""
    body = await _body(request) or {}
    state = _state(request)
    matches = [s for (_, sid), s in state.sessions.items() if sid == request.path_params["sid"]]
    if not matches:
        return JSONResponse({"error": "no such session"}, status_code=404)
    for session in matches:
        session.created_at -= float(body.get("seconds", 0))
    return JSONResponse(matches[0].to_json(state.now()))


CONFIGURABLE = {"startupSeconds": "startup_seconds", "pageSize": "page_size", "capacity": "capacity",
                "latencyMs": "latency_ms", "acceptAadTokens": "accept_aad_tokens", "region": "region"}


async def control_config(request: Request) -> Response:
    body = await _body(request) or {}
    state = _state(request)
    for key, attr in CONFIGURABLE.items():
        if key in body:
            setattr(state, attr, body[key])
    return JSONResponse({key: getattr(state, attr) for key, attr in CONFIGURABLE.items()})


async def control_faults(request: Request) -> Response:
    """POST ``{"operations": [...], "status": 429, "retryAfter": 2, "latencyMs": 0, "drop": false, "count": 1}``;
    ``count`` -1 means until reset. DELETE clears all faults."""
    state = _state(request)
    if request.method == "DELETE":
        state.faults.clear()
        return Response(status_code=204)
    body = await _body(request) or {}
    names = {f.name for f in fields(Fault)}
    renamed = {"retryAfter": "retry_after", "latencyMs": "latency_ms"}
    kwargs = {renamed.get(k, k): v for k, v in body.items() if renamed.get(k, k) in names}
    if "operations" in kwargs:
        kwargs["operations"] = tuple(kwargs["operations"])
    state.faults.append(Fault(**kwargs))
    return JSONResponse({"faults": len(state.faults)}, status_code=201)


SESSION = "/accounts/{account_id}/sessions/{sid}"


def create_app(state: EmulatorState) -> ASGIApp:
    """The emulator as an ASGI app serving ``state``."""
    app = Starlette(routes=[
        Route("/Accounts/{account_id}/token", get_token, methods=["GET"]),
        Route("/accounts/{account_id}/token", get_token, methods=["GET"]),
        Route(SESSION + "/:stop", stop_session, methods=["POST"]),
        Route(SESSION, create_session, methods=["PUT"]),
        Route(SESSION, get_session, methods=["GET"]),
        Route(SESSION, update_session, methods=["PATCH"]),
        Route("/accounts/{account_id}/sessions", list_sessions, methods=["GET"]),
        Route("/_emulator/state", control_state, methods=["GET"]),
        Route("/_emulator/reset", control_reset, methods=["POST"]),
        Route("/_emulator/clock/advance", control_advance, methods=["POST"]),
        Route("/_emulator/config", control_config, methods=["GET", "POST"]),
        Route("/_emulator/faults", control_faults, methods=["POST", "DELETE"]),
        Route("/_emulator/sessions/{sid}/backdate", control_backdate, methods=["POST"]),
    ])
    app.state.emulator = state
    return app
