"""docs/API.md (the public contract), the README, the other docs and the code say the same thing.

- The route table is the served OpenAPI document: the same operations, methods, paths, success and error statuses,
  query parameters and bounds; the HTTP functions outside the document are in a table of their own, and the
  anonymous ones are the ones the contract names.
- Every model of the document has its table, field by field and in wire order, with each field's type as the
  document states it.
- The settings tables (the contract's and docs/operations.md's) name exactly the settings the app reads, with its
  defaults.
- The README links the contract inside the repository, and every relative link of the README and of docs/*.md
  resolves: to a file of the repository, and to a heading of it when the link names one.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from arr_core.services.settings import ENV_NAMES, HOST_RESOLVED, AppSettings
from blueprints.openapi import openapi_document
from blueprints.queries import INSTANT_PATTERN, YEARS, HistoryQuery, UsageQuery

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "docs" / "API.md"
README = ROOT / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"  # the settings table for people who run the app
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
BASE = "https://app.example/api/"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}

# The registered functions, from a process of their own: FunctionApp.get_functions() runs once per app instance.
FUNCTIONS_PROBE = """
import json, function_app
out = []
for f in function_app.app.get_functions():
    t = f.get_trigger()
    if t.get_binding_name() == "httpTrigger":
        level = getattr(t.auth_level, "value", t.auth_level)
        out.append({"name": f.get_function_name(), "route": t.route,
                    "methods": sorted(str(getattr(m, "value", m)).upper() for m in t.methods or ()),
                    "anonymous": str(level).lower() == "anonymous"})
print(json.dumps(out))
"""


# -- reading markdown ----------------------------------------------------------------------------------------------

def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line) up to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines))
                if re.match(rf"^#{{1,{level}}} ", lines[i])), len(lines))
    return "\n".join(lines[start:end])


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first markdown table in ``text``, as stripped cells."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = [line for line in itertools.takewhile(lambda line: line.startswith("|"), lines[first:])]
    assert len(rows) >= 2 and set(rows[1].replace("|", "").strip()) <= set("-: "), text[:300]
    return [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows[2:]]


def names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


@cache
def contract() -> str:
    return API.read_text(encoding="utf-8")


@cache
def readme() -> str:
    return README.read_text(encoding="utf-8")


@cache
def document() -> dict[str, Any]:
    return openapi_document(BASE)


def operations() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId -> (METHOD, /api/path, operation) of the served document."""
    return {op["operationId"]: (method.upper(), f"/api{path}", op)
            for path, ops in document()["paths"].items() for method, op in ops.items() if method in METHODS}


@cache
def http_functions() -> list[dict[str, Any]]:
    env = {**os.environ, "ARR_CLEANUP_SCHEDULE": "0 */5 * * * *"}
    out = subprocess.run([sys.executable, "-c", FUNCTIONS_PROBE], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def route_table() -> dict[str, list[str]]:
    rows = table_rows(section(section(contract(), "## 1. HTTP API of the function app"), "### Operations"))
    return {row[0]: row for row in rows}


# -- the operations ------------------------------------------------------------------------------------------------

def test_the_route_table_is_the_served_document() -> None:
    """Same operationIds, methods and paths; the answers with a body of their own named in the success column
    (Health's 503 too), the problem answers listed exactly in the errors column."""
    table = route_table()
    served = operations()
    assert sorted(table) == sorted(served)
    problem = {"$ref": "#/definitions/Problem"}
    for operation_id, (method, path, op) in served.items():
        _, route, _, success, errors = table[operation_id]
        assert route == f"`{method} {path}`", operation_id
        answers = sorted((int(status), answer.get("schema")) for status, answer in op["responses"].items())
        assert [s for s, schema in answers if schema != problem] == \
            sorted(int(s) for s in re.findall(r"\b([2-5]\d\d)\b", success)), operation_id
        assert [s for s, schema in answers if schema == problem] == [int(s) for s in errors.split()], operation_id


def test_each_query_parameter_and_its_bounds_are_in_the_route_table() -> None:
    table = route_table()
    for operation_id, (_, _, op) in operations().items():
        does = table[operation_id][2]
        for parameter in (p for p in op["parameters"] if p["in"] == "query"):
            assert re.search(rf"`{parameter['name']}[`=]", does), (operation_id, parameter["name"])
            if {"minimum", "maximum", "default"} <= parameter.keys():
                bounds = f"{parameter['minimum']}-{parameter['maximum']}, default {parameter['default']}"
                assert bounds in does, (operation_id, parameter["name"], bounds)
            if parameter.get("format") == "date-time":  # the years: in a pattern, and in words
                assert parameter["pattern"] == INSTANT_PATTERN and YEARS in parameter["description"]
            assert parameter["allowEmptyValue"] is False
    assert f"last **{HistoryQuery.default_days}** days" in table["ListHistory"][2]
    assert f"last **{UsageQuery.default_days}** days" in table["GetUsage"][2]
    assert YEARS in contract()


def test_every_http_function_is_in_one_table_and_the_anonymous_ones_are_named() -> None:
    """An HTTP function is in the served document (same method and route) or in the table of the others; the
    contract's list of anonymous functions is the registered one, and only keyed operations document a 401."""
    served = {op_id: (method, path) for op_id, (method, path, _) in operations().items()}
    others = {row[0]: row[1] for row in table_rows(section(contract(), "### Operations").split(
        "not in the served document:")[1])}
    functions = http_functions()
    assert {f["name"] for f in functions} == set(served) | set(others)
    assert not set(served) & set(others)
    for function in functions:
        (method,) = function["methods"]
        route = f"`{method} /api/{function['route']}`"
        if function["name"] in served:
            assert f"`{served[function['name']][0]} {served[function['name']][1]}`" == route, function
        else:
            assert others[function["name"]] == route, function
    keys = next(line for line in contract().splitlines() if line.startswith("- **Function keys.**"))
    keys += section(contract(), "### Conventions").split("- **Function keys.**")[1].split("\n- ")[0]
    anonymous = {f["name"] for f in functions if f["anonymous"]}
    assert {name for name in names(keys) if name in served or name in others} == anonymous
    for op_id, (_, _, op) in operations().items():
        assert ("401" in op["responses"]) == (op_id not in anonymous), op_id
        assert (op.get("security") == []) == (op_id in anonymous), op_id


# -- the models ----------------------------------------------------------------------------------------------------

def doc_type(schema: dict[str, Any]) -> str:
    """A field's type as the contract writes it, from its schema in the served (OpenAPI 2.0) document."""
    nullable = schema.get("x-nullable", False)
    if "allOf" in schema:
        schema = schema["allOf"][0]
    if "$ref" in schema:
        text = f"`{schema['$ref'].rsplit('/', 1)[1]}`"
    elif "enum" in schema:
        text = "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
    elif schema.get("type") == "array":
        text = f"array of {doc_type(schema['items'])}"
    elif schema.get("type") == "object":
        values = schema.get("additionalProperties")
        text = f"object of {doc_type(values)}s" if isinstance(values, dict) and values else "object"
    elif schema.get("format") == "date-time":
        text = "date-time"
    else:
        text = schema["type"]
    return f"{text} or null" if nullable else text


def model_sections() -> dict[str, str]:
    models = section(contract(), "### Models")
    parts = re.split(r"^#### `([A-Za-z]+)`$", models, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_model_of_the_document_has_its_table_and_no_other() -> None:
    assert sorted(model_sections()) == sorted(document()["definitions"])


@pytest.mark.parametrize("model", sorted(openapi_document(BASE)["definitions"]))
def test_a_models_fields_and_types_are_the_documents(model: str) -> None:
    """Field names in wire order, each with its type (``or null`` where the document says x-nullable)."""
    schema = document()["definitions"][model]
    text = model_sections()[model]
    if "properties" not in schema:  # an enumeration
        assert text.strip().startswith(doc_type(schema) + ":"), text
        return
    documented = [(row[0], row[1]) for row in table_rows(text)]
    assert documented == [(f"`{name}`", doc_type(prop)) for name, prop in schema["properties"].items()]


# -- settings --------------------------------------------------------------------------------------------------------

FIELD_OF = {name: field for field, name in ENV_NAMES.items()}


def settings_rows(text: str) -> list[list[str]]:
    return table_rows(text)


def test_the_contracts_settings_are_the_apps_with_its_defaults() -> None:
    rows = settings_rows(section(contract(), "## 3. Settings"))
    assert sorted(names(row[0])[0] for row in rows) == sorted(ENV_NAMES.values())
    for row in rows:
        name, default = names(row[0])[0], row[1]
        field = FIELD_OF[name]
        actual = AppSettings.model_fields[field].default
        if default == "required":
            assert actual in ("", None) or field in HOST_RESOLVED, name
        elif default == "unset":
            assert actual is None, name
        else:
            (value,) = names(default)
            assert value == str(getattr(actual, "value", actual)).removesuffix(".0"), name


def test_the_operations_settings_table_names_every_setting_and_the_schedule_is_required() -> None:
    rows = settings_rows(section(OPERATIONS.read_text(encoding="utf-8"), "## Settings"))
    listed = [name for row in rows for name in names(row[0])]
    assert sorted(listed) == sorted(ENV_NAMES.values())
    schedule = next(row for row in rows if names(row[0]) == [ENV_NAMES["cleanup_schedule"]])
    assert "required" in schedule[1] and "local.settings.example.json" in schedule[2]


# -- the README and docs/ ------------------------------------------------------------------------------------------

def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings: lower case, punctuation but ``-`` and ``_`` dropped, spaces to ``-``."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#{1,6} (.+)$", markdown, flags=re.MULTILINE)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.relative_to(ROOT).as_posix())
def test_the_readme_links_the_contract_in_this_repository_and_every_relative_link_resolves(doc: Path) -> None:
    assert "](docs/API.md)" in readme()
    text = doc.read_text(encoding="utf-8")
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        path = (doc.parent / target).resolve() if target else doc
        assert path.exists(), (doc.name, target)
        assert path.is_relative_to(ROOT), (doc.name, target)
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path.read_text(encoding="utf-8")), (doc.name, target, anchor)


def test_the_local_hosts_key_switches_are_documented_and_real() -> None:
    main = (ROOT / "devhost" / "__main__.py").read_text(encoding="utf-8")
    for switch in ("DEVHOST_FUNCTION_KEYS", "--function-key"):
        assert switch in main and switch in readme() and switch in contract(), switch
