"""The Logic Apps samples and the curl examples of docs/integrations.md, cross-checked against our own contract.

No Logic Apps schema or engine can be had offline, so each sample in ``samples/logic-app/`` is walked and every
call it makes to this app is resolved against the served OpenAPI document (``openapi_document``):

- an HTTP action's or an HTTP Webhook's ``subscribe`` method and path (``@{parameters('baseUrl')}/api/...``, query
  stripped) is an operation; its query parameters and headers are the operation's (plus the function key:
  ``code`` or ``x-functions-key``); its JSON body fits the operation's body schema, field by field, recursively
  through the generated definitions (unknown fields, literal types and enums, required fields);
- every expression that reads a response (``body('X')?['a']?['b']``, ``outputs('X')['body']...``,
  ``triggerBody()?[...]``) names properties that exist: in the operation's 2xx schema for an HTTP action, in the
  StatusNotification the app POSTs for an HTTP Webhook (whose output is the callback's body, not the subscribe
  answer), in the named definition for a Request trigger whose schema carries that title;
- every ``runAfter`` names an action of the same scope with valid statuses; every ``parameters('p')`` is declared;
- a sample that starts a session stops that same session in an action that runs after the work has Succeeded,
  Failed or TimedOut, and still fails the run when the work failed (a Terminate after the stop).

Every parameter of a sample has a default, as the portal wants before it saves a definition; a value the user must
give after import (the app's URL, the function key, where messages go) defaults to a placeholder that reaches
nothing: ``""`` or an ``https://...invalid`` address.

Mutated copies of the samples (a misspelled field, a wrong path, a stop that only runs on success, a parameter
without a default, ...) must fail the same checks: the negative controls.

``samples/webhook_receiver.py`` is run as a process on a free port and fed deliveries to several paths: it prints
each with its path, event id and type.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from blueprints.openapi import openapi_document
from devhost.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
SAMPLES_DIR = ROOT / "samples" / "logic-app"
DOCS = ROOT / "docs" / "integrations.md"
SCHEMA = "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#"
BASE = "@{parameters('baseUrl')}"
RUN_AFTER_STATUSES = {"Succeeded", "Failed", "Skipped", "TimedOut"}
# The function key travels as the `code` query parameter or the `x-functions-key` header (API.md, section 1);
# the document declares the header as its security scheme. These headers any client may send.
KEY_QUERY = "code"
KEY_PARAMETER = "@parameters('functionKey')"
GENERIC_HEADERS = {"content-type", "accept"}
# The body fields in which the app is given a URL to POST notifications to (the HTTP Webhook's listCallbackUrl()).
CALLBACK_FIELDS = {("StartSession", "callbackUrl"), ("SubscribeSessionChanges", "notificationUrl")}

DOC = openapi_document("https://app.example/api/")
AUTH_HEADER = DOC["securityDefinitions"]["functionKey"]["name"].lower()
NOTIFICATION = DOC["paths"]["/subscriptions"]["x-ms-notification-content"]["schema"]


def sample_paths() -> list[Path]:
    return sorted(SAMPLES_DIR.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


# -- the OpenAPI side ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.spec["operationId"])

    def params(self, where: str) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in self.spec.get("parameters", []) if p["in"] == where}

    def body_param(self) -> dict[str, Any] | None:
        return next(iter(self.params("body").values()), None)

    def success_schemas(self) -> list[dict[str, Any]]:
        return [r["schema"] for code, r in self.spec["responses"].items() if code.startswith("2") and "schema" in r]

    def is_async(self) -> bool:
        """Answers 202 with a Location to poll: the Logic Apps asynchronous pattern."""
        accepted = self.spec["responses"].get("202", {})
        return "Location" in accepted.get("headers", {})


def operations() -> list[Operation]:
    return [Operation(method, path, spec) for path, item in DOC["paths"].items()
            for method, spec in item.items() if isinstance(spec, dict) and "operationId" in spec]


def split_path(path: str) -> list[str]:
    """Segments of a path, keeping ``@{...}`` expressions whole (they may contain slashes)."""
    segments, current, depth = [], "", 0
    for char in path:
        if char == "{" and current.endswith("@"):
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        if char == "/" and not depth:
            segments.append(current)
            current = ""
        else:
            current += char
    segments.append(current)
    return [s for s in segments if s != ""]


def find_operation(method: str, path: str) -> Operation | None:
    """The operation for ``method`` on ``path`` (relative to the basePath); a path segment that is an expression or
    a placeholder (``<id>``, ``$ID``) matches a template parameter only."""
    parts = split_path(path)
    for op in operations():
        template = split_path(op.path)
        if op.method != method.lower() or len(template) != len(parts):
            continue
        if all(t.startswith("{") or (t == p) for t, p in zip(template, parts, strict=True)):
            return op
    return None


def definition(ref: str) -> dict[str, Any]:
    prefix = "#/definitions/"
    assert ref.startswith(prefix), ref
    return DOC["definitions"][ref[len(prefix):]]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema with ``$ref`` and single-member ``allOf`` (pydantic's way of describing a referenced field) followed."""
    while True:
        if "$ref" in schema:
            schema = definition(schema["$ref"])
        elif "allOf" in schema and len(schema["allOf"]) == 1 and "properties" not in schema:
            schema = schema["allOf"][0]
        else:
            return schema


def schema_name(schema: dict[str, Any]) -> str:
    return str(resolve(schema).get("title", "the schema"))


def child(schema: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The schema of property ``key`` of an object schema, or None when it has no such property."""
    schema = resolve(schema)
    if key in schema.get("properties", {}):
        return schema["properties"][key]
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        return extra
    return None


def is_expression(value: Any) -> bool:
    """A workflow expression (``@...``) or a string with ``@{...}`` interpolations: its value is known at run time."""
    return isinstance(value, str) and ((value.startswith("@") and not value.startswith("@@")) or "@{" in value)


def is_placeholder(value: Any) -> bool:
    """A value a reader of the docs fills in: ``<id>``, ``$SESSION``."""
    return isinstance(value, str) and (bool(re.search(r"<[^>]+>", value)) or "$" in value)


def check_value(value: Any, schema: dict[str, Any], where: str, problems: list[str]) -> None:
    """``value`` (a literal, possibly with expressions inside) fits ``schema``: objects field by field."""
    schema = resolve(schema)
    if is_expression(value) or is_placeholder(value):
        return
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected an object for {schema_name(schema)}, got {value!r}")
            return
        for key, item in value.items():
            sub = child(schema, key)
            if sub is None:
                problems.append(f"{where}: {schema_name(schema)} has no field {key!r}")
            else:
                check_value(item, sub, f"{where}.{key}", problems)
        missing = [k for k in schema.get("required", []) if k not in value]
        if missing:
            problems.append(f"{where}: {schema_name(schema)} requires {missing}")
        return
    if value is None:
        if not schema.get("x-nullable"):
            problems.append(f"{where}: null is not allowed")
        return
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
    }
    if kind in checks and not checks[kind](value):
        problems.append(f"{where}: expected {kind}, got {value!r}")
        return
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        problems.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, str) and len(value) > schema.get("maxLength", len(value)):
        problems.append(f"{where}: longer than {schema['maxLength']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not (
            schema.get("minimum", value) <= value <= schema.get("maximum", value)):
        problems.append(f"{where}: {value} is out of range")
    if kind == "array":
        for i, item in enumerate(value):
            check_value(item, schema.get("items", {}), f"{where}[{i}]", problems)


def check_path(schema: dict[str, Any], keys: list[str], where: str, problems: list[str]) -> None:
    """``keys`` walk from ``schema`` through existing properties."""
    current = schema
    for depth, key in enumerate(keys):
        sub = child(current, key)
        if sub is None:
            trail = "".join(f"['{k}']" for k in keys[:depth + 1])
            problems.append(f"{where}: {schema_name(current)} has no property {key!r} ({trail})")
            return
        current = sub


def check_schema_subset(declared: dict[str, Any], actual: dict[str, Any], where: str, problems: list[str]) -> None:
    """Every property a workflow's own JSON schema declares exists in ``actual`` (recursively for objects)."""
    for key, sub in declared.get("properties", {}).items():
        target = child(actual, key)
        if target is None:
            problems.append(f"{where}: {schema_name(actual)} has no property {key!r}")
        elif "properties" in sub:
            check_schema_subset(sub, target, f"{where}.{key}", problems)


# -- requests: one shape for a sample's HTTP call and a curl line --------------------------------------------

@dataclass
class Call:
    """One HTTP request to this app, wherever it is written down."""

    where: str
    method: str
    path: str  # after the basePath, e.g. /sessions/@{outputs('Session_id')}/stop
    query: list[tuple[str, Any]] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    body: Any = None
    has_body: bool = False


def check_call(call: Call, problems: list[str]) -> Operation | None:
    op = find_operation(call.method, call.path)
    if op is None:
        problems.append(f"{call.where}: no operation {call.method.upper()} {DOC['basePath']}{call.path} in the "
                        "OpenAPI document")
        return None
    allowed_query = set(op.params("query")) | {KEY_QUERY}
    for name, _ in call.query:
        if name not in allowed_query:
            problems.append(f"{call.where}: {op.id} has no query parameter {name!r}")
    allowed_headers = {n.lower() for n in op.params("header")} | {AUTH_HEADER} | GENERIC_HEADERS
    for name in call.headers:
        if name.lower() not in allowed_headers:
            problems.append(f"{call.where}: {op.id} takes no header {name!r}")
    body_param = op.body_param()
    if ("payload", "ignore") in call.query:  # the app does not parse the body at all (webhook senders)
        pass
    elif call.has_body:
        if body_param is None:
            problems.append(f"{call.where}: {op.id} takes no body")
        else:
            check_value(call.body, body_param["schema"], f"{call.where} body", problems)
    elif body_param is not None and body_param.get("required"):
        problems.append(f"{call.where}: {op.id} requires a body")
    return op


def sample_call(where: str, inputs: dict[str, Any], problems: list[str]) -> Call | None:
    """The call an HTTP action (or a webhook's subscribe) makes, when it is to this app; None for other URLs."""
    uri = inputs.get("uri", inputs.get("url"))
    if not isinstance(uri, str):
        problems.append(f"{where}: no uri")
        return None
    if not uri.startswith(BASE):
        if "/api/" in uri:
            problems.append(f"{where}: calls the app without the baseUrl parameter: {uri}")
        return None
    rest = uri[len(BASE):]
    path, _, query = rest.partition("?")
    if not path.startswith(DOC["basePath"] + "/"):
        problems.append(f"{where}: {path!r} is not under the basePath {DOC['basePath']}")
        return None
    pairs = parse_qsl(query, keep_blank_values=True) + list((inputs.get("queries") or {}).items())
    return Call(where, str(inputs.get("method", "")), path[len(DOC["basePath"]):], pairs,
                list(inputs.get("headers") or {}), inputs.get("body"), "body" in inputs)


# -- the workflow side ------------------------------------------------------------------------------------------

@dataclass
class Node:
    """An action (or the trigger) with where it sits: its container's actions and its top-level ancestor."""

    name: str
    spec: dict[str, Any]
    siblings: dict[str, Any]
    top: str
    container: str


def walk(actions: dict[str, Any], container: str = "the workflow", top: str | None = None) -> Iterator[Node]:
    for name, spec in actions.items():
        yield Node(name, spec, actions, top or name, container)
        nested: list[tuple[str, dict[str, Any]]] = [(name, spec.get("actions") or {})]
        if spec.get("type") == "If":
            nested.append((f"{name} (else)", (spec.get("else") or {}).get("actions") or {}))
        if spec.get("type") == "Switch":
            nested += [(f"{name} ({case})", c.get("actions") or {}) for case, c in (spec.get("cases") or {}).items()]
            nested.append((f"{name} (default)", (spec.get("default") or {}).get("actions") or {}))
        for label, inner in nested:
            yield from walk(inner, label, top or name)


def own(spec: dict[str, Any]) -> dict[str, Any]:
    """An action without the actions nested in it (they are nodes of their own)."""
    return {k: v for k, v in spec.items() if k not in ("actions", "else", "cases", "default")}


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


REFERENCE = re.compile(r"\b(body|outputs|actions|result|triggerBody|triggerOutputs|parameters)\(\s*(?:'([^']*)')?\s*\)")
ACCESSOR = re.compile(r"\s*\??\s*(?:\[\s*'([^']*)'\s*\]|\.([A-Za-z_]\w*))")


def references(text: str) -> Iterator[tuple[str, str | None, list[str]]]:
    """``(function, name, [keys...])`` for every reference in an expression string."""
    for match in REFERENCE.finditer(text):
        keys, pos = [], match.end()
        while accessor := ACCESSOR.match(text, pos):
            keys.append(accessor.group(1) if accessor.group(1) is not None else accessor.group(2))
            pos = accessor.end()
        yield match.group(1), match.group(2), keys


@dataclass
class Analysis:
    problems: list[str] = field(default_factory=list)
    nodes: dict[str, Node] = field(default_factory=dict)
    calls: dict[str, Operation] = field(default_factory=dict)  # action name -> the operation it calls
    outputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # action name -> its body's schemas
    trigger_body: dict[str, Any] | None = None


def analyse(workflow: dict[str, Any]) -> Analysis:
    """Every problem the cross-check finds in a workflow (``{"definition": ..., "parameters": ...}``)."""
    result = Analysis()
    problems = result.problems
    definition_ = workflow.get("definition")
    if not isinstance(definition_, dict):
        return Analysis(problems=["no definition"])
    if definition_.get("$schema") != SCHEMA:
        problems.append(f"$schema is {definition_.get('$schema')!r}, not the 2016-06-01 workflow definition schema")
    if not definition_.get("contentVersion"):
        problems.append("no contentVersion")
    declared = definition_.get("parameters") or {}
    triggers = definition_.get("triggers") or {}
    if len(triggers) != 1:
        problems.append(f"{len(triggers)} triggers; the designer shows one")

    for name, trigger in triggers.items():
        analyse_trigger(name, trigger, result)

    for node in walk(definition_.get("actions") or {}):
        if node.name in result.nodes:
            problems.append(f"two actions named {node.name!r}")
        result.nodes[node.name] = node
    for node in result.nodes.values():
        analyse_action(node, result)

    for node in result.nodes.values():
        for other, statuses in (node.spec.get("runAfter") or {}).items():
            if other not in node.siblings:
                problems.append(f"{node.name}: runs after {other!r}, which is not an action of {node.container}")
            if not statuses or not set(statuses) <= RUN_AFTER_STATUSES:
                problems.append(f"{node.name}: runAfter {other!r} has statuses {statuses}")

    everything = [*triggers.values(), *(own(n.spec) for n in result.nodes.values())]
    for text in (s for spec in everything for s in strings(spec)):
        for function, name, keys in references(text):
            check_reference(function, name, keys, text, declared, result)
    check_lifecycle(result)
    result.problems[:] = list(dict.fromkeys(problems))
    return result


def analyse_trigger(name: str, trigger: dict[str, Any], result: Analysis) -> None:
    kind = trigger.get("type")
    if kind == "Request":
        schema = (trigger.get("inputs") or {}).get("schema") or {}
        title = schema.get("title")
        if title is not None:
            if title not in DOC["definitions"]:
                result.problems.append(f"{name}: its schema's title {title!r} is not a definition of the document")
            else:
                actual = {"$ref": f"#/definitions/{title}"}
                check_schema_subset(schema, actual, name, result.problems)
                result.trigger_body = actual
    elif kind == "HttpWebhook" and analyse_webhook(name, trigger.get("inputs") or {}, result) is not None:
        result.trigger_body = NOTIFICATION


def analyse_webhook(name: str, inputs: dict[str, Any], result: Analysis) -> Operation | None:
    """An HTTP Webhook's subscribe is a call to this app that hands it ``listCallbackUrl()`` in a callback field;
    its output is what the app POSTs there (a StatusNotification). Its unsubscribe must not stop the session:
    Logic Apps also unsubscribes when the webhook action *succeeds* (connectors-native-webhook.md), which would
    stop every session as soon as it is Ready."""
    problems = result.problems
    call = sample_call(f"{name} subscribe", inputs.get("subscribe") or {}, problems)
    op = check_call(call, problems) if call else None
    if call is not None:
        check_key(f"{name} subscribe", inputs.get("subscribe") or {}, problems)
    if op is None:
        return None
    body = call.body if call and isinstance(call.body, dict) else {}
    fields = [k for k, v in body.items() if isinstance(v, str) and "listCallbackUrl()" in v]
    if not fields or any((op.id, f) not in CALLBACK_FIELDS for f in fields):
        problems.append(f"{name}: listCallbackUrl() must be given in one of {sorted(CALLBACK_FIELDS)}, not {fields}")
    if "unsubscribe" in inputs:
        unsubscribe = sample_call(f"{name} unsubscribe", inputs["unsubscribe"] or {}, problems)
        stop = check_call(unsubscribe, problems) if unsubscribe else None
        if stop is not None and stop.id == "StopSession":
            problems.append(f"{name}: its unsubscribe stops the session; Logic Apps also unsubscribes when the "
                            "webhook succeeds, which would stop the session as soon as it is Ready")
    return op


def check_key(where: str, inputs: dict[str, Any], problems: list[str]) -> None:
    """A call to the app in Azure carries the function key, from the secure parameter, in the header or as
    ``code`` (which the app copies into the Location it answers, so that the asynchronous pattern's polling keeps
    it)."""
    headers = {k.lower(): v for k, v in (inputs.get("headers") or {}).items()}
    keys = [headers.get(AUTH_HEADER), (inputs.get("queries") or {}).get(KEY_QUERY)]
    if KEY_PARAMETER not in keys:
        problems.append(f"{where}: sends no function key ({AUTH_HEADER} or {KEY_QUERY} = {KEY_PARAMETER})")


def analyse_action(node: Node, result: Analysis) -> None:
    kind = node.spec.get("type")
    inputs = node.spec.get("inputs") or {}
    if kind == "Http":
        call = sample_call(node.name, inputs, result.problems)
        op = check_call(call, result.problems) if call else None
        if call is not None:
            check_key(node.name, inputs, result.problems)
        if op is not None:
            result.calls[node.name] = op
            result.outputs[node.name] = op.success_schemas()
            if op.is_async() and "DisableAsyncPattern" in str(node.spec.get("operationOptions", "")):
                result.problems.append(f"{node.name}: DisableAsyncPattern: the action would return the Starting "
                                       f"session of {op.id} (hostname null) instead of following Location")
    elif kind == "HttpWebhook":
        op = analyse_webhook(node.name, inputs, result)
        if op is not None:
            result.calls[node.name] = op
            result.outputs[node.name] = [NOTIFICATION]


def check_reference(function: str, name: str | None, keys: list[str], text: str, declared: dict[str, Any],
                    result: Analysis) -> None:
    problems = result.problems
    if function == "parameters":
        if name not in declared:
            problems.append(f"parameters({name!r}) is not declared (in {text[:80]!r})")
        return
    if function in ("triggerBody", "triggerOutputs"):
        if function == "triggerOutputs":
            if not keys or keys[0] != "body":
                return
            keys = keys[1:]
        if result.trigger_body is not None and keys:
            check_path(result.trigger_body, keys, f"{function}() in {text[:80]!r}", problems)
        return
    if name not in result.nodes:
        problems.append(f"{function}({name!r}) names no action (in {text[:80]!r})")
        return
    if function == "outputs":
        if not keys or keys[0] != "body":
            return
        keys = keys[1:]
    if function in ("body", "outputs") and keys:
        for schema in result.outputs.get(name, []):
            check_path(schema, keys, f"{function}({name!r}) in {text[:80]!r}", problems)


def check_lifecycle(result: Analysis) -> None:
    """A started session is stopped after the work, whatever became of it, and a failed work still fails the run."""
    problems = result.problems
    starts = [n for n, op in result.calls.items() if op.id == "StartSession"]
    stops = [n for n, op in result.calls.items() if op.id == "StopSession"]
    for start in starts:
        work = result.nodes[start].top
        guarded = [s for s in stops if result.nodes[s].top != work
                   and {"Succeeded", "Failed", "TimedOut"} <= set(result.nodes[result.nodes[s].top].spec
                                                                   .get("runAfter", {}).get(work, []))]
        if not guarded:
            problems.append(f"{start}: no StopSession runs after {work!r} has Succeeded, Failed and TimedOut")
        for stop in guarded:
            if not same_session(result, start, stop):
                problems.append(f"{stop}: does not stop the same session as {start}")
        terminates = [n for n in result.nodes.values() if n.container == "the workflow"
                      and n.spec.get("type") == "Terminate" and (n.spec.get("inputs") or {}).get("runStatus") == "Failed"
                      and {"Failed", "TimedOut"} <= set((n.spec.get("runAfter") or {}).get(work, []))]
        if not terminates:
            problems.append(f"{start}: no Terminate (Failed) after {work!r} fails: the stop would mark the run "
                            "Succeeded")


def same_session(result: Analysis, start: str, stop: str) -> bool:
    """The stop's ``{id}`` is the id the start chose (``sessionId``) or the id the start answered."""
    spec = result.nodes[start].spec["inputs"]
    body = (spec.get("subscribe", spec).get("body") or {})
    uri = result.nodes[stop].spec["inputs"]["uri"]
    segments = split_path(uri[len(BASE) + len(DOC["basePath"]):])
    session = segments[1] if len(segments) > 1 else ""
    if body.get("sessionId") and session == body["sessionId"]:
        return True
    return any(fn in ("body", "outputs") and name == start and keys[-1:] == ["id"]
               for fn, name, keys in references(session))


def problems_of(workflow: dict[str, Any]) -> list[str]:
    return analyse(workflow).problems


# -- the samples ----------------------------------------------------------------------------------------------

def test_there_are_samples() -> None:
    names = {p.name for p in sample_paths()}
    assert {"start-use-stop.json", "start-webhook-stop.json", "session-status-receiver.json"} <= names


@pytest.mark.parametrize("path", sample_paths(), ids=lambda p: p.name)
def test_sample_matches_the_contract(path: Path) -> None:
    assert problems_of(load(path)) == []


# Parameters the user must set after import: their defaults are placeholders that reach nothing.
TO_SET = {"baseUrl": "String", "functionKey": "SecureString", "notificationUrl": "SecureString"}
PARAMETER_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "securestring": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def is_placeholder_default(value: Any) -> bool:
    """Empty, or an https address on ``.invalid`` (a name that never resolves)."""
    return value == "" or (isinstance(value, str) and urlsplit(value).scheme == "https"
                           and (urlsplit(value).hostname or "").endswith(".invalid"))


def parameter_problems(workflow: dict[str, Any]) -> list[str]:
    """Every parameter has a default of its type (the portal refuses to save a definition with a parameter that has
    no value); what must be set after import is a placeholder, said so in its description, and the secrets are
    secure: an unedited import sends no key anywhere."""
    problems = []
    for name, spec in (workflow["definition"].get("parameters") or {}).items():
        kind = str(spec.get("type", "")).lower()
        if "defaultValue" not in spec:
            problems.append(f"{name}: no defaultValue")
        elif kind in PARAMETER_TYPES and not PARAMETER_TYPES[kind](spec["defaultValue"]):
            problems.append(f"{name}: the default {spec['defaultValue']!r} is not a {spec['type']}")
        if name not in TO_SET:
            continue
        if kind != TO_SET[name].lower():
            problems.append(f"{name}: a {spec.get('type')}, not a {TO_SET[name]}")
        if "defaultValue" in spec and not is_placeholder_default(spec["defaultValue"]):
            problems.append(f"{name}: the default {spec['defaultValue']!r} is not a placeholder (\"\" or "
                            "https://....invalid)")
        if "after import" not in (spec.get("metadata") or {}).get("description", ""):
            problems.append(f"{name}: its description does not say to set it after import")
    return problems


@pytest.mark.parametrize("path", sample_paths(), ids=lambda p: p.name)
def test_every_parameter_has_a_default_and_the_ones_to_set_are_placeholders(path: Path) -> None:
    assert parameter_problems(load(path)) == []


def test_the_samples_declare_the_parameters_to_set() -> None:
    declared = {name for path in sample_paths() for name in load(path)["definition"]["parameters"]}
    assert set(TO_SET) <= declared


def _parameter(name: str, **changes: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(workflow: dict[str, Any]) -> None:
        spec = workflow["definition"]["parameters"][name]
        for key, value in changes.items():
            if value is None:
                spec.pop(key, None)
            else:
                spec[key] = value
    return mutate


@pytest.mark.parametrize(("mutate", "expected"), [
    (_parameter("functionKey", defaultValue=None), "functionKey: no defaultValue"),
    (_parameter("notificationUrl", defaultValue=None), "notificationUrl: no defaultValue"),
    (_parameter("workMinutes", defaultValue=None), "workMinutes: no defaultValue"),
    (_parameter("workMinutes", defaultValue="60"), "not a Int"),
    (_parameter("functionKey", defaultValue="a-real-looking-key"), "not a placeholder"),
    (_parameter("baseUrl", defaultValue="https://func-arr-abc123.azurewebsites.net"), "not a placeholder"),
    (_parameter("notificationUrl", defaultValue="http://hooks.invalid"), "not a placeholder"),
    (_parameter("functionKey", type="String"), "not a SecureString"),
    (_parameter("functionKey", metadata={"description": "A function key."}), "after import"),
], ids=["key-without-default", "url-without-default", "minutes-without-default", "default-of-another-type",
        "a-key-as-default", "a-real-app-as-default", "http-placeholder", "key-not-secure", "no-set-after-import"])
def test_broken_parameters_fail(mutate: Callable[[dict[str, Any]], None], expected: str) -> None:
    workflow = copy.deepcopy(load(SAMPLES_DIR / "start-use-stop.json"))
    mutate(workflow)
    problems = parameter_problems(workflow)
    assert any(expected in p for p in problems), problems


def test_each_sample_does_its_job() -> None:
    """The async sample follows StartSession's 202 + Location; the webhook sample hands callbackUrl to the start;
    the receiver reads StatusNotifications."""
    start_use_stop = analyse(load(SAMPLES_DIR / "start-use-stop.json"))
    assert {op.id for op in start_use_stop.calls.values()} == {"StartSession", "StopSession"}
    webhook = analyse(load(SAMPLES_DIR / "start-webhook-stop.json"))
    assert webhook.nodes["Wait_until_ready"].spec["type"] == "HttpWebhook"
    assert webhook.calls["Wait_until_ready"].id == "StartSession"
    receiver = analyse(load(SAMPLES_DIR / "session-status-receiver.json"))
    assert receiver.trigger_body == {"$ref": "#/definitions/StatusNotification"}


def test_async_start_ends_with_the_same_shape_as_it_starts() -> None:
    """The HTTP action's output after the asynchronous pattern is the 200 of the Location (WaitUntilReady): the
    sample reads it with StartSession's 202 schema, so both must be the session view."""
    start = find_operation("post", "/sessions")
    ready = find_operation("get", "/sessions/{id}/ready")
    assert start is not None and ready is not None
    assert start.is_async()
    assert start.spec["responses"]["202"]["schema"] == ready.spec["responses"]["200"]["schema"]


# -- negative controls: a broken copy must fail the cross-check -------------------------------------------------

def action(workflow: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n.spec for n in walk(workflow["definition"]["actions"]) if n.name == name)


def replace_in(workflow: dict[str, Any], name: str, old: str, new: str) -> None:
    """Replace text inside one action's JSON (keys and values alike)."""
    spec = action(workflow, name)
    text = json.dumps(spec)
    assert old in text, (name, old)
    spec.clear()
    spec.update(json.loads(text.replace(old, new)))


def set_in(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(workflow: dict[str, Any]) -> None:
        target = action(workflow, path[0])
        for key in path[1:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def replacing(name: str, old: str, new: str) -> Callable[[dict[str, Any]], None]:
    return lambda workflow: replace_in(workflow, name, old, new)


def without(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda workflow: workflow["definition"]["actions"].pop(name)


def trigger_replacing(old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def mutate(workflow: dict[str, Any]) -> None:
        text = json.dumps(workflow["definition"]["triggers"])
        assert old in text
        workflow["definition"]["triggers"] = json.loads(text.replace(old, new))
    return mutate


ASYNC, WEBHOOK, RECEIVER = "start-use-stop.json", "start-webhook-stop.json", "session-status-receiver.json"
MUTATIONS = [
    # sample, id, mutation, a text the problems must mention
    (ASYNC, "misspelled-body-field", replacing("Start_session", '"leaseMinutes"', '"leaseMinute"'), "leaseMinute"),
    (ASYNC, "wrong-path", replacing("Stop_session", "/stop", "/stopp"), "no operation POST"),
    (ASYNC, "wrong-collection", replacing("Start_session", "/api/sessions", "/api/session"), "no operation POST"),
    (ASYNC, "missing-basepath", replacing("Start_session", "/api/sessions", "/sessions"), "basePath"),
    (ASYNC, "wrong-method", set_in(["Stop_session", "inputs", "method"], "DELETE"), "no operation DELETE"),
    (ASYNC, "unknown-query", set_in(["Start_session", "inputs", "queries", "leaseMinute"], 5), "leaseMinute"),
    (ASYNC, "misspelled-key-header", replacing("Stop_session", "x-functions-key", "x-function-key"),
     "x-function-key"),
    (ASYNC, "size-not-in-enum", set_in(["Start_session", "inputs", "body", "size"], "Large"), "Large"),
    (ASYNC, "lease-as-text", set_in(["Start_session", "inputs", "body", "leaseMinutes"], "ninety"), "integer"),
    (ASYNC, "misspelled-response-field", replacing("Post_hostname", "['hostname']", "['hostName']"), "hostName"),
    (ASYNC, "response-of-no-action", replacing("Post_hostname", "body('Start_session')", "body('Start_sesion')"),
     "Start_sesion"),
    (ASYNC, "undeclared-parameter", replacing("Use_the_session", "workMinutes", "workMinute"), "workMinute"),
    (ASYNC, "run-after-missing-action", replacing("Finally", '"Try"', '"Tryy"'), "Tryy"),
    (ASYNC, "run-after-other-scope", set_in(["Stop_session", "runAfter"], {"Start_session": ["Succeeded"]}),
     "not an action of"),
    (ASYNC, "stop-only-on-success", set_in(["Finally", "runAfter"], {"Try": ["Succeeded"]}), "no StopSession"),
    (ASYNC, "stop-another-session", replacing("Stop_session", "@{outputs('Session_id')}/stop", "other/stop"),
     "same session"),
    (ASYNC, "no-rethrow", without("Fail_the_run"), "Terminate"),
    (ASYNC, "async-pattern-off", set_in(["Start_session", "operationOptions"], "DisableAsyncPattern"),
     "DisableAsyncPattern"),
    (WEBHOOK, "misspelled-callback-field", replacing("Wait_until_ready", '"callbackUrl"', '"callbackURL"'),
     "callbackURL"),
    (WEBHOOK, "callback-in-wrong-field",
     replacing("Wait_until_ready", '"callbackUrl": "@{listCallbackUrl()}"', '"reason": "@{listCallbackUrl()}"'),
     "listCallbackUrl"),
    (WEBHOOK, "no-function-key", replacing("Wait_until_ready", '"x-functions-key"', '"x-api-key"'),
     "sends no function key"),
    (WEBHOOK, "misspelled-notification-field", replacing("Post_hostname", "['hostname']", "['hostnme']"), "hostnme"),
    (WEBHOOK, "webhook-output-is-the-notification",
     replacing("Post_hostname", "body('Wait_until_ready')?['session']?['hostname']",
               "body('Wait_until_ready')?['hostname']"), "StatusNotification has no property 'hostname'"),
    (WEBHOOK, "unsubscribe-stops",
     set_in(["Wait_until_ready", "inputs", "unsubscribe"],
            {"method": "POST", "uri": "@{parameters('baseUrl')}/api/sessions/@{outputs('Session_id')}/stop"}),
     "unsubscribe stops"),
    (WEBHOOK, "misspelled-extend-field", replacing("Extend_lease", "extendByMinutes", "extendBy"), "extendBy"),
    (WEBHOOK, "extend-wrong-method", set_in(["Extend_lease", "inputs", "method"], "PUT"), "no operation PUT"),
    (RECEIVER, "misspelled-trigger-field", trigger_replacing('"eventId"', '"eventID"'), "eventID"),
    (RECEIVER, "trigger-schema-not-a-definition", trigger_replacing('"StatusNotification"', '"StatusChange"'),
     "StatusChange"),
    (RECEIVER, "field-of-the-session-read-at-the-top",
     replacing("Post_message", "triggerBody()?['session']?['requestedBy']", "triggerBody()?['requestedBy']"),
     "no property 'requestedBy'"),
]


@pytest.mark.parametrize(("sample", "mutate", "expected"), [(s, m, e) for s, _, m, e in MUTATIONS],
                         ids=[f"{s.removesuffix('.json')}:{i}" for s, i, _, _ in MUTATIONS])
def test_broken_copy_fails(sample: str, mutate: Callable[[dict[str, Any]], None], expected: str) -> None:
    workflow = copy.deepcopy(load(SAMPLES_DIR / sample))
    mutate(workflow)
    problems = problems_of(workflow)
    assert any(expected in p for p in problems), problems


# -- the curl examples in docs/integrations.md --------------------------------------------------------------------

LOCAL = "localhost:7071"  # make run
AZURE = "$BASE"  # the docs' variable for a deployed app


def curl_commands(markdown: str) -> list[list[str]]:
    """The words of every ``curl`` command in the document's code blocks: continuation lines joined, a command
    ending at a pipe, ``)``, ``;`` or ``&&`` (``ID=$(curl ... | jq -r .id)`` counts), comments dropped."""
    commands, in_block, current = [], False, ""
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_block, current = not in_block, ""
            continue
        if not in_block:
            continue
        text = current + line.strip()
        if text.endswith("\\"):
            current = text[:-1] + " "
            continue
        current = ""
        if not re.search(r"(^|[\s(])curl\s", text):
            continue
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            words, command = list(lexer), None
        except ValueError as exc:  # a curl line a shell could not run either
            commands.append(["--unparsable--", text, str(exc)])
            continue
        for word in words:
            if word == "curl":
                command = []
                commands.append(command)
            elif command is not None and set(word) <= set("();<>|&"):
                command = None
            elif command is not None:
                command.append(word)
    return commands


def curl_call(words: list[str], problems: list[str]) -> Call | None:
    """The request a curl command to the app (local, or ``$BASE``) makes; None for a curl to somewhere else."""
    method, url, headers, body, has_body = None, None, [], None, False
    shown = " ".join(words)[:70]
    if words[:1] == ["--unparsable--"]:
        problems.append(f"{words[1][:70]!r}: not a shell command ({words[2]})")
        return None
    rest = iter(words)
    for word in rest:
        if word in ("-X", "--request"):
            method = next(rest)
        elif word in ("-H", "--header"):
            headers.append(next(rest).split(":", 1)[0].strip())
        elif word in ("-d", "--data", "--data-raw", "--json"):
            raw, has_body = next(rest), True
            try:
                body = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(f"curl {shown!r}: the body is not JSON ({exc})")
        elif word in ("-o", "--output", "-w", "--write-out", "-m", "--max-time"):
            next(rest)
        elif not word.startswith("-") and (LOCAL in word or word.startswith(AZURE)):
            url = word.replace(AZURE, "https://app.example", 1)
    if url is None:
        return None
    parts = urlsplit(url if re.match(r"^https?://", url) else f"http://{url}")
    if not parts.path.startswith(DOC["basePath"] + "/"):
        problems.append(f"curl {shown!r}: {parts.path!r} is not under {DOC['basePath']}")
        return None
    return Call(f"curl {parts.path}", method or ("POST" if has_body else "GET"), parts.path[len(DOC["basePath"]):],
                parse_qsl(parts.query, keep_blank_values=True), headers, body, has_body)


def docs_problems(markdown: str) -> list[str]:
    problems: list[str] = []
    for command in curl_commands(markdown):
        call = curl_call(command, problems)
        if call is not None:
            check_call(call, problems)
    return problems


def test_docs_curl_requests_match_the_contract() -> None:
    markdown = DOCS.read_text(encoding="utf-8")
    calls = [c for c in (curl_call(cmd, []) for cmd in curl_commands(markdown)) if c is not None]
    operations_used = {op.id for c in calls if (op := find_operation(c.method, c.path)) is not None}
    assert {"StartSession", "WaitUntilReady", "StopSession", "SubscribeSessionChanges", "Unsubscribe"} <= \
        operations_used
    assert docs_problems(markdown) == []


@pytest.mark.parametrize(("old", "new", "expected"), [
    ('"leaseMinutes": 30', '"leaseMinute": 30', "leaseMinute"),
    ("/api/subscriptions", "/api/subscription", "no operation"),
    ('"notificationUrl"', '"notifyUrl"', "notifyUrl"),
], ids=["misspelled-field", "wrong-path", "misspelled-subscription-field"])
def test_broken_docs_curl_fails(old: str, new: str, expected: str) -> None:
    markdown = DOCS.read_text(encoding="utf-8")
    assert old in markdown
    problems = docs_problems(markdown.replace(old, new))
    assert any(expected in p for p in problems), problems


# -- samples/webhook_receiver.py: one process, several receivers (paths) ------------------------------------------

RECEIVER = ROOT / "samples" / "webhook_receiver.py"


def notification(event_id: str, previous: str | None, status: str) -> dict[str, Any]:
    return {"eventId": event_id, "eventType": "SessionStatusChanged", "at": "2026-11-27T14:22:15.945282Z",
            "previousStatus": previous, "status": status, "cause": "arr", "actor": None,
            "session": {"id": "doc-try-1", "status": status, "hostname": "arr.example"}}


def deliver(port: int, path: str, body: dict[str, Any]) -> int:
    """POST ``body`` as the app does (``X-Event-Id`` repeats ``eventId``); the answer's status. Retries while the
    receiver is not listening yet."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "X-Event-Id": body["eventId"]})
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - http on 127.0.0.1
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def run_receiver(*options: str, deliveries: list[tuple[str, dict[str, Any]]]) -> tuple[list[int], list[str]]:
    """Start the sample on a free port, make ``deliveries`` (path, body) in order, stop it: the answers' statuses
    and the lines it printed after its first ("listening on ...")."""
    port = free_port()
    process = subprocess.Popen([sys.executable, str(RECEIVER), "--port", str(port), *options],  # noqa: S603
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        statuses = [deliver(port, path, body) for path, body in deliveries]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    lines = output.splitlines()
    assert lines and lines[0].startswith("listening on http://127.0.0.1:"), output
    return statuses, lines[1:]


def test_the_receiver_prints_every_delivery_with_its_path_event_id_and_type() -> None:
    """A start's callback (/ready) and two subscriptions (/changes, /mine) on one receiver: the one change reaches
    each of them with the same eventId, and each delivery is printed with its path; only a repeat to the same path
    is called a repeat."""
    ready = notification("doc-try-1.None.Ready", None, "Ready")
    stopped = notification("doc-try-1.Ready.Stopped", "Ready", "Stopped")
    statuses, lines = run_receiver(deliveries=[
        ("/ready", ready), ("/changes", ready), ("/mine", ready), ("/changes", ready), ("/changes", stopped)])
    assert statuses == [200] * 5
    assert len(lines) == 5, lines
    expected = [("/ready", ready, "None -> Ready"), ("/changes", ready, "None -> Ready"),
                ("/mine", ready, "None -> Ready"), ("/changes", ready, "repeat"),
                ("/changes", stopped, "Ready -> Stopped")]
    for line, (path, body, what) in zip(lines, expected, strict=True):
        assert line.split()[0] == path, line
        assert body["eventId"] in line and "SessionStatusChanged" in line and what in line, line
    assert not any("repeat" in line for line in lines[:3]), lines


def test_the_receiver_answering_gone_prints_each_delivery_too() -> None:
    ready = notification("doc-try-1.None.Ready", None, "Ready")
    statuses, lines = run_receiver("--gone", deliveries=[("/changes", ready), ("/mine", ready)])
    assert statuses == [410, 410]
    assert [line.split()[0] for line in lines] == ["/changes", "/mine"], lines
    assert all(ready["eventId"] in line and "410" in line for line in lines), lines
