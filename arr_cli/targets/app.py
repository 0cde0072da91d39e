"""The deployed arr-sessions app, over its HTTP API (``docs/API.md`` section 1) with the function key.

The key goes in the ``x-functions-key`` header, never in a URL, so the links the app hands back carry none and
nothing printed can show it. Pages (``nextLink``) are followed on the URL the user gave, whatever host the app
writes into them (behind API Management or a custom domain the two differ), so the key never leaves that host.

Every call goes through :meth:`AppTarget._send`, which logs it on ``arr_cli.app`` (shown by ``-v``): method, path,
query without a ``code`` value, status and time; never a key. A 401 is the key's fault, not the service's: it is
a configuration error naming where the key came from (:func:`~arr_cli.errors.function_key_error`).

An answer is read as it streams in, up to 16 MiB (arr_core's ``read_capped``; the rest is never read), and the
whole call, an answer that trickles in included, ends within :data:`CALL_SECONDS` (``ARR_SESSIONS_CALL_TIMEOUT``);
then every answer the CLI uses is validated (:mod:`arr_cli.answers`) before it is.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from arr_core.arr.transport import MAX_ANSWER_BYTES, AnswerTooLarge, read_capped

from .. import answers
from ..config import AppConfig
from ..errors import (
    ENV_CALL_TIMEOUT,
    NoBudget,
    PoolEmpty,
    ServiceFailure,
    UsageError,
    answer_json,
    function_key_error,
    problem_error,
)
from .base import Poll, Session, StartRequest

log = logging.getLogger("arr_cli.app")

USER_AGENT = "arr-sessions-cli/1.0"
CALL_SECONDS = 100.0  # a whole call, however its answer trickles in: the app answers within its own 90 s budget
CONNECT_SECONDS = 10.0
CLAIM_ATTEMPTS = 3  # a claim whose answer was lost is sent again, with the same Idempotency-Key, at most twice
CLAIM_RETRY_SECONDS = 2.0  # before sending it again, unless the app's Retry-After asks for longer (up to the max)
CLAIM_RETRY_MAX_SECONDS = 30.0
PASSING = (429, 502, 503, 504)  # answers that say "not now": the claim may be sent again


def logged_path(url: httpx.URL) -> str:
    """``url``'s path and query as a log shows them: a ``code`` (a function key) only as ``***``."""
    query = [(k, "***" if k.lower() == "code" else v) for k, v in parse_qsl(url.query.decode(), keep_blank_values=True)]
    return url.path + (f"?{urlencode(query, safe='*')}" if query else "")


def _refused_field(response: httpx.Response, field: str) -> bool:
    """A 400 that refuses ``field`` as unknown (pydantic's "Extra inputs are not permitted"): an app from before
    the field."""
    if response.status_code != 400 or not _is_problem(response):
        return False
    errors = answer_json(response).get("errors")
    return isinstance(errors, list) and any(
        isinstance(e, dict) and e.get("field") == field and "Extra inputs" in str(e.get("message")) for e in errors)


def _retry_after(response: httpx.Response) -> float | None:
    from arr_core.arr.retries import parse_retry_after

    return parse_retry_after(response.headers.get("Retry-After"))


def _problem_title(response: httpx.Response) -> str | None:
    body = answer_json(response)
    title = body.get("title") if isinstance(body, dict) else None
    return title if isinstance(title, str) else None


def _is_problem(response: httpx.Response) -> bool:
    """An answer that is a problem document (a JSON object; whatever its content type says)."""
    body = answer_json(response)
    if not isinstance(body, dict):
        return False
    return "problem+json" in response.headers.get("content-type", "") or ("title" in body and "status" in body)


class AppTarget:
    """The app's sessions, history, usage, cleanup and events."""

    is_app = True

    def __init__(self, config: AppConfig, *, transport: httpx.AsyncBaseTransport | None = None,
                 call_seconds: float | None = None) -> None:
        self.config = config
        self.call_seconds = call_seconds or CALL_SECONDS
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if config.function_key:
            headers["x-functions-key"] = config.function_key
        timeout = httpx.Timeout(self.call_seconds, connect=min(CONNECT_SECONDS, self.call_seconds))
        self.http = httpx.AsyncClient(base_url=f"{config.url}/api", headers=headers, timeout=timeout,
                                      transport=transport)

    def describe(self) -> str:
        return self.config.describe()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _send(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        """One call, logged; a 401 raises the function key's error, any other answer is returned."""
        started = time.perf_counter()
        request = self.http.build_request(method, path, **kwargs)
        try:
            async with asyncio.timeout(self.call_seconds):  # the whole call: an answer that trickles in too
                response = await read_capped(self.http, request, MAX_ANSWER_BYTES)
        except (httpx.HTTPError, TimeoutError, AnswerTooLarge) as exc:
            log.warning("app %s %s failed after %.0f ms: %s", method, logged_path(request.url),
                        (time.perf_counter() - started) * 1000, type(exc).__name__)
            if isinstance(exc, TimeoutError):
                raise ServiceFailure(f"{what}: the app did not answer within {self.call_seconds:g} s",
                                     hint=f"{ENV_CALL_TIMEOUT} sets how long a call may take (seconds).") from None
            if isinstance(exc, AnswerTooLarge):
                raise answers.unreadable(exc.response, what, f"it is larger than {MAX_ANSWER_BYTES // 2**20} MiB") \
                    from None
            raise
        log.log(logging.INFO if response.status_code < 500 else logging.WARNING, "app %s %s -> %d in %.0f ms",
                method, logged_path(request.url), response.status_code, (time.perf_counter() - started) * 1000)
        if response.status_code == 401:
            raise function_key_error(what, self.config.key_source if self.config.function_key else None)
        return response

    async def _call(self, method: str, path: str, what: str, *, ok: tuple[int, ...] = (200,),
                    **kwargs: Any) -> httpx.Response:
        response = await self._send(method, path, what, **kwargs)
        if response.status_code not in ok:
            raise problem_error(response, what)
        return response


    # -- sessions ------------------------------------------------------------------------------------------------

    async def start(self, request: StartRequest) -> Poll:
        body = {key: value for key, value in {
            "sessionId": request.session_id, "size": request.size, "leaseMinutes": request.lease_minutes,
            "requestedBy": request.requested_by, "reason": request.reason, "labels": request.labels,
            "keepAlive": request.keep_alive,
        }.items() if value is not None}
        response = await self._send("POST", "/sessions", "starting the session", json=body)
        if response.status_code not in (200, 201, 202):
            error = problem_error(response, "starting the session")
            if response.status_code == 409 and _problem_title(response) == "Budget exceeded":
                error.hint = "`arr-sessions budget` shows the month's spend and its thresholds."
            raise error
        return Poll(answers.read(response, answers.SessionAnswer, "starting the session"),
                    _retry_after(response) if response.status_code == 202 else None)

    async def get(self, session_id: str) -> Session:
        response = await self._call("GET", f"/sessions/{session_id}", f"reading session {session_id}")
        return answers.read(response, answers.SessionAnswer, f"reading session {session_id}")

    async def poll(self, session_id: str) -> Poll:
        what = f"waiting for session {session_id}"
        response = await self._send("GET", f"/sessions/{session_id}/ready", what)
        if response.status_code in (200, 202):
            return Poll(answers.read(response, answers.SessionAnswer, what),
                        _retry_after(response) if response.status_code == 202 else None)
        if response.status_code == 409 and _is_problem(response) and answer_json(response).get("sessionStatus"):
            return Poll(await self.get(session_id))  # it has ended: the whole view, ARR's error included
        raise problem_error(response, what)

    async def list(self) -> dict[str, Any]:
        return answers.read(await self._call("GET", "/sessions", "listing sessions"), answers.SessionList,
                            "listing sessions")

    async def extend(self, session_id: str, *, lease_minutes: int | None, by_minutes: int | None,
                     reason: str | None = None, requested_by: str | None = None) -> Session:
        lease = {"leaseMinutes": lease_minutes} if lease_minutes is not None else {"extendByMinutes": by_minutes}
        what = f"extending session {session_id}"
        return await self._change("PATCH", f"/sessions/{session_id}", what,
                                  {**lease, "reason": reason, "requestedBy": requested_by})

    async def stop(self, session_id: str, *, reason: str | None, requested_by: str | None) -> Session:
        what = f"stopping session {session_id}"
        return await self._change("POST", f"/sessions/{session_id}/stop", what,
                                  {"reason": reason, "requestedBy": requested_by})

    async def keep_alive(self, session_id: str, keep: bool, *, reason: str | None,
                         requested_by: str | None) -> Session:
        """Exempt the session from the nightly shutdown (``keep``), or hand it back to it."""
        what = f"changing keepAlive of session {session_id}"
        return await self._change("PATCH", f"/sessions/{session_id}", what,
                                  {"keepAlive": keep, "reason": reason, "requestedBy": requested_by})

    async def _change(self, method: str, path: str, what: str, body: dict[str, Any]) -> Session:
        """A change that says who asks and why (what is None is left out). An app from before a field refuses it
        as an extra input: one from before ``keepAlive`` could change is said to be too old; one from before
        ``requestedBy`` (or a stop's or extend's ``reason``) records nobody, and the change is sent again without
        them (logged with -v)."""
        body = {k: v for k, v in body.items() if v is not None}
        response = await self._send(method, path, what, json=body)
        if _refused_field(response, "keepAlive"):
            raise UsageError(f"{what}: this app version cannot change keepAlive after the start",
                             hint="Update the app; until then keepAlive is set only by `start --keep-alive`.",
                             status=400)
        dropped = [k for k in ("requestedBy", "reason") if k in body and _refused_field(response, k)]
        if dropped:
            log.warning("this app version does not take %s here; sent again without", " or ".join(dropped))
            response = await self._send(method, path, what, json={k: v for k, v in body.items() if k not in dropped})
        if response.status_code != 200:
            raise problem_error(response, what)
        return answers.read(response, answers.SessionAnswer, what)

    # -- what only the app knows ---------------------------------------------------------------------------------

    async def history(self, params: dict[str, str], limit: int) -> dict[str, Any]:
        """Up to ``limit`` sessions, following ``nextLink``; the last page's ``nextLink`` is kept to go on."""
        sessions: list[Session] = []
        page: dict[str, Any] = {"nextLink": None}
        url, query = "/history", {**params, "top": str(min(limit, 1000))}
        while True:
            response = await self._call("GET", url, "reading history", params=query)
            page = answers.read(response, answers.HistoryPage, "reading history")
            sessions.extend(page.get("sessions") or [])
            link = page.get("nextLink")
            if not link or len(sessions) >= limit:
                break
            parts = urlsplit(link)
            url, query = parts.path.removeprefix("/api") + (f"?{parts.query}" if parts.query else ""), None
        # A page cut short would make its nextLink skip the rest of it: then there is no link to go on with.
        return {"sessions": sessions[:limit], "nextLink": None if len(sessions) > limit else page.get("nextLink")}

    async def usage(self, params: dict[str, str]) -> dict[str, Any]:
        return answers.read(await self._call("GET", "/usage", "reading usage", params=params), answers.UsageReport,
                            "reading usage")

    async def cleanup(self, *, dry_run: bool, mode: str) -> dict[str, Any]:
        params = {"dryRun": "true" if dry_run else "false", "mode": mode}
        response = await self._call("POST", "/cleanup", "running the cleanup", params=params)
        return answers.read(response, answers.CleanupReport, "running the cleanup")

    async def events(self, session_id: str) -> dict[str, Any]:
        what = f"reading the events of session {session_id}"
        response = await self._send("GET", f"/sessions/{session_id}/events", what)
        if response.status_code == 404 and not _is_problem(response):
            raise ServiceFailure(f"{what}: this app version has no events endpoint", status=404,
                                 hint="Update the app, or read the session's history with `arr-sessions history`.")
        if response.status_code != 200:
            raise problem_error(response, what)
        return answers.read(response, answers.SessionEvents, what)

    # -- overrides of the nightly shutdown -----------------------------------------------------------------------

    def _overrides_known(self, response: httpx.Response, what: str) -> None:
        """An app from before overrides answers their routes with the host's bare 404 (no problem document)."""
        if response.status_code == 404 and not _is_problem(response):
            raise ServiceFailure(f"{what}: this app version has no overrides of the nightly shutdown", status=404,
                                 hint="Update the app; until then `arr-sessions keep-alive ID` keeps a session "
                                      "out of the nightly shutdown.")

    async def add_override(self, body: dict[str, Any]) -> dict[str, Any]:
        """Exempt a session or a label scope from the nightly shutdown until a time (what is None is left out)."""
        what = "adding the override"
        response = await self._send("POST", "/overrides", what,
                                    json={k: v for k, v in body.items() if v is not None})
        self._overrides_known(response, what)
        if response.status_code not in (200, 201):
            raise problem_error(response, what)
        return answers.read(response, answers.OverrideAnswer, what)

    async def list_overrides(self) -> dict[str, Any]:
        what = "listing the overrides"
        response = await self._send("GET", "/overrides", what)
        self._overrides_known(response, what)
        if response.status_code != 200:
            raise problem_error(response, what)
        return answers.read(response, answers.OverrideList, what)

    async def remove_override(self, override_id: str) -> dict[str, Any]:
        what = f"lifting override {override_id}"
        response = await self._send("DELETE", f"/overrides/{override_id}", what)
        self._overrides_known(response, what)
        if response.status_code != 200:
            error = problem_error(response, what)
            if response.status_code == 404:
                error.hint = ("It was lifted already, ended by itself, or never made: `arr-sessions override list` "
                              "shows those not yet ended.")
            raise error
        return answers.read(response, answers.OverrideAnswer, what)

    # -- warm pools ------------------------------------------------------------------------------------------------

    def _feature_known(self, response: httpx.Response, what: str, feature: str, hint: str) -> None:
        """An app from before ``feature`` answers its routes with the host's bare 404 (no problem document)."""
        if response.status_code == 404 and not _is_problem(response):
            raise ServiceFailure(f"{what}: this app version has no {feature}", status=404, hint=hint)

    async def list_pools(self) -> dict[str, Any]:
        what = "listing the warm pools"
        response = await self._send("GET", "/pools", what)
        self._feature_known(response, what, "warm pools", "Update the app; until then `arr-sessions start --wait` "
                                                          "starts a session of your own.")
        if response.status_code != 200:
            raise problem_error(response, what)
        return answers.read(response, answers.PoolList, what)

    async def claim_pool(self, name: str, *, requested_by: str, lease_minutes: int | None) -> Session:
        """One Ready session of pool ``name`` becomes ``requested_by``'s.

        The claim carries an ``Idempotency-Key`` made here, the same for every time it is sent: when no answer
        comes (the connection broke, the call's time ran out) or the app answers 429/502/503/504, it is sent again
        (at most :data:`CLAIM_ATTEMPTS` times in all), and the app answers a repeat with the session the first one
        got, so this claim never takes two sessions."""
        what = f"claiming a session from pool {name}"
        key = f"arr-sessions-cli-{uuid.uuid4().hex}"
        body = {k: v for k, v in {"requestedBy": requested_by, "leaseMinutes": lease_minutes}.items()
                if v is not None}
        for attempt in range(1, CLAIM_ATTEMPTS + 1):
            last = attempt == CLAIM_ATTEMPTS
            try:
                response = await self._send("POST", f"/pools/{name}/claim", what, json=body,
                                            headers={"Idempotency-Key": key})
            except (ServiceFailure, httpx.TransportError) as exc:  # no answer: it may have claimed, or not
                if last:
                    raise
                log.warning("claim of pool %s got no answer (%s): sending it again with the same Idempotency-Key "
                            "%s", name, type(exc).__name__, key)
                await asyncio.sleep(CLAIM_RETRY_SECONDS)
                continue
            if response.status_code in PASSING and not last:
                wait = min(max(_retry_after(response) or 0.0, CLAIM_RETRY_SECONDS), CLAIM_RETRY_MAX_SECONDS)
                log.warning("claim of pool %s answered %d: sending it again in %g s with the same Idempotency-Key %s",
                            name, response.status_code, wait, key)
                await asyncio.sleep(wait)
                continue
            break
        self._feature_known(response, what, "warm pools", "Update the app; until then `arr-sessions start --wait` "
                                                          "starts a session of your own.")
        if response.status_code == 200:
            return answers.read(response, answers.SessionAnswer, what)
        error = problem_error(response, what)
        title = _problem_title(response)
        if response.status_code == 409 and title == "Pool empty":
            wait = f"The app asks to try again in {error.retry_after:g} s. " if error.retry_after else ""
            raise PoolEmpty(error.message, status=409, retry_after=error.retry_after,
                            hint=f"{wait}`arr-sessions pool list` shows what each pool has Ready and when it is "
                                 "open.")
        if response.status_code == 404 and title == "Pool not found":
            error.hint = "`arr-sessions pool list` shows the app's pools (ARR_POOLS)."
        raise error

    # -- the budget --------------------------------------------------------------------------------------------------

    async def budget(self) -> dict[str, Any]:
        what = "reading the budget"
        response = await self._send("GET", "/budget", what)
        self._feature_known(response, what, "budget", "Update the app; `arr-sessions usage` shows what was spent.")
        if response.status_code == 404 and _problem_title(response) == "No budget":
            raise NoBudget(f"{what}: no budget set: the app has no ARR_BUDGET, so no start is refused for its cost",
                           status=404, hint="`arr-sessions usage` shows what the sessions cost.")
        if response.status_code != 200:
            raise problem_error(response, what)
        return answers.read(response, answers.BudgetAnswer, what)

    # -- schedules ---------------------------------------------------------------------------------------------------

    def _schedules_known(self, response: httpx.Response, what: str) -> None:
        self._feature_known(response, what, "schedules", "Update the app; until then `arr-sessions start --wait` "
                                                        "starts a session when you ask.")

    async def list_schedules(self) -> dict[str, Any]:
        what = "listing the schedules"
        response = await self._send("GET", "/schedules", what)
        self._schedules_known(response, what)
        if response.status_code != 200:
            raise problem_error(response, what)
        return answers.read(response, answers.ScheduleList, what)

    async def add_schedule(self, body: dict[str, Any]) -> dict[str, Any]:
        """A new schedule (what is None is left out); saving it starts nothing at once."""
        what = "adding the schedule"
        response = await self._send("POST", "/schedules", what, json={k: v for k, v in body.items() if v is not None})
        self._schedules_known(response, what)
        if response.status_code not in (200, 201):
            raise problem_error(response, what)
        return answers.read(response, answers.ScheduleAnswer, what)

    async def remove_schedule(self, schedule_id: str) -> dict[str, Any]:
        what = f"removing schedule {schedule_id}"
        response = await self._send("DELETE", f"/schedules/{schedule_id}", what)
        self._schedules_known(response, what)
        if response.status_code != 200:
            error = problem_error(response, what)
            if response.status_code == 404:
                error.hint = "It was removed already, or never made: `arr-sessions schedule list` shows the schedules."
            raise error
        return answers.read(response, answers.ScheduleAnswer, what)
