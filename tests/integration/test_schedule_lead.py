"""A schedule's session Ready before its Ready-by time T, measured in real time on the real app, Azurite and the
emulator, with the real timer (issue 21). In a module of its own: its lead comes from the starts it observes, and
no other test's sessions may be among the newest samples.

The module's app runs its timers (the conftest's ``app_host`` runs none) on ``ARR_CLEANUP_SCHEDULE`` = every 10
seconds (a TimeSpan), so the lead (the observed p95 start, plus one timer interval, plus a minute) is about 75 s and
the test waits about a minute and a half (it waited five, on a one-minute timer with serial samples).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from conftest import Azurite, Emulator, Host, function_app_env, start_host, stop
from polling import wait_for

from tests.integration.test_schedules import EVERY_DAY, ZONE, body

STARTUP_SECONDS = 5  # the emulator's Starting -> Ready
TICK_SECONDS = 10  # the timer's interval (ARR_CLEANUP_SCHEDULE below)


@pytest.fixture(scope="module")
def app_host(emulator_process: Emulator, azurite: Azurite, table_name: str) -> Iterator[Host]:
    """The app with its timers running: the cleanup, and the schedules' tick after it, every TICK_SECONDS."""
    host = start_host(function_app_env(emulator_process, azurite, table_name,
                                       ARR_CLEANUP_SCHEDULE=f"00:00:{TICK_SECONDS:02d}"))
    yield host
    stop(host.process)


def observed_starts(http: httpx.Client, count: int) -> list[str]:
    """Standard sessions started together, polled until Ready every half second (so history's readyAt is each
    start's length)."""
    ids = []
    for _ in range(count):
        started = http.post("/api/sessions", json={"leaseMinutes": 10, "requestedBy": "lead-sample"})
        assert started.status_code == 202, started.text[:300]
        ids.append(started.json()["id"])
    for session_id in ids:
        wait_for(lambda s=session_id: http.get(f"/api/sessions/{s}/ready").status_code == 200, f"{session_id} Ready",
                 timeout=STARTUP_SECONDS + 30, interval=0.5)
    return ids


def test_a_scheduled_session_is_ready_before_its_time(http: httpx.Client, emulator: Emulator) -> None:
    """Five observed starts of 5 s make the lead about 5 s + 10 s (the timer) + 1 minute; a schedule whose Ready-by
    time T is the first whole minute after that has its session created by the timer at the first run after T
    minus the lead, and Ready before T. Measured: T minus Ready."""
    emulator.reset(startupSeconds=STARTUP_SECONDS)
    samples = observed_starts(http, 5)
    for session_id in samples:
        http.post(f"/api/sessions/{session_id}/stop", json={"reason": "a lead sample"})

    zone = ZoneInfo(ZONE)
    probe = http.post("/api/schedules", json=body(weekdays=EVERY_DAY)).json()
    lead = timedelta(minutes=probe["next"]["leadMinutes"])
    http.delete(f"/api/schedules/{probe['id']}")
    tick_and_margin = timedelta(seconds=TICK_SECONDS + 60)
    assert tick_and_margin + timedelta(seconds=STARTUP_SECONDS) <= lead <= tick_and_margin + timedelta(
        seconds=STARTUP_SECONDS + 5)

    earliest = datetime.now(UTC) + lead + timedelta(seconds=15)  # its create-at time after the save: not on save
    target = datetime.fromtimestamp(math.ceil(earliest.timestamp() / 60) * 60, UTC)
    made = http.post("/api/schedules", json=body(readyBy=target.astimezone(zone).strftime("%H:%M"),
                                                 weekdays=EVERY_DAY, requestedBy="design-review",
                                                 labels={"room": "4.1"}))
    assert made.status_code == 201, made.text[:300]
    schedule = made.json()
    upcoming = schedule["next"]
    assert datetime.fromisoformat(upcoming["readyBy"]) == target, upcoming
    create_at = datetime.fromisoformat(upcoming["createAt"])
    session_id = upcoming["sessionId"]

    def ready() -> dict[str, object] | None:
        r = http.get(f"/api/sessions/{session_id}")
        return r.json() if r.status_code == 200 and r.json()["status"] == "Ready" else None

    seconds_left = (target - datetime.now(UTC)).total_seconds()
    view = wait_for(ready, f"{session_id} Ready", timeout=seconds_left + 90, interval=0.5)
    ready_at = datetime.fromisoformat(str(view["readyAt"]))
    arr = {s["id"]: s for s in emulator.state()["sessions"]}[session_id]
    created = datetime.fromisoformat(arr["creationTime"])
    measured = target - ready_at
    print(f"\nschedule {schedule['id']}: T {target.astimezone(zone):%H:%M:%S %Z}, lead planned "
          f"{lead.total_seconds():.0f} s (create at {create_at.astimezone(zone):%H:%M:%S}), created by the timer at "
          f"{created.astimezone(zone):%H:%M:%S}, Ready at {ready_at.astimezone(zone):%H:%M:%S}: "
          f"Ready {measured.total_seconds():.1f} s before T (emulator start {STARTUP_SECONDS} s)")
    assert ready_at < target, f"Ready {-measured.total_seconds():.0f} s after T"
    assert create_at - timedelta(seconds=2) <= created <= create_at + timedelta(seconds=TICK_SECONDS + 2)  # first run
    assert view["labels"] == {"room": "4.1", "schedule": schedule["id"]} and view["requestedBy"] == "design-review"
    assert view["keepAlive"] is True and view["leaseMinutes"] == math.ceil((timedelta(minutes=60) + lead
                                                                            + timedelta(minutes=15)).total_seconds() / 60)

    # The next runs (two more ticks) find the occurrence served: still one session at ARR, one record, one
    # 'requested' event.
    time.sleep(2 * TICK_SECONDS + 2)
    ours = [s for s in emulator.state()["sessions"] if s["id"].startswith(f"sched-{schedule['id'][4:]}")]
    assert [s["id"] for s in ours] == [session_id]
    events = http.get(f"/api/sessions/{session_id}/events").json()["events"]
    assert [e["type"] for e in events].count("requested") == 1
    assert events[0]["detail"]["reason"] == (f"schedule {schedule['id']}: Ready by "
                                             f"{target.astimezone(zone):%H:%M} {ZONE} on "
                                             f"{target.astimezone(zone):%Y-%m-%d}")
    http.post(f"/api/sessions/{session_id}/stop", json={"reason": "measured"})
    http.delete(f"/api/schedules/{schedule['id']}")
