"""The Power Platform custom connector's ``connector/apiDefinition.swagger.json``, derived from the served OpenAPI
document (:func:`blueprints.openapi.openapi_document`), so that the two come from the same models and cannot drift.

``python -m blueprints.connector [OUT] [--host HOST]`` (``make connector``) writes it; ``tests/artifacts/test_connector.py``
fails when the committed file differs from what this module generates.

The served document describes the HTTP API exactly (schemathesis checks the app against it); the connector describes
what the designer should show, so it differs on purpose:

- StartSession and StopSession list each field once, in their body: the query-parameter duplicates (for webhook
  senders that cannot shape a body) and StartSession's ``payload`` are left out.
- One response per operation has a schema, 200, because the designer uses one. For StartSession that is the session
  once Ready: the platform follows the 202's ``Location`` (the ready monitor) until its 200, and the description
  says that the action waits. The 202 and the errors keep their descriptions. ``produces`` is ``application/json``
  only (problem+json is not among the media types the platform accepts).
- No ``allOf`` wrappers and no ``x-nullable``: a model nested in a property is inlined there, so the property keeps
  its own description and label, and a nullable property is no longer required.
- Designer strings: pydantic's generated titles ("Leaseminutes") are dropped, labels are in title case, every
  operation has a visibility and a tag, rarely needed inputs are advanced, ListHistory pages through ``nextLink``
  (with the ``updatenextlink`` policy in ``apiProperties.json``), and the session id parameter is shared.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

from .openapi import SESSION_ID_PARAM, openapi_document

PLACEHOLDER_HOST = "your-function-app.invalid"  # never resolves: an unedited connector cannot send a key anywhere
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "connector" / "apiDefinition.swagger.json"
MEDIA_TYPE = "application/json"
NEXT_LINK = "nextLink"
SESSION_ID_REF = "SessionId"  # the shared path parameter, under the document's `parameters`

INFO = {
    "title": "ARR Sessions",
    "description": "Start, watch, extend and stop Azure Remote Rendering sessions, and read their history, usage and "
                   "estimated cost. The actions call your own ARR Sessions function app, which also stops the "
                   "sessions that were forgotten.",
    "contact": {"name": "ARR Sessions maintainers"},
}
METADATA = [
    {"propertyName": "Website", "propertyValue": "https://learn.microsoft.com/azure/remote-rendering/"},
    {"propertyName": "Privacy policy", "propertyValue": "https://privacy.microsoft.com/privacystatement"},
    {"propertyName": "Categories", "propertyValue": "IT Operations;Productivity"},
]
TAGS = {
    "Sessions": ("Start, watch, extend, stop and list rendering sessions.",
                 ["StartSession", "GetSession", "WaitUntilReady", "WaitUntilReadySigned", "ExtendSession", "StopSession",
                  "ListSessions", "SendHeartbeat"]),
    "History and usage": ("Past sessions, their changes, and what they cost.",
                          ["ListHistory", "ListSessionEvents", "GetUsage"]),
    "Triggers": ("Hear when sessions change status, or are about to be stopped.",
                 ["SubscribeSessionChanges", "SubscribeStopWarnings", "Unsubscribe"]),
    "Operations": ("Cleanup, its overrides, and health of the app.",
                   ["RunCleanup", "ListCleanupRuns", "AddOverride", "ListOverrides", "RemoveOverride", "Health",
                    "OpenApi"]),
    "Schedules": ("Sessions Ready by a time on some days: made ahead by the observed start time.",
                  ["CreateSchedule", "ListSchedules", "GetSchedule", "ReplaceSchedule", "DeleteSchedule"]),
    "Budget": ("The month's budget and what has been spent.", ["GetBudget"]),
    "Warm pools": ("Sessions kept Ready for a team during office hours, claimed in a second.",
                   ["ListPools", "ClaimPool"]),
    "Quotas": ("Ready-minutes per month or week for a requester or a team's labels; starts past them are refused.",
               ["CreateQuota", "ListQuotas", "DeleteQuota", "TopUpQuota"]),
}
# Where the served document says nothing (Health and OpenApi are internal there already).
OPERATION_VISIBILITY = {"CreateSchedule": "important", "ListSchedules": "important", "GetSchedule": "advanced",
                        "ReplaceSchedule": "advanced", "DeleteSchedule": "advanced",
                        "StartSession": "important", "GetSession": "important", "StopSession": "important",
                        "ExtendSession": "important", "ListSessions": "important", "WaitUntilReady": "advanced",
                        "ListHistory": "advanced", "GetUsage": "advanced", "RunCleanup": "advanced",
                        "SubscribeSessionChanges": "important", "SubscribeStopWarnings": "important",
                        "ListSessionEvents": "advanced",
                        "ListCleanupRuns": "advanced", "AddOverride": "important", "ListOverrides": "advanced",
                        "RemoveOverride": "advanced", "ClaimPool": "important", "ListPools": "advanced",
                        "GetBudget": "advanced",
                        "SendHeartbeat": "advanced",
                        "CreateQuota": "advanced", "ListQuotas": "advanced", "DeleteQuota": "advanced",
                        "TopUpQuota": "advanced"}
ADVANCED_PARAMETERS = {"StartSession": {"Idempotency-Key"}, "ListHistory": {"requestedBy", "size", "top"},
                       "RunCleanup": {"mode"}}
ADVANCED_BODY_FIELDS = {"StartSessionRequest": {"sessionId", "labels", "keepAlive"},
                        "ScheduleRequest": {"exceptions", "fallbacks", "labels", "enabled"}}
PAGEABLE = {"ListHistory"}
BODY_IN_QUERY = {"StartSession", "StopSession"}  # query parameters that repeat body fields (and StartSession's payload)
READY_TEXT = "The session once it is Ready: the action follows Location until then."
# The served text speaks of polling Location; in the designer the platform does that itself.
DESCRIPTIONS = {"StartSession": "Starts an Azure Remote Rendering session and returns it once it is Ready; the "
                                "action waits while the session starts."}
_MINOR_WORDS = frozenset({"a", "an", "and", "as", "at", "by", "for", "from", "in", "of", "on", "or", "the", "to",
                          "with"})


def title_case(label: str) -> str:
    """``Requested by`` -> ``Requested By``, ``Lease (minutes)`` -> ``Lease (Minutes)``, ``Session id`` ->
    ``Session ID``: the designer's labels are in title case (connector string guidance)."""
    words = label.split()
    out = []
    for index, word in enumerate(words):
        core = word.strip("()")
        if core.lower() == "id":
            fixed = "ID"
        elif 0 < index < len(words) - 1 and core.lower() in _MINOR_WORDS:
            fixed = core.lower()
        else:
            fixed = core[:1].upper() + core[1:]
        out.append(word.replace(core, fixed, 1) if core else word)
    return " ".join(out)


class _Schemas:
    """The served document's definitions as plain OpenAPI 2.0 schemas the importer takes."""

    def __init__(self, definitions: dict[str, Any]) -> None:
        self.served = definitions

    def plain(self, schema: Any) -> Any:
        if not isinstance(schema, dict):
            return schema
        if "allOf" in schema:  # the served document's wrapper of a $ref with a description, label or null
            (part,) = schema["allOf"]
            rest = {k: v for k, v in schema.items() if k not in ("allOf", "x-nullable")}
            return {**self.inline(part["$ref"]), **self.plain(rest)}
        out: dict[str, Any] = {}
        nullable: set[str] = set()
        for key, value in schema.items():
            if key in ("title", "x-nullable"):
                continue
            if key == "properties":
                out[key] = {}
                for name, prop in value.items():
                    if prop.get("x-nullable"):
                        nullable.add(name)
                    out[key][name] = self.inline(prop["$ref"]) if set(prop) == {"$ref"} else self.plain(prop)
            elif key in ("items", "additionalProperties"):
                out[key] = self.plain(value)  # an array's items may stay a $ref: it has no siblings
            else:
                out[key] = value
        if nullable and "required" in out:
            out["required"] = [name for name in out["required"] if name not in nullable]
        if out.get("required") == []:
            del out["required"]
        return out

    def inline(self, ref: str) -> dict[str, Any]:
        name = ref.removeprefix("#/definitions/")
        return self.plain(copy.deepcopy(self.served[name]))


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node))
    return set()


def _reachable(roots: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    """Only the definitions the operations use (directly or through other definitions), in their served order."""
    seen: set[str] = set()
    todo = [ref for ref in _refs(roots) if ref.startswith("#/definitions/")]
    while todo:
        name = todo.pop().removeprefix("#/definitions/")
        if name not in seen:
            seen.add(name)
            todo.extend(ref for ref in _refs(definitions[name]) if ref.startswith("#/definitions/"))
    return {name: schema for name, schema in definitions.items() if name in seen}


def _labels(node: Any) -> None:
    """Every ``x-ms-summary`` in title case."""
    if isinstance(node, dict):
        if isinstance(node.get("x-ms-summary"), str):
            node["x-ms-summary"] = title_case(node["x-ms-summary"])
        for value in node.values():
            _labels(value)
    elif isinstance(node, list):
        for item in node:
            _labels(item)


def _responses(responses: dict[str, Any]) -> dict[str, Any]:
    """200 (for StartSession: the ready monitor's 200, where the platform's polling ends) keeps its schema; every
    other response keeps its description and headers."""
    if "200" not in responses and "202" in responses:
        responses = {"200": {"description": READY_TEXT, "schema": responses["202"]["schema"]}, **responses}
    success = min(status for status in responses if status.startswith("2"))
    return {status: {k: v for k, v in answer.items() if k != "schema" or status == success}
            for status, answer in responses.items()}


def _operation(op: dict[str, Any], tag: str, schemas: _Schemas) -> dict[str, Any]:
    operation_id = op["operationId"]
    parameters = []
    for parameter in op["parameters"]:
        if operation_id in BODY_IN_QUERY and parameter["in"] == "query":
            continue  # each field once: in the body
        if parameter == SESSION_ID_PARAM:
            parameters.append({"$ref": f"#/parameters/{SESSION_ID_REF}"})
            continue
        if parameter["name"] in ADVANCED_PARAMETERS.get(operation_id, ()):
            parameter = {**parameter, "x-ms-visibility": "advanced"}
        parameters.append(schemas.plain(parameter) if "schema" not in parameter
                          else {**parameter, "schema": schemas.plain(parameter["schema"])})
    out = {"tags": [tag], "operationId": operation_id, "summary": op["summary"],
           "description": DESCRIPTIONS.get(operation_id, op["description"]),
           "x-ms-visibility": op.get("x-ms-visibility") or OPERATION_VISIBILITY[operation_id],
           "parameters": parameters, "responses": _responses(op["responses"])}
    if operation_id in PAGEABLE:
        out["x-ms-pageable"] = {"nextLinkName": NEXT_LINK}
    if "security" in op:
        out["security"] = op["security"]
    if "x-ms-trigger" in op:
        out["x-ms-trigger"] = op["x-ms-trigger"]
    return out


def _path_item(item: dict[str, Any], tag_of: dict[str, str], schemas: _Schemas) -> dict[str, Any]:
    """A path's operations, and its notification content (the payload a trigger's subscribers receive)."""
    out = {method: _operation(op, tag_of[op["operationId"]], schemas) for method, op in item.items()
           if not method.startswith("x-")}
    if "x-ms-notification-content" in item:
        content = item["x-ms-notification-content"]
        out["x-ms-notification-content"] = {**content, "schema": schemas.plain(content["schema"])}
    return out


def connector_document(host: str = PLACEHOLDER_HOST) -> dict[str, Any]:
    """``apiDefinition.swagger.json`` for a function app at ``https://<host>/api``."""
    served = copy.deepcopy(openapi_document(f"https://{host}/api/"))
    schemas = _Schemas(served["definitions"])
    tag_of = {operation_id: tag for tag, (_, operation_ids) in TAGS.items() for operation_id in operation_ids}
    paths = {path: _path_item(item, tag_of, schemas) for path, item in served["paths"].items()}
    session_id = next(p for item in served["paths"].values() for op in item.values() for p in op["parameters"]
                      if p["in"] == "path" and p["name"] == "id")
    parameters = {SESSION_ID_REF: session_id}
    definitions = {name: schemas.plain(schema) for name, schema in served["definitions"].items()}
    for model, fields in ADVANCED_BODY_FIELDS.items():
        for field in fields:
            definitions[model]["properties"][field]["x-ms-visibility"] = "advanced"
    document = {
        "swagger": "2.0",
        "info": {"title": INFO["title"], "description": INFO["description"], "version": served["info"]["version"],
                 "contact": INFO["contact"]},
        "host": served["host"],
        "basePath": served["basePath"],
        "schemes": ["https"],
        "consumes": [MEDIA_TYPE],
        "produces": [MEDIA_TYPE],
        "paths": paths,
        "definitions": _reachable([paths, parameters], definitions),
        "parameters": parameters,
        "securityDefinitions": served["securityDefinitions"],
        "security": served["security"],
        "tags": [{"name": tag, "description": text} for tag, (text, _) in TAGS.items()],
        "x-ms-connector-metadata": METADATA,
    }
    _labels(document)
    return document


def render(document: dict[str, Any]) -> str:
    """The file's text: four-space indents (the connectors' coding standards), a final newline."""
    return json.dumps(document, indent=4, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blueprints.connector", description="Write the Power Platform "
                                     "custom connector's apiDefinition.swagger.json.")
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT,
                        help="where to write it (default: connector/apiDefinition.swagger.json)")
    parser.add_argument("--host", default=PLACEHOLDER_HOST,
                        help="the function app's host name, e.g. my-app.azurewebsites.net (default: a placeholder "
                             "that never resolves; the committed file keeps it)")
    args = parser.parse_args(argv)
    args.output.write_text(render(connector_document(args.host)), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
