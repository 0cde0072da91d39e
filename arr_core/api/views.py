"""The shapes of the HTTP API (``docs/API.md`` section 1): requests, the session view, reports, problems.

These pydantic models are the single source of truth: the functions validate with them, serialize with them, and
the OpenAPI document is generated from them, so the three cannot drift apart.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from ..arr.models import SessionSize, SessionStatus
from ..arr.validation import MAX_LEASE_MINUTES, SESSION_ID_PATTERN
from ..domain.hooks.rules import HookAction
from ..domain.notifications import MAX_URL_CHARS, STATUS_CHANGED, Cause
from ..domain.records import LABEL_KEY_CLASS, LABEL_KEY_PATTERN, MAX_LABEL_KEY, MAX_LABELS, MAX_TEXT
from ..domain.schedules import MAX_EXCEPTIONS, MAX_FALLBACKS, TZ_DATABASE, zone
from ..domain.warnings import POSTPONE_MINUTES, StopKind

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# What _no_controls refuses, as a regular expression's class: Unicode's Cc (exactly U+0000-U+001F and U+007F-U+009F)
# and BIDI_CONTROLS (tests/unit/test_document_rules.py checks the two against every code point).
CONTROL_CLASS = r"\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069"
NO_CONTROLS_PATTERN = rf"^[^{CONTROL_CLASS}]*$"


def _no_controls(value: str) -> str:
    """Text shown to people later (history, dashboards) carries no control or bidi-override characters:
    they hide or reorder what an operator reads. Other Unicode (accents, emoji, ZWJ sequences) is fine."""
    bad = next((c for c in value if unicodedata.category(c) == "Cc" or c in BIDI_CONTROLS), None)
    if bad is not None:
        msg = f"must not contain control characters (found U+{ord(bad):04X})"
        raise ValueError(msg)
    return value


def _not_a_boolean(value: Any) -> Any:
    """JSON's true is no number of minutes (pydantic's lax mode would read it as 1); "30" from a query string is."""
    if isinstance(value, bool):
        msg = "must be a whole number of minutes, not true or false"
        raise ValueError(msg)
    return value


@dataclass(frozen=True)
class Documented:
    """A pattern for the OpenAPI document only: the app enforces the rule with its own validator, whose 400 says
    what is wrong (a pattern's would only quote the pattern). The pattern is the whole rule (free text, times,
    labels as JSON text) or the part of it that any pattern can state (callback URLs, whose address rules the
    descriptions give); tests/unit/test_document_rules.py holds each pattern to its validator."""

    pattern: str

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["pattern"] = self.pattern
        return schema


def _hex_class(values: set[int]) -> str:
    """A regex class of the hex digits ``values`` (0-15), letters in either case: {0, ..., 9, 10} -> ``[0-9Aa]``."""
    digits = [value for value in sorted(values) if value < 10]
    consecutive = len(digits) > 2 and digits == list(range(digits[0], digits[-1] + 1))
    numbers = f"{digits[0]}-{digits[-1]}" if consecutive else "".join(map(str, digits))
    return f"[{numbers}{''.join(f'{value:X}{value:x}' for value in sorted(values) if value > 9)}]"


def _json_escapes(character_class: str) -> str:
    """JSON's ``\\u00XX`` escapes of the ASCII characters of ``character_class``, as one regex group."""
    low_digits: dict[int, set[int]] = {}
    for code in range(0x80):
        if re.fullmatch(f"[{character_class}]", chr(code)):
            low_digits.setdefault(code >> 4, set()).add(code & 0xF)
    return rf"\\u00(?:{'|'.join(f'{high}{_hex_class(lows)}' for high, lows in sorted(low_digits.items()))})"


def _labels_as_json_text() -> str:
    """The pattern of StartSession's ``labels`` query parameter: the JSON text of an object of at most MAX_LABELS
    entries, each key LabelKey (its characters as themselves or as \\u escapes), each value ShortText (a character
    as itself or escaped, a surrogate pair one character; no escape of a control character or of half a pair, which
    the app refuses too), JSON's whitespace around."""
    space = r"[ \t\n\r]*"
    key = rf'"(?:[{LABEL_KEY_CLASS}]|{_json_escapes(LABEL_KEY_CLASS)}){{1,{MAX_LABEL_KEY}}}"'
    character = (rf'[^"\\{CONTROL_CLASS}]'
                 r'|\\["\\/]'
                 r"|\\u[Dd][89ABab][0-9A-Fa-f]{2}\\u[Dd][C-Fc-f][0-9A-Fa-f]{2}"
                 r"|\\u(?!00[01]|007[Ff]|00[89]|202[A-Ea-e]|206[6-9]|[Dd][89A-Fa-f])[0-9A-Fa-f]{4}")
    value = rf'"(?:{character}){{0,{MAX_TEXT}}}"'
    entry = f"{key}{space}:{space}{value}{space}"
    return rf"^{space}\{{{space}(?:{entry}(?:,{space}{entry}){{0,{MAX_LABELS - 1}}})?\}}{space}$"


LABELS_JSON_TEXT_PATTERN = _labels_as_json_text()
# The part of callback_refusal (arr_core/outbound/url_rules.py) that holds wherever the app runs, as a pattern: http
# or https (in any case), "//" and a host, no credentials (an "@" only as the authority's first character, which
# names none), no ASCII control character. The rest (https and a public address in Azure, never a link-local or the
# metadata service's address, a host the DNS can look up) is in the fields' descriptions.
_URL_CONTROLS = r"\x00-\x1F\x7F"
CALLBACK_URL_PATTERN = (rf"^[Hh][Tt][Tt][Pp][Ss]?://@?[^{_URL_CONTROLS}/?#@:][^{_URL_CONTROLS}/?#@]*"
                        rf"(?:[/?#][^{_URL_CONTROLS}]*)?$")
CALLBACK_URL_RULE = ("an absolute http(s) URL without credentials, to a host the DNS can look up; in Azure https "
                     "to a public address; never a link-local or metadata address")

SessionId = Annotated[str, StringConstraints(pattern=SESSION_ID_PATTERN.pattern)]
ShortText = Annotated[str, StringConstraints(max_length=MAX_TEXT), AfterValidator(_no_controls),
                      Documented(NO_CONTROLS_PATTERN)]
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY_PATTERN)]
LabelValue = ShortText
StatusName = Literal[tuple(status.value for status in SessionStatus)]  # type: ignore[valid-type]
StopKindName = Literal[tuple(kind.value for kind in StopKind)]  # type: ignore[valid-type]
SizeName = Literal["Standard", "Premium"]
HistoryOrder = Literal["oldest", "newest"]  # of ListHistory's pages: by creation time, either way
CallbackUrl = Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL_CHARS),  # then callback_refusal
                        Documented(CALLBACK_URL_PATTERN)]
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$")  # printable ASCII, trimmed


def described(summary: str, description: str, *args: Any, **constraints: Any) -> Any:
    """A field with its label in the designers (``x-ms-summary``) and its description: every field of the API has
    both, and the OpenAPI document and the connector take them from here."""
    extra = {"x-ms-summary": summary, **constraints.pop("json_schema_extra", {})}
    return Field(*args, description=description, json_schema_extra=extra, **constraints)


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# -- requests ----------------------------------------------------------------------------------------------------

class StartSessionRequest(ApiModel):
    """Body (or query parameters) of StartSession. Every field is optional; settings supply the defaults."""

    size: SizeName | None = described("Size", "Server size; default from ARR_DEFAULT_SIZE.", default=None)
    lease_minutes: int | None = described("Lease (minutes)",
                                          "Minutes the session may run once Ready (ARR's maximum lease); at most the "
                                          "app's ARR_MAX_LEASE_MINUTES (480 unless set).", default=None,
                                          ge=0, le=MAX_LEASE_MINUTES)
    session_id: SessionId | None = described("Session id", "Your own id: letters, digits, '-' and '_', up to 256.",
                                             default=None)
    requested_by: ShortText | None = described("Requested by", "Who asked, for history and usage.", default=None)
    reason: ShortText | None = described("Reason", "Why, for history.", default=None)
    labels: dict[LabelKey, LabelValue] | None = described(
        "Labels", f"Free-form string labels kept in history: at most {MAX_LABELS}, each key 1-{MAX_LABEL_KEY} letters, "
        "digits, '_', '.', ':' or '-'.", default=None, max_length=MAX_LABELS)
    keep_alive: bool | None = described("Keep alive overnight", "Exempt from the nightly shutdown.", default=None)
    callback_url: CallbackUrl | None = described(
        "Callback URL", "The app POSTs the session here once, when it is Ready or ends without being Ready: "
        f"{CALLBACK_URL_RULE}.", default=None, json_schema_extra={"x-ms-visibility": "advanced"})

    _lease_is_a_number = field_validator("lease_minutes", mode="before")(_not_a_boolean)

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
    """A change to a running session: its lease (a new total, or minutes to add: at most one of the two), its
    keepAlive, or both; who asks and why go to the events it writes."""

    lease_minutes: int | None = described("New total lease (minutes)", "The new total lease, in minutes (not with "
                                          "extendByMinutes): more than the current one, at most the app's "
                                          "ARR_MAX_LEASE_MINUTES.", default=None, ge=1, le=MAX_LEASE_MINUTES)
    extend_by_minutes: int | None = described("Minutes to add", "Minutes to add to the lease (not with leaseMinutes), "
                                              "up to the app's ARR_MAX_LEASE_MINUTES in all.", default=None, ge=1,
                                              le=MAX_LEASE_MINUTES)
    keep_alive: bool | None = described("Keep alive overnight", "True: exempt from the nightly shutdown; false: "
                                        "stopped by it again.", default=None)
    requested_by: ShortText | None = described("Requested by", "Who asks for the change, for its event.", default=None)
    reason: ShortText | None = described("Reason", "Why, for its event.", default=None)

    _minutes_are_numbers = field_validator("lease_minutes", "extend_by_minutes", mode="before")(_not_a_boolean)

    @model_validator(mode="after")
    def _a_change(self) -> ExtendSessionRequest:
        if self.lease_minutes is not None and self.extend_by_minutes is not None:
            msg = "give at most one of leaseMinutes and extendByMinutes"
            raise ValueError(msg)
        if self.lease_minutes is None and self.extend_by_minutes is None and self.keep_alive is None:
            msg = "give leaseMinutes, extendByMinutes or keepAlive (requestedBy and reason alone change nothing)"
            raise ValueError(msg)
        return self

    @property
    def changes_lease(self) -> bool:
        return self.lease_minutes is not None or self.extend_by_minutes is not None


class StopSessionRequest(ApiModel):
    """Why the session is stopped and who asks (kept in history)."""

    reason: ShortText | None = described("Reason", "Why the session is stopped.", default=None)
    requested_by: ShortText | None = described("Requested by", "Who asks for the stop: the session's stoppedBy and "
                                               "the actor of its stop event.", default=None)


class HeartbeatRequest(ApiModel):
    """A client's heartbeat (the body may be empty): it says a client is connected to the session."""

    client: ShortText | None = described("Client", "Which client sends it (a name, a device), for the event of the "
                                         "session's first heartbeat.", default=None)


class HeartbeatView(ApiModel):
    """What a heartbeat answers: when to send the next one, and when the session would be stopped without it."""

    session_id: str = described("Session ID", "The session.")
    at: datetime = described("At", "When this heartbeat was received (ISO 8601).")
    recorded_at: datetime = described("Recorded At", "The heartbeat history holds: this one, or one less than 60 "
                                      "seconds older (a session's heartbeats are recorded at most once a minute).")
    next_heartbeat_at: datetime = described("Next Heartbeat At", "Send the next heartbeat by then (30 seconds on).")
    idle_stop_at: datetime | None = described(
        "Idle Stop At", "Without another heartbeat, the cleanup stops the session (after a warning) from then on; "
        "null when idle stop is off (ARR_IDLE_MINUTES unset) or the session is not yet Ready.")


# -- responses ---------------------------------------------------------------------------------------------------
# Every field has a description and an ``x-ms-summary`` (its label in the Power Automate designer; title case).

class ErrorInfo(ApiModel):
    code: str = described("Code", "The error code ARR reported.")
    message: str = described("Message", "The error message ARR reported.")


class SessionLinks(ApiModel):
    self_: str = described("Session URL", "This session.", alias="self")
    ready: str = described("Ready URL", "Poll this until the session is Ready (202 while Starting).")
    stop: str = described("Stop URL", "POST here to stop the session.")


class SessionView(ApiModel):
    """A session as ARR reports it now, merged with its history. Unknown values are null, never missing."""

    id: str = described("Session ID", "The session's id, as ARR knows it.")
    status: StatusName = described("Status", "Starting, Ready, Stopped, Expired or Error.")
    size: SizeName | None = described("Size", "The server size: Standard or Premium.")
    lease_minutes: int | None = described("Lease Minutes", "The total lease in minutes: how long the session may run.")
    elapsed_minutes: int | None = described("Elapsed Minutes",
                                            "Minutes the session has run since it was Ready, as ARR counts.")
    remaining_minutes: int | None = described("Remaining Minutes", "Lease minutes left; null until Ready.")
    hostname: str | None = described("Hostname", "The host a client connects to once the session is Ready.")
    handshake_port: int | None = described("Handshake Port", "The port a client connects to once the session is Ready.")
    arr_inspector_port: int | None = described("Inspector Port",
                                               "The port of the session's ArrInspector diagnostics page.")
    teraflops: float | None = described("Teraflops", "The computing power of the session's server, as ARR reports it.")
    created_at: datetime | None = described("Created At", "When the session was created (ISO 8601).")
    ready_at: datetime | None = described("Ready At", "When the session became Ready; null until then.")
    ended_at: datetime | None = described("Ended At",
                                          "When the session stopped, expired or failed; null while it runs.")
    requested_by: str | None = described("Requested By", "Who asked for the session, as given when it was started.")
    reason: str | None = described("Reason", "Why the session was started.")
    stop_reason: str | None = described("Stop Reason", "Why it was stopped, once a stop was asked for.", default=None)
    stopped_by: str | None = described("Stopped By", "Who asked for the stop: a caller, cleanup (the lease "
                                   "cleanup) or nightly (the nightly shutdown).", default=None)
    labels: dict[str, str] = described("Labels", "The labels given when the session was started.")
    keep_alive: bool = described("Keep Alive", "True when the session is exempt from the nightly shutdown.")
    billed_minutes: int | None = described("Billed Minutes", "Minutes from Ready to now or to the end, as ARR bills.")
    error: ErrorInfo | None = described("Error", "What ARR reported when the session failed; null otherwise.")
    links: SessionLinks = described("Links", "URLs of this session in this app.")


class NightlyShutdown(ApiModel):
    """When the next nightly shutdown runs, in the configured time zone."""

    next_at: datetime = described("Next At", "When the next nightly shutdown runs (ISO 8601, with the time zone's "
                                  "offset on that day).", json_schema_extra={"format": "date-time"})
    time_zone: str = described("Time Zone", "The IANA time zone of the nightly shutdown (ARR_TIME_ZONE).")

    @field_serializer("next_at")
    def _with_offset(self, value: datetime) -> str:
        """The zone's offset on that day, UTC's too (``+00:00``, where pydantic would write ``Z``)."""
        return value.isoformat()


class SessionList(ApiModel):
    sessions: list[SessionView] = described("Sessions", "The active sessions: Starting or Ready.")
    history: Literal["ok", "unavailable"] = described("History Status", "unavailable: Table Storage did not answer, so "
                                                      "history fields are null.", default="ok")
    nightly_shutdown: NightlyShutdown | None = described(
        "Nightly Shutdown", "When the next nightly shutdown runs; null when none is configured.", default=None)


class HistoryPage(ApiModel):
    sessions: list[SessionView] = described("Sessions", "The sessions on this page.")
    next_link: str | None = described("Next Page Link", "The next page, or null on the last page.")


class UsageRow(ApiModel):
    key: str = described("Group", "The day, size or caller the row adds up (\"total\" for the total).")
    sessions: int = described("Sessions", "How many sessions the row counts.")
    billed_minutes: int = described("Billed Minutes", "Minutes billed, from Ready to the end of each session.")
    estimated_cost: float | None = described("Estimated Cost", "Null when no rate is configured for a size in the row.")


class UsageReport(ApiModel):
    from_: datetime = described("From", "The start of the period (ISO 8601).", alias="from")
    to: datetime = described("To", "The end of the period (ISO 8601).")
    currency: str = described("Currency", "The currency of the estimated costs.")
    rows: list[UsageRow] = described("Rows", "One row per day, size or caller.")
    total: UsageRow = described("Total", "All rows added up.")


class CleanupAction(ApiModel):
    id: str = described("Session ID", "The session's id.")
    reason: str = described("Reason", "Why the cleanup decided so, or what failed.")


class CleanupReport(ApiModel):
    ran_at: datetime = described("Ran At", "When the cleanup ran (ISO 8601).")
    dry_run: bool = described("Dry Run", "True when the cleanup only decided, without acting.")
    mode: str = described("Mode", "Which run it was: lease or nightly.")
    stopped: list[CleanupAction] = described("Stopped", "Sessions stopped (in a dry run: that would be stopped).")
    kept: list[CleanupAction] = described("Kept", "Sessions left running, and why.")
    reconciled: list[CleanupAction] = described("Reconciled", "History records brought in line with ARR.")
    errors: list[CleanupAction] = described("Errors", "Sessions the cleanup failed to handle, and why.")
    deferred: list[CleanupAction] = described("Deferred", "Left for the next run: the run's time budget was spent.",
                                              default_factory=list)
    warned: list[CleanupAction] = described("Warned", "Sessions warned of an automatic stop ahead (in a dry run: "
                                            "that would be warned), and of which.", default_factory=list)


class CleanupRun(ApiModel):
    """One cleanup run as history keeps it: when, which, what it did (counts), and what it stopped."""

    ran_at: datetime = described("Ran At", "When the run started (ISO 8601).")
    mode: str = described("Mode", "lease or nightly.")
    stopped: list[CleanupAction] = described("Stopped", "The sessions it stopped, and why.")
    kept: int = described("Kept", "How many sessions it left running.")
    reconciled: int = described("Reconciled", "How many records it brought in line with ARR.")
    errors: list[CleanupAction] = described("Errors", "What failed, per session.")
    deferred: int = described("Deferred", "How many it left to the next run (out of time).")

    @classmethod
    def of(cls, report: CleanupReport) -> CleanupRun:
        return cls(ran_at=report.ran_at, mode=report.mode, stopped=report.stopped, kept=len(report.kept),
                   reconciled=len(report.reconciled), errors=report.errors, deferred=len(report.deferred))


class CleanupRuns(ApiModel):
    runs: list[CleanupRun] = described("Runs", "Runs, newest first.")
    next_link: str | None = described("Next Page Link", "Older runs, or null when there are none.")


class SessionEvent(ApiModel):
    """One change to a session, as history recorded it."""

    seq: int = described("Seq", "1, 2, 3 ... in the order they happened.")
    type: str = described("Type", "requested, status, stopped, extended, keepAlive, adopted, reconciled, ...")
    at: datetime = described("At", "When (ISO 8601).")
    from_status: str | None = described("From Status", "The status before, for a status change.")
    to_status: str | None = described("To Status", "The status after, for a status change.")
    actor: str | None = described("Actor", "Who or what made the change: a caller, cleanup, nightly, or none (ARR).")
    detail: dict[str, Any] = described("Detail", "What else is known: a reason, sizes, minutes.")


class SessionEvents(ApiModel):
    session_id: str = described("Session ID", "The session.")
    events: list[SessionEvent] = described("Events", "Its changes, oldest first.")


class ComponentHealth(ApiModel):
    status: Literal["ok", "unavailable", "misconfigured"] = described("Status", "ok, unavailable or misconfigured.")
    detail: str | None = described("Detail", "What is wrong, when something is.", default=None)


class Health(ApiModel):
    status: Literal["ok", "degraded", "misconfigured"] = described("Status", "ok, degraded or misconfigured.")
    arr: ComponentHealth = described("ARR", "Whether ARR and its token service answer.")
    history: ComponentHealth = described("History", "Whether Table Storage answers.")


class FieldError(ApiModel):
    field: str = described("Field", "The input that is wrong.")
    message: str = described("Message", "What is wrong with it.")


class Problem(ApiModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    type: str = described("Type", "A URI naming the kind of problem.", default="about:blank")
    title: str = described("Title", "A short summary of the problem.")
    status: int = described("Status", "The HTTP status code.")
    detail: str | None = described("Detail", "What went wrong, in words.", default=None)
    errors: list[FieldError] | None = described("Errors", "The inputs that are wrong (with a 400).", default=None)
    arr_error: ErrorInfo | None = described("ARR Error", "ARR's own error, when ARR refused.", default=None)
    correlation_id: str | None = described("Correlation ID", "ARR's MS-CV, for a support request.", default=None)
    session_status: StatusName | None = described("Session Status", "The session's status once it has ended.",
                                                  default=None)
    session_id: str | None = described("Session ID", "The session a failed start may have created: poll "
                                   "its Location rather than starting again.", default=None)


# -- notifications -------------------------------------------------------------------------------------------------

class SubscriptionRequest(ApiModel):
    """A trigger subscription: the callback URL the workflow platform gives, and optional filters."""

    notification_url: CallbackUrl = described(
        "Notification URL", f"Where the app POSTs each change: {CALLBACK_URL_RULE}.",
        json_schema_extra={"x-ms-notification-url": True, "x-ms-visibility": "internal"})
    statuses: list[StatusName] | None = described("Statuses", "Only changes to these statuses; all when empty.",
                                                  default=None, max_length=8)
    session_id: SessionId | None = described("Session ID", "Only this session.", default=None)
    requested_by: ShortText | None = described("Requested By", "Only sessions requested by this caller.", default=None)


class WarningSubscriptionRequest(ApiModel):
    """A trigger subscription for stop warnings: the callback URL the workflow platform gives, and filters."""

    notification_url: CallbackUrl = described(
        "Notification URL", f"Where the app POSTs each warning: {CALLBACK_URL_RULE}.",
        json_schema_extra={"x-ms-notification-url": True, "x-ms-visibility": "internal"})
    session_id: SessionId | None = described("Session ID", "Only this session.", default=None)
    requested_by: ShortText | None = described("Requested By", "Only sessions requested by this caller.", default=None)


class SubscriptionView(ApiModel):
    id: str = described("Subscription ID", "The subscription's id.")
    statuses: list[str] | None = described("Statuses", "The statuses it hears about; null for all.")
    session_id: str | None = described("Session ID", "The one session it hears about, if any.")
    requested_by: str | None = described("Requested By", "The caller whose sessions it hears about, if any.")
    events: list[str] = described("Events", "The kinds of event it hears.", default_factory=lambda: [STATUS_CHANGED])
    created_at: datetime = described("Created At", "When it was made (ISO 8601).")


class StatusNotification(ApiModel):
    """What the app POSTs when a session changes status. Delivered at least once: deduplicate on ``eventId``."""

    event_id: str = described("Event ID", "The same for every delivery of this change.")
    event_type: Literal["SessionStatusChanged"] = described("Event Type", "Always SessionStatusChanged.",
                                                            default="SessionStatusChanged")
    at: datetime = described("At", "When the change was recorded (ISO 8601).")
    previous_status: str | None = described("Previous Status",
                                            "The status announced before; null for a session's first.")
    status: StatusName = described("Status", "The session's status now.")
    cause: Cause = described("Cause", "Who made the change: a caller's stop, the lease cleanup, the nightly shutdown, "
                             "a webhook's rule, or ARR itself.")
    actor: str | None = described("Actor", "Who stopped the session, when someone did.")
    session: SessionView = described("Session", "The session as it is now.")


class StopActions(ApiModel):
    """Signed links that need no function key (they work from a phone), good until the stop. Opening one shows what
    it will do and a button: a link preview or a mail scanner that opens it changes nothing."""

    postpone: str | None = described("Postpone", f"Adds {POSTPONE_MINUTES} minutes to the lease (capped at the app's "
                                     "maximum); null when a longer lease does not move this stop.", default=None)
    keep_tonight: str | None = described("Keep Tonight", "Exempts the session from this night's shutdown only; null "
                                         "unless the stop is the nightly shutdown.", default=None)


class StopWarningNotification(ApiModel):
    """What the app POSTs before it (or ARR) stops a session by itself. Delivered at least once: deduplicate on
    ``eventId`` (the same for every warning of the same stop)."""

    event_id: str = described("Event ID", "The same for every delivery of this warning.")
    event_type: Literal["StopWarning"] = described("Event Type", "Always StopWarning.", default="StopWarning")
    at: datetime = described("At", "When the warning was sent (ISO 8601).")
    stop_at: datetime = described("Stop At", "When the session will be stopped (ISO 8601).")
    minutes_ahead: int = described("Minutes Ahead", "Minutes from the warning to the stop.")
    kind: StopKindName = described("Kind", "lease-end (ARR ends the lease), lease-cleanup (the app's maximum run time), "
                               "nightly-shutdown, or idle (no client heartbeat).")
    reason: str = described("Reason", "Why the session will be stopped, in words.")
    actions: StopActions = described("Actions", "What the receiver can do about it, without a function key.")
    session: SessionView = described("Session", "The session as it is now.")


# -- overrides of the nightly shutdown -----------------------------------------------------------------------------

def _instant(value: object) -> object:
    """An ISO 8601 time from JSON text (a strict model takes no string for a datetime), UTC unless it says."""
    if not isinstance(value, str):
        return value
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        msg = "must be an ISO 8601 time, e.g. 2026-12-08T07:00:00Z"
        raise ValueError(msg) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class OverrideRequest(ApiModel):
    """Exempt one session, or every session with some labels, from the nightly shutdown until a time."""

    session_id: SessionId | None = described("Session ID", "The session to exempt (not with labels).", default=None)
    labels: dict[LabelKey, LabelValue] | None = described(
        "Labels", "Exempt every session that has all these labels (not with sessionId).", default=None,
        min_length=1, max_length=MAX_LABELS)
    until: Annotated[datetime, BeforeValidator(_instant)] = described(
        "Until", "When the exemption ends by itself (ISO 8601, UTC unless it has an offset; at most 31 days ahead).")
    reason: ShortText | None = described("Reason", "Why, for the cleanup's report and the session's events.",
                                         default=None)
    requested_by: ShortText | None = described("Requested By", "Who asks.", default=None)

    @model_validator(mode="after")
    def _one_scope(self) -> OverrideRequest:
        if (self.session_id is None) == (self.labels is None):
            msg = "give sessionId or labels, not both"
            raise ValueError(msg)
        return self


class OverrideView(ApiModel):
    id: str = described("Override ID", "The override's id: DELETE /api/overrides/{id} lifts it.")
    session_id: str | None = described("Session ID", "The session it exempts, if one.")
    labels: dict[str, str] | None = described("Labels", "The labels a session must all have, if a scope.")
    until: datetime = described("Until", "When it ends by itself (ISO 8601).")
    reason: str | None = described("Reason", "Why.")
    requested_by: str | None = described("Requested By", "Who asked.")
    created_at: datetime = described("Created At", "When it was made (ISO 8601).")


class OverrideList(ApiModel):
    overrides: list[OverrideView] = described("Overrides", "The overrides not yet ended, the longest first.")


# -- schedules ("Ready by T") ----------------------------------------------------------------------------------------

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # 0 Monday ... 6 Sunday, as the domain counts
WeekdayName = Literal[WEEKDAYS]  # type: ignore[valid-type]
READY_BY_PATTERN = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"
MAX_SCHEDULE_LABELS = MAX_LABELS - 1  # the app adds the label "schedule" to each session it starts


def _known_zone(name: str) -> str:
    zone(name)  # a ValueError that names the database unless the tzdata package has the zone
    return name


def _local_date(value: object) -> object:
    """A local date from JSON text (YYYY-MM-DD): a strict model takes no string for a date."""
    if not isinstance(value, str):
        return value
    try:
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            return date.fromisoformat(value)
    except ValueError:
        pass
    msg = "must be a date, YYYY-MM-DD"
    raise ValueError(msg)


TimeZoneName = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_known_zone)]
LocalDate = Annotated[date, BeforeValidator(_local_date)]


class MonthlyDay(ApiModel):
    """The nth (or the last) given weekday of every month."""

    nth: Literal[1, 2, 3, 4, -1] = described("Nth", "1 to 4 for the first to the fourth, -1 for the last of the "
                                             "month.")
    weekday: WeekdayName = described("Weekday", "The weekday, Mon to Sun.")

    @field_validator("nth", mode="before")
    @classmethod
    def _nth_is_a_whole_number(cls, value: object) -> object:
        if type(value) is not int:  # not true (an int to Python), not 1.0 (equal to 1)
            msg = f"must be 1, 2, 3, 4 or -1 (the last), not {value!r}"[:120]
            raise ValueError(msg)
        return value


class ScheduleRequest(ApiModel):
    """A schedule: a session of a size Ready by a local time for some minutes, on weekdays or on a monthly day,
    except on exception dates. A PUT gives all of it again."""

    time_zone: TimeZoneName = described("Time Zone", "The IANA time zone of readyBy and of the dates, e.g. "
                                        f"Europe/Berlin ({TZ_DATABASE}, not the host's zone data).")
    ready_by: Annotated[str, StringConstraints(pattern=READY_BY_PATTERN)] = described(
        "Ready By", "The local time (HH:MM, 24 h) by which the session is Ready: the app creates it ahead of this by "
        "the size's observed start time. A time the clocks skip moves later by the gap; one they repeat is the "
        "first of the two.")
    duration_minutes: int = described("Duration (Minutes)", "How long the session is needed from readyBy; its lease "
                                      "adds the lead and 15 minutes, within the app's ARR_MAX_LEASE_MINUTES.",
                                      ge=1, le=MAX_LEASE_MINUTES)
    size: SizeName | None = described("Size", "Server size; default from ARR_DEFAULT_SIZE.", default=None)
    weekdays: list[WeekdayName] | None = described("Weekdays", "The days it runs, Mon to Sun (not with monthly).",
                                                   default=None, min_length=1, max_length=7)
    monthly: MonthlyDay | None = described("Monthly", "The day of each month it runs, e.g. the last Friday (not with "
                                           "weekdays).", default=None)
    exceptions: list[LocalDate] | None = described(
        "Exceptions", f"Local dates (YYYY-MM-DD) it does not run: holidays; at most {MAX_EXCEPTIONS}.", default=None,
        max_length=MAX_EXCEPTIONS)
    fallbacks: list[SizeName] | None = described(
        "Fallbacks", "Other sizes to try in order when ARR has no capacity for size, or refuses it; each differs from "
        "size and from the others.", default=None, max_length=MAX_FALLBACKS)
    labels: dict[LabelKey, LabelValue] | None = described(
        "Labels", f"Labels of its sessions: at most {MAX_SCHEDULE_LABELS} (the app adds schedule: its id), each key "
        f"1-{MAX_LABEL_KEY} letters, digits, '_', '.', ':' or '-'.", default=None, max_length=MAX_SCHEDULE_LABELS)
    requested_by: ShortText | None = described("Requested By", "Who its sessions are for, in history and usage.",
                                               default=None)
    enabled: bool | None = described("Enabled", "False: kept, but starts nothing; default true.", default=None)

    _minutes_are_numbers = field_validator("duration_minutes", mode="before")(_not_a_boolean)


class NextOccurrence(ApiModel):
    local_date: date = described("Local Date", "The day, in the schedule's time zone (YYYY-MM-DD).")
    ready_by: datetime = described("Ready By", "When its session is to be Ready (ISO 8601, with the zone's offset "
                                   "on that day).")
    create_at: datetime = described("Create At", "When the timer plans to create its session: readyBy minus the "
                                    "lead (the first timer run at or after it does).")
    lead_minutes: float = described("Lead (Minutes)", "readyBy minus createAt: the size's observed p95 start time (a "
                                    "default until there are 5 samples), one timer interval and a margin.")
    session_id: str = described("Session ID", "The id its session will have; a fallback size's adds -f1, -f2, ...")


class ScheduleView(ApiModel):
    id: str = described("Schedule ID", "The schedule's id (sch- and 12 hex digits).")
    description: str = described("Description", "The schedule in words.")
    time_zone: str = described("Time Zone", "Its IANA time zone.")
    ready_by: str = described("Ready By", "The local time its sessions are Ready by (HH:MM).")
    duration_minutes: int = described("Duration (Minutes)", "How long each session is needed from readyBy.")
    size: SizeName = described("Size", "The size of its sessions.")
    weekdays: list[WeekdayName] | None = described("Weekdays", "The days it runs; null for a monthly schedule.")
    monthly: MonthlyDay | None = described("Monthly", "The day of each month it runs; null for weekdays.")
    exceptions: list[date] = described("Exceptions", "Local dates it does not run, in order.")
    fallbacks: list[SizeName] = described("Fallbacks", "Sizes tried in order when size has no capacity.")
    labels: dict[str, str] = described("Labels", "The labels of its sessions (the app adds schedule: its id).")
    requested_by: str | None = described("Requested By", "Who its sessions are for.")
    enabled: bool = described("Enabled", "False: it starts nothing.")
    created_at: datetime = described("Created At", "When it was made (ISO 8601).")
    updated_at: datetime | None = described("Updated At", "When it was last replaced; null if never. An occurrence "
                                            "whose create-at time is before the last save never starts.")
    next: NextOccurrence | None = described("Next", "Its next occurrence that will run; null when disabled.")


class ScheduleList(ApiModel):
    schedules: list[ScheduleView] = described("Schedules", "Every schedule, by id.")
    time_zone_database: str = described("Time Zone Database", f"The IANA data the app computes local times with: "
                                        f"the tzdata package ({TZ_DATABASE}), whatever the host has.")


# -- warm pools ------------------------------------------------------------------------------------------------------

class ClaimRequest(ApiModel):
    """Who claims a pool's session, and how long they need it."""

    requested_by: ShortText = described("Requested by", "Who claims the session: it becomes theirs (history, usage).",
                                        min_length=1)
    lease_minutes: int | None = described("Lease (minutes)", "Minutes the session must still run from now; default "
                                          "ARR_DEFAULT_LEASE_MINUTES. A longer lease it already has stays (ARR "
                                          "only extends).", default=None, ge=1, le=MAX_LEASE_MINUTES)

    _lease_is_a_number = field_validator("lease_minutes", mode="before")(_not_a_boolean)


class PoolView(ApiModel):
    """A warm pool as ARR_POOLS declares it, and what it holds now."""

    name: str = described("Name", "The pool's name: POST /api/pools/{name}/claim takes one of its sessions.")
    size: SizeName = described("Size", "The size of its sessions.")
    count: int = described("Count", "How many sessions it keeps Starting or Ready, unclaimed, while open.")
    days: list[str] = described("Days", "The days its window opens (Mon..Sun).")
    opens: str = described("Opens", "When its window opens, local time (HH:MM).")
    closes: str = described("Closes", "When its window closes, local time (HH:MM; before opens: the next day).")
    time_zone: str = described("Time Zone", "The IANA time zone of its window (tzdata 2026f).")
    open: bool = described("Open", "Whether its window is open now.")
    ready: int = described("Ready", "Unclaimed sessions Ready now: what a claim can get.")
    starting: int = described("Starting", "Unclaimed sessions on their way to Ready.")
    claimed: int = described("Claimed", "Sessions claimed from it and still running.")
    cost_per_hour: float | None = described("Cost per Hour", "What its warm sessions cost per hour at the configured "
                                            "rate; null without a rate for its size.")
    currency: str = described("Currency", "The currency of costPerHour (ARR_CURRENCY).")


class BudgetThresholdView(ApiModel):
    percent: float = described("Percent", "Of the month's amount.")
    action: Literal["notify", "refuse-starts", "stop-all"] = described(
        "Action", "notify (a warning in the log), refuse-starts, or stop-all (every session not kept alive).")
    crossed: bool = described("Crossed", "Whether this month's spend has reached it.")


class BudgetView(ApiModel):
    """The monthly budget of ARR_BUDGET and this month's estimated spend, as the last minute's read of history."""

    amount: float = described("Amount", "The month's budget, in currency.")
    currency: str = described("Currency", "ARR_CURRENCY.")
    time_zone: str = described("Time Zone", "The IANA time zone whose calendar month the budget covers.")
    month: str = described("Month", "The month (YYYY-MM).")
    spent: float = described("Spent", "Estimated spend this month: Ready minutes at the configured rates, running "
                             "sessions to now.")
    percent: float = described("Percent", "Spent, as a percentage of the amount.")
    unpriced_minutes: int = described("Unpriced Minutes", "Minutes of sizes without a configured rate: not in spent.")
    refusing_starts: bool = described("Refusing Starts", "Whether new starts are refused now.")
    thresholds: list[BudgetThresholdView] = described("Thresholds", "Lowest first.")


class PoolList(ApiModel):
    pools: list[PoolView] = described("Pools", "Every pool of ARR_POOLS.")


# -- inbound webhooks (not in the served document: senders, not connectors, call the hooks) ------------------------

class HookOutcome(ApiModel):
    """What became of one event a hook received."""

    delivery_id: str  # the sender's own id (Event Grid's event id, Standard Webhooks' webhook-id, ...)
    type: str
    outcome: Literal["queued", "done", "ignored", "wouldAct"]  # wouldAct: a dry run's
    duplicate: bool = False  # the sender delivered it before: nothing new is done
    actions: list[HookAction] = []
    reason: str | None = None  # why it is ignored
    results: list[str] = []  # what each action did, once done


class HookReceipt(ApiModel):
    """A hook's answer to its sender."""

    events: list[HookOutcome]

    @property
    def queued(self) -> bool:
        return any(event.outcome == "queued" for event in self.events)
