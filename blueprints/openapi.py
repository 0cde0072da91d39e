"""The OpenAPI 2.0 (Swagger) document of the HTTP API, generated from the models in :mod:`arr_core.api.views`.

Power Automate custom connectors accept only OpenAPI 2.0, so pydantic's JSON Schema (2020-12) is translated: a
nullable ``anyOf`` becomes ``x-nullable``, ``$defs`` become ``definitions``, ``const`` an ``enum``. The
``x-ms-*`` extensions (labels, visibility, the session picker) serve the designer; :mod:`blueprints.connector`
derives the custom connector's file from this document.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from arr_core.api.quotas import QuotaList, QuotaRequest, QuotaView, TopUpRequest
from arr_core.api.views import (
    IDEMPOTENCY_KEY,
    BudgetView,
    ClaimRequest,
    CleanupReport,
    CleanupRuns,
    ExtendSessionRequest,
    Health,
    HeartbeatRequest,
    HeartbeatView,
    HistoryPage,
    OverrideList,
    OverrideRequest,
    OverrideView,
    PoolList,
    Problem,
    ScheduleList,
    ScheduleRequest,
    ScheduleView,
    SessionEvents,
    SessionList,
    SessionView,
    StartSessionRequest,
    StatusNotification,
    StopSessionRequest,
    StopWarningNotification,
    SubscriptionRequest,
    SubscriptionView,
    UsageReport,
    WarningSubscriptionRequest,
)
from arr_core.arr.validation import SESSION_ID_PATTERN
from arr_core.domain.notifications import SUBSCRIPTION_ID
from arr_core.domain.overrides import OVERRIDE_ID
from arr_core.domain.pools import POOL_NAME
from arr_core.domain.quotas import QUOTA_ID
from arr_core.domain.schedules import SCHEDULE_ID

from .queries import (
    CleanupQuery,
    HistoryQuery,
    ListQuery,
    RunsQuery,
    SignedLinkQuery,
    StartQuery,
    StopQuery,
    UsageQuery,
    query_parameters,
)

_DROP = {"default", "examples", "propertyNames", "discriminator", "$schema"}


def _ref(ref: str, siblings: dict[str, Any], *, nullable: bool) -> dict[str, Any]:
    """A ``$ref`` takes no siblings in 2.0: one that may be null or carries a description or designer label is
    wrapped in ``allOf``."""
    kept = {k: v for k, v in siblings.items() if k == "description" or k.startswith("x-ms-")}
    if not nullable and not kept:
        return {"$ref": ref}
    return {"allOf": [{"$ref": ref}], **({"x-nullable": True} if nullable else {}), **kept}


def to_swagger2(schema: Any) -> Any:
    """A JSON Schema from pydantic as an OpenAPI 2.0 schema object."""
    if isinstance(schema, list):
        return [to_swagger2(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = dict(schema)
    any_of = schema.pop("anyOf", None)
    if any_of is not None:
        options = [s for s in any_of if s.get("type") != "null"]
        nullable = len(options) < len(any_of)
        merged = {**to_swagger2(options[0]), **{k: v for k, v in schema.items() if k not in _DROP}}
        if "$ref" in merged:
            return _ref(merged.pop("$ref"), merged, nullable=nullable)
        if nullable:
            merged["x-nullable"] = True
        return to_swagger2(merged)
    if "$ref" in schema and len(schema) > 1:
        return _ref(schema.pop("$ref"), schema, nullable=False)
    if "patternProperties" in schema:  # 2.0 has no key patterns: keep the value schema
        schema.setdefault("additionalProperties", next(iter(schema.pop("patternProperties").values())))
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    for bound in ("exclusiveMinimum", "exclusiveMaximum"):
        if isinstance(schema.get(bound), (int, float)) and not isinstance(schema.get(bound), bool):
            schema[bound.replace("exclusiveM", "m")] = schema[bound]
            schema[bound] = True
    out = {}
    for key, value in schema.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: to_swagger2(prop) for name, prop in value.items()}
        elif key in ("items", "additionalProperties", "allOf"):
            out[key] = to_swagger2(value)
        else:
            out[key] = value
    return out


class _Definitions:
    def __init__(self) -> None:
        self.definitions: dict[str, Any] = {}

    def ref(self, model: type[BaseModel], mode: str = "serialization") -> dict[str, str]:
        schema = model.model_json_schema(by_alias=True, ref_template="#/definitions/{model}", mode=mode)  # type: ignore[arg-type]
        for name, definition in schema.pop("$defs", {}).items():
            self.definitions.setdefault(name, to_swagger2(definition))
        self.definitions[model.__name__] = to_swagger2(schema)
        return {"$ref": f"#/definitions/{model.__name__}"}


def _param(name: str, where: str, description: str, summary: str, *, required: bool = False,
           type_: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "type": type_, "description": description,
            "x-ms-summary": summary, **extra}


SESSION_ID_PARAM = _param("id", "path", "The session id.", "Session ID", required=True,
                          pattern=SESSION_ID_PATTERN.pattern, maxLength=256, **{
                              "x-ms-url-encoding": "single",
                              "x-ms-dynamic-values": {"operationId": "ListSessions", "value-collection": "sessions",
                                                      "value-path": "id", "value-title": "id"}})
SUBSCRIPTION_ID_PARAM = _param("id", "path", "The subscription id, from the Location of its creation.",
                               "Subscription ID", required=True, pattern=SUBSCRIPTION_ID.pattern,
                               **{"x-ms-url-encoding": "single"})
OVERRIDE_ID_PARAM = _param("id", "path", "The override id, from the Location of its creation.", "Override ID",
                           required=True, pattern=f"^{OVERRIDE_ID.pattern}$", **{"x-ms-url-encoding": "single"})
SCHEDULE_ID_PARAM = _param("id", "path", "The schedule id (sch- and 12 hex digits), from the Location of its creation.",
                           "Schedule ID", required=True, pattern=f"^{SCHEDULE_ID.pattern}$", **{
                               "x-ms-url-encoding": "single",
                               "x-ms-dynamic-values": {"operationId": "ListSchedules", "value-collection": "schedules",
                                                       "value-path": "id", "value-title": "description"}})
POOL_NAME_PARAM = _param("name", "path", "The pool's name, as ARR_POOLS declares it.", "Pool", required=True,
                         pattern=f"^{POOL_NAME.pattern}$", **{"x-ms-url-encoding": "single"})
QUOTA_ID_PARAM = _param("id", "path", "The quota id (quo- and 12 hex digits), from the Location of its creation.",
                        "Quota ID", required=True, pattern=f"^{QUOTA_ID.pattern}$", **{
                            "x-ms-url-encoding": "single",
                            "x-ms-dynamic-values": {"operationId": "ListQuotas", "value-collection": "quotas",
                                                    "value-path": "id", "value-title": "id"}})
CLAIM_KEY_PARAM = _param("Idempotency-Key", "header", "Repeating a key within 24 h returns the session the first claim "
                         "got: one claim, however often it is sent.", "Idempotency key", minLength=1, maxLength=255,
                         pattern=IDEMPOTENCY_KEY.pattern)
IDEMPOTENCY_KEY_PARAM = _param("Idempotency-Key", "header", "Repeating a key within 24 h returns the same session.",
                               "Idempotency key", minLength=1, maxLength=255, pattern=IDEMPOTENCY_KEY.pattern)
POLLING_HEADERS = {"Location": {"type": "string", "description": "Poll this URL (the ready monitor)."},
                   "Retry-After": {"type": "integer", "description": "Seconds to wait before polling."}}
RESPONSE_HEADERS = {202: POLLING_HEADERS, 201: {"Location": {"type": "string",
                                                             "description": "DELETE this URL to undo it (unsubscribe, lift)."}}}
ERROR_TEXTS = {400: "The request is invalid (a value that does not fit, or an empty query parameter); `errors` names "
                    "the fields.",
               401: "No function key, or a wrong one: send a key of the app in the x-functions-key header or the code "
                    "query parameter. Answered by the Functions host (locally as problem+json, in Azure with no body).",
               403: "The signed link was changed, has expired, or was not signed by this app: poll from a new Location.",
               404: "No such session.",
               409: "Conflict (or a cleanup already running): see the problem's detail.",
               413: "The body is larger than 64 KiB.",
               415: "The body was sent with a Content-Type other than application/json (or +json); nothing was done.",
               502: "ARR failed or refused our credentials.",
               503: "ARR is throttling, Table Storage is unavailable, or a setting is wrong; see Retry-After.",
               504: "ARR did not answer, or the request's time budget ran out; see Retry-After."}


def openapi_document(base_url: str) -> dict[str, Any]:
    """The document for an app served at ``base_url`` (``https://<app>.azurewebsites.net/api/``)."""
    parts = urlsplit(base_url)
    d = _Definitions()
    view, problem = d.ref(SessionView), d.ref(Problem)

    def operation(operation_id: str, summary: str, description: str, parameters: list[dict[str, Any]],
                  answers: dict[int, tuple[str, dict[str, Any] | None]], *, anonymous: bool = False,
                  **extensions: Any) -> dict[str, Any]:
        """One operation; ``answers`` maps each status to its description and schema (problem+json for errors).
        The anonymous ones (health, this document) are for operators, so the designer does not list them."""
        if not anonymous:  # the host refuses a missing or wrong key before the function runs
            answers = {**answers, **errors(401)}
        responses = {str(status): {"description": text, **({"schema": schema} if schema is not None else {}),
                                   **({"headers": RESPONSE_HEADERS[status]} if status in RESPONSE_HEADERS else {})}
                     for status, (text, schema) in sorted(answers.items())}
        return {"operationId": operation_id, "summary": summary, "description": description,
                "parameters": parameters, "responses": responses,
                **({"security": [], "x-ms-visibility": "internal"} if anonymous else {}), **extensions}

    def errors(*codes: int, **texts: str) -> dict[int, tuple[str, dict[str, Any]]]:
        """Problem answers; ``texts`` (``e404="..."``) replaces a status's usual description."""
        return {code: (texts.get(f"e{code}", ERROR_TEXTS[code]), problem) for code in codes}

    def body(model: type[BaseModel], summary: str, description: str, *, required: bool) -> dict[str, Any]:
        return {"name": "body", "in": "body", "required": required, "schema": d.ref(model, "validation"),
                "description": description, "x-ms-summary": summary}

    start_body = body(StartSessionRequest, "Session settings",
                      "The new session's settings; each one is optional and defaults to the app's settings.",
                      required=False)
    start_parameters = [start_body,
                        *query_parameters(StartSessionRequest, note=" Wins over the body."),
                        *query_parameters(StartQuery), IDEMPOTENCY_KEY_PARAM]
    paths: dict[str, Any] = {
        "/sessions": {
            "post": operation(
                "StartSession", "Start a session", "Starts an Azure Remote Rendering session and answers 202 at "
                "once; poll the Location header until the session is Ready.", start_parameters,
                {202: ("Starting; poll Location.", view), **errors(400, 409, 413, 415, 502, 503, 504)}),
            "get": operation("ListSessions", "List active sessions", "Lists the account's Starting and Ready "
                             "sessions, merged with their history.", query_parameters(ListQuery),
                             {200: ("The active sessions.", d.ref(SessionList)), **errors(400, 502, 503, 504)}),
        },
        "/sessions/{id}": {
            "get": operation("GetSession", "Get a session", "Reads one session live from ARR, merged with its "
                             "history.", [SESSION_ID_PARAM],
                             {200: ("The session.", view), **errors(400, 404, 502, 503, 504)}),
            "patch": operation(
                "ExtendSession", "Extend a session or keep it alive",
                "Raises the lease to a new total, or by a number of minutes (at most one of the two), and/or sets "
                "keepAlive: exempt from the nightly shutdown, or given back to it. A session that has ended is a 409.",
                [SESSION_ID_PARAM, body(ExtendSessionRequest, "Change",
                                        "The new total lease or the minutes to add, and/or keepAlive; who asks and "
                                        "why, for the session's events.", required=True)],
                {200: ("The extended session.", view), **errors(400, 404, 409, 413, 415, 502, 503, 504)}),
        },
        "/sessions/{id}/ready": {"get": operation(
            "WaitUntilReady", "Wait until a session is ready", "The status monitor of the asynchronous pattern: "
            "202 while Starting, 200 while Ready, 409 once the session has ended (Stopped, Expired or Error), "
            "whether or not it was Ready before: it will not be Ready again.",
            [SESSION_ID_PARAM], {200: ("Ready.", view), 202: ("Still starting.", view),
                                 **errors(400, 404, 409, 502, 503, 504)})},
        "/signed/sessions/{id}/ready": {"get": operation(
            "WaitUntilReadySigned", "Wait until ready on a signed link",
            "WaitUntilReady on the link a 202's Location gives when the app has a signing key (ARR_LINK_SIGNING_KEY): "
            "no function key, so that a workflow that holds none can poll it as given. The link is good for 24 "
            "hours and for this one session; a link changed, expired or not signed by the app is a 403.",
            [SESSION_ID_PARAM, *query_parameters(SignedLinkQuery)],
            {200: ("Ready.", view), 202: ("Still starting; poll the new Location.", view),
             **errors(400, 403, 404, 409, 502, 503, 504)}, anonymous=True)},
        "/sessions/{id}/stop": {"post": operation(
            "StopSession", "Stop a session",
            "Stops the session so that billing ends; a session that has already ended is returned as it is.",
            [SESSION_ID_PARAM, body(StopSessionRequest, "Stop details", "Why the session is stopped and who asks, for "
                                    "its history.", required=False),
             *query_parameters(StopQuery, note=" Wins over the body.")],
            {200: ("The stopped session.", view), **errors(400, 404, 413, 415, 502, 503, 504)})},
        "/sessions/{id}/heartbeat": {"post": operation(
            "SendHeartbeat", "Send a client heartbeat",
            "Says that a client is connected to the session; send one every 30 seconds while connected. With idle "
            "stop on (ARR_IDLE_AFTER_READY_MINUTES, ARR_IDLE_MINUTES), the cleanup warns, then stops, a Ready session "
            "whose heartbeats stopped. Cheap: recorded at most once a minute per session, answered at once otherwise.",
            [SESSION_ID_PARAM, body(HeartbeatRequest, "Heartbeat", "Which client sends it (optional).",
                                    required=False)],
            {200: ("Recorded; when to send the next one, and when the session would be stopped without it.",
                   d.ref(HeartbeatView)),
             **errors(400, 404, 409, 413, 415, 503, 504, e404="No such session in history.",
                      e409="The session has ended, or its stop was asked for: a heartbeat keeps nothing running.")})},
        "/history": {"get": operation(
            "ListHistory", "List session history",
            "Lists past and present sessions from Table Storage that were created from `from` (inclusive) to `to` "
            "(exclusive), oldest first (or newest first with order=newest), a page at a time.",
            query_parameters(HistoryQuery), {200: ("A page of sessions.", d.ref(HistoryPage)), **errors(400, 503, 504)})},
        "/usage": {"get": operation(
            "GetUsage", "Get usage and cost", "Adds up billed minutes (Ready to end) and estimated cost from "
            "configured rates, of the sessions created from `from` (inclusive) to `to` (exclusive). A row's cost is "
            "null when a session it counts has a size without a configured rate, whatever its minutes.",
            query_parameters(UsageQuery),
            {200: ("The usage report.", d.ref(UsageReport)), **errors(400, 503, 504)})},
        "/cleanup": {"post": operation(
            "RunCleanup", "Run the cleanup now",
            "Runs the lease cleanup (or the nightly shutdown) now, or only decides with dryRun.",
            query_parameters(CleanupQuery),
            {200: ("What the cleanup decided and did.", d.ref(CleanupReport)), **errors(400, 409, 502, 503, 504)})},
        "/sessions/{id}/events": {"get": operation(
            "ListSessionEvents", "List the changes of a session",
            "The session's audit trail from history, oldest first: who or what changed it (a caller, the cleanup, "
            "the nightly shutdown, ARR), when and why.",
            [SESSION_ID_PARAM], {200: ("Its events.", d.ref(SessionEvents)), **errors(400, 404, 503, 504)})},
        "/cleanup/runs": {"get": operation(
            "ListCleanupRuns", "List cleanup runs",
            "The cleanup runs of the last three months, newest first, with what each stopped.",
            query_parameters(RunsQuery), {200: ("A page of runs.", d.ref(CleanupRuns)), **errors(400, 503, 504)})},
        "/overrides": {
            "post": operation(
                "AddOverride", "Exempt from the nightly shutdown",
                "Exempts one session, or every session with some labels, from the nightly shutdown until a time "
                "(at most 31 days ahead); the exemption ends by itself. The cleanup reads the overrides again right "
                "before each nightly stop.",
                [body(OverrideRequest, "Override", "sessionId or labels, until when, why and who asks.",
                      required=True)],
                {201: ("Made; DELETE the Location to lift it.", d.ref(OverrideView)),
                 **errors(400, 413, 415, 503, 504)}),
            "get": operation("ListOverrides", "List overrides", "The overrides of the nightly shutdown not yet "
                             "ended, the longest first.", [],
                             {200: ("The overrides.", d.ref(OverrideList)), **errors(503, 504)}),
        },
        "/overrides/{id}": {"delete": operation(
            "RemoveOverride", "Lift an override", "Ends an override now; the next nightly shutdown stops what it "
            "exempted.", [OVERRIDE_ID_PARAM],
            {200: ("Lifted; the override as it was.", d.ref(OverrideView)),
             **errors(404, 503, 504, e404="No such override.")})},
        "/budget": {"get": operation(
            "GetBudget", "Get the budget", "The monthly budget of ARR_BUDGET: the month's estimated spend so far "
            "(Ready minutes at the configured rates, running sessions to now), its thresholds and which are "
            "crossed, and whether new starts are refused.", [],
            {200: ("The budget and this month's spend.", d.ref(BudgetView)),
             **errors(404, 503, 504, e404="No ARR_BUDGET is set.")})},
        "/pools": {"get": operation(
            "ListPools", "List warm pools", "The warm pools of ARR_POOLS: whether each is open, how many sessions "
            "are Ready to claim, starting and claimed, and what its warm sessions cost per hour.", [],
            {200: ("The pools.", d.ref(PoolList)), **errors(503, 504)})},
        "/pools/{name}/claim": {"post": operation(
            "ClaimPool", "Claim a warm session", "Hands one Ready session of the pool to the requester at once: it "
            "becomes theirs (history, usage) with at least the lease asked for, and the pool starts another. 409 when "
            "none is Ready (retry after Retry-After).",
            [POOL_NAME_PARAM, CLAIM_KEY_PARAM, body(ClaimRequest, "Claim", "Who claims, and for how long.",
                                                    required=True)],
            {200: ("The claimed session, Ready.", d.ref(SessionView)),
             **errors(400, 404, 409, 413, 415, 502, 503, 504, e404="No such pool.",
                      e409="No Ready session in the pool now, or the Idempotency-Key was used otherwise.")})},
        "/schedules": {
            "post": operation(
                "CreateSchedule", "Create a schedule",
                "Makes a schedule: a session Ready by a local time (an IANA time zone, tzdata) on some weekdays or "
                "on the nth or last weekday of each month, except on exception dates. The timer creates each "
                "session ahead by the size's observed start time; saving never starts one at once, and an occurrence "
                "the timer missed by more than 30 minutes is not replayed. On NoCapacity or a refused size, the "
                "fallback sizes are tried in order.",
                [body(ScheduleRequest, "Schedule", "When, how long, which size, and for whom.", required=True)],
                {201: ("Made; DELETE the Location to delete it.", d.ref(ScheduleView)),
                 **errors(400, 413, 415, 503, 504)}),
            "get": operation("ListSchedules", "List schedules", "Every schedule with its next occurrence that will "
                             "run and when the timer plans to create its session, and the time-zone database the app "
                             "uses.", [], {200: ("The schedules.", d.ref(ScheduleList)), **errors(503, 504)}),
        },
        "/schedules/{id}": {
            "get": operation("GetSchedule", "Get a schedule", "One schedule, with its next occurrence.",
                             [SCHEDULE_ID_PARAM], {200: ("The schedule.", d.ref(ScheduleView)),
                                                   **errors(404, 503, 504, e404="No such schedule.")}),
            "put": operation(
                "ReplaceSchedule", "Replace a schedule",
                "Replaces the whole schedule (what the body leaves out takes its default); its id and createdAt stay. "
                "The save counts as the schedule's: an occurrence whose create-at time has passed does not start.",
                [SCHEDULE_ID_PARAM, body(ScheduleRequest, "Schedule", "The whole schedule, as when it was created.",
                                         required=True)],
                {200: ("The schedule as it is now.", d.ref(ScheduleView)),
                 **errors(400, 404, 413, 415, 503, 504, e404="No such schedule.")}),
            "delete": operation(
                "DeleteSchedule", "Delete a schedule", "Deletes the schedule; the sessions it started run on until "
                "their lease ends.", [SCHEDULE_ID_PARAM],
                {200: ("Deleted; the schedule as it was.", d.ref(ScheduleView)),
                 **errors(404, 503, 504, e404="No such schedule.")}),
        },
        "/quotas": {
            "post": operation(
                "CreateQuota", "Create a quota",
                "Allows the sessions of one requester (requestedBy), or those with some labels, a number of Ready-"
                "minutes per month or ISO week in a time zone. A start or an extend that would run the scope past "
                "it is refused with 409 Quota exceeded (naming the quota, what is used, committed and left); the "
                "cleanup stops the scope's running sessions once it is used up.",
                [body(QuotaRequest, "Quota", "How many minutes, per which period, for whose sessions.",
                      required=True)],
                {201: ("Made; DELETE the Location to delete it.", d.ref(QuotaView)),
                 **errors(400, 413, 415, 503, 504)}),
            "get": operation("ListQuotas", "List quotas", "Every quota with its current period: its allowance "
                             "(with this period's top-ups), what is used, committed and left.", [],
                             {200: ("The quotas.", d.ref(QuotaList)), **errors(503, 504)}),
        },
        "/quotas/{id}": {"delete": operation(
            "DeleteQuota", "Delete a quota", "Deletes the quota: its scope's starts are no longer counted against it.",
            [QUOTA_ID_PARAM], {200: ("Deleted; the quota as it was.", d.ref(QuotaView)),
                               **errors(404, 503, 504, e404="No such quota.")})},
        "/quotas/{id}/top-up": {"post": operation(
            "TopUpQuota", "Top up a quota", "Adds minutes to the quota's current period only (the next period starts "
            "from its minutes again); two top-ups at once both count.",
            [QUOTA_ID_PARAM, body(TopUpRequest, "Top Up", "How many minutes, who adds them and why.", required=True)],
            {200: ("The quota with the top-up counted.", d.ref(QuotaView)),
             **errors(400, 404, 409, 413, 415, 503, 504, e404="No such quota.",
                      e409="The quota holds the most top-ups it keeps for this period (100).")})},
        "/subscriptions": {"post": operation(
            "SubscribeSessionChanges", "When a session changes status",
            "Calls the given URL each time a session changes status (Ready, Stopped, Expired, Error), with what "
            "caused it; deliveries are at least once, so deduplicate on eventId.",
            [body(SubscriptionRequest, "Subscription", "The callback URL and which changes to hear about.",
                  required=True)],
            {201: ("Subscribed; DELETE the Location to unsubscribe.", d.ref(SubscriptionView)),
             **errors(400, 413, 415, 503, 504)}, **{"x-ms-trigger": "single"}),
            "x-ms-notification-content": {"description": "The status change.", "schema": d.ref(StatusNotification)}},
        "/warnings/subscriptions": {"post": operation(
            "SubscribeStopWarnings", "When a session is about to be stopped",
            "Calls the given URL before the app or ARR stops a session by itself (its lease ends, the maximum run "
            "time, the nightly shutdown), ARR_STOP_WARNING_MINUTES ahead, with signed links to postpone the stop or "
            "keep the session tonight; at least once, so deduplicate on eventId.",
            [body(WarningSubscriptionRequest, "Subscription", "The callback URL and which sessions to hear about.",
                  required=True)],
            {201: ("Subscribed; DELETE the Location to unsubscribe.", d.ref(SubscriptionView)),
             **errors(400, 413, 415, 503, 504)}, **{"x-ms-trigger": "single"}),
            "x-ms-notification-content": {"description": "The warning.", "schema": d.ref(StopWarningNotification)}},
        "/subscriptions/{id}": {"delete": operation(
            "Unsubscribe", "Stop hearing about session changes",
            "Removes a subscription; the platform calls this when a flow with the trigger is turned off or deleted.",
            [SUBSCRIPTION_ID_PARAM], {200: ("Unsubscribed; the subscription as it was.", d.ref(SubscriptionView)),
                                      **errors(404, 503, 504, e404="No such subscription.")},
            **{"x-ms-visibility": "internal"})},
        "/health": {"get": operation(
            "Health", "Check health", "Tells whether ARR and Table Storage are reachable with the configured "
            "settings.", [], {200: ("Healthy.", d.ref(Health)),
                              503: ("ARR or Table Storage is not reachable.", d.ref(Health))}, anonymous=True)},
        "/openapi.json": {"get": operation(
            "OpenApi", "Get this document",
            "Returns this OpenAPI 2.0 document, which can be imported as a custom connector.", [],
            {200: ("The OpenAPI 2.0 document.", {"type": "object"})}, anonymous=True)},
    }
    return {
        "swagger": "2.0",
        "info": {"title": "ARR Sessions", "version": "1.0.0",
                 "description": "Start, watch, extend and stop Azure Remote Rendering sessions from automation. "
                                "The contract: docs/API.md in the app's repository. A method that a path does not list is refused by the "
                                "Functions host: 405 with Allow (problem+json) on the local host, an empty 404 in "
                                "Azure; HEAD is not served."},
        "host": parts.netloc,
        "basePath": parts.path.rstrip("/") or "/api",  # behind API Management: /<prefix>/api
        "schemes": [parts.scheme or "https"],
        "consumes": ["application/json"],
        "produces": ["application/json", "application/problem+json"],
        "securityDefinitions": {"functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key",
                                                "description": "A function key of the app."}},
        "security": [{"functionKey": []}],
        "paths": paths,
        "definitions": d.definitions,
    }
