"""Reading ARR and STS answers: correlation ids and error bodies, whatever shape they come in.

Error bodies seen from the real service: ``{"error": {"code", "message"}}``, the same with null ``details``,
``target`` and ``innerError``, an empty body (401 from the STS), and, from proxies in between, HTML or plain text.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import httpx

from ..errors import ArrError, ThrottledError, error_class_for_status
from .retries import parse_retry_after

MAX_MESSAGE_CHARS = 300


def correlation_id(response: httpx.Response) -> str | None:
    """ARR's MS-CV header: what Microsoft support needs to find a call."""
    return response.headers.get("MS-CV")


def json_body(response: httpx.Response) -> Any:
    """The JSON body, or None when it is empty, not JSON, or nested too deeply to parse (json's RecursionError)."""
    if not response.content:
        return None
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):
        return None


def _reason(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return f"HTTP {status_code}"


def error_from_response(response: httpx.Response) -> ArrError:
    """The :class:`ArrError` that an error response stands for, with ARR's code and message when it sent them."""
    status = response.status_code
    body = json_body(response)
    error = body.get("error") if isinstance(body, dict) else None
    code = message = None
    if isinstance(error, dict):
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else None
    if message is None:
        text = response.text.strip() if body is None and response.content else ""
        message = text[:MAX_MESSAGE_CHARS] if text and not text.lstrip().startswith("<") else _reason(status)
    cls = error_class_for_status(status)
    kwargs: dict[str, Any] = {"status_code": status, "code": code, "correlation_id": correlation_id(response)}
    if cls is ThrottledError:
        kwargs["retry_after"] = parse_retry_after(response.headers.get("Retry-After"))
    return cls(message, **kwargs)
