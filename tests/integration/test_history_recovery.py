"""The Table Storage store recovering from a lost table, against real Azurite (review findings)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from azure.data.tables.aio import TableClient
from conftest import Azurite, azure_history

from arr_core.domain.records import Event, SessionRecord


def test_a_table_made_by_someone_who_died_before_its_epoch_gets_one(azurite: Azurite) -> None:
    """Another instance created the table and died before stamping when (or the stamp failed): since() was None,
    'trusted', and an adopted keepAlive session could be stopped at night. An empty table without its epoch is
    now stamped by the next store that opens it, so older sessions count as possibly lost."""

    async def scenario() -> tuple[datetime | None, datetime | None]:
        name = f"e{uuid.uuid4().hex[:12]}"
        raw = TableClient.from_connection_string(azurite.connection_string, table_name=name)
        await raw.create_table()  # created, then killed before the epoch row
        await raw.close()
        store = azure_history(azurite.connection_string, name)
        await store.ping()
        stamped = await store.since()
        # A table that already holds history (made by an older version) is trusted as before.
        other = f"o{uuid.uuid4().hex[:12]}"
        raw = TableClient.from_connection_string(azurite.connection_string, table_name=other)
        await raw.create_table()
        await raw.create_entity({"PartitionKey": "id", "RowKey": "old"})
        await raw.close()
        old = azure_history(azurite.connection_string, other)
        await old.ping()
        trusted = await old.since()
        await store.aclose()
        await old.aclose()
        return stamped, trusted

    before = datetime.now(UTC)
    stamped, trusted = asyncio.run(scenario())
    assert stamped is not None and stamped >= before.replace(microsecond=0)
    assert trusted is None


def test_a_host_that_did_not_see_the_loss_writes_back_what_it_remembers(azurite: Azurite) -> None:
    """Two hosts: B recreated the lost table; A never saw TableNotFound. A's next update met a missing record
    (404) and forgot what it remembered (keepAlive, requester, reason). Now A writes its active record back
    before re-reading, so the update lands on a record that keeps those details."""

    async def scenario() -> SessionRecord | None:
        name = f"r{uuid.uuid4().hex[:12]}"
        a = azure_history(azurite.connection_string, name)
        b = azure_history(azurite.connection_string, name)
        now = datetime.now(UTC)
        await a.claim(SessionRecord("kept", now, size="Standard", lease_minutes=60, requested_by="alice",
                                    reason="demo", keep_alive=True), Event("requested", now, to_status="Requested"))
        raw = TableClient.from_connection_string(azurite.connection_string, table_name=name)
        await raw.delete_table()
        await raw.close()
        await b.ping()  # B recreates the table
        from dataclasses import replace
        await a.update("kept", lambda r: (replace(r, status="Starting"), [Event("status", now)]))
        record = await b.get("kept")
        await a.aclose()
        await b.aclose()
        return record

    record = asyncio.run(scenario())
    assert record is not None
    assert (record.status, record.keep_alive, record.requested_by, record.reason) == ("Starting", True, "alice",
                                                                                      "demo")
