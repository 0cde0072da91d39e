"""The deploy workflow against what it deploys (issue 23): ``.github/workflows/deploy.yml`` gives azd every variable
``infra/main.parameters.json`` reads, each from the right store, and nothing else; and it deploys only where Azure
is configured.

- Every ``${NAME}`` / ``${NAME=}`` / ``${NAME:=default}`` of ``main.parameters.json`` is in the deploy job's ``env``,
  as ``${{ vars.NAME }}`` or ``${{ secrets.NAME }}`` under its own name, but ``AZURE_PRINCIPAL_ID``, which azd sets
  itself (the signed-in principal).
- A parameter marked ``@secure()`` in ``main.bicep`` comes from ``secrets``, every other one from ``vars``.
- A parameter azd generates (``@metadata({ azd: { type: 'generate' ... } })``) comes from a secret that the job's
  check step requires before it provisions: the CI's azd environment is new on every run, so azd would generate a
  new value each time (a new link signing key breaks every signed link in flight; new function keys break every
  sender that holds the old one).
- Nothing is mapped that nothing reads: each variable of the job's ``env`` is read by ``main.parameters.json``, by a
  step's script, or by azd itself (``AZURE_SUBSCRIPTION_ID``).
- The deploy job runs only when ``vars.AZURE_CLIENT_ID`` is set (a fork without the Azure variables skips it and
  stays green), while the test job runs everywhere.

Each check is also run on a mutated copy of the workflow, to prove that it fails when it should.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # PyYAML: installed in .venv with schemathesis (requirements-dev.txt)

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "deploy.yml"
PARAMETERS = ROOT / "infra" / "main.parameters.json"
BICEP = ROOT / "infra" / "main.bicep"

# ${NAME}, ${NAME=} and ${NAME:=default}: azd's substitution in main.parameters.json.
SUBSTITUTION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?=[^}]*)?\}")
# ${{ vars.NAME }} or ${{ secrets.NAME }}: the only shapes a mapping may have.
MAPPING = re.compile(r"^\$\{\{\s*(vars|secrets)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
# $NAME or ${NAME} in a step's shell script.
SHELL_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
# One clause of the deploy job's guard: vars.NAME != ''
GUARD_CLAUSE = re.compile(r"^vars\.([A-Za-z_][A-Za-z0-9_]*)\s*!=\s*''$")

# Set by azd itself, never by the workflow: the object id of whoever is signed in (the workflow's identity).
SET_BY_AZD = {"AZURE_PRINCIPAL_ID"}
# Read by azd itself rather than by main.parameters.json or a script: the subscription it deploys to.
READ_BY_AZD = {"AZURE_SUBSCRIPTION_ID"}


def load_workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def parameter_variables() -> dict[str, str]:
    """Each environment variable main.parameters.json reads, with the Bicep parameter it feeds."""
    parameters = json.loads(PARAMETERS.read_text())["parameters"]
    read: dict[str, str] = {}
    for name, spec in parameters.items():
        for variable in SUBSTITUTION.findall(json.dumps(spec.get("value"))):
            read[variable] = name
    return read


def bicep_decorators() -> dict[str, list[str]]:
    """Each parameter of main.bicep with the decorators written above it (one per line, as in that file)."""
    decorators: dict[str, list[str]] = {}
    pending: list[str] = []
    for raw in BICEP.read_text().splitlines():
        line = raw.strip()
        if line.startswith("@"):
            pending.append(line)
            continue
        declared = re.match(r"param\s+([A-Za-z_][A-Za-z0-9_]*)\s", line)
        if declared:
            decorators[declared.group(1)] = pending
        if line and not line.startswith("//"):
            pending = []
    return decorators


def secure_parameters() -> set[str]:
    return {name for name, decos in bicep_decorators().items() if any(d.startswith("@secure(") for d in decos)}


def generated_parameters() -> set[str]:
    generated = re.compile(r"@metadata\(\{\s*azd:\s*\{\s*type:\s*'generate'")
    return {name for name, decos in bicep_decorators().items() if any(generated.match(d) for d in decos)}


def problems_of(workflow: dict[str, Any]) -> list[str]:
    """Every way the workflow's deploy job and main.parameters.json / main.bicep disagree."""
    problems: list[str] = []
    deploy = workflow["jobs"]["deploy"]
    env: dict[str, Any] = deploy.get("env") or {}
    read = parameter_variables()
    secure = secure_parameters()
    generated = generated_parameters()

    sources: dict[str, str] = {}
    for variable, expression in env.items():
        mapped = MAPPING.match(str(expression).strip())
        if not mapped:
            problems.append(f"{variable} is mapped from {expression!r}, not from vars.{variable} or secrets.{variable}")
            continue
        store, name = mapped.groups()
        if name != variable:
            problems.append(f"{variable} is mapped from {store}.{name}, not from its own name")
        sources[variable] = store

    for variable, parameter in sorted(read.items()):
        if variable in SET_BY_AZD:
            if variable in env:
                problems.append(f"{variable} is set by azd itself, yet the workflow maps it")
            continue
        if variable not in env:
            problems.append(f"{variable} ({parameter}) is read by main.parameters.json but not mapped by the workflow")
            continue
        wanted = "secrets" if parameter in secure else "vars"
        if sources.get(variable) not in (None, wanted):
            why = "a @secure() parameter" if parameter in secure else "not a secret"
            problems.append(f"{variable} ({parameter}, {why}) is mapped from {sources[variable]}, not {wanted}")

    # Read by a script: $NAME or ${NAME}. Not the check step's list of names: a variable that is only required to be
    # set is still one that nothing uses.
    scripts = "\n".join(str(step.get("run", "")) for step in deploy.get("steps", []) if step.get("id") != "required")
    in_scripts = set(SHELL_VARIABLE.findall(scripts))
    for variable in sorted(env):
        if variable not in read and variable not in in_scripts and variable not in READ_BY_AZD:
            problems.append(f"{variable} is mapped by the workflow but nothing reads it")

    # Generated parameters: a secret, and checked before azd would generate a new one.
    check = next((step for step in deploy.get("steps", []) if step.get("id") == "required"), None)
    for variable, parameter in sorted(read.items()):
        if parameter not in generated:
            continue
        if check is None or not re.search(rf"\b{variable}\b", str(check.get("run", ""))):
            problems.append(f"{variable} ({parameter}) is generated by azd, anew in every CI run, and the check step "
                            "(id: required) does not require it")
    if check is not None:
        later = deploy["steps"][deploy["steps"].index(check) + 1:]
        if not any("azd provision" in str(step.get("run", "")) for step in later):
            problems.append("the check step (id: required) does not come before azd provision")

    problems.extend(guard_problems(workflow))
    return problems


def guard_clauses(job: dict[str, Any]) -> list[str] | None:
    """The variables a job's ``if`` requires to be set (``vars.A != '' && vars.B != ''``); None if it is no such
    guard."""
    condition = job.get("if")
    if not isinstance(condition, str):
        return None
    condition = condition.strip()
    if condition.startswith("${{") and condition.endswith("}}"):
        condition = condition[3:-2].strip()
    clauses = [GUARD_CLAUSE.match(part.strip()) for part in condition.split("&&")]
    if not all(clauses):
        return None
    return [clause.group(1) for clause in clauses if clause]


def runs(job: dict[str, Any], variables: dict[str, str]) -> bool:
    """Whether a job runs, given the repository's variables (an unset one is the empty string)."""
    required = guard_clauses(job)
    if required is None:
        return "if" not in job
    return all(variables.get(name, "") != "" for name in required)


def guard_problems(workflow: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    jobs = workflow["jobs"]
    deploy = jobs["deploy"]
    if not runs(jobs["test"], {}):
        problems.append("the test job does not run in a repository without the Azure variables")
    if deploy.get("needs") != "test" and "test" not in (deploy.get("needs") or []):
        problems.append("the deploy job does not wait for the test job")
    required = guard_clauses(deploy)
    if required is None:
        problems.append(f"the deploy job's if is {deploy.get('if')!r}, not a guard of the form vars.NAME != ''")
        return problems
    login = next((step for step in deploy.get("steps", []) if "azd auth login" in str(step.get("run", ""))), None)
    needed = set(SHELL_VARIABLE.findall(str(login.get("run", "")))) if login else set()
    if "AZURE_CLIENT_ID" not in required or not set(required) <= needed:
        problems.append(f"the deploy job's guard requires {required}: it must require vars.AZURE_CLIENT_ID, and only "
                        f"variables the sign-in step uses ({sorted(needed)})")
    if runs(deploy, {}):
        problems.append("the deploy job runs in a repository without the Azure variables")
    if not runs(deploy, {name: "x" for name in needed}):
        problems.append("the deploy job does not run once the Azure variables are set")
    return problems


# -- the workflow as it is ----------------------------------------------------------------------------------------


def test_the_workflow_maps_every_parameter_from_the_right_store_and_nothing_else() -> None:
    assert problems_of(load_workflow()) == []


def test_the_parameters_and_decorators_are_read_as_expected() -> None:
    """The readers above see what they should (a reader that finds nothing would make every check pass)."""
    read = parameter_variables()
    assert read["FUNCTION_INSTANCE_MEMORY_MB"] == "instanceMemoryMB"
    assert read["ARR_ACCOUNT_KEY"] == "arrAccountKey"
    assert read["AZURE_PRINCIPAL_ID"] == "principalId"
    assert {"arrAccountKey", "arrLinkSigningKey", "arrHookStandardSecrets", "arrHookGithubSecrets",
            "hooksEventGridKey", "hooksAlertKey"} <= secure_parameters()
    assert "arrAccountId" not in secure_parameters()
    assert generated_parameters() == {"arrLinkSigningKey", "hooksEventGridKey", "hooksAlertKey"}


def test_a_fork_without_the_azure_variables_skips_the_deploy_and_still_tests() -> None:
    jobs = load_workflow()["jobs"]
    assert not runs(jobs["deploy"], {})
    assert runs(jobs["deploy"], {"AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000000"})
    assert runs(jobs["test"], {})
    # A job's `if` sees repository and organization variables, not an environment's: the guard must not depend on
    # a variable that the docs allow to live in the `azure` environment only.
    assert guard_clauses(jobs["deploy"]) == ["AZURE_CLIENT_ID"]


# -- mutated copies: each check fails when it should --------------------------------------------------------------


def _without(variable: str) -> Any:
    def mutate(workflow: dict[str, Any]) -> None:
        del workflow["jobs"]["deploy"]["env"][variable]
    return mutate


def _set(variable: str, expression: str) -> Any:
    def mutate(workflow: dict[str, Any]) -> None:
        workflow["jobs"]["deploy"]["env"][variable] = expression
    return mutate


def _job_if(job: str, condition: str | None) -> Any:
    def mutate(workflow: dict[str, Any]) -> None:
        if condition is None:
            workflow["jobs"][job].pop("if", None)
        else:
            workflow["jobs"][job]["if"] = condition
    return mutate


def _no_check_of(variable: str) -> Any:
    def mutate(workflow: dict[str, Any]) -> None:
        for step in workflow["jobs"]["deploy"]["steps"]:
            if step.get("id") == "required":
                step["run"] = re.sub(rf"\b{variable}\b", "SOMETHING_ELSE", step["run"])
    return mutate


@pytest.mark.parametrize(("mutate", "expected"), [
    (_without("FUNCTION_INSTANCE_MEMORY_MB"), "FUNCTION_INSTANCE_MEMORY_MB (instanceMemoryMB) is read"),
    (_without("HOOKS_ALERT_KEY"), "HOOKS_ALERT_KEY (hooksAlertKey) is read"),
    (_set("ARR_LINK_SIGNING_KEY", "${{ vars.ARR_LINK_SIGNING_KEY }}"), "is mapped from vars, not secrets"),
    (_set("ARR_HOOK_GITHUB_SECRETS", "${{ vars.ARR_HOOK_GITHUB_SECRETS }}"), "is mapped from vars, not secrets"),
    (_set("ARR_REGION", "${{ secrets.ARR_REGION }}"), "is mapped from secrets, not vars"),
    (_set("ARR_REGION", "westeurope"), "not from vars.ARR_REGION or secrets.ARR_REGION"),
    (_set("ARR_REGION", "${{ vars.REGION }}"), "not from its own name"),
    (_set("ARR_UNUSED_SETTING", "${{ vars.ARR_UNUSED_SETTING }}"), "ARR_UNUSED_SETTING is mapped by the workflow but"),
    (_set("AZURE_PRINCIPAL_ID", "${{ vars.AZURE_PRINCIPAL_ID }}"), "set by azd itself"),
    (_no_check_of("ARR_LINK_SIGNING_KEY"), "ARR_LINK_SIGNING_KEY (arrLinkSigningKey) is generated by azd"),
    (_job_if("deploy", None), "not a guard of the form"),
    (_job_if("deploy", "github.repository == 'me/arr-sessions'"), "not a guard of the form"),
    (_job_if("deploy", "vars.ARR_REGION != ''"), "must require vars.AZURE_CLIENT_ID"),
    (_job_if("test", "vars.AZURE_CLIENT_ID != ''"), "the test job does not run"),
], ids=["missing-var", "missing-secret", "generated-from-vars", "secure-from-vars", "plain-from-secrets",
        "literal", "renamed", "unread", "azd-own", "unchecked-generated", "no-guard", "other-guard",
        "guard-without-client-id", "guarded-tests"])
def test_the_checks_fail_on_a_broken_workflow(mutate: Any, expected: str) -> None:
    workflow = copy.deepcopy(load_workflow())
    mutate(workflow)
    problems = problems_of(workflow)
    assert any(expected in p for p in problems), problems
