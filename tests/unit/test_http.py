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


def all_subclasses(root: type) -> list[type]:
    out = []
    for sub in root.__subclasses__():
        out += [sub, *all_subclasses(sub)]
    return out


def request() -> func.HttpRequest:
    return func.HttpRequest("GET", "http://127.0.0.1:7071/api/sessions/x", body=b"", params={"code": "k"})


@pytest.mark.parametrize("kind", [k for k in all_subclasses(AppError) if not issubclass(k, ArrError)],
                         ids=lambda k: k.__name__)
def test_every_domain_error_has_one_answer(kind: type[AppError]) -> None:
    """Each class resolves through PROBLEMS (its own row or an ancestor's); only 'cannot serve now' is 5xx, and
    every 503/504 tells the caller when to retry."""
    answer = next(edge.PROBLEMS[k] for k in kind.__mro__ if k in edge.PROBLEMS)
    assert (answer.status >= 500) == issubclass(kind, (errors.Unavailable, errors.DeadlineExceeded))
    if answer.status in (503, 504) and kind is not errors.Misconfigured:
        assert answer.retry_after is not None


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
    refused = edge.app_problem(errors.LeaseTooLong("leaseMinutes 900 is above 480", field="leaseMinutes"))
    assert refused.status_code == 400
    assert json.loads(refused.get_body())["errors"] == [{"field": "leaseMinutes",
                                                         "message": "leaseMinutes 900 is above 480"}]
    down = edge.app_problem(errors.HistoryUnavailable("Table Storage answered 403 AuthorizationFailure"))
    body = json.loads(down.get_body())
    assert down.status_code == 503 and down.headers["Retry-After"] == "30"
    assert "AuthorizationFailure" not in body["detail"]
