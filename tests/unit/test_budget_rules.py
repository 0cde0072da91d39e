"""The budget's pure rules: the month in its time zone, minutes by the started minute inside the month (a session
across the month's start, a running one), thresholds crossed and the strongest action, and a bad ARR_BUDGET."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from arr_core.domain.budget import BudgetAction, crossed, minutes_in, parse_budget, spend, strongest
from arr_core.domain.records import SessionRecord

BUDGET = {"amount": 100, "timeZone": "Europe/Berlin",
          "thresholds": [{"percent": 100, "action": "stop-all"}, {"percent": 50, "action": "notify"},
                         {"percent": 80, "action": "refuse-starts"}]}
RATES = {"Standard": 3.0, "Premium": 12.0}


def session(sid: str, ready: datetime, ended: datetime | None, size: str = "Premium") -> SessionRecord:
    return SessionRecord(session_id=sid, created_at=ready - timedelta(minutes=3), status="Stopped" if ended else
                         "Ready", size=size, ready_at=ready, ended_at=ended)


def test_the_month_is_local_and_its_start_is_a_local_midnight() -> None:
    budget = parse_budget(json.dumps(BUDGET))
    first, start, end = budget.month(datetime(2026, 3, 31, 22, 30, tzinfo=UTC))  # 00:30 on April 1 in Berlin
    assert first.isoformat() == "2026-04-01"
    assert start == datetime(2026, 3, 31, 22, 0, tzinfo=UTC) and end == datetime(2026, 4, 30, 22, 0, tzinfo=UTC)
    assert [t.percent for t in budget.thresholds] == [50, 80, 100]


def test_minutes_inside_the_month_by_the_started_minute() -> None:
    start, end = datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)
    across = session("a", start - timedelta(minutes=30), start + timedelta(minutes=20, seconds=1))
    assert minutes_in(across, start, end, end) == 21  # only the part inside, the started minute counts
    running = session("b", start + timedelta(hours=1), None)
    assert minutes_in(running, start, end, start + timedelta(hours=2, seconds=30)) == 61
    never_ready = SessionRecord(session_id="c", created_at=start, status="Error", size="Premium")
    assert minutes_in(never_ready, start, end, end) == 0


def test_spend_thresholds_and_the_strongest_action() -> None:
    budget = parse_budget(json.dumps(BUDGET))
    now = datetime(2026, 4, 10, 12, 0, tzinfo=UTC)
    records = [session("p1", now - timedelta(hours=5), now - timedelta(minutes=5)),  # 295 min Premium: 59.0
               session("s1", now - timedelta(hours=2), None, "Standard"),  # running 120 min Standard: 6.0
               session("x1", now - timedelta(hours=1), None, "Unknown")]  # no rate: said, not priced
    month = spend(budget, records, now, RATES)
    assert (month.amount, month.unpriced_minutes) == (65.0, 60)
    hit = crossed(budget, month)
    assert [t.percent for t in hit] == [50]
    assert strongest(hit) is not None and strongest(hit).action is BudgetAction.NOTIFY  # type: ignore[union-attr]
    later = spend(budget, records, now + timedelta(hours=3), RATES)  # the Standard one ran on: 6.0 + 9.0
    assert later.amount == 74.0 and strongest(crossed(budget, later)).action is BudgetAction.NOTIFY  # type: ignore[union-attr]
    more = [*records, session("p2", now - timedelta(hours=2), now)]  # 120 min Premium: +24.0
    assert strongest(crossed(budget, spend(budget, more, now, RATES))).action is BudgetAction.REFUSE_STARTS  # type: ignore[union-attr]
    assert strongest([]) is None


@pytest.mark.parametrize(("text", "message"), [
    ("[]", "budget"), ('{"amount": 0, "thresholds": [{"percent": 50, "action": "notify"}]}', "amount"),
    ('{"amount": 10, "thresholds": []}', "thresholds"),
    (json.dumps({**BUDGET, "thresholds": [{"percent": 50, "action": "notify"}] * 2}), "distinct"),
    (json.dumps({**BUDGET, "thresholds": [{"percent": p, "action": "notify"} for p in range(1, 7)]}), "thresholds"),
    (json.dumps({**BUDGET, "timeZone": "Nowhere/City"}), "IANA"), ("{", "JSON"),
    (json.dumps({**BUDGET, "thresholds": [{"percent": 50, "action": "shout"}]}), "action"),
])
def test_a_malformed_budget_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_budget(text)
