"""The architecture is checked by a tool, not a list of file names: import-linter's contracts (pyproject.toml).

And arr_core speaks the domain, not HTTP: outside the adapters of other services' HTTP, no HTTP status and no
problem title; those live in one table at the edge (blueprints/http.py), and the OpenAPI document with them.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import blueprints.http as edge

ROOT = Path(__file__).resolve().parents[2]
ARR_CORE = ROOT / "arr_core"
# The adapters speak other services' HTTP (ARR's REST API, Table Storage, webhook receivers): status codes are
# their vocabulary. Whole folders, so that a new module is checked by where it lives.
ADAPTER_FOLDERS = {"arr", "store", "outbound", "testing", "errors.py"}  # errors.py: ARR's statuses to its errors
HTTP_STATUSES = {*range(400, 432), *range(500, 512)}
APP_HALF = sorted(p for p in ARR_CORE.rglob("*.py")
                  if p.relative_to(ARR_CORE).parts[0] not in ADAPTER_FOLDERS)


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert command is not None, "import-linter is in requirements-dev.txt"
    return subprocess.run([command, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120,
                          check=False)


def test_every_import_linter_contract_is_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken" in result.stdout


def test_imports_against_the_architecture_break_its_contracts(tmp_path: Path) -> None:
    """The contracts can fail: in a copy of the code, a domain module that imports the table SDK and the store, a
    store module (not an Azure adapter) that imports httpx, a blueprint that imports the store, and a new folder of
    arr_core that no layer names are each refused."""
    copy = tmp_path / "tree"
    for package in ("arr_core", "blueprints"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    for module, lines in [("arr_core/domain/records.py", "import azure.data.tables\nfrom ..store import history\n"),
                          ("arr_core/store/entities.py", "import httpx\n"),
                          ("blueprints/queries.py", "from arr_core.store import history\n")]:
        path = copy / module
        path.write_text(path.read_text() + "\n" + lines)
    (copy / "arr_core" / "extras").mkdir()
    (copy / "arr_core" / "extras" / "__init__.py").write_text("")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert result.stdout.count("BROKEN") == 3  # the layers, the pure modules, the blueprints
    for broken in ("arr_core.domain.records -> arr_core.store.history", "arr_core.domain.records -> azure (l.",
                   "arr_core.store.entities -> httpx (l.", "blueprints.queries -> arr_core.store.history",
                   "arr_core.extras"):
        assert broken in result.stdout, broken


@pytest.mark.parametrize("module", APP_HALF, ids=lambda p: str(p.relative_to(ARR_CORE)))
def test_the_app_half_holds_no_http_status_or_title(module: Path) -> None:
    """No HTTP status number in code, and no problem title of the edge's table in any string."""
    source = module.read_text()
    constants = [node.value for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Constant)]
    statuses = [c for c in constants if type(c) is int and c in HTTP_STATUSES]
    titles = {answer.title for answer in edge.PROBLEMS.values()}
    assert statuses == []
    assert titles & {c for c in constants if isinstance(c, str)} == set()
    assert "azure.functions" not in source


# -- the HTTP layer calls services; services call each other's methods ---------------------------------------------

BLUEPRINTS = sorted((ROOT / "blueprints").glob("*.py"))
SERVICES = sorted((ARR_CORE / "services").glob("*.py"))


@pytest.mark.parametrize("module", BLUEPRINTS, ids=lambda p: p.name)
def test_the_functions_call_services_never_the_store(module: Path) -> None:
    """No blueprint imports the store (its rows, their decoding) or the test doubles, or reaches the context's
    parts (``context.history``, ``context.arr``): what a function needs is a service method."""
    tree = ast.parse(module.read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert [name for name in imported if name.startswith(("arr_core.store", "arr_core.testing"))] == []
    parts = [node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
             and isinstance(node.value, ast.Name) and node.value.id == "context" and node.attr in ("history", "arr")]
    assert parts == []


@pytest.mark.parametrize("module", SERVICES, ids=lambda p: p.name)
def test_a_service_uses_another_only_through_its_public_methods(module: Path) -> None:
    """No reaching through: ``self.sessions.arr``, ``self.sessions.history``, ``self.sessions._listed`` are not
    used; what one service needs of another is a method of it (or a part given to it explicitly)."""
    from arr_core.services.maintenance import Maintenance
    from arr_core.services.notifier import Notifier
    from arr_core.services.queries import HistoryQueries
    from arr_core.services.sessions import SessionService

    services = {"sessions": SessionService, "notifier": Notifier, "maintenance": Maintenance,
                "queries": HistoryQueries}
    reached = []
    for node in ast.walk(ast.parse(module.read_text())):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"
                and node.value.attr in services):
            member = getattr(services[node.value.attr], node.attr, None)
            if node.attr.startswith("_") or not callable(member):
                reached.append(f"self.{node.value.attr}.{node.attr}")
    assert reached == []
