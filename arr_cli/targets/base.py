"""What every target offers, and the one shape of a session that the rest of the CLI works with.

A session is a dict in the app's session view shape (``docs/API.md``: ``id``, ``status``, ``size``,
``leaseMinutes`` ... ``links``), whichever target answered: ARR directly fills what ARR knows and leaves the
history fields (``requestedBy``, ``reason``, ``readyAt`` ...) null. So ``--json`` output has the same keys either
way, and so do the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

Session = dict[str, Any]

VIEW_KEYS = ("id", "status", "size", "leaseMinutes", "elapsedMinutes", "remainingMinutes", "hostname",
             "handshakePort", "arrInspectorPort", "teraflops", "createdAt", "readyAt", "endedAt", "requestedBy",
             "reason", "labels", "keepAlive", "billedMinutes", "error", "links")
TERMINAL = frozenset({"Stopped", "Expired", "Error"})


@dataclass(frozen=True)
class StartRequest:
    """What ``start`` asks for; None leaves it to the target (the app's settings, or the CLI's defaults)."""

    session_id: str | None = None
    size: str | None = None
    lease_minutes: int | None = None
    requested_by: str | None = None
    reason: str | None = None
    labels: dict[str, str] | None = None
    keep_alive: bool | None = None


@dataclass(frozen=True)
class Poll:
    """One look at a starting session (a poll's, or the start's answer): the session, and how long the service
    asked us to wait before the next."""

    session: Session
    retry_after: float | None = None


class Target(Protocol):
    """ARR directly, or the app. Every method raises a :class:`~arr_cli.errors.CliError` (or an error that
    :func:`~arr_cli.errors.as_cli_error` maps) when the service fails."""

    is_app: bool

    def describe(self) -> str: ...
    async def start(self, request: StartRequest) -> Poll: ...
    async def get(self, session_id: str) -> Session: ...
    async def poll(self, session_id: str) -> Poll: ...
    async def list(self) -> dict[str, Any]: ...
    async def extend(self, session_id: str, *, lease_minutes: int | None, by_minutes: int | None,
                     reason: str | None = None, requested_by: str | None = None) -> Session: ...
    async def stop(self, session_id: str, *, reason: str | None, requested_by: str | None) -> Session: ...
    async def aclose(self) -> None: ...
