"""Deploy as code, checked offline (issue 10): no Bicep compiler can be installed here, so ``infra/`` is checked by
what can be.

- Every ``.bicep`` file parses with pycep-parser; a deliberately broken copy does not.
- ``checkov --framework bicep`` reports no failed check, no parse error, and a reason for every check we skip.
- The app settings that ``infra/`` gives the function app match what :class:`AppSettings` reads: each ARR_* setting
  comes from a parameter whose default is the app's own (and ``main.parameters.json`` maps it to the same name and
  default), nothing is set that nothing reads (host settings are allowed by name), the account key only ever as a
  Key Vault reference, and each role is assigned to the app's identity on the resource the app uses. These are
  read by evaluating the parsed Bicep for concrete parameter values: the defaults, and an existing ARR account,
  history account and a key.
- ``azure-functions-doctor --profile full --hosting-plan flex-consumption`` finds no failure, and every warning is
  one explained in ``EXPLAINED_WARNINGS``.

The checkers live in ``.venv-iac`` (``make iac-tools``, which ``make test`` runs): their dependencies would clash
with ours. A missing checker fails these tests; it never skips them.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from arr_core.services import context
from arr_core.services.settings import ENV_NAMES, AppSettings

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
IAC_BIN = ROOT / ".venv-iac" / "bin"

ROLE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
ROLE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
ROLE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
ROLE_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
ROLE_REMOTE_RENDERING_CLIENT = "d39065c4-c120-43c9-ab0a-63eed9795f0a"
ROLE_KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
ROLE_TABLE_DATA_READER = "76199698-9eea-4c19-bc75-cec21354c6b6"

# Settings the function app gets that arr_core does not read: the Functions host's own, by exact name.
HOST_SETTINGS = {
    "AzureWebJobsStorage__credential": "the host's storage by managed identity",
    "AzureWebJobsStorage__clientId": "which identity: the user-assigned one",
    "AzureWebJobsStorage__blobServiceUri": "the host's blobs: timer schedule monitor, singleton leases, function keys",
    "AzureWebJobsStorage__queueServiceUri": "the host's queue triggers (session watcher, notifications)",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "host-based telemetry",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "telemetry by Entra ID (App Insights has local auth disabled)",
}
# Read by AppSettings, deliberately not set: a connection string would need a shared key, which the account refuses.
NOT_SET = {"AzureWebJobsStorage": "history is reached by ARR_HISTORY_TABLE_ENDPOINT and the managed identity"}
# Set only when asked for, and then only as a Key Vault reference.
KEY_SETTING = "ARR_ACCOUNT_KEY"
# Set from what the deployment creates rather than from a parameter.
DERIVED = {"ARR_MANAGED_IDENTITY_CLIENT_ID", "ARR_HISTORY_TABLE_ENDPOINT", "ARR_QUEUE_ENDPOINT"}
# No default: azd asks for them (docs/deploy.md, "Parameters": required).
REQUIRED = {"ARR_ACCOUNT_ID", "ARR_ACCOUNT_DOMAIN", "ARR_REGION"}
# No default either, and no question: azd generates them once (``@metadata`` type ``generate``) and keeps them.
GENERATED = {"ARR_LINK_SIGNING_KEY": "arrLinkSigningKey"}

# azure-functions-doctor warnings that are explained, not fixed (docs/deploy.md). Any other warning fails.
EXPLAINED_WARNINGS = {
    "check_dev_storage_connection": "local.settings.example.json is the local example (Azurite); Azure gets "
                                    "identity-based AzureWebJobsStorage__* from infra/app/api.bicep",
    "check_local_settings": "local.settings.json is made by `make run` from the example and never committed",
    "check_func_cli": "Core Tools are optional: `make run` serves the real functions with devhost",
    "check_func_core_tools_version": "same as check_func_cli",
    "check_app_insights": "the doctor reads local.settings.json only; Azure gets APPLICATIONINSIGHTS_* from "
                          "infra/app/api.bicep, and locally there is no telemetry",
    "check_asgi_wsgi_exposure": "Starlette serves the emulator, devhost and a test proxy, none of them deployed; "
                                "the function app exposes no ASGI app",
    "check_binding_connection_resolution": "connections named only by test apps, which are not deployed",
}
# For these, the explanation holds only while every file the warning names stays out of the package (.funcignore).
NAMED_FILES = {
    "check_asgi_wsgi_exposure": r"'([\w./-]+\.py):",
    "check_binding_connection_resolution": r"\(([\w./-]+\.py):\w+\)",
}


def _all_outside_the_package(detail: str, files: str) -> bool:
    """Every file a warning names is left out of the deployment package by .funcignore."""
    named = re.findall(files, detail)
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".funcignore").read_text().splitlines() if line.strip()}
    return bool(named) and all(Path(name).parts[0] in ignored for name in named)


PARSER = r"""
import json, re, sys
from pathlib import Path
from pycep import BicepParser

parser = BicepParser()
INTERPOLATION = re.compile(r"\$\{((?:[^{}']|'[^']*')*)\}")

def expression(text):
    return parser.parse(text=f"var v = {text}\n")["variables"]["v"]["value"]

def expand(node):
    # pycep leaves '${...}' inside strings as text: parse each part, so that it can be evaluated like the rest.
    if isinstance(node, dict):
        return {key: expand(value) for key, value in node.items()}
    if isinstance(node, list):
        return [expand(value) for value in node]
    if isinstance(node, str) and "${" in node and not node.startswith("'"):
        parts, last = [], 0
        for match in INTERPOLATION.finditer(node):
            parts += [node[last:match.start()], {"expression": expand(expression(match.group(1)))}]
            last = match.end()
        return {"interpolation": [*parts, node[last:]]}
    return node

out = {}
for path in sorted(Path(sys.argv[1]).rglob("*.bicep")):
    name = path.relative_to(sys.argv[1]).as_posix()
    try:
        out[name] = expand(parser.parse(file_path=path))
    except Exception as exc:
        out[name] = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(out, default=str))
"""


def iac_tool(name: str) -> Path:
    """An executable of ``.venv-iac``; missing, the test fails saying how to install it (never skips)."""
    path = IAC_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make iac-tools` (`make test` does) to install "
                    "infra/requirements-check.txt into .venv-iac", pytrace=False)
    return path


def parse_bicep(folder: Path) -> dict[str, Any]:
    """Every ``.bicep`` file under ``folder``, parsed by pycep (relative path -> tree, or ``{"error": ...}``)."""
    done = subprocess.run([str(iac_tool("python")), "-c", PARSER, str(folder)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def checkov(folder: Path) -> dict[str, Any]:
    """checkov's JSON report on ``folder`` (it exits 0 on a parse error: the report says, not the exit code)."""
    done = subprocess.run([str(iac_tool("checkov")), "--directory", str(folder), "--framework", "bicep",
                           "--output", "json", "--skip-download", "--compact"],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "LOG_LEVEL": "ERROR"})
    assert done.stdout.strip(), f"checkov printed no report (exit {done.returncode}):\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout)
    return report[0] if isinstance(report, list) else report


def checkov_problems(report: dict[str, Any]) -> list[str]:
    """What makes a checkov report fail: a parse error, a failed check, a skip without a reason, or no check run."""
    summary = report.get("summary", report)
    results = report.get("results", {})
    problems = [f"parse error in {name}" for name in results.get("parsing_errors", [])]
    if summary.get("parsing_errors"):
        problems.append(f"{summary['parsing_errors']} file(s) did not parse")
    problems += [f"{check['check_id']} failed on {check['resource']} ({check['file_path']}): {check['check_name']}"
                 for check in results.get("failed_checks", [])]
    for check in results.get("skipped_checks", []):
        reason = ((check.get("check_result") or {}).get("suppress_comment") or "").strip()
        if len(reason) < 20:
            problems.append(f"{check['check_id']} on {check['resource']} is skipped without a reason")
    if summary.get("passed", 0) < 20:
        problems.append(f"only {summary.get('passed', 0)} checks passed: did checkov see our resources?")
    return problems


# -- a small evaluator of the parsed Bicep ------------------------------------------------------------------------

@dataclass(frozen=True)
class Opaque:
    """A value only Azure knows (a resource property, uniqueString): equal when made the same way."""

    what: str

    def __str__(self) -> str:  # usable inside names and URLs, stable across runs
        return "o" + hashlib.sha256(self.what.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Resource:
    """A resource symbol of a file: its type, and its name as evaluated there."""

    type: str
    name: Any

    def get(self, key: str) -> Any:
        return self.name if key == "name" else Opaque(f"{self.type}/{self.name}.{key}")


@dataclass(frozen=True)
class Accessed:
    """A property path read off an opaque value (``identity.properties.principalId``)."""

    base: Any
    path: tuple[str, ...]


def _loop_source(text: str) -> Any:
    """What ``items(...)`` loops over: pycep gives a symbol's name, or a Python repr of an expression's node."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


@dataclass
class Bicep:
    """One file's expressions for given parameter values: enough of Bicep to follow what ``infra/`` does."""

    trees: dict[str, Any]
    path: str
    args: dict[str, Any] = field(default_factory=dict)
    local: dict[str, Any] = field(default_factory=dict)

    @property
    def tree(self) -> dict[str, Any]:
        tree = self.trees[self.path]
        assert "error" not in tree, f"{self.path}: {tree.get('error')}"
        return tree

    def module(self, symbol: str) -> Module:
        node = self.tree["modules"][symbol]
        config = node["config"]
        condition = True
        if "condition" in config and "config" in config:
            condition, config = self.value(config["condition"]), config["config"]
        path = (Path(self.path).parent / node["detail"]["path"]).as_posix().removeprefix("./")
        path = os.path.normpath(path)
        args = {name: self.value(expr) for name, expr in (config.get("params") or {}).items()}
        return Module(symbol, Bicep(self.trees, path, args), bool(condition), self.value(config.get("scope")))

    def resources(self, type_: str) -> Iterator[tuple[str, bool, dict[str, Any]]]:
        """(symbol, deployed, config) of each resource of a type declared here."""
        for symbol, node in self.tree.get("resources", {}).items():
            if node["type"] == type_:
                config, condition = node["config"], True
                if "condition" in config and "config" in config:
                    condition, config = self.value(config["condition"]), config["config"]
                yield symbol, bool(condition), config

    def resource(self, symbol: str) -> Resource:
        node = self.tree["resources"][symbol]
        config = node["config"].get("config", node["config"]) if "condition" in node["config"] else node["config"]
        return Resource(node["type"], self.value(config["name"]))

    def symbol(self, name: str) -> Any:
        tree = self.tree
        if name in self.local:
            return self.local[name]
        if name in tree.get("parameters", {}):
            if name in self.args:
                return self.args[name]
            default = tree["parameters"][name]["default"]
            assert default is not None, f"{self.path}: parameter {name} has no value and no default"
            return self.value(default)
        if name in tree.get("variables", {}):
            return self.value(tree["variables"][name]["value"])
        if name in tree.get("resources", {}):
            return self.resource(name)
        if name in tree.get("modules", {}):
            return self.module(name)
        return name  # pycep keeps identifiers and string literals alike: not a symbol, so a literal

    def value(self, node: Any) -> Any:
        if node is None or isinstance(node, bool | int | float):
            return node
        if isinstance(node, str):
            return self.symbol(node)
        if isinstance(node, list):
            return [self.value(item) for item in node]
        if "interpolation" in node:
            return "".join(part if isinstance(part, str) else str(self.value(part["expression"]))
                           for part in node["interpolation"])
        if "operator" in node:
            return self.operator(node["operator"]["type"], node["operator"]["operands"])
        if "function" in node:
            return self.function(node["function"])
        if "loop_type" in node:
            loop = node["loop_type"]
            assert loop["type"] == "object", f"{self.path}: loop {loop['type']} is not evaluated here"
            source = self.value(_loop_source(loop["detail"]["object_name"]))
            item = loop["detail"]["item_name"]
            return [Bicep(self.trees, self.path, self.args, {**self.local, item: {"key": k, "value": v}})
                    .value(node["config"]) for k, v in sorted(source.items(), key=lambda kv: kv[0].lower())]
        return {key.strip("'"): self.value(item) for key, item in node.items()}

    def path_of(self, node: Any) -> list[Any]:
        """``a.b.c`` as pycep nests it (``a`` . (``b`` . ``c``)), flattened."""
        if isinstance(node, dict) and node.get("operator", {}).get("type") == "property_accessor":
            operands = node["operator"]["operands"]
            return [operands["operand_1"], *self.path_of(operands["operand_2"])]
        return [node]

    def operator(self, kind: str, operands: dict[str, Any]) -> Any:
        if kind == "conditional":
            chosen = "true_value" if self.value(operands["condition"]) else "false_value"
            return self.value(operands[chosen])
        if kind == "not":
            return not self.value(operands["bool_value"])
        if kind == "property_accessor":
            base, *keys = self.path_of({"operator": {"type": kind, "operands": operands}})
            current = self.value(base)
            for key in keys:
                current = self.access(current, key)
            return current
        if kind == "greater_than":
            return self.value(operands["operand_1"]) > self.value(operands["operand_2"])
        pytest.fail(f"{self.path}: operator {kind} is not evaluated by this test")
        return None

    def access(self, current: Any, key: str) -> Any:
        if isinstance(current, Module):
            return current.outputs if key == "outputs" else Opaque(f"module {current.symbol}.{key}")
        if isinstance(current, Outputs):
            return current.module.output(key)
        if isinstance(current, Resource):
            return Accessed(current, (key,)) if key == "properties" else current.get(key)
        if isinstance(current, Accessed):
            return Accessed(current.base, (*current.path, key))
        if isinstance(current, dict):
            return current[key]
        return Opaque(f"{current}.{key}")

    def function(self, call: dict[str, Any]) -> Any:
        kind, args = call["type"], call.get("parameters") or {}
        if kind == "empty":
            return not self.value(args["item_to_test"])
        if kind == "split":
            parts = self.value(args["input_string"]).split(self.value(args["delimiter"]))
            return parts[call["index"]] if call.get("index") is not None else parts
        if kind == "last":
            return self.value(args["arg_1"])[-1]
        if kind == "union":
            merged: dict[str, Any] = {}
            for item in (self.value(arg) for arg in args.values()):
                merged.update(item)
            return merged
        if kind == "concat":
            return [item for arg in args.values() for item in self.value(arg)]
        if kind == "string":
            return str(self.value(args["value_to_convert"]))
        if kind == "subscription_resource_id":
            return f"{self.value(args['resource_type'])}/{self.value(args['resource_name_1'])}"
        if kind == "resource_group":
            return ("resourceGroup", self.value(args.get("subscription_id")) or "<this subscription>",
                    self.value(args["resource_group_name"]))
        if kind == "load_json_content":
            return json.loads((INFRA / Path(self.path).parent / self.value(args["file_path"])).read_text())
        if kind == "environment" and call.get("property_name") == "suffixes":
            return {"storage": "core.windows.net"}
        if kind == "take":
            text = self.value(args["original_value"])
            return text[: self.value(args["number_to_take"])] if isinstance(text, str) else text
        shown = ", ".join(str(self.value(arg)) for arg in args.values())
        return Opaque(f"{kind}({shown}).{call.get('property_name')}")


@dataclass
class Outputs:
    module: Module


@dataclass
class Module:
    """A module call: the file it runs, whether it is deployed, and where."""

    symbol: str
    body: Bicep
    deployed: bool
    scope: Any

    @property
    def outputs(self) -> Outputs:
        return Outputs(self)

    def output(self, name: str) -> Any:
        return self.body.value(self.body.tree["outputs"][name]["value"])


@dataclass(frozen=True)
class Assignment:
    role: str
    principal: Any
    principal_type: Any
    scope: Resource
    resource_group: Any
    module: str


@dataclass
class Deployment:
    """What infra/ deploys for given parameter values, as far as the checks below need it."""

    main: Bicep
    settings: dict[str, Any]
    site: dict[str, Any]
    assignments: list[Assignment]
    modules: dict[str, Module]

    def output(self, module: str, name: str) -> Any:
        return self.modules[module].output(name)

    def assigned(self, role: str) -> list[Assignment]:
        return [a for a in self.assignments if a.role == role]


def _scope(body: Bicep, scope: Any, where: Any) -> Resource:
    """What a role assignment is scoped to: a resource symbol, or else the module's resource group."""
    if isinstance(scope, str) and scope in body.tree.get("resources", {}):
        return body.resource(scope)
    return Resource("Microsoft.Resources/resourceGroups", body.value(scope) if scope else where)


def deploy(trees: dict[str, Any], **params: Any) -> Deployment:
    main = Bicep(trees, "main.bicep", params)
    modules = {symbol: main.module(symbol) for symbol in main.tree["modules"]}
    assignments = []
    for symbol, module in modules.items():
        if not module.deployed:
            continue
        scope = module.scope
        where = ("resourceGroup", "<this subscription>", main.value("rg").name) if isinstance(scope, Resource) \
            else scope
        for _, deployed, config in module.body.resources("Microsoft.Authorization/roleAssignments"):
            if deployed:
                props = config["properties"]
                assignments.append(Assignment(
                    role=module.body.value(props["roleDefinitionId"]).rsplit("/", 1)[-1],
                    principal=module.body.value(props["principalId"]),
                    principal_type=module.body.value(props.get("principalType")),
                    scope=_scope(module.body, config.get("scope"), where), resource_group=where, module=symbol))
    api = modules["api"].body
    [(_, _, site)] = list(api.resources("Microsoft.Web/sites"))
    app_settings = api.value(site["properties"]["siteConfig"]["appSettings"])
    return Deployment(main, {s["name"]: s["value"] for s in app_settings}, api.value(site), assignments, modules)


# -- fixtures ----------------------------------------------------------------------------------------------------

REQUIRED_PARAMS = {"environmentName": "dev", "location": "westeurope",
                   "arrAccountId": "00000000-0000-0000-0000-0000000000a1",
                   "arrAccountDomain": "westeurope.mixedreality.azure.com", "arrRegion": "westeurope",
                   "arrLinkSigningKey": "k" * 48}
ARR = ("arr-prod", "11111111-1111-1111-1111-111111111111", "rg-rendering")
ARR_ID = (f"/subscriptions/{ARR[1]}/resourceGroups/{ARR[2]}"
          f"/providers/Microsoft.MixedReality/remoteRenderingAccounts/{ARR[0]}")
HISTORY = ("stkeephistory", "22222222-2222-2222-2222-222222222222", "rg-keep")
HISTORY_ID = (f"/subscriptions/{HISTORY[1]}/resourceGroups/{HISTORY[2]}"
              f"/providers/Microsoft.Storage/storageAccounts/{HISTORY[0]}")


@pytest.fixture(scope="module")
def trees() -> dict[str, Any]:
    return parse_bicep(INFRA)


@pytest.fixture(scope="module")
def defaults(trees: dict[str, Any]) -> Deployment:
    """Only the required parameters: ARR by identity with no account named, history in the storage created here."""
    return deploy(trees, **REQUIRED_PARAMS)


@pytest.fixture(scope="module")
def existing(trees: dict[str, Any]) -> Deployment:
    """An existing ARR account and history account named by resource id, and a user who insists on a key."""
    return deploy(trees, **REQUIRED_PARAMS, arrAccountResourceId=ARR_ID, historyStorageAccountResourceId=HISTORY_ID,
                  arrAccountKey="a-key-that-must-not-show", principalId="33333333-3333-3333-3333-333333333333")


# -- the checks --------------------------------------------------------------------------------------------------

def test_every_bicep_file_parses(trees: dict[str, Any]) -> None:
    errors = {name: tree["error"] for name, tree in trees.items() if "error" in tree}
    assert not errors
    assert {"main.bicep", "app/api.bicep", "app/rbac.bicep"} <= set(trees)


def test_a_broken_bicep_file_fails_to_parse_and_fails_the_checkov_gate(tmp_path: Path) -> None:
    """The parse check and the checkov gate can fail: checkov itself exits 0 on a file it cannot parse."""
    shutil.copytree(INFRA, tmp_path / "infra")
    broken = tmp_path / "infra" / "app" / "rbac.bicep"
    text = broken.read_text()
    broken.write_text(text.replace("scope: storage\n", "scope: storage\n  properties {\n", 1))  # a missing ':'
    assert broken.read_text() != text
    trees = parse_bicep(tmp_path / "infra")
    assert "error" in trees["app/rbac.bicep"]
    assert all("error" not in tree for name, tree in trees.items() if name != "app/rbac.bicep")
    assert any("did not parse" in problem for problem in checkov_problems(checkov(tmp_path / "infra")))


def test_checkov_reports_no_failed_check_and_a_reason_for_each_skip() -> None:
    report = checkov(INFRA)
    assert checkov_problems(report) == []
    skipped = {(c["check_id"], Path(c["file_path"]).name) for c in report["results"]["skipped_checks"]}
    # Every skip comment is used: a skip left behind for a check that no longer fires would hide a future one.
    written = {(m.group(1), path.name) for path in INFRA.rglob("*.bicep")
               for m in re.finditer(r"checkov:skip=([A-Z0-9_]+):", path.read_text())}
    assert written == skipped


def _param_of(main: Bicep, setting: str) -> str | None:
    """The parameter a setting is set from in main.bicep (``x`` or ``string(x)``), if any."""
    node = main.tree["variables"]["arrSettings"]["value"].get(setting)
    if isinstance(node, dict) and node.get("function", {}).get("type") == "string":
        node = node["function"]["parameters"]["value_to_convert"]
    return node if isinstance(node, str) and node in main.tree["parameters"] else None


def check_settings(deployment: Deployment) -> None:
    """Every setting the app reads is set (but the two by design), and nothing is set that nothing reads."""
    read = set(ENV_NAMES.values())
    declared = set(deployment.settings)
    missing = read - declared - set(NOT_SET) - {KEY_SETTING}
    assert not missing, f"read by the app, not set in infra/: {sorted(missing)}"
    unread = declared - read - set(HOST_SETTINGS)
    assert not unread, f"set in infra/, read by nothing: {sorted(unread)}"
    assert not set(NOT_SET) & declared
    assert KEY_SETTING not in declared  # no key given: managed identity
    assert set(HOST_SETTINGS) <= declared


def test_every_setting_the_app_reads_is_set_and_nothing_else(defaults: Deployment) -> None:
    check_settings(defaults)


def test_each_setting_comes_from_a_parameter_with_the_apps_default(defaults: Deployment) -> None:
    main = defaults.main
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    for field_name, setting in ENV_NAMES.items():
        if setting in NOT_SET or setting in DERIVED:
            continue
        param = _param_of(main, setting) if setting != KEY_SETTING else "arrAccountKey"
        assert param, f"{setting} is not set from a parameter"
        bicep_default = main.tree["parameters"][param]["default"]
        app_default = AppSettings.model_fields[field_name].default
        app_default = getattr(app_default, "value", app_default)
        if setting in GENERATED:
            assert param == GENERATED[setting] and bicep_default is None, f"{param}: no default, azd generates it"
            decorators = main.tree["parameters"][param]["decorators"]
            assert {"type": "secure"} in decorators, f"{param}: @secure()"
            assert {"type": "metadata", "argument": {"azd": {"type": "generate", "config": {
                "length": 48, "noSpecial": True}}}} in decorators, f"{param}: azd generates it"
        elif setting in REQUIRED:
            assert bicep_default is None, f"{param} must have no default: azd asks for it"
        elif app_default in (None, ""):
            assert bicep_default == "", f"{param}: unset in the app, so '' in Bicep (got {bicep_default!r})"
        else:
            assert str(bicep_default) == str(app_default).removesuffix(".0"), f"{param}: {bicep_default!r}"
        mapped = re.fullmatch(r"\$\{(\w+)(?::?=(.*))?\}", parameters[param]["value"])
        assert mapped, f"main.parameters.json: {param} is not mapped from an environment variable"
        assert mapped.group(1) == setting, f"main.parameters.json: {param} reads {mapped.group(1)}, not {setting}"
        expected = None if bicep_default is None else str(bicep_default)
        assert mapped.group(2) == expected, f"main.parameters.json: {param} defaults to {mapped.group(2)!r}"


def test_the_deployed_settings_are_valid_app_settings(defaults: Deployment) -> None:
    """With the defaults, the settings Azure gets load in AppSettings (a bad default would be a 503 everywhere)."""
    settings = AppSettings.from_env({name: str(value) for name, value in defaults.settings.items()})
    assert settings.arr_configured
    assert settings.uses_managed_identity
    assert settings.storage_connection is None  # so build_history takes the endpoint, with the identity
    assert settings.table_endpoint == f"https://{defaults.output('storage', 'name')}.table.core.windows.net"
    assert settings.cleanup_schedule == "0 */5 * * * *"


async def test_history_and_arr_are_reached_with_the_user_assigned_identity(defaults: Deployment) -> None:
    client_id = defaults.output("identity", "clientId")
    assert defaults.settings["ARR_MANAGED_IDENTITY_CLIENT_ID"] == client_id
    assert defaults.settings["AzureWebJobsStorage__clientId"] == client_id
    assert defaults.settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert defaults.settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == f"ClientId={client_id};Authorization=AAD"
    assert defaults.site["identity"]["type"] == "UserAssigned"
    settings = AppSettings.from_env({name: str(value) for name, value in defaults.settings.items()})
    history = context.build_history(settings)
    try:
        credential = history.table.client.credential  # HistoryStore over AzureTable over TableClient
        assert type(credential).__name__ == "ManagedIdentityCredential"
    finally:
        await history.aclose()
    arr = context.build_arr_client(settings)
    await arr.aclose()


def test_the_function_app_is_flex_consumption_python_311_deployed_by_identity(defaults: Deployment) -> None:
    api = defaults.modules["api"].body
    [(_, _, plan)] = list(api.resources("Microsoft.Web/serverfarms"))
    assert api.value(plan["sku"]) == {"name": "FC1", "tier": "FlexConsumption"}
    assert api.value(plan["properties"])["reserved"] is True
    config = defaults.site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"] == {"type": "UserAssignedIdentity",
                                         "userAssignedIdentityResourceId": defaults.output("identity", "id")}
    assert defaults.site["kind"] == "functionapp,linux"
    [(_, _, account)] = list(defaults.modules["storage"].body.resources("Microsoft.Storage/storageAccounts"))
    assert account["properties"]["allowSharedKeyAccess"] is False
    monitoring = defaults.modules["monitoring"].body
    [(_, _, insights)] = list(monitoring.resources("Microsoft.Insights/components"))
    [(_, _, workspace)] = list(monitoring.resources("Microsoft.OperationalInsights/workspaces"))
    assert insights["properties"]["DisableLocalAuth"] is True
    assert workspace["properties"]["features"]["disableLocalAuth"] is True
    assert not any(name.startswith("FUNCTIONS_") for name in defaults.settings)  # Flex: functionAppConfig instead


def _one(deployment: Deployment, role: str) -> Assignment:
    found = deployment.assigned(role)
    assert len(found) == 1, f"role {role}: {found}"
    return found[0]


def check_roles(deployment: Deployment, history: tuple[str, str, str] | None = None,
                arr: tuple[str, str, str] | None = None) -> None:
    """Each role on the resource the app uses, for the app identity, and no other role. ``history`` and ``arr`` are
    the existing accounts named (name, subscription, resource group): None for the defaults."""
    principal = deployment.output("identity", "principalId")
    host_storage = deployment.output("storage", "name")

    blob = _one(deployment, ROLE_BLOB_DATA_OWNER)
    assert blob.scope == Resource("Microsoft.Storage/storageAccounts", host_storage), blob
    assert deployment.settings["AzureWebJobsStorage__blobServiceUri"] == Accessed(
        Resource("Microsoft.Storage/storageAccounts", host_storage), ("properties", "primaryEndpoints", "blob"))

    queue = _one(deployment, ROLE_QUEUE_DATA_CONTRIBUTOR)  # the app sends, the host's queue triggers read
    assert queue.scope == Resource("Microsoft.Storage/storageAccounts", host_storage), queue
    assert deployment.settings["ARR_QUEUE_ENDPOINT"] == f"https://{host_storage}.queue.core.windows.net"
    assert deployment.settings["AzureWebJobsStorage__queueServiceUri"] == Accessed(
        Resource("Microsoft.Storage/storageAccounts", host_storage), ("properties", "primaryEndpoints", "queue"))

    table = _one(deployment, ROLE_TABLE_DATA_CONTRIBUTOR)
    history_account = history[0] if history else host_storage
    assert table.scope == Resource("Microsoft.Storage/storageAccounts", history_account), table
    assert deployment.settings["ARR_HISTORY_TABLE_ENDPOINT"] == f"https://{history_account}.table.core.windows.net"
    history_group = history[1:] if history else (table.resource_group[1], deployment.main.value("rg").name)
    assert table.resource_group == ("resourceGroup", *history_group), table

    metrics = _one(deployment, ROLE_METRICS_PUBLISHER)
    insights = deployment.output("monitoring", "applicationInsightsName")
    assert metrics.scope == Resource("Microsoft.Insights/components", insights), metrics

    if arr is None:
        assert deployment.assigned(ROLE_REMOTE_RENDERING_CLIENT) == []  # no account named: nothing to assign
    else:
        rendering = _one(deployment, ROLE_REMOTE_RENDERING_CLIENT)
        assert rendering.scope == Resource("Microsoft.MixedReality/remoteRenderingAccounts", arr[0]), rendering
        assert rendering.resource_group == ("resourceGroup", arr[1], arr[2]), rendering

    for assignment in deployment.assignments:
        if assignment.role != ROLE_TABLE_DATA_READER:  # the person running azd, only on the history
            assert assignment.principal == principal, assignment
            assert assignment.principal_type == "ServicePrincipal", assignment
    roles = {a.role for a in deployment.assignments}
    allowed = {ROLE_BLOB_DATA_OWNER, ROLE_QUEUE_DATA_CONTRIBUTOR, ROLE_TABLE_DATA_CONTRIBUTOR, ROLE_METRICS_PUBLISHER,
               ROLE_REMOTE_RENDERING_CLIENT, ROLE_KEY_VAULT_SECRETS_USER, ROLE_TABLE_DATA_READER}
    assert roles <= allowed, f"unexpected roles: {roles - allowed}"


def test_each_role_is_assigned_to_the_app_identity_on_what_the_app_uses(defaults: Deployment) -> None:
    check_roles(defaults)


def test_each_role_is_on_the_existing_accounts_when_they_are_named(existing: Deployment) -> None:
    check_roles(existing, history=HISTORY, arr=ARR)


def test_the_person_running_azd_may_only_read_the_history(existing: Deployment, defaults: Deployment) -> None:
    [reader] = existing.assigned(ROLE_TABLE_DATA_READER)
    assert reader.principal == "33333333-3333-3333-3333-333333333333"
    assert reader.scope == Resource("Microsoft.Storage/storageAccounts", "stkeephistory")
    assert defaults.assigned(ROLE_TABLE_DATA_READER) == []  # no AZURE_PRINCIPAL_ID, no assignment


def test_an_account_key_reaches_the_app_only_as_a_key_vault_reference(existing: Deployment,
                                                                      defaults: Deployment) -> None:
    assert not defaults.modules["vault"].deployed
    vault = existing.modules["vault"]
    assert vault.deployed
    reference = existing.settings[KEY_SETTING]
    assert reference == (f"@Microsoft.KeyVault(VaultName={vault.body.args['name']};"
                         f"SecretName={vault.body.args['secretName']})")
    assert all("a-key-that-must-not-show" not in str(value) for value in existing.settings.values())
    assert existing.site["properties"]["keyVaultReferenceIdentity"] == existing.output("identity", "id")
    [secret_user] = existing.assigned(ROLE_KEY_VAULT_SECRETS_USER)
    assert secret_user.scope.type == "Microsoft.KeyVault/vaults/secrets"
    assert secret_user.principal == existing.output("identity", "principalId")
    assert vault.body.tree["parameters"]["secretValue"]["decorators"][0]["type"] == "secure"
    assert existing.main.tree["parameters"]["arrAccountKey"]["decorators"][0]["type"] == "secure"


def _mutated(tmp_path: Path, file: str, change: Callable[[str], str]) -> dict[str, Any]:
    """infra/ copied with one file changed, parsed."""
    shutil.copytree(INFRA, tmp_path / "infra")
    path = tmp_path / "infra" / file
    text = path.read_text()
    path.write_text(change(text))
    assert path.read_text() != text
    return parse_bicep(tmp_path / "infra")


def test_the_cross_check_fails_on_a_missing_setting_or_role(tmp_path: Path) -> None:
    """The checks above can fail: a setting less or more, a role assignment less or elsewhere, and they say so."""
    trees = _mutated(tmp_path / "a", "main.bicep",
                     lambda t: t.replace("  ARR_POLL_SECONDS: string(arrPollSeconds)\n", ""))
    with pytest.raises(AssertionError, match="ARR_POLL_SECONDS"):
        check_settings(deploy(trees, **REQUIRED_PARAMS))
    trees = _mutated(tmp_path / "b", "main.bicep",
                     lambda t: t.replace("  ARR_CURRENCY: arrCurrency\n",
                                         "  ARR_CURRENCY: arrCurrency\n  ARR_COLOR: arrCurrency\n"))
    with pytest.raises(AssertionError, match="ARR_COLOR"):
        check_settings(deploy(trees, **REQUIRED_PARAMS))
    trees = _mutated(tmp_path / "c", "app/rbac.bicep", lambda t: t[:t.index("resource metricsPublisher")])
    with pytest.raises(AssertionError, match=ROLE_METRICS_PUBLISHER):
        check_roles(deploy(trees, **REQUIRED_PARAMS))
    trees = _mutated(tmp_path / "d", "app/rbac-arr.bicep", lambda t: t.replace("scope: arrAccount\n", ""))
    with pytest.raises(AssertionError, match="resourceGroups"):
        check_roles(deploy(trees, **REQUIRED_PARAMS, arrAccountResourceId=ARR_ID), arr=ARR)
    trees = _mutated(tmp_path / "e", "app/rbac.bicep",
                     lambda t: t.replace("  scope: storage\n", "  scope: applicationInsights\n", 1))
    with pytest.raises(AssertionError, match="storageAccounts"):
        check_roles(deploy(trees, **REQUIRED_PARAMS))


# -- azure-functions-doctor --------------------------------------------------------------------------------------

def _repo_copy(target: Path) -> Path:
    """The repo as a clone has it (tracked and new files, nothing git ignores): the doctor walks every folder, and
    on the working tree that means the venvs and node_modules (40 s instead of 4, and warnings about caches)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=False)
    assert listed.returncode == 0, f"git ls-files failed: {listed.stderr.decode(errors='replace')}"
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def test_azure_functions_doctor_finds_no_failure_and_only_explained_warnings(tmp_path: Path) -> None:
    repo = _repo_copy(tmp_path / "repo")
    report_path = tmp_path / "doctor.json"
    env = {**os.environ, "VIRTUAL_ENV": str(ROOT / ".venv")}  # the app's venv (make install), as if activated
    for name in ("APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"):
        env.pop(name, None)
    done = subprocess.run([str(iac_tool("azure-functions-doctor")), "doctor", "--path", str(repo), "--profile", "full",
                           "--hosting-plan", "flex-consumption", "--target-python", "3.11", "--format", "json",
                           "--output", str(report_path)], capture_output=True, text=True, timeout=300, check=False,
                          env=env)
    assert report_path.is_file(), f"the doctor wrote no report (exit {done.returncode}):\n{done.stderr[-3000:]}"
    items = [item for section in json.loads(report_path.read_text())["results"] for item in section["items"]]
    failures = [f"{i['rule_id']}: {i['value']}" for i in items if i["status"] == "fail"]
    assert failures == []
    warnings = {i["rule_id"]: i["value"] for i in items if i["status"] == "warn"}
    unexplained = {rule: value for rule, value in warnings.items() if rule not in EXPLAINED_WARNINGS
                   or (rule in NAMED_FILES and not _all_outside_the_package(value, NAMED_FILES[rule]))}
    assert unexplained == {}
    assert done.returncode == 0, done.stdout[-3000:]
    assert sum(i["status"] == "pass" for i in items) >= 20
