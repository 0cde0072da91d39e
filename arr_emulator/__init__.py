"""A faithful local stand-in for Azure Remote Rendering (retired) and its Mixed Reality STS.

Run it with ``python -m arr_emulator --port 7072``; point ``ArrClient`` (or the function app's ``ARR_ENDPOINT`` and
``ARR_STS_ENDPOINT`` settings) at it. Test control lives under ``/_emulator/``.
"""

from .app import create_app
from .state import EmulatedSession, EmulatorState, Fault

__all__ = ["EmulatedSession", "EmulatorState", "Fault", "create_app"]
