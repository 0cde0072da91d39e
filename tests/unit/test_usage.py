"""Billed minutes and estimated cost from history records: grouping, the local day, rates that are not configured."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from arr_core.api.usage import group_key, usage_report, usage_row
from arr_core.api.views import UsageRow
from arr_core.domain.records import SessionRecord

AMS = ZoneInfo("Europe/Amsterdam")
RATES = {"Standard": 3.0, "Premium": 12.0}


def record(session_id: str, size: str | None = "Standard", minutes: int | None = 60, by: str | None = "flow",
           created: datetime = datetime(2026, 6, 1, 12, tzinfo=UTC)) -> SessionRecord:
    return SessionRecord(session_id=session_id, created_at=created, size=size, elapsed_minutes=minutes,
                         requested_by=by)


@pytest.mark.parametrize(("group_by", "expected"), [("size", "Premium"), ("requestedBy", "flow"),
                                                    ("day", "2026-06-02")])
def test_group_key_is_the_size_the_requester_or_the_local_day(group_by: str, expected: str) -> None:
    """23:30 UTC on 1 June is 01:30 on 2 June in Amsterdam (summer time): it counts on the 2nd there."""
    late = record("a", size="Premium", created=datetime(2026, 6, 1, 23, 30, tzinfo=UTC))
    assert group_key(late, group_by, AMS) == expected  # type: ignore[arg-type]
    assert group_key(late, "day", ZoneInfo("UTC")) == "2026-06-01"


def test_a_record_without_size_or_requester_counts_as_unknown() -> None:
    bare = record("a", size=None, by=None)
    assert (group_key(bare, "size", AMS), group_key(bare, "requestedBy", AMS)) == ("unknown", "unknown")


def test_usage_row_sums_minutes_and_prices_them_per_hour() -> None:
    """90 Standard minutes at 3/h and 20 Premium minutes at 12/h: 4.5 + 4.0; a None count bills nothing."""
    row = usage_row("k", [record("a", minutes=90), record("b", "Premium", minutes=20), record("c", minutes=None)],
                    RATES)
    assert row == UsageRow(key="k", sessions=3, billed_minutes=110, estimated_cost=8.5)


def test_the_cost_is_rounded_to_four_decimals() -> None:
    """7 minutes at 1/h is 0.11666…: shown as 0.1167."""
    assert usage_row("k", [record("a", minutes=7)], {"Standard": 1.0}).estimated_cost == 0.1167


def test_an_unpriced_size_with_billed_minutes_makes_the_cost_unknown() -> None:
    """We do not invent prices: one billed session of a size without a rate makes the whole row's cost null."""
    row = usage_row("k", [record("a"), record("b", "Premium", minutes=1)], {"Standard": 3.0})
    assert (row.billed_minutes, row.estimated_cost) == (61, None)
    unsized = usage_row("k", [record("a"), record("b", size=None)], RATES)
    assert unsized.estimated_cost is None
    explicit_none = usage_row("k", [record("a", "Premium")], {"Premium": None})
    assert explicit_none.estimated_cost is None


def test_an_unpriced_size_makes_the_cost_unknown_whatever_its_minutes() -> None:
    """A session that failed before Ready billed 0 minutes, but its size has no rate: the row's cost is null all the
    same, so that whether a cost is known never depends on how far a session got."""
    row = usage_row("k", [record("a", minutes=30), record("b", "Premium", minutes=0)], {"Standard": 2.0})
    assert row == UsageRow(key="k", sessions=2, billed_minutes=30, estimated_cost=None)
    unsized = usage_row("k", [record("a", minutes=30), record("c", None, minutes=None)], {"Standard": 2.0})
    assert unsized.estimated_cost is None


def test_with_no_rate_configured_every_cost_is_null() -> None:
    """The docs' promise (README, docs/operations.md): no rate set, no cost shown; rows of 0 billed minutes and empty
    ones included."""
    no_rates = {"Standard": None, "Premium": None}
    assert usage_row("k", [record("a", minutes=0)], no_rates).estimated_cost is None
    assert usage_row("k", [record("a", minutes=60)], no_rates).estimated_cost is None
    assert usage_row("k", [], no_rates).estimated_cost is None
    assert usage_row("k", [], {}).estimated_cost is None


def test_a_zero_rate_and_no_records_cost_zero() -> None:
    assert usage_row("k", [record("a")], {"Standard": 0.0}).estimated_cost == 0.0
    assert usage_row("k", [record("a", minutes=0)], {"Standard": 2.0}).estimated_cost == 0.0
    assert usage_row("k", [], RATES) == UsageRow(key="k", sessions=0, billed_minutes=0, estimated_cost=0.0)


def test_the_report_has_sorted_rows_and_a_total_over_all() -> None:
    records = [record("a", "Standard", 30, by="zoe"), record("b", "Premium", 15, by="amy"),
               record("c", "Standard", 90, by="zoe")]
    start, end = datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)
    report = usage_report(iter(records), start, end, "requestedBy", rates=RATES, currency="EUR", time_zone=AMS)
    assert [(r.key, r.sessions, r.billed_minutes, r.estimated_cost) for r in report.rows] == [
        ("amy", 1, 15, 3.0), ("zoe", 2, 120, 6.0)]
    assert report.total == UsageRow(key="total", sessions=3, billed_minutes=135, estimated_cost=9.0)
    assert (report.from_, report.to, report.currency) == (start, end, "EUR")
    assert report.model_dump(by_alias=True, mode="json")["from"] == "2026-06-01T00:00:00Z"


def test_a_report_by_day_uses_the_local_day_and_a_null_cost_row_does_not_hide_the_others() -> None:
    records = [record("a", created=datetime(2026, 6, 1, 21, 59, tzinfo=UTC)),  # 23:59 in Amsterdam
               record("b", created=datetime(2026, 6, 1, 22, 0, tzinfo=UTC), size="Premium"),  # 00:00 on the 2nd
               record("c", created=datetime(2026, 6, 2, 10, tzinfo=UTC))]
    report = usage_report(records, datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 3, tzinfo=UTC), "day",
                          rates={"Standard": 3.0}, currency="USD", time_zone=AMS)
    assert [(r.key, r.sessions, r.estimated_cost) for r in report.rows] == [("2026-06-01", 1, 3.0),
                                                                          ("2026-06-02", 2, None)]
    assert (report.total.sessions, report.total.billed_minutes, report.total.estimated_cost) == (3, 180, None)


def test_an_empty_report_has_no_rows_and_a_zero_total() -> None:
    """Zero minutes; the cost is 0.0 when rates are configured and null when none is."""
    window = datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)
    report = usage_report([], *window, "size", rates=RATES, currency="USD", time_zone=AMS)
    assert (report.rows, report.total) == ([], UsageRow(key="total", sessions=0, billed_minutes=0,
                                                        estimated_cost=0.0))
    unpriced = usage_report([], *window, "size", rates={"Standard": None, "Premium": None}, currency="USD",
                            time_zone=AMS)
    assert unpriced.total == UsageRow(key="total", sessions=0, billed_minutes=0, estimated_cost=None)
