"""Rules are data: parsed from JSON with errors that name the rule and the field, and decide() maps an event to
actions with reasons (or to nothing, and why). Events come from the providers' documented payloads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from arr_core.api import views
from arr_core.domain.hooks import rules as hook_rules
from arr_core.domain.hooks.rules import HookDecision, clean_text, decide, parse_rules, render
from arr_core.domain.hooks.senders import HookEvent, parse_alert, parse_event_grid, parse_github

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "webhooks"

# One rule per sender, as the documentation would show them.
RULES = [
    {"name": "model-landed", "sender": "eventgrid", "eventTypes": ["Microsoft.Storage.BlobCreated"],
     "subjectBeginsWith": "/blobServices/default/containers/out/blobs/", "subjectEndsWith": ".arrAsset",
     "action": {"kind": "start", "size": "premium", "leaseMinutes": 60,
                "labels": {"container": "{container}", "model": "{container}/{blob}"},
                "requestedBy": "eventgrid:{container}"}},
    {"name": "model-removed", "sender": "cloudevents", "eventTypes": ["Microsoft.Storage.BlobDeleted"],
     "action": {"kind": "stop", "scope": {"model": "{container}/{blob}"}, "reason": "{blob} was deleted"}},
    {"name": "budget-backstop", "sender": "budget",
     "action": {"kind": "stopAll", "reason": "budget {budgetName}: {spent} spent of {budget}"}},
    {"name": "cpu-alert", "sender": "alert", "when": {"alertRule": "test-metricAlertRule", "severity": "Sev3"},
     "action": {"kind": "stop", "scope": {"team": "render"}}},
    {"name": "ci-review", "sender": "github", "eventTypes": ["workflow_run"], "when": {"action": "completed"},
     "action": {"kind": "extend", "scope": {"repo": "{repository}"}, "leaseMinutes": 120}},
    {"name": "contact", "sender": "standardwebhooks", "eventTypes": ["contact.created"],
     "action": {"kind": "start"}},
]


def load(name: str) -> Any:
    return json.loads((REFERENCE / name).read_text())


def rules_of(*rules: dict[str, Any]) -> tuple[hook_rules.HookRule, ...]:
    return parse_rules(json.dumps(list(rules)))


def blob_created(subject: str) -> HookEvent:
    body = load("eventgrid-blob-created.json")
    body[0]["subject"] = subject
    return parse_event_grid(body, {}).events[0]


ALL = rules_of(*RULES)
LANDED = "/blobServices/default/containers/out/blobs/ships/frigate.arrAsset"


# -- decisions ---------------------------------------------------------------------------------------------------

def test_a_landed_model_starts_a_session_with_labels_from_the_event() -> None:
    decision = decide(ALL, blob_created(LANDED))
    (action,) = decision.actions
    assert decision.ignored is None
    assert (action.rule, action.kind, action.size, action.lease_minutes) == ("model-landed", "start", "Premium", 60)
    assert action.labels == {"container": "out", "model": "out/ships/frigate.arrAsset"}
    assert action.requested_by == "eventgrid:out"
    assert action.reason == f"hook rule model-landed: Microsoft.Storage.BlobCreated {LANDED}"


def test_event_grids_subject_filters_are_case_insensitive_as_event_grids_are() -> None:
    assert decide(ALL, blob_created(LANDED.upper().replace("/BLOBSERVICES/DEFAULT/CONTAINERS/OUT/BLOBS/",
                                                           "/blobServices/default/containers/OUT/blobs/"))).actions


def test_the_documented_blob_created_is_ignored_with_the_reason_of_the_near_miss() -> None:
    decision = decide(ALL, parse_event_grid(load("eventgrid-blob-created.json"), {}).events[0])
    assert decision.actions == ()
    assert decision.ignored == ("no rule takes this eventgrid event of type 'Microsoft.Storage.BlobCreated' (rule "
                                "'model-landed': the subject does not begin with "
                                "'/blobServices/default/containers/out/blobs/')")


def test_a_cloudevents_batch_decides_each_event_on_its_own() -> None:
    created, deleted = (decide(ALL, event) for event in parse_event_grid(load("cloudevents-batch.json"), {}).events)
    assert created.ignored is not None and "it takes Microsoft.Storage.BlobDeleted" in created.ignored
    (stop,) = deleted.actions
    assert (stop.kind, stop.scope, stop.reason) == ("stop", {"model": "testcontainer/file-to-delete.txt"},
                                                    "file-to-delete.txt was deleted")


@pytest.mark.parametrize("name", ["budget-common.json", "budget-legacy.json"])
def test_a_budget_alert_in_either_shape_stops_everything_not_kept_alive(name: str) -> None:
    (action,) = decide(ALL, parse_alert(load(name))).actions
    assert (action.rule, action.kind, action.scope) == ("budget-backstop", "stopAll", {})
    assert action.reason in ("budget Test_actual_cost_budget: $11,111.00 spent of $50.00",
                             "budget test-budgetName: 1111.32 spent of 10000")


def test_a_fired_alert_acts_and_its_resolution_never_does() -> None:
    (action,) = decide(ALL, parse_alert(load("alert-fired.json"))).actions
    assert (action.kind, action.scope) == ("stop", {"team": "render"})
    anything = rules_of({"name": "any-alert", "sender": "alert", "action": {"kind": "stopAll"}})
    resolved = decide(anything, parse_alert(load("alert-resolved.json")))
    assert resolved == HookDecision(ignored="alert 'WCUS-R2-Gen2' resolved: acknowledged, a resolved alert never acts")


def test_githubs_ping_never_acts_even_for_a_rule_of_every_github_event() -> None:
    anything = rules_of({"name": "any-github", "sender": "github", "action": {"kind": "stopAll"}})
    ping = parse_github(load("github-ping.json"), {"x-github-event": "ping", "x-github-delivery": "d"})
    assert decide(anything, ping).ignored == "GitHub's ping: the webhook is set up; a ping never acts"
    run = parse_github({"action": "completed", "repository": {"full_name": "o/r"}},
                       {"x-github-event": "workflow_run", "x-github-delivery": "d2"})
    (extend,) = decide(ALL, run).actions
    assert (extend.kind, extend.scope, extend.lease_minutes) == ("extend", {"repo": "o/r"}, 120)


def test_every_matching_rule_acts_in_order_and_defaults_name_the_rule() -> None:
    twice = rules_of(RULES[0], {**RULES[0], "name": "also", "action": {"kind": "start"}})
    first, second = decide(twice, blob_created(LANDED)).actions
    assert (first.rule, second.rule) == ("model-landed", "also")
    assert (second.requested_by, second.size, second.lease_minutes, second.labels) == ("hook:also", None, None, {})


def test_a_when_condition_that_differs_names_the_field() -> None:
    other = rules_of({**RULES[3], "when": {"severity": "Sev0"}})
    assert "severity is not 'Sev0'" in (decide(other, parse_alert(load("alert-fired.json"))).ignored or "")


def test_an_event_nobody_asked_for_is_ignored_with_the_reason() -> None:
    custom = parse_event_grid([{**load("eventgrid-blob-created.json")[0], "eventType": "Contoso.Thing"}], {}).events[0]
    assert decide((), custom).ignored == "no rule takes this eventgrid event of type 'Contoso.Thing'"


def test_the_decision_is_json_in_camel_case_for_a_dry_run() -> None:
    dumped = decide(ALL, blob_created(LANDED)).model_dump(mode="json", by_alias=True)
    assert dumped["actions"][0]["leaseMinutes"] == 60 and dumped["actions"][0]["requestedBy"] == "eventgrid:out"


# -- templated labels are what session labels allow --------------------------------------------------------------

NASTY = "a\x00b\x1b[31mc\u202eevil\u2066d\u200de\u0085f\ud800" + "g" * 400


def test_templated_values_are_cleaned_and_bounded() -> None:
    assert clean_text(NASTY) == "ab[31mcevildef" + "g" * (256 - 14)
    assert render("{{{blob}}}", {"blob": "x"}) == "{x}"
    assert render("{missing}-", {}) == "-"


def test_cleaned_labels_pass_the_apis_own_label_rules() -> None:
    """The domain cannot import arr_core/api/views.py; these hold its copy of the label rules to the API's."""
    rules = rules_of({"name": "nasty", "sender": "eventgrid", "eventTypes": ["Microsoft.Storage.BlobCreated"],
                      "action": {"kind": "start", "labels": {f"k.{i}:-_": "{blob}" for i in range(32)},
                                 "requestedBy": "{blob}", "reason": "{blob}{blob}"}})
    (action,) = decide(rules, blob_created(f"/blobServices/default/containers/c/blobs/{NASTY}")).actions
    request = views.StartSessionRequest(labels=action.labels, requested_by=action.requested_by, reason=action.reason)
    assert request.labels == action.labels and len(action.labels) == views.MAX_LABELS


# -- parsing rules -----------------------------------------------------------------------------------------------

def test_the_documented_rules_parse_with_camel_case_and_any_size_case() -> None:
    assert [rule.name for rule in ALL] == [rule["name"] for rule in RULES]
    assert ALL[0].event_types == ("Microsoft.Storage.BlobCreated",) and ALL[0].action.size == "Premium"
    assert parse_rules("[]") == ()


def rule(**changes: Any) -> dict[str, Any]:
    return {**RULES[0], **changes}


def start(**changes: Any) -> dict[str, Any]:
    return rule(action={**RULES[0]["action"], **changes})


@pytest.mark.parametrize(("text", "says"), [
    ("not json", "the hook rules are not JSON: Expecting value (line 1, column 1)"),
    ('{"name": "x"}', "a JSON array of rules"),
    ([rule(sender="teams")], "rule 'model-landed': sender: Input should be 'eventgrid'"),
    ([rule(subjectBeginWith="/x")], "rule 'model-landed': subjectBeginWith: Extra inputs are not permitted"),
    ([RULES[1], {k: v for k, v in RULES[0].items() if k != "name"}], "rule #1: name: Field required"),
    ([RULES[0], RULES[0]], "rule 'model-landed': an earlier rule has this name"),
    ([rule(name="has space")], "rule 'has space': name: String should match pattern"),
    ([rule(eventTypes=[])], "rule 'model-landed': eventTypes: Tuple should have at least 1 item"),
    ([start(labels={"x": "{blub}"})],
     ("rule 'model-landed': action.labels.x: unknown placeholder {blub} (eventgrid events of type "
      "Microsoft.Storage.BlobCreated carry api, blob, container, id, source, subject, type, url)")),
    ([start(labels={"x": "{container:>9}"})], "holds a placeholder other than {fieldName}"),
    ([start(labels={"x": "{container.real}"})], "holds a placeholder other than {fieldName}"),
    ([start(labels={"x": "{container!r}"})], "holds a placeholder other than {fieldName}"),
    ([start(labels={"x": "{0}"})], "holds a placeholder other than {fieldName}"),
    ([start(labels={"x": "{"})], "is not a template"),
    ([start(requestedBy="{container}", labels={"bad key": "v"})], "action.labels.bad key: String should match"),
    ([start(leaseMinutes=True)], "rule 'model-landed': action.leaseMinutes: Input should be a valid integer"),
    ([start(leaseMinutes=1441)], "action.leaseMinutes: Input should be less than or equal to 1440"),
    ([start(size="Huge")], "action.size: Input should be 'Standard' or 'Premium'"),
    ([rule(action={"kind": "reboot"})], "action: Input tag 'reboot' found using 'kind' does not match"),
    ([rule(action={"kind": "stop", "scope": {}})], "action.scope: Dictionary should have at least 1 item"),
    ([rule(action={"kind": "extend", "scope": {"a": "b"}})], "action.leaseMinutes: Field required"),
    ([rule(when={"blobName": "x"})], "when.blobName: no such field"),
    ([rule(eventTypes=["Contoso.Thing"])], "action.labels.container: unknown placeholder {container}"),
    ([rule(eventTypes=None)], "action.labels.container: unknown placeholder {container}"),
    ([{**RULES[3], "when": {"monitorCondition": "Resolved"}}], "could never act"),
    ([{**RULES[4], "eventTypes": ["ping"]}], "could never act"),
], ids=lambda value: value[:40] if isinstance(value, str) else None)
def test_a_bad_rule_is_refused_naming_the_rule_and_the_field(text: str | list[dict[str, Any]], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_rules(text if isinstance(text, str) else json.dumps(text))


def test_placeholders_of_fields_every_event_carries_are_fine_without_event_types() -> None:
    (parsed,) = rules_of(rule(eventTypes=None, action={"kind": "start", "labels": {"what": "{type} {subject}"}}))
    assert parsed.event_types is None and decide((parsed,), blob_created(LANDED)).actions[0].labels == {
        "what": f"Microsoft.Storage.BlobCreated {LANDED}"}
