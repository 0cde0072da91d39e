"""MemoryHistory: the store over a dict table, and the hooks it adds for tests (calls, faults by method, a lost
table, the reports). The store's rules themselves are the contract (tests/integration/test_history_contract.py,
on the dict and on Azurite) and tests/unit/test_history_store.py (group commit, re-creation, faults).
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from arr_core.api.views import CleanupReport
from arr_core.errors import HistoryConflict, HistoryUnavailable
from arr_core.store.history import History
from arr_core.testing.memory_history import MemoryHistory

from .harness import START, Clock, bump, intent, requested


@pytest.fixture
def clock() -> Clock:
    return Clock(START)




def test_memory_history_is_a_history() -> None:
    assert isinstance(MemoryHistory(), History)


async def test_since_is_none_unless_given(clock: Clock) -> None:
    assert await MemoryHistory(clock=clock).since() is None
    assert await MemoryHistory(clock=clock, since=START).since() == START


async def test_record_run_keeps_the_reports_in_order() -> None:
    history = MemoryHistory()
    reports = [CleanupReport(ran_at=START + timedelta(minutes=i), dry_run=False, mode="lease", stopped=[], kept=[],
                             reconciled=[], errors=[]) for i in range(2)]
    for report in reports:
        await history.record_run(report)
    assert history.reports == reports


async def test_fail_next_raises_for_n_calls_then_answers_again(clock: Clock) -> None:
    history = MemoryHistory(clock=clock)
    history.fail_next(2)
    for _ in range(2):
        with pytest.raises(HistoryUnavailable):
            await history.claim(intent("f1"), requested())
    record, wrote = await history.claim(intent("f1"), requested())
    assert wrote is True and record.event_count == 1  # the failed calls wrote nothing
    assert history.calls["claim"] == 3


async def test_fail_next_can_name_methods_and_the_error() -> None:
    history = MemoryHistory()
    await history.claim(intent("f2"), requested())
    history.fail_next(1, HistoryConflict("busy"), only={"update"})
    assert await history.get("f2") is not None  # not named: answers
    with pytest.raises(HistoryConflict, match="busy"):
        await history.update("f2", bump())
    assert (await history.update("f2", bump())) is not None


async def test_fail_next_negative_fails_until_healed() -> None:
    history = MemoryHistory()
    history.fail_next(-1, only="sessions_created")
    for _ in range(3):
        with pytest.raises(HistoryUnavailable):
            [r async for r in history.sessions_created(START, START + timedelta(days=1))]
    history.heal()
    assert [r async for r in history.sessions_created(START, START + timedelta(days=1))] == []


async def test_lose_table_forgets_everything_and_dates_history_from_now(clock: Clock) -> None:
    history = MemoryHistory(clock=clock)
    await history.claim(intent("gone"), requested())
    await history.claim_key("k", "fp", "gone")
    await history.take_lease("cleanup", "a", 600)
    await history.mark_night(date(2025, 3, 10), START)
    clock.advance(30)
    history.lose_table()
    assert await history.get("gone") is None
    assert await history.since() == clock.now
    assert await history.nights_done([date(2025, 3, 10)]) == set()
    assert await history.take_lease("cleanup", "b", 600) is True
    assert (await history.claim_key("k", "fp2", "new")).owned is True
    assert (await history.claim(intent("gone", clock.now), requested(clock.now)))[1] is True


async def test_a_string_longer_than_the_table_allows_is_refused_like_the_table_does() -> None:
    history = MemoryHistory()
    with pytest.raises(HistoryUnavailable, match="PropertyValueTooLarge"):
        await history.claim(intent("big", reason="x" * 40_000), requested())
    assert await history.get("big") is None  # the index went in alone, as the store's first insert would
