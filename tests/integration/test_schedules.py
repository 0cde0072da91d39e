"""Schedules over HTTP on the real app, Azurite and the emulator, with the real timer (issue 21): the CRUD and its
400s, and a schedule's session Ready before its Ready-by time T, measured in real time.

The module's app runs its timers (the conftest's ``app_host`` runs none) on ``ARR_CLEANUP_SCHEDULE`` = every 10
seconds (a TimeSpan), so the lead (the observed p95 start, plus one timer interval, plus a minute) is about 75 s and
the measured test waits about a minute and a half (it waited five, on a one-minute timer and serial samples).
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

from arr_core.domain.schedules import TZ_DATABASE

ZONE = "Europe/Berlin"
EVERY_DAY = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
STARTUP_SECONDS = 5  # the emulator's Starting -> Ready, set for the measured test
TICK_SECONDS = 10  # the timer's interval (ARR_CLEANUP_SCHEDULE below)


@pytest.fixture(scope="module")
def app_host(emulator_process: Emulator, azurite: Azurite, table_name: str) -> Iterator[Host]:
    """The app with its timers running: the cleanup, and the schedules' tick after it, every TICK_SECONDS."""
    host = start_host(function_app_env(emulator_process, azurite, table_name,
                                       ARR_CLEANUP_SCHEDULE=f"00:00:{TICK_SECONDS:02d}"))
    yield host
    stop(host.process)


def body(**fields: object) -> dict[str, object]:
    return {"timeZone": ZONE, "readyBy": "09:00", "durationMinutes": 60, "weekdays": ["Mon", "Fri"], **fields}


def test_a_schedule_is_made_listed_replaced_and_deleted_over_http(http: httpx.Client) -> None:
    made = http.post("/api/schedules", json=body(exceptions=["2026-12-25"], requestedBy="ana"))
    assert made.status_code == 201, made.text[:300]
    view = made.json()
    assert made.headers["Location"].endswith(f"/api/schedules/{view['id']}")
    assert view["description"] == "Standard Ready by 09:00 Europe/Berlin for 60 min, Monday, Friday"
    assert (view["weekdays"], view["monthly"], view["exceptions"], view["updatedAt"]) == (["Mon", "Fri"], None,
                                                                                        ["2026-12-25"], None)
    upcoming = view["next"]
    ready_by = datetime.fromisoformat(upcoming["readyBy"])
    assert ready_by > datetime.now(UTC) and ready_by.astimezone(ZoneInfo(ZONE)).strftime("%H:%M %a") in (
        "09:00 Mon", "09:00 Fri")
    assert ready_by - datetime.fromisoformat(upcoming["createAt"]) == timedelta(minutes=upcoming["leadMinutes"])
    assert upcoming["sessionId"] == f"sched-{view['id'][4:]}-{upcoming['localDate'].replace('-', '')}"

    listed = http.get("/api/schedules").json()
    assert listed["timeZoneDatabase"] == TZ_DATABASE == "tzdata 2026f"
    assert view["id"] in {s["id"] for s in listed["schedules"]}
    assert http.get(f"/api/schedules/{view['id']}").json() == view

    replaced = http.put(f"/api/schedules/{view['id']}", json=body(readyBy="16:30", durationMinutes=90, weekdays=None,
                                                                  monthly={"nth": -1, "weekday": "Fri"}))
    assert replaced.status_code == 200, replaced.text[:300]
    changed = replaced.json()
    assert (changed["id"], changed["createdAt"]) == (view["id"], view["createdAt"]) and changed["updatedAt"]
    assert changed["description"] == "Standard Ready by 16:30 Europe/Berlin for 90 min, last Friday of the month"
    assert changed["exceptions"] == [] and changed["requestedBy"] is None  # PUT: the whole schedule again

    deleted = http.delete(f"/api/schedules/{view['id']}")
    assert deleted.status_code == 200 and deleted.json()["id"] == view["id"]
    for method in ("GET", "DELETE"):
        gone = http.request(method, f"/api/schedules/{view['id']}")
        assert gone.status_code == 404 and gone.json()["title"] == "Schedule not found", gone.text[:200]
    assert http.put(f"/api/schedules/{view['id']}", json=body()).status_code == 404
    assert http.get("/api/schedules/not-an-id").status_code == 404


@pytest.mark.parametrize(("fields", "field"), [
    ({"timeZone": "Europe/Amsterdamm"}, "timeZone"),
    ({"timeZone": "../../etc/passwd"}, "timeZone"),
    ({"readyBy": "9:00"}, "readyBy"),
    ({"readyBy": "24:00"}, "readyBy"),
    ({"monthly": {"nth": 5, "weekday": "Fri"}, "weekdays": None}, "monthly.nth"),
    ({"monthly": {"nth": 1, "weekday": "Fri"}}, "monthly"),
    ({"weekdays": None}, "weekdays"),
    ({"weekdays": ["Monday"]}, "weekdays.0"),
    ({"exceptions": ["24.12.2026"]}, "exceptions.0"),
    ({"fallbacks": ["Standard"]}, "fallbacks"),
    ({"durationMinutes": 0}, "durationMinutes"),
    ({"durationMinutes": 470}, "durationMinutes"),  # + 15 above ARR_MAX_LEASE_MINUTES (480)
])
def test_a_bad_schedule_is_a_400_naming_the_field_and_nothing_is_stored(http: httpx.Client,
                                                                        fields: dict[str, object], field: str) -> None:
    before = len(http.get("/api/schedules").json()["schedules"])
    refused = http.post("/api/schedules", json={k: v for k, v in body(**fields).items() if v is not None})
    assert refused.status_code == 400 and refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["errors"][0]["field"] == field, refused.json()
    assert len(http.get("/api/schedules").json()["schedules"]) == before


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
