"""Build ``.venv-runtime``: Python 3.13 with the app's requirements, Microsoft's worker runtime and FunctionRpc.

``make runtime-venv`` (and so ``make test``) runs this with any Python 3 (standard library only)::

    python3 tests/runtime/build_venv.py .venv-runtime

Python 3.13 is looked for in ``$PYTHON313``, then ``python3.13`` on PATH, then pyenv's versions folder
(``pyenv root``, ``$PYENV_ROOT``, ``~/.pyenv``), then the usual system places. Each candidate is run, because a
pyenv shim on PATH exists even when its version is not selected. None that runs is an error, never a skip.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                             text=True, timeout=30, check=True).stdout.split()
        return int(out[0]), int(out[1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _pyenv_roots() -> list[str]:
    roots = []
    try:
        roots.append(subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30,
                                    check=True).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    roots += [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    return [r for r in roots if r]


def candidates() -> list[str]:
    found = [os.environ.get("PYTHON313", ""), shutil.which("python3.13") or ""]
    for root in _pyenv_roots():
        versions = glob.glob(os.path.join(root, "versions", "3.13*", "bin", "python3.13"))
        found += sorted(versions, reverse=True)
    found += ["/usr/local/bin/python3.13", "/usr/bin/python3.13"]
    return list(dict.fromkeys(c for c in found if c))


def find_python313() -> str:
    tried = []
    for candidate in candidates():
        version = _version(candidate)
        tried.append(f"{candidate}: {'does not run' if version is None else '.'.join(map(str, version))}")
        if version is not None and version[:2] == (3, 13):
            return candidate
    sys.exit("make runtime-venv: Python 3.13 is needed for the real-runtime test (azure-functions-runtime "
             "requires >=3.13) and none was found. Install it (e.g. `pyenv install 3.13`) or set PYTHON313 to "
             "its path. Tried:\n  " + "\n  ".join(tried or ["(no candidate)"]))


def names(lines: list[str]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", m.group(1)).lower() for line in lines if (m := NAME.match(line))}


def app_requirements(overrides: set[str]) -> tuple[list[str], list[str]]:
    """requirements.txt without the packages that tests/runtime/requirements.txt pins for 3.13."""
    kept, dropped = [], []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = NAME.match(line)
        if match and re.sub(r"[-_.]+", "-", match.group(1)).lower() in overrides:
            dropped.append(line.split("#")[0].strip())
        else:
            kept.append(line)
    return kept, dropped


def pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--no-input", *args], check=True)


def main() -> None:
    venv = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / ".venv-runtime").resolve()
    started = time.monotonic()
    python313 = find_python313()
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([python313, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    runtime_lines = (HERE / "requirements.txt").read_text().splitlines()
    kept, dropped = app_requirements(names(runtime_lines))
    app_file = venv / "requirements-app.txt"
    app_file.write_text("\n".join(kept) + "\n")
    pip(python, "-r", str(app_file), "-r", str(HERE / "requirements.txt"))
    pip(python, "--no-deps", "--require-hashes", "--target", str(venv / "functionrpc"),
        "-r", str(HERE / "functionrpc.txt"))
    protos = venv / "functionrpc" / "tests" / "protos" / "FunctionRpc_pb2.py"
    if not protos.is_file():
        sys.exit(f"make runtime-venv: {protos} is missing: the FunctionRpc wheel changed its layout")
    (venv / ".installed").write_text(f"{python313}\n")
    print(f"{venv.name}: Python 3.13 from {python313}; requirements.txt without {', '.join(dropped) or 'nothing'} "
          f"(pinned for 3.13 in tests/runtime/requirements.txt); built in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
