"""The shapes of the HTTP API (``shared/API.md`` section 1): requests, the session view, reports, problems.

These pydantic models are the single source of truth: the functions validate with them, serialize with them, and
the OpenAPI document is generated from them, so the three cannot drift apart.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .models import SessionSize, SessionStatus
from .notifications import Cause
from .validation import MAX_LEASE_MINUTES, SESSION_ID_PATTERN

MAX_TEXT = 256  # characters of a free-text field (reason, requestedBy, a label value), in bodies and queries
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _no_controls(value: str) -> str:
    """Text shown to people later (history, dashboards) carries no control or bidi-override characters:
    they hide or reorder what an operator reads. Other Unicode (accents, emoji, ZWJ sequences) is fine."""
    bad = next((c for c in value if unicodedata.category(c) == "Cc" or c in BIDI_CONTROLS), None)
    if bad is not None:
        msg = f"must not contain control characters (found U+{ord(bad):04X})"
        raise ValueError(msg)
    return value


SessionId = Annotated[str, StringConstraints(pattern=SESSION_ID_PATTERN.pattern)]
ShortText = Annotated[str, StringConstraints(max_length=MAX_TEXT), AfterValidator(_no_controls)]
LabelKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
LabelValue = ShortText
StatusName = Literal[tuple(status.value for status in SessionStatus)]  # type: ignore[valid-type]
SizeName = Literal["Standard", "Premium"]
CallbackUrl = Annotated[str, StringConstraints(min_length=1, max_length=2048)]  # checked further by the notifier
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$")  # printable ASCII, trimmed


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# -- requests ----------------------------------------------------------------------------------------------------

class StartSessionRequest(ApiModel):
    """Body (or query parameters) of StartSession. Every field is optional; settings supply the defaults."""

    size: SizeName | None = Field(default=None, description="Server size; default from ARR_DEFAULT_SIZE.",
                                  json_schema_extra={"x-ms-summary": "Size"})
    lease_minutes: int | None = Field(default=None, ge=0, le=MAX_LEASE_MINUTES,
                                      description="Minutes the session may run once Ready (ARR's maximum lease).",
                                      json_schema_extra={"x-ms-summary": "Lease (minutes)"})
    session_id: SessionId | None = Field(default=None,
                                         description="Your own id: letters, digits, '-' and '_', up to 256.",
                                         json_schema_extra={"x-ms-summary": "Session id"})
    requested_by: ShortText | None = Field(default=None, description="Who asked, for history and usage.",
                                           json_schema_extra={"x-ms-summary": "Requested by"})
    reason: ShortText | None = Field(default=None, description="Why, for history.",
                                     json_schema_extra={"x-ms-summary": "Reason"})
    labels: dict[LabelKey, LabelValue] | None = Field(default=None, max_length=32,
                                                      description="Free-form string labels kept in history.",
                                                      json_schema_extra={"x-ms-summary": "Labels"})
    keep_alive: bool | None = Field(default=None, description="Exempt from the nightly shutdown.",
                                    json_schema_extra={"x-ms-summary": "Keep alive overnight"})
    callback_url: CallbackUrl | None = Field(
        default=None, description="The app POSTs the session here once, when it is Ready or ends without being "
        "Ready (https in Azure).", json_schema_extra={"x-ms-summary": "Callback URL", "x-ms-visibility": "advanced"})

    @field_validator("size", mode="before")
    @classmethod
    def _size_any_case(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return SessionSize(value).value
            except ValueError:
                return value
        return value


class ExtendSessionRequest(ApiModel):
    """Exactly one of a new total lease or minutes to add."""

    lease_minutes: int | None = Field(default=None, ge=1, le=MAX_LEASE_MINUTES,
                                      description="The new total lease, in minutes.",
                                      json_schema_extra={"x-ms-summary": "New total lease (minutes)"})
    extend_by_minutes: int | None = Field(default=None, ge=1, le=MAX_LEASE_MINUTES,
                                          description="Minutes to add to the lease.",
                                          json_schema_extra={"x-ms-summary": "Minutes to add"})

    @model_validator(mode="after")
    def _exactly_one(self) -> ExtendSessionRequest:
        if (self.lease_minutes is None) == (self.extend_by_minutes is None):
            msg = "give exactly one of leaseMinutes and extendByMinutes"
            raise ValueError(msg)
        return self


class StopSessionRequest(ApiModel):
    """Why the session is stopped (kept in history)."""

    reason: ShortText | None = Field(default=None, description="Why the session is stopped.",
                                     json_schema_extra={"x-ms-summary": "Reason"})


# -- responses ---------------------------------------------------------------------------------------------------
# Every field has a description and an ``x-ms-summary`` (its label in the Power Automate designer; title case).

class ErrorInfo(ApiModel):
    code: str = Field(description="The error code ARR reported.", json_schema_extra={"x-ms-summary": "Code"})
    message: str = Field(description="The error message ARR reported.", json_schema_extra={"x-ms-summary": "Message"})


class SessionLinks(ApiModel):
    self_: str = Field(alias="self", description="This session.", json_schema_extra={"x-ms-summary": "Session URL"})
    ready: str = Field(description="Poll this until the session is Ready (202 while Starting).",
                       json_schema_extra={"x-ms-summary": "Ready URL"})
    stop: str = Field(description="POST here to stop the session.", json_schema_extra={"x-ms-summary": "Stop URL"})


class SessionView(ApiModel):
    """A session as ARR reports it now, merged with its history. Unknown values are null, never missing."""

    id: str = Field(description="The session's id, as ARR knows it.", json_schema_extra={"x-ms-summary": "Session ID"})
    status: StatusName = Field(description="Starting, Ready, Stopped, Expired or Error.",
                               json_schema_extra={"x-ms-summary": "Status"})
    size: SizeName | None = Field(description="The server size: Standard or Premium.",
                                  json_schema_extra={"x-ms-summary": "Size"})
    lease_minutes: int | None = Field(description="The total lease in minutes: how long the session may run.",
                                      json_schema_extra={"x-ms-summary": "Lease Minutes"})
    elapsed_minutes: int | None = Field(description="Minutes the session has run since it was Ready, as ARR counts.",
                                        json_schema_extra={"x-ms-summary": "Elapsed Minutes"})
    remaining_minutes: int | None = Field(description="Lease minutes left; null until Ready.",
                                          json_schema_extra={"x-ms-summary": "Remaining Minutes"})
    hostname: str | None = Field(description="The host a client connects to once the session is Ready.",
                                 json_schema_extra={"x-ms-summary": "Hostname"})
    handshake_port: int | None = Field(description="The port a client connects to once the session is Ready.",
                                       json_schema_extra={"x-ms-summary": "Handshake Port"})
    arr_inspector_port: int | None = Field(description="The port of the session's ArrInspector diagnostics page.",
                                           json_schema_extra={"x-ms-summary": "Inspector Port"})
    teraflops: float | None = Field(description="The computing power of the session's server, as ARR reports it.",
                                    json_schema_extra={"x-ms-summary": "Teraflops"})
    created_at: datetime | None = Field(description="When the session was created (ISO 8601).",
                                        json_schema_extra={"x-ms-summary": "Created At"})
    ready_at: datetime | None = Field(description="When the session became Ready; null until then.",
                                      json_schema_extra={"x-ms-summary": "Ready At"})
    ended_at: datetime | None = Field(description="When the session stopped, expired or failed; null while it runs.",
                                      json_schema_extra={"x-ms-summary": "Ended At"})
    requested_by: str | None = Field(description="Who asked for the session, as given when it was started.",
                                     json_schema_extra={"x-ms-summary": "Requested By"})
    reason: str | None = Field(description="Why the session was started.",
                               json_schema_extra={"x-ms-summary": "Reason"})
    stop_reason: str | None = Field(default=None, description="Why it was stopped, once a stop was asked for.",
                                    json_schema_extra={"x-ms-summary": "Stop Reason"})
    stopped_by: str | None = Field(default=None, description="Who asked for the stop: a caller, cleanup (the lease "
                                   "cleanup) or nightly (the nightly shutdown).",
                                   json_schema_extra={"x-ms-summary": "Stopped By"})
    labels: dict[str, str] = Field(description="The labels given when the session was started.",
                                   json_schema_extra={"x-ms-summary": "Labels"})
    keep_alive: bool = Field(description="True when the session is exempt from the nightly shutdown.",
                             json_schema_extra={"x-ms-summary": "Keep Alive"})
    billed_minutes: int | None = Field(description="Minutes from Ready to now or to the end, as ARR bills.",
                                       json_schema_extra={"x-ms-summary": "Billed Minutes"})
    error: ErrorInfo | None = Field(description="What ARR reported when the session failed; null otherwise.",
                                    json_schema_extra={"x-ms-summary": "Error"})
    links: SessionLinks = Field(description="URLs of this session in this app.",
                                json_schema_extra={"x-ms-summary": "Links"})


class SessionList(ApiModel):
    sessions: list[SessionView] = Field(description="The active sessions: Starting or Ready.",
                                        json_schema_extra={"x-ms-summary": "Sessions"})
    history: Literal["ok", "unavailable"] = Field(
        default="ok", description="unavailable: Table Storage did not answer, so history fields are null.",
        json_schema_extra={"x-ms-summary": "History Status"})


class HistoryPage(ApiModel):
    sessions: list[SessionView] = Field(description="The sessions on this page.",
                                        json_schema_extra={"x-ms-summary": "Sessions"})
    next_link: str | None = Field(description="The next page, or null on the last page.",
                                  json_schema_extra={"x-ms-summary": "Next Page Link"})


class UsageRow(ApiModel):
    key: str = Field(description="The day, size or caller the row adds up (\"total\" for the total).",
                     json_schema_extra={"x-ms-summary": "Group"})
    sessions: int = Field(description="How many sessions the row counts.",
                          json_schema_extra={"x-ms-summary": "Sessions"})
    billed_minutes: int = Field(description="Minutes billed, from Ready to the end of each session.",
                                json_schema_extra={"x-ms-summary": "Billed Minutes"})
    estimated_cost: float | None = Field(description="Null when no rate is configured for a size in the row.",
                                         json_schema_extra={"x-ms-summary": "Estimated Cost"})


class UsageReport(ApiModel):
    from_: datetime = Field(alias="from", description="The start of the period (ISO 8601).",
                            json_schema_extra={"x-ms-summary": "From"})
    to: datetime = Field(description="The end of the period (ISO 8601).", json_schema_extra={"x-ms-summary": "To"})
    currency: str = Field(description="The currency of the estimated costs.",
                          json_schema_extra={"x-ms-summary": "Currency"})
    rows: list[UsageRow] = Field(description="One row per day, size or caller.",
                                 json_schema_extra={"x-ms-summary": "Rows"})
    total: UsageRow = Field(description="All rows added up.", json_schema_extra={"x-ms-summary": "Total"})


class CleanupAction(ApiModel):
    id: str = Field(description="The session's id.", json_schema_extra={"x-ms-summary": "Session ID"})
    reason: str = Field(description="Why the cleanup decided so, or what failed.",
                        json_schema_extra={"x-ms-summary": "Reason"})


class CleanupReport(ApiModel):
    ran_at: datetime = Field(description="When the cleanup ran (ISO 8601).",
                             json_schema_extra={"x-ms-summary": "Ran At"})
    dry_run: bool = Field(description="True when the cleanup only decided, without acting.",
                          json_schema_extra={"x-ms-summary": "Dry Run"})
    mode: str = Field(description="Which run it was: lease or nightly.", json_schema_extra={"x-ms-summary": "Mode"})
    stopped: list[CleanupAction] = Field(description="Sessions stopped (in a dry run: that would be stopped).",
                                         json_schema_extra={"x-ms-summary": "Stopped"})
    kept: list[CleanupAction] = Field(description="Sessions left running, and why.",
                                      json_schema_extra={"x-ms-summary": "Kept"})
    reconciled: list[CleanupAction] = Field(description="History records brought in line with ARR.",
                                            json_schema_extra={"x-ms-summary": "Reconciled"})
    errors: list[CleanupAction] = Field(description="Sessions the cleanup failed to handle, and why.",
                                        json_schema_extra={"x-ms-summary": "Errors"})
    deferred: list[CleanupAction] = Field(
        default_factory=list, description="Left for the next run: the run's time budget was spent.",
        json_schema_extra={"x-ms-summary": "Deferred"})


class CleanupRun(ApiModel):
    """One cleanup run as history keeps it: when, which, what it did (counts), and what it stopped."""

    ran_at: datetime = Field(description="When the run started (ISO 8601).", json_schema_extra={"x-ms-summary": "Ran At"})
    mode: str = Field(description="lease or nightly.", json_schema_extra={"x-ms-summary": "Mode"})
    stopped: list[CleanupAction] = Field(description="The sessions it stopped, and why.",
                                         json_schema_extra={"x-ms-summary": "Stopped"})
    kept: int = Field(description="How many sessions it left running.", json_schema_extra={"x-ms-summary": "Kept"})
    reconciled: int = Field(description="How many records it brought in line with ARR.",
                            json_schema_extra={"x-ms-summary": "Reconciled"})
    errors: list[CleanupAction] = Field(description="What failed, per session.",
                                        json_schema_extra={"x-ms-summary": "Errors"})
    deferred: int = Field(description="How many it left to the next run (out of time).",
                          json_schema_extra={"x-ms-summary": "Deferred"})

    @classmethod
    def of(cls, report: CleanupReport) -> CleanupRun:
        return cls(ran_at=report.ran_at, mode=report.mode, stopped=report.stopped, kept=len(report.kept),
                   reconciled=len(report.reconciled), errors=report.errors, deferred=len(report.deferred))


class CleanupRuns(ApiModel):
    runs: list[CleanupRun] = Field(description="Runs, newest first.", json_schema_extra={"x-ms-summary": "Runs"})
    next_link: str | None = Field(description="Older runs, or null when there are none.",
                                  json_schema_extra={"x-ms-summary": "Next Page Link"})


class SessionEvent(ApiModel):
    """One change to a session, as history recorded it."""

    seq: int = Field(description="1, 2, 3 ... in the order they happened.", json_schema_extra={"x-ms-summary": "Seq"})
    type: str = Field(description="requested, status, stopped, extended, adopted, reconciled, ...",
                      json_schema_extra={"x-ms-summary": "Type"})
    at: datetime = Field(description="When (ISO 8601).", json_schema_extra={"x-ms-summary": "At"})
    from_status: str | None = Field(description="The status before, for a status change.",
                                    json_schema_extra={"x-ms-summary": "From Status"})
    to_status: str | None = Field(description="The status after, for a status change.",
                                  json_schema_extra={"x-ms-summary": "To Status"})
    actor: str | None = Field(description="Who or what made the change: a caller, cleanup, nightly, or none (ARR).",
                              json_schema_extra={"x-ms-summary": "Actor"})
    detail: dict[str, Any] = Field(description="What else is known: a reason, sizes, minutes.",
                                   json_schema_extra={"x-ms-summary": "Detail"})


class SessionEvents(ApiModel):
    session_id: str = Field(description="The session.", json_schema_extra={"x-ms-summary": "Session ID"})
    events: list[SessionEvent] = Field(description="Its changes, oldest first.",
                                       json_schema_extra={"x-ms-summary": "Events"})


class ComponentHealth(ApiModel):
    status: Literal["ok", "unavailable", "misconfigured"] = Field(
        description="ok, unavailable or misconfigured.", json_schema_extra={"x-ms-summary": "Status"})
    detail: str | None = Field(default=None, description="What is wrong, when something is.",
                               json_schema_extra={"x-ms-summary": "Detail"})


class Health(ApiModel):
    status: Literal["ok", "degraded", "misconfigured"] = Field(description="ok, degraded or misconfigured.",
                                                               json_schema_extra={"x-ms-summary": "Status"})
    arr: ComponentHealth = Field(description="Whether ARR and its token service answer.",
                                 json_schema_extra={"x-ms-summary": "ARR"})
    history: ComponentHealth = Field(description="Whether Table Storage answers.",
                                     json_schema_extra={"x-ms-summary": "History"})


class FieldError(ApiModel):
    field: str = Field(description="The input that is wrong.", json_schema_extra={"x-ms-summary": "Field"})
    message: str = Field(description="What is wrong with it.", json_schema_extra={"x-ms-summary": "Message"})


class Problem(ApiModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    type: str = Field(default="about:blank", description="A URI naming the kind of problem.",
                      json_schema_extra={"x-ms-summary": "Type"})
    title: str = Field(description="A short summary of the problem.", json_schema_extra={"x-ms-summary": "Title"})
    status: int = Field(description="The HTTP status code.", json_schema_extra={"x-ms-summary": "Status"})
    detail: str | None = Field(default=None, description="What went wrong, in words.",
                               json_schema_extra={"x-ms-summary": "Detail"})
    errors: list[FieldError] | None = Field(default=None, description="The inputs that are wrong (with a 400).",
                                            json_schema_extra={"x-ms-summary": "Errors"})
    arr_error: ErrorInfo | None = Field(default=None, description="ARR's own error, when ARR refused.",
                                        json_schema_extra={"x-ms-summary": "ARR Error"})
    correlation_id: str | None = Field(default=None, description="ARR's MS-CV, for a support request.",
                                       json_schema_extra={"x-ms-summary": "Correlation ID"})
    session_status: StatusName | None = Field(default=None, description="The session's status once it has ended.",
                                              json_schema_extra={"x-ms-summary": "Session Status"})
    session_id: str | None = Field(default=None, description="The session a failed start may have created: poll "
                                   "its Location rather than starting again.",
                                   json_schema_extra={"x-ms-summary": "Session ID"})


# -- notifications -------------------------------------------------------------------------------------------------

class SubscriptionRequest(ApiModel):
    """A trigger subscription: the callback URL the workflow platform gives, and optional filters."""

    notification_url: CallbackUrl = Field(description="Where the app POSTs each change (https in Azure).",
                                          json_schema_extra={"x-ms-summary": "Notification URL",
                                                             "x-ms-notification-url": True,
                                                             "x-ms-visibility": "internal"})
    statuses: list[StatusName] | None = Field(default=None, max_length=8,
                                              description="Only changes to these statuses; all when empty.",
                                              json_schema_extra={"x-ms-summary": "Statuses"})
    session_id: SessionId | None = Field(default=None, description="Only this session.",
                                         json_schema_extra={"x-ms-summary": "Session ID"})
    requested_by: ShortText | None = Field(default=None, description="Only sessions requested by this caller.",
                                           json_schema_extra={"x-ms-summary": "Requested By"})


class SubscriptionView(ApiModel):
    id: str = Field(description="The subscription's id.", json_schema_extra={"x-ms-summary": "Subscription ID"})
    statuses: list[str] | None = Field(description="The statuses it hears about; null for all.",
                                       json_schema_extra={"x-ms-summary": "Statuses"})
    session_id: str | None = Field(description="The one session it hears about, if any.",
                                   json_schema_extra={"x-ms-summary": "Session ID"})
    requested_by: str | None = Field(description="The caller whose sessions it hears about, if any.",
                                     json_schema_extra={"x-ms-summary": "Requested By"})
    created_at: datetime = Field(description="When it was made (ISO 8601).",
                                 json_schema_extra={"x-ms-summary": "Created At"})


class StatusNotification(ApiModel):
    """What the app POSTs when a session changes status. Delivered at least once: deduplicate on ``eventId``."""

    event_id: str = Field(description="The same for every delivery of this change.",
                          json_schema_extra={"x-ms-summary": "Event ID"})
    event_type: Literal["SessionStatusChanged"] = Field(default="SessionStatusChanged",
                                                        description="Always SessionStatusChanged.",
                                                        json_schema_extra={"x-ms-summary": "Event Type"})
    at: datetime = Field(description="When the change was recorded (ISO 8601).",
                         json_schema_extra={"x-ms-summary": "At"})
    previous_status: str | None = Field(description="The status announced before; null for a session's first.",
                                        json_schema_extra={"x-ms-summary": "Previous Status"})
    status: StatusName = Field(description="The session's status now.", json_schema_extra={"x-ms-summary": "Status"})
    cause: Cause = Field(
        description="Who made the change: a caller's stop, the lease cleanup, the nightly shutdown, or ARR itself.",
        json_schema_extra={"x-ms-summary": "Cause"})
    actor: str | None = Field(description="Who stopped the session, when someone did.",
                              json_schema_extra={"x-ms-summary": "Actor"})
    session: SessionView = Field(description="The session as it is now.", json_schema_extra={"x-ms-summary": "Session"})
