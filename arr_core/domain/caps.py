"""Caps on concurrent sessions: in all, and per requester. Pure: which cap a new start would break, in words.

DevTest Labs caps VMs per user; a team that pays for ARR by the minute wants "nobody runs more than two sessions"
and "never more than ten at once". A start is admitted when it breaks neither (``ARR_MAX_SESSIONS``,
``ARR_MAX_SESSIONS_PER_REQUESTER``); every session the app started or adopted that is still active counts (pool and
schedule sessions too: a pool's unclaimed ones are its own actor's, a claimed one its claimer's). The count and the
start are made under one admission lease across hosts (:meth:`arr_core.services.sessions.SessionService.start`),
so concurrent starts at the last free place cannot both pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .records import SessionRecord


@dataclass(frozen=True)
class Caps:
    total: int | None = None
    per_requester: int | None = None

    @property
    def any(self) -> bool:
        return self.total is not None or self.per_requester is not None


def broken_cap(caps: Caps, active: Iterable[SessionRecord], requester: str | None) -> tuple[str, str] | None:
    """(the setting, why) of the cap a new start by ``requester`` would break, or None. A start that names no
    requester counts only against the total."""
    running = [r for r in active if r.is_active]
    if caps.total is not None and len(running) >= caps.total:
        return "ARR_MAX_SESSIONS", f"{len(running)} sessions are active, the most the app allows is {caps.total}"
    if caps.per_requester is not None and requester is not None:
        theirs = [r.session_id for r in running if r.requested_by == requester]
        if len(theirs) >= caps.per_requester:
            shown = ", ".join(theirs[:5]) + (" …" if len(theirs) > 5 else "")
            why = (f"{requester} has {len(theirs)} active sessions ({shown}), the most one requester may have is "
                   f"{caps.per_requester}")
            return "ARR_MAX_SESSIONS_PER_REQUESTER", why
    return None
