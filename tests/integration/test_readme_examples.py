"""Every shell example of the README and of ``docs/*.md`` fenced ```` ```bash ```` runs as it is against the stack of
``make run``.

Which blocks run: exactly those fenced ``bash``. Blocks fenced ``sh`` are shown, not run (they start the stack
itself, deploy to Azure, need the webhook receiver or a key of the user's); ``http`` and ``python`` blocks are
requests and code to read, never pasted into a shell; unfenced (```` ``` ````) blocks are output or diagrams.

How: ``python -m devhost.stack`` (what ``make run`` runs) starts on free ports with the example settings
(``local.settings.example.json``, pinned in the environment so that a developer's own ``local.settings.json``
cannot change the outcome). Each file's ``bash`` blocks run in order in one ``bash -e -o pipefail`` shell of its
own, as a user pastes them into one terminal (a file's blocks share ``$id``); the only change made to them is
``localhost:7071`` -> the stack's port. Each block must succeed, and every ``# => text`` comment in it is output
the block must print, in that order. The README runs first, then ``docs/`` in name order.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import start_stack

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
RUN = "bash"
SHOWN = {"sh", ""}  # fences that are not run: commands that start the stack or need Azure; output and diagrams
READ = {"http", "python", "kusto", "csharp", "json"}  # requests, code, queries and settings to read (docs/ only): not
# shell, so never run here (the json ones are settings, parsed by tests/artifacts/test_docs.py)
# (the kusto ones are run by tests/artifacts/test_alerts.py against captured log lines)
FENCE = re.compile(r"^```([A-Za-z]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
EXPECT = re.compile(r"# => (.+?)\s*$", re.MULTILINE)
SET_BY_THE_STACK = {"AzureWebJobsStorage", "ARR_ENDPOINT", "ARR_STS_ENDPOINT"}


def fenced_blocks(doc: Path = README) -> list[tuple[str, int, str]]:
    """(language, first line, code) of every fenced block of ``doc``."""
    text = doc.read_text(encoding="utf-8")
    return [(m.group(1), text.count("\n", 0, m.start()) + 1, m.group(2)) for m in FENCE.finditer(text)]


def runnable(doc: Path = README) -> list[tuple[int, str]]:
    return [(line, code) for language, line, code in fenced_blocks(doc) if language == RUN]


def name(doc: Path) -> str:
    return doc.relative_to(ROOT).as_posix()


WITH_EXAMPLES = [doc for doc in DOCS if runnable(doc)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``make run``'s stack on free ports; yields the functions' port."""
    example = json.loads((ROOT / "local.settings.example.json").read_text(encoding="utf-8"))["Values"]
    env = {**os.environ, **{k: v for k, v in example.items() if k not in SET_BY_THE_STACK}}
    for name in (*SET_BY_THE_STACK, "DEVHOST_FUNCTION_KEYS"):
        env.pop(name, None)
    started = start_stack(tmp_path_factory.mktemp("stack") / "stack.log", env)
    process, ports = started.process, started.ports
    try:
        yield ports["FUNCTIONS_PORT"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    # After the examples' sessions and notifications, Ctrl-C still stops every part without a kill.
    assert "killing" not in started.log.read_text()


def test_only_bash_blocks_run_and_the_readme_says_so() -> None:
    languages = {language for language, _, _ in fenced_blocks()}
    assert languages <= {RUN} | SHOWN, languages
    assert len(runnable()) >= 2
    text = README.read_text(encoding="utf-8")
    assert "tests/integration/test_readme_examples.py" in text and "Blocks fenced `sh` are not run" in text
    assert "`docs/*.md`" in text  # the README says that the docs' examples run too


@pytest.mark.parametrize("doc", DOCS, ids=name)
def test_every_shell_block_is_run_or_fenced_sh_and_runs_as_it_is(doc: Path) -> None:
    languages = {language for language, _, _ in fenced_blocks(doc)}
    assert languages <= {RUN} | SHOWN | (READ if doc != README else set()), (name(doc), languages)
    if runnable(doc):  # a reader is told which blocks a test runs
        assert "tests/integration/test_readme_examples.py" in doc.read_text(encoding="utf-8"), name(doc)
    for _, code in runnable(doc):
        assert "<" not in re.sub(r"<<|2>&1|<\(", "", code), f"{name(doc)}: a placeholder to fill in by hand:\n{code}"
        assert not re.search(r"localhost:(?!7071\b)\d+|127\.0\.0\.1", code), \
            f"{name(doc)}: only localhost:7071 is rewritten:\n{code}"


@pytest.mark.parametrize("doc", WITH_EXAMPLES, ids=name)
def test_every_bash_block_of_the_readme_and_the_docs_runs_against_make_runs_stack(stack: int, doc: Path) -> None:
    blocks = runnable(doc)
    script = "".join(f"printf '\\n@@block %s@@\\n' {i}\n{code.replace('localhost:7071', f'localhost:{stack}')}\n"
                     for i, (_, code) in enumerate(blocks))
    run = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=240, check=False)
    output = run.stdout + run.stderr
    segments = re.split(r"^@@block (\d+)@@$", run.stdout, flags=re.MULTILINE)
    printed = {int(i): text for i, text in zip(segments[1::2], segments[2::2], strict=True)}
    if run.returncode != 0:
        failed = max(printed, default=0)
        pytest.fail(f"{name(doc)}'s bash block at line {blocks[failed][0]} failed ({run.returncode}):\n{output}")
    assert sorted(printed) == list(range(len(blocks))), output
    for i, (line, code) in enumerate(blocks):
        position = 0
        for expected in EXPECT.findall(code):
            found = printed[i].find(expected, position)
            assert found >= 0, f"{name(doc)}: block at line {line} did not print {expected!r} (in order):\n{printed[i]}"
            position = found + len(expected)


def test_the_readme_and_every_doc_with_examples_is_run() -> None:
    assert WITH_EXAMPLES[0] == README and len(WITH_EXAMPLES) > 1, [name(doc) for doc in WITH_EXAMPLES]
