"""HTTP adaptation shared by the functions: parsing input, problem+json errors, links on the app's own URL.

Every handler is wrapped by :func:`handled`, which runs it within the request's time budget and turns every
failure into a problem+json answer. ``arr_core`` raises domain errors (one tree under ``AppError``, ARR's failures
included); :data:`PROBLEMS` is the one table that says what each becomes at the edge, and :func:`app_problem` the
one function that answers by it. Never a stack trace, never a secret.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes, urlencode, urlsplit

import azure.functions as func
from pydantic import BaseModel, ValidationError

from arr_core import deadline
from arr_core.api.signed_links import sign, signed_path
from arr_core.api.views import IDEMPOTENCY_KEY, FieldError, Problem, SessionLinks
from arr_core.arr.validation import SESSION_ID_PATTERN
from arr_core.errors import (
    AppError,
    ArrError,
    AuthenticationError,
    BodyTooLarge,
    BudgetExceeded,
    BudgetNotSet,
    CapReached,
    CleanupRunning,
    Conflict,
    ConflictError,
    DeadlineExceeded,
    HistoryConflict,
    HistoryError,
    IdempotencyKeyReused,
    InvalidInput,
    InvalidRequestError,
    LeaseMustGrow,
    LeaseTooLong,
    LinkRefused,
    LinkUsed,
    Misconfigured,
    NotFoundError,
    OverrideNotFound,
    PoolEmpty,
    PoolNotFound,
    QuotaExceeded,
    QuotaNotFound,
    Refused,
    ScheduleNotFound,
    ServiceError,
    ServiceTimeoutError,
    SessionEnded,
    SessionIdInUse,
    SessionNotFound,
    SubscriptionNotFound,
    ThrottledError,
    TransportError,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)
from arr_core.services.context import load_settings
from arr_core.services.settings import ENV_NAMES, AppSettings

log = logging.getLogger("arr_sessions.http")
MAX_BODY_BYTES = 64 * 1024
LOCAL_BASE = "http://localhost:7071"  # where `func start` serves the app when nothing says otherwise
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Answer:
    """How an error class is answered: status, title, ``Retry-After`` seconds when a retry can help (ARR's own
    wait wins when it asked for one), and the detail the caller reads when the error's own message is for the
    operator (it goes to the log).

    For ARR's failures: ``arr_error`` puts ARR's own error (its code and message) in the body; ``names_session``
    gives a start whose outcome ARR left unknown its ``sessionId`` and a ``Location`` to poll (a retry must not
    start a second session); ``hint`` tells the operator what to check. ``logged``: the error goes to the log (by
    default every 5xx; not ARR's failures, which the client logged with their MS-CV as they happened).
    """

    status: int
    title: str
    retry_after: int | None = None
    detail: str | None = None
    arr_error: bool = False
    names_session: bool = False
    hint: str | None = None
    logged: bool | None = None  # None: when the status is a 5xx


# The one place where domain errors meet HTTP. The most specific class in an error's MRO wins; for ARR's failures
# a row for the class and ARR's status (``(InvalidRequestError, 422)``; None: the client refused before sending)
# wins over the class's own.
PROBLEMS: dict[type[AppError] | tuple[type[ArrError], int | None], Answer] = {
    AppError: Answer(500, "Internal error", detail="an unexpected error occurred; it has been logged"),
    InvalidInput: Answer(400, "Invalid request"),
    BodyTooLarge: Answer(413, "Body too large"),
    UnsupportedMediaType: Answer(415, "Unsupported media type"),
    Refused: Answer(400, "Refused"),
    LeaseTooLong: Answer(400, "Lease too long"),
    LeaseMustGrow: Answer(400, "Lease must grow"),
    SessionNotFound: Answer(404, "Session not found"),
    SubscriptionNotFound: Answer(404, "Subscription not found"),
    OverrideNotFound: Answer(404, "Override not found"),
    ScheduleNotFound: Answer(404, "Schedule not found"),
    LinkRefused: Answer(403, "Link refused"),
    LinkUsed: Answer(409, "Link used already"),
    PoolEmpty: Answer(409, "Pool empty", retry_after=60),
    CapReached: Answer(409, "Cap reached"),
    QuotaExceeded: Answer(409, "Quota exceeded"),
    QuotaNotFound: Answer(404, "Quota not found"),
    BudgetExceeded: Answer(409, "Budget exceeded"),
    BudgetNotSet: Answer(404, "No budget"),
    PoolNotFound: Answer(404, "Pool not found"),
    Unauthenticated: Answer(401, "Not authenticated"),
    Conflict: Answer(409, "Conflict"),
    SessionEnded: Answer(409, "Session has ended"),
    SessionIdInUse: Answer(409, "Session id in use"),
    IdempotencyKeyReused: Answer(409, "Idempotency-Key reused"),
    CleanupRunning: Answer(409, "A cleanup is already running", retry_after=30),
    Unavailable: Answer(503, "Service unavailable", retry_after=30),
    HistoryError: Answer(503, "Session history unavailable", retry_after=30,
                         detail="Table Storage did not answer; try again later"),
    HistoryConflict: Answer(503, "Session history is busy", retry_after=5,
                            detail="too many concurrent changes to this session's history; try again"),
    Misconfigured: Answer(503, "The function app is misconfigured"),
    DeadlineExceeded: Answer(504, "The request took too long", retry_after=30),
    # ARR's failures (docs/API.md, "Status mapping of ARR failures"): its refusals keep their status, its
    # failures are ours to retry (502/503/504), and a start they leave unsettled names the session to poll.
    ArrError: Answer(502, "ARR failed", retry_after=30, arr_error=True, logged=False),  # e.g. another 4xx
    (InvalidRequestError, None): Answer(400, "Invalid request", arr_error=True),  # refused before sending
    (InvalidRequestError, 400): Answer(400, "ARR refused the request", arr_error=True),
    (InvalidRequestError, 422): Answer(422, "ARR refused the request", arr_error=True),
    AuthenticationError: Answer(502, "ARR refused this app's credentials",
                                detail="the function app's ARR credentials are not accepted; the operator must "
                                "check its settings", logged=True,
                                hint="check ARR_ACCOUNT_KEY or the managed identity's role"),
    NotFoundError: Answer(404, "Session not found", arr_error=True),
    ConflictError: Answer(409, "Conflict at ARR", arr_error=True),
    ThrottledError: Answer(503, "ARR is throttling requests", retry_after=30, arr_error=True, names_session=True,
                           detail="ARR kept answering 429; try again later", logged=False),
    ServiceError: Answer(502, "ARR failed", retry_after=30, arr_error=True, names_session=True, logged=False),
    TransportError: Answer(502, "ARR could not be reached", retry_after=30, names_session=True, logged=False),
    ServiceTimeoutError: Answer(504, "ARR did not answer in time", retry_after=30, names_session=True,
                                logged=False),
}


def answer_for(exc: AppError) -> Answer:
    """The row of :data:`PROBLEMS` for ``exc``: its own class's, else its nearest ancestor's; for ARR's failures,
    a row for the class and ARR's status first."""
    status = exc.status_code if isinstance(exc, ArrError) else None
    for kind in type(exc).__mro__:
        if isinstance(exc, ArrError) and (kind, status) in PROBLEMS:
            return PROBLEMS[(kind, status)]
        if kind in PROBLEMS:
            return PROBLEMS[kind]
    raise AssertionError("PROBLEMS has a row for AppError, the root of every error")


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

def field_errors(exc: ValidationError) -> list[tuple[str, str]]:
    errors = []
    for error in exc.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in error["loc"]) or "body"
        errors.append((location, error["msg"]))
    return errors


def parse_json(raw: str | bytes, field: str) -> Any:
    """JSON text from a body or a query parameter; a 400 naming ``field`` when it is not JSON."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{field} is not valid JSON: {exc}", field=field) from exc
    except RecursionError as exc:  # nested past Python's stack: no real request needs that
        raise InvalidInput(f"{field} is nested too deeply", field=field) from exc


def json_body(req: func.HttpRequest, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body of a JSON request: 413 over ``limit`` bytes, 415 for a type other than JSON (or ``+json``)."""
    body = req.get_body() or b""
    if len(body) > limit:
        raise BodyTooLarge(f"the body is larger than {limit} bytes", field="body")
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if body.strip() and content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType(f"the body must be JSON sent as Content-Type: application/json, not {content_type}; "
                                   "nothing was done", field="body")
    return body


def read_json_object(req: func.HttpRequest) -> dict[str, Any]:
    """The body as a JSON object ({} when empty): 413 over 64 KiB, 415 for a non-JSON type, 400 if malformed."""
    body = json_body(req)
    if not body.strip():
        return {}
    data = parse_json(body, "body")
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object", field="body")
    return data


def idempotency_key(req: func.HttpRequest) -> str | None:
    """The request's ``Idempotency-Key`` header (a start's, a claim's); a 400 naming it when malformed."""
    key = req.headers.get("idempotency-key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidInput("Idempotency-Key must be 1-255 printable ASCII characters, not starting or ending with a "
                           "space", field="Idempotency-Key")
    return key


def session_id_of(req: func.HttpRequest) -> str:
    """The ``{id}`` of a session route; a 400 naming it when it cannot be a session id."""
    session_id = req.route_params.get("id", "")
    if not SESSION_ID_PATTERN.fullmatch(session_id):
        raise InvalidInput("the session id must be 1-256 letters, digits, '-' or '_'", field="id")
    return session_id


def read_body(req: func.HttpRequest, model: type[M]) -> M:
    """The body as ``model`` (an empty body is ``{}``)."""
    return validate(model, read_json_object(req))


def validate(model: type[M], data: dict[str, Any], *, strict: bool = True) -> M:
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        errors = field_errors(exc)
        raise InvalidInput(f"invalid value for {', '.join(field for field, _ in errors)}", errors) from exc


# -- links ---------------------------------------------------------------------------------------------------------

def _settings_anyway() -> AppSettings:
    """The settings, or (while another setting is malformed: the OpenAPI document and links are served then too)
    the ones that matter here, each read alone."""
    try:
        return load_settings()
    except Misconfigured:
        readable: dict[str, str] = {}
        for field in ("public_base_url", "link_signing_key"):
            name = ENV_NAMES[field]
            try:
                AppSettings.from_env({name: os.environ.get(name, "")})
                readable[name] = os.environ.get(name, "")
            except Misconfigured:
                pass
        return AppSettings.from_env(readable)


def own_base() -> str:
    """The app's own base URL: ``ARR_PUBLIC_BASE_URL``, else ``$WEBSITE_HOSTNAME`` (Azure sets it to the app's host
    name, Core Tools and devhost to ``localhost:<port>``: http there), else Core Tools' default address.

    Never the caller's ``Host`` header nor the request's URL: a link must not point anywhere the app is not.
    """
    configured = _settings_anyway().public_base_url
    if configured:
        return configured
    hostname = os.environ.get("WEBSITE_HOSTNAME", "").strip()
    if not hostname:
        return LOCAL_BASE
    local = urlsplit(f"//{hostname}").hostname in ("localhost", "127.0.0.1", "::1")
    return f"{'http' if local else 'https'}://{hostname}"


def absolute_url(path: str, **params: str | None) -> str:
    """``/api/<path>`` on the app's own base URL. No caller's key ever: it would leak with the link."""
    query = {k: v for k, v in params.items() if v is not None}
    suffix = f"?{urlencode(query)}" if query else ""
    return f"{own_base()}/api/{path.lstrip('/')}{suffix}"


def ready_location(session_id: str) -> str:
    """Where a poller watches a session start: its signed ready link (which needs no key: Logic Apps and Power
    Automate poll it as given), or its plain ready URL when no ``ARR_LINK_SIGNING_KEY`` is set."""
    keys = _settings_anyway().link_signing_keys
    if not keys:
        return absolute_url(f"sessions/{session_id}/ready")
    path = signed_path(session_id)
    return absolute_url(path, **sign(keys, path, datetime.now(UTC)))


def signed_url(path: str, until: datetime) -> str | None:
    """``/api/<path>`` signed until ``until`` (a stop warning's links: good until the stop), on the app's own base
    URL; None when no ``ARR_LINK_SIGNING_KEY`` is set (the warning then carries no links)."""
    keys = _settings_anyway().link_signing_keys
    return absolute_url(path, **sign(keys, path, datetime.now(UTC), until)) if keys else None


def app_links() -> Callable[[str], SessionLinks]:
    """A session's links, the same for every caller and in notifications: on the app's own base URL, no key."""
    base = own_base()

    def links(session_id: str) -> SessionLinks:
        url = f"{base}/api/sessions/{session_id}"
        return SessionLinks(self_=url, ready=f"{url}/ready", stop=f"{url}/stop")

    return links


# -- errors --------------------------------------------------------------------------------------------------------

def app_problem(exc: AppError, req: func.HttpRequest) -> func.HttpResponse:
    """Any domain error, answered as :data:`PROBLEMS` says, with what the error carries: the fields at fault, the
    ended session's status, ARR's error and MS-CV, the session a start left unsettled."""
    answer = answer_for(exc)
    if answer.logged if answer.logged is not None else answer.status >= 500:
        log.error("%s: %s%s", type(exc).__name__, exc, f"; {answer.hint}" if answer.hint else "")
    detail = answer.detail or exc.message
    extra: dict[str, Any] = {"correlation_id": exc.correlation_id}  # ARR's MS-CV, where ARR's answer is the cause
    headers: dict[str, str] = {}
    retry_after = answer.retry_after
    if isinstance(exc, InvalidInput) and exc.errors:
        extra["errors"] = [FieldError(field=f, message=m) for f, m in exc.errors]
    elif isinstance(exc, Refused) and exc.field:
        extra["errors"] = [FieldError(field=exc.field, message=exc.message)]
    if isinstance(exc, SessionEnded):
        extra["session_status"] = exc.session_status
        if exc.error_code:
            extra["arr_error"] = {"code": exc.error_code, "message": exc.error_message or ""}
    if isinstance(exc, ArrError):
        if answer.arr_error:
            extra["arr_error"] = {"code": exc.code, "message": exc.message}
        if answer.names_session and exc.session_id is not None:
            extra["session_id"] = exc.session_id
            headers["Location"] = ready_location(exc.session_id)
    if isinstance(exc, ThrottledError) and exc.retry_after is not None and retry_after is not None:
        retry_after = math.ceil(exc.retry_after)  # the wait ARR asked for
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return problem(answer.status, answer.title, detail, headers=headers or None, **extra)


Handler = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]


def _request_seconds() -> float:
    """``ARR_REQUEST_TIMEOUT_SECONDS``; the default while the settings cannot be read (the answer is then a 503)."""
    try:
        return load_settings().request_timeout_seconds
    except Misconfigured:
        return deadline.REQUEST_SECONDS


def check_query_encoding(url: str) -> None:
    """Refuse a query whose percent-escapes are not UTF-8 (as a body that is not UTF-8 is refused): the host would
    hand them on as replacement characters, and history would keep those. The parameter is named."""
    for pair in urlsplit(url).query.split("&"):
        name, _, value = pair.partition("=")
        try:
            unquote_to_bytes(name.replace("+", " ")).decode("utf-8")
            unquote_to_bytes(value.replace("+", " ")).decode("utf-8")
        except UnicodeDecodeError:
            shown = unquote_to_bytes(name).decode("utf-8", "replace")[:64]
            raise InvalidInput(f"{shown} is not UTF-8 text", field=shown) from None


def handled(handler: Handler, seconds: float | None = None) -> Handler:
    """Run ``handler`` within the request's time budget (``seconds``, else the setting's) and turn every failure
    into problem+json."""

    @functools.wraps(handler)
    async def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            async with deadline.budget(seconds or _request_seconds()):
                check_query_encoding(req.url)
                return await handler(req)
        except AppError as exc:  # the one root of what arr_core raises
            return app_problem(exc, req)
        except Exception:  # a bug: logged with its trace, answered without it
            log.exception("unexpected failure in %s", handler.__name__)
            unexpected = PROBLEMS[AppError]
            return problem(unexpected.status, unexpected.title, unexpected.detail)

    return wrapper


class Api(func.Blueprint):
    """A blueprint whose HTTP functions are declared in one line: ``@bp.endpoint("GetSession", "GET",
    "sessions/{id}")`` names the function, routes it, and runs it through :func:`handled`."""

    def endpoint(self, name: str, method: str, route: str, *, anonymous: bool = False,
                 seconds: float | None = None) -> Callable[[Handler], Any]:
        auth = {"auth_level": func.AuthLevel.ANONYMOUS} if anonymous else {}

        def register(handler: Handler) -> Any:
            wrapped = handled(handler, seconds)
            return self.function_name(name)(self.route(route=route, methods=[method], **auth)(wrapped))

        return register
