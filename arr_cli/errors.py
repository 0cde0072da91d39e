"""What can go wrong in a command, and the exit code each means.

======  ==================================================================================================
code    meaning
======  ==================================================================================================
0       done (a wait ended Ready)
1       the session ended in Error, Expired or Stopped while we waited for it to be Ready
2       usage: a wrong flag, a bad ``arrconfig.json``, a missing setting, a command the target cannot do, a
        function key missing or refused
3       the service (ARR, its STS, or the app) failed, refused, or did not answer; ARR's MS-CV is printed when
        ARR was asked (directly, or by the app on our behalf and its answer passed on)
4       ``--timeout`` ran out while the session was still Starting (it keeps running)
5       an answer (the app's or ARR's) could not be read: not JSON, not of the shape the CLI reads, nested too
        deeply, or larger than 16 MiB
6       ``pool claim``: the pool has no Ready session to hand out now (the app's 409 "Pool empty"); the message
        says when the app asks to try again
7       ``budget``: the app has no budget (``ARR_BUDGET`` is unset: its 404 "No budget")
130     Ctrl-C (the session, if any, keeps running)
======  ==================================================================================================

Every error the CLI prints comes through :func:`as_cli_error`, which never includes a secret: arr_core's errors
carry none, and the app's problem documents carry none either.
"""

from __future__ import annotations

from typing import Any

import httpx

from .untrusted import parse_json, said

OK = 0
SESSION_ENDED = 1
USAGE = 2
SERVICE = 3
TIMED_OUT = 4
UNREADABLE = 5
POOL_EMPTY = 6
NO_BUDGET = 7
INTERRUPTED = 130

ENV_CALL_TIMEOUT = "ARR_SESSIONS_CALL_TIMEOUT"  # seconds one call may take, whole (arr_cli.config reads it)


class CliError(Exception):
    """An error the CLI reports and exits on: a message for people, an exit code, and the MS-CV when known."""

    exit_code = SERVICE

    def __init__(self, message: str, *, hint: str | None = None, correlation_id: str | None = None,
                 status: int | None = None, code: str | None = None, retry_after: float | None = None,
                 from_arr: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.correlation_id = correlation_id
        self.status = status
        self.code = code
        self.retry_after = retry_after  # seconds the service asked us to wait (its Retry-After), if it did
        self.from_arr = from_arr  # ARR itself was asked: its MS-CV, or that none came, is printed


class UsageError(CliError):
    """The command line, the environment or ``arrconfig.json`` asks for something that cannot be done."""

    exit_code = USAGE


class ConfigError(UsageError):
    """A setting is malformed; ``field`` names it as the user wrote it (``accountSettings.arrAccountId``,
    ``ARR_ACCOUNT_ID``, ``--account-id``)."""

    def __init__(self, field: str, message: str, *, source: str | None = None, hint: str | None = None) -> None:
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field} {message}", hint=hint)
        self.field = field
        self.source = source


class ServiceFailure(CliError):
    """ARR, its STS or the app failed, refused or did not answer."""

    exit_code = SERVICE


class AnswerUnreadable(CliError):
    """An answer of the app or ARR that the CLI cannot read: not JSON, not of the shape it reads, nested too
    deeply, or too large. Trying again would read the same: it is no passing failure of the service."""

    exit_code = UNREADABLE


class PoolEmpty(CliError):
    """A claim found no Ready session in the pool (its window is closed, or what it starts is not Ready yet). Not
    the service failing: trying again later (the app's ``Retry-After``) may get one."""

    exit_code = POOL_EMPTY


class NoBudget(CliError):
    """The app keeps no budget (``ARR_BUDGET`` unset): there is nothing to show, which a script may want to tell
    apart from a failure."""

    exit_code = NO_BUDGET


def app_only(flag: str) -> UsageError:
    """The error of a flag whose value only the app's history can keep."""
    return UsageError(f"{flag} is kept in the app's history; ARR alone has nowhere to keep it.",
                      hint="Use the app (--app URL or ARR_SESSIONS_APP_URL), or leave the flag out.")


KEYS_HINT = ("In Azure the keys are the function app's App keys (portal), or `az functionapp keys list -g GROUP -n "
             "APP`; locally `make run` asks for none unless DEVHOST_FUNCTION_KEYS is set.")


def function_key_error(what: str, key_source: str | None) -> UsageError:
    """The app answered 401: no key was given, or the one from ``key_source`` was refused. A configuration error
    (exit 2), not the service's: the same command fails the same way until the key is fixed."""
    if key_source is None:
        return UsageError(f"{what}: the app wants a function key, and none was given",
                          hint=f"Set ARR_SESSIONS_FUNCTION_KEY (or give --function-key KEY). {KEYS_HINT}",
                          status=401)
    return UsageError(f"{what}: the app refused the function key from {key_source} (HTTP 401)",
                      hint=f"Check the key ({key_source}): it must be one of the app's function or host keys. "
                           f"{KEYS_HINT}", status=401)


def needs_app(command: str) -> UsageError:
    """The error of a command that only the app can answer (ARR itself keeps no history)."""
    return UsageError(
        f"`{command}` needs the arr-sessions app: ARR itself has no history, usage, cleanup, events, nightly "
        "shutdown, warm pools, budget or schedules.",
        hint="Give --app URL (and the function key in ARR_SESSIONS_FUNCTION_KEY), or set ARR_SESSIONS_APP_URL.")


def as_cli_error(exc: BaseException) -> CliError | None:
    """The :class:`CliError` an exception from arr_core, httpx or azure-identity stands for; None if unknown."""
    if isinstance(exc, CliError):
        return exc
    from arr_core.arr.transport import MAX_ANSWER_BYTES, AnswerTooLarge
    from arr_core.errors import (
        ArrError,
        AuthenticationError,
        InvalidRequestError,
        NotFoundError,
        ServiceTimeoutError,
        TransportError,
    )

    if isinstance(exc, InvalidRequestError) and exc.status_code is None and exc.argument:
        return UsageError(exc.message)  # refused by the client's own checks, before anything was sent
    if isinstance(exc, ArrError) and (exc.code == "InvalidResponse" or isinstance(exc.__cause__, AnswerTooLarge)):
        why = (f"it is larger than {MAX_ANSWER_BYTES // 2**20} MiB" if isinstance(exc.__cause__, AnswerTooLarge)
               else said(exc.message))
        return AnswerUnreadable(f"ARR's answer could not be read: {why}", status=exc.status_code, code=exc.code,
                                correlation_id=said(exc.correlation_id) or None, from_arr=True,
                                hint="ARR, or what answers at its address, sent what ARR does not send. Check the "
                                     "domains (remoteRenderingDomain, arrAccountDomain).")
    if isinstance(exc, ArrError):
        hint = None
        if isinstance(exc, NotFoundError):
            hint = "ARR knows no such session (it forgets ended sessions after 30 days)."
        elif isinstance(exc, AuthenticationError):
            hint = ("Check the account id and key (accountSettings in arrconfig.json, ARR_ACCOUNT_KEY), or that your "
                    "Azure identity has the Remote Rendering Client role on the account.")
        elif isinstance(exc, ServiceTimeoutError):
            hint = f"{ENV_CALL_TIMEOUT} sets how long a call to ARR may take (seconds; 30 unless set)."
        elif isinstance(exc, TransportError):
            hint = "Check the domains (remoteRenderingDomain, arrAccountDomain) and your network."
        prefix = ("ARR did not answer in time" if isinstance(exc, ServiceTimeoutError) else
                  "ARR could not be reached" if isinstance(exc, TransportError) else "ARR answered")
        if exc.status_code is not None:
            prefix += f" {exc.status_code}"
        return ServiceFailure(f"{prefix}: {said(exc.code)}: {said(exc.message)}", hint=hint,
                              correlation_id=said(exc.correlation_id) or None, status=exc.status_code, code=exc.code,
                              from_arr=True)
    if _is_azure_auth_error(exc):
        first = said(str(exc).strip().splitlines()[0]) if str(exc).strip() else type(exc).__name__
        return ServiceFailure(
            f"no Azure credential worked: {first}",
            hint="No account key is set, so Azure sign-in was tried (managed identity, environment, `az login`). "
                 "Sign in with `az login`, or give the account key (arrconfig.json accountSettings.arrAccountKey "
                 "or ARR_ACCOUNT_KEY).", from_arr=True)
    if isinstance(exc, httpx.TimeoutException):
        return ServiceFailure(f"the app did not answer in time ({type(exc).__name__})")
    if isinstance(exc, httpx.TransportError):
        return ServiceFailure(f"the app could not be reached ({type(exc).__name__})",
                              hint="Check --app / ARR_SESSIONS_APP_URL and that the app is running.")
    return None


def _is_azure_auth_error(exc: BaseException) -> bool:
    return any(cls.__name__ in ("ClientAuthenticationError", "CredentialUnavailableError")
               for cls in type(exc).__mro__)


def answer_json(response: httpx.Response) -> Any:
    """The JSON of an answer, None when it is not JSON or is nested too deeply (never a RecursionError)."""
    try:
        return parse_json(response.content)
    except ValueError:
        return None


MAX_FIELD_ERRORS = 10


def problem_error(response: httpx.Response, what: str) -> ServiceFailure:
    """The app's ``application/problem+json`` answer (or whatever else came) as a :class:`ServiceFailure`.

    Each thing is said once: a field's message that repeats the detail (a 409 for a session id in use names the
    field with the detail's words) is left out. The app sends no correlation id of its own; ``correlationId`` is
    ARR's MS-CV when ARR's answer was the cause. What the answer says is taken as text only where it is text,
    clipped, and with its control characters escaped (:func:`~arr_cli.untrusted.said`): an answer built to
    drive the terminal reaches it as harmless text."""
    from arr_core.arr.retries import parse_retry_after
    from arr_core.arr.validation import SESSION_ID_PATTERN

    body = answer_json(response)
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if isinstance(body, dict) and ("title" in body or "detail" in body):
        parts = [said(body.get("title"))]
        if body.get("detail") and body.get("detail") != body.get("title"):
            parts.append(said(body["detail"]))
        errors = body.get("errors")
        for item in errors[:MAX_FIELD_ERRORS] if isinstance(errors, list) else []:
            if isinstance(item, dict) and said(item.get("message")) not in parts:
                parts.append(f"{said(item.get('field'))}: {said(item.get('message'))}")
        arr = body.get("arrError")
        if isinstance(arr, dict):
            parts.append(f"ARR said {said(arr.get('code'))}: {said(arr.get('message'))}")
        hint = None
        sid = body.get("sessionId")
        if isinstance(sid, str) and SESSION_ID_PATTERN.fullmatch(sid):  # a start ARR left unanswered: it may exist
            hint = (f"Session {sid} may be starting: check it with `arr-sessions get {sid} --wait` before starting "
                    "again.")
        elif retry_after is not None:
            hint = f"The app asks to try again in {retry_after:g} s."
        cv = body.get("correlationId")
        return ServiceFailure(f"{what}: " + " - ".join(p for p in parts if p),
                              correlation_id=said(cv, 100) if isinstance(cv, str) and cv else None, status=status,
                              code=said(body.get("type"), 100) or str(status), hint=hint, retry_after=retry_after)
    return ServiceFailure(f"{what}: the app answered HTTP {status} {said(response.reason_phrase, 100)}".rstrip(),
                          status=status, retry_after=retry_after)
