"""Schedules over HTTP on the real app, Azurite and the emulator, with the real timer (issue 21): the CRUD and its
400s. The measured "Ready before T" is in test_schedule_lead.py (a module, and a history table, of its own).

The module's app runs its timers (the conftest's ``app_host`` runs none) on ``ARR_CLEANUP_SCHEDULE`` = every 10
seconds (a TimeSpan), as test_schedule_lead.py's does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from conftest import Azurite, Emulator, Host, function_app_env, start_host, stop

from arr_core.domain.schedules import TZ_DATABASE

ZONE = "Europe/Berlin"
EVERY_DAY = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
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
    lead = ready_by - datetime.fromisoformat(upcoming["createAt"])  # leadMinutes is rounded to 2 decimals
    assert abs(lead - timedelta(minutes=upcoming["leadMinutes"])) < timedelta(seconds=1)
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


