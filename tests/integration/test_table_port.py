"""The table port over its two adapters: Azure Table Storage on Azurite and the dict of the unit layer answer
alike, errors included (the Azure adapter translates the SDK's by TableErrorCode), and a structured query means
the same in OData as in :meth:`Query.matches`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from arr_core.store.azure_table import AzureTable, StorageTarget
from arr_core.store.table import (
    EntityChanged,
    EntityExists,
    EntityMissing,
    Query,
    Table,
    TableMissing,
    TableRefusal,
)
from arr_core.testing.memory_table import MemoryTable

AT = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)


@pytest.fixture(params=["memory", "azurite"])
async def table(request: pytest.FixtureRequest) -> AsyncIterator[Table]:
    if request.param == "memory":
        made: Table = MemoryTable()
    else:
        azurite = request.getfixturevalue("azurite")
        made = AzureTable.connect(StorageTarget(connection_string=azurite.connection_string),
                                  f"p{uuid.uuid4().hex[:12]}")
    yield made
    await made.close()


def entity(row: str, **values: object) -> dict[str, object]:
    return {"PartitionKey": "p", "RowKey": row, **values}


async def test_a_missing_table_is_told_apart_from_a_missing_entity(table: Table) -> None:
    with pytest.raises(TableMissing):
        await table.get("p", "a")
    with pytest.raises(TableMissing):
        await table.insert(entity("a"))
    with pytest.raises(TableMissing):
        await table.transact([("insert", entity("a"), None), ("insert", entity("b"), None)])
    assert await table.create_table() is True
    assert await table.create_table() is False
    assert await table.is_empty() is True
    assert await table.get("p", "a") is None
    with pytest.raises(EntityMissing):
        await table.replace(entity("a"), 'W/"datetime\'2020-01-01T00%3A00%3A00Z\'"')


async def test_conditional_writes_and_their_refusals(table: Table) -> None:
    await table.create_table()
    etag = await table.insert(entity("a", N=1, At=AT))
    with pytest.raises(EntityExists):
        await table.insert(entity("a", N=2))
    found = await table.get("p", "a")
    assert found is not None and found.etag == etag and (found["N"], found["At"]) == (1, AT)
    newer = await table.replace(entity("a", N=3), etag)
    assert newer != etag
    with pytest.raises(EntityChanged):
        await table.replace(entity("a", N=4), etag)
    with pytest.raises(EntityChanged):
        await table.transact([("replace", entity("a", N=5), etag), ("insert", entity("b"), None)])
    assert await table.get("p", "b") is None  # all or nothing
    etags = await table.transact([("replace", entity("a", N=6), newer), ("insert", entity("b"), None)])
    assert len(etags) == 2 and all(etags)
    with pytest.raises(EntityChanged):
        await table.delete("p", "a", newer)
    await table.delete("p", "a", etags[0])
    assert await table.get("p", "a") is None
    assert await table.is_empty() is False


async def test_a_transaction_that_touches_one_entity_twice_is_refused(table: Table) -> None:
    await table.create_table()
    with pytest.raises(TableRefusal) as refused:
        await table.transact([("insert", entity("a"), None), ("insert", entity("a", N=1), None)])
    assert refused.value.status == 400
    assert await table.get("p", "a") is None


QUERIES = [
    Query("p"),
    Query("p", "r03", "r07"),
    Query("p", "r03", "r07", low_inclusive=False),
    Query("p", equal={"Kind": "session"}),
    Query("p", equal={"Kind": "session", "Active": True}),
    Query("p", one_of={"Status": ("Ready", "Stopped")}),
    Query("p", one_of={"RowKey": ("r01", "r09", "zz")}),
    Query("p", "r02", equal={"Kind": "event"}, one_of={"Status": ("Ready",)}),
    Query("other"),
]


async def test_a_query_means_what_query_matches_says_in_key_order_with_etags(table: Table) -> None:
    await table.create_table()
    rows = [entity(f"r{i:02d}", Kind="session" if i % 3 else "event", Active=i % 2 == 0,
                   Status=("Ready", "Stopped", "Starting")[i % 3]) for i in range(10)]
    for row in reversed(rows):
        await table.insert(row)
    for query in QUERIES:
        found = [e async for page in table.query(query, page_size=3) for e in page]
        assert [e["RowKey"] for e in found] == [r["RowKey"] for r in rows if query.matches(r)], query
        assert all(e.etag for e in found)
