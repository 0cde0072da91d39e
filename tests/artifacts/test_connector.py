"""The Power Platform custom connector (``connector/``), offline.

- The committed ``apiDefinition.swagger.json`` is exactly what :mod:`blueprints.connector` generates from the models
  (run ``make connector`` after changing them).
- It validates against the JSON schema that microsoft/PowerPlatformConnectors ships
  (``tests/reference/apiDefinition.swagger.schema.json``, from microsoft/PowerPlatformConnectors), and broken copies do not.
- The certification rules that can be checked without Microsoft's online validator hold, each a named rule with the
  ids of its errors in "Fix Swagger Validator errors" (certification-swagger-validator-rules.md) or the
  certification and string guidance it comes from. Each rule also gets a broken copy that it must reject, so that
  no rule passes by checking nothing.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry

from blueprints.connector import PLACEHOLDER_HOST, connector_document, main, render
from blueprints.openapi import openapi_document

ROOT = Path(__file__).resolve().parents[2]
CONNECTOR = ROOT / "connector"
# The schema microsoft/PowerPlatformConnectors ships (schemas/apiDefinition.swagger.schema.json, MIT), kept in the
# repository so that a clean clone validates offline.
SCHEMA_FILE = ROOT / "tests" / "reference" / "apiDefinition.swagger.schema.json"

Doc = dict[str, Any]

# From the certification docs (developerhub docs/custom-connectors, 2023) and the connector string guidance.
MAX_OPERATION_ID = 64  # "OperationIdTooLong: must be less than '{0}'": the rules page leaves the number out
MAX_SUMMARY = 80
MAX_TITLE = 30
MIME_TYPES = {"application/json", "text/plain", "multipart/form-data", "application/x-www-form-urlencoded"}
CATEGORIES = {"AI", "Business Management", "Business Intelligence", "Collaboration", "Commerce", "Communication",
              "Content and Files", "Finance", "Data", "Human Resources", "Internet of Things", "IT Operations",
              "Lifestyle and Entertainment", "Marketing", "Productivity", "Sales and CRM", "Security", "Social Media",
              "Website"}
PRODUCT_NAMES = ("Power Apps", "Power Automate", "Power BI", "Power Pages", "Power Virtual Agents", "Copilot Studio",
                 "Dataverse", "PowerApps", "Microsoft Flow")
MINOR_WORDS = {"a", "an", "and", "as", "at", "by", "for", "from", "in", "of", "on", "or", "the", "to", "with"}
VISIBILITIES = {"important", "advanced", "internal"}
SUMMARY_CHARACTERS = re.compile(r"^[A-Za-z0-9 ()]+$")  # "only alphanumeric characters or parentheses"
SENTENCE_END = (".", "?", "!")


# -- the document and the schema -------------------------------------------------------------------------------

def strip_comments(text: str) -> str:
    """JSON with ``//`` line comments as plain JSON; a ``//`` inside a string ("https://...") is kept."""
    out: list[str] = []
    i, in_string = 0, False
    while i < len(text):
        char = text[i]
        if in_string:
            out.append(char)
            if char == "\\":
                out.append(text[i + 1])
                i += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            out.append(char)
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        else:
            out.append(char)
        i += 1
    return "".join(out)


@pytest.fixture(scope="module")
def doc() -> Doc:
    return json.loads((CONNECTOR / "apiDefinition.swagger.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def api_properties() -> Doc:
    return json.loads((CONNECTOR / "apiProperties.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    schema = json.loads(strip_comments(SCHEMA_FILE.read_text(encoding="utf-8")))
    jsonschema.Draft4Validator.check_schema(schema)
    # An empty registry: the draft-04 meta-schema it refers to ships with jsonschema, anything else fails (offline).
    return jsonschema.Draft4Validator(schema, registry=Registry(),
                                      format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def operations(doc: Doc) -> Iterator[tuple[str, str, Doc]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if not method.startswith("x-"):  # x-ms-notification-content sits beside a trigger's operation
                yield path, method, op


def parameters(doc: Doc, op: Doc) -> list[Doc]:
    return [doc["parameters"][p["$ref"].removeprefix("#/parameters/")] if "$ref" in p else p
            for p in op.get("parameters", [])]


def by_id(doc: Doc, operation_id: str) -> Doc:
    return next(op for _, _, op in operations(doc) if op["operationId"] == operation_id)


def schema_nodes(doc: Doc) -> Iterator[tuple[str, Doc]]:
    """Every schema object (definitions, body parameters, responses, and what they nest), with where it is."""
    stack: list[tuple[str, Any]] = [(f"definitions/{name}", schema) for name, schema in doc["definitions"].items()]
    for _, _, op in operations(doc):
        stack += [(f"{op['operationId']}/body", p["schema"]) for p in parameters(doc, op) if "schema" in p]
        stack += [(f"{op['operationId']}/{status}", answer["schema"])
                  for status, answer in op["responses"].items() if "schema" in answer]
    while stack:
        where, node = stack.pop()
        yield where, node
        stack += [(f"{where}.{name}", prop) for name, prop in node.get("properties", {}).items()]
        stack += [(f"{where}{suffix}", node[key]) for key, suffix in (("items", "[]"), ("additionalProperties", "{}"))
                  if isinstance(node.get(key), dict)]


def properties(doc: Doc) -> Iterator[tuple[str, Doc]]:
    for where, node in schema_nodes(doc):
        for name, prop in node.get("properties", {}).items():
            yield f"{where}.{name}", prop


def walk(node: Any, where: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Every (location, key, value) of the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield where, key, value
            yield from walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from walk(item, f"{where}/{index}")


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def is_title_case(label: str) -> bool:
    words = label.split()
    return all((0 < i < len(words) - 1 and word in MINOR_WORDS) or word.lstrip("(")[:1].isupper()
               or word.lstrip("(")[:1].isdigit() for i, word in enumerate(words))


def resolve(doc: Doc, schema: Doc) -> Doc:
    return doc["definitions"][schema["$ref"].removeprefix("#/definitions/")] if "$ref" in schema else schema


def success_schema(doc: Doc, operation_id: str) -> Doc:
    return resolve(doc, by_id(doc, operation_id)["responses"]["200"]["schema"])


# -- the rules: each returns what breaks it (empty when it holds) --------------------------------------------------

def rule_operation_ids(doc: Doc, _: Doc) -> list[str]:
    """OperationIdRequired, OperationIdNotUnique, OperationIdSanitized, OperationIdTooLong; PascalCase (coding
    standards)."""
    ids = [op.get("operationId") for _, _, op in operations(doc)]
    problems = [f"{path} {method}: no operationId" for path, method, op in operations(doc) if not op.get("operationId")]
    problems += [f"{i}: used {ids.count(i)} times" for i in sorted(set(filter(None, ids))) if ids.count(i) > 1]
    problems += [f"{i}: not PascalCase letters and digits" for i in filter(None, ids)
                 if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", i)]
    problems += [f"{i}: {len(i)} characters" for i in filter(None, ids) if len(i) >= MAX_OPERATION_ID]
    return problems


def rule_operation_summaries(doc: Doc, _: Doc) -> list[str]:
    """OperationSummaryTooLong and RestrictedCharactersInSummary; the certification's 80 characters of letters,
    digits and parentheses; the string guidance's sentence case, no slash, no trailing punctuation; summary and
    description differ."""
    problems = []
    for _, _, op in operations(doc):
        summary = op.get("summary", "")
        name = op["operationId"]
        if not summary or len(summary) > MAX_SUMMARY:
            problems.append(f"{name}: summary {summary!r} is empty or longer than {MAX_SUMMARY}")
        if not SUMMARY_CHARACTERS.fullmatch(summary or "-") or not summary[-1:].isalnum():
            problems.append(f"{name}: summary {summary!r} has characters other than letters, digits, parentheses")
        if summary[:1] != summary[:1].upper() or summary == op.get("description"):
            problems.append(f"{name}: summary {summary!r} is not in sentence case or repeats the description")
    return problems


def rule_operation_descriptions(doc: Doc, _: Doc) -> list[str]:
    """Operations have a description, a full sentence ending in punctuation (certification, coding standards)."""
    return [f"{op['operationId']}: description {op.get('description')!r}" for _, _, op in operations(doc)
            if not op.get("description", "").endswith(SENTENCE_END)]


def rule_operation_visibility(doc: Doc, _: Doc) -> list[str]:
    """No operation lacks visibility information (certification checklist); Health and OpenApi are internal."""
    problems = [f"{op['operationId']}: x-ms-visibility {op.get('x-ms-visibility')!r}" for _, _, op in operations(doc)
                if op.get("x-ms-visibility") not in VISIBILITIES]
    problems += [f"{name} is not internal" for name in ("Health", "OpenApi")
                 if by_id(doc, name).get("x-ms-visibility") != "internal"]
    return problems


def _label_problems(where: str, entity: Doc) -> list[str]:
    summary, description = entity.get("x-ms-summary", ""), entity.get("description", "")
    problems = []
    if not summary or len(summary) > MAX_SUMMARY or not SUMMARY_CHARACTERS.fullmatch(summary):
        problems.append(f"{where}: x-ms-summary {summary!r} is empty, long or has other characters")
    elif not is_title_case(summary):
        problems.append(f"{where}: x-ms-summary {summary!r} is not in title case")
    if not description.endswith(SENTENCE_END) or description == summary:
        problems.append(f"{where}: description {description!r} is not a sentence or repeats the summary")
    return problems


def rule_parameter_strings(doc: Doc, _: Doc) -> list[str]:
    """Every parameter has an x-ms-summary (title case, at most 80 letters, digits or parentheses) and a description
    that ends in punctuation (certification, string guidance)."""
    return [problem for _, _, op in operations(doc) for p in parameters(doc, op)
            for problem in _label_problems(f"{op['operationId']}/{p['name']}", p)]


def rule_property_strings(doc: Doc, _: Doc) -> list[str]:
    """Every property of a body or response schema has an x-ms-summary and a description, as parameters do (string
    guidance: labels in the designer's dynamic content); none keeps pydantic's generated title ("Leaseminutes")."""
    problems = [problem for where, prop in properties(doc) for problem in _label_problems(where, prop)]
    return problems + [f"{where}: title {prop['title']!r}" for where, prop in properties(doc) if "title" in prop]


def rule_media_types(doc: Doc, _: Doc) -> list[str]:
    """ConsumesMissing, MimeTypeNotValid, MimeTypeNotSupported: consumes and produces name supported types only."""
    problems = []
    for where, node in [("", doc), *((op["operationId"], op) for _, _, op in operations(doc))]:
        for key in ("consumes", "produces"):
            if key in node and (not node[key] or not set(node[key]) <= MIME_TYPES):
                problems.append(f"{where or 'document'}: {key} {node[key]}")
    return problems + [f"document: no {key}" for key in ("consumes", "produces") if not doc.get(key)]


def rule_one_success_schema(doc: Doc, _: Doc) -> list[str]:
    """OperationShouldHaveSuccessfulResponse, OperationHasManyResponsesWithSchema, SchemaDefinitionSetIncorrectly
    (the schema on 200 or 201), DefaultResponseHasSchema, ResponseMustBeDefaultOrHttpStatusCode; no empty schema."""
    problems = []
    for _, _, op in operations(doc):
        name, responses = op["operationId"], op["responses"]
        with_schema = [status for status, answer in responses.items() if "schema" in answer]
        if not any(status.startswith("2") for status in responses):
            problems.append(f"{name}: no 2xx response")
        if len(with_schema) != 1 or with_schema[0] not in ("200", "201"):
            problems.append(f"{name}: responses with a schema: {with_schema}")
        problems += [f"{name}: response {status!r}" for status in responses
                     if not re.fullmatch(r"[1-5][0-9][0-9]|default", status)]
        problems += [f"{name}/{status}: empty schema" for status in with_schema
                     if not {"$ref", "type"} & set(responses[status]["schema"])]
    return problems


def rule_plain_schemas(doc: Doc, _: Doc) -> list[str]:
    """No allOf wrappers, anyOf/oneOf or x-nullable, which the importer does not take as the served document means
    them; AdditionalPropertyNotAllowedAdjacentToRef: a $ref has no siblings."""
    problems = [f"{where}: {key}" for where, key, _ in walk(doc)
                if key in ("allOf", "anyOf", "oneOf", "x-nullable")]
    return problems + [f"{where}: $ref with {sorted(set(node) - {'$ref'})}" for where, node in schema_nodes(doc)
                       if "$ref" in node and len(node) > 1]


def rule_references_resolve(doc: Doc, _: Doc) -> list[str]:
    """SchemaReferenceNotFound/NotValid, ParameterReferenceNotFound/NotValid, JsonPointerNotValid;
    SchemaRefLoopNotAllowed (no definition is only a $ref to another)."""
    problems = []
    for where, key, value in walk(doc):
        if key != "$ref":
            continue
        section, _, name = value.removeprefix("#/").partition("/")
        if section not in ("definitions", "parameters") or name not in doc.get(section, {}):
            problems.append(f"{where}: $ref {value!r} does not resolve")
    return problems + [f"definitions/{name} is an alias" for name, schema in doc["definitions"].items()
                       if set(schema) == {"$ref"}]


def rule_parameters_well_formed(doc: Doc, _: Doc) -> list[str]:
    """OperationParametersContainDuplicateParameter, OperationParametersContainMultipleBodyParameters,
    BodyOrFormDataParameterInFetchOperationNotAllowed, OperationMissingPathParameter, PathParameterNotDefinedInTemplate,
    PathParameterMustBeRequired, PathParameterMissingEncoding, ConnectionIdParameterNotAllowed,
    NonBodyParameterSchemaNotValid, BodyParameterSchemaRequired, AllowEmptyValueOnlyValidForQueryFormData."""
    problems = []
    for path, method, op in operations(doc):
        name, params = op["operationId"], parameters(doc, op)
        keys = [(p["name"], p["in"]) for p in params]
        problems += [f"{name}: {key} twice" for key in set(keys) if keys.count(key) > 1]
        bodies = [p for p in params if p["in"] in ("body", "formData")]
        if len(bodies) > 1 or (method == "get" and bodies):
            problems.append(f"{name}: body parameters {[p['name'] for p in bodies]}")
        in_path = {p["name"] for p in params if p["in"] == "path"}
        if in_path != set(re.findall(r"{([^}]+)}", path)):
            problems.append(f"{name}: path parameters {sorted(in_path)} for {path}")
        for p in params:
            where = f"{name}/{p['name']}"
            if p["in"] == "path" and (p.get("required") is not True or p.get("x-ms-url-encoding") not in ("single",
                                                                                                      "double")):
                problems.append(f"{where}: a path parameter must be required and say its x-ms-url-encoding")
            if p["name"].lower() == "connectionid" or (("schema" in p) != (p["in"] == "body")):
                problems.append(f"{where}: name, or schema outside the body")
            if "allowEmptyValue" in p and p["in"] not in ("query", "formData"):
                problems.append(f"{where}: allowEmptyValue")
    return problems


def rule_internal_parameters(doc: Doc, _: Doc) -> list[str]:
    """PropertyMustBeRequired / InternalPropertyWithDefaultOptional (an internal input with a default is required);
    an internal required input has a default (OpenAPI extensions)."""
    entities = [(f"{op['operationId']}/{p['name']}", p, p.get("required", False))
                for _, _, op in operations(doc) for p in parameters(doc, op)]
    for where, node in schema_nodes(doc):
        entities += [(f"{where}.{name}", prop, name in node.get("required", [])) for name, prop in
                     node.get("properties", {}).items()]
    return [f"{where}: internal, default {e.get('default')!r}, required {required}" for where, e, required in entities
            if e.get("x-ms-visibility") == "internal" and ("default" in e) != required
            and not e.get("x-ms-notification-url")]  # the platform fills in its callback URL itself


def rule_each_field_once(doc: Doc, _: Doc) -> list[str]:
    """OperationParameterNameIsAmbiguous: no parameter is named like a body field; StartSession shows each field
    once, in its body, without the served document's query-parameter duplicates."""
    problems = []
    for _, _, op in operations(doc):
        params = parameters(doc, op)
        fields = {name for p in params if p["in"] == "body" for name in resolve(doc, p["schema"]).get("properties", {})}
        problems += [f"{op['operationId']}/{p['name']}: also a body field" for p in params
                     if p["in"] != "body" and p["name"] in fields]
    start = parameters(doc, by_id(doc, "StartSession"))
    return problems + [f"StartSession/{p['name']}: a query parameter" for p in start if p["in"] == "query"]


def rule_dynamic_values(doc: Doc, _: Doc) -> list[str]:
    """OperationIdNotFound, InvokedOperationShouldProduceArray, InvokedOperationShouldProduceProperty for
    x-ms-dynamic-values; the session id parameter offers the active sessions (ListSessions)."""
    problems, found = [], []
    for where, key, value in walk(doc):
        if key != "x-ms-dynamic-values":
            continue
        found.append(value.get("operationId"))
        target = next((op for _, _, op in operations(doc) if op["operationId"] == value.get("operationId")), None)
        if target is None:
            problems.append(f"{where}: no operation {value.get('operationId')!r}")
            continue
        if any(p.get("required") for p in parameters(doc, target)):
            problems.append(f"{where}: {target['operationId']} needs parameters")
        listed = success_schema(doc, target["operationId"])["properties"].get(value.get("value-collection"), {})
        items = resolve(doc, listed.get("items", {})) if listed.get("type") == "array" else {}
        problems += [f"{where}: {target['operationId']} answers no {value.get(key_)!r} in {value['value-collection']!r}"
                     for key_ in ("value-path", "value-title") if value.get(key_) not in items.get("properties", {})]
    session_id = [p for path, _, op in operations(doc) for p in parameters(doc, op)
                  if p["in"] == "path" and path.startswith("/sessions/")]
    if not session_id or any(p.get("x-ms-dynamic-values", {}).get("operationId") != "ListSessions" for p in session_id):
        problems.append("the session id parameter does not offer ListSessions")
    return problems


def rule_pageable(doc: Doc, api_properties: Doc) -> list[str]:
    """InvalidNextLinkNameValue; the next link is a string at the root of the 200 answer; ListHistory pages; the
    ``updatenextlink`` policy in apiProperties.json covers exactly the pageable operations, with the same property."""
    pageable = {op["operationId"]: op["x-ms-pageable"]["nextLinkName"] for _, _, op in operations(doc)
                if "x-ms-pageable" in op}
    problems = [f"{name}: nextLinkName {link!r}" for name, link in pageable.items()
                if link not in ("nextLink", "@odata.nextLink")
                or success_schema(doc, name)["properties"].get(link, {}).get("type") != "string"]
    if "ListHistory" not in pageable:
        problems.append("ListHistory is not pageable")
    policies = [p["parameters"] for p in api_properties["properties"].get("policyTemplateInstances", [])
                if p["templateId"] == "updatenextlink"]
    routed = {(name, p["x-ms-apimTemplateParameter.nextLinkPropertyName"]) for p in policies
              for name in p["x-ms-apimTemplate-operationName"]}
    if routed != set(pageable.items()):
        problems.append(f"updatenextlink routes {sorted(routed)}, the document pages {sorted(pageable.items())}")
    return problems


_TYPES: dict[str, type | tuple[type, ...]] = {"string": str, "integer": int, "number": (int, float), "boolean": bool,
                                              "array": list, "object": dict}


def rule_schema_keywords(doc: Doc, _: Doc) -> list[str]:
    """ExclusiveMinimumRequiresMinimum, ExclusiveMaximumRequiresMaximum, MinimumShouldBeLessThanOrEqualToMaximum,
    MinLengthShouldBeLessThanOrEqualToMaxLength, MinItemsShouldBeLessThanOrEqualToMaxItems, Min/MaxLength/Items/
    PropertiesMustBeGreaterThanOrEqualToZero, PatternShouldBeValidRegularExpression, EnumMustContainAtLeastOneElement,
    ArrayDuplicateValue (enum), RequiredPropertyNotOnObject, RequiredPropertyDefinitionMissing,
    RequiredPropertyArrayEmpty, ArrayHasNoItems, DefaultValueMustMatchType, MultipleOfMustBeGreaterThanZero."""
    holders = list(schema_nodes(doc))
    for _, _, op in operations(doc):
        holders += [(f"{op['operationId']}/{p['name']}", p) for p in parameters(doc, op) if p["in"] != "body"]
        holders += [(f"{op['operationId']}/{status}/{header}", spec) for status, answer in op["responses"].items()
                    for header, spec in answer.get("headers", {}).items()]
    problems = []
    for where, node in holders:
        for low, high in (("minimum", "maximum"), ("minLength", "maxLength"), ("minItems", "maxItems"),
                          ("minProperties", "maxProperties")):
            if low in node and high in node and node[low] > node[high]:
                problems.append(f"{where}: {low} > {high}")
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            if bound in node and bound.replace("exclusiveM", "m") not in node:
                problems.append(f"{where}: {bound} without {bound.replace('exclusiveM', 'm')}")
        problems += [f"{where}: {key} < 0" for key in ("minLength", "maxLength", "minItems", "maxItems",
                                                      "minProperties", "maxProperties") if node.get(key, 0) < 0]
        if node.get("multipleOf", 1) <= 0:
            problems.append(f"{where}: multipleOf")
        if "pattern" in node:
            try:
                re.compile(node["pattern"])
            except re.error:
                problems.append(f"{where}: pattern {node['pattern']!r}")
        if "enum" in node and (not node["enum"] or len(node["enum"]) != len({json.dumps(v) for v in node["enum"]})):
            problems.append(f"{where}: enum {node['enum']}")
        required = node.get("required")
        if isinstance(required, list) and (node.get("type") != "object" or not required
                                           or not set(required) <= set(node.get("properties", {}))):
            problems.append(f"{where}: required {required}")
        if node.get("type") == "array" and "items" not in node:
            problems.append(f"{where}: an array without items")
        expected = _TYPES.get(node.get("type", ""), object)
        if "default" in node and (not isinstance(node["default"], expected)
                                  or (isinstance(node["default"], bool) and node.get("type") in ("integer", "number"))):
            problems.append(f"{where}: default {node['default']!r} is not a {node.get('type')}")
    return problems


def rule_security(doc: Doc, api_properties: Doc) -> list[str]:
    """SecurityRequirementMustBeDefined, SecurityRequirementMustHaveEmptyValue, SecuritySchemePropertyRequired: one
    API key definition (only the first is used), the function key in the x-functions-key header, and its secure
    ``api_key`` connection parameter in apiProperties.json."""
    definitions = doc.get("securityDefinitions", {})
    problems = [] if list(definitions.values()) == [{"type": "apiKey", "in": "header", "name": "x-functions-key",
                                                     "description": "A function key of the app."}] \
        else [f"securityDefinitions {definitions}"]
    requirements = [*doc.get("security", []), *(r for _, _, op in operations(doc) for r in op.get("security", []))]
    problems += [f"security {r}" for r in requirements if any(n not in definitions or s != [] for n, s in r.items())]
    if not doc.get("security"):
        problems.append("the document requires no key")
    key = api_properties["properties"].get("connectionParameters", {}).get("api_key", {})
    if key.get("type") != "securestring" or key.get("uiDefinition", {}).get("constraints", {}).get("clearText"):
        problems.append(f"connection parameter api_key {key}")
    return problems


def rule_info_and_metadata(doc: Doc, _: Doc) -> list[str]:
    """SpecificationVersionIncorrect, HostNameNotValid, BasePathNotValid, SchemeNotValid, SchemesArrayEmpty,
    SchemeNotSupported, TagRedefined, ConnectorMetadataPropertiesMissing, InvalidConnectorCategory,
    TooManyConnectorCategories, UrlNotValid, ContactEmailNotValid; the certification's title (at most 30 characters,
    no "API" or "Connector", ending alphanumeric), description (30 to 500 characters, no "API") and contact."""
    info, problems = doc["info"], []
    title, description = info.get("title", ""), info.get("description", "")
    if not 0 < len(title) <= MAX_TITLE or re.search(r"(?i)\b(API|Connector)\b", title) or not title[-1:].isalnum():
        problems.append(f"title {title!r}")
    if not 30 <= len(description) <= 500 or re.search(r"\bAPI\b", description):
        problems.append(f"description of {len(description)} characters")
    contact = info.get("contact", {})
    if not contact.get("name") or ("email" in contact and not re.fullmatch(r"[^@\s]+@[^@\s]+\.\w+", contact["email"])):
        problems.append(f"contact {contact}")
    if doc.get("swagger") != "2.0":
        problems.append(f"swagger {doc.get('swagger')!r}")
    if not re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", doc.get("host", "")) or not doc.get("basePath", "/").startswith("/"):
        problems.append(f"host {doc.get('host')!r}, basePath {doc.get('basePath')!r}")
    if not doc.get("schemes") or not set(doc["schemes"]) <= {"https", "http"}:
        problems.append(f"schemes {doc.get('schemes')}")
    tags = [tag["name"] for tag in doc.get("tags", [])]
    used = {tag for _, _, op in operations(doc) for tag in op.get("tags", [])}
    if len(tags) != len(set(tags)) or not used or not used <= set(tags):
        problems.append(f"tags {tags}, used {sorted(used)}")
    metadata = {m["propertyName"]: m["propertyValue"] for m in doc.get("x-ms-connector-metadata", [])}
    problems += [f"x-ms-connector-metadata {name}: {metadata.get(name)!r}" for name in ("Website", "Privacy policy")
                 if not re.fullmatch(r"https://[^\s/]+\.[^\s/]+(/\S*)?", metadata.get(name, ""))]
    categories = metadata.get("Categories", "").split(";")
    if not 1 <= len(categories) <= 2 or not set(categories) <= CATEGORIES:
        problems.append(f"Categories {categories}")
    return problems


def rule_no_product_names(doc: Doc, _: Doc) -> list[str]:
    """Summaries, descriptions, title: no Power Platform product name (certification)."""
    return [f"{name!r} in {text[:60]!r}" for text in strings(doc) for name in PRODUCT_NAMES if name in text]


def rule_paths(doc: Doc, _: Doc) -> list[str]:
    """OperationPathMustStartWithSlash, OperationPathMayNotContainQueryOrFragment,
    OperationPathContainsUnsupportedCharacters, PathRedefined, DuplicateOperationPath, TotalOperationsCount (a few)."""
    paths = list(doc["paths"])
    problems = [f"path {p!r}" for p in paths if not p.startswith("/") or set(p) & set("?#*")]
    lowered = [p.lower() for p in paths]
    problems += [f"path {p!r} twice ignoring case" for p in set(lowered) if lowered.count(p) > 1]
    shapes = [(re.sub(r"{[^}]+}", "{}", path), method) for path, method, _ in operations(doc)]
    problems += [f"{shape} twice" for shape in set(shapes) if shapes.count(shape) > 1]
    return problems


def rule_size(doc: Doc, _: Doc) -> list[str]:
    """The definition is smaller than 1 MB (certification, custom connector import)."""
    size = len(render(doc).encode())
    return [f"{size} bytes"] if size >= 1_000_000 else []


Rule = Callable[[Doc, Doc], list[str]]


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    """A mutation that sets the value at a '/'-separated path (list indices as numbers)."""
    def mutate(doc: Doc) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value
    return mutate


def _history(doc: Doc) -> Doc:
    return by_id(doc, "ListHistory")


# Each rule, with a broken copy of the document that it must reject.
RULES: dict[str, tuple[Rule, Callable[[Doc], None]]] = {
    "operation_ids": (rule_operation_ids, lambda d: by_id(d, "GetSession").update(operationId="StartSession")),
    "operation_summaries": (rule_operation_summaries,
                            lambda d: by_id(d, "ExtendSession").update(summary="Extend a session's lease.")),
    "operation_descriptions": (rule_operation_descriptions,
                               lambda d: by_id(d, "StopSession").update(description="Stops a session")),
    "operation_visibility": (rule_operation_visibility, lambda d: by_id(d, "Health").pop("x-ms-visibility")),
    "parameter_strings": (rule_parameter_strings, _set("parameters/SessionId/x-ms-summary", "session-id")),
    "property_strings": (rule_property_strings,
                         lambda d: d["definitions"]["SessionView"]["properties"]["hostname"].pop("description")),
    "media_types": (rule_media_types, _set("produces", ["application/json", "application/problem+json"])),
    "one_success_schema": (rule_one_success_schema,
                           lambda d: by_id(d, "StartSession")["responses"]["202"].update(
                               schema={"$ref": "#/definitions/SessionView"})),
    "plain_schemas": (rule_plain_schemas, _set("definitions/SessionView/properties/links",
                                               {"allOf": [{"$ref": "#/definitions/SessionView"}], "x-nullable": True})),
    "references_resolve": (rule_references_resolve, lambda d: by_id(d, "GetSession")["responses"]["200"].update(
        schema={"$ref": "#/definitions/Session"})),
    "parameters_well_formed": (rule_parameters_well_formed, lambda d: by_id(d, "GetSession")["parameters"].append(
        {"name": "body", "in": "body", "schema": {"type": "object"}})),
    "internal_parameters": (rule_internal_parameters,
                            lambda d: next(p for p in _history(d)["parameters"] if p.get("name") == "continuationToken")
                            .update(default="x")),
    "each_field_once": (rule_each_field_once, lambda d: by_id(d, "StartSession")["parameters"].append(
        {"name": "size", "in": "query", "type": "string", "description": "Size.", "x-ms-summary": "Size"})),
    "dynamic_values": (rule_dynamic_values,
                       _set("parameters/SessionId/x-ms-dynamic-values/value-collection", "items")),
    "pageable": (rule_pageable, lambda d: _history(d).update({"x-ms-pageable": {"nextLinkName": "next"}})),
    "schema_keywords": (rule_schema_keywords, _set("definitions/SessionView/properties/status/enum", [])),
    "security": (rule_security, _set("securityDefinitions/functionKey/in", "query")),
    "info_and_metadata": (rule_info_and_metadata, _set("info/title", "ARR Sessions API")),
    "no_product_names": (rule_no_product_names, _set("info/description", "Runs sessions from Power Automate flows.")),
    "paths": (rule_paths, lambda d: d["paths"].update({"/Sessions": d["paths"]["/sessions"]})),
    "size": (rule_size, _set("info/description", "x" * 1_000_000)),
}


# -- tests ---------------------------------------------------------------------------------------------------------

def test_committed_definition_is_what_the_models_generate() -> None:
    committed = (CONNECTOR / "apiDefinition.swagger.json").read_text(encoding="utf-8")
    assert committed == render(connector_document()), \
        "connector/apiDefinition.swagger.json is stale: run `make connector` and commit the result"


def test_the_cli_writes_the_same_file_or_one_for_another_host(tmp_path: Path) -> None:
    assert main([str(tmp_path / "default.json")]) == 0
    assert (tmp_path / "default.json").read_text(encoding="utf-8") == render(connector_document(PLACEHOLDER_HOST))
    assert main([str(tmp_path / "mine.json"), "--host", "my-app.azurewebsites.net"]) == 0
    assert json.loads((tmp_path / "mine.json").read_text(encoding="utf-8"))["host"] == "my-app.azurewebsites.net"


def test_comment_stripping_keeps_urls_in_strings() -> None:
    text = '{\n  "a": "https://x.example/b", // a comment\n  "c": "\\"//\\"" // "quoted"\n  // TODO\n}'
    assert json.loads(strip_comments(text)) == {"a": "https://x.example/b", "c": '"//"'}


def test_definition_is_valid_against_the_power_platform_schema(doc: Doc,
                                                               validator: jsonschema.Draft4Validator) -> None:
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors)


SCHEMA_BREAKERS: dict[str, Callable[[Doc], None]] = {
    "swagger 3.0": _set("swagger", "3.0"),
    "an unknown x-ms extension": lambda d: by_id(d, "StartSession").update({"x-ms-bogus": True}),
    "a visibility that does not exist": _set("parameters/SessionId/x-ms-visibility", "hidden"),
    "paging without nextLinkName": lambda d: _history(d).update({"x-ms-pageable": {}}),
    "dynamic values without an operation": _set("parameters/SessionId/x-ms-dynamic-values", {"value-path": "id"}),
    "an API key in a cookie": _set("securityDefinitions/functionKey/in", "cookie"),
    "a response without a description": lambda d: by_id(d, "GetSession")["responses"]["404"].pop("description"),
    "a type the format does not know": _set("definitions/SessionView/properties/createdAt/format", "timestamp"),
}


@pytest.mark.parametrize("breaker", SCHEMA_BREAKERS.values(), ids=SCHEMA_BREAKERS.keys())
def test_the_schema_validation_can_fail(doc: Doc, validator: jsonschema.Draft4Validator,
                                        breaker: Callable[[Doc], None]) -> None:
    """Negative control: the validator rejects broken copies, so a pass above means something."""
    broken = copy.deepcopy(doc)
    breaker(broken)
    assert list(validator.iter_errors(broken))


@pytest.mark.parametrize("name", RULES)
def test_certification_rule_holds(doc: Doc, api_properties: Doc, name: str) -> None:
    rule, _ = RULES[name]
    assert rule(doc, api_properties) == [], rule.__doc__


@pytest.mark.parametrize("name", RULES)
def test_certification_rule_rejects_a_broken_copy(doc: Doc, api_properties: Doc, name: str) -> None:
    """Negative control for each rule."""
    rule, breaker = RULES[name]
    broken = copy.deepcopy(doc)
    breaker(broken)
    assert rule(broken, api_properties)


def test_served_document_stays_valid_and_importable() -> None:
    """The served /api/openapi.json, which keeps the query duplicates, problem+json and x-nullable that the app and
    schemathesis need: still valid OpenAPI 2.0, and valid against the Power Platform schema too."""
    from openapi_spec_validator import validate

    served = json.loads(json.dumps(openapi_document("https://app.example/api/")))
    validate(served)
    schema = json.loads(strip_comments(SCHEMA_FILE.read_text(encoding="utf-8")))
    assert not list(jsonschema.Draft4Validator(schema, registry=Registry()).iter_errors(served))
    assert by_id(served, "Health")["x-ms-visibility"] == by_id(served, "OpenApi")["x-ms-visibility"] == "internal"


def test_connector_has_the_served_operations_and_fields(doc: Doc) -> None:
    """Derived, not a copy: the same paths, methods and operations, the same body fields, the same response fields."""
    served = openapi_document("https://app.example/api/")
    assert {(p, m, op["operationId"]) for p, m, op in operations(doc)} == \
        {(p, m, op["operationId"]) for p, m, op in operations(served)}
    for name, schema in doc["definitions"].items():
        assert set(schema.get("properties", {})) == set(served["definitions"][name].get("properties", {})), name
    duplicates = {p["name"] for p in parameters(served, by_id(served, "StartSession")) if p["in"] == "query"}
    assert duplicates - {"payload"} == set(doc["definitions"]["StartSessionRequest"]["properties"])


def test_advanced_inputs_are_advanced(doc: Doc) -> None:
    start = doc["definitions"]["StartSessionRequest"]["properties"]
    assert {name for name, prop in start.items() if prop.get("x-ms-visibility") == "advanced"} == \
        {"sessionId", "labels", "keepAlive", "callbackUrl"}
    advanced = {(op["operationId"], p["name"]) for _, _, op in operations(doc) for p in parameters(doc, op)
                if p.get("x-ms-visibility") == "advanced"}
    assert advanced == {("StartSession", "Idempotency-Key"), ("ListHistory", "requestedBy"), ("ListHistory", "size"),
                        ("ListHistory", "top"), ("RunCleanup", "mode")}


def test_api_properties_file(api_properties: Doc) -> None:
    """The keys paconn's apiProperties schema allows; a brand colour other than the rejected defaults; actions."""
    assert set(api_properties) == {"properties"}
    props = api_properties["properties"]
    assert set(props) <= {"iconBrandColor", "publisher", "stackOwner", "capabilities", "connectionParameters",
                          "policyTemplateInstances"}
    assert re.fullmatch(r"#[0-9a-f]{6}", props["iconBrandColor"]) and props["iconBrandColor"] not in ("#007ee5",
                                                                                                        "#ffffff")
    assert props["capabilities"] == ["actions"] and props["publisher"] and props["stackOwner"]
    key = props["connectionParameters"]["api_key"]
    assert key["uiDefinition"]["displayName"] and key["uiDefinition"]["constraints"]["required"] == "true"


def test_readme_has_the_template_sections_and_every_visible_operation(doc: Doc) -> None:
    readme = (CONNECTOR / "readme.md").read_text(encoding="utf-8")
    for heading in ("## Publisher: ", "## Prerequisites", "## Supported Operations", "## Obtaining Credentials",
                    "## Known Issues and Limitations", "## Deployment Instructions"):
        assert f"\n{heading}" in readme, heading
    for _, _, op in operations(doc):
        if op["x-ms-visibility"] != "internal":
            assert f"\n### {op['summary']}\n" in readme, op["summary"]
    assert PLACEHOLDER_HOST in readme
