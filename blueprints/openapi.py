"""The OpenAPI 2.0 (Swagger) document of the HTTP API, generated from the models in :mod:`arr_core.views`.

Power Automate custom connectors accept only OpenAPI 2.0, so pydantic's JSON Schema (2020-12) is translated: a
nullable ``anyOf`` becomes ``x-nullable``, ``$defs`` become ``definitions``, ``const`` an ``enum``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from arr_core.validation import SESSION_ID_PATTERN
from arr_core.views import (
    IDEMPOTENCY_KEY,
    CleanupReport,
    ExtendSessionRequest,
    Health,
    HistoryPage,
    Problem,
    SessionList,
    SessionView,
    StartSessionRequest,
    StopSessionRequest,
    UsageReport,
)

from .queries import CleanupQuery, HistoryQuery, ListQuery, StartQuery, UsageQuery, query_parameters

_DROP = {"default", "examples", "propertyNames", "discriminator", "$schema"}


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
        if "$ref" in merged:  # a $ref takes no siblings in 2.0: wrap it to say it may be null
            ref = {"$ref": merged.pop("$ref")}
            return {"allOf": [ref], "x-nullable": True, **{k: v for k, v in merged.items() if k == "description"}} \
                if nullable else ref
        if nullable:
            merged["x-nullable"] = True
        return to_swagger2(merged)
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


SESSION_ID_PARAM = _param("id", "path", "The session id.", "Session id", required=True,
                          pattern=SESSION_ID_PATTERN.pattern, maxLength=256)


def openapi_document(base_url: str) -> dict[str, Any]:
    """The document for an app served at ``base_url`` (``https://<app>.azurewebsites.net/api/``)."""
    parts = urlsplit(base_url)
    d = _Definitions()
    view, problem = d.ref(SessionView), d.ref(Problem)

    def errors(*codes: int) -> dict[str, Any]:
        texts = {400: "The request is invalid; `errors` names the fields.", 404: "No such session.",
                 409: "Conflict (or a cleanup already running): see the problem's detail.",
                 413: "The body is larger than 64 KiB.",
                 415: "The body is not JSON.", 502: "ARR failed or refused our credentials.",
                 503: "ARR is throttling, Table Storage is unavailable, or a setting is wrong; see Retry-After.",
                 504: "ARR did not answer, or the request's time budget ran out; see Retry-After."}
        return {str(c): {"description": texts[c], "schema": problem} for c in codes}

    polling_headers = {"Location": {"type": "string", "description": "Poll this URL (the ready monitor)."},
                       "Retry-After": {"type": "integer", "description": "Seconds to wait before polling."}}
    start_parameters = [*query_parameters(StartSessionRequest, note=" Wins over the body."),
                        *query_parameters(StartQuery),
        _param("Idempotency-Key", "header", "Repeating a key within 24 h returns the same session.",
               "Idempotency key", minLength=1, maxLength=255, pattern=IDEMPOTENCY_KEY.pattern),
    ]
    paths: dict[str, Any] = {
        "/sessions": {
            "post": {
                "operationId": "StartSession", "summary": "Start a session",
                "description": "Starts an Azure Remote Rendering session and answers 202 at once; poll the "
                               "Location header until the session is Ready.",
                "parameters": [{"name": "body", "in": "body", "required": False,
                                "schema": d.ref(StartSessionRequest, "validation")}, *start_parameters],
                "responses": {"202": {"description": "Starting; poll Location.", "schema": view,
                                      "headers": polling_headers},
                              **errors(400, 409, 413, 415, 502, 503, 504)},
            },
            "get": {
                "operationId": "ListSessions", "summary": "List active sessions",
                "description": "Lists the account's Starting and Ready sessions, merged with their history.",
                "parameters": query_parameters(ListQuery),
                "responses": {"200": {"description": "The active sessions.", "schema": d.ref(SessionList)},
                              **errors(400, 502, 503, 504)},
            },
        },
        "/sessions/{id}": {
            "get": {
                "operationId": "GetSession", "summary": "Get a session",
                "description": "Reads one session live from ARR, merged with its history.",
                "parameters": [SESSION_ID_PARAM],
                "responses": {"200": {"description": "The session.", "schema": view}, **errors(400, 404, 502, 503,
                                                                                               504)},
            },
            "patch": {
                "operationId": "ExtendSession", "summary": "Extend a session's lease",
                "description": "Raises the lease to a new total, or by a number of minutes (give exactly one).",
                "parameters": [SESSION_ID_PARAM, {"name": "body", "in": "body", "required": True,
                                                  "schema": d.ref(ExtendSessionRequest, "validation")}],
                "responses": {"200": {"description": "The extended session.", "schema": view},
                              **errors(400, 404, 409, 413, 415, 502, 503, 504)},
            },
        },
        "/sessions/{id}/ready": {
            "get": {
                "operationId": "WaitUntilReady", "summary": "Wait until a session is ready",
                "description": "The status monitor of the asynchronous pattern: 202 while Starting, 200 once "
                               "Ready, 409 once the session has ended without being Ready.",
                "parameters": [SESSION_ID_PARAM],
                "responses": {"200": {"description": "Ready.", "schema": view},
                              "202": {"description": "Still starting.", "schema": view, "headers": polling_headers},
                              **errors(400, 404, 409, 502, 503, 504)},
            },
        },
        "/sessions/{id}/stop": {
            "post": {
                "operationId": "StopSession", "summary": "Stop a session",
                "description": "Stops the session so that billing ends; a session that has already ended is "
                               "returned as it is.",
                "parameters": [SESSION_ID_PARAM, {"name": "body", "in": "body", "required": False,
                                                  "schema": d.ref(StopSessionRequest, "validation")}],
                "responses": {"200": {"description": "The stopped session.", "schema": view},
                              **errors(400, 404, 413, 415, 502, 503, 504)},
            },
        },
        "/history": {
            "get": {
                "operationId": "ListHistory", "summary": "List session history",
                "description": "Lists past and present sessions from Table Storage, newest filters first.",
                "parameters": query_parameters(HistoryQuery),
                "responses": {"200": {"description": "A page of sessions.", "schema": d.ref(HistoryPage)},
                              **errors(400, 503, 504)},
            },
        },
        "/usage": {
            "get": {
                "operationId": "GetUsage", "summary": "Get usage and cost",
                "description": "Adds up billed minutes (Ready to end) and estimated cost from configured rates.",
                "parameters": query_parameters(UsageQuery),
                "responses": {"200": {"description": "The usage report.", "schema": d.ref(UsageReport)},
                              **errors(400, 503, 504)},
            },
        },
        "/cleanup": {
            "post": {
                "operationId": "RunCleanup", "summary": "Run the cleanup now",
                "description": "Runs the lease cleanup (or the nightly shutdown) now, or only decides with dryRun.",
                "parameters": query_parameters(CleanupQuery),
                "responses": {"200": {"description": "What the cleanup decided and did.",
                                      "schema": d.ref(CleanupReport)}, **errors(400, 409, 502, 503, 504)},
            },
        },
        "/health": {
            "get": {
                "operationId": "Health", "summary": "Check health",
                "description": "Tells whether ARR and Table Storage are reachable with the configured settings.",
                "security": [], "parameters": [],
                "responses": {"200": {"description": "Healthy.", "schema": d.ref(Health)},
                              "503": {"description": "ARR or Table Storage is not reachable.",
                                      "schema": d.ref(Health)}},
            },
        },
        "/openapi.json": {
            "get": {
                "operationId": "OpenApi", "summary": "Get this document",
                "description": "Returns this OpenAPI 2.0 document, importable as a Power Automate custom connector.",
                "security": [], "parameters": [],
                "responses": {"200": {"description": "The OpenAPI 2.0 document.", "schema": {"type": "object"}}},
            },
        },
    }
    return {
        "swagger": "2.0",
        "info": {"title": "ARR Sessions", "version": "1.0.0",
                 "description": "Start, watch, extend and stop Azure Remote Rendering sessions from automation."},
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
