"""What each sender says, read into one shape, :class:`HookEvent`. Pure: the body is already authenticated and
decoded JSON; nothing here reads a clock, the network or storage.

Every sender gets a ``delivery_id`` that it keeps the same when it retries, so that a duplicate can be recognised;
``fields`` holds the sender's well-known strings, flattened, for rules' conditions and label templates (every
field a sender and event type declare is present, empty when the event lacks it). A malformed body raises
:class:`~arr_core.errors.InvalidInput` naming what is wrong; an event type nobody knows is no error: it parses, and
the rules ignore it. Wire formats: ``tests/reference/webhooks/README.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from ...errors import InvalidInput

Sender = Literal["eventgrid", "cloudevents", "alert", "budget", "standardwebhooks", "github"]

# A hook must read what its senders really send: Event Grid drops an event for good on a 413.
MAX_HOOK_BODY_BYTES = 1024 * 1024  # Event Grid batches reach about 1 MB (1-1024 KB per subscription); alerts 256 KB
MAX_EVENTS_PER_DELIVERY = 5000  # Event Grid's largest batch
MAX_FIELD_CHARS = 1024  # of a string copied into fields (blob URLs, alert ids); longer ones are cut
MAX_DELIVERY_ID_CHARS = 1024  # a longer delivery id is refused: it is stored to recognise the sender's retries

VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
DELETION_EVENT = "Microsoft.EventGrid.SubscriptionDeletedEvent"
# WebHook-Request-Origin of Event Grid's CloudEvents handshake, per cloud (azure-sdk-for-net's Event Grid
# extension, HttpRequestProcessor.cs, allows exactly these).
EVENT_GRID_ORIGINS = frozenset({"eventgrid.azure.net", "eventgrid.azure.us", "eventgrid.azure.cn",
                                "eventgrid.azure.eaglex.ic.gov", "eventgrid.azure.microsoft.scloud"})
COMMON_ALERT_SCHEMA = "azureMonitorCommonAlertSchema"
LEGACY_BUDGET_SCHEMA = "AIP Budget Notification"
COST_ALERTS = "CostAlerts"  # the common schema's monitoringService of a budget alert
FIRED, RESOLVED = "Fired", "Resolved"
GITHUB_PING = "ping"

# The fields each sender's events carry (an alert's type is its monitoringService; a budget's is "CostAlerts" or
# the legacy schemaId), and those that some event types add.
SENDER_FIELDS: dict[str, tuple[str, ...]] = {
    "eventgrid": ("id", "type", "subject", "source"),
    "cloudevents": ("id", "type", "subject", "source"),
    "alert": ("alertId", "alertRule", "severity", "signalType", "monitorCondition", "monitoringService",
              "description"),
    "budget": ("budgetName", "budget", "spent", "threshold", "unit", "thresholdType", "monitorCondition"),
    "standardwebhooks": ("type",),
    "github": ("event", "action", "repository", "sender"),
}
BLOB_EVENT_TYPES = frozenset({"Microsoft.Storage.BlobCreated", "Microsoft.Storage.BlobDeleted",
                              "Microsoft.Storage.BlobTierChanged", "Microsoft.Storage.AsyncOperationInitiated"})
TYPE_FIELDS: dict[str, tuple[str, ...]] = dict.fromkeys(BLOB_EVENT_TYPES, ("container", "blob", "url", "api"))
_BLOB_SUBJECT = re.compile(r"/blobServices/default/containers/(?P<container>[^/]+)/blobs/(?P<blob>.+)", re.DOTALL)


def fields_for(sender: Sender, event_types: Iterable[str] | None = None) -> frozenset[str]:
    """The fields that every event of ``sender`` of one of ``event_types`` (of any type: None) carries: what a
    rule may name in its conditions and templates."""
    names = set(SENDER_FIELDS[sender])
    types = list(event_types or ())
    if sender in ("eventgrid", "cloudevents") and types:
        names |= set.intersection(*(set(TYPE_FIELDS.get(event_type, ())) for event_type in types))
    return frozenset(names)


class HookModel(BaseModel):
    """camelCase in JSON, like the rest of the app; immutable."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")


class HookEvent(HookModel):
    """One event, whoever sent it."""

    sender: Sender
    delivery_id: str  # what the sender keeps the same when it delivers again
    type: str
    subject: str = ""
    occurred_at: datetime | None = None
    fields: dict[str, str]
    data: dict[str, Any]


class EventGridDelivery(HookModel):
    """One POST of Event Grid: its events, or a handshake (which never carries events)."""

    kind: Literal["notification", "validation", "deletion"]
    events: tuple[HookEvent, ...] = ()
    validation_code: str | None = None  # answer {"validationResponse": code} with a 200
    validation_url: str | None = None  # or GET this, for a manual validation


# -- reading JSON values -------------------------------------------------------------------------------------------

def _text(value: object) -> str:
    """A string to copy into fields: a string (cut to MAX_FIELD_CHARS) or a number; anything else is ""."""
    if isinstance(value, str):
        return value[:MAX_FIELD_CHARS]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _mapping(value: object) -> dict[str, Any]:
    """An optional JSON object: {} when absent or of another type."""
    return value if isinstance(value, dict) else {}


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a JSON object", field=where)
    return value


def _required(container: Mapping[str, Any], key: str, where: str) -> str:
    """A value the delivery cannot be understood without: a non-empty string (or a number, for budgets), whole
    (an id cut short could be another's)."""
    value = container.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{where}.{key} is missing or empty", field=f"{where}.{key}")
    return value


def _time(value: object, where: str, *, required: bool = False) -> datetime | None:
    """An ISO 8601 time (7 fraction digits and a Z included); a time without an offset is UTC."""
    if value is None and not required:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise InvalidInput(f"{where} is not an ISO 8601 time", field=where)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _event(sender: Sender, delivery_id: str, event_type: str, subject: str, occurred_at: datetime | None,
           data: object, fields: Mapping[str, object]) -> HookEvent:
    """The event, with every field its sender and type declare (and no other)."""
    if len(delivery_id) > MAX_DELIVERY_ID_CHARS:
        raise InvalidInput(f"the delivery id is longer than {MAX_DELIVERY_ID_CHARS} characters", field="id")
    declared = sorted(fields_for(sender, [event_type]))
    return HookEvent(sender=sender, delivery_id=delivery_id, type=_text(event_type), subject=_text(subject),
                     occurred_at=occurred_at, fields={name: _text(fields.get(name)) for name in declared},
                     data=_mapping(data))


# -- Azure Event Grid: its own schema and CloudEvents 1.0 ----------------------------------------------------------

def cloudevents_consent(headers: Mapping[str, str]) -> dict[str, str] | None:
    """The answer's headers to the CloudEvents abuse-protection handshake (an OPTIONS with
    ``WebHook-Request-Origin``), or None when the origin is not Event Grid's: then no consent is given."""
    origin = _lower(headers).get("webhook-request-origin", "").strip().lower()
    if origin not in EVENT_GRID_ORIGINS:
        return None
    return {"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*", "Allow": "POST, OPTIONS"}


def parse_event_grid(value: object, headers: Mapping[str, str]) -> EventGridDelivery:
    """An Event Grid POST, in either schema: the Event Grid schema (always an array) or CloudEvents 1.0 (one
    object, or an array when batched). The ``SubscriptionValidation`` handshake (the ``aeg-event-type`` header or
    the validation event) yields its code and never an event; ``SubscriptionDeletion`` yields nothing."""
    kind = _lower(headers).get("aeg-event-type", "Notification")
    if kind not in ("Notification", "SubscriptionValidation", "SubscriptionDeletion"):
        raise InvalidInput(f"aeg-event-type {kind[:64]!r} is not one Event Grid sends", field="aeg-event-type")
    items = _event_list(value)
    types = [_type_of(item) for item in items]
    if kind == "SubscriptionValidation" or VALIDATION_EVENT in types:
        return _validation(items, types)
    if kind == "SubscriptionDeletion" or DELETION_EVENT in types:
        return EventGridDelivery(kind="deletion")
    return EventGridDelivery(kind="notification",
                             events=tuple(_grid_event(item, f"[{index}]") for index, item in enumerate(items)))


def _event_list(value: object) -> list[Any]:
    if isinstance(value, dict) and "specversion" in value:
        return [value]  # one CloudEvent, not batched
    if isinstance(value, dict):
        raise InvalidInput("an Event Grid schema delivery is a JSON array of events, not one object")
    if not isinstance(value, list):
        raise InvalidInput("the body is not an Event Grid delivery (a JSON array of events, or a CloudEvent)")
    if not value:
        raise InvalidInput("the delivery holds no event")
    if len(value) > MAX_EVENTS_PER_DELIVERY:
        raise InvalidInput(f"the delivery holds {len(value)} events, more than Event Grid's "
                           f"{MAX_EVENTS_PER_DELIVERY}")
    return value


def _type_of(item: object) -> object:
    if not isinstance(item, dict):
        return None
    return item.get("type") if "specversion" in item else item.get("eventType")


def _validation(items: list[Any], types: list[object]) -> EventGridDelivery:
    if VALIDATION_EVENT not in types:
        raise InvalidInput(f"a subscription validation without a {VALIDATION_EVENT}", field="eventType")
    index = types.index(VALIDATION_EVENT)
    data = _object(items[index].get("data"), f"[{index}].data")
    url = data.get("validationUrl")
    return EventGridDelivery(kind="validation", validation_code=_required(data, "validationCode", f"[{index}].data"),
                             validation_url=url if isinstance(url, str) else None)


def _grid_event(item: object, where: str) -> HookEvent:
    event = _object(item, where)
    if "specversion" in event:
        if event["specversion"] != "1.0":
            raise InvalidInput(f"{where}.specversion: only CloudEvents 1.0 is read", field=f"{where}.specversion")
        sender: Sender = "cloudevents"
        event_type, source = _required(event, "type", where), _required(event, "source", where)
        occurred_at = _time(event.get("time"), f"{where}.time")
    else:
        sender = "eventgrid"
        event_type, source = _required(event, "eventType", where), _text(event.get("topic"))
        occurred_at = _time(event.get("eventTime"), f"{where}.eventTime", required=True)
        if not isinstance(event.get("subject"), str):
            raise InvalidInput(f"{where}.subject must be a string", field=f"{where}.subject")
    subject = event["subject"] if isinstance(event.get("subject"), str) else ""
    event_id, data = _required(event, "id", where), event.get("data")
    fields: dict[str, object] = {"id": event_id, "type": event_type, "subject": subject, "source": source}
    if event_type in BLOB_EVENT_TYPES:
        blob = _BLOB_SUBJECT.fullmatch(subject)
        details = _mapping(data)
        fields |= {"container": blob and blob["container"], "blob": blob and blob["blob"],
                   "url": details.get("url"), "api": details.get("api")}
    return _event(sender, event_id, event_type, subject, occurred_at, data, fields)


# -- Azure Monitor action groups: the common alert schema, and budgets in both shapes ------------------------------

def parse_alert(value: object) -> HookEvent:
    """An action group's POST: an alert of the common alert schema (sender "alert", ``Fired`` or ``Resolved``), a
    budget alert of the common schema (monitoringService "CostAlerts"), or a legacy budget notification (both
    sender "budget")."""
    body = _object(value, "the alert")
    schema = body.get("schemaId")
    if schema == LEGACY_BUDGET_SCHEMA:
        return _legacy_budget(_object(body.get("data"), "data"))
    if schema != COMMON_ALERT_SCHEMA:
        raise InvalidInput(f"schemaId {_text(schema)[:64]!r} is not read: turn on the common alert schema in the "
                           f"action group ({COMMON_ALERT_SCHEMA})", field="schemaId")
    data = _object(body.get("data"), "data")
    essentials = _object(data.get("essentials"), "data.essentials")
    alert_id = _required(essentials, "alertId", "data.essentials")
    service = _required(essentials, "monitoringService", "data.essentials")
    condition = essentials.get("monitorCondition")
    if service == COST_ALERTS:
        return _cost_alert(alert_id, essentials, data)
    if condition not in (FIRED, RESOLVED):
        raise InvalidInput("data.essentials.monitorCondition must be Fired or Resolved",
                           field="data.essentials.monitorCondition")
    at = "resolvedDateTime" if condition == RESOLVED else "firedDateTime"
    targets = essentials.get("alertTargetIDs")
    subject = targets[0] if isinstance(targets, list) and targets else ""
    return _event("alert", f"{alert_id}:{condition}", service, _text(subject),
                  _time(essentials.get(at), f"data.essentials.{at}"), data, essentials)


def _cost_alert(alert_id: str, essentials: dict[str, Any], data: dict[str, Any]) -> HookEvent:
    fired = _required(essentials, "firedDateTime", "data.essentials")
    context = _object(data.get("alertContext"), "data.alertContext")
    budget = _object(context.get("AlertData"), "data.alertContext.AlertData")
    return _event("budget", f"{alert_id}:{fired}", COST_ALERTS, _text(budget.get("Scope")),
                  _time(fired, "data.essentials.firedDateTime"), data,
                  {"budgetName": budget.get("BudgetName"), "budget": budget.get("BudgetThreshold"),
                   "spent": budget.get("SpentAmount"), "threshold": budget.get("NotificationThresholdAmount"),
                   "unit": budget.get("Unit"), "thresholdType": budget.get("ThresholdType"),
                   "monitorCondition": essentials.get("monitorCondition")})


def _legacy_budget(data: dict[str, Any]) -> HookEvent:
    """The legacy shape has no id: the budget, its period and the threshold crossed name the notification."""
    name, start = _required(data, "BudgetName", "data"), _required(data, "BudgetStartDate", "data")
    threshold = _required(data, "NotificationThresholdAmount", "data")
    return _event("budget", f"{name}:{start}:{threshold}", LEGACY_BUDGET_SCHEMA, "", None, data,
                  {"budgetName": name, "budget": data.get("Budget"), "spent": data.get("SpendingAmount"),
                   "threshold": threshold, "unit": data.get("Unit")})


# -- Standard Webhooks and GitHub ----------------------------------------------------------------------------------

def parse_standard_webhook(value: object, webhook_id: str) -> HookEvent:
    """A Standard Webhooks payload: ``type``, ``timestamp`` and ``data`` (or the data at the top level)."""
    payload = _object(value, "the payload")
    event_type = _required(payload, "type", "payload")
    data = payload.get("data")
    if not isinstance(data, dict):
        data = {key: item for key, item in payload.items() if key not in ("type", "timestamp")}
    try:
        occurred_at = _time(payload.get("timestamp"), "payload.timestamp")
    except InvalidInput:
        occurred_at = None  # the time an event happened is the sender's business; the signed timestamp is checked
    return _event("standardwebhooks", webhook_id, event_type, "", occurred_at, data, {"type": event_type})


def parse_github(value: object, headers: Mapping[str, str]) -> HookEvent:
    """A GitHub delivery: the event is ``X-GitHub-Event`` (``ping`` when the hook is set up), the delivery
    ``X-GitHub-Delivery``."""
    names = _lower(headers)
    event, delivery = _required(names, "x-github-event", "headers"), _required(names, "x-github-delivery", "headers")
    if not isinstance(value, dict):
        raise InvalidInput("a GitHub payload is a JSON object (set the webhook's content type to application/json)")
    repository, sender = _mapping(value.get("repository")), _mapping(value.get("sender"))
    return _event("github", delivery, event, _text(repository.get("full_name")), None, value,
                  {"event": event, "action": value.get("action"), "repository": repository.get("full_name"),
                   "sender": sender.get("login")})
