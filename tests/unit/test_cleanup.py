"""The cleanup's pure decision function, with a fake clock: policies, the nightly shutdown across DST, reconciliation."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from arr_core.arr.models import RenderingSession
from arr_core.domain.cleanup import (
    Action,
    CleanupPolicy,
    decide,
    next_shutdown,
    nightly_due,
    parse_clock,
    shutdown_instant,
)
from arr_core.store.history import SessionRecord

AMS = ZoneInfo("Europe/Amsterdam")
UTC = timezone.utc
NIGHTLY = CleanupPolicy(time_zone=AMS, nightly_at=time(22, 0), max_session_minutes=240, stuck_starting_minutes=20)


def arr(session_id: str, status: str = "Ready", created: datetime | None = None, elapsed: int = 10,
        lease: int = 600) -> RenderingSession:
    return RenderingSession.model_validate({
        "id": session_id, "status": status, "size": "Standard", "maxLeaseTimeMinutes": lease,
        "elapsedTimeMinutes": elapsed, "creationTime": (created or datetime(2026, 1, 1, tzinfo=UTC)).isoformat()})


def record(session_id: str, *, keep_alive: bool = False, status: str = "Ready",
           created: datetime | None = None) -> SessionRecord:
    return SessionRecord(session_id=session_id, created_at=created or datetime(2026, 1, 1, tzinfo=UTC),
                         status=status, keep_alive=keep_alive, size="Standard", lease_minutes=600)


def by_action(decisions: list, action: Action) -> dict[str, str]:
    return {d.session_id: d.reason for d in decisions if d.action is action}


@pytest.mark.parametrize(("night", "utc_hour"), [
    (date(2026, 3, 28), 21),   # CET, UTC+1: the evening before spring forward
    (date(2026, 3, 29), 20),   # CEST, UTC+2: the evening of the switch
    (date(2026, 10, 24), 20),  # CEST: the evening before fall back
    (date(2026, 10, 25), 21),  # CET: the evening of the switch
])
def test_nightly_shutdown_is_22_local_across_dst(night: date, utc_hour: int) -> None:
    """22:00 in Amsterdam is 21:00 UTC in winter and 20:00 UTC in summer, on the switch days too."""
    instant = shutdown_instant(night, NIGHTLY)
    assert instant.astimezone(UTC) == datetime(night.year, night.month, night.day, utc_hour, tzinfo=UTC)
    assert nightly_due(instant - timedelta(minutes=1), NIGHTLY, set()) is None or \
        nightly_due(instant - timedelta(minutes=1), NIGHTLY, set())[0] != night
    assert nightly_due(instant, NIGHTLY, set()) == (night, instant)


def test_shutdown_in_the_spring_gap_moves_after_it() -> None:
    """02:30 does not exist on 29 March 2026 in Amsterdam: the shutdown happens at 03:30 CEST (01:30 UTC)."""
    policy = CleanupPolicy(time_zone=AMS, nightly_at=time(2, 30))
    assert shutdown_instant(date(2026, 3, 29), policy).astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_shutdown_in_the_autumn_overlap_happens_once() -> None:
    """02:30 happens twice on 25 October 2026: the first one counts, and the marker makes it once per night."""
    policy = CleanupPolicy(time_zone=AMS, nightly_at=time(2, 30))
    first = shutdown_instant(date(2026, 10, 25), policy)
    assert first.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert nightly_due(first + timedelta(hours=1), policy, {date(2026, 10, 25)}) is None


def test_nightly_exactly_once_and_caught_up_when_missed() -> None:
    """Done nights are not redone; a run at 03:00 still does the missed 22:00 shutdown, one at noon does not."""
    instant = shutdown_instant(date(2026, 6, 1), NIGHTLY)
    assert nightly_due(instant + timedelta(minutes=3), NIGHTLY, {date(2026, 6, 1)}) is None
    late = instant + timedelta(hours=5)  # 03:00 local, the timer was down
    assert nightly_due(late, NIGHTLY, set()) == (date(2026, 6, 1), instant)
    assert nightly_due(instant + timedelta(hours=14), NIGHTLY, set()) is None


@pytest.mark.parametrize(("now", "next_at"), [
    (datetime(2026, 3, 28, 12, 0, tzinfo=UTC), "2026-03-28T22:00:00+01:00"),  # today's, still to come (CET)
    (datetime(2026, 3, 28, 21, 0, tzinfo=UTC), "2026-03-28T22:00:00+01:00"),  # at the very time: this one
    (datetime(2026, 3, 28, 21, 0, 1, tzinfo=UTC), "2026-03-29T22:00:00+02:00"),  # past it: tomorrow's, in CEST
    (datetime(2026, 10, 24, 23, 0, tzinfo=UTC), "2026-10-25T22:00:00+01:00"),  # 01:00 CEST: tonight's, in CET
    (datetime(2026, 3, 28, 23, 30, tzinfo=UTC), "2026-03-29T22:00:00+02:00"),  # after local midnight
])
def test_the_next_shutdown_is_the_next_22_local_with_that_days_offset(now: datetime, next_at: str) -> None:
    """What ListSessions answers as nightlyShutdown.nextAt: the zone's time, its offset of that day included."""
    at = next_shutdown(now, NIGHTLY)
    assert at is not None and at.isoformat() == next_at and at.tzinfo == AMS


def test_the_next_shutdown_in_the_spring_gap_moves_after_it_and_none_without_a_time() -> None:
    policy = CleanupPolicy(time_zone=AMS, nightly_at=time(2, 30))
    assert next_shutdown(datetime(2026, 3, 28, 12, 0, tzinfo=UTC), policy) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert next_shutdown(datetime(2026, 3, 28, 12, 0, tzinfo=UTC), CleanupPolicy(time_zone=AMS)) is None


def test_nightly_stops_all_but_keep_alive_and_sessions_started_after_the_cutoff() -> None:
    """keepAlive is exempt; a session started after the (missed) shutdown time is not stopped by it."""
    cutoff = shutdown_instant(date(2026, 6, 1), NIGHTLY)
    now = cutoff + timedelta(hours=3)
    sessions = [arr("old"), arr("exempt"), arr("morning", created=cutoff + timedelta(hours=1), elapsed=5),
                arr("unknown")]
    records = [record("old"), record("exempt", keep_alive=True), record("morning", created=cutoff + timedelta(hours=1))]
    decisions = decide(sessions, records, now, NIGHTLY, nightly_cutoff=cutoff)
    stopped = by_action(decisions, Action.STOP)
    assert set(stopped) == {"old", "unknown"}
    assert stopped["old"] == "nightly shutdown (22:00 Europe/Amsterdam)"
    assert by_action(decisions, Action.KEEP) == {"exempt": "keepAlive", "morning": "within policy"}
    assert {d.session_id for d in decisions if d.adopt} == {"unknown"}


def test_sessions_older_than_the_history_table_keep_an_unknown_keep_alive() -> None:
    """History lost and recreated at 21:00: a session ARR runs that started before then and history does not
    know may have been kept alive by a user, so the nightly shutdown leaves it to its lease; one started after
    the table was recreated is not ours (every start records its intent first) and is stopped."""
    cutoff = shutdown_instant(date(2026, 6, 1), NIGHTLY)
    since = cutoff - timedelta(hours=1)
    sessions = [arr("before", created=since - timedelta(hours=2)), arr("after", created=since + timedelta(minutes=5))]
    decisions = decide(sessions, [], cutoff + timedelta(minutes=1), NIGHTLY, nightly_cutoff=cutoff,
                       history_since=since)
    assert by_action(decisions, Action.KEEP) == {
        "before": "keepAlive unknown (its history was lost): left to its lease"}
    assert set(by_action(decisions, Action.STOP)) == {"after"}
    assert {d.session_id: d.record.keep_alive for d in decisions} == {"before": None, "after": False}


def test_a_stop_cut_short_is_finished_with_its_own_reason() -> None:
    """A record with a stop reason that ARR still runs: a crash came between recording the stop and ARR's
    answer. The cleanup stops it, in the name of whoever asked and with their reason."""
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    asked = SessionRecord(session_id="s", created_at=now - timedelta(hours=1), status="Ready", keep_alive=True,
                          stop_reason="demo over", stopped_by="ops@contoso")
    [decision] = decide([arr("s")], [asked], now, NIGHTLY)
    assert (decision.action, decision.stop_as) == (Action.STOP, ("demo over", "ops@contoso"))


def test_maximum_duration_and_stuck_starting() -> None:
    """Ready longer than the maximum is stopped even with lease left; Starting too long is stopped as stuck."""
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    sessions = [arr("long", elapsed=240), arr("short", elapsed=239),
                arr("stuck", "Starting", created=now - timedelta(minutes=21), elapsed=0),
                arr("booting", "Starting", created=now - timedelta(minutes=5), elapsed=0)]
    records = [record(s.id, status=s.status.value) for s in sessions]
    decisions = decide(sessions, records, now, NIGHTLY)
    stopped = by_action(decisions, Action.STOP)
    assert set(stopped) == {"long", "stuck"}
    assert "240 minutes" in stopped["long"] and "stuck in Starting for 21 minutes" in stopped["stuck"]
    assert set(by_action(decisions, Action.KEEP)) == {"short", "booting"}


def test_reconciliation_cases() -> None:
    """History-active sessions ARR does not list are reconciled, except a start still in progress."""
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    records = [record("gone"), record("fresh", status="Requested", created=now - timedelta(minutes=2)),
               record("abandoned", status="Requested", created=now - timedelta(minutes=30)),
               record("ended", status="Stopped")]
    decisions = decide([], records, now, NIGHTLY)
    assert set(by_action(decisions, Action.RECONCILE)) == {"gone", "abandoned"}
    assert by_action(decisions, Action.KEEP) == {"fresh": "start in progress"}


def test_no_policy_no_stops() -> None:
    """With no nightly time and no maximum, a healthy session is kept."""
    policy = CleanupPolicy()
    decisions = decide([arr("a", elapsed=1000)], [record("a")], datetime(2026, 1, 2, tzinfo=UTC), policy)
    assert [d.action for d in decisions] == [Action.KEEP]
    assert nightly_due(datetime(2026, 1, 2, tzinfo=UTC), policy, set()) is None


@pytest.mark.parametrize("bad", ["22", "25:00:00:00", "ten", ""])
def test_parse_clock_refuses_garbage(bad: str) -> None:
    """ARR_NIGHTLY_SHUTDOWN_AT must be HH:MM."""
    with pytest.raises(ValueError):
        parse_clock(bad)
