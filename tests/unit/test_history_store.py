"""The history store's own algorithms in the unit layer: the store itself over the dict table (no copy of it).

Group commit (batching, its limits, refused and unanswered transactions), re-creating a lost table and writing
back what this process remembers, and the translation of the port's errors. The same store runs over Azurite in
tests/integration (test_history_contract.py, test_history_batching.py, test_history_recovery.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from arr_core import deadline
from arr_core.api.views import CleanupReport
from arr_core.domain.records import Event, SessionRecord
from arr_core.errors import DeadlineExceeded, HistoryUnavailable
from arr_core.store import entities
from arr_core.store.group_commit import MAX_BATCH_CHARS, MAX_BATCH_OPS, weight
from arr_core.store.history import HistoryStore
from arr_core.store.table import EntityExists, Op, TableRefusal, TableUnreachable
from arr_core.testing.memory_table import MemoryTable

from .harness import START, Clock


def store_on(table: MemoryTable | None = None) -> HistoryStore:
    return HistoryStore(table or MemoryTable(), clock=Clock(START))


def note(kind: str, **changes: Any) -> Callable[[SessionRecord], Any]:
    return lambda r: (replace(r, **changes), [Event(kind, START)])


async def claim_all(store: HistoryStore, ids: list[str], **fields: Any) -> None:
    await asyncio.gather(*(store.claim(SessionRecord(i, START, size="Standard", lease_minutes=60, **fields),
                                       Event("requested", START, to_status="Requested")) for i in ids))


def spy(table: MemoryTable) -> list[list[Op]]:
    """The operations of each transaction the table was sent."""
    sent: list[list[Op]] = []
    original = table.transact

    async def transact(ops: list[Op]) -> list[str]:
        sent.append(list(ops))
        return await original(ops)

    table.transact = transact  # type: ignore[method-assign]
    return sent


def sessions_in(batch: list[Op]) -> list[str]:
    return [op[1]["RowKey"].split("~")[1] for op in batch]


async def test_concurrent_changes_to_one_partition_go_together_and_each_lands_once() -> None:
    table = MemoryTable()
    store = store_on(table)
    ids = [f"s{i:02d}" for i in range(40)]
    await claim_all(store, ids)
    sent = spy(table)
    await asyncio.gather(*(store.update(i, note("noted", reason=f"r-{i}")) for i in ids))
    assert 1 < len(sent) < 40 / 4
    assert max(len(set(sessions_in(batch))) for batch in sent) > 1
    for i in ids:
        record = await store.get(i)
        assert record is not None and (record.reason, record.event_count) == (f"r-{i}", 2)
        assert [e["Type"] for e in await store.events(i)] == ["requested", "noted"]


async def test_a_transaction_never_holds_more_than_the_table_allows() -> None:
    """120 writes of two entities each, all at once: no transaction above 100 operations (the dict table refuses
    one, as Table Storage does), each entity at most once per transaction."""
    table = MemoryTable()
    store = store_on(table)
    ids = [f"s{i:03d}" for i in range(120)]
    await claim_all(store, ids)
    sent = spy(table)
    await asyncio.gather(*(store.update(i, note("n")) for i in ids))
    assert max(len(batch) for batch in sent) <= MAX_BATCH_OPS
    assert all(len({op[1]["RowKey"] for op in batch}) == len(batch) for batch in sent)
    assert sum(len(batch) for batch in sent) == 240  # every write once, none resent


async def test_large_writes_are_split_by_the_size_limit() -> None:
    """Records with 20 000-character reasons: the 600 000-character budget of one transaction splits them."""
    table = MemoryTable()
    store = store_on(table)
    ids = [f"big{i:02d}" for i in range(60)]
    await claim_all(store, ids)
    sent = spy(table)
    await asyncio.gather(*(store.update(i, note("n", reason="x" * 20_000)) for i in ids))
    assert all(sum(weight(op[1]) for op in batch) <= MAX_BATCH_CHARS for batch in sent)
    assert len(sent) >= 60 * 20_000 // MAX_BATCH_CHARS
    assert [(await store.get(i)).reason for i in ids] == ["x" * 20_000] * 60  # type: ignore[union-attr]


async def test_a_refused_transaction_is_sent_again_write_by_write() -> None:
    """One write in the batch is stale (another store changed its record): the table refuses the transaction, so
    each write goes again alone; the stale one re-reads and keeps the other change; the rest land once."""
    table = MemoryTable()
    a, b = store_on(table), store_on(table)
    ids = [f"s{i:02d}" for i in range(12)]
    await claim_all(a, ids)
    await b.update("s07", note("by-b", requested_by="b"))
    sent = spy(table)
    await asyncio.gather(*(a.update(i, note("by-a", lease_minutes=90)) for i in ids))
    assert any("s07" in sessions_in(batch) and len(set(sessions_in(batch))) > 1 for batch in sent)
    for i in ids:
        record = await b.get(i)
        assert record is not None and record.lease_minutes == 90 and record.event_count == 2 + (i == "s07")
    assert [e["Type"] for e in await b.events("s07")] == ["requested", "by-b", "by-a"]


async def test_an_unanswered_transaction_fails_every_write_in_it_and_the_next_ones_go_through() -> None:
    table = MemoryTable()
    store = store_on(table)
    ids = [f"s{i}" for i in range(5)]
    await claim_all(store, ids)
    table.fail_next(-1, only={"transact", "replace"})
    outcomes = await asyncio.gather(*(store.update(i, note("n")) for i in ids), return_exceptions=True)
    assert all(isinstance(o, HistoryUnavailable) for o in outcomes), outcomes
    assert all("could not be reached" in str(o) or "did not answer" in str(o) for o in outcomes)
    table.heal()
    after = await store.update("s0", note("again"))
    assert after is not None and after.event_count == 2


async def test_writes_under_different_request_budgets_never_share_a_transaction() -> None:
    table = MemoryTable()
    store = store_on(table)
    ids = [f"{side}{i}" for side in "ab" for i in range(8)]
    await claim_all(store, ids)
    sent = spy(table)

    async def request(side: str) -> None:
        async with deadline.budget(30):
            await asyncio.gather(*(store.update(f"{side}{i}", note("n")) for i in range(8)))

    await asyncio.gather(request("a"), request("b"))
    assert any(len(set(sessions_in(batch))) > 1 for batch in sent)
    assert all(len({session[0] for session in sessions_in(batch)}) == 1 for batch in sent)


async def test_a_lost_table_is_created_again_and_the_active_records_this_process_knew_are_written_back() -> None:
    table = MemoryTable()
    store = store_on(table)
    await claim_all(store, ["k1", "k2"], reason="kept", keep_alive=True)
    table.lose_table()
    written = await asyncio.gather(*(store.update(i, note("after", lease_minutes=120)) for i in ("k1", "k2")))
    assert all(r is not None and (r.reason, r.keep_alive, r.lease_minutes) == ("kept", True, 120) for r in written)
    assert [e["Type"] for e in await store.events("k1")] == ["restored", "after"]
    assert await store.since() == START  # the new table is dated: what was before it may be lost


async def test_a_table_lost_during_a_query_is_created_again_once() -> None:
    table = MemoryTable()
    store = store_on(table)
    await claim_all(store, ["q1"])
    table.lose_table()
    found = [r async for r in store.sessions_created(START, START.replace(year=START.year + 1))]
    assert [r.session_id for r in found] == ["q1"]  # written back, then found


async def test_a_table_made_by_someone_who_died_before_dating_it_is_dated_now() -> None:
    table = MemoryTable(rows=[])
    assert await store_on(table).since() == START
    older = MemoryTable(rows=[{"PartitionKey": "s-200001", "RowKey": "x"}])
    assert await store_on(older).since() is None  # rows of an older version: its origin is unknown, trusted


async def test_the_ports_errors_become_history_errors() -> None:
    table = MemoryTable()
    store = store_on(table)
    await store.ping()
    table.fail_next(1, TableRefusal(500, "InternalError"))
    with pytest.raises(HistoryUnavailable, match="Table Storage answered 500 InternalError"):
        await store.get("x")
    table.fail_next(1, TableUnreachable("ClientConnectorError"))
    with pytest.raises(HistoryUnavailable, match="could not be reached"):
        await store.get("x")
    with pytest.raises(HistoryUnavailable, match="PropertyValueTooLarge"):
        await store.claim(SessionRecord("big", START, reason="x" * 40_000), Event("requested", START))


async def test_a_slow_table_is_bounded_by_the_requests_budget() -> None:
    table = MemoryTable(latency=0.5)
    store = store_on(table)
    with pytest.raises(DeadlineExceeded):
        async with deadline.budget(0.1):
            await store.get("slow")


async def test_stored_run_rows_are_their_own_format_and_the_old_format_is_still_read() -> None:
    table = MemoryTable(rows=[])
    store = store_on(table)
    old = {"PartitionKey": entities.run_partition(START), "RowKey": entities.run_row_after(START)[:-1] + "_old",
           "Kind": "run", "RanAt": START, "Mode": "lease", "Kept": 2,
           "Report": '{"ranAt":"' + START.isoformat() + '","dryRun":false,"mode":"lease","stopped":'
                     '[{"id":"a","reason":"lease"}],"kept":[],"reconciled":[],"errors":[]}'}
    await table.insert(old)
    [run] = await store.runs(START + timedelta(days=1), 5)
    assert [a.id for a in run.stopped] == ["a"]
    await store.record_run(CleanupReport(ran_at=START, dry_run=False, mode="nightly", stopped=[], kept=[],
                                         reconciled=[], errors=[]))
    [row] = [r for r in table.rows.values() if r.get("Schema") == entities.RUN_SCHEMA]
    assert "Report" not in row and row["Mode"] == "nightly"  # no API JSON in storage


async def test_a_table_that_cannot_be_created_yet_is_an_outage_and_what_was_known_is_written_back_later() -> None:
    """Azure refuses to create a table that is being deleted (409 TableBeingDeleted, for 40 s or more): that is
    HistoryUnavailable (a 503, so a stop still reaches ARR), not a raw port error; what this process remembered is
    kept until the table can be created, then written back."""
    table = MemoryTable()
    store = store_on(table)
    await claim_all(store, ["k1"], reason="kept", keep_alive=True)
    table.lose_table()
    table.fail_next(2, TableRefusal(409, "TableBeingDeleted"), only={"create_table"})
    for _ in range(2):
        with pytest.raises(HistoryUnavailable, match="409 TableBeingDeleted"):
            await store.update("k1", note("after"))
    written = await store.update("k1", note("after", lease_minutes=120))
    assert written is not None and (written.reason, written.keep_alive, written.lease_minutes) == ("kept", True, 120)


async def test_a_run_row_written_by_a_try_whose_answer_was_lost_is_no_error() -> None:
    """The SDK retries a POST that timed out: if the first one landed, the retry is told 409; the row is there."""
    table = MemoryTable()
    store = store_on(table)
    report = CleanupReport(ran_at=START, dry_run=False, mode="lease", stopped=[], kept=[], reconciled=[], errors=[])
    await store.ping()
    table.fail_next(1, EntityExists(409, "EntityAlreadyExists"), only={"insert"})
    await store.record_run(report)


async def test_deleting_what_is_not_there_is_no_error_as_on_azure() -> None:
    table = MemoryTable(rows=[])
    await table.delete("p", "absent", None)
    await table.delete("p", "absent", 'W/"1"')
    table.lose_table()
    await table.delete("p", "absent", None)
