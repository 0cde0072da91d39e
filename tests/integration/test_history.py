"""The Table Storage history store against real Azurite: conditional writes between two processes' stores."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime

from conftest import Azurite, azure_history

from arr_core.domain.records import Event, SessionRecord


def test_two_writers_never_lose_an_update(azurite: Azurite) -> None:
    """Store A remembers its last write; B changes the record; A's next update hits 412, re-reads, and keeps
    B's change: every event is recorded once, with gap-free sequence numbers."""

    async def scenario() -> tuple[SessionRecord, list[dict]]:
        table = f"h{uuid.uuid4().hex[:12]}"
        a = azure_history(azurite.connection_string, table)
        b = azure_history(azurite.connection_string, table)
        now = datetime.now(UTC)
        await a.claim(SessionRecord("s1", now, size="Standard", lease_minutes=10), Event("requested", now))

        def note(kind: str, **changes: object):
            return lambda r: (replace(r, **changes), [Event(kind, now)])

        await a.update("s1", note("by-a-1", reason="a"))
        await b.update("s1", note("by-b", requested_by="b"))          # B reads fresh, writes
        await a.update("s1", note("by-a-2", lease_minutes=20))        # A's remembered ETag is stale: 412, re-read
        results = await asyncio.gather(*(s.update("s1", note(f"race-{i}", keep_alive=True))
                                         for i, s in enumerate((a, b, a, b))))
        assert all(r is not None for r in results)
        final = await b.get("s1")
        events = await b.events("s1")
        await a.aclose()
        await b.aclose()
        assert final is not None
        return final, events

    final, events = asyncio.run(scenario())
    assert (final.reason, final.requested_by, final.lease_minutes, final.keep_alive) == ("a", "b", 20, True)
    assert sorted(e["Seq"] for e in events) == list(range(1, final.event_count + 1))
    assert [e["Type"] for e in sorted(events, key=lambda e: e["Seq"])][:4] == ["requested", "by-a-1", "by-b",
                                                                              "by-a-2"]
    assert final.event_count == 8
