"""The History contract: every case runs on the one store over each table, the dict (``memory``) and Azure Table
Storage on Azurite (``azurite``), through one parametrized fixture (as stamina's tests/conftest.py does).

Each case uses nothing but the :class:`History` protocol and the ``history`` and ``clock`` fixtures.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from conftest import azure_history
from unit.harness import START, Clock, bump, intent, requested

from arr_core.api.views import CleanupAction, CleanupReport
from arr_core.domain.notifications import Subscription
from arr_core.domain.records import Event, SessionRecord
from arr_core.errors import InvalidToken
from arr_core.store.continuation import decode_token, encode_token
from arr_core.store.entities import partition_of, row_of
from arr_core.store.history import History, HistoryStore
from arr_core.testing.memory_table import MemoryTable


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture(params=["memory", "azurite"])
async def history(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[History]:
    """The store on a fresh table of each kind, on the test's clock."""
    if request.param == "memory":
        store = HistoryStore(MemoryTable(), clock=clock)
    else:
        azurite = request.getfixturevalue("azurite")
        store = azure_history(azurite.connection_string, f"c{uuid.uuid4().hex[:12]}", clock=clock)
    yield store
    await store.aclose()




# -- claim --------------------------------------------------------------------------------------------------------

async def test_claim_writes_the_record_once_and_returns_what_history_holds(history: History) -> None:
    """The first claim writes (event_count 1, updated_at = the event's time); a later claim with other fields
    writes nothing and gets the first record back, ETag included."""
    first, wrote = await history.claim(intent("c1", requested_by="alice", keep_alive=True), requested())
    assert wrote is True
    assert (first.status, first.event_count, first.updated_at, first.requested_by) == ("Requested", 1, START, "alice")
    assert first.etag
    again, wrote_again = await history.claim(intent("c1", START + timedelta(seconds=3), requested_by="bob"),
                                             requested(START + timedelta(seconds=3), "bob"))
    assert wrote_again is False
    assert again == first
    assert await history.get("c1") == first
    assert [e["Type"] for e in await history.events("c1")] == ["requested"]


async def test_twenty_racing_claims_of_one_id_write_one_record(history: History) -> None:
    """Claims with different creation times race: one writes, every caller gets that one record."""
    claims = await asyncio.gather(*(history.claim(intent("race", START + timedelta(seconds=i), reason=f"r{i}"),
                                                  requested(START + timedelta(seconds=i)))
                                    for i in range(20)))
    assert sum(wrote for _, wrote in claims) == 1
    [winner] = [record for record, wrote in claims if wrote]
    assert {(r.created_at, r.reason, r.etag) for r, _ in claims} == {(winner.created_at, winner.reason, winner.etag)}
    assert [r.session_id async for r in history.sessions_created(START - timedelta(days=1), START + timedelta(days=1))
            ] == ["race"]
    assert [(e["Seq"], e["Type"]) for e in await history.events("race")] == [(1, "requested")]


async def test_a_record_round_trips_as_the_table_keeps_it(history: History) -> None:
    """Unknown keepAlive (None) stays unknown, False stays False, labels and times come back as written."""
    await history.claim(intent("unknown", keep_alive=None, labels={"team": "ä", "n": "1"}), requested())
    await history.claim(intent("known", keep_alive=False), requested())
    unknown, known = await history.get("unknown"), await history.get("known")
    assert unknown is not None and known is not None
    assert (unknown.keep_alive, unknown.labels, unknown.created_at) == (None, {"team": "ä", "n": "1"}, START)
    assert unknown.created_at.tzinfo is not None
    assert known.keep_alive is False
    assert await history.get("nobody") is None


# -- update -------------------------------------------------------------------------------------------------------

async def test_each_write_changes_the_etag_and_reads_keep_it(history: History) -> None:
    record, _ = await history.claim(intent("e1"), requested())
    read = await history.get("e1")
    assert read is not None and read.etag == record.etag
    with_event = await history.update("e1", bump())
    without_event = await history.update("e1", lambda r: (replace(r, reason="quiet"), []))
    assert with_event is not None and without_event is not None
    assert len({record.etag, with_event.etag, without_event.etag}) == 3
    assert (without_event.event_count, without_event.reason, without_event.lease_minutes) == (2, "quiet", 31)
    assert (await history.get("e1")) == without_event


async def test_update_with_a_stale_etag_loses_and_decides_again_on_fresh_data(history: History,
                                                                              clock: Clock) -> None:
    """A writer holding an old read (stale ETag) loses the conditional write, re-reads, and its mutation runs
    again on the other writer's record: no update is lost, no event recorded twice."""
    await history.claim(intent("stale"), requested())
    old = await history.get("stale")
    clock.advance(1)
    await history.update("stale", lambda r: (replace(r, requested_by="b"), [Event("by-b", clock.now)]))
    seen: list[str | None] = []

    def by_a(record: SessionRecord):
        seen.append(record.requested_by)
        return replace(record, reason="a"), [Event("by-a", clock.now)]

    final = await history.update("stale", by_a, current=old)
    assert seen == [None, "b"]  # first on the stale read, then on the fresh one
    assert final is not None
    assert (final.requested_by, final.reason, final.event_count, final.updated_at) == ("b", "a", 3, clock.now)
    assert [(e["Seq"], e["Type"]) for e in await history.events("stale")] == [(1, "requested"), (2, "by-b"),
                                                                               (3, "by-a")]


async def test_concurrent_updates_all_land_with_gap_free_sequence_numbers(history: History) -> None:
    await history.claim(intent("busy", lease_minutes=0), requested())
    results = await asyncio.gather(*(history.update("busy", bump(f"bump-{i}")) for i in range(6)))
    assert all(r is not None for r in results)
    final = await history.get("busy")
    assert final is not None
    assert (final.lease_minutes, final.event_count) == (6, 7)
    events = await history.events("busy")
    assert [e["Seq"] for e in events] == list(range(1, 8))
    assert sorted(e["Type"] for e in events[1:]) == [f"bump-{i}" for i in range(6)]


async def test_update_that_changes_nothing_writes_nothing(history: History) -> None:
    record, _ = await history.claim(intent("same"), requested())
    assert await history.update("same", lambda r: None) == record
    assert await history.update("nobody", bump()) is None


async def test_events_are_shaped_like_the_tables_event_entities(history: History, clock: Clock) -> None:
    await history.claim(intent("shape"), requested())
    clock.advance(5)
    await history.update("shape", lambda r: (replace(r, status="Starting"), [
        Event("status", clock.now, from_status="Requested", to_status="Starting", actor="cleanup",
              detail={"elapsedMinutes": 0})]))
    first, second = await history.events("shape")
    assert {k: first[k] for k in ("Seq", "Type", "At", "ToStatus", "Actor", "SessionId")} == {
        "Seq": 1, "Type": "requested", "At": START, "ToStatus": "Requested", "Actor": "alice", "SessionId": "shape"}
    assert "FromStatus" not in first  # absent values are not stored
    assert json.loads(first["Detail"]) == {"reason": "contract"}
    assert (second["Seq"], second["FromStatus"], second["ToStatus"], second["At"]) == (
        2, "Requested", "Starting", START + timedelta(seconds=5))
    assert json.loads(second["Detail"]) == {"elapsedMinutes": 0}
    assert await history.events("nobody") == []


# -- queries ------------------------------------------------------------------------------------------------------

JAN_END = datetime(2025, 1, 31, 23, 59, 59, 999999, tzinfo=UTC)
FEB = datetime(2025, 2, 1, tzinfo=UTC)


async def test_sessions_created_is_a_half_open_range_oldest_first_across_months(history: History) -> None:
    for sid, at, status, told in [("feb-ended", FEB + timedelta(hours=1), "Stopped", "Stopped"),
                                  ("feb-ended-untold", FEB + timedelta(hours=2), "Stopped", "Ready"),
                                  ("jan-last", JAN_END, "Ready", None), ("feb-first", FEB, "Requested", None),
                                  ("at-end", FEB + timedelta(days=1), "Ready", None),
                                  ("before", JAN_END - timedelta(days=1), "Ready", None)]:
        await history.claim(intent(sid, at, status=status, notified_status=told), requested(at))
    start, end = JAN_END - timedelta(hours=1), FEB + timedelta(days=1)
    assert [r.session_id async for r in history.sessions_created(start, end)] == ["jan-last", "feb-first",
                                                                                  "feb-ended", "feb-ended-untold"]
    # What the cleanup reads: active sessions, and ended ones whose change is not yet announced.
    assert [r.session_id async for r in history.sessions_created(start, end, only_active=True)] == [
        "jan-last", "feb-first", "feb-ended-untold"]
    assert [r.session_id async for r in history.sessions_created(FEB, FEB)] == []


async def seven_across_a_month_boundary(history: History) -> tuple[datetime, datetime]:
    """p0..p3 in January, p4..p6 in February, a minute apart: alice's are the even ones, p4 is Premium. The window
    that holds them all."""
    for i in range(7):
        at = JAN_END - timedelta(minutes=3) + timedelta(minutes=i)
        await history.claim(intent(f"p{i}", at, requested_by="alice" if i % 2 == 0 else "bob",
                                   size="Premium" if i == 4 else "Standard"), requested(at))
    return JAN_END - timedelta(days=1), FEB + timedelta(days=1)


async def all_pages(history: History, start: datetime, end: datetime, tops: Iterator[int], *,
                    requested_by: str | None = None, size: str | None = None, statuses: set[str] | None = None,
                    order: str = "oldest") -> list[list[str]]:
    """The session ids of every page, following the tokens; ``tops`` gives each page's size."""
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        records, token = await history.history_page(start, end, requested_by=requested_by, size=size,
                                                    statuses=statuses, top=next(tops), token=token,
                                                    order=order)  # type: ignore[arg-type]
        pages.append([r.session_id for r in records])
        if token is None:
            return pages


async def test_history_pages_filter_and_continue_with_tokens_bound_to_the_query(history: History) -> None:
    start, end = await seven_across_a_month_boundary(history)
    query = {"requested_by": "alice", "size": None, "statuses": {"Requested"}}
    assert await all_pages(history, start, end, itertools.count(1), **query) == [["p0"], ["p2", "p4"], ["p6"]]

    full, last_token = await history.history_page(start, end, requested_by=None, size="Premium", statuses=None,
                                                   top=1, token=None)
    assert ([r.session_id for r in full], last_token) == (["p4"], None)  # exactly `top` left: no token

    _, token = await history.history_page(start, end, top=1, token=None, **query)
    assert token is not None
    with pytest.raises(InvalidToken):
        await history.history_page(start, end, requested_by="bob", size=None, statuses={"Requested"}, top=1,
                                   token=token)
    with pytest.raises(InvalidToken):
        await history.history_page(start, end, top=1, token=token[:-2] + ("A" if token[-2] != "A" else "B") +
                                   token[-1], **query)


async def test_a_token_is_the_stores_own_format(history: History) -> None:
    """Tokens decode with arr_core.store.continuation for the same filters, pointing at the last record returned."""
    for i in range(3):
        await history.claim(intent(f"t{i}", START + timedelta(seconds=i)), requested())
    start, end = START - timedelta(hours=1), START + timedelta(hours=1)
    records, token = await history.history_page(start, end, requested_by=None, size=None, statuses=None, top=2,
                                                token=None)
    filters = {"requestedBy": None, "size": None, "status": None, "from": start.isoformat(), "to": end.isoformat()}
    assert token is not None
    assert decode_token(token, filters) == (partition_of(records[-1]), row_of(records[-1]))
    forged = encode_token(partition_of(records[0]), row_of(records[0]), filters)
    rest, _ = await history.history_page(start, end, requested_by=None, size=None, statuses=None, top=5,
                                         token=forged)
    assert [r.session_id for r in rest] == ["t1", "t2"]


async def test_newest_first_pages_go_back_from_the_newest_across_a_month_boundary(history: History) -> None:
    """Before, there was no order to ask for: a caller who wanted today's session read every page to the last."""
    start, end = await seven_across_a_month_boundary(history)
    newest = {"order": "newest"}
    assert await all_pages(history, start, end, itertools.repeat(2), **newest) == [
        ["p6", "p5"], ["p4", "p3"], ["p2", "p1"], ["p0"]]  # the second page crosses into January
    assert await all_pages(history, start, end, itertools.repeat(3), **newest) == [
        ["p6", "p5", "p4"], ["p3", "p2", "p1"], ["p0"]]  # a page that ends with February's first
    assert await all_pages(history, start, end, itertools.count(1), requested_by="alice", statuses={"Requested"},
                           **newest) == [["p6"], ["p4", "p2"], ["p0"]]
    assert await all_pages(history, start, end, itertools.repeat(1), size="Premium", **newest) == [["p4"]]
    assert await all_pages(history, start, end, itertools.repeat(7), **newest) == [
        ["p6", "p5", "p4", "p3", "p2", "p1", "p0"]]  # exactly `top`: no token
    assert await all_pages(history, start, end, itertools.repeat(1), requested_by="carol", **newest) == [[]]


async def test_newest_first_keeps_to_the_window(history: History) -> None:
    """``from`` inclusive, ``to`` exclusive, as oldest first: the newest session is the last one before ``to``."""
    for sid, at in [("before", FEB - timedelta(microseconds=1)), ("first", FEB), ("mid", FEB + timedelta(hours=1)),
                    ("last", FEB + timedelta(days=1) - timedelta(microseconds=1)), ("at-end", FEB + timedelta(days=1))]:
        await history.claim(intent(sid, at), requested(at))
    start, end = FEB, FEB + timedelta(days=1)
    assert await all_pages(history, start, end, itertools.repeat(2), order="newest") == [["last", "mid"], ["first"]]
    assert await all_pages(history, start, end, itertools.repeat(2)) == [["first", "mid"], ["last"]]


async def test_a_token_is_bound_to_its_order(history: History) -> None:
    """A newest-first token names the last (oldest) session of its page; given with the other order, either way,
    it is refused like another query's."""
    start, end = await seven_across_a_month_boundary(history)
    query: dict[str, Any] = {"requested_by": None, "size": None, "statuses": None, "top": 2}
    records, newest_token = await history.history_page(start, end, token=None, order="newest", **query)
    _, oldest_token = await history.history_page(start, end, token=None, **query)
    assert newest_token is not None and oldest_token is not None
    filters = {"requestedBy": None, "size": None, "status": None, "from": start.isoformat(), "to": end.isoformat()}
    assert decode_token(newest_token, filters | {"order": "newest"}) == (partition_of(records[-1]), row_of(records[-1]))
    with pytest.raises(InvalidToken, match="another query"):
        await history.history_page(start, end, token=newest_token, **query)
    with pytest.raises(InvalidToken, match="another query"):
        await history.history_page(start, end, token=oldest_token, order="newest", **query)
    older, _ = await history.history_page(start, end, token=newest_token, order="newest", **query)
    assert [r.session_id for r in older] == ["p4", "p3"]


# -- idempotency keys ---------------------------------------------------------------------------------------------

async def test_a_key_binds_for_24_hours_then_a_new_claim_replaces_it(history: History, clock: Clock) -> None:
    first = await history.claim_key("key-1", "fp-a", "s-a")
    assert (first.session_id, first.fingerprint, first.created_at, first.owned) == ("s-a", "fp-a", START, True)
    clock.advance(24 * 3600 - 1)
    bound = await history.claim_key("key-1", "fp-b", "s-b")
    assert (bound.session_id, bound.fingerprint, bound.created_at, bound.owned) == ("s-a", "fp-a", START, False)
    clock.advance(1)
    replaced = await history.claim_key("key-1", "fp-b", "s-b")
    assert (replaced.session_id, replaced.fingerprint, replaced.created_at, replaced.owned) == (
        "s-b", "fp-b", clock.now, True)
    assert (await history.claim_key("key-1", "fp-c", "s-c")).session_id == "s-b"


async def test_racing_claims_of_one_key_have_one_owner(history: History) -> None:
    claims = await asyncio.gather(*(history.claim_key("hot", f"fp-{i}", f"s-{i}") for i in range(20)))
    owners = [c for c in claims if c.owned]
    assert len(owners) == 1
    assert {(c.session_id, c.fingerprint) for c in claims} == {(owners[0].session_id, owners[0].fingerprint)}


async def test_racing_claims_of_an_expired_key_have_one_new_owner(history: History, clock: Clock) -> None:
    await history.claim_key("old", "fp-old", "s-old")
    clock.advance(25 * 3600)
    claims = await asyncio.gather(*(history.claim_key("old", f"fp-{i}", f"s-{i}") for i in range(10)))
    owners = [c for c in claims if c.owned]
    assert len(owners) == 1 and owners[0].session_id != "s-old"
    assert {c.session_id for c in claims} == {owners[0].session_id}


# -- cleanup bookkeeping ------------------------------------------------------------------------------------------

async def test_a_lease_holds_until_it_expires_or_its_holder_releases_it(history: History, clock: Clock) -> None:
    assert await history.take_lease("cleanup", "a", 60) is True
    assert await history.take_lease("cleanup", "b", 60) is False
    assert await history.take_lease("cleanup", "a", 60) is True  # its holder may take it again
    await history.release_lease("cleanup", "b")  # not b's to release
    assert await history.take_lease("cleanup", "b", 60) is False
    clock.advance(60)
    assert await history.take_lease("cleanup", "b", 60) is True  # a's ran out
    await history.release_lease("cleanup", "b")
    assert await history.take_lease("cleanup", "a", 60) is True
    assert await history.take_lease("other-job", "b", 60) is True


async def test_racing_holders_one_gets_the_lease(history: History, clock: Clock) -> None:
    await history.take_lease("cleanup", "old", 10)
    clock.advance(11)
    taken = await asyncio.gather(*(history.take_lease("cleanup", f"h{i}", 60) for i in range(10)))
    assert sum(taken) == 1


async def test_a_night_is_marked_once_and_only_asked_nights_are_answered(history: History) -> None:
    night, before = date(2025, 3, 10), date(2025, 3, 9)
    assert await history.nights_done([night, before]) == set()
    await history.mark_night(night, START)
    await history.mark_night(night, START + timedelta(minutes=5))
    assert await history.nights_done([night, before]) == {night}
    assert await history.nights_done([before]) == set()


async def test_subscriptions_are_added_listed_and_removed_once(history: History) -> None:
    one = Subscription("1" * 32, "https://hooks.example/one", START, frozenset({"Ready"}), None, "alice")
    two = Subscription("2" * 32, "https://hooks.example/two", START + timedelta(seconds=1))
    await history.add_subscription(one)
    await history.add_subscription(two)
    assert sorted(await history.subscriptions(), key=lambda s: s.id) == [one, two]
    assert await history.remove_subscription(one.id) == one
    assert await history.remove_subscription(one.id) is None  # a repeated DELETE
    assert await history.subscriptions() == [two]


async def test_runs_are_listed_newest_first_before_a_time(history: History) -> None:
    def report(minutes: int, stopped: list[str]) -> CleanupReport:
        return CleanupReport(ran_at=START + timedelta(minutes=minutes), dry_run=False, mode="lease",
                             stopped=[CleanupAction(id=i, reason="lease") for i in stopped], kept=[], reconciled=[],
                             errors=[])

    for minutes, stopped in ((0, ["a"]), (5, []), (10, ["b", "c"]), (60 * 24 * 40, ["d"])):  # the last: next month
        await history.record_run(report(minutes, stopped))
    later = START + timedelta(days=60)
    runs = await history.runs(later, 10)
    assert [(r.ran_at - START, [a.id for a in r.stopped]) for r in runs] == [
        (timedelta(days=40), ["d"]), (timedelta(minutes=10), ["b", "c"]), (timedelta(minutes=5), []),
        (timedelta(0), ["a"])]
    assert [r.ran_at for r in await history.runs(START + timedelta(minutes=10), 2)] == [
        START + timedelta(minutes=5), START]  # strictly before; the page's last is the next page's ``before``


async def test_ping_answers_and_a_recorded_run_is_listed_with_what_it_did(history: History) -> None:
    await history.ping()
    report = CleanupReport(ran_at=START, dry_run=False, mode="nightly", stopped=[CleanupAction(id="n1", reason="night")],
                           kept=[CleanupAction(id="k", reason="keepAlive")] * 3, reconciled=[],
                           errors=[CleanupAction(id="e1", reason="ARR answered 500")],
                           deferred=[CleanupAction(id="d", reason="out of time")])
    await history.record_run(report)
    [run] = await history.runs(START + timedelta(seconds=1), 5)
    assert (run.ran_at, run.mode, run.kept, run.reconciled, run.deferred) == (START, "nightly", 3, 0, 1)
    assert [(a.id, a.reason) for a in run.stopped + run.errors] == [("n1", "night"), ("e1", "ARR answered 500")]
