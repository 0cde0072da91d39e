"""Client heartbeats (idle stop, :mod:`arr_core.domain.idle`): cheap enough for every client every 30 seconds.

A heartbeat costs at most one conditional write of the session's record per WRITE_EVERY per process; one that comes
sooner after the last one this process recorded is answered from memory at once (no table call at all). The write
usually needs no read first (the store keeps the record it last wrote, with its ETag); a record changed since by
another writer fails the write, which reads it again. History grows by one event per session (its first heartbeat),
never per heartbeat.

What memory answers is at most WRITE_EVERY old: a session that ended (or was stopped on another host) in that time
is still answered 200 once; the next heartbeat that is written gets its 409.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..domain.idle import HEARTBEAT_SECONDS, WRITE_EVERY, exempt, heartbeat, idle_deadline
from ..domain.records import utcnow
from ..errors import SessionEnded, SessionNotFound
from .settings import AppSettings

if TYPE_CHECKING:
    from ..store.history import History

MEMORY = 50_000  # sessions whose last recorded heartbeat a process remembers (about 200 bytes each)


@dataclass(frozen=True)
class Beat:
    """What one heartbeat answers."""

    session_id: str
    at: datetime  # when it was received
    recorded_at: datetime  # the heartbeat history holds: this one, or one less than WRITE_EVERY older
    next_at: datetime  # send the next one by then
    idle_stop_at: datetime | None  # without another heartbeat the cleanup stops the session from then on
    written: bool  # this heartbeat wrote the record (else memory answered)


@dataclass(frozen=True)
class _Recorded:
    at: datetime  # the last heartbeat this process recorded (or found recorded, newer, by another host)
    ready_at: datetime | None
    exempt: bool


class Heartbeats:
    """Records heartbeats, coalesced per session in this process."""

    def __init__(self, history: History, settings: AppSettings, *, clock: Callable[[], datetime] = utcnow,
                 memory: int = MEMORY) -> None:
        self.history = history
        self.settings = settings
        self._clock = clock
        self._memory = memory
        self._recorded: OrderedDict[str, _Recorded] = OrderedDict()
        self._writing: dict[str, asyncio.Future[_Recorded]] = {}  # a write under way: concurrent ones wait for it

    async def beat(self, session_id: str, client: str | None = None) -> Beat:
        """Record that a client is connected to the session. :class:`SessionNotFound` when history does not know
        it; :class:`SessionEnded` (a 409) when it has ended or its stop was asked for."""
        now = self._clock()
        known = self._recorded.get(session_id)
        if known is not None and now - known.at < WRITE_EVERY:
            self._recorded.move_to_end(session_id)
            return self._answer(session_id, now, known, written=False)
        pending = self._writing.get(session_id)
        if pending is not None:  # the same session's heartbeat is being written: its outcome is this one's
            return self._answer(session_id, now, await asyncio.shield(pending), written=False)
        task = asyncio.ensure_future(self._record(session_id, now, client))
        self._writing[session_id] = task
        task.add_done_callback(lambda done: self._done(session_id, done))
        return self._answer(session_id, now, await asyncio.shield(task), written=True)

    def _done(self, session_id: str, task: asyncio.Future[_Recorded]) -> None:
        self._writing.pop(session_id, None)
        if not task.cancelled():
            task.exception()  # retrieved: a waiter cancelled by its deadline leaves no "never retrieved" warning

    async def _record(self, session_id: str, now: datetime, client: str | None) -> _Recorded:
        try:
            record = await self.history.update(session_id, lambda r: heartbeat(r, now, client))
        except SessionEnded:
            self._recorded.pop(session_id, None)
            raise
        if record is None:
            raise SessionNotFound(f"history knows no session {session_id} (a session started outside this app is "
                                  "known once the next cleanup has adopted it)")
        recorded = _Recorded(record.last_heartbeat or now, record.ready_at, exempt(record))
        self._recorded[session_id] = recorded
        self._recorded.move_to_end(session_id)
        while len(self._recorded) > self._memory:
            self._recorded.popitem(last=False)
        return recorded

    def _answer(self, session_id: str, now: datetime, recorded: _Recorded, *, written: bool) -> Beat:
        deadline = None if recorded.exempt else idle_deadline(session_id, recorded.at, recorded.ready_at,
                                                              self.settings)
        return Beat(session_id, now, recorded.at, now + timedelta(seconds=HEARTBEAT_SECONDS),
                    deadline.at if deadline is not None else None, written)


__all__ = ["Beat", "Heartbeats"]
