"""What each sender says, read from the providers' documented payloads (tests/reference/webhooks/) into HookEvents:
delivery ids that survive retries, flattened fields, the Event Grid handshakes, and malformed bodies refused by name."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from arr_core.domain.hooks.senders import (
    EVENT_GRID_ORIGINS,
    MAX_DELIVERY_ID_CHARS,
    MAX_EVENTS_PER_DELIVERY,
    MAX_FIELD_CHARS,
    HookEvent,
    cloudevents_consent,
    fields_for,
    parse_alert,
    parse_event_grid,
    parse_github,
    parse_standard_webhook,
)
from arr_core.errors import InvalidInput

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "webhooks"
NOTIFICATION = {"aeg-event-type": "Notification"}
GITHUB = {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}


def load(name: str) -> Any:
    return json.loads((REFERENCE / name).read_text())


def grid_event(**changes: Any) -> dict[str, Any]:
    event = load("eventgrid-blob-created.json")[0]
    event.update(changes)
    return event


# -- Event Grid: the handshakes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{"aeg-event-type": "SubscriptionValidation"}, {}], ids=["header", "body only"])
def test_the_validation_handshake_yields_its_code_and_never_an_event(headers: dict[str, str]) -> None:
    delivery = parse_event_grid(load("eventgrid-subscription-validation.json"), headers)
    assert delivery.kind == "validation"
    assert delivery.validation_code == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
    assert delivery.validation_url is not None and delivery.validation_url.startswith(
        "https://rp-eastus2.eventgrid.azure.net:553/")
    assert delivery.events == ()


def test_a_validation_beside_real_events_still_yields_no_event() -> None:
    body = load("eventgrid-blob-created.json") + load("eventgrid-subscription-validation.json")
    delivery = parse_event_grid(body, NOTIFICATION)
    assert (delivery.kind, delivery.events, delivery.validation_code) == (
        "validation", (), "512d38b6-c7b8-40c8-89fe-f46f9e9622b6")


def test_a_validation_header_without_a_validation_event_is_malformed_not_a_notification() -> None:
    with pytest.raises(InvalidInput, match="subscription validation without"):
        parse_event_grid(load("eventgrid-blob-created.json"), {"aeg-event-type": "SubscriptionValidation"})
    body = load("eventgrid-subscription-validation.json")
    del body[0]["data"]["validationCode"]
    with pytest.raises(InvalidInput, match=r"\[0\]\.data\.validationCode is missing"):
        parse_event_grid(body, {})


def test_a_subscription_deletion_yields_nothing() -> None:
    deletion = parse_event_grid(load("eventgrid-blob-created.json"), {"aeg-event-type": "SubscriptionDeletion"})
    assert (deletion.kind, deletion.events) == ("deletion", ())
    deleted = grid_event(eventType="Microsoft.EventGrid.SubscriptionDeletedEvent", data={"eventSubscriptionId": "x"})
    assert parse_event_grid([deleted], NOTIFICATION).kind == "deletion"


def test_an_unknown_aeg_event_type_is_malformed() -> None:
    with pytest.raises(InvalidInput, match="aeg-event-type 'Hello' is not one Event Grid sends"):
        parse_event_grid(load("eventgrid-blob-created.json"), {"Aeg-Event-Type": "Hello"})


@pytest.mark.parametrize("origin", sorted(EVENT_GRID_ORIGINS))
def test_the_cloudevents_handshake_consents_to_each_event_grid_cloud(origin: str) -> None:
    assert cloudevents_consent({"WebHook-Request-Origin": origin.upper(), "WebHook-Request-Rate": "120"}) == {
        "WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*", "Allow": "POST, OPTIONS"}


@pytest.mark.parametrize("headers", [{"webhook-request-origin": "evil.example.com"},
                                     {"webhook-request-origin": "eventgrid.azure.net.evil.example.com"}, {}])
def test_no_consent_for_another_origin(headers: dict[str, str]) -> None:
    assert cloudevents_consent(headers) is None


# -- Event Grid: events, both schemas ----------------------------------------------------------------------------

BLOB_FIELDS = {"container": "test-container", "blob": "new-file.txt", "api": "PutBlockList",
               "url": "https://my-storage-account.blob.core.windows.net/testcontainer/new-file.txt"}


@pytest.mark.parametrize(("name", "sender"), [("eventgrid-blob-created.json", "eventgrid"),
                                              ("cloudevents-blob-created.json", "cloudevents")])
def test_a_blob_created_event_reads_the_same_in_both_schemas(name: str, sender: str) -> None:
    (event,) = parse_event_grid(load(name), NOTIFICATION).events
    assert (event.sender, event.delivery_id, event.type) == (
        sender, "831e1650-001e-001b-66ab-eeb76e069631", "Microsoft.Storage.BlobCreated")
    assert event.subject == "/blobServices/default/containers/test-container/blobs/new-file.txt"
    assert event.occurred_at == datetime(2017, 6, 26, 18, 41, 0, 958410, tzinfo=UTC)
    assert event.fields.items() >= BLOB_FIELDS.items()
    assert event.fields["source"].endswith("/storageAccounts/my-storage-account")
    assert event.data["eTag"] == '"0x8D4BCC2E4835CD0"'


def test_a_cloudevents_batch_yields_every_event_in_order() -> None:
    events = parse_event_grid(load("cloudevents-batch.json"), {}).events
    assert [(e.type, e.fields["container"], e.fields["blob"]) for e in events] == [
        ("Microsoft.Storage.BlobCreated", "test-container", "new-file.txt"),
        ("Microsoft.Storage.BlobDeleted", "testcontainer", "file-to-delete.txt")]


def test_a_blob_in_folders_keeps_its_path_and_an_unknown_event_type_parses() -> None:
    nested = grid_event(subject="/blobServices/default/containers/out/blobs/models/v2/ship.arrAsset")
    custom = grid_event(eventType="Contoso.Items.ItemReceived", subject="items/1", data=[1, 2])
    blob, item = parse_event_grid([nested, custom], NOTIFICATION).events
    assert (blob.fields["container"], blob.fields["blob"]) == ("out", "models/v2/ship.arrAsset")
    assert item.type == "Contoso.Items.ItemReceived" and set(item.fields) == {"id", "type", "subject", "source"}
    assert item.data == {}


@pytest.mark.parametrize("name", ["eventgrid-blob-created.json", "cloudevents-batch.json", "alert-fired.json",
                                  "alert-resolved.json", "budget-common.json", "budget-legacy.json"])
def test_every_field_a_sender_declares_is_present_and_a_string(name: str) -> None:
    body = load(name)
    events = (parse_alert(body),) if isinstance(body, dict) else parse_event_grid(body, {}).events
    for event in events:
        assert set(event.fields) == fields_for(event.sender, [event.type])
        assert all(isinstance(value, str) for value in event.fields.values())


@pytest.mark.parametrize(("body", "says"), [
    (grid_event(), "a JSON array of events, not one object"),
    ([], "holds no event"),
    ("[]", "not an Event Grid delivery"),
    ([grid_event(), 7], r"\[1\] must be a JSON object"),
    ([grid_event(eventTime="yesterday")], r"\[0\]\.eventTime is not an ISO 8601 time"),
    ([{k: v for k, v in grid_event().items() if k != "eventTime"}], r"\[0\]\.eventTime is not"),
    ([grid_event(id="")], r"\[0\]\.id is missing or empty"),
    ([grid_event(subject=None)], r"\[0\]\.subject must be a string"),
    ([{**load("cloudevents-blob-created.json"), "specversion": "0.3"}], "only CloudEvents 1.0"),
    ([{k: v for k, v in load("cloudevents-blob-created.json").items() if k != "source"}], r"\[0\]\.source is missing"),
    ([grid_event(id="x" * (MAX_DELIVERY_ID_CHARS + 1))], "longer than"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_a_malformed_event_grid_body_is_refused_naming_what_is_wrong(body: object, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        parse_event_grid(body, NOTIFICATION)


def test_more_events_than_event_grid_batches_is_refused_before_any_is_read() -> None:
    with pytest.raises(InvalidInput, match=f"{MAX_EVENTS_PER_DELIVERY + 1} events, more than"):
        parse_event_grid([None] * (MAX_EVENTS_PER_DELIVERY + 1), NOTIFICATION)


def test_strings_copied_into_fields_are_bounded() -> None:
    long_blob = "b" * (3 * MAX_FIELD_CHARS)
    (event,) = parse_event_grid([grid_event(subject=f"/blobServices/default/containers/c/blobs/{long_blob}")],
                                NOTIFICATION).events
    assert len(event.subject) == len(event.fields["subject"]) == MAX_FIELD_CHARS
    assert len(event.fields["blob"]) == MAX_FIELD_CHARS


def test_an_event_is_immutable() -> None:
    (event,) = parse_event_grid(load("eventgrid-blob-created.json"), NOTIFICATION).events
    with pytest.raises(ValidationError, match="frozen"):
        event.type = "Microsoft.Storage.BlobDeleted"  # type: ignore[misc]
    assert event == HookEvent.model_validate(event.model_dump(by_alias=True))  # and round-trips in camelCase


# -- Azure Monitor: alerts and budgets ---------------------------------------------------------------------------

def test_a_fired_alert() -> None:
    event = parse_alert(load("alert-fired.json"))
    assert (event.sender, event.type) == ("alert", "Platform")
    assert event.delivery_id == ("/subscriptions/11111111-1111-1111-1111-111111111111/providers/"
                                 "Microsoft.AlertsManagement/alerts/12345678-1234-1234-1234-1234567890ab:Fired")
    assert event.fields | {"alertId": ""} == {
        "alertId": "", "alertRule": "test-metricAlertRule", "severity": "Sev3", "signalType": "Metric",
        "monitorCondition": "Fired", "monitoringService": "Platform", "description": "Alert rule description"}
    assert event.subject.endswith("/storageAccounts/test-storageAccount")
    assert event.occurred_at == datetime(2021, 11, 15, 9, 35, 24, 346850, tzinfo=UTC)


def test_a_resolved_alert_has_its_own_delivery_id_and_its_resolution_time() -> None:
    event = parse_alert(load("alert-resolved.json"))
    assert event.delivery_id.endswith("b9569717-bc32-442f-add5-83a997729330:Resolved")
    assert event.fields["monitorCondition"] == "Resolved"
    assert event.occurred_at == datetime(2019, 3, 22, 14, 3, 16, 224631, tzinfo=UTC)
    fired = copy.deepcopy(load("alert-resolved.json"))
    fired["data"]["essentials"]["monitorCondition"] = "Fired"
    assert parse_alert(fired).delivery_id == event.delivery_id.removesuffix("Resolved") + "Fired"


def test_a_common_schema_budget_alert() -> None:
    event = parse_alert(load("budget-common.json"))
    assert (event.sender, event.type, event.subject) == (
        "budget", "CostAlerts", "/subscriptions/11111111-1111-1111-1111-111111111111/")
    assert event.delivery_id == ("/subscriptions/11111111-1111-1111-1111-111111111111/providers/"
                                 "Microsoft.CostManagement/alerts/Test_Alert:2022-12-07T21:13:20.645Z")
    assert event.fields == {"budgetName": "Test_actual_cost_budget", "budget": "$50.00", "spent": "$11,111.00",
                            "threshold": "$25.00", "unit": "USD", "thresholdType": "Actual", "monitorCondition": ""}


def test_a_legacy_budget_notification_is_named_by_budget_period_and_threshold() -> None:
    event = parse_alert(load("budget-legacy.json"))
    assert (event.sender, event.type, event.occurred_at) == ("budget", "AIP Budget Notification", None)
    assert event.delivery_id == "test-budgetName:11/17/2021 5:40:29 PM -08:00:8000.0"
    assert event.fields == {"budgetName": "test-budgetName", "budget": "10000", "spent": "1111.32",
                            "threshold": "8000.0", "unit": "USD", "thresholdType": "", "monitorCondition": ""}


def without(name: str, *path: str) -> dict[str, Any]:
    body = load(name)
    *parents, last = path
    target = body
    for key in parents:
        target = target[key]
    del target[last]
    return body


@pytest.mark.parametrize(("body", "says"), [
    ([load("alert-fired.json")], "the alert must be a JSON object"),
    ({**load("alert-fired.json"), "schemaId": "AzureMonitorMetricAlert"}, "turn on the common alert schema"),
    (without("alert-fired.json", "data", "essentials", "monitorCondition"), "must be Fired or Resolved"),
    (without("alert-fired.json", "data", "essentials", "alertId"), r"data\.essentials\.alertId is missing"),
    (without("alert-fired.json", "data", "essentials"), r"data\.essentials must be a JSON object"),
    (without("budget-common.json", "data", "alertContext", "AlertData"), r"AlertData must be a JSON object"),
    (without("budget-common.json", "data", "essentials", "firedDateTime"), r"firedDateTime is missing"),
    (without("budget-legacy.json", "data", "BudgetStartDate"), r"data\.BudgetStartDate is missing"),
])
def test_a_malformed_alert_is_refused_naming_what_is_wrong(body: object, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        parse_alert(body)


# -- Standard Webhooks and GitHub --------------------------------------------------------------------------------

def test_a_standard_webhooks_payload() -> None:
    event = parse_standard_webhook(load("standard-webhooks-contact-created.json"), "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
    assert (event.sender, event.delivery_id, event.type) == (
        "standardwebhooks", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", "contact.created")
    assert event.fields == {"type": "contact.created"}
    assert event.occurred_at == datetime(2022, 11, 3, 20, 26, 10, 344522, tzinfo=UTC)
    assert event.data["fullName"] == "John Smith"


def test_a_standard_webhooks_payload_without_a_data_object_keeps_its_top_level() -> None:
    event = parse_standard_webhook({"type": "invoice.paid", "timestamp": "soon", "amount": 5}, "msg_1")
    assert (event.data, event.occurred_at) == ({"amount": 5}, None)
    with pytest.raises(InvalidInput, match=r"payload\.type is missing"):
        parse_standard_webhook({"data": {}}, "msg_1")


def test_githubs_ping() -> None:
    event = parse_github(load("github-ping.json"), GITHUB)
    assert (event.sender, event.delivery_id, event.type, event.subject) == (
        "github", "72d3162e-cc78-11e3-81ab-4c9367dc0958", "ping", "Octocoders/Hello-World")
    assert event.fields == {"event": "ping", "action": "", "repository": "Octocoders/Hello-World",
                            "sender": "Codertocat"}


@pytest.mark.parametrize(("body", "headers", "says"), [
    ({}, {"X-GitHub-Delivery": "d"}, "x-github-event is missing"),
    ({}, {"X-GitHub-Event": "push"}, "x-github-delivery is missing"),
    ("payload=%7B%7D", GITHUB, "content type to application/json"),
])
def test_a_malformed_github_delivery_is_refused(body: object, headers: dict[str, str], says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        parse_github(body, headers)
