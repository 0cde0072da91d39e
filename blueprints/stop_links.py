"""The links of a stop warning, opened by a person from a phone: no function key, a page, not JSON.

    GET  /api/signed/sessions/{id}/postpone/{lease}     ConfirmPostpone      what the link will do, and a button
    POST /api/signed/sessions/{id}/postpone/{lease}     Postpone             the lease becomes {lease} minutes
    GET  /api/signed/sessions/{id}/keep-tonight/{night} ConfirmKeepTonight   what the link will do, and a button
    POST /api/signed/sessions/{id}/keep-tonight/{night} KeepTonight          exempt from {night}'s shutdown

Opening a link changes nothing: mail scanners and chat link previews open links before any person does, so the
action is a POST from the page's button. The signature covers the path (what is done, and to which session) and
the expiry (the stop the warning was about); a link changed, expired or not signed by the app is a 403 page, a
used one a 409 page, and neither changes anything (arr_core/api/signed_links.py says why each acts only once).
"""

from __future__ import annotations

import html
import logging
from datetime import UTC, date, datetime

import azure.functions as func

from arr_core.api import signed_links
from arr_core.errors import AppError, InvalidInput
from arr_core.services.context import get_context, load_settings

from .dashboard import SECURITY_HEADERS
from .http import Api, answer_for, session_id_of
from .queries import SignedLinkQuery, parse_query

bp = Api()
log = logging.getLogger("blueprints.stop_links")
LINK_ACTOR = "stop-warning link"
PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'none'")
STYLE = ("body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}"
         "button{font:inherit;padding:.6rem 1.2rem;border-radius:.4rem;border:1px solid #1f5fbf;background:#1f5fbf;"
         "color:#fff}@media (prefers-color-scheme:dark){body{background:#161616;color:#eee}}")


def page(status: int, title: str, text: str, *, button: str | None = None) -> func.HttpResponse:
    """A small page: a heading, a sentence, and a button that POSTs to this same URL (with its query)."""
    form = (f'<form method="post"><button type="submit">{html.escape(button)}</button></form>' if button else "")
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><meta name="robots" content="noindex">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body><main><h1>{html.escape(title)}"
            f"</h1><p>{html.escape(text)}</p>{form}</main></body></html>")
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store"}
    return func.HttpResponse(body, status_code=status, headers=headers, mimetype="text/html", charset="utf-8")


def problem_page(exc: AppError) -> func.HttpResponse:
    answer = answer_for(exc)
    if answer.status >= 500:
        log.error("%s: %s", type(exc).__name__, exc)
    response = page(answer.status, answer.title, answer.detail or exc.message)
    if answer.retry_after:
        response.headers["Retry-After"] = str(answer.retry_after)
    return response


def _checked(req: func.HttpRequest, path: str) -> None:
    query = parse_query(req, SignedLinkQuery)
    signed_links.check(load_settings().link_signing_keys, path, query.expires, query.signature, datetime.now(UTC))


def _lease(req: func.HttpRequest) -> int:
    raw = req.route_params.get("lease", "")
    if not raw.isdigit() or not 1 <= int(raw) <= 1440:
        raise InvalidInput("the lease must be 1-1440 minutes", field="lease")
    return int(raw)


def _night(req: func.HttpRequest) -> date:
    try:
        return date.fromisoformat(req.route_params.get("night", "")[:10])
    except ValueError:
        raise InvalidInput("the night must be a date, e.g. 2026-12-08", field="night") from None


async def _postpone(req: func.HttpRequest, act: bool) -> func.HttpResponse:
    try:
        session_id, lease = session_id_of(req), _lease(req)
        _checked(req, signed_links.postpone_path(session_id, lease))
        if not act:
            return page(200, "Postpone the stop?", f"Session {session_id}'s lease becomes {lease} minutes in all, "
                        "so that it runs longer before it is stopped.", button=f"Make the lease {lease} minutes")
        context = await get_context()
        state = await context.sessions.postpone(session_id, lease, actor=LINK_ACTOR)
        left = state.arr.remaining_minutes if state.arr is not None else None
        return page(200, "Postponed", f"Session {session_id}'s lease is now {lease} minutes"
                    + (f": {left} minutes left." if left is not None else "."))
    except AppError as exc:
        return problem_page(exc)


async def _keep_tonight(req: func.HttpRequest, act: bool) -> func.HttpResponse:
    try:
        session_id, night = session_id_of(req), _night(req)
        _checked(req, signed_links.keep_tonight_path(session_id, night))
        if not act:
            return page(200, "Keep the session tonight?", f"Session {session_id} is left running by the nightly "
                        f"shutdown of {night} (only that night).", button="Keep it tonight")
        context = await get_context()
        override = await context.maintenance.keep_tonight(session_id, night, actor=LINK_ACTOR)
        return page(200, "Kept tonight", f"Session {session_id} is kept by the nightly shutdown of {night} "
                    f"(override {override.id}, until {override.until:%Y-%m-%d %H:%M} UTC). Its lease still ends it.")
    except AppError as exc:
        return problem_page(exc)


@bp.endpoint("ConfirmPostpone", "GET", "signed/sessions/{id}/postpone/{lease}", anonymous=True)
async def confirm_postpone(req: func.HttpRequest) -> func.HttpResponse:
    return await _postpone(req, act=False)


@bp.endpoint("Postpone", "POST", "signed/sessions/{id}/postpone/{lease}", anonymous=True)
async def postpone(req: func.HttpRequest) -> func.HttpResponse:
    return await _postpone(req, act=True)


@bp.endpoint("ConfirmKeepTonight", "GET", "signed/sessions/{id}/keep-tonight/{night}", anonymous=True)
async def confirm_keep_tonight(req: func.HttpRequest) -> func.HttpResponse:
    return await _keep_tonight(req, act=False)


@bp.endpoint("KeepTonight", "POST", "signed/sessions/{id}/keep-tonight/{night}", anonymous=True)
async def keep_tonight(req: func.HttpRequest) -> func.HttpResponse:
    return await _keep_tonight(req, act=True)
