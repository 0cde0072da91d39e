"""HTTP adaptation shared by the functions: parsing input, problem+json errors, absolute links that keep ``code``.

Every handler is wrapped by :func:`handled`, which turns every failure into a problem+json response with the right
status: bad input 400/413/415, ARR's failures as the contract maps them, storage down 503. Never a stack trace,
never a secret.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import azure.functions as func
from pydantic import BaseModel, ValidationError

from arr_core.errors import ArrError, ServiceTimeoutError, ThrottledError, TransportError
from arr_core.errors import CleanupRunning, HistoryError, Rejected
from arr_core.settings import SettingsError
from arr_core.views import FieldError, Problem, SessionLinks

log = logging.getLogger("arr_sessions.http")
MAX_BODY_BYTES = 64 * 1024
M = TypeVar("M", bound=BaseModel)


class BadInput(Exception):
    """The request is malformed; carries the fields at fault."""

    def __init__(self, detail: str, errors: list[FieldError] | None = None, status: int = 400,
                 title: str = "Invalid request") -> None:
        super().__init__(detail)
        self.detail, self.errors, self.status, self.title = detail, errors, status, title


def json_response(body: BaseModel | dict[str, Any], status: int = 200,
                  headers: dict[str, str] | None = None) -> func.HttpResponse:
    data = body.model_dump(mode="json", by_alias=True) if isinstance(body, BaseModel) else body
    return func.HttpResponse(json.dumps(data, separators=(",", ":")), status_code=status, headers=headers,
                             mimetype="application/json", charset="utf-8")


def problem(status: int, title: str, detail: str | None = None, *, headers: dict[str, str] | None = None,
            **extra: Any) -> func.HttpResponse:
    body = Problem(status=status, title=title, detail=detail, **extra)
    data = body.model_dump(mode="json", by_alias=True, exclude_none=True)
    return func.HttpResponse(json.dumps(data, separators=(",", ":")), status_code=status, headers=headers,
                             mimetype="application/problem+json", charset="utf-8")


# -- input ---------------------------------------------------------------------------------------------------------

def field_errors(exc: ValidationError) -> list[FieldError]:
    errors = []
    for error in exc.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in error["loc"]) or "body"
        errors.append(FieldError(field=location, message=error["msg"]))
    return errors


def read_json_object(req: func.HttpRequest) -> dict[str, Any]:
    """The body as a JSON object ({} when empty): 413 over 64 KiB, 415 for a non-JSON type, 400 if malformed."""
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        raise BadInput(f"the body is larger than {MAX_BODY_BYTES} bytes", status=413, title="Body too large")
    if not body.strip():
        return {}
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise BadInput(f"the body must be application/json, not {content_type}", status=415,
                       title="Unsupported media type")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"the body is not valid JSON: {exc}", [FieldError(field="body", message="malformed JSON")]) \
            from None
    if not isinstance(data, dict):
        raise BadInput("the body must be a JSON object", [FieldError(field="body", message="not an object")])
    return data


def validate(model: type[M], data: dict[str, Any], *, strict: bool = True) -> M:
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        errors = field_errors(exc)
        names = ", ".join(e.field for e in errors)
        raise BadInput(f"invalid value for {names}", errors) from None


def query_fields(req: func.HttpRequest, names: dict[str, str]) -> dict[str, Any]:
    """Query parameters (strings) for the given wire names; JSON objects for ``labels``."""
    out: dict[str, Any] = {}
    for wire, kind in names.items():
        if wire not in req.params:
            continue
        raw = req.params[wire]
        if kind == "object":
            try:
                out[wire] = json.loads(raw)
            except ValueError:
                raise BadInput(f"{wire} must be a JSON object", [FieldError(field=wire, message="not JSON")]) \
                    from None
        else:
            out[wire] = raw
    return out


def int_param(req: func.HttpRequest, name: str, default: int, low: int, high: int) -> int:
    raw = req.params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadInput(f"{name} must be a whole number", [FieldError(field=name, message="not a number")]) \
            from None
    if not low <= value <= high:
        raise BadInput(f"{name} must be from {low} to {high}", [FieldError(field=name, message="out of range")])
    return value


# -- links ---------------------------------------------------------------------------------------------------------

def absolute_url(req: func.HttpRequest, path: str, **params: str) -> str:
    """``/api/<path>`` on the caller's host, carrying the caller's ``code`` so that polling keeps its key."""
    parts = urlsplit(req.url)
    query = {k: v for k, v in params.items() if v is not None}
    if req.params.get("code"):
        query["code"] = req.params["code"]
    suffix = f"?{urlencode(query)}" if query else ""
    return f"{parts.scheme}://{parts.netloc}/api/{path.lstrip('/')}{suffix}"


def links_for(req: func.HttpRequest) -> Callable[[str], SessionLinks]:
    def links(session_id: str) -> SessionLinks:
        return SessionLinks(self_=absolute_url(req, f"sessions/{session_id}"),
                            ready=absolute_url(req, f"sessions/{session_id}/ready"),
                            stop=absolute_url(req, f"sessions/{session_id}/stop"))

    return links


# -- errors --------------------------------------------------------------------------------------------------------

def arr_problem(exc: ArrError) -> func.HttpResponse:
    """ARR's failure in the contract's mapping."""
    arr_error = {"code": exc.code, "message": exc.message}
    cid = exc.correlation_id
    status = exc.status_code
    if isinstance(exc, ThrottledError):
        retry_after = str(math.ceil(exc.retry_after)) if exc.retry_after is not None else "30"
        return problem(503, "ARR is throttling requests", "ARR kept answering 429; try again later",
                       headers={"Retry-After": retry_after}, arr_error=arr_error, correlation_id=cid)
    if isinstance(exc, ServiceTimeoutError):
        return problem(504, "ARR did not answer in time", exc.message, correlation_id=cid)
    if isinstance(exc, TransportError):
        return problem(502, "ARR could not be reached", exc.message, correlation_id=cid)
    if status in (401, 403):
        log.error("ARR refused our credentials (%s, MS-CV %s): check ARR_ACCOUNT_KEY or the managed identity's role",
                  status, cid)
        return problem(502, "ARR refused this app's credentials", "the function app's ARR credentials are not "
                       "accepted; the operator must check its settings", correlation_id=cid)
    if status in (400, 422, 404, 409):
        titles = {400: "ARR refused the request", 422: "ARR refused the request", 404: "Session not found",
                  409: "Conflict at ARR"}
        return problem(status, titles[status], exc.message, arr_error=arr_error, correlation_id=cid)
    return problem(502, "ARR failed", exc.message, arr_error=arr_error, correlation_id=cid)


Handler = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]


def handled(handler: Handler) -> Handler:
    """Turn every failure of ``handler`` into problem+json."""

    @functools.wraps(handler)
    async def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return await handler(req)
        except BadInput as exc:
            return problem(exc.status, exc.title, exc.detail, errors=exc.errors)
        except Rejected as exc:
            extra: dict[str, Any] = {}
            if exc.field:
                extra["errors"] = [FieldError(field=exc.field, message=exc.detail)]
            if exc.session_status:
                extra["session_status"] = exc.session_status
            if exc.arr_error is not None:
                extra["arr_error"] = {"code": exc.arr_error.code, "message": exc.arr_error.message}
            return problem(exc.status, exc.title, exc.detail, **extra)
        except ArrError as exc:
            return arr_problem(exc)
        except HistoryError as exc:
            log.error("session history unavailable: %s", exc)
            return problem(503, "Session history unavailable", "Table Storage did not answer; try again later",
                           headers={"Retry-After": "30"})
        except CleanupRunning as exc:
            return problem(409, "A cleanup is already running", f"{exc}; try again when it has finished",
                           headers={"Retry-After": "30"})
        except SettingsError as exc:
            log.error("misconfigured: %s", exc)
            return problem(503, "The function app is misconfigured", str(exc))
        except Exception:
            log.exception("unexpected failure in %s", handler.__name__)
            return problem(500, "Internal error", "an unexpected error occurred; it has been logged")

    return wrapper
