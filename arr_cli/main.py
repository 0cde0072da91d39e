"""The ``arr-sessions`` console script (``[project.scripts]`` in pyproject.toml) and ``python -m arr_cli``."""

from __future__ import annotations

from .commands import app


def main() -> None:
    """Run the CLI; exits with the command's code (see :mod:`arr_cli.errors`)."""
    app(prog_name="arr-sessions")


__all__ = ["app", "main"]
