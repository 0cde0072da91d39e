"""``python -m arr_cli``: the same as the ``arr-sessions`` command."""

from .main import main

main()
