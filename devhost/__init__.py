"""A local host that serves the real functions of ``function_app.py`` without Azure Functions Core Tools."""

from .host import FunctionsHost, compile_route
from .schedule import Schedule, parse_schedule, resolve_setting
from .settings import load_local_settings

__all__ = ["FunctionsHost", "Schedule", "compile_route", "load_local_settings", "parse_schedule", "resolve_setting"]
