"""Pure rules of a session's life that keep history whole across crashes: no network, no table."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from arr_core.api.views import StartSessionRequest
from arr_core.arr.models import RenderingSession
from arr_core.domain.lifecycle import (
    REDRIVE_AFTER,
    START_FINGERPRINT_FIELDS,
    adopted_record,
    fingerprint,
    never_ready,
    observe,
    reopen,
    request_stop,
    restore,
    resumable,
    stalled_start,
    start_fingerprint,
    vanished,
)
from arr_core.domain.records import SessionRecord
from arr_core.store.entities import record_from_entity, record_to_entity

NOW = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)


def arr(status: str = "Ready", created: datetime | None = None, elapsed: int = 7) -> RenderingSession:
    return RenderingSession.model_validate({
        "id": "s", "status": status, "size": "Standard", "maxLeaseTimeMinutes": 60, "elapsedTimeMinutes": elapsed,
        "creationTime": (created or NOW - timedelta(minutes=10)).isoformat()})


def intent(**changes: object) -> SessionRecord:
    base = SessionRecord(session_id="s", created_at=NOW - timedelta(minutes=10), size="Standard", lease_minutes=60,
                         requested_by="flow", reason="review", keep_alive=True)
    return replace(base, **changes)


def test_a_requested_record_is_driven_again_only_after_its_owner_had_time() -> None:
    """Within REDRIVE_AFTER of its last write the start is in progress; after it, it was cut short."""
    fresh = intent(updated_at=NOW - REDRIVE_AFTER + timedelta(seconds=1))
    assert not stalled_start(fresh, NOW)
    assert stalled_start(replace(fresh, updated_at=NOW - REDRIVE_AFTER), NOW)
    assert not stalled_start(intent(status="Ready", updated_at=NOW - timedelta(hours=1)), NOW)


def test_a_start_that_never_reached_arr_can_be_reopened_but_not_one_that_did() -> None:
    """Closed as 'start not completed': a retry takes it up (status back to Requested, error cleared, one event).
    Ended after ARR knew it (an Error from ARR, a Stopped session): final."""
    closed = vanished(intent(), NOW)
    assert closed is not None
    record, [event] = closed
    assert (record.status, record.error_code, event.type) == ("Error", "StartNotCompleted", "start-failed")
    assert resumable(record)
    reopened, [retried] = reopen(record, NOW)
    assert (reopened.status, reopened.error_code, reopened.ended_at, retried.type) == ("Requested", None, None,
                                                                                       "retried")
    failed_at_arr = intent(status="Error", arr_created_at=NOW, error_code="NoCapacity")
    assert not resumable(failed_at_arr) and reopen(failed_at_arr, NOW) is None
    assert not resumable(intent(status="Stopped", ready_at=NOW))


def test_a_stop_reason_recorded_before_a_crash_is_used_when_the_stop_is_seen() -> None:
    """request_stop notes reason and actor first; a later observation of Stopped (by anyone) closes the record
    with that reason and a 'stopped' event in that actor's name."""
    asked, noted = request_stop(intent(status="Ready"), "demo over", "ops", NOW)
    assert (asked.stop_reason, asked.stopped_by, noted) == ("demo over", "ops", [])  # one entity, no batch
    assert request_stop(asked, "demo over", "ops", NOW) is None  # nothing new: no second write
    seen, events = observe(asked, arr("Stopped"), NOW, actor="cleanup")
    stopped = [e for e in events if e.type == "stopped"]
    assert [(e.actor, e.detail["reason"]) for e in stopped] == [("ops", "demo over")]
    assert (seen.status, seen.stop_reason, seen.stopped_by) == ("Stopped", "demo over", "ops")


def test_adoption_marks_keep_alive_unknown_only_for_sessions_older_than_history() -> None:
    """Older than the table: a user may have asked to keep it (None); younger: not ours, so False."""
    since = NOW - timedelta(minutes=5)
    assert adopted_record(arr(created=since - timedelta(minutes=1)), NOW, history_since=since).keep_alive is None
    assert adopted_record(arr(created=since + timedelta(minutes=1)), NOW, history_since=since).keep_alive is False
    assert adopted_record(arr(created=since - timedelta(days=1)), NOW, history_since=None).keep_alive is False


def test_unknown_keep_alive_survives_the_table_round_trip() -> None:
    """None is stored as an absent property and read back as None, not as False."""
    unknown = adopted_record(arr(created=NOW - timedelta(hours=1)), NOW, history_since=NOW)
    assert record_from_entity(record_to_entity(unknown)).keep_alive is None
    assert record_from_entity(record_to_entity(intent())).keep_alive is True


def test_restore_fills_an_adopted_record_from_memory_once() -> None:
    """After a table loss, what this process remembers replaces the adoption's unknowns; a record someone
    wrote with its own requester is left alone."""
    adopted = adopted_record(arr(created=NOW - timedelta(hours=1)), NOW, history_since=NOW)
    filled, [event] = restore(adopted, intent(), NOW)
    assert (filled.keep_alive, filled.requested_by, filled.reason, event.type) == (True, "flow", "review", "restored")
    assert restore(filled, intent(requested_by="someone else"), NOW) is None


def test_labels_are_stored_as_utf8_json() -> None:
    """22 labels of 256 'é' fit Table Storage's 32K-character property as UTF-8 JSON (as ASCII escapes they
    took 6 characters each and overflowed)."""
    labels = {f"k{i:02d}": "é" * 256 for i in range(22)}
    entity = record_to_entity(intent(labels=labels))
    assert len(entity["Labels"]) < 32 * 1024
    assert record_from_entity(entity).labels == labels


# -- WaitUntilReady: a session that has ended will not be Ready again -------------------------------------------------

def test_a_session_starting_or_ready_may_still_be_waited_for() -> None:
    assert never_ready("s", arr("Starting"), intent(status="Starting")) is None
    assert never_ready("s", arr("Ready"), intent(status="Ready", ready_at=NOW)) is None
    assert never_ready("s", None, intent()) is None  # a start history holds, ARR not yet: Starting
    assert never_ready("s", None, None) is None


def test_a_session_that_failed_before_ready_says_so_with_arrs_error() -> None:
    failed = RenderingSession.model_validate({"id": "s", "status": "Error", "size": "Standard",
                                              "error": {"code": "NoCapacity", "message": "no room in eastus"}})
    ended = never_ready("s", failed, intent(status="Starting", error_code="Stale", error_message="older"))
    assert ended is not None
    assert (ended.session_status, ended.error_code, ended.error_message) == ("Error", "NoCapacity", "no room in eastus")
    assert ended.message == "session s ended before it was Ready (Error); it will not be Ready again"


def test_a_session_arr_forgot_answers_from_history_after_it_was_ready() -> None:
    """ARR no longer knows it: history says how it ended, and that it had been Ready (its readyAt)."""
    ended = never_ready("s", None, intent(status="Stopped", ready_at=NOW - timedelta(minutes=5), ended_at=NOW))
    assert ended is not None
    assert (ended.session_status, ended.error_code, ended.error_message) == ("Stopped", None, None)
    assert ended.message == "session s ended after it was Ready (Stopped); it will not be Ready again"
    gone = never_ready("s", None, intent(status="Error", error_code="StartNotCompleted", error_message="cut short"))
    assert gone is not None and (gone.error_code, gone.error_message) == ("StartNotCompleted", "cut short")
    assert "ended before it was Ready (Error)" in gone.message


# -- the Idempotency-Key's fingerprint ------------------------------------------------------------------------------

def test_the_start_fingerprint_is_the_digest_keys_were_bound_with_before_it_named_its_fields() -> None:
    """Keys bound before this release (a digest of the whole request, size and lease resolved) still match: the
    named fields are exactly the request's fields of then, None when not given."""
    full = StartSessionRequest(size="Premium", lease_minutes=90, session_id="s-1", requested_by="flow@contoso",
                               reason="review", labels={"team": "viz"}, keep_alive=False,
                               callback_url="https://hooks.contoso.example/arr")
    for request in (full, StartSessionRequest(), StartSessionRequest(labels={}, keep_alive=True)):
        before = fingerprint(request.model_dump() | {"size": "Standard", "lease_minutes": 60})
        assert start_fingerprint(request.model_dump(), size="Standard", lease_minutes=60) == before
    # Each named field is one of the model's (a renamed field would silently fingerprint as None); a field the model
    # gains later is not named by adding it (see test_sessions: a retry spanning that deploy still matches).
    assert set(START_FINGERPRINT_FIELDS) <= set(StartSessionRequest.model_fields)


def test_the_start_fingerprint_ignores_a_field_it_does_not_name_and_tells_real_differences() -> None:
    asked = {"size": None, "lease_minutes": None, "session_id": "s-1", "requested_by": None, "reason": None,
             "labels": None, "keep_alive": None, "callback_url": None}
    digest = start_fingerprint(asked, size="Standard", lease_minutes=60)
    assert start_fingerprint(asked | {"priority": None}, size="Standard", lease_minutes=60) == digest
    assert start_fingerprint(asked | {"priority": "high"}, size="Standard", lease_minutes=60) == digest
    assert start_fingerprint({"session_id": "s-1"}, size="Standard", lease_minutes=60) == digest  # not given: None
    assert start_fingerprint(asked, size="Premium", lease_minutes=60) != digest
    assert start_fingerprint(asked, size="Standard", lease_minutes=61) != digest
    assert start_fingerprint(asked | {"labels": {}}, size="Standard", lease_minutes=60) != digest  # as before
    assert start_fingerprint(asked | {"keep_alive": True}, size="Standard", lease_minutes=60) != digest
