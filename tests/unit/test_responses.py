"""Reading ARR and STS answers (arr_core/arr/responses.py): each status class becomes its error class, ARR's code
and message are taken when sent and replaced by the reason phrase when not, a proxy's text is cut and its HTML
never shown, and the MS-CV travels with every error."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from arr_core.arr.responses import MAX_MESSAGE_CHARS, correlation_id, error_from_response, json_body
from arr_core.arr.retries import MAX_RETRY_AFTER
from arr_core.errors import (
    ArrError,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    ServiceError,
    ThrottledError,
)


def arr_error(status: int, code: str = "Code", message: str = "message", **extra: object) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, **extra}},
                          headers={"MS-CV": f"cv.{status}"})


# -- correlation_id and json_body -------------------------------------------------------------------------------

def test_correlation_id_is_the_ms_cv_header_in_any_case_or_none() -> None:
    assert correlation_id(httpx.Response(200, headers={"MS-CV": "abc.1"})) == "abc.1"
    assert correlation_id(httpx.Response(200, headers={"ms-cv": "abc.2"})) == "abc.2"
    assert correlation_id(httpx.Response(200, headers={"X-Request-Id": "other"})) is None


@pytest.mark.parametrize(("content", "expected"), [
    (b'{"a": [1, 2]}', {"a": [1, 2]}),
    (b"[1, 2]", [1, 2]),
    (b'"text"', "text"),
    (b"null", None),
    (b"", None),
    (b"not json", None),
    (b"<html><body>502</body></html>", None),
    (b'{"truncated": ', None),
    (b"\x80\x81", None),  # not UTF-8 at all
])
def test_json_body_is_the_parsed_json_or_none(content: bytes, expected: object) -> None:
    assert json_body(httpx.Response(200, content=content)) == expected


def test_json_body_reads_a_large_nested_body() -> None:
    """No cut-off of its own: a full page of sessions (hundreds of kB) is read whole."""
    body = {"sessions": [{"id": f"s{i}", "labels": {"k": "v" * 100}} for i in range(2000)]}
    content = json.dumps(body).encode()
    assert len(content) > 200_000
    assert json_body(httpx.Response(200, content=content)) == body


# -- error_from_response -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "cls"), [
    (400, InvalidRequestError),
    (401, AuthenticationError),
    (403, AuthenticationError),
    (404, NotFoundError),
    (405, InvalidRequestError),
    (409, ConflictError),
    (410, InvalidRequestError),
    (413, InvalidRequestError),
    (422, InvalidRequestError),
    (429, ThrottledError),
    (451, InvalidRequestError),
    (499, InvalidRequestError),
    (500, ServiceError),
    (502, ServiceError),
    (503, ServiceError),
    (504, ServiceError),
    (599, ServiceError),
])
def test_each_status_becomes_its_error_class_with_arrs_code_and_message(status: int, cls: type[ArrError]) -> None:
    error = error_from_response(arr_error(status, "SomeArrCode", "what ARR said"))
    assert type(error) is cls
    assert (error.status_code, error.code, error.message) == (status, "SomeArrCode", "what ARR said")
    assert error.correlation_id == f"cv.{status}"
    assert str(error) == f"SomeArrCode: what ARR said status={status} ms-cv=cv.{status}"


@pytest.mark.parametrize(("status", "code", "message"), [
    (401, "Unauthorized", "Unauthorized"),
    (403, "Unauthorized", "Forbidden"),
    (404, "NotFound", "Not Found"),
    (409, "Conflict", "Conflict"),
    (400, "BadRequest", "Bad Request"),
    (429, "TooManyRequests", "Too Many Requests"),
    (500, "InternalServerError", "Internal Server Error"),
    (503, "InternalServerError", "Service Unavailable"),
    (599, "InternalServerError", "HTTP 599"),  # no reason phrase for it
])
def test_an_empty_body_gives_the_classes_code_and_the_reason_phrase(status: int, code: str, message: str) -> None:
    error = error_from_response(httpx.Response(status))
    assert (error.code, error.message, error.status_code) == (code, message, status)
    assert error.correlation_id is None


@pytest.mark.parametrize("body", [
    {"error": {"code": "InternalServerError", "message": "boom", "details": None, "target": None,
               "innerError": None}},
    {"error": {"code": "InternalServerError", "message": "boom"}, "unrelated": True},
])
def test_the_full_shapes_arr_sends_are_read(body: dict[str, object]) -> None:
    error = error_from_response(httpx.Response(500, json=body))
    assert (error.code, error.message) == ("InternalServerError", "boom")


@pytest.mark.parametrize(("body", "code", "message"), [
    ({"error": {"code": 7, "message": ["not", "text"]}}, "InternalServerError", "Bad Gateway"),
    ({"error": {"code": "Busy"}}, "Busy", "Bad Gateway"),
    ({"error": {"message": "only a message"}}, "InternalServerError", "only a message"),
    ({"error": "a string, not an object"}, "InternalServerError", "Bad Gateway"),
    ({"message": "no error member"}, "InternalServerError", "Bad Gateway"),
    ([{"error": {"code": "InList", "message": "in a list"}}], "InternalServerError", "Bad Gateway"),
])
def test_json_of_other_shapes_takes_only_what_is_text(body: object, code: str, message: str) -> None:
    """A code or message that is not a string is ignored, not shown as a repr; JSON that is not ARR's error shape
    gives the reason phrase, never the JSON itself."""
    error = error_from_response(httpx.Response(502, json=body))
    assert (error.code, error.message) == (code, message)


def test_a_proxys_plain_text_is_the_message_cut_to_its_limit() -> None:
    error = error_from_response(httpx.Response(502, content=b"  upstream connect error  \n"))
    assert error.message == "upstream connect error"
    long = "x" * (MAX_MESSAGE_CHARS + 500)
    error = error_from_response(httpx.Response(503, content=long.encode()))
    assert error.message == "x" * MAX_MESSAGE_CHARS
    assert MAX_MESSAGE_CHARS == 300


@pytest.mark.parametrize("content", [b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                                     b"  \n<!DOCTYPE html><html></html>", b"<?xml version='1.0'?><Error/>"])
def test_html_or_xml_is_never_the_message(content: bytes) -> None:
    error = error_from_response(httpx.Response(502, content=content))
    assert error.message == "Bad Gateway"
    assert "<" not in str(error)


def test_whitespace_only_body_gives_the_reason_phrase() -> None:
    assert error_from_response(httpx.Response(500, content=b" \r\n\t ")).message == "Internal Server Error"


def test_a_429_carries_retry_after_in_seconds_or_as_a_date() -> None:
    seconds = error_from_response(httpx.Response(429, headers={"Retry-After": "7", "MS-CV": "t.1"}))
    assert isinstance(seconds, ThrottledError)
    assert seconds.retry_after == 7.0 and seconds.correlation_id == "t.1"
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    dated = error_from_response(httpx.Response(429, headers={"Retry-After": format_datetime(when, usegmt=True)}))
    assert isinstance(dated, ThrottledError)
    assert dated.retry_after is not None and 25 <= dated.retry_after <= 30
    capped = error_from_response(httpx.Response(429, headers={"Retry-After": "999999"}))
    assert isinstance(capped, ThrottledError) and capped.retry_after == MAX_RETRY_AFTER
    for header in ({}, {"Retry-After": "soon"}, {"Retry-After": "inf"}):
        error = error_from_response(httpx.Response(429, headers=header))
        assert isinstance(error, ThrottledError) and error.retry_after is None


def test_only_a_429_has_retry_after() -> None:
    error = error_from_response(httpx.Response(503, headers={"Retry-After": "5"}))
    assert not hasattr(error, "retry_after")
