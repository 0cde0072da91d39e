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
                                  ["keep-alive", "x"], ["keep-alive", "x", "--off"]])
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

        def do_GET(self) -> None:  # noqa: C901 - one branch per bad answer
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
