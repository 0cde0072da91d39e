"""The app's answers, checked before the CLI uses any of them.

Each answer the CLI reads is parsed within bounds (:func:`~arr_cli.untrusted.parse_json`) and validated against a
model of what the CLI uses of it, with the types it uses them as (strict: ``"60"`` is no number, ``true`` no
count); a session's id must be one (it goes into the next call's URL). Every field the CLI does not use is kept
as it came, and so is a field left out: an app of another version answers with more or fewer fields, and
``--json`` prints what the app said. An answer that does not fit is an :class:`~arr_cli.errors.AnswerUnreadable`
(exit 5) naming the first field that did not, never a traceback.

The answers' size (16 MiB) and time are bounded where they are read (:mod:`arr_cli.targets.app`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from .errors import AnswerUnreadable
from .untrusted import parse_json, said


def _session_id(value: str) -> str:
    from arr_core.arr.validation import SESSION_ID_PATTERN

    if not SESSION_ID_PATTERN.fullmatch(value):
        msg = "is not a session id (1-256 letters, digits, '-' or '_')"
        raise ValueError(msg)
    return value


SessionId = Annotated[str, AfterValidator(_session_id)]


def _override_id(value: str) -> str:
    from arr_core.domain.overrides import OVERRIDE_ID

    if not OVERRIDE_ID.fullmatch(value):
        msg = "is not an override id ('ovr-' and 12 hex digits)"
        raise ValueError(msg)
    return value


OverrideId = Annotated[str, AfterValidator(_override_id)]


# The app's own patterns (arr_core.domain.pools.POOL_NAME, arr_core.domain.schedules.SCHEDULE_ID), written out here:
# those modules need the tzdata package, which the command alone (requirements-cli.txt) does not install. A unit test
# holds them equal.
POOL_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")
SCHEDULE_ID = re.compile(r"sch-[0-9a-f]{12}")


def _pool_name(value: str) -> str:
    if not POOL_NAME.fullmatch(value):
        msg = "is not a pool name (1-31 lowercase letters, digits or '-')"
        raise ValueError(msg)
    return value


PoolName = Annotated[str, AfterValidator(_pool_name)]


def _schedule_id(value: str) -> str:
    if not SCHEDULE_ID.fullmatch(value):
        msg = "is not a schedule id ('sch-' and 12 hex digits)"
        raise ValueError(msg)
    return value


ScheduleId = Annotated[str, AfterValidator(_schedule_id)]


class Answer(BaseModel):
    """What the CLI reads of an answer; the rest is kept as it came."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)


class ErrorInfo(Answer):
    code: str | None = None
    message: str | None = None


class SessionAnswer(Answer):
    """The app's session view (``docs/API.md``), as far as the CLI shows it or acts on it."""

    id: SessionId
    status: str
    size: str | None = None
    leaseMinutes: int | None = None
    elapsedMinutes: int | None = None
    remainingMinutes: int | None = None
    hostname: str | None = None
    handshakePort: int | None = None
    arrInspectorPort: int | None = None
    teraflops: float | None = None
    createdAt: str | None = None
    readyAt: str | None = None
    endedAt: str | None = None
    requestedBy: str | None = None
    reason: str | None = None
    labels: dict[str, str] | None = None
    keepAlive: bool | None = None
    billedMinutes: int | None = None
    error: ErrorInfo | None = None


class SessionList(Answer):
    sessions: list[SessionAnswer] | None = None
    history: str | None = None


class HistoryPage(Answer):
    sessions: list[SessionAnswer] | None = None
    nextLink: str | None = None


class UsageRow(Answer):
    key: str | None = None
    sessions: int | None = None
    billedMinutes: int | None = None
    estimatedCost: float | None = None


class UsageReport(Answer):
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    currency: str | None = None
    rows: list[UsageRow] | None = None
    total: UsageRow | None = None


class CleanupAction(Answer):
    id: str | None = None
    reason: str | None = None


class CleanupReport(Answer):
    mode: str | None = None
    dryRun: bool | None = None
    stopped: list[CleanupAction] | None = None
    kept: list[CleanupAction] | None = None
    reconciled: list[CleanupAction] | None = None
    errors: list[CleanupAction] | None = None
    deferred: list[CleanupAction] | None = None


class SessionEvent(Answer):
    seq: int | None = None
    at: str | None = None
    type: str | None = None
    fromStatus: str | None = None
    toStatus: str | None = None
    actor: str | None = None
    detail: dict[str, Any] | None = None


class SessionEvents(Answer):
    sessionId: str | None = None
    events: list[SessionEvent] | None = None


class OverrideAnswer(Answer):
    """An override of the nightly shutdown (``OverrideView``); its id goes into the next call's URL."""

    id: OverrideId
    sessionId: SessionId | None = None
    labels: dict[str, str] | None = None
    until: str
    reason: str | None = None
    requestedBy: str | None = None
    createdAt: str | None = None


class OverrideList(Answer):
    overrides: list[OverrideAnswer] | None = None


class PoolAnswer(Answer):
    """A warm pool (``PoolView``); its name goes into a claim's URL."""

    name: PoolName
    size: str | None = None
    count: int | None = None
    days: list[str] | None = None
    opens: str | None = None
    closes: str | None = None
    timeZone: str | None = None
    open: bool
    ready: int
    starting: int | None = None
    claimed: int | None = None
    costPerHour: float | None = None
    currency: str | None = None


class PoolList(Answer):
    pools: list[PoolAnswer] | None = None


class BudgetThreshold(Answer):
    percent: float
    action: str | None = None
    crossed: bool


class BudgetAnswer(Answer):
    """The month's budget (``BudgetView``)."""

    amount: float
    currency: str | None = None
    timeZone: str | None = None
    month: str | None = None
    spent: float
    percent: float | None = None
    unpricedMinutes: int | None = None
    refusingStarts: bool
    thresholds: list[BudgetThreshold] | None = None


class NextOccurrence(Answer):
    localDate: str | None = None
    readyBy: str | None = None
    createAt: str | None = None
    leadMinutes: float | None = None
    sessionId: SessionId | None = None


class MonthlyDay(Answer):
    nth: int
    weekday: str


class ScheduleAnswer(Answer):
    """A schedule (``ScheduleView``); its id goes into the next call's URL."""

    id: ScheduleId
    description: str | None = None
    timeZone: str | None = None
    readyBy: str | None = None
    durationMinutes: int | None = None
    size: str | None = None
    weekdays: list[str] | None = None
    monthly: MonthlyDay | None = None
    exceptions: list[str] | None = None
    fallbacks: list[str] | None = None
    labels: dict[str, str] | None = None
    requestedBy: str | None = None
    enabled: bool | None = None
    createdAt: str | None = None
    next: NextOccurrence | None = None


class ScheduleList(Answer):
    schedules: list[ScheduleAnswer] | None = None
    timeZoneDatabase: str | None = None


def read(response: httpx.Response, model: type[Answer], what: str) -> dict[str, Any]:
    """``response``'s JSON as ``model`` reads it, as a dict of the fields that came (checked) and the rest (kept);
    :class:`AnswerUnreadable` saying what does not fit otherwise."""
    try:
        data = parse_json(response.content)
    except ValueError as exc:
        raise unreadable(response, what, str(exc)) from None
    try:
        return model.model_validate(data).model_dump(by_alias=True, exclude_unset=True)
    except ValidationError as exc:
        raise unreadable(response, what, first_problem(exc)) from None


def first_problem(exc: ValidationError) -> str:
    """The first field that did not fit and why (never its value), and how many more did not."""
    problems = exc.errors(include_url=False, include_input=False, include_context=False)
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "the answer"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{said(where, 100)}: {said(first['msg'], 200)}{more}"


def unreadable(response: httpx.Response, what: str, why: str) -> AnswerUnreadable:
    return AnswerUnreadable(f"{what}: the app's answer could not be read: {why}", status=response.status_code,
                            hint="Is this the arr-sessions app (--app, ARR_SESSIONS_APP_URL), and of a version this "
                                 "CLI knows? `-v` shows the call.")
