"""The shapes of the HTTP API (``shared/API.md`` section 1): requests, the session view, reports, problems.

These pydantic models are the single source of truth: the functions validate with them, serialize with them, and
the OpenAPI document is generated from them, so the three cannot drift apart.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .models import SessionSize, SessionStatus
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

class ErrorInfo(ApiModel):
    code: str
    message: str


class SessionLinks(ApiModel):
    self_: str = Field(alias="self", description="This session.")
    ready: str = Field(description="Poll this until the session is Ready (202 while Starting).")
    stop: str = Field(description="POST here to stop the session.")


class SessionView(ApiModel):
    """A session as ARR reports it now, merged with its history. Unknown values are null, never missing."""

    id: str
    status: StatusName
    size: SizeName | None
    lease_minutes: int | None
    elapsed_minutes: int | None
    remaining_minutes: int | None = Field(description="Lease minutes left; null until Ready.")
    hostname: str | None
    handshake_port: int | None
    arr_inspector_port: int | None
    teraflops: float | None
    created_at: datetime | None
    ready_at: datetime | None
    ended_at: datetime | None
    requested_by: str | None
    reason: str | None
    labels: dict[str, str]
    keep_alive: bool
    billed_minutes: int | None = Field(description="Minutes from Ready to now or to the end, as ARR bills.")
    error: ErrorInfo | None
    links: SessionLinks


class SessionList(ApiModel):
    sessions: list[SessionView]
    history: Literal["ok", "unavailable"] = Field(
        default="ok", description="unavailable: Table Storage did not answer, so history fields are null.")


class HistoryPage(ApiModel):
    sessions: list[SessionView]
    next_link: str | None = Field(description="The next page, or null on the last page.")


class UsageRow(ApiModel):
    key: str
    sessions: int
    billed_minutes: int
    estimated_cost: float | None = Field(description="Null when no rate is configured for a size in the row.")


class UsageReport(ApiModel):
    from_: datetime = Field(alias="from")
    to: datetime
    currency: str
    rows: list[UsageRow]
    total: UsageRow


class CleanupAction(ApiModel):
    id: str
    reason: str


class CleanupReport(ApiModel):
    ran_at: datetime
    dry_run: bool
    mode: str
    stopped: list[CleanupAction]
    kept: list[CleanupAction]
    reconciled: list[CleanupAction]
    errors: list[CleanupAction]
    deferred: list[CleanupAction] = Field(
        default_factory=list, description="Left for the next run: the run's time budget was spent.")


class ComponentHealth(ApiModel):
    status: Literal["ok", "unavailable", "misconfigured"]
    detail: str | None = None


class Health(ApiModel):
    status: Literal["ok", "degraded", "misconfigured"]
    arr: ComponentHealth
    history: ComponentHealth


class FieldError(ApiModel):
    field: str
    message: str


class Problem(ApiModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None
    arr_error: ErrorInfo | None = None
    correlation_id: str | None = None
    session_status: StatusName | None = None
    session_id: str | None = Field(default=None, description="The session a failed start may have created: poll "
                                   "its Location rather than starting again.")
