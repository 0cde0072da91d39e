"""The `arr-sessions` command through its real entry point, as a person or a script runs it.

Against ARR directly (the emulator, configured by RenderingSession.ps1's arrconfig.json or the environment) and
against the app (the real function app on the local host): every command, waits that end Ready, in Error, on a stop
by someone else and on --timeout, Ctrl-C (a signal, and keys typed in a terminal), a broken arrconfig.json, exit
codes, the MS-CV on service errors, the options before or after the command, -v's log of the app's calls, a
function key missing or refused, who stopped a session, keepAlive changed later, and never a secret in what is
printed. tmux shows what a person sees.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    FUNCTION_KEY,
    LOG_DIR,
    ROOT,
    Azurite,
    Emulator,
    Host,
    function_app_env,
    not_a_regular_file,
    start_host,
)
from conftest import stop as stop_process
from polling import wait_for

BIN = Path(sys.executable).parent
CLI = BIN / "arr-sessions"
TMUX = "/usr/bin/tmux"
SECRETS = ("test-account-key-not-a-secret", FUNCTION_KEY)


@pytest.fixture(scope="module")
def app_settings() -> dict[str, str]:
    return {"ARR_POLL_SECONDS": "1"}  # the app's Retry-After while a session starts: the CLI never polls faster


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    if not CLI.exists():
        pytest.fail(f"{CLI} is missing: `make install` installs the arr-sessions command (pip install -e .)")


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any ARR or Azure setting of the machine's, nor the terminal size a test runner
    may set (pytest-xdist's workers set COLUMNS=80: the CLI would fold its lines there, as on a terminal), plus
    ``extra``: the CLI runs as in a pipe."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ARR_", "AZURE_", "MSI_", "IDENTITY_")) and k not in ("COLUMNS", "LINES")}
    return {**env, **extra}


def direct_env(emulator: Emulator) -> dict[str, str]:
    return clean_env(ARR_ACCOUNT_ID=emulator.account_id, ARR_ACCOUNT_KEY=emulator.account_key,
                     ARR_ENDPOINT=emulator.url, ARR_STS_ENDPOINT=emulator.url)


def app_env(host: Host, key: str = FUNCTION_KEY) -> dict[str, str]:
    return clean_env(ARR_SESSIONS_APP_URL=host.url, ARR_SESSIONS_FUNCTION_KEY=key)


class Result:
    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        self.code, self.out, self.err = done.returncode, done.stdout, done.stderr

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> Result:
    done = subprocess.run([str(CLI), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)
    result = Result(done)
    for secret in SECRETS:
        assert secret not in result.out + result.err, f"a secret was printed by {args}"
    return result


def ps1_config(tmp_path: Path, emulator: Emulator, **settings: Any) -> Path:
    """arrconfig.json in the shape RenderingSession.ps1 ships (BOM, placeholders left in what is not used)."""
    data = {
        "accountSettings": {"arrAccountId": emulator.account_id, "arrAccountKey": emulator.account_key,
                            "arrAccountDomain": emulator.url},
        "renderingSessionSettings": {"remoteRenderingDomain": emulator.url, "vmSize": "standard",
                                     "maxLeaseTime": "0:30:00"},
        "assetConversionSettings": {"resourceGroup": "<resource group which contains the storage account you "
                                                     "created, only needed when uploading or generating SAS>",
                                    "storageAccountName": "<name of the storage account you created>"},
    }
    for dotted, value in settings.items():
        section, key = dotted.split("__")
        data[section][key] = value
    path = tmp_path / "arrconfig.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(data, indent=4).encode())
    return path


def emulated(emulator: Emulator, session_id: str) -> dict[str, Any]:
    return next(s for s in emulator.state()["sessions"] if s["id"] == session_id)


# -- ARR directly ----------------------------------------------------------------------------------------------

def test_every_command_against_arr_with_the_scripts_arrconfig(emulator: Emulator, tmp_path: Path) -> None:
    emulator.reset(startupSeconds=60)
    ps1_config(tmp_path, emulator)
    env = clean_env()

    started = cli("start", "--id", "cli-direct-1", env=env, cwd=tmp_path)
    assert started.code == 0, started
    assert "Started cli-direct-1" in started.out and "arr-sessions get cli-direct-1 --wait" in started.out
    created = emulated(emulator, "cli-direct-1")
    assert (created["size"], created["maxLeaseTimeMinutes"]) == ("Standard", 30)  # vmSize, maxLeaseTime (0:30:00)

    got = cli("get", "cli-direct-1", env=env, cwd=tmp_path)
    assert got.code == 0 and re.search(r"Status\s+Starting", got.out), got

    listed = cli("list", env=env, cwd=tmp_path)
    assert listed.code == 0 and re.search(r"cli-direct-1\s+Starting\s+Standard\s+30 min", listed.out), listed
    listed = cli("list", "--json", env=env, cwd=tmp_path)
    assert [s["id"] for s in listed.json["sessions"]] == ["cli-direct-1"]

    emulator.advance(60)  # Ready
    extended = cli("extend", "cli-direct-1", "--lease", "1:00:00", env=env, cwd=tmp_path)
    assert extended.code == 0 and "is now 60 minutes" in extended.out, extended
    extended = cli("extend", "cli-direct-1", "--by", "15", "--json", env=env, cwd=tmp_path)
    assert extended.code == 0 and extended.json["leaseMinutes"] == 75, extended

    stopped = cli("stop", "cli-direct-1", env=env, cwd=tmp_path)
    assert stopped.code == 0 and "Stopped cli-direct-1." in stopped.out and re.search(r"Status\s+Stopped", stopped.out)
    view = cli("get", "cli-direct-1", "--json", env=env, cwd=tmp_path).json
    assert view["status"] == "Stopped"
    assert set(view) >= {"id", "status", "size", "leaseMinutes", "hostname", "requestedBy", "links"}  # the app's keys
    assert cli("list", env=env, cwd=tmp_path).out.strip() == "No active sessions."


def test_environment_and_flags_override_arrconfig(emulator: Emulator, tmp_path: Path) -> None:
    ps1_config(tmp_path, emulator, renderingSessionSettings__vmSize="<standard or premium>")
    env = clean_env(ARR_DEFAULT_SIZE="premium")
    assert cli("start", "--id", "cli-env", "--lease", "45", env=env, cwd=tmp_path).code == 0
    created = emulated(emulator, "cli-env")
    assert (created["size"], created["maxLeaseTimeMinutes"]) == ("Premium", 45)
    assert cli("start", "--id", "cli-flag", "--size", "standard", env=env, cwd=tmp_path).code == 0
    assert emulated(emulator, "cli-flag")["size"] == "Standard"


def test_a_wait_that_ends_ready(emulator: Emulator, tmp_path: Path) -> None:
    emulator.reset(startupSeconds=2)
    before = emulator.state()["requests"]["get"]
    began = time.monotonic()
    result = cli("start", "--wait", "--poll", "1", "--json", env=direct_env(emulator), cwd=tmp_path)
    took = time.monotonic() - began
    assert result.code == 0, result
    session = result.json
    assert session["status"] == "Ready" and session["hostname"] and session["handshakePort"]
    assert re.search(rf"\[0:0\d\] {session['id']}: Starting \(checking every 1 s\)", result.err), result
    gets = emulator.state()["requests"]["get"] - before
    assert 1 <= gets <= took + 1  # one check a second at most (--poll 1)


def test_a_wait_that_ends_in_error(emulator: Emulator, tmp_path: Path) -> None:
    emulator.reset(startupSeconds=1, capacity=0)
    result = cli("start", "--wait", "--poll", "1", "--id", "cli-no-capacity", env=direct_env(emulator), cwd=tmp_path)
    assert result.code == 1, result
    assert "Session ended Error" in result.out and "NoCapacity" in result.out
    assert re.search(r"Error\s+NoCapacity: No Standard rendering servers", result.out)


def test_a_wait_ends_when_someone_else_stops_the_session(emulator: Emulator, tmp_path: Path) -> None:
    """RenderingSession.ps1 polls forever once a starting session is stopped; this wait ends, with exit 1."""
    emulator.reset(startupSeconds=60)
    env = direct_env(emulator)
    assert cli("start", "--id", "cli-stopped", env=env, cwd=tmp_path).code == 0
    waiter = subprocess.Popen([str(CLI), "get", "cli-stopped", "--wait", "--poll", "1"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    assert cli("stop", "cli-stopped", env=env, cwd=tmp_path).code == 0
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 1, (out, err)
    assert "Session ended Stopped" in out


def test_a_wait_with_a_timeout_leaves_the_session_running(emulator: Emulator, tmp_path: Path) -> None:
    emulator.reset(startupSeconds=60)
    result = cli("start", "--wait", "--poll", "1", "--timeout", "2s", "--id", "cli-slow", env=direct_env(emulator),
                 cwd=tmp_path)
    assert result.code == 4, result
    assert "Still Starting after 0:02 (--timeout 2s)" in result.out
    assert "arr-sessions stop cli-slow" in result.out and "arr-sessions get cli-slow --wait" in result.out
    assert emulated(emulator, "cli-slow")["status"] == "Starting"


def test_ctrl_c_during_a_wait_leaves_the_session_running_and_says_how_to_stop_it(emulator: Emulator,
                                                                                 tmp_path: Path) -> None:
    emulator.reset(startupSeconds=60)
    waiter = subprocess.Popen([str(CLI), "start", "--wait", "--poll", "1", "--id", "cli-interrupted"],
                              env=direct_env(emulator), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    wait_for(lambda: any(s["id"] == "cli-interrupted" for s in emulator.state()["sessions"]),
             "the session cli-interrupted started", interval=0.1)
    time.sleep(1.2)  # into the wait
    waiter.send_signal(signal.SIGINT)
    out, err = waiter.communicate(timeout=20)
    assert waiter.returncode == 130, (out, err)
    assert ("Session cli-interrupted keeps running (it is billed). Stop it with: arr-sessions stop cli-interrupted"
            in err)
    assert "Traceback" not in err and "Aborted" not in err
    assert emulated(emulator, "cli-interrupted")["status"] == "Starting"


@pytest.mark.parametrize(("settings", "field"), [
    ({"accountSettings__arrAccountId": "my-arr-account"}, "accountSettings.arrAccountId"),
    ({"renderingSessionSettings__maxLeaseTime": "4 hours"}, "renderingSessionSettings.maxLeaseTime"),
    ({"renderingSessionSettings__vmSize": "medium"}, "renderingSessionSettings.vmSize"),
])
def test_a_bad_arrconfig_names_the_field(emulator: Emulator, tmp_path: Path, settings: dict[str, str],
                                         field: str) -> None:
    path = ps1_config(tmp_path, emulator, **settings)
    result = cli("list", env=clean_env(), cwd=tmp_path)
    assert result.code == 2, result
    assert result.err.startswith(f"Error: {path}: {field} ")
    assert result.out == ""


def test_the_scripts_sample_untouched_says_what_to_fill_in(tmp_path: Path) -> None:
    placeholder = "<select from available regions: australiaeast, eastus, ... or specify the full url>"
    (tmp_path / "arrconfig.json").write_text(json.dumps({
        "accountSettings": {"arrAccountId": "<fill in the account ID from the Azure Portal>",
                            "arrAccountKey": "<fill in the account key from the Azure Portal>",
                            "arrAccountDomain": placeholder},
        "renderingSessionSettings": {"remoteRenderingDomain": placeholder, "vmSize": "<standard or premium>",
                                     "maxLeaseTime": "<hh:mm:ss>"}}), encoding="utf-8-sig")
    result = cli("start", env=clean_env(), cwd=tmp_path)
    assert result.code == 2, result
    for field in ("accountSettings.arrAccountId", "accountSettings.arrAccountDomain",
                  "renderingSessionSettings.remoteRenderingDomain"):
        assert field in result.err
    broken = tmp_path / "broken.json"
    broken.write_text('{"accountSettings": {"arrAccountId": "x",}}')
    result = cli("list", "--config", str(broken), env=clean_env(), cwd=tmp_path)
    assert result.code == 2 and "not valid JSON" in result.err and "line 1 column" in result.err, result


def test_service_errors_exit_3_with_the_ms_cv(emulator: Emulator, tmp_path: Path) -> None:
    result = cli("get", "no-such-session", env=direct_env(emulator), cwd=tmp_path)
    assert result.code == 3, result
    assert "ARR answered 404: NotFound" in result.err
    assert re.search(r"^MS-CV: \S+$", result.err, re.MULTILINE), result

    wrong_key = {**direct_env(emulator), "ARR_ACCOUNT_KEY": "wrong-key-also-secret"}
    result = cli("list", env=wrong_key, cwd=tmp_path)
    assert result.code == 3 and "Unauthorized" in result.err and "account id and key" in result.err, result
    assert "wrong-key-also-secret" not in result.out + result.err

    nobody = {**direct_env(emulator), "ARR_ENDPOINT": "http://127.0.0.1:9", "ARR_STS_ENDPOINT": "http://127.0.0.1:9"}
    result = cli("list", env=nobody, cwd=tmp_path)
    assert result.code == 3 and "ARR could not be reached" in result.err and "MS-CV: none" in result.err, result


@pytest.mark.parametrize("args", [["history"], ["usage", "--by", "size"], ["cleanup", "--dry-run"], ["events", "x"],
                                  ["keep-alive", "x"], ["keep-alive", "x", "--off"], ["override", "list"],
                                  ["override", "add", "--session", "x", "--until", "3h"],
                                  ["override", "remove", "ovr-0123456789ab"], ["pool", "list"],
                                  ["pool", "claim", "x"], ["budget"], ["schedule", "list"],
                                  ["schedule", "remove", "sch-0123456789ab"]])
def test_what_only_the_app_knows_needs_the_app(emulator: Emulator, tmp_path: Path, args: list[str]) -> None:
    result = cli(*args, env=direct_env(emulator), cwd=tmp_path)
    assert result.code == 2, result
    assert f"`{args[0]}` needs the arr-sessions app" in result.err and "--app URL" in result.err


@pytest.mark.parametrize(("args", "words"), [
    (["extend", "s1"], "exactly one of --lease"),
    (["extend", "s1", "--lease", "90", "--by", "5"], "exactly one of --lease"),
    (["start", "--lease", "25:00:00"], "--lease must be minutes or a time span"),
    (["start", "--lease", "2000"], "at most 1440"),
    (["start", "--timeout", "soon"], "--timeout must be a duration"),
    (["start", "--reason", "demo"], "--reason is kept in the app's history"),
    (["stop", "s1", "--requested-by", "ana"], "--requested-by is kept in the app's history"),
    (["extend", "s1", "--by", "5", "--reason", "demo"], "--reason is kept in the app's history"),
    (["get", "not a valid id"], "ID must be 1-256 letters"),
    (["start", "--size", "huge"], "Invalid value for '--size'"),
    (["start", "--poll", "0.1"], "Invalid value for '--poll'"),
    (["frobnicate"], "No such command"),
])
def test_usage_errors_exit_2(emulator: Emulator, tmp_path: Path, args: list[str], words: str) -> None:
    result = cli(*args, env=direct_env(emulator), cwd=tmp_path)
    assert result.code == 2, result
    assert words in result.err, result
    assert not emulator.state()["sessions"]


# -- the app ---------------------------------------------------------------------------------------------------

def test_every_command_against_the_app(app_host: Host, emulator: Emulator, tmp_path: Path) -> None:
    emulator.reset(startupSeconds=60)
    env = app_env(app_host)

    started = cli("start", "--id", "cli-app-1", "--lease", "20", "--reason", "demo for the board",
                  "--requested-by", "ana", "--label", "team=viz", "--keep-alive", "--json", env=env, cwd=tmp_path)
    assert started.code == 0, started
    assert started.json["status"] == "Starting"
    assert (started.json["requestedBy"], started.json["labels"], started.json["keepAlive"]) == (
        "ana", {"team": "viz"}, True)
    assert "x-functions-key" not in json.dumps(started.json) and "code=" not in json.dumps(started.json)

    got = cli("get", "cli-app-1", env=env, cwd=tmp_path)
    assert got.code == 0 and re.search(r"Requested by\s+ana", got.out) and re.search(r"Keep alive\s+yes", got.out)
    listed = cli("list", env=env, cwd=tmp_path)
    assert listed.code == 0 and re.search(r"cli-app-1\s+Starting\s+Standard\s+20 min.*ana", listed.out), listed

    emulator.advance(60)
    extended = cli("extend", "cli-app-1", "--by", "10", env=env, cwd=tmp_path)
    assert extended.code == 0 and "is now 30 minutes" in extended.out, extended

    dry = cli("cleanup", "--dry-run", env=env, cwd=tmp_path)
    assert dry.code == 0, dry
    dry_json = cli("cleanup", "--dry-run", "--json", env=env, cwd=tmp_path).json
    assert dry_json["dryRun"] is True and not dry_json["stopped"]

    stopped = cli("stop", "cli-app-1", "--reason", "done with the demo", env=env, cwd=tmp_path)
    assert stopped.code == 0 and re.search(r"Status\s+Stopped", stopped.out), stopped

    history = cli("history", env=env, cwd=tmp_path)
    assert history.code == 0 and re.search(r"cli-app-1\s+Stopped", history.out), history
    assert "cli-app-1" in [s["id"] for s in cli("history", "--json", env=env, cwd=tmp_path).json["sessions"]]
    narrowed = cli("history", "--requested-by", "nobody-else", env=env, cwd=tmp_path)
    assert narrowed.code == 0 and "No sessions in that time." in narrowed.out

    usage = cli("usage", "--by", "requestedBy", env=env, cwd=tmp_path)
    assert usage.code == 0 and re.search(r"ana\s+1\s+\d+", usage.out) and "Total" in usage.out, usage
    assert cli("usage", "--json", env=env, cwd=tmp_path).json["total"]["sessions"] >= 1

    events = cli("events", "cli-app-1", env=env, cwd=tmp_path)
    assert events.code == 0 and "Events of cli-app-1" in events.out and "stopped" in events.out, events
    kinds = [e["type"] for e in cli("events", "cli-app-1", "--json", env=env, cwd=tmp_path).json["events"]]
    assert kinds[-1] == "stopped"

    cleanup = cli("cleanup", env=env, cwd=tmp_path)
    assert cleanup.code == 0, cleanup


def test_waits_through_the_app_end_ready_and_in_error(app_host: Host, emulator: Emulator, tmp_path: Path) -> None:
    emulator.reset(startupSeconds=2)
    ready = cli("start", "--wait", "--poll", "1", env=app_env(app_host), cwd=tmp_path)
    assert ready.code == 0, ready
    assert "Ready after" in ready.out and "Starting (checking every 1 s" in ready.err, ready

    emulator.reset(startupSeconds=1, capacity=0)
    failed = cli("start", "--wait", "--poll", "1", "--json", env=app_env(app_host), cwd=tmp_path)
    assert failed.code == 1, failed
    assert failed.json["status"] == "Error" and failed.json["error"]["code"] == "NoCapacity"


def test_app_errors_exit_3_and_name_what_is_wrong(app_host: Host, emulator: Emulator, tmp_path: Path) -> None:
    """The app sends no correlation id of its own: its errors speak of no MS-CV, unless ARR's answer was the cause
    and the app passed ARR's on."""
    result = cli("get", "cli-never-started", env=app_env(app_host), cwd=tmp_path)
    assert result.code == 3 and "reading session cli-never-started" in result.err, result
    assert "MS-CV" not in result.err and "ARR carried" not in result.err, result

    result = cli("start", "--lease", "1000", env=app_env(app_host), cwd=tmp_path)  # above the app's 480 maximum
    assert result.code == 3 and "lease" in result.err.lower() and "MS-CV" not in result.err, result

    emulator.fault(operations=["create"], status=400)
    result = cli("start", "--id", "cli-arr-refused", env=app_env(app_host), cwd=tmp_path)
    assert result.code == 3 and "ARR refused the request" in result.err, result
    assert re.search(r"^MS-CV: \S+ \(ARR's, passed on by the app\)$", result.err, re.MULTILINE), result


def test_a_missing_or_refused_function_key_is_a_configuration_error(app_host: Host, tmp_path: Path) -> None:
    """Exit 2, as any setting the user must fix; no key says how to give one, a refused key says where it came
    from, never the key."""
    result = cli("list", env=clean_env(ARR_SESSIONS_APP_URL=app_host.url), cwd=tmp_path)
    assert result.code == 2, result
    assert result.err.startswith("Error: listing sessions: the app wants a function key, and none was given\n")
    assert "Set ARR_SESSIONS_FUNCTION_KEY (or give --function-key KEY)" in result.err and "MS-CV" not in result.err

    for env, args, source in (
            (app_env(app_host, key="not-the-key"), [], "ARR_SESSIONS_FUNCTION_KEY"),
            (clean_env(ARR_SESSIONS_APP_URL=app_host.url), ["--function-key", "not-the-key"], "--function-key"),
            (clean_env(ARR_SESSIONS_APP_URL=f"{app_host.url}/api?code=not-the-key"), [],
             "the ?code= of ARR_SESSIONS_APP_URL")):
        result = cli("get", "s1", *args, env=env, cwd=tmp_path)
        assert result.code == 2, result
        assert result.err.startswith(f"Error: reading session s1: the app refused the function key from {source} "
                                     "(HTTP 401)\n"), result
        assert "not-the-key" not in result.out + result.err and "MS-CV" not in result.err


def test_global_options_go_before_or_after_the_command_and_v_logs_each_call_to_the_app(
        app_host: Host, emulator: Emulator, tmp_path: Path) -> None:
    url = f"{app_host.url}/api?code={FUNCTION_KEY}"  # the key in the URL: the log must not show it
    for args in (["-v", "list"], ["list", "-v"], ["--app", url, "-v", "list"], ["list", "--app", url, "--verbose"]):
        result = cli(*args, env=clean_env(ARR_SESSIONS_APP_URL=url), cwd=tmp_path)
        assert result.code == 0 and result.out.strip() == "No active sessions.", (args, result)
        assert re.search(r"^\[\d\d:\d\d:\d\d\] app GET /api/sessions -> 200 in \d+ ms$", result.err, re.MULTILINE), (
            args, result)
        assert not re.search(r"code=[^\s*]", result.err) and "x-functions-key" not in result.err
    both = cli("--json", "list", "--app", "http://127.0.0.1:9", env=app_env(app_host), cwd=tmp_path)
    assert both.code == 3 and "could not be reached" in both.err  # after the command wins
    assert cli("--json", "list", env=app_env(app_host), cwd=tmp_path).json["sessions"] == []

    emulator.reset(startupSeconds=1)
    waited = cli("start", "--wait", "--poll", "1", "--id", "cli-logged", "-v", env=app_env(app_host), cwd=tmp_path)
    assert waited.code == 0, waited
    assert re.search(r"app POST /api/sessions -> 202 in \d+ ms", waited.err), waited
    assert re.search(r"app GET /api/sessions/cli-logged/ready -> 200 in \d+ ms", waited.err), waited

    direct = cli("-v", "list", env=direct_env(emulator), cwd=tmp_path)  # ARR directly: its calls, as before
    assert direct.code == 0 and re.search(r"ARR GET /accounts/\S+/sessions -> 200 in \d+ ms \(MS-CV \S+\)",
                                          direct.err), direct
    helped = cli("-h", env=clean_env(), cwd=tmp_path)
    assert "before or after the command" in re.sub(r"\s+", " ", helped.out), helped
    assert "before or after the command" in re.sub(r"\s+", " ", cli("stop", "-h", env=clean_env(), cwd=tmp_path).out)


def test_a_session_id_in_use_is_said_once(app_host: Host, emulator: Emulator, tmp_path: Path) -> None:
    emulator.reset(startupSeconds=60)
    env = app_env(app_host)
    assert cli("start", "--id", "cli-in-use", "--lease", "20", env=env, cwd=tmp_path).code == 0
    result = cli("start", "--id", "cli-in-use", "--lease", "30", env=env, cwd=tmp_path)
    assert result.code == 3, result
    said = "session cli-in-use already exists with size Standard and a lease of 20 minutes"
    assert result.err == f"Error: starting the session: Session id in use - {said}\n", result


@pytest.mark.parametrize("through", ["app", "arr"])
def test_stopping_an_ended_session_says_it_had_ended(app_host: Host, emulator: Emulator, tmp_path: Path,
                                                     through: str) -> None:
    emulator.reset(startupSeconds=60)
    env = app_env(app_host) if through == "app" else direct_env(emulator)
    assert cli("start", "--id", f"cli-twice-{through}", env=env, cwd=tmp_path).code == 0
    first = cli("stop", f"cli-twice-{through}", env=env, cwd=tmp_path)
    assert first.code == 0 and first.out.startswith(f"Stopped cli-twice-{through}.\n"), first
    again = cli("stop", f"cli-twice-{through}", env=env, cwd=tmp_path)
    assert again.code == 0, again
    ended = r" at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC" if through == "app" else ""  # ARR tells no end time
    assert re.match(rf"Session cli-twice-{through} had already ended: Stopped{ended}\. Nothing to stop\.\n",
                    again.out), again
    assert "Stopped cli-twice" not in again.out and re.search(r"Status\s+Stopped", again.out)
    assert cli("stop", f"cli-twice-{through}", "--json", env=env, cwd=tmp_path).json["status"] == "Stopped"


def test_piped_tables_have_no_trailing_spaces(app_host: Host, emulator: Emulator, tmp_path: Path) -> None:
    emulator.reset(startupSeconds=60)
    env = app_env(app_host)
    started = cli("start", "--id", "cli-piped", "--lease", "20", "--requested-by", "ana", "--reason", "pipes",
                  env=env, cwd=tmp_path)
    assert started.code == 0, started
    outputs = [started.out]
    for args in (["list"], ["get", "cli-piped"], ["cleanup", "--dry-run", "--mode", "nightly"], ["stop", "cli-piped"],
                 ["history"], ["usage", "--by", "requestedBy"], ["events", "cli-piped"]):
        result = cli(*args, env=env, cwd=tmp_path)
        assert result.code == 0 and result.out, (args, result)
        outputs.append(result.out)
    lines = "\n".join(outputs).splitlines()
    assert [line for line in lines if line != line.rstrip()] == []
    assert any(re.fullmatch(r"cli-piped\s+Starting\s+Standard\s+20 min\s+\S.*ana", line) for line in lines), lines


def test_stop_and_extend_through_the_app_name_who_asked(app_host: Host, emulator: Emulator, tmp_path: Path) -> None:
    """The requester a start sends (--requested-by, else the user name) is sent by a stop and an extend too: the
    session's stoppedBy and the events' actor name them."""
    emulator.reset(startupSeconds=1)
    env = app_env(app_host)
    for sid, args, who in (("cli-stop-by-1", ["--requested-by", "ana"], "ana"),
                           ("cli-stop-by-2", [], getpass.getuser())):
        assert cli("start", "--id", sid, "--wait", "--poll", "1", env=env, cwd=tmp_path).code == 0
        assert cli("extend", sid, "--by", "5", "--reason", "more time", *args, env=env, cwd=tmp_path).code == 0
        stopped = cli("stop", sid, "--reason", "done", *args, "--json", env=env, cwd=tmp_path)
        assert stopped.code == 0, stopped
        assert (stopped.json["stoppedBy"], stopped.json["stopReason"]) == (who, "done"), stopped
        events = cli("events", sid, "--json", env=env, cwd=tmp_path).json["events"]
        assert [(e["type"], e["actor"]) for e in events if e["type"] in ("extended", "stopped")] == [
            ("extended", who), ("stopped", who)], events
        assert [e["detail"].get("reason") for e in events if e["type"] == "extended"] == ["more time"]
        shown = cli("events", sid, env=env, cwd=tmp_path).out
        assert re.search(rf"stopped\s+- -> Stopped\s+{who}\s+billedMinutes=", shown), shown


def test_keep_alive_changes_after_the_start(app_host: Host, emulator: Emulator, tmp_path: Path) -> None:
    """Written before the API had it (ExtendSessionRequest's keepAlive); an app without it is said to be too old."""
    emulator.reset(startupSeconds=1)
    env = app_env(app_host)
    assert cli("start", "--id", "cli-keep", "--wait", "--poll", "1", env=env, cwd=tmp_path).code == 0

    kept = cli("keep-alive", "cli-keep", "--reason", "demo tomorrow", "--requested-by", "ana", env=env, cwd=tmp_path)
    assert kept.code == 0, kept
    assert kept.out.startswith("Session cli-keep is kept alive: the nightly shutdown leaves it running"), kept
    assert re.search(r"Keep alive\s+yes", kept.out)
    nightly = cli("cleanup", "--dry-run", "--mode", "nightly", "--json", env=env, cwd=tmp_path).json
    assert "cli-keep" not in [a["id"] for a in nightly["stopped"]], nightly

    released = cli("keep-alive", "cli-keep", "--off", "--json", env=env, cwd=tmp_path)
    assert released.code == 0 and released.json["keepAlive"] is False, released
    said = cli("keep-alive", "cli-keep", "--off", env=env, cwd=tmp_path)
    assert said.out.startswith("Session cli-keep is no longer kept alive: the nightly shutdown stops it."), said
    nightly = cli("cleanup", "--dry-run", "--mode", "nightly", "--json", env=env, cwd=tmp_path).json
    assert "cli-keep" in [a["id"] for a in nightly["stopped"]], nightly
    events = cli("events", "cli-keep", "--json", env=env, cwd=tmp_path).json["events"]
    changes = [(e["actor"], e["detail"]) for e in events if e["type"] == "keepAlive"]
    assert changes == [("ana", {"keepAlive": True, "reason": "demo tomorrow"}),
                       (getpass.getuser(), {"keepAlive": False, "reason": None})], events


def nightly_cleanup(host: Host) -> dict[str, Any]:
    """The nightly shutdown now, through the API (``POST /api/cleanup?mode=nightly``): what it stopped and kept."""
    with host.client() as http:
        answer = http.post("/api/cleanup", params={"mode": "nightly"})
    assert answer.status_code == 200, answer.text[:300]
    report = answer.json()
    return {"stopped": {a["id"] for a in report["stopped"]}, "kept": {a["id"]: a["reason"] for a in report["kept"]}}


def test_overrides_from_the_cli_keep_sessions_through_the_nightly_shutdown_until_lifted(
        app_host: Host, emulator: Emulator, tmp_path: Path) -> None:
    """override add (a session for a duration, a label scope until an ISO time with an offset), list, remove: the
    nightly shutdown, run through the API, keeps what an override covers and stops it once the override is lifted."""
    emulator.reset(startupSeconds=60)
    env = app_env(app_host)
    for sid, labels in (("cli-ovr-kept", []), ("cli-ovr-scoped", ["--label", "team=night-shift"]),
                        ("cli-ovr-plain", ["--label", "team=day-shift"])):
        assert cli("start", "--id", sid, "--lease", "60", *labels, env=env, cwd=tmp_path).code == 0

    before = datetime.now(UTC)
    added = cli("override", "add", "--session", "cli-ovr-kept", "--until", "12h", "--reason", "render overnight",
                "--requested-by", "ana", env=env, cwd=tmp_path)
    assert added.code == 0, added
    kept_id = re.match(r"Override (ovr-[0-9a-f]{12}): the nightly shutdown leaves session cli-ovr-kept running "
                       r"until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(its lease still ends it\)\.\n", added.out)
    assert kept_id, added
    kept_id = kept_id.group(1)
    assert f"Lift it with: arr-sessions override remove {kept_id}\n" in added.out
    assert re.search(r"^Reason\s+render overnight$", added.out, re.MULTILINE), added
    assert re.search(r"^Until\s+.* UTC \(1[12] h \d+ min left\)$", added.out, re.MULTILINE), added

    scope_until = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)
    given = scope_until.astimezone(timezone(timedelta(hours=2))).strftime("%Y-%m-%dT%H:%M+02:00")  # an offset of its own
    scoped = cli("override", "add", "--label", "team=night-shift", "--until", given, "--json", env=env, cwd=tmp_path)
    assert scoped.code == 0, scoped
    scope = scoped.json
    assert (scope["labels"], scope["sessionId"], scope["requestedBy"]) == ({"team": "night-shift"}, None,
                                                                          getpass.getuser())
    assert datetime.fromisoformat(scope["until"]) == scope_until  # the offset was read, not dropped

    with app_host.client() as http:  # what the app keeps: the 12 hours counted from when the command ran
        stored = {o["id"]: o for o in http.get("/api/overrides").json()["overrides"]}
    assert {kept_id, scope["id"]} <= set(stored)
    assert stored[kept_id]["sessionId"] == "cli-ovr-kept" and stored[kept_id]["requestedBy"] == "ana"
    twelve = datetime.fromisoformat(stored[kept_id]["until"]) - before
    assert timedelta(hours=12) - timedelta(seconds=1) <= twelve <= timedelta(hours=12, seconds=30), twelve

    listed = cli("override", "list", env=env, cwd=tmp_path)
    assert listed.code == 0, listed
    lines = listed.out.splitlines()
    assert lines[0] == "Overrides of the nightly shutdown" and lines[1].split() == [
        "ID", "Keeps", "Until", "(UTC)", "Left", "Requested", "by", "Reason"], listed
    rows = [line for line in lines if line.startswith(("ovr-",))]
    mine = [row for row in rows if row.startswith((kept_id, scope["id"]))]
    assert mine[0].startswith(scope["id"]) and mine[1].startswith(kept_id), listed  # the longest first
    assert re.fullmatch(rf"{scope['id']}\s+sessions labelled team=night-shift\s+{scope_until:%Y-%m-%d %H:%M}\s+"
                        rf"(1 d 23 h|2 d 0 h)\s+{re.escape(getpass.getuser())}", mine[0]), listed
    assert re.fullmatch(rf"{kept_id}\s+session cli-ovr-kept\s+\d{{4}}-\d\d-\d\d \d\d:\d\d\s+1[12] h \d+ min\s+ana\s+"
                        r"render overnight", mine[1]), listed
    assert [line for line in lines if line != line.rstrip()] == []
    assert {kept_id, scope["id"]} <= {o["id"] for o in cli("override", "list", "--json", env=env,
                                                         cwd=tmp_path).json["overrides"]}

    night = nightly_cleanup(app_host)
    assert "cli-ovr-plain" in night["stopped"], night
    assert "cli-ovr-kept" not in night["stopped"] and "cli-ovr-scoped" not in night["stopped"], night
    assert night["kept"]["cli-ovr-kept"].startswith(f"override {kept_id} until "), night
    assert night["kept"]["cli-ovr-kept"].endswith("by ana: render overnight"), night
    assert night["kept"]["cli-ovr-scoped"].startswith(f"override {scope['id']} until "), night

    lifted = cli("override", "remove", kept_id, env=env, cwd=tmp_path)
    assert lifted.code == 0, lifted
    assert lifted.out.startswith(f"Lifted override {kept_id}: the next nightly shutdown stops session cli-ovr-kept, "
                                 "unless keepAlive or another override keeps it.\n"), lifted
    assert kept_id not in {o["id"] for o in cli("override", "list", "--json", env=env, cwd=tmp_path).json["overrides"]}
    again = cli("override", "remove", kept_id, env=env, cwd=tmp_path)
    assert again.code == 3, again
    assert again.err.startswith(f"Error: lifting override {kept_id}: Override not found"), again
    assert "lifted already, ended by itself, or never made" in again.err

    night = nightly_cleanup(app_host)
    assert "cli-ovr-kept" in night["stopped"] and "cli-ovr-scoped" not in night["stopped"], night
    gone = cli("override", "remove", scope["id"], "--json", env=env, cwd=tmp_path)
    assert gone.code == 0 and gone.json["id"] == scope["id"], gone
    assert "cli-ovr-scoped" in nightly_cleanup(app_host)["stopped"]
    assert cli("override", "list", env=env, cwd=tmp_path).out == (
        "No overrides: the nightly shutdown stops every session not kept alive.\n")


@pytest.mark.parametrize(("args", "words"), [
    (["override", "add", "--until", "3h"], "give exactly one of --session ID and --label KEY=VALUE"),
    (["override", "add", "--session", "s1", "--label", "a=b", "--until", "3h"], "give exactly one of --session"),
    (["override", "add", "--session", "s1", "--until", "tomorrow 09:00"], "--until must be a duration from now"),
    (["override", "add", "--session", "s1", "--until", "2020-01-01T09:00"], "--until must be in the future"),
    (["override", "add", "--session", "s1", "--until", "0h"], "--until must be later than now"),
    (["override", "add", "--session", "not a valid id", "--until", "1h"], "--session must be 1-256 letters"),
    (["override", "add", "--label", "team", "--until", "1h"], "--label must be KEY=VALUE"),
    (["override", "add", "--session", "s1"], "Missing option '--until'"),
    (["override", "remove", "../cleanup"], "ID must be an override id, 'ovr-' and 12 hex digits"),
])
def test_override_usage_errors_exit_2_before_anything_is_sent(app_host: Host, tmp_path: Path, args: list[str],
                                                              words: str) -> None:
    result = cli(*args, "-v", env=app_env(app_host), cwd=tmp_path)
    assert result.code == 2, result
    assert words in result.err, result
    assert "app POST" not in result.err and "app DELETE" not in result.err, result  # -v logs every call


def test_the_apps_limit_on_an_override_is_said_as_the_app_says_it(app_host: Host, tmp_path: Path) -> None:
    result = cli("override", "add", "--session", "s1", "--until", "40d", env=app_env(app_host), cwd=tmp_path)
    assert result.code == 3, result
    assert result.err.startswith("Error: adding the override: Invalid request - until must be at most 31 days ahead"), \
        result


# -- issue 22: warm pools and the budget -------------------------------------------------------------------------

EVERY_DAY = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
BUDGET = {"amount": 1, "timeZone": "UTC", "thresholds": [{"percent": 50, "action": "notify"},
                                                         {"percent": 90, "action": "refuse-starts"}]}


def closed_days() -> list[str]:
    """Days of the week that are not yesterday, today or tomorrow (UTC): a window on them is closed now, in any
    time zone."""
    today = datetime.now(UTC).weekday()
    return [day for i, day in enumerate(EVERY_DAY) if (i - today) % 7 not in (0, 1, 6)]


@pytest.fixture(scope="module")
def pool_host(emulator_process: Emulator, azurite: Azurite, table_name: str) -> Iterator[Host]:
    """An app with two warm pools: `cli-warm`, open all day every day, and `cli-shut`, whose window is closed today."""
    pools = [{"name": "cli-warm", "count": 2, "size": "Standard", "from": "00:00", "to": "00:00", "days": EVERY_DAY,
              "timeZone": "UTC"},
             {"name": "cli-shut", "count": 1, "size": "Premium", "from": "08:30", "to": "18:00",
              "days": closed_days(), "timeZone": "Europe/Berlin"}]
    host = start_host(function_app_env(emulator_process, azurite, f"{table_name}pools", ARR_POOLS=json.dumps(pools),
                                       ARR_RATE_STANDARD_PER_HOUR="6"), "function_app", "--no-timers")
    yield host
    stop_process(host.process)


@pytest.fixture(scope="module")
def budget_host(emulator_process: Emulator, azurite: Azurite, table_name: str) -> Iterator[Host]:
    """An app with a budget of 1.00 a month (Standard at 6.00 an hour: 10 minutes spend it): a warning at 50%, starts
    refused from 90%."""
    host = start_host(function_app_env(emulator_process, azurite, f"{table_name}budget", ARR_BUDGET=json.dumps(BUDGET),
                                       ARR_RATE_STANDARD_PER_HOUR="6"), "function_app", "--no-timers")
    yield host
    stop_process(host.process)


@contextlib.contextmanager
def answer_losing_proxy(upstream: str) -> Iterator[tuple[str, list[tuple[str, str | None]], list[dict[str, Any]]]]:
    """A proxy in front of the app that passes every call on, except that it hangs up on the first claim without
    its answer, after the app has claimed (as a connection lost on the way back does). Yields its URL, the claims it
    saw (path, Idempotency-Key) and the answers it kept from the command."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    claims: list[tuple[str, str | None]] = []
    lost: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length",
                                                                                   "connection")}
            answer = httpx.request(self.command, f"{upstream}{self.path}", headers=headers, content=body, timeout=60)
            if self.path.split("?")[0].endswith("/claim"):
                claims.append((self.path, self.headers.get("Idempotency-Key")))
                if len(claims) == 1:
                    lost.append(answer.json())
                    self.close_connection = True
                    return  # hang up: the command gets no answer
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in ("content-length", "connection", "transfer-encoding", "content-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = _forward

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", claims, lost
    finally:
        server.shutdown()


def pool_row(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"{name} "))


def test_pools_listed_and_claimed_from_the_cli_and_a_lost_answer_never_claims_twice(
        pool_host: Host, emulator: Emulator, tmp_path: Path) -> None:
    """`pool list` shows each pool (open or closed, Ready, starting, claimed, window, cost per hour); `pool claim`
    makes a Ready session the requester's and says how to stop it. A claim whose answer is lost is sent again with
    the same Idempotency-Key and gets the same session: two claims, one session. An empty pool and a closed one
    exit with 6; a pool the app does not have with 3; a name that cannot be a pool's with 2, before anything is
    sent."""
    emulator.reset(startupSeconds=0)
    env = app_env(pool_host)
    with pool_host.client() as http:
        assert http.post("/api/cleanup").status_code == 200  # the open pool fills
        wait_for(lambda: http.get("/api/pools").json()["pools"][0]["ready"] == 2, "cli-warm's two sessions Ready")

    listed = cli("pool", "list", env=env, cwd=tmp_path)
    assert listed.code == 0, listed
    lines = listed.out.splitlines()
    assert lines[0] == "Warm pools" and lines[1].split() == [
        "Pool", "Size", "Open", "Ready", "Starting", "Claimed", "Window", "Cost/hour"], listed
    assert re.fullmatch(r"cli-warm\s+Standard\s+open\s+2\s+0\s+0\s+always \(UTC\)\s+12\.00 USD",
                        pool_row(listed.out, "cli-warm")), listed
    assert re.fullmatch(r"cli-shut\s+Premium\s+closed\s+0\s+0\s+0\s+\S.* 08:30-18:00 \(Europe/Berlin\)\s+n/a",
                        pool_row(listed.out, "cli-shut")), listed
    assert [line for line in lines if line != line.rstrip()] == []
    # In a script bash exports its terminal's width as COLUMNS: a pipe still gets whole lines (they were folded at it).
    assert cli("pool", "list", env={**env, "COLUMNS": "80"}, cwd=tmp_path).out == listed.out
    pools = cli("pool", "list", "--json", env=env, cwd=tmp_path).json["pools"]
    assert [(p["name"], p["open"], p["costPerHour"]) for p in pools] == [("cli-warm", True, 12.0),
                                                                         ("cli-shut", False, None)]

    claimed = cli("pool", "claim", "cli-warm", "--lease", "45", "--requested-by", "ana", env=env, cwd=tmp_path)
    assert claimed.code == 0, claimed
    first = re.match(r"Claimed session (pool-cli-warm-\S+) from pool cli-warm for ana, \d+ minutes left on its "
                     r"lease\. It is billed until it is stopped\.\nStop it with: arr-sessions stop (\S+)\n", claimed.out)
    assert first and first.group(1) == first.group(2), claimed
    assert re.search(r"^Status\s+Ready$", claimed.out, re.MULTILINE), claimed
    assert re.search(r"^Requested by\s+ana$", claimed.out, re.MULTILINE), claimed
    with pool_host.client() as http:
        mine = http.get(f"/api/sessions/{first.group(1)}").json()
    assert (mine["requestedBy"], mine["status"]) == ("ana", "Ready") and mine["remainingMinutes"] >= 45, mine

    with answer_losing_proxy(pool_host.url) as (proxy, claims, lost):
        again = cli("pool", "claim", "cli-warm", "--requested-by", "ben", "-v", "--json",
                    env=clean_env(ARR_SESSIONS_APP_URL=proxy, ARR_SESSIONS_FUNCTION_KEY=FUNCTION_KEY), cwd=tmp_path)
    assert again.code == 0, again
    assert len(claims) == 2 and claims[0] == claims[1], claims  # sent twice, with one key
    assert (claims[0][1] or "").startswith("arr-sessions-cli-"), claims
    assert "sending it again with the same Idempotency-Key" in again.err, again
    assert again.json["id"] == lost[0]["id"] != first.group(1), (again.json, lost)  # what the lost answer had
    assert again.json["requestedBy"] == "ben"
    with pool_host.client() as http:
        (pool, _) = http.get("/api/pools").json()["pools"]
        mine = [s for s in http.get("/api/sessions").json()["sessions"] if s["requestedBy"] in ("ana", "ben")]
    assert (pool["ready"], pool["claimed"]) == (0, 2), pool  # one session each: the retry claimed nothing more
    assert sorted(s["requestedBy"] for s in mine) == ["ana", "ben"], mine

    empty = cli("pool", "claim", "cli-warm", env=env, cwd=tmp_path)
    assert empty.code == 6, empty
    assert empty.err.startswith("Error: claiming a session from pool cli-warm: Pool empty - pool cli-warm has no "
                                "Ready session to hand out now"), empty
    assert "The app asks to try again in 60 s." in empty.err and empty.out == "", empty
    closed = cli("pool", "claim", "cli-shut", env=env, cwd=tmp_path)
    assert closed.code == 6 and "(its window is closed)" in closed.err, closed

    unknown = cli("pool", "claim", "no-such-pool", env=env, cwd=tmp_path)
    assert unknown.code == 3, unknown
    assert unknown.err.startswith("Error: claiming a session from pool no-such-pool: Pool not found"), unknown
    assert "`arr-sessions pool list` shows the app's pools" in unknown.err
    for args, words in ((["Not_A_Pool"], "NAME must be a pool's name"), (["cli-warm", "--lease", "0"],
                                                                        "--lease must be more than 0 minutes")):
        refused = cli("pool", "claim", *args, "-v", env=env, cwd=tmp_path)
        assert refused.code == 2 and words in refused.err and "app POST" not in refused.err, refused


def test_the_budget_from_the_cli_and_the_start_it_refuses(budget_host: Host, app_host: Host, emulator: Emulator,
                                                          tmp_path: Path) -> None:
    """`budget` shows spent of the amount, the percentage, the thresholds crossed and whether starts are refused;
    once a refuse-starts threshold is crossed, `start` exits 3 with the app's 409 and points at `budget`. An app
    without a budget: exit 7, "no budget set"; without pools: `pool list` says there are none."""
    emulator.reset(startupSeconds=0)
    env = app_env(budget_host)
    before = cli("budget", env=env, cwd=tmp_path)
    assert before.code == 0, before
    assert re.search(r"^Budget\s+\d{4}-\d\d \(UTC\)$", before.out, re.MULTILINE), before
    assert re.search(r"^Spent\s+0\.00 of 1\.00 USD \(0%\)$", before.out, re.MULTILINE), before
    assert re.search(r"^Crossed\s+none$", before.out, re.MULTILINE) and re.search(r"^Starts\s+allowed$", before.out,
                                                                                  re.MULTILINE), before
    assert [line for line in before.out.splitlines() if line != line.rstrip()] == []

    assert cli("start", "--id", "cli-budget-1", "--lease", "120", env=env, cwd=tmp_path).code == 0
    emulator.advance(12 * 60)  # 12 minutes of Standard at 6.00 an hour: 1.20 of 1.00
    with budget_host.client() as http:
        assert http.post("/api/cleanup").status_code == 200  # the budget acts after a cleanup run
    after = cli("budget", env=env, cwd=tmp_path)
    assert after.code == 0, after
    assert re.search(r"^Spent\s+1\.\d\d of 1\.00 USD \(1\d\d(\.\d)?%\)$", after.out, re.MULTILINE), after
    assert re.search(r"^Crossed\s+50% \(notify\), 90% \(refuse-starts\)$", after.out, re.MULTILINE), after
    assert re.search(r'^Starts\s+refused: a start is answered 409 "Budget exceeded"$', after.out, re.MULTILINE), after
    assert re.search(r"^\s*90%\s+refuse-starts\s+yes$", after.out, re.MULTILINE), after
    view = cli("budget", "--json", env=env, cwd=tmp_path).json
    assert view["refusingStarts"] is True and [t["crossed"] for t in view["thresholds"]] == [True, True], view

    refused = cli("start", "--id", "cli-budget-2", env=env, cwd=tmp_path)
    assert refused.code == 3, refused
    assert refused.err.startswith("Error: starting the session: Budget exceeded - the budget's 90% threshold "
                                  "(refuse-starts) is crossed"), refused
    assert "`arr-sessions budget` shows the month's spend" in refused.err
    assert "cli-budget-2" not in [s["id"] for s in emulator.state()["sessions"]]

    none = cli("budget", env=app_env(app_host), cwd=tmp_path)
    assert none.code == 7 and none.out == "", none
    assert none.err.startswith("Error: reading the budget: no budget set: the app has no ARR_BUDGET"), none
    assert cli("budget", "--json", env=app_env(app_host), cwd=tmp_path).out == ""
    no_pools = cli("pool", "list", env=app_env(app_host), cwd=tmp_path)
    assert no_pools.code == 0 and no_pools.out == "No pools: the app has no ARR_POOLS.\n", no_pools
    assert cli("pool", "list", "--json", env=app_env(app_host), cwd=tmp_path).json == {"pools": []}


# -- schedules -----------------------------------------------------------------------------------------------------

def test_schedules_added_listed_and_removed_from_the_cli(app_host: Host, tmp_path: Path) -> None:
    """`schedule add` sends the schedule as the app reads it (weekdays from a range, a monthly day, holidays,
    fallbacks, labels, who) and prints it with its next session; `schedule list` shows each with its next Ready-by
    in its own time zone and the time-zone database; `schedule remove` deletes one. What the app refuses (an unknown
    time zone) exits 3, naming the field; what cannot be a schedule exits 2 before anything is sent."""
    env = app_env(app_host)
    with app_host.client() as http:
        for old in http.get("/api/schedules").json()["schedules"]:
            http.delete(f"/api/schedules/{old['id']}")
    assert cli("schedule", "list", env=env, cwd=tmp_path).out == "No schedules.\n"

    added = cli("schedule", "add", "--ready-by", "09:00", "--time-zone", "Europe/Berlin", "--duration", "1:00:00",
                "--days", "mon-wed,Fri", "--except", "2026-12-24", "--except", "2026-12-31", "--fallback", "premium",
                "--label", "team=design", "--requested-by", "design-review", env=env, cwd=tmp_path)
    assert added.code == 0, added
    made = re.match(r"Schedule (sch-[0-9a-f]{12}): Standard Ready by 09:00 Europe/Berlin for 60 min, Monday, Tuesday, "
                    r"Wednesday, Friday\. Saving it started nothing\.\nRemove it with: arr-sessions schedule remove "
                    r"(sch-[0-9a-f]{12})\n", added.out)
    assert made and made.group(1) == made.group(2), added
    weekly = made.group(1)
    assert re.search(r"^Except\s+2026-12-24, 2026-12-31$", added.out, re.MULTILINE), added
    assert re.search(r"^Next\s+Ready by \d{4}-\d\d-\d\d 09:00 \+0[12]:00: session sched-[0-9a-f]{12}-\d{8}, created at "
                     r"0[78]:\d\d \+0[12]:00, [\d.]+ min ahead$", added.out, re.MULTILINE), added
    with app_host.client() as http:
        stored = http.get(f"/api/schedules/{weekly}").json()
        database = http.get("/api/schedules").json()["timeZoneDatabase"]
    assert (stored["weekdays"], stored["exceptions"], stored["fallbacks"], stored["labels"], stored["requestedBy"],
            stored["durationMinutes"], stored["size"]) == (["Mon", "Tue", "Wed", "Fri"], ["2026-12-24", "2026-12-31"],
                                                           ["Premium"], {"team": "design"}, "design-review", 60,
                                                           "Standard"), stored

    monthly = cli("schedule", "add", "--ready-by", "16:30", "--time-zone", "America/New_York", "--duration", "90",
                  "--monthly", "last Fri", "--size", "premium", "--disabled", "--json", env=env, cwd=tmp_path)
    assert monthly.code == 0, monthly
    view = monthly.json
    assert (view["monthly"], view["enabled"], view["next"], view["requestedBy"]) == (
        {"nth": -1, "weekday": "Fri"}, False, None, getpass.getuser()), view

    listed = cli("schedule", "list", env=env, cwd=tmp_path)
    assert listed.code == 0, listed
    lines = listed.out.splitlines()
    assert lines[0] == f"Schedules (local times from {database})" and database.startswith("tzdata "), listed
    assert lines[1].split() == ["ID", "Schedule", "Next", "Ready", "by", "(local)", "Time", "zone", "Requested", "by"]
    row = next(line for line in lines if line.startswith(weekly))
    assert re.search(r"Friday\s+\d{4}-\d\d-\d\d 09:00 \+0[12]:00\s+Europe/Berlin\s+design-review$", row), listed
    row = next(line for line in lines if line.startswith(view["id"]))
    assert re.search(r"Premium Ready by 16:30 America/New_York for 90 min, last Friday of the month\s+disabled\s+"
                     r"America/New_York", row), listed
    assert [line for line in lines if line != line.rstrip()] == []
    assert {s["id"] for s in cli("schedule", "list", "--json", env=env, cwd=tmp_path).json["schedules"]} == {
        weekly, view["id"]}

    wrong_zone = cli("schedule", "add", "--ready-by", "09:00", "--time-zone", "Europe/Amsterdamm", "--duration", "60",
                     "--days", "Mon", env=env, cwd=tmp_path)
    assert wrong_zone.code == 3, wrong_zone
    assert wrong_zone.err.startswith("Error: adding the schedule: Invalid request"), wrong_zone
    assert "timeZone: Value error, unknown time zone 'Europe/Amsterdamm'" in wrong_zone.err

    removed = cli("schedule", "remove", weekly, env=env, cwd=tmp_path)
    assert removed.code == 0, removed
    assert removed.out.startswith(f"Removed schedule {weekly}: it starts nothing more; the sessions it started run on "
                                  "until their lease ends.\n"), removed
    again = cli("schedule", "remove", weekly, env=env, cwd=tmp_path)
    assert again.code == 3 and again.err.startswith(f"Error: removing schedule {weekly}: Schedule not found"), again
    assert "removed already, or never made" in again.err
    assert cli("schedule", "remove", view["id"], env=env, cwd=tmp_path).code == 0
    assert cli("schedule", "list", env=env, cwd=tmp_path).out == "No schedules.\n"


SCHEDULE = ["schedule", "add", "--ready-by", "09:00", "--time-zone", "UTC", "--duration", "60"]


@pytest.mark.parametrize(("args", "words"), [
    ([*SCHEDULE], "give exactly one of --days (weekdays) and --monthly"),
    ([*SCHEDULE, "--days", "Mon", "--monthly", "last Fri"], "give exactly one of --days"),
    ([*SCHEDULE, "--days", "Mon-Funday"], "--days must name weekdays"),
    ([*SCHEDULE, "--days", "Fri-Mon"], "a range goes from Mon towards Sun"),
    ([*SCHEDULE, "--monthly", "5 Fri"], "--monthly must be the nth weekday of the month"),
    ([*SCHEDULE, "--days", "Mon", "--except", "24.12.2026"], "--except must be a local date, YYYY-MM-DD"),
    ([*SCHEDULE[:3], "9am", *SCHEDULE[4:], "--days", "Mon"], "--ready-by must be a local time, HH:MM"),
    ([*SCHEDULE[:-1], "0", "--days", "Mon"], "--duration must be more than 0 minutes"),
    (["schedule", "add", "--time-zone", "UTC", "--duration", "60", "--days", "Mon"], "Missing option '--ready-by'"),
    (["schedule", "remove", "../cleanup"], "ID must be a schedule id, 'sch-' and 12 hex digits"),
])
def test_schedule_usage_errors_exit_2_before_anything_is_sent(app_host: Host, tmp_path: Path, args: list[str],
                                                              words: str) -> None:
    result = cli(*args, "-v", env=app_env(app_host), cwd=tmp_path)
    assert result.code == 2, result
    assert words in result.err, result
    assert "app POST" not in result.err and "app DELETE" not in result.err, result


def test_answers_of_other_app_versions_and_half_done_starts() -> None:
    """In-process, with canned answers: an app without the events endpoint, and a start ARR left unanswered."""
    import asyncio

    from arr_cli.config import AppConfig
    from arr_cli.errors import ServiceFailure, UsageError
    from arr_cli.targets import StartRequest
    from arr_cli.targets.app import AppTarget

    def app(request: httpx.Request) -> httpx.Response:
        assert request.headers["x-functions-key"] == "k" and "code=" not in str(request.url)
        if request.url.path.endswith("/events"):
            return httpx.Response(404, text="Not Found")  # an app from before the endpoint
        if request.method == "PATCH":  # an app from before keepAlive could change
            return httpx.Response(400, headers={"Content-Type": "application/problem+json"}, json={
                "title": "Invalid request", "status": 400, "detail": "invalid value for keepAlive",
                "errors": [{"field": "keepAlive", "message": "Extra inputs are not permitted"}]})
        return httpx.Response(502, headers={"Content-Type": "application/problem+json", "Retry-After": "5"},
                              json={"title": "ARR did not answer", "status": 502, "sessionId": "arr-half-started",
                                    "correlationId": "cv-42"})

    async def call(method: str, *args: Any, **kwargs: Any) -> None:
        target = AppTarget(AppConfig("http://old-app", "k"), transport=httpx.MockTransport(app))
        try:
            await getattr(target, method)(*args, **kwargs)
        finally:
            await target.aclose()

    with pytest.raises(ServiceFailure, match="this app version has no events endpoint"):
        asyncio.run(call("events", "s1"))
    with pytest.raises(UsageError, match="this app version cannot change keepAlive after the start"):
        asyncio.run(call("keep_alive", "s1", True, reason=None, requested_by="ana"))
    with pytest.raises(ServiceFailure) as caught:
        asyncio.run(call("start", StartRequest()))
    assert (caught.value.status, caught.value.correlation_id, caught.value.retry_after) == (502, "cv-42", 5)
    assert "arr-sessions get arr-half-started --wait" in (caught.value.hint or "")


def test_a_stop_sends_who_asked_and_an_app_from_before_requested_by_still_stops() -> None:
    """In-process, with canned answers: the body of a stop; an older app refuses requestedBy as an extra input,
    and the stop is sent again without it (and logged with -v)."""
    import asyncio

    from arr_cli.config import AppConfig
    from arr_cli.targets.app import AppTarget

    def answering(knows_requested_by: bool) -> tuple[list[dict[str, Any]], httpx.MockTransport]:
        bodies: list[dict[str, Any]] = []

        def app(request: httpx.Request) -> httpx.Response:
            body = json.loads(request.content)
            bodies.append(body)
            if "requestedBy" in body and not knows_requested_by:
                return httpx.Response(400, headers={"Content-Type": "application/problem+json"}, json={
                    "title": "Invalid request", "status": 400, "detail": "invalid value for requestedBy",
                    "errors": [{"field": "requestedBy", "message": "Extra inputs are not permitted"}]})
            return httpx.Response(200, json={"id": "s1", "status": "Stopped", "stoppedBy": body.get("requestedBy")})

        return bodies, httpx.MockTransport(app)

    async def stop(transport: httpx.MockTransport) -> Any:
        target = AppTarget(AppConfig("http://app", "k"), transport=transport)
        try:
            return await target.stop("s1", reason="done", requested_by="ana")
        finally:
            await target.aclose()

    bodies, transport = answering(knows_requested_by=True)
    assert asyncio.run(stop(transport))["stoppedBy"] == "ana"
    assert bodies == [{"reason": "done", "requestedBy": "ana"}]
    bodies, transport = answering(knows_requested_by=False)
    assert asyncio.run(stop(transport))["status"] == "Stopped"
    assert bodies == [{"reason": "done", "requestedBy": "ana"}, {"reason": "done"}]


def test_importing_the_function_app_imports_no_cli() -> None:
    code = ("import sys, function_app; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'rich', 'arr_cli', 'click'}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          env=clean_env())
    assert done.stdout.strip() == "[]"
    deployed = (ROOT / "requirements.txt").read_text()
    assert not re.search(r"^(typer|rich)\b", deployed, re.MULTILINE)


# -- in a terminal ---------------------------------------------------------------------------------------------

class Terminal:
    """A 120x30 terminal (tmux on a socket of its own) with a shell in ``cwd``, where a person types commands."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.socket = str(cwd / "tmux.sock")
        rc = cwd / "bashrc"
        rc.write_text(f"PS1='$ '\nexport PATH={BIN}:$PATH\nunset HISTFILE\n")
        self._tmux("new-session", "-d", "-x", "120", "-y", "30", "-s", "cli", "-c", str(cwd),
                   f"bash --noprofile --rcfile {rc} -i", env=env)

    def _tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        return subprocess.run([TMUX, "-S", self.socket, *args], capture_output=True, text=True, check=True,
                              env=env or clean_env(), timeout=10).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "cli")

    def type(self, line: str) -> None:
        self._tmux("send-keys", "-t", "cli", "-l", line)
        self._tmux("send-keys", "-t", "cli", "Enter")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "cli", *keys)

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        """The screen once ``pattern`` shows on it."""
        def showing() -> str | None:
            screen = self.screen()
            return screen if re.search(pattern, screen, re.MULTILINE) else None

        return wait_for(showing, lambda: f"{pattern!r} showed; the screen:\n{self.screen()}", timeout=timeout,
                        interval=0.1)

    def close(self) -> None:
        subprocess.run([TMUX, "-S", self.socket, "kill-server"], capture_output=True, check=False, timeout=10)


@contextlib.contextmanager
def open_terminal(cwd: Path, env: dict[str, str]) -> Iterator[Terminal]:
    """A terminal with a shell at its prompt in ``cwd`` whose environment is ``env`` (so that no key is typed on
    the screen); its tmux server is ended afterwards, whatever happened."""
    if not Path(TMUX).exists():
        pytest.fail(f"{TMUX} is missing: apt-get install tmux")
    term = Terminal(cwd, env)
    try:
        term.wait_for(r"^\$", timeout=10)  # capture-pane drops the prompt's trailing space
        yield term
    finally:
        term.close()


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    """A terminal with a shell at its prompt in ``tmp_path``, no ARR or app setting in its environment."""
    with open_terminal(tmp_path, clean_env()) as term:
        yield term


@pytest.fixture(scope="module")
def paced_app_host(emulator_process: Emulator, azurite: Azurite, table_name: str) -> Iterator[Host]:
    """A second function app whose Retry-After while a session starts is 3 s (the module's app asks for 1 s)."""
    host = start_host(function_app_env(emulator_process, azurite, f"{table_name}paced", ARR_POLL_SECONDS="3"),
                      "function_app", "--no-timers")
    yield host
    stop_process(host.process)


def save_capture(name: str, *screens: str) -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / name).write_text("\n\n".join(s.rstrip() for s in screens) + "\n")


def test_a_person_watches_a_start_until_ready(emulator: Emulator, tmp_path: Path, terminal: Terminal) -> None:
    emulator.reset(startupSeconds=5)
    ps1_config(tmp_path, emulator)
    term = terminal
    term.type("arr-sessions start --wait --poll 2 --id demo-0001; echo \"[exit code $?]\"")

    during = term.wait_for(r"Starting  0:0[2-4] elapsed  next check in \d s")
    assert re.search(r"demo-0001  Starting  0:0\d elapsed  next check in [12] s \(every 2 s\)", during), during
    assert "Ctrl-C stops waiting; the session keeps running." in during

    after = term.wait_for(r"^\[exit code \d+\]")
    assert "[exit code 0]" in after, after
    assert re.search(r"Ready after 0:0[5-9] \(\d checks\)\.", after), after
    assert re.search(r"Status\s+Ready", after) and re.search(r"Connect\s+arr\S+\.mixedreality\.azure\.com:\d+", after)
    assert re.search(r"Lease\s+30 min, 30 left", after)
    assert "next check in" not in after and "Ctrl-C" not in after  # the live display is gone

    term.type("arr-sessions list; arr-sessions stop demo-0001 | head -3")
    listed = term.wait_for(r"^Status\s+Stopped")
    assert re.search(r"demo-0001\s+Ready\s+Standard\s+30 min\s+30 min", listed), listed
    for secret in SECRETS:
        assert secret not in during + after + listed
    save_capture("cli-tmux-ready.txt", during, listed)


def test_a_person_presses_ctrl_c_while_waiting(emulator: Emulator, tmp_path: Path, terminal: Terminal) -> None:
    emulator.reset(startupSeconds=120)
    ps1_config(tmp_path, emulator)
    term = terminal
    term.type("arr-sessions start --wait --id demo-0002")

    during = term.wait_for(r"demo-0002  Starting  0:0[1-9] elapsed  next check in \d+ s \(every 10 s\)")
    term.keys("C-c")
    term.wait_for(r"keeps running[^$]*\n\$\s*$")
    term.type("echo \"[exit code $?]\"")
    after = term.wait_for(r"^\[exit code \d+\]")
    assert "[exit code 130]" in after, after
    assert ("Interrupted. Session demo-0002 keeps running (it is billed). Stop it with: arr-sessions stop demo-0002"
            in after.replace("\n", ""))
    assert "Traceback" not in after and "next check in" not in after
    assert emulated(emulator, "demo-0002")["status"] == "Starting"
    save_capture("cli-tmux-ctrl-c.txt", during, after)


def test_a_person_waits_through_the_app_at_its_pace_and_stops_twice(paced_app_host: Host, emulator: Emulator,
                                                                    tmp_path: Path) -> None:
    """--poll 1 through an app that asks for 3 s: the live line says both from the first moment; a second stop
    says the session had already ended."""
    emulator.reset(startupSeconds=4)
    with open_terminal(tmp_path, app_env(paced_app_host)) as term:
        term.type("arr-sessions start --wait --poll 1 --id tmux-paced | head -1; "
                  "arr-sessions stop tmux-paced | head -1; arr-sessions stop tmux-paced | head -1")
        during = term.wait_for(r"tmux-paced  Starting  0:0[0-2] elapsed  next check in")
        assert re.search(r"tmux-paced  Starting  0:0[0-2] elapsed  next check in \d s "
                         r"\(every 1 s, or as the app asks: 3 s\)", during), during
        after = term.wait_for(r"Nothing to stop\.")
        save_capture("cli-tmux-paced.txt", during, after)
    assert re.search(r"^Ready after 0:0[4-9] \(2 checks\)\.$", after, re.MULTILINE), after  # at 3 s, 6 s
    assert re.search(r"^Stopped tmux-paced\.$", after, re.MULTILINE), after
    assert re.search(r"^Session tmux-paced had already ended: Stopped at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\. "
                     r"Nothing to stop\.$", after, re.MULTILINE), after
    for secret in SECRETS:
        assert secret not in during + after

    emulator.reset(startupSeconds=4)  # piped, one line, with the same words
    piped = cli("start", "--wait", "--poll", "1", "--id", "cli-paced", env=app_env(paced_app_host), cwd=tmp_path)
    assert piped.code == 0, piped
    assert piped.err.startswith("[0:00] cli-paced: Starting (checking every 1 s, or as the app asks: 3 s)\n"), piped
    assert "(checking every 1 s)" not in piped.err



# -- what nobody controls: files and answers that never end, or are built to break the terminal (issue 19.2) -----

ADDRESS_SPACE = 1024**3  # the CLI needs about 50 MB; an endless read hits this instead of the machine's memory
RSS_MARGIN_MB = 150  # what the CLI may peak at beyond its own --help, whatever a file or an answer holds (16 MiB
# answers included); relative, since coverage's tracer (make test) adds its own hundreds of MB to every process
CALL_LIMIT = 2  # seconds: ARR_SESSIONS_CALL_TIMEOUT as the trickle tests set it
TRICKLE_SECONDS = 3.0  # one byte every 3 s: every read is quick, only a limit on the whole exchange ends it
DEPTH = 30000
HUGE = 300 * 1024 * 1024
TITLE = "\x1b]0;pwned\x07\x1b[2J"  # sets the terminal's title and clears the screen, if it reaches a terminal
RAW = ("\x1b", "\x07", "\x9b", "\u202e")  # ESC, BEL, a C1 CSI, a right-to-left override


class Bounded(Result):
    """A run's result, how long it took and its peak RSS."""

    def __init__(self, code: int, out: str, err: str, seconds: float, rss_mb: float) -> None:
        self.code, self.out, self.err, self.seconds, self.rss_mb = code, out, err, seconds, rss_mb

    def __repr__(self) -> str:
        return f"{super().__repr__()}\n--- {self.seconds:.1f} s, peak RSS {self.rss_mb:.0f} MB"


def cli_bounded(*args: str, env: dict[str, str], cwd: Path, timeout: float = 20) -> Bounded:
    """``arr-sessions ARGS`` in 1 GiB of address space (``prlimit --as``), killed after ``timeout`` s; its peak
    RSS from the kernel (``wait4``)."""
    import threading

    process = subprocess.Popen(["prlimit", f"--as={ADDRESS_SPACE}", str(CLI), *args], env=env, cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = time.monotonic()
    killer = threading.Timer(timeout, process.kill)
    killer.start()
    output: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda name=name, stream=stream: output.__setitem__(name, stream.read()))
               for name, stream in (("out", process.stdout), ("err", process.stderr))]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    killer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    assert seconds < timeout, f"arr-sessions {' '.join(args)} was still running after {timeout} s"
    result = Bounded(process.returncode, output["out"].decode(errors="replace"), output["err"].decode(errors="replace"),
                     seconds, usage.ru_maxrss / 1024)
    for secret in SECRETS:
        assert secret not in result.out + result.err
    return result


def assert_a_message(result: Bounded, code: int, *words: str) -> None:
    """Exit ``code``, ``Error: ...`` naming ``words``, no traceback, no raw control character, a small RSS."""
    assert result.code == code, result
    assert result.err.startswith("Error: ") and "Traceback" not in result.err, result
    for word in words:
        assert word in result.err, result
    assert not any(c in result.out + result.err for c in RAW), result
    assert result.rss_mb < max_rss_mb(), result


@functools.cache
def max_rss_mb() -> float:
    """The CLI's peak RSS for ``--help`` in this environment, plus the margin."""
    with tempfile.TemporaryDirectory() as cwd:
        return cli_bounded("--help", env=clean_env(), cwd=Path(cwd)).rss_mb + RSS_MARGIN_MB


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "/dev/urandom", "directory", "default /dev/zero"])
def test_an_arrconfig_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    """Before: a FIFO blocked for ever, /dev/zero grew to gigabytes (here: MemoryError under 1 GiB)."""
    path = tmp_path / "arrconfig.json"
    not_a_regular_file(path, kind.split()[-1])
    args = ["list"] if kind.startswith("default") else ["list", "--config", str(path)]
    result = cli_bounded(*args, env=clean_env(), cwd=tmp_path, timeout=15)
    assert_a_message(result, 2, f"{path}: is not a regular file")
    assert result.seconds < 5, result


@pytest.mark.parametrize(("content", "words"), [
    ("[" * DEPTH + "]" * DEPTH, "nested more than"),
    ('{"accountSettings": {}}' + " " * (2 * 1024 * 1024), "larger than 1 MiB"),
])
def test_an_arrconfig_too_deep_or_too_large_is_a_message(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "arrconfig.json"
    path.write_text(content)
    assert_a_message(cli_bounded("list", "--config", str(path), env=clean_env(), cwd=tmp_path), 2, words)


ACCOUNT = "00000000-0000-0000-0000-00000000bad1"
ESCAPING_SESSION = {  # the app's session view, every text field built to reach the terminal raw
    "id": "s1", "status": "Ready", "size": "Standard", "leaseMinutes": 60, "remainingMinutes": 50,
    "hostname": "arr\u202eexample", "handshakePort": 50389, "createdAt": "2026-11-01T10:00:00Z",
    "requestedBy": TITLE, "reason": "why\x9b31m", "labels": {"k": TITLE},
    "error": {"code": "Boom\x1b[31m", "message": TITLE}}
ESCAPING_ARR_SESSION = {  # ARR's shape of the same
    "id": "s1", "status": "Ready", "size": "Standard", "maxLeaseTimeMinutes": 60, "elapsedTimeMinutes": 10,
    "hostname": "arr\u202eexample", "handshakePort": 50389, "teraflops": 8.1,
    "creationTime": "2026-11-01T10:00:00Z", "error": {"code": "Boom\x1b[31m", "message": TITLE}}


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    """One server on a free loopback port, in the role of the app (``/<mode>/api/...``), of ARR
    (``/<mode>/accounts/...``) and of the STS (``/sts/...``, which hands out a token). Each mode answers every
    call the same bad way: ``wrong-type`` (``{"sessions": "notalist"}``, a session whose teraflops are a string),
    ``deep`` (30000 levels), ``huge`` (300 MB), ``trickle`` (a byte every 3 s), ``escapes`` (terminal escapes and
    bidi overrides in every text, an error's title included)."""
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    token = "e30." + base64.urlsafe_b64encode(json.dumps({"exp": time.time() + 3600}).encode()).decode() + ".x"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _json(self, status: int, body: Any, content_type: str = "application/json") -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # one branch per bad answer
            mode, path = self.path.split("?")[0].split("/", 2)[1], self.path.split("?")[0]
            is_arr, listing = "/accounts/" in path, path.endswith("/sessions")
            try:
                if mode == "sts":
                    self._json(200, {"AccessToken": token})
                elif mode == "wrong-type":
                    self._json(200, {"sessions": "notalist"} if listing else
                               {**(ESCAPING_ARR_SESSION if is_arr else ESCAPING_SESSION), "teraflops": "lots",
                                "error": None, "hostname": "h", "requestedBy": None, "reason": None, "labels": {}})
                elif mode == "deep":
                    body = b'{"sessions": ' + b"[" * DEPTH + b"]" * DEPTH + b"}"
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                elif mode == "huge":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: %d\r\n\r\n" % HUGE)
                    self.wfile.write(b'{"sessions": [')
                    chunk = b" " * (1024 * 1024)
                    for _ in range(HUGE // len(chunk)):
                        self.wfile.write(chunk)
                elif mode == "trickle":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: 100\r\n\r\n")
                    for _ in range(100):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(TRICKLE_SECONDS)
                elif mode == "escapes" and is_arr:
                    if listing:
                        self._json(200, {"sessions": [ESCAPING_ARR_SESSION,
                                                      {**ESCAPING_ARR_SESSION, "id": "s2\u202e\x1b[2J"}]})
                    elif path.endswith("/s1"):
                        self._json(200, ESCAPING_ARR_SESSION)
                    else:
                        self._json(400, {"error": {"code": "Bad\x1b[2J", "message": TITLE + "\u202e"}})
                elif mode == "escapes":
                    if listing:
                        self._json(200, {"sessions": [ESCAPING_SESSION]})
                    elif path.endswith("/s1"):
                        self._json(200, ESCAPING_SESSION)
                    else:
                        self._json(404, {"type": "about:blank", "title": TITLE, "status": 404,
                                         "detail": "\u202enot found", "sessionId": TITLE,
                                         "correlationId": "cv\x1b[2J"}, "application/problem+json")
                else:
                    self._json(404, {})
            except OSError:
                pass  # the CLI hung up, as it should
            self.close_connection = True

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def hostile_app(hostile: str, mode: str, **extra: str) -> dict[str, str]:
    return clean_env(ARR_SESSIONS_APP_URL=f"{hostile}/{mode}", **extra)


def hostile_arr(hostile: str, mode: str, **extra: str) -> dict[str, str]:
    return clean_env(ARR_ACCOUNT_ID=ACCOUNT, ARR_ACCOUNT_KEY="k", ARR_STS_ENDPOINT=f"{hostile}/sts",
                     ARR_ENDPOINT=f"{hostile}/{mode}", **extra)


@pytest.mark.parametrize("target", ["app", "arr"])
@pytest.mark.parametrize(("mode", "args", "words"), [
    ("wrong-type", ["list"], "sessions"),
    ("wrong-type", ["list", "--json"], "sessions"),
    ("wrong-type", ["get", "s1"], "teraflops"),
    ("deep", ["list"], "nested"),
    ("huge", ["list"], "larger than 16 MiB"),
])
def test_an_answer_that_cannot_be_read_is_a_message_and_exit_5(hostile: str, tmp_path: Path, target: str, mode: str,
                                                                 args: list[str], words: str) -> None:
    """Before, through the app: a traceback and exit 1 (which means "the session ended"), a 300 MB answer read
    whole (here: MemoryError under 1 GiB). Directly to ARR, a deep answer was a traceback too."""
    env = hostile_app(hostile, mode) if target == "app" else hostile_arr(hostile, mode)
    result = cli_bounded(*args, env=env, cwd=tmp_path)
    said_by_arr_core = target == "arr" and mode != "huge"  # ARR's client says only "without a session ... it can read"
    assert_a_message(result, 5, "could not be read", *([] if said_by_arr_core else [words]))
    assert result.seconds < 10, result


@pytest.mark.parametrize("target", ["app", "arr"])
def test_an_answer_that_trickles_in_ends_within_the_call_limit(hostile: str, tmp_path: Path, target: str) -> None:
    """A byte every 3 s: no read waits long, so only a limit on the whole exchange ends it. Before, through the app,
    `list` waited past 130 s (here: killed after 20 s). ARR directly retries a call that timed out once."""
    limit = {"ARR_SESSIONS_CALL_TIMEOUT": str(CALL_LIMIT)}
    env = hostile_app(hostile, "trickle", **limit) if target == "app" else hostile_arr(hostile, "trickle", **limit)
    result = cli_bounded("list", env=env, cwd=tmp_path)
    assert_a_message(result, 3, f"the app did not answer within {CALL_LIMIT} s" if target == "app"
                     else "ARR did not answer in time")
    calls = 1 if target == "app" else 2
    assert CALL_LIMIT * calls - 0.5 < result.seconds < CALL_LIMIT * calls + 3, result


@pytest.mark.parametrize("target", ["app", "arr"])
@pytest.mark.parametrize("args", [["list"], ["get", "s1"], ["get", "nope"], ["list", "--json"], ["get", "s1", "-v"]])
def test_what_a_service_says_reaches_the_terminal_with_its_control_characters_escaped(
        hostile: str, tmp_path: Path, target: str, args: list[str]) -> None:
    """Before, a problem's title "\\x1b]0;pwned\\x07\\x1b[2J" set the terminal's title and cleared it."""
    env = hostile_app(hostile, "escapes") if target == "app" else hostile_arr(hostile, "escapes")
    result = cli_bounded(*args, env=env, cwd=tmp_path)
    shown = result.out + result.err
    assert not any(c in shown for c in RAW), result
    assert "Traceback" not in shown and result.rss_mb < max_rss_mb(), result
    if args[1:] == ["nope"]:
        assert result.code == 3, result
        escaped = r"\x1b]0;pwned\x07\x1b[2J" if target == "app" else r"Bad\x1b[2J"
        assert escaped in result.err and r"\u202e" in result.err, result
    elif "--json" in args:
        assert result.code == 0 and result.json["sessions"][0]["error"]["message"] == TITLE, result
        assert "\\u202e" in result.out, result  # escaped as JSON escapes: the values stay what the service said
    elif args == ["list"]:  # the app's table shows who asked; ARR's, a second session's id
        assert result.code == 0, result
        assert (r"\x1b]0;pwned\x07\x1b[2J" if target == "app" else r"s2\u202e\x1b[2J") in result.out, result
    else:
        assert result.code == 0, result
        assert r"arr\u202eexample" in result.out and r"\x1b]0;pwned\x07\x1b[2J" in result.out, result
