"""arr_core speaks the domain, not HTTP: its app half holds no HTTP status and no problem title; those live in
one table at the edge (blueprints/http.py), and the OpenAPI document with them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import blueprints.http as edge

ARR_CORE = Path(__file__).resolve().parents[2] / "arr_core"
# The adapters speak other services' HTTP (ARR's REST API, Table Storage, webhook receivers): status codes are
# their vocabulary.
ADAPTERS = {"client.py", "responses.py", "retries.py", "auth.py", "transport.py", "errors.py", "history.py",
            "memory_history.py", "webhooks.py"}
HTTP_STATUSES = {*range(400, 432), *range(500, 512)}
APP_HALF = sorted(p for p in ARR_CORE.glob("*.py") if p.name not in ADAPTERS)


@pytest.mark.parametrize("module", APP_HALF, ids=lambda p: p.name)
def test_the_app_half_holds_no_http_status_or_title(module: Path) -> None:
    """No HTTP status number in code, and no problem title of the edge's table in any string."""
    source = module.read_text()
    constants = [node.value for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Constant)]
    statuses = [c for c in constants if type(c) is int and c in HTTP_STATUSES]
    titles = {answer.title for answer in edge.PROBLEMS.values()}
    assert statuses == []
    assert titles & {c for c in constants if isinstance(c, str)} == set()
    assert "azure.functions" not in source
