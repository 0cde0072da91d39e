"""Unit layer: no Azurite, no subprocess, no socket. A package, so its module names never clash with the
integration tests' (``tests/integration/test_sessions.py`` and ``tests/unit/test_sessions.py`` can both exist)."""
