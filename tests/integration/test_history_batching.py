"""The store's group commit against real Azurite: concurrent changes to one partition share transactions, and
each still lands exactly once, with its own ETag condition, as it would alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables.aio import TableClient
from conftest import Azurite, azure_history

from arr_core import deadline
from arr_core.domain.records import Event, SessionRecord
from arr_core.errors import HistoryUnavailable
from arr_core.store.group_commit import BATCHES_IN_FLIGHT
from arr_core.store.history import HistoryStore

NOW = datetime.now(UTC)


def _store(azurite: Azurite, name: str | None = None) -> HistoryStore:
    return azure_history(azurite.connection_string, name or f"b{uuid.uuid4().hex[:12]}")


def _spy(store: HistoryStore) -> list[list[str]]:
    """Record the session ids (RowKeys' last part, or the id index's RowKey) each transaction carried."""
    sent: list[list[str]] = []
    table: Any = store.table.client  # the SDK client every call goes through
    original = table.submit_transaction

    async def submit(operations: list[Any], **kwargs: Any) -> Any:
        sent.append([op[1]["RowKey"].split("~")[1] if "~" in op[1]["RowKey"] else op[1]["RowKey"]
                     for op in operations])
        return await original(operations, **kwargs)

    table.submit_transaction = submit
    return sent


def _note(kind: str, **changes: Any) -> Callable[[SessionRecord], Any]:
    return lambda r: (replace(r, **changes), [Event(kind, NOW)])


async def _claim_all(store: HistoryStore, ids: list[str]) -> None:
    await asyncio.gather(*(store.claim(SessionRecord(i, NOW, size="Standard", lease_minutes=60),
                                       Event("requested", NOW, to_status="Requested")) for i in ids))


async def _events_in_order(store: HistoryStore, session_id: str) -> list[str]:
    return [e["Type"] for e in sorted(await store.events(session_id), key=lambda e: e["Seq"])]


def test_concurrent_changes_to_one_partition_share_transactions_and_each_lands_once(azurite: Azurite) -> None:
    async def scenario() -> tuple[list[list[str]], list[SessionRecord | None], list[list[str]]]:
        store = _store(azurite)
        ids = [f"s{i:02d}" for i in range(40)]
        await _claim_all(store, ids)
        sent = _spy(store)
        await asyncio.gather(*(store.update(i, _note("noted", reason=f"r-{i}")) for i in ids))
        records = [await store.get(i) for i in ids]
        events = [await _events_in_order(store, i) for i in ids]
        await store.aclose()
        return sent, records, events

    sent, records, events = asyncio.run(scenario())
    assert len(sent) < 40 / 4  # 40 changes (2 entities each) went in a few transactions, not 40
    assert max(len(set(batch)) for batch in sent) > 1
    assert all(r is not None and r.reason == f"r-{r.session_id}" and r.event_count == 2 for r in records)
    assert all(e == ["requested", "noted"] for e in events)


def test_a_stale_write_fails_alone_and_the_others_in_its_transaction_land(azurite: Azurite) -> None:
    """Store A remembers ETags; B changes one record. A's changes to all of them go together: the table refuses
    that transaction (412 for one), so each is sent again alone: the stale one re-reads and keeps B's change."""

    async def scenario() -> tuple[list[list[str]], list[SessionRecord | None], list[str]]:
        name = f"b{uuid.uuid4().hex[:12]}"
        a, b = _store(azurite, name), _store(azurite, name)
        ids = [f"s{i:02d}" for i in range(12)]
        await _claim_all(a, ids)
        await b.update("s07", _note("by-b", requested_by="b"))
        sent = _spy(a)
        await asyncio.gather(*(a.update(i, _note("by-a", lease_minutes=90)) for i in ids))
        records = [await b.get(i) for i in ids]
        events = await _events_in_order(b, "s07")
        await a.aclose()
        await b.aclose()
        return sent, records, events

    sent, records, events = asyncio.run(scenario())
    assert any("s07" in batch and len(set(batch)) > 1 for batch in sent)  # it was batched with others...
    assert all(r is not None and r.lease_minutes == 90 and r.event_count == 2 + (r.session_id == "s07")
               for r in records)  # ...and every change landed once
    assert records[7] is not None and records[7].requested_by == "b"
    assert events == ["requested", "by-b", "by-a"]


def test_two_changes_to_one_record_never_share_a_transaction(azurite: Azurite) -> None:
    async def scenario() -> tuple[list[list[str]], SessionRecord | None, list[str]]:
        store = _store(azurite)
        await _claim_all(store, ["one", "two", "three"])
        sent = _spy(store)
        await asyncio.gather(*(store.update(i, _note(f"n-{i}-{k}")) for k in range(4) for i in ("one", "two", "three")))
        record = await store.get("two")
        events = await _events_in_order(store, "two")
        await store.aclose()
        return sent, record, events

    sent, record, events = asyncio.run(scenario())
    for batch in sent:
        assert len(batch) == len(set(batch)) * 2  # each session once: its record and its one event
    assert record is not None and record.event_count == 5
    assert sorted(events[1:]) == [f"n-two-{k}" for k in range(4)]


def test_a_writer_that_gives_up_waiting_does_not_hold_up_the_others(azurite: Azurite) -> None:
    """A slow table: as many changes as may be on their way at once are; one of those waiting behind them is
    cancelled (its caller's request ended). It is never sent; the others go in the next transaction, and later
    writes still flow."""

    async def scenario() -> tuple[list[list[str]], list[SessionRecord | None]]:
        store = _store(azurite)
        first = [f"first{i}" for i in range(BATCHES_IN_FLIGHT)]
        ids = [*first, "gone", "third", "fourth", "later"]
        await _claim_all(store, ids)
        sent = _spy(store)
        table: Any = store.table.client  # the SDK client every call goes through
        spied = table.submit_transaction

        async def slow(operations: list[Any], **kwargs: Any) -> Any:  # the first ones answered one by one
            session = operations[0][1]["RowKey"].split("~")[1]
            await asyncio.sleep(0.6 * (1 + first.index(session)) if session in first else 0.05)
            return await spied(operations, **kwargs)

        table.submit_transaction = slow
        on_their_way = [asyncio.create_task(store.update(i, _note("n"))) for i in first]
        await asyncio.sleep(0.05)
        waiting = {i: asyncio.create_task(store.update(i, _note("n"))) for i in ("gone", "third", "fourth")}
        await asyncio.sleep(0.05)
        waiting["gone"].cancel()
        await asyncio.gather(*on_their_way, waiting["third"], waiting["fourth"], return_exceptions=True)
        await asyncio.wait_for(store.update("later", _note("n")), 3)
        records = [await store.get(i) for i in ids]
        await store.aclose()
        return sent, records

    sent, records = asyncio.run(scenario())
    assert [batch for batch in sent if not batch[0].startswith("first")] == [["third", "third", "fourth", "fourth"],
                                                                             ["later", "later"]]
    assert sorted(batch for batch in sent if batch[0].startswith("first")) == [
        [f"first{i}"] * 2 for i in range(BATCHES_IN_FLIGHT)]
    assert [r.event_count if r else None for r in records] == [2] * BATCHES_IN_FLIGHT + [1, 2, 2, 2]


def test_writes_under_different_request_budgets_never_share_a_transaction(azurite: Azurite) -> None:
    """A transaction is bounded by its sender's budget: writes of two requests, each with its own, go apart."""

    async def scenario() -> list[list[str]]:
        store = _store(azurite)
        ids = [f"{side}{i}" for side in "ab" for i in range(8)]
        await _claim_all(store, ids)
        sent = _spy(store)

        async def request(side: str) -> None:
            async with deadline.budget(30):
                await asyncio.gather(*(store.update(f"{side}{i}", _note("n")) for i in range(8)))

        await asyncio.gather(request("a"), request("b"))
        await store.aclose()
        return sent

    sent = asyncio.run(scenario())
    assert any(len(set(batch)) > 1 for batch in sent)
    assert all(len({session[0] for session in batch}) == 1 for batch in sent)


def test_a_lost_table_found_by_a_transaction_is_restored_without_waiting_on_itself(azurite: Azurite) -> None:
    """The table is deleted behind the store's back; the next transaction finds it gone, recreates it and writes
    back the active records this process remembers (alone: that write-back runs inside the transaction's call);
    then the changes are decided again on the restored records. No call waits out its timeout."""

    async def scenario() -> tuple[float, list[SessionRecord | None]]:
        name = f"b{uuid.uuid4().hex[:12]}"
        store = _store(azurite, name)
        ids = [f"s{i}" for i in range(6)]
        await asyncio.gather(*(store.claim(SessionRecord(i, NOW, size="Standard", lease_minutes=60, reason="kept"),
                                           Event("requested", NOW, to_status="Requested")) for i in ids))
        raw = TableClient.from_connection_string(azurite.connection_string, table_name=name)
        await raw.delete_table()
        await raw.close()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(store.update(i, _note("after", lease_minutes=120)) for i in ids))
        took = loop.time() - started
        records = [await store.get(i) for i in ids]
        await store.aclose()
        return took, records

    took, records = asyncio.run(scenario())
    assert took < 4
    assert all(r is not None and r.reason == "kept" and r.lease_minutes == 120 for r in records)


def test_records_listed_by_a_query_carry_their_etag_and_save_a_read(azurite: Azurite) -> None:
    """The cleanup acts on the records its query listed: their ETags make the first write conditional on them,
    with no read before it; a record changed since (by another host) fails that write and is read again."""

    async def scenario() -> tuple[list[SessionRecord], int, SessionRecord | None]:
        name = f"b{uuid.uuid4().hex[:12]}"
        store, other = _store(azurite, name), _store(azurite, name)
        await _claim_all(other, ["x", "y"])
        listed = [r async for r in store.sessions_created(NOW - timedelta(days=1), NOW + timedelta(days=1),
                                                          only_active=True)]
        await other.update("y", _note("by-other", requested_by="other"))
        reads = 0
        table: Any = store.table.client  # the SDK client every call goes through
        get_entity: Callable[..., Awaitable[Any]] = table.get_entity

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal reads
            reads += 1
            return await get_entity(*args, **kwargs)

        table.get_entity = counted
        for record in listed:
            await store.update(record.session_id, _note("by-store", lease_minutes=5), record)
        y = await other.get("y")
        await store.aclose()
        await other.aclose()
        return listed, reads, y

    listed, reads, y = asyncio.run(scenario())
    assert [r.session_id for r in listed] == ["x", "y"] and all(r.etag for r in listed)
    assert reads == 2  # only for "y" (its id index, then its record), whose ETag the other host made stale
    assert y is not None and (y.requested_by, y.lease_minutes, y.event_count) == ("other", 5, 3)


def test_an_unanswered_transaction_fails_every_write_in_it(azurite: Azurite) -> None:
    """No answer (a timeout, a dropped connection): no one knows what was written, so every caller in that
    transaction gets HistoryUnavailable, as each would alone; the next writes go through."""

    async def scenario() -> tuple[list[Any], list[int], SessionRecord | None]:
        store = _store(azurite)
        ids = [f"s{i}" for i in range(BATCHES_IN_FLIGHT + 3)]  # some on their way, the others batched behind them
        await _claim_all(store, ids)
        table: Any = store.table.client  # the SDK client every call goes through
        original = table.submit_transaction
        answering = False
        carried: list[int] = []

        async def dropped(operations: list[Any], **kwargs: Any) -> Any:
            await asyncio.sleep(0.1)
            if not answering:
                carried.append(len(operations) // 2)
                raise OSError("connection reset")
            return await original(operations, **kwargs)

        table.submit_transaction = dropped
        outcomes = await asyncio.gather(*(store.update(i, _note("n")) for i in ids), return_exceptions=True)
        answering = True
        after = await store.update("s0", _note("again"))
        await store.aclose()
        return outcomes, carried, after

    outcomes, carried, after = asyncio.run(scenario())
    assert all(isinstance(o, HistoryUnavailable) for o in outcomes)
    assert sum(carried) == len(outcomes) and max(carried) > 1  # each write sent once, some of them together
    assert after is not None and after.event_count == 2


def test_a_lone_write_is_sent_as_before(azurite: Azurite) -> None:
    """With nothing else on its way, a change of one entity is one conditional update_entity (no batch to encode),
    and a change with events one transaction of its own."""

    async def scenario() -> tuple[list[list[str]], int, SessionRecord | None]:
        store = _store(azurite)
        await _claim_all(store, ["solo"])
        sent = _spy(store)
        table: Any = store.table.client  # the SDK client every call goes through
        update_entity = table.update_entity
        updates = 0

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal updates
            updates += 1
            return await update_entity(*args, **kwargs)

        table.update_entity = counted
        await store.update("solo", lambda r: (replace(r, reason="noted"), []))
        written = await store.update("solo", _note("n", lease_minutes=5))
        await store.aclose()
        return sent, updates, written

    sent, updates, written = asyncio.run(scenario())
    assert (sent, updates) == ([["solo", "solo"]], 1)
    assert written is not None and (written.reason, written.lease_minutes, written.event_count) == ("noted", 5, 2)
