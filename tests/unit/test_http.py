"""The edge's error mapping and time budget, without a host: every domain error has one answer, and a handler
that outlives the request's budget answers 504 in time."""

from __future__ import annotations

import asyncio
import json
import time

import azure.functions as func
import pytest

import blueprints.http as edge
from arr_core import errors
from arr_core.errors import AppError, ArrError
from arr_core.services.settings import AppSettings


def all_subclasses(root: type) -> list[type]:
    out = []
    for sub in root.__subclasses__():
        out += [sub, *all_subclasses(sub)]
    return out


def request() -> func.HttpRequest:
    return func.HttpRequest("GET", "http://127.0.0.1:7071/api/sessions/x", body=b"", params={"code": "k"})


@pytest.mark.parametrize("kind", all_subclasses(AppError), ids=lambda k: k.__name__)
def test_every_domain_error_has_one_answer(kind: type[AppError]) -> None:
    """Each class resolves through PROBLEMS, ARR's failures included (its own row or an ancestor's); of the app's
    own errors only 'cannot serve now' is 5xx (ARR's rows, each: the ARR_ANSWERS below); every 503/504 tells the
    caller when to retry."""
    answer = next(edge.PROBLEMS[k] for k in kind.__mro__ if k in edge.PROBLEMS)
    if not issubclass(kind, ArrError):
        assert (answer.status >= 500) == issubclass(kind, (errors.Unavailable, errors.DeadlineExceeded))
    if answer.status in (503, 504) and kind is not errors.Misconfigured:
        assert answer.retry_after is not None


def test_arrs_failures_have_no_second_mapping() -> None:
    """The one table: ARR's failures are rows of PROBLEMS beside the app's own errors, not a second mapping."""
    rows = {key for key in edge.PROBLEMS if isinstance(key, type) and issubclass(key, ArrError)}
    assert rows == {ArrError, errors.AuthenticationError, errors.NotFoundError, errors.ConflictError,
                    errors.ThrottledError, errors.ServiceError, errors.TransportError, errors.ServiceTimeoutError}


def test_a_handler_past_its_budget_answers_504_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, nothing bounded a request: a slow dependency held it past Logic Apps' 120 s. Now the budget
    cancels it and the caller gets a 504 problem with Retry-After, within the budget."""
    monkeypatch.setattr(edge, "_request_seconds", lambda: 0.3)

    @edge.handled
    async def slow(req: func.HttpRequest) -> func.HttpResponse:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    started = time.monotonic()
    response = asyncio.run(slow(request()))
    assert time.monotonic() - started < 2
    assert response.status_code == 504 and response.headers["Retry-After"] == "30"
    assert json.loads(response.get_body())["title"] == "The request took too long"


def test_refusals_name_their_field_and_history_trouble_hides_detail() -> None:
    """A refusal names its field; a storage failure tells the caller to retry without the operator's detail."""
    refused = edge.app_problem(errors.LeaseTooLong("leaseMinutes 900 is above 480", field="leaseMinutes"), request())
    assert refused.status_code == 400
    assert json.loads(refused.get_body())["errors"] == [{"field": "leaseMinutes",
                                                         "message": "leaseMinutes 900 is above 480"}]
    down = edge.app_problem(errors.HistoryUnavailable("Table Storage answered 403 AuthorizationFailure"), request())
    body = json.loads(down.get_body())
    assert down.status_code == 503 and down.headers["Retry-After"] == "30"
    assert "AuthorizationFailure" not in body["detail"]


# -- ARR's failures: their rows of the one table --------------------------------------------------------------------

def answered(exc: AppError, monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict[str, str], dict[str, object]]:
    """What the edge answers when a handler raises ``exc``: status, the headers that matter, the problem body."""
    monkeypatch.setattr(edge, "_request_seconds", lambda: 5.0)
    monkeypatch.setattr(edge, "_settings_anyway", lambda: AppSettings(public_base_url="http://127.0.0.1:7071"))

    @edge.handled
    async def failing(req: func.HttpRequest) -> func.HttpResponse:
        raise exc

    response = asyncio.run(failing(request()))
    assert response.mimetype == "application/problem+json"
    headers = {name: response.headers[name] for name in ("Retry-After", "Location") if name in response.headers}
    return response.status_code, headers, json.loads(response.get_body())


def unsettled(exc: errors.ArrError) -> errors.ArrError:
    """``exc`` as a start raises it when ARR's answer left unknown whether the session was created."""
    exc.session_id = "s-1"
    return exc


POLL = "http://127.0.0.1:7071/api/sessions/s-1/ready"  # never the request's code=k
ARR_ANSWERS = [
    (unsettled(errors.ThrottledError("slow down", status_code=429, correlation_id="cv", retry_after=12.2)),
     503, {"Retry-After": "13", "Location": POLL},
     {"title": "ARR is throttling requests", "detail": "ARR kept answering 429; try again later",
      "arrError": {"code": "TooManyRequests", "message": "slow down"}, "correlationId": "cv", "sessionId": "s-1"}),
    (errors.ThrottledError("slow down", status_code=429), 503, {"Retry-After": "30"},
     {"title": "ARR is throttling requests", "detail": "ARR kept answering 429; try again later",
      "arrError": {"code": "TooManyRequests", "message": "slow down"}}),
    (unsettled(errors.ServiceTimeoutError("no answer within 30 s")), 504, {"Retry-After": "30", "Location": POLL},
     {"title": "ARR did not answer in time", "detail": "no answer within 30 s", "sessionId": "s-1"}),
    (unsettled(errors.TransportError("connection refused")), 502, {"Retry-After": "30", "Location": POLL},
     {"title": "ARR could not be reached", "detail": "connection refused", "sessionId": "s-1"}),
    (unsettled(errors.ServiceError("boom", status_code=500, correlation_id="cv")), 502,
     {"Retry-After": "30", "Location": POLL},
     {"title": "ARR failed", "detail": "boom", "arrError": {"code": "InternalServerError", "message": "boom"},
      "correlationId": "cv", "sessionId": "s-1"}),
    (errors.ServiceError("boom", status_code=503), 502, {"Retry-After": "30"},
     {"title": "ARR failed", "detail": "boom", "arrError": {"code": "InternalServerError", "message": "boom"}}),
    (unsettled(errors.AuthenticationError("bad key", status_code=401, correlation_id="cv")), 502, {},
     {"title": "ARR refused this app's credentials", "correlationId": "cv",
      "detail": "the function app's ARR credentials are not accepted; the operator must check its settings"}),
    (errors.AuthenticationError("no role", status_code=403), 502, {},
     {"title": "ARR refused this app's credentials",
      "detail": "the function app's ARR credentials are not accepted; the operator must check its settings"}),
    (errors.InvalidRequestError("size must be 'Standard' or 'Premium'", argument="size", code="InvalidArgument"),
     400, {}, {"title": "Invalid request", "detail": "size must be 'Standard' or 'Premium'",
               "arrError": {"code": "InvalidArgument", "message": "size must be 'Standard' or 'Premium'"}}),
    (errors.InvalidRequestError("bad lease", status_code=400, correlation_id="cv"), 400, {},
     {"title": "ARR refused the request", "detail": "bad lease", "correlationId": "cv",
      "arrError": {"code": "BadRequest", "message": "bad lease"}}),
    (errors.InvalidRequestError("unprocessable", status_code=422, code="Invalid"), 422, {},
     {"title": "ARR refused the request", "detail": "unprocessable",
      "arrError": {"code": "Invalid", "message": "unprocessable"}}),
    (errors.InvalidRequestError("Payload Too Large", status_code=413), 502, {"Retry-After": "30"},
     {"title": "ARR failed", "detail": "Payload Too Large",
      "arrError": {"code": "BadRequest", "message": "Payload Too Large"}}),
    (unsettled(errors.NotFoundError("no such session", status_code=404, correlation_id="cv")), 404, {},
     {"title": "Session not found", "detail": "no such session", "correlationId": "cv",
      "arrError": {"code": "NotFound", "message": "no such session"}}),
    (errors.ConflictError("other settings", status_code=409), 409, {},
     {"title": "Conflict at ARR", "detail": "other settings",
      "arrError": {"code": "Conflict", "message": "other settings"}}),
]


@pytest.mark.parametrize(("exc", "status", "headers", "body"), ARR_ANSWERS,
                         ids=[f"{type(exc).__name__}-{exc.status_code}-{status}" for exc, status, *_ in ARR_ANSWERS])
def test_arrs_failures_are_answered_as_the_contract_maps_them(
        exc: AppError, status: int, headers: dict[str, str], body: dict[str, object],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/API.md's "Status mapping of ARR failures", each row: ARR's refusals pass its status through, its
    failures are 502/503/504 with Retry-After, and a start ARR left unsettled names the session to poll."""
    got_status, got_headers, got_body = answered(exc, monkeypatch)
    assert (got_status, got_headers, got_body) == (status, headers, {"type": "about:blank", "status": status, **body})
