"""Session history as data: table keys, month partitions, the entity forms of records, events and the id index."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from arr_core.domain.records import ACTIVE_STATUSES, RECORD_STATUSES, REQUESTED, Event, SessionRecord, idempotency_row
from arr_core.store.entities import (
    created_at_of,
    event_to_entity,
    index_entity,
    months_between,
    partition_for,
    partition_of,
    record_from_entity,
    record_to_entity,
    row_for,
    row_of,
)
from arr_core.store.table import Entity

AMS = ZoneInfo("Europe/Amsterdam")
CREATED = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


def record(**changes: object) -> SessionRecord:
    base = SessionRecord(session_id="s-1", created_at=CREATED, size="Standard", lease_minutes=60)
    return replace(base, **changes)


def test_statuses_are_requested_then_arrs_own_and_three_of_them_are_active() -> None:
    assert RECORD_STATUSES == ("Requested", "Starting", "Ready", "Stopped", "Expired", "Error")
    assert ACTIVE_STATUSES == ("Requested", "Starting", "Ready")
    assert [record(status=s).is_active for s in RECORD_STATUSES] == [True, True, True, False, False, False]
    assert SessionRecord(session_id="x", created_at=CREATED).status == REQUESTED


def test_keys_are_the_utc_month_and_the_utc_creation_time_then_the_id() -> None:
    """A session created at 00:30 on 1 March in Amsterdam was created in February in UTC: that is its partition."""
    local = datetime(2026, 3, 1, 0, 30, tzinfo=AMS)
    assert partition_for(local) == "s-202602"
    assert row_for(local, "abc") == "2026-02-28T23:30:00.000000+00:00~abc"
    assert (partition_of(record()), row_of(record())) == ("s-202603",
                                                        "2026-03-14T09:26:53.589793+00:00~s-1")
    # Whole seconds keep their six fraction digits, so rows sort as text in time order.
    assert row_for(datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC), "a") < row_of(record(session_id="a"))


@pytest.mark.parametrize(("start", "end", "months"), [
    (datetime(2026, 1, 31, 23, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), ["s-202601", "s-202602", "s-202603"]),
    (datetime(2026, 1, 31, 23, tzinfo=UTC), datetime(2026, 4, 1, 0, 0, 1, tzinfo=UTC),
     ["s-202601", "s-202602", "s-202603", "s-202604"]),
    (datetime(2025, 11, 15, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC), ["s-202511", "s-202512", "s-202601"]),
    (datetime(2026, 3, 1, 0, 30, tzinfo=AMS), datetime(2026, 3, 2, tzinfo=AMS), ["s-202602", "s-202603"]),
    (datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC), ["s-202605"]),
    (datetime(2026, 5, 10, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC), []),
])
def test_months_between_covers_every_month_that_can_hold_a_session_of_the_range(
        start: datetime, end: datetime, months: list[str]) -> None:
    """End is exclusive at month boundaries; a start in another zone counts in its UTC month; no month is skipped
    when the range starts on the 31st; a year boundary rolls over."""
    assert months_between(start, end) == months


def test_reached_arr_is_any_sign_that_arr_knew_the_session() -> None:
    assert not record().reached_arr
    assert not record(elapsed_minutes=0).reached_arr  # ARR's count, but nothing billed: not proof
    assert record(arr_created_at=CREATED).reached_arr
    assert record(ready_at=CREATED).reached_arr
    assert record(elapsed_minutes=1).reached_arr


def test_settings_match_compares_size_and_lease() -> None:
    assert record().settings_match("Standard", 60)
    assert not record().settings_match("Premium", 60)
    assert not record().settings_match("Standard", 61)
    assert not record(size=None, lease_minutes=None).settings_match("Standard", 60)


def test_a_record_entity_has_its_keys_and_no_empty_property() -> None:
    """None is not stored (Table Storage has no null), Labels is compact sorted JSON, Active mirrors the status."""
    entity = record(requested_by="flow", labels={"z": "1", "a": "é"}, keep_alive=True, event_count=3)
    assert record_to_entity(entity) == {
        "PartitionKey": "s-202603", "RowKey": "2026-03-14T09:26:53.589793+00:00~s-1", "Kind": "session",
        "Labels": '{"a":"é","z":"1"}', "Active": True, "SessionId": "s-1", "Status": "Requested",
        "Size": "Standard", "LeaseMinutes": 60, "RequestedBy": "flow", "KeepAlive": True, "CreatedAt": CREATED,
        "EventCount": 3,
    }
    assert record_to_entity(record(status="Stopped", keep_alive=None, notified_status="Stopped"))["Active"] is False


def test_the_cleanup_watches_an_active_record_or_an_ended_one_whose_change_is_unannounced() -> None:
    """The table's Active flag: an ended session stays in the cleanup's reading until its change was announced (a
    crash or a queue outage may have come between the two)."""
    cases = {("Requested", None): True, ("Starting", "Starting"): True, ("Ready", "Starting"): True,
             ("Stopped", "Ready"): True, ("Stopped", None): True, ("Stopped", "Stopped"): False,
             ("Error", "Error"): False, ("Expired", "Ready"): True}
    assert {key: record_to_entity(record(status=key[0], notified_status=key[1]))["Active"] for key in cases} == cases
    assert not record(status="Requested").unannounced and record(status="Stopped", notified_status="Ready").unannounced
    assert "KeepAlive" not in record_to_entity(record(keep_alive=None))


def test_a_record_survives_the_round_trip_with_every_field() -> None:
    full = record(status="Error", requested_by="flow", reason="review", labels={"team": "viz"}, keep_alive=False,
                  arr_created_at=CREATED + timedelta(seconds=1), ready_at=CREATED + timedelta(minutes=3),
                  ended_at=CREATED + timedelta(minutes=9), elapsed_minutes=6, error_code="NoCapacity",
                  error_message="none left", stop_reason="lease", stopped_by="cleanup", idempotency_key="k",
                  event_count=4, updated_at=CREATED + timedelta(minutes=10))
    assert record_from_entity(record_to_entity(full)) == full


def test_read_times_are_aware_utc_and_keep_their_microseconds() -> None:
    """A time read back in another zone is turned to UTC; the row key, built from it, stays the same."""
    entity = record_to_entity(record())
    entity["CreatedAt"] = CREATED.astimezone(AMS)
    entity["EndedAt"] = datetime(2026, 3, 14, 12, 0, 0, 999999, tzinfo=ZoneInfo("America/New_York"))
    read = record_from_entity(entity)
    assert read.created_at.tzinfo is UTC and read.ended_at is not None and read.ended_at.tzinfo is UTC
    assert read.ended_at == datetime(2026, 3, 14, 16, 0, 0, 999999, tzinfo=UTC)
    assert row_of(read) == entity["RowKey"]
    for micro in range(0, 1_000_000, 7919):  # no float rounding of the timestamp moves a microsecond
        created = CREATED.replace(microsecond=micro)
        assert record_from_entity(record_to_entity(record(created_at=created))).created_at == created


def test_a_minimal_entity_reads_with_unknown_keep_alive_and_no_labels() -> None:
    """An entity that stored no KeepAlive (an adopted session) and no Labels reads as unknown and empty."""
    read = record_from_entity({"SessionId": "s-2", "CreatedAt": CREATED, "Status": "Ready"})
    assert (read.session_id, read.status, read.keep_alive, read.labels, read.etag, read.event_count) == (
        "s-2", "Ready", None, {}, None, 0)


def test_the_etag_comes_from_the_entity_as_read() -> None:
    """The table port's Entity carries the ETag a conditional write must match (the Azure adapter takes it from
    the SDK's metadata)."""
    read = record_from_entity(Entity(record_to_entity(record()), etag='W/"datetime\'2026\'"'))
    assert read.etag == 'W/"datetime\'2026\'"'
    assert record_from_entity(record_to_entity(record())).etag is None  # a plain dict has no ETag


def test_an_event_entity_sorts_after_its_record_in_sequence_order() -> None:
    event = Event(type="stopped", at=CREATED, from_status="Ready", to_status="Stopped",
                  detail={"reason": "lease", "by": "cleanup"})
    entity = event_to_entity(record(), 7, event)
    assert entity == {
        "PartitionKey": "s-202603", "RowKey": "2026-03-14T09:26:53.589793+00:00~s-1~e00007", "Kind": "event",
        "SessionId": "s-1", "Seq": 7, "Type": "stopped", "At": CREATED, "FromStatus": "Ready",
        "ToStatus": "Stopped", "Detail": '{"by":"cleanup","reason":"lease"}',
    }
    rows = [event_to_entity(record(), seq, event)["RowKey"] for seq in (10, 9, 100, 1)]
    assert sorted(rows) == [event_to_entity(record(), seq, event)["RowKey"] for seq in (1, 9, 10, 100)]
    assert all(row > row_of(record()) for row in rows)
    bare = event_to_entity(record(), 1, Event(type="requested", at=CREATED))
    assert ("FromStatus" in bare, "ToStatus" in bare, "Actor" in bare, bare["Detail"]) == (False, False, False, "{}")


def test_detail_json_is_compact_and_turns_unknown_types_to_text() -> None:
    """Datetimes and other non-JSON values in a detail are written as their str(), never an exception."""
    entity = event_to_entity(record(), 1, Event(type="x", at=CREATED, detail={"at": CREATED, "n": 1.5}))
    assert entity["Detail"] == '{"at":"2026-03-14 09:26:53.589793+00:00","n":1.5}'
    assert json.loads(entity["Detail"])["n"] == 1.5


def test_the_index_row_fixes_where_the_record_lives_and_when_it_was_created() -> None:
    index = index_entity(record())
    assert index == {"PartitionKey": "id", "RowKey": "s-1", "RecordPartition": "s-202603",
                     "RecordRow": "2026-03-14T09:26:53.589793+00:00~s-1", "CreatedAt": CREATED}
    assert created_at_of(index) == CREATED
    assert created_at_of({**index, "CreatedAt": CREATED.astimezone(AMS)}).tzinfo is UTC
    older = {k: v for k, v in index.items() if k != "CreatedAt"}  # rows written before CreatedAt was stored
    assert created_at_of(older) == CREATED
    assert created_at_of({**index, "CreatedAt": None}) == CREATED


def test_idempotency_row_is_the_sha256_of_the_key() -> None:
    """The key itself may hold characters a RowKey may not (/, \\, #, ?): its digest never does."""
    assert idempotency_row("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert idempotency_row("a/b#c?") != idempotency_row("a/b#c")
    assert len(idempotency_row("é" * 1000)) == 64


def test_a_naive_time_from_the_table_is_utc_not_the_machines_local_time() -> None:
    import os
    import time as clock
    from datetime import datetime as dt

    from arr_core.store.entities import aware

    previous = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kolkata"  # +05:30: a local reading would move the time
    clock.tzset()
    try:
        assert aware(dt(2026, 11, 27, 12, 0)) == dt(2026, 11, 27, 12, 0, tzinfo=UTC)
    finally:
        if previous is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = previous
        clock.tzset()
