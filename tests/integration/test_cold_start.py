"""Cold start: importing the function app opens no connection and loads no client library it does not need yet."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

PROBE = """
import socket, sys
opened = []
real = socket.socket.connect
socket.socket.connect = lambda self, *a: opened.append(a) or real(self, *a)
import function_app
names = [f.get_function_name() for f in function_app.app.get_functions()]
print(len(names), bool(opened), *(m in sys.modules for m in ("azure.identity", "azure.data.tables", "httpx",
                                                             "azure.storage.queue")))
"""


def test_import_is_lazy() -> None:
    """Every function indexed; no socket opened; azure.identity, the table and queue SDKs and httpx not imported."""
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"ARR_CLEANUP_SCHEDULE": "0 */5 * * * *", "PATH": ""})
    import function_app

    expected = len(function_app.app.get_functions())
    assert expected >= 18  # the HTTP functions, the timer and the two queue functions
    assert out.stdout.split() == [str(expected), "False", "False", "False", "False", "False"]


def test_exported_names() -> None:
    """arr_core's __all__ is the sorted public API, and every name in it resolves."""
    import arr_core

    assert arr_core.__all__ == sorted(arr_core.__all__)
    for name in arr_core.__all__:
        assert getattr(arr_core, name) is not None
