"""The local functions host: routes, methods, keys, async and sync functions, timers; over real sockets."""

from __future__ import annotations

import concurrent.futures
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from conftest import FUNCTION_KEY, Host, start_host, stop
from polling import wait_for

from devhost import compile_route, load_local_settings, parse_schedule, resolve_setting


@pytest.fixture(scope="module")
def sample_host(tmp_path_factory: pytest.TempPathFactory) -> Host:
    log = tmp_path_factory.mktemp("timer") / "timer.log"
    host = start_host({"SAMPLE_SCHEDULE": "*/1 * * * * *", "SAMPLE_TIMER_LOG": str(log)}, "tests.apps.sample_app")
    host.timer_log = log  # type: ignore[attr-defined]
    yield host
    stop(host.process)


def test_route_templates() -> None:
    """ASP.NET templates: parameters, optional segments, catch-alls, constraints; case-insensitive literals."""
    assert compile_route("sessions/{id}").match("Sessions/abc").groupdict() == {"id": "abc"}
    assert compile_route("sessions/{id}").match("sessions/abc/stop") is None
    assert compile_route("a/{x}/b/{y?}").match("a/1/b").groupdict() == {"x": "1", "y": None}
    assert compile_route("files/{*rest}").match("files/a/b/c").group("rest") == "a/b/c"
    assert compile_route("n/{n:int}").match("n/5").group("n") == "5"


def test_schedules() -> None:
    """Six-field NCRONTAB and TimeSpan schedules; %SETTING% is resolved from the environment."""
    start = datetime(2026, 3, 29, 0, 0, 0, tzinfo=timezone.utc)
    assert parse_schedule("0 */5 * * * *").next_after(start) == datetime(2026, 3, 29, 0, 5, tzinfo=timezone.utc)
    assert parse_schedule("00:10:00").next_after(start) == datetime(2026, 3, 29, 0, 10, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="six fields"):
        parse_schedule("*/5 * * * *")
    with pytest.raises(ValueError, match="NOT_SET_ANYWHERE"):
        resolve_setting("%NOT_SET_ANYWHERE%")


def test_local_settings_values_become_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Values go into the environment; variables already set win."""
    settings = tmp_path / "local.settings.json"
    settings.write_text('{"IsEncrypted": false, "Values": {"A_ONE": "1", "A_TWO": "2"}}')
    monkeypatch.setenv("A_TWO", "env")
    monkeypatch.delenv("A_ONE", raising=False)
    assert load_local_settings(settings) == {"A_ONE": "1", "A_TWO": "2"}
    import os

    assert os.environ["A_ONE"] == "1" and os.environ["A_TWO"] == "env"


def test_routes_methods_and_params(sample_host: Host) -> None:
    """/api prefix, route and query parameters, 404 for no route, 405 for another method."""
    with sample_host.client() as http:
        r = http.post("/api/items/42/parts/wheel?x=1&x=2", content=b"hello")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        body = r.json()
        assert body["route"] == {"item_id": "42", "part": "wheel"}
        assert body["params"] == {"x": "1"} and body["body"] == "hello" and body["method"] == "POST"
        assert http.get("/api/items/42/parts").json()["route"] == {"item_id": "42"}
        assert http.get("/api/nothing-here").status_code == 404
        assert http.get("/items/42/parts").status_code == 404
        assert http.delete("/api/items/42/parts").status_code == 405


def test_function_keys(sample_host: Host) -> None:
    """FUNCTION routes need a key (header or code=); ANONYMOUS routes do not; a wrong key is 401."""
    assert httpx.get(f"{sample_host.url}/api/items/1/parts").status_code == 401
    assert httpx.get(f"{sample_host.url}/api/items/1/parts", headers={"x-functions-key": "wrong"}).status_code == 401
    assert httpx.get(f"{sample_host.url}/api/items/1/parts", params={"code": FUNCTION_KEY}).status_code == 200
    assert httpx.get(f"{sample_host.url}/api/open").text == "open"


def test_async_functions_run_concurrently_and_sync_ones_in_threads(sample_host: Host) -> None:
    """Ten async calls are in flight at once on one event loop; a sync function runs in a thread with context."""
    with sample_host.client() as http, concurrent.futures.ThreadPoolExecutor(10) as pool:
        peaks = [int(text) for text in pool.map(lambda _: http.get("/api/slow").text, range(10))]
        assert max(peaks) >= 2  # a serial host would never see two invocations in flight
        sync = http.get("/api/sync").json()
        assert sync["function"] == "sync_route" and sync["thread"] != "MainThread"
        assert http.get("/api/items/1/parts").json()["thread"] == "MainThread"


def test_unhandled_exception_is_a_bare_500(sample_host: Host) -> None:
    """Like the Functions host: a 500 without the traceback."""
    with sample_host.client() as http:
        r = http.get("/api/boom")
    assert r.status_code == 500 and b"kaboom" not in r.content


def test_timers_on_schedule_and_on_demand(sample_host: Host) -> None:
    """The %SETTING% schedule fires every second; POST /admin/functions/tick runs it now (master key only)."""
    log: Path = sample_host.timer_log  # type: ignore[attr-defined]
    wait_for(lambda: log.exists() and log.read_text().count("tick") >= 2, "the timer ran twice on its schedule",
             timeout=10, interval=0.1)
    with sample_host.client() as http:
        assert http.post("/admin/functions/tick", json={"input": ""}).status_code == 401  # function key only
        r = http.post("/admin/functions/tick", json={"input": ""}, headers={"x-functions-key": "test-master-key"})
        assert r.status_code == 202
        missing = http.post("/admin/functions/nope", headers={"x-functions-key": "test-master-key"})
        assert missing.status_code == 404


def test_a_function_turned_off_by_its_app_setting_does_not_run() -> None:
    """``AzureWebJobs.<name>.Disabled`` (true or 1), as Azure reads it: the route is not found, the others serve."""
    host = start_host({"SAMPLE_SCHEDULE": "0 0 0 1 1 *", "AzureWebJobs.open_route.Disabled": "true"},
                      "tests.apps.sample_app")
    try:
        assert httpx.get(f"{host.url}/api/open").status_code == 404
        assert httpx.get(f"{host.url}/api/items/1/parts", headers={"x-functions-key": FUNCTION_KEY}).status_code == 200
    finally:
        stop(host.process)
