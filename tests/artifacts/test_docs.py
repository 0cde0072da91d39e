"""What a new reader meets first in the README and the docs.

- ARR's retirement is said in the first paragraph (within the first 12 lines) of README.md and of docs/deploy.md:
  what was retired and when, what the app runs against today (the bundled emulator; any service that speaks the
  2021-01-01 session API), and, in deploy.md, what ``azd up`` gives you without an ARR account.
- docs/deploy.md's ``azd up`` recipe has no ARR account to manage: no account resource id, no ARR region or domain
  of Microsoft's; the three settings ``infra/`` requires are placeholders that resolve nowhere.
- A block that starts something that keeps running (``make run``, the webhook receiver) is never a ``bash`` block
  (those are pasted and run by tests/integration/test_readme_examples.py), and docs/integrations.md's "Trying it
  locally" gives ``make run`` a block and a terminal of its own, the rest another.

Broken copies (the statement moved down, a recipe with a resource id, ``make run`` and more in one block) must fail
the same checks.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DEPLOY = ROOT / "docs" / "deploy.md"
INTEGRATIONS = ROOT / "docs" / "integrations.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
OPENING_LINES = 12
FENCE = re.compile(r"^```([A-Za-z]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)

# What the opening must say, each as (what, words that say it).
RETIREMENT = [("what was retired", "Azure Remote Rendering"), ("that it was retired", "retired"),
              ("when", "2025-09-30"), ("the bundled emulator", "emulator"),
              ("the session API a service must speak", "2021-01-01")]
OPENINGS = {
    "README.md": RETIREMENT,
    "docs/deploy.md": [*RETIREMENT, ("what azd up gives", "azd up"),
                       ("without an ARR account", "without an ARR account")],
}
# Commands that keep running until Ctrl-C: pasted into a shell, nothing after them runs.
BLOCKING = re.compile(r"^\s*(make run\b|python3? samples/webhook_receiver\.py|python3? -m (arr_emulator|devhost))",
                      re.MULTILINE)


def first_paragraph(text: str) -> tuple[int, int, str]:
    """(first line, last line, text) of the first paragraph after the title: headings and blank lines skipped, then
    every line up to the next blank one (a blockquote counts as a paragraph)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return start + 1, end, " ".join(lines[start:end])


def opening_problems(text: str, wanted: list[tuple[str, str]]) -> list[str]:
    first, last, paragraph = first_paragraph(text)
    problems = []
    if last > OPENING_LINES:
        problems.append(f"the first paragraph is lines {first}-{last}, not within the first {OPENING_LINES}")
    flat = re.sub(r"\s+", " ", paragraph.replace("> ", " "))
    problems += [f"the first paragraph does not say {what} ({words!r})" for what, words in wanted
                 if words not in flat]
    return problems


@pytest.mark.parametrize("name", sorted(OPENINGS))
def test_the_first_paragraph_says_that_arr_was_retired_and_what_the_app_runs_against(name: str) -> None:
    assert opening_problems((ROOT / name).read_text(encoding="utf-8"), OPENINGS[name]) == []


# The README's opening as it was at 28d3d09: ARR in the present tense, the retirement only ~400 lines below.
README_28D3D09 = """# arr-sessions

An Azure Functions app (Python) that runs **Azure Remote Rendering** sessions for automation: webhooks, Logic
Apps, Power Automate flows and nightly schedules. It starts, watches, extends, stops and lists sessions in the
shapes those callers understand (202 + `Location` + `Retry-After`, problem+json errors, an OpenAPI 2.0 document you
can import as a custom connector), keeps every session's history in Azure Table Storage, and stops forgotten
sessions: on a lease policy every few minutes, and all of them (except `keepAlive` ones) at a nightly time in your
time zone.

ARR bills by the minute from Ready until a session is stopped or its lease runs out, whether anyone is connected or
not. This app exists so that no session is forgotten.
"""


def test_the_readme_as_it_was_fails() -> None:
    problems = opening_problems(README_28D3D09, RETIREMENT)
    assert any("2025-09-30" in p for p in problems), problems
    assert any("retired" in p for p in problems), problems
    assert any("emulator" in p for p in problems), problems


def test_the_notice_moved_down_fails() -> None:
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(">"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith(">"))
    moved = "\n".join([*lines[:start], *lines[end + 1:], "", "## Deploy to Azure", "", *lines[start:end], ""])
    problems = opening_problems(moved, RETIREMENT)
    assert any("2025-09-30" in p for p in problems), problems


def test_an_opening_past_line_12_fails() -> None:
    text = DEPLOY.read_text(encoding="utf-8")
    title, rest = text.split("\n", 1)
    problems = opening_problems("\n".join([title, *["", "An introduction."] * 6, rest]), OPENINGS["docs/deploy.md"])
    assert problems, problems


# -- docs/deploy.md: azd up without an ARR account ----------------------------------------------------------------

def recipe(text: str) -> str:
    """The first code block that runs ``azd up``."""
    return next(code for _, code in FENCE.findall(text) if re.search(r"^azd up\b", code, re.MULTILINE))


def settings_set(code: str) -> dict[str, str]:
    return dict(re.findall(r"^azd env set (\w+) (\S+)", code, re.MULTILINE))


def recipe_problems(code: str) -> list[str]:
    values = settings_set(code)
    problems = [f"sets {name}: no ARR account to give a role on" for name in ("ARR_ACCOUNT_RESOURCE_ID",)
                if name in values]
    if "mixedreality" in code or "Microsoft.MixedReality" in code:
        problems.append("names an ARR (Mixed Reality) resource or domain")
    if not values.get("ARR_ACCOUNT_DOMAIN", "").endswith(".invalid"):
        problems.append(f"ARR_ACCOUNT_DOMAIN {values.get('ARR_ACCOUNT_DOMAIN')!r} is not a placeholder (.invalid)")
    problems += [f"{name} is not set: azd would ask for it" for name in ("ARR_ACCOUNT_ID", "ARR_REGION")
                 if name not in values]
    return problems


def test_the_deploy_recipe_has_no_arr_account_to_manage() -> None:
    assert recipe_problems(recipe(DEPLOY.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("azd env set ARR_REGION none\n",
     "azd env set ARR_REGION none\nazd env set ARR_ACCOUNT_RESOURCE_ID /subscriptions/<sub>/resourceGroups/<rg>"
     "/providers/Microsoft.MixedReality/remoteRenderingAccounts/<name>\n", "ARR_ACCOUNT_RESOURCE_ID"),
    ("ARR_ACCOUNT_DOMAIN arr.invalid", "ARR_ACCOUNT_DOMAIN westeurope.mixedreality.azure.com", "mixedreality"),
    ("azd env set ARR_REGION none\n", "", "ARR_REGION is not set"),
], ids=["resource-id", "arr-domain", "region-asked"])
def test_a_recipe_with_an_arr_account_fails(old: str, new: str, expected: str) -> None:
    code = recipe(DEPLOY.read_text(encoding="utf-8"))
    assert old in code
    problems = recipe_problems(code.replace(old, new))
    assert any(expected in p for p in problems), problems


# -- blocks that keep running ---------------------------------------------------------------------------------------

def blocking_bash_blocks(text: str) -> list[str]:
    return [code.splitlines()[0] for language, code in FENCE.findall(text)
            if language == "bash" and BLOCKING.search(code)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_bash_block_starts_what_keeps_running(doc: Path) -> None:
    assert blocking_bash_blocks(doc.read_text(encoding="utf-8")) == []


def section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def trying_locally_problems(text: str) -> list[str]:
    """``make run`` alone in its block, said to run in one terminal, and the rest in another."""
    part = section(text, "Trying it locally")
    problems = blocking_bash_blocks(part)
    for language, code in FENCE.findall(part):
        commands = [line for line in code.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if any(BLOCKING.search(line) for line in commands) and len(commands) > 1:
            problems.append(f"a {language or 'plain'} block starts {commands[0]!r} and goes on: {commands[1:]}")
    prose = re.sub(r"\s+", " ", FENCE.sub("", part))
    if "one terminal" not in prose or "another terminal" not in prose:
        problems.append("does not say to run make run in one terminal and the rest in another")
    return problems


def test_trying_it_locally_gives_make_run_a_terminal_of_its_own() -> None:
    assert trying_locally_problems(INTEGRATIONS.read_text(encoding="utf-8")) == []


def test_make_run_and_the_receiver_in_one_pasted_block_fail() -> None:
    """The section as it was: one block, ``make run`` first, the receiver after it ("another terminal" in a comment)."""
    before = ("\n## Trying it locally\n\n```bash\nmake run                                  # the app\n"
              "python3 samples/webhook_receiver.py       # another terminal: prints every notification\n```\n\n"
              "## Webhooks\n")
    problems = trying_locally_problems(before)
    assert any("make run" in p and "goes on" in p for p in problems), problems
    assert any(p.startswith("make run") for p in problems), problems  # a bash block: pasted and run
    assert any("one terminal" in p for p in problems), problems


def test_the_documented_hook_rules_are_rules_the_app_accepts() -> None:
    """The example a user copies into ARR_HOOK_RULES loads, with a rule for each kind of action."""
    from arr_core.domain.hooks.rules import parse_rules
    from arr_core.services.settings import AppSettings

    text = INTEGRATIONS.read_text(encoding="utf-8")
    example = re.search(r"Save it as `hook-rules.json`:\n\n```\n(.*?)\n```", text, re.DOTALL)
    assert example, "the rules example of docs/integrations.md is gone"
    rules = parse_rules(example.group(1))
    assert {rule.action.kind for rule in rules} == {"start", "stop", "stopAll", "extend"}
    assert AppSettings.from_env({"ARR_HOOK_RULES": example.group(1)}).rules == rules


def test_the_documented_pools_and_budget_are_settings_the_app_accepts() -> None:
    """Every json block of docs/operations.md is a setting's example a user copies (ARR_POOLS, ARR_BUDGET): each
    loads, as the app would load it."""
    from arr_core.services.settings import AppSettings

    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```json\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    pools = [b for b in blocks if b.lstrip().startswith("[")]
    budgets = [b for b in blocks if '"amount"' in b]
    assert len(pools) == 1 and len(budgets) == 1 and len(blocks) == 2, blocks
    settings = AppSettings.from_env({"ARR_POOLS": pools[0], "ARR_BUDGET": budgets[0]})
    assert [p.name for p in settings.pools] == ["design-review"]
    assert settings.budget is not None and [t.action.value for t in settings.budget.thresholds] == [
        "notify", "refuse-starts", "stop-all"]
