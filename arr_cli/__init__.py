"""arr-sessions, the command line: Azure Remote Rendering sessions from a terminal, built on :mod:`arr_core`.

Not part of the function app: nothing under ``function_app.py`` or ``blueprints/`` imports it, and its own
dependencies (Typer, Rich) are in ``requirements-cli.txt``, not in the deployed ``requirements.txt``.
"""

__version__ = "1.0.0"
