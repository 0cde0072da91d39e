"""The two places a command can go: ARR directly (:mod:`.direct`) or the deployed app (:mod:`.app`)."""

from __future__ import annotations

from ..config import AppConfig, Resolved
from .base import TERMINAL, VIEW_KEYS, Poll, Session, StartRequest, Target


def open_target(resolved: Resolved) -> Target:
    """The target ``resolved`` names; close it with ``await target.aclose()``."""
    if isinstance(resolved.target, AppConfig):
        from .app import AppTarget

        return AppTarget(resolved.target, call_seconds=resolved.call_timeout)
    from .direct import DirectTarget

    return DirectTarget(resolved.target, call_seconds=resolved.call_timeout)


__all__ = ["TERMINAL", "VIEW_KEYS", "Poll", "Session", "StartRequest", "Target", "open_target"]
