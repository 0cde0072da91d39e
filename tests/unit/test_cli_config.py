"""The CLI's configuration: RenderingSession.ps1's arrconfig.json, the environment and flags, and the values in
them (time spans, domains, leases), parsed without any service; the wait's pacing on a fake clock; and what is
printed, as pure logic: the options before or after the command, the app's errors, the log's paths, tables."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from arr_cli.config import (
    AppConfig,
    DirectConfig,
    Flags,
    duration_seconds,
    lease_minutes,
    load_arrconfig,
    rendering_url,
    resolve,
    sts_url,
    timespan_minutes,
)
from arr_cli.errors import ConfigError, UsageError
from arr_cli.targets import Poll
from arr_cli.waiting import Tick, wait_for_session

from .harness import FakeClock

ACCOUNT = "00000000-0000-0000-0000-0000000000a1"

# The shape of Scripts/arrconfig.json in Azure/azure-remote-rendering (2023 and later), placeholders as shipped,
# saved with a byte order mark as the repository's file is.
PS1_SAMPLE = {
    "accountSettings": {
        "arrAccountId": "<fill in the account ID from the Azure Portal>",
        "arrAccountKey": "<fill in the account key from the Azure Portal>",
        "arrAccountDomain": "<select from available regions: australiaeast, eastus, eastus2, japaneast, northeurope, "
                            "southcentralus, southeastasia, uksouth, westeurope, westus2 or specify the full url>",
    },
    "renderingSessionSettings": {
        "remoteRenderingDomain": "<select from available regions: australiaeast, eastus, eastus2, japaneast, "
                                 "northeurope, southcentralus, southeastasia, uksouth, westeurope, westus2 or specify "
                                 "the full url>",
        "vmSize": "<standard or premium>",
        "maxLeaseTime": "<hh:mm:ss>",
    },
    "assetConversionSettings": {
        "resourceGroup": "<resource group which contains the storage account you created, only needed when "
                         "uploading or generating SAS>",
        "storageAccountName": "<name of the storage account you created>",
        "blobInputContainerName": "<input container inside the storage container>",
        "blobOutputContainerName": "<output container inside the storage container>",
        "localAssetDirectoryPath": "<fill in a path to a local directory containing your asset>",
        "inputFolderPath": "<optional: base folderpath in the input container for asset upload>",
        "inputAssetPath": "<the path to the asset under inputcontainer/inputfolderpath pointing to the input asset>",
        "outputFolderPath": "<optional: base folderpath in the output container>",
        "outputAssetFileName": "<optional: filename for the converted asset>",
    },
}


def write(tmp_path: Path, data: Any, *, bom: bool = True, name: str = "arrconfig.json") -> Path:
    path = tmp_path / name
    text = data if isinstance(data, str) else json.dumps(data, indent=4)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def filled(**changes: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(PS1_SAMPLE))
    data["accountSettings"] |= {"arrAccountId": ACCOUNT, "arrAccountKey": "the-key", "arrAccountDomain": "eastus"}
    data["renderingSessionSettings"] |= {"remoteRenderingDomain": "westeurope", "vmSize": "standard",
                                         "maxLeaseTime": "4:0:0"}
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        data[section][key] = value
    return data


# -- arrconfig.json --------------------------------------------------------------------------------------------

def test_the_scripts_sample_with_its_placeholders_is_all_unset(tmp_path: Path) -> None:
    settings = load_arrconfig(write(tmp_path, PS1_SAMPLE))
    assert (settings.account_id, settings.account_key, settings.sts_endpoint, settings.endpoint, settings.size,
            settings.lease_minutes) == (None, None, None, None, None, None)


def test_the_sample_alone_names_every_missing_field(tmp_path: Path) -> None:
    write(tmp_path, PS1_SAMPLE)
    with pytest.raises(UsageError) as caught:
        resolve(Flags(), {}, tmp_path)
    for field in ("accountSettings.arrAccountId", "accountSettings.arrAccountDomain",
                  "renderingSessionSettings.remoteRenderingDomain"):
        assert field in caught.value.message
    assert caught.value.exit_code == 2


def test_a_filled_in_file_as_the_script_reads_it(tmp_path: Path) -> None:
    settings = load_arrconfig(write(tmp_path, filled()))
    assert settings.account_id == ACCOUNT
    assert settings.account_key == "the-key"
    assert settings.sts_endpoint == "https://sts.eastus.mixedreality.azure.com"
    assert settings.endpoint == "https://remoterendering.westeurope.mixedreality.azure.com"
    assert (settings.size, settings.lease_minutes) == ("Standard", 240)
    assert "the-key" not in repr(settings)


def test_a_file_without_a_byte_order_mark_or_asset_settings_reads_the_same(tmp_path: Path) -> None:
    data = filled()
    del data["assetConversionSettings"]
    assert load_arrconfig(write(tmp_path, data, bom=False)).account_id == ACCOUNT


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"accountSettings__arrAccountId": "my-account"}, "accountSettings.arrAccountId", "GUID"),
    ({"renderingSessionSettings__vmSize": "large"}, "renderingSessionSettings.vmSize", "standard or premium"),
    ({"renderingSessionSettings__maxLeaseTime": "four hours"}, "renderingSessionSettings.maxLeaseTime", "hh:mm:ss"),
    ({"renderingSessionSettings__maxLeaseTime": "24:00:00"}, "renderingSessionSettings.maxLeaseTime", "0-23"),
    ({"renderingSessionSettings__maxLeaseTime": "90"}, "renderingSessionSettings.maxLeaseTime", "1440"),
    ({"renderingSessionSettings__maxLeaseTime": "-1:00:00"}, "renderingSessionSettings.maxLeaseTime", "negative"),
    ({"renderingSessionSettings__maxLeaseTime": 240}, "renderingSessionSettings.maxLeaseTime", "string"),
    ({"accountSettings__arrAccountDomain": "ftp://sts.example.com"}, "accountSettings.arrAccountDomain", "URL"),
    ({"renderingSessionSettings__remoteRenderingDomain": "west europe"},
     "renderingSessionSettings.remoteRenderingDomain", "region"),
])
def test_a_bad_field_is_named_with_the_file(tmp_path: Path, change: dict[str, Any], field: str, words: str) -> None:
    path = write(tmp_path, filled(**change))
    with pytest.raises(ConfigError) as caught:
        load_arrconfig(path)
    assert caught.value.field == field
    assert str(path) in caught.value.message
    assert words in caught.value.message
    assert caught.value.exit_code == 2


def test_a_section_that_is_not_an_object_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="accountSettings must be an object"):
        load_arrconfig(write(tmp_path, {"accountSettings": "eastus"}))


def test_broken_json_says_where(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "accountSettings": {\n    "arrAccountId": "x",\n  }\n}')
    with pytest.raises(UsageError, match=r"not valid JSON: .* line 4 column 3") as caught:
        load_arrconfig(path)
    assert "comma" in (caught.value.hint or "")


def test_a_named_file_that_is_missing_is_an_error_and_a_default_one_is_optional(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        resolve(Flags(config=tmp_path / "nope.json", app="http://app"), {}, tmp_path)
    with pytest.raises(UsageError, match="no such file"):
        resolve(Flags(app="http://app"), {"ARR_SESSIONS_CONFIG": str(tmp_path / "nope.json")}, tmp_path)
    assert resolve(Flags(app="http://app"), {}, tmp_path).config_path is None


def test_the_fields_of_older_script_versions(tmp_path: Path) -> None:
    """Before 2023 the file had accountSettings.region (and null endpoints): both domains come from it."""
    old = {"accountSettings": {"arrAccountId": ACCOUNT, "arrAccountKey": "k", "region": "japaneast",
                               "authenticationEndpoint": None, "serviceEndpoint": None},
           "renderingSessionSettings": {"vmSize": "premium", "maxLeaseTime": "0:30:00"}}
    settings = load_arrconfig(write(tmp_path, old))
    assert settings.sts_endpoint == "https://sts.japaneast.mixedreality.azure.com"
    assert settings.endpoint == "https://remoterendering.japaneast.mixedreality.azure.com"
    assert (settings.size, settings.lease_minutes) == ("Premium", 30)


# -- values ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "minutes"), [
    ("4:0:0", 240), ("04:00:00", 240), ("1:30", 90), ("00:30:00", 30), ("1.00:00:00", 1440), ("0:0:0", 0),
    ("00:30:30", 30), ("00:31:30", 32),  # PowerShell's -as [int] rounds half to even
    ("00:10:00.5000000", 10), (" 2:00:00 ", 120), ("1", 1440),  # a bare number is days, as [timespan] reads it
])
def test_dotnet_timespans(text: str, minutes: int) -> None:
    assert timespan_minutes(text) == minutes


@pytest.mark.parametrize("text", ["", "1:60", "1:00:60", "24:00:00", "1h", "1:2:3:4", "-0:30:00", "0:30:00.12345678"])
def test_not_timespans(text: str) -> None:
    with pytest.raises(ValueError):
        timespan_minutes(text)


@pytest.mark.parametrize(("text", "minutes"), [("90", 90), ("0", 0), ("1:30:00", 90), ("1:30", 90), ("1440", 1440)])
def test_lease_flags_are_minutes_or_timespans(text: str, minutes: int) -> None:
    assert lease_minutes(text, what="--lease") == minutes


@pytest.mark.parametrize(("text", "words"), [("1441", "at most 1440"), ("ninety", "minutes or a time span"),
                                             ("-5", "negative")])
def test_bad_lease_flags(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        lease_minutes(text, what="--lease")
    assert caught.value.field == "--lease"


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("1h", 3600), ("1.5", 1.5)])
def test_durations(text: str, seconds: float) -> None:
    assert duration_seconds(text, what="--timeout") == seconds


@pytest.mark.parametrize("text", ["0", "soon", "-5", "5d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError, match="--timeout"):
        duration_seconds(text, what="--timeout")


@pytest.mark.parametrize(("text", "sts", "rendering"), [
    ("westeurope", "https://sts.westeurope.mixedreality.azure.com",
     "https://remoterendering.westeurope.mixedreality.azure.com"),
    ("westeurope.mixedreality.azure.com", "https://sts.westeurope.mixedreality.azure.com",
     "https://remoterendering.westeurope.mixedreality.azure.com"),
    ("https://sts.westeurope.mixedreality.azure.com/", "https://sts.westeurope.mixedreality.azure.com",
     "https://sts.westeurope.mixedreality.azure.com"),  # a URL is used as is, as ToDomain does
    ("http://127.0.0.1:7072", "http://127.0.0.1:7072", "http://127.0.0.1:7072"),
    ("usgovvirginia.mixedreality.azure.us", "https://sts.usgovvirginia.mixedreality.azure.us",
     "https://remoterendering.usgovvirginia.mixedreality.azure.us"),
    ("sts.arr.contoso.com", "https://sts.arr.contoso.com", "https://remoterendering.sts.arr.contoso.com"),
])
def test_domains_as_the_script_turns_them_into_urls(text: str, sts: str, rendering: str) -> None:
    assert sts_url(text, what="x") == sts
    assert rendering_url(text, what="x") == rendering


# -- the environment and flags ---------------------------------------------------------------------------------

def test_environment_overrides_the_file_and_flags_override_both(tmp_path: Path) -> None:
    write(tmp_path, filled())
    env = {"ARR_ACCOUNT_KEY": "env-key", "ARR_ENDPOINT": "http://127.0.0.1:9", "ARR_DEFAULT_SIZE": "premium",
           "ARR_DEFAULT_LEASE_MINUTES": "30", "ARR_STS_ENDPOINT": " ", "ARR_REGION": ""}  # blank is unset
    resolved = resolve(Flags(), env, tmp_path)
    target = resolved.target
    assert isinstance(target, DirectConfig)
    assert (target.account_key, target.key_source) == ("env-key", "ARR_ACCOUNT_KEY")
    assert target.endpoint == "http://127.0.0.1:9"
    assert target.sts_endpoint == "https://sts.eastus.mixedreality.azure.com"
    assert target.account_domain == "eastus.mixedreality.azure.com"
    assert (resolved.size, resolved.lease_minutes, resolved.config_path) == ("Premium", 30,
                                                                            tmp_path / "arrconfig.json")

    flags = Flags(account_key="flag-key", rendering_domain="uksouth", account_domain="http://127.0.0.1:8")
    target = resolve(flags, env, tmp_path).target
    assert isinstance(target, DirectConfig)
    assert (target.account_key, target.key_source) == ("flag-key", "--account-key")
    assert target.endpoint == "https://remoterendering.uksouth.mixedreality.azure.com"
    assert target.sts_endpoint == "http://127.0.0.1:8"
    assert "flag-key" not in repr(target) and "flag-key" not in target.describe()


def test_the_environment_alone_is_enough_and_a_placeholder_key_means_azure_sign_in(tmp_path: Path) -> None:
    env = {"ARR_ACCOUNT_ID": ACCOUNT, "ARR_ACCOUNT_DOMAIN": "eastus.mixedreality.azure.com", "ARR_REGION": "eastus"}
    resolved = resolve(Flags(), env, tmp_path)
    assert isinstance(resolved.target, DirectConfig)
    assert resolved.target.account_key is None
    assert "DefaultAzureCredential" in resolved.target.describe()
    assert (resolved.size, resolved.lease_minutes) == ("Standard", 60)  # the CLI's defaults, as the app's


@pytest.mark.parametrize(("env", "flags", "field"), [
    ({"ARR_ACCOUNT_ID": "abc"}, Flags(), "ARR_ACCOUNT_ID"),
    ({}, Flags(account_id="abc"), "--account-id"),
    ({"ARR_DEFAULT_SIZE": "huge"}, Flags(), "ARR_DEFAULT_SIZE"),
    ({"ARR_DEFAULT_LEASE_MINUTES": "lots"}, Flags(), "ARR_DEFAULT_LEASE_MINUTES"),
    ({"ARR_ENDPOINT": "not a url"}, Flags(), "ARR_ENDPOINT"),
    ({}, Flags(app="ftp://app"), "--app"),
    ({"ARR_SESSIONS_APP_URL": "app.example.com"}, Flags(), "ARR_SESSIONS_APP_URL"),
])
def test_a_bad_setting_is_named_as_the_user_wrote_it(tmp_path: Path, env: dict[str, str], flags: Flags,
                                                      field: str) -> None:
    write(tmp_path, filled())
    with pytest.raises(ConfigError) as caught:
        resolve(flags, env, tmp_path)
    assert caught.value.field == field


def test_the_app_url_from_a_flag_or_the_environment(tmp_path: Path) -> None:
    resolved = resolve(Flags(), {"ARR_SESSIONS_APP_URL": "https://func-arr.azurewebsites.net/api/",
                                 "ARR_SESSIONS_FUNCTION_KEY": "fkey"}, tmp_path)
    assert resolved.target == AppConfig("https://func-arr.azurewebsites.net", "fkey")
    assert (resolved.size, resolved.lease_minutes) == (None, None)  # the app's own defaults apply
    assert "fkey" not in repr(resolved) and "fkey" not in resolved.target.describe()

    # a key pasted in the URL (as the portal's "Get function URL" gives it) leaves the URL
    target = resolve(Flags(app="https://func-arr.azurewebsites.net/api/sessions?code=secret=="), {}, tmp_path).target
    assert target == AppConfig("https://func-arr.azurewebsites.net/api/sessions", "secret==")
    with pytest.raises(ConfigError) as caught:
        resolve(Flags(app="ftp://x?code=secret"), {}, tmp_path)
    assert "secret" not in caught.value.message


def test_the_arrconfig_defaults_apply_to_the_app_too(tmp_path: Path) -> None:
    write(tmp_path, filled(renderingSessionSettings__maxLeaseTime="0:45:00"))
    resolved = resolve(Flags(app="http://127.0.0.1:7071"), {}, tmp_path)
    assert (resolved.is_app, resolved.size, resolved.lease_minutes) == (True, "Standard", 45)


def test_commands_of_the_app_say_they_need_it_before_reading_anything(tmp_path: Path) -> None:
    write(tmp_path, "{ broken")
    with pytest.raises(UsageError, match="`usage` needs the arr-sessions app") as caught:
        resolve(Flags(), {}, tmp_path, command="usage", needs_app_target=True)
    assert "--app" in (caught.value.hint or "")


def test_no_account_key_builds_azure_identitys_default_credential(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Never run for real here: DefaultAzureCredential would probe the metadata endpoint of a cloud VM."""
    import azure.identity.aio

    from arr_cli.targets.direct import DirectTarget

    made: list[dict[str, Any]] = []

    class FakeDefaultCredential:
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)

        async def close(self) -> None:
            made.append({"closed": True})

    monkeypatch.setattr(azure.identity.aio, "DefaultAzureCredential", FakeDefaultCredential)
    env = {"ARR_ACCOUNT_ID": ACCOUNT, "ARR_ACCOUNT_DOMAIN": "eastus", "ARR_REGION": "eastus",
           "ARR_MANAGED_IDENTITY_CLIENT_ID": "client-1"}
    config = resolve(Flags(), env, tmp_path).target
    assert isinstance(config, DirectConfig)
    target = DirectTarget(config)
    assert isinstance(target.client.tokens._credential, FakeDefaultCredential)
    assert target.client.tokens.scope == "https://sts.eastus.mixedreality.azure.com/.default"
    asyncio.run(target.aclose())
    assert made == [{"managed_identity_client_id": "client-1"}, {"closed": True}]


# -- the wait's pacing, on a fake clock ------------------------------------------------------------------------

class ScriptedTarget:
    """Answers each poll with the next item: a status (with an optional Retry-After) or an exception."""

    is_app = False

    def __init__(self, clock: FakeClock, script: list[Any]) -> None:
        self.clock, self.script, self.polled_at = clock, script, []

    async def poll(self, session_id: str) -> Poll:
        self.polled_at.append(self.clock.now)
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        status, retry_after = item if isinstance(item, tuple) else (item, None)
        return Poll({"id": session_id, "status": status}, retry_after)


class Ticks:
    def __init__(self) -> None:
        self.ticks: list[Tick] = []

    def update(self, tick: Tick) -> None:
        self.ticks.append(tick)


def run_wait(script: list[Any], **kwargs: Any) -> tuple[Any, ScriptedTarget, Ticks]:
    clock = FakeClock(now=0.0)
    target = ScriptedTarget(clock, script)
    ticks = Ticks()
    outcome = asyncio.run(wait_for_session(target, "s1", ticks,  # type: ignore[arg-type]
                                           clock=clock, sleep=clock.sleep, **kwargs))
    return outcome, target, ticks


def test_a_wait_checks_at_its_pace_and_ends_on_ready() -> None:
    outcome, target, ticks = run_wait(["Starting", "Starting", "Ready"], poll_seconds=10)
    assert target.polled_at == [0, 10, 20]
    assert (outcome.ready, outcome.checks, outcome.elapsed) == (True, 3, 20)
    countdown = [t.next_check_in for t in ticks.ticks if t.next_check_in is not None]
    assert countdown[0] == 10 and min(countdown) > 0 and len(countdown) == 2 * 40  # 4 ticks a second


@pytest.mark.parametrize("end", ["Stopped", "Expired", "Error"])
def test_a_wait_ends_on_every_end_not_only_error(end: str) -> None:
    outcome, _, _ = run_wait(["Starting", end], poll_seconds=1)
    assert (outcome.status, outcome.ready, outcome.timed_out) == (end, False, False)


def test_the_services_retry_after_slows_the_wait_down_never_up() -> None:
    _, target, ticks = run_wait([("Starting", 5), ("Starting", 1), "Ready"], poll_seconds=2)
    assert target.polled_at == [0, 5, 7]
    assert any(t.asked_by_service and t.interval == 5 for t in ticks.ticks)


def test_a_start_answer_counts_as_the_first_look() -> None:
    outcome, target, _ = run_wait(["Ready"], poll_seconds=3, first={"id": "s1", "status": "Starting"})
    assert target.polled_at == [3]
    outcome, target, _ = run_wait([], first={"id": "s1", "status": "Error"})  # ended at once: no check at all
    assert (outcome.status, target.polled_at) == ("Error", [])


def test_a_timeout_ends_the_wait_with_one_last_check() -> None:
    outcome, target, _ = run_wait(["Starting"] * 10, poll_seconds=4, timeout=10)
    assert target.polled_at == [0, 4, 8, 10]
    assert (outcome.timed_out, outcome.status, outcome.elapsed) == (True, "Starting", 10)


def test_passing_failures_are_tried_again_at_the_asked_pace_and_others_end_the_wait() -> None:
    from arr_core.errors import InvalidRequestError, ServiceError, ThrottledError

    throttled = ThrottledError("slow down", status_code=429, retry_after=30, correlation_id="cv-1")
    outcome, target, ticks = run_wait(["Starting", throttled, ServiceError("boom", status_code=503), "Ready"],
                                      poll_seconds=2)
    assert target.polled_at == [0, 2, 32, 34]
    assert outcome.ready
    assert any(t.note and "slow down" in t.note for t in ticks.ticks)

    with pytest.raises(InvalidRequestError):
        run_wait(["Starting", InvalidRequestError("no", status_code=400)], poll_seconds=1)
    with pytest.raises(ServiceError):
        run_wait([ServiceError("boom", status_code=500)] * 5, poll_seconds=1)


def test_a_wait_says_its_pace_and_the_apps_when_the_app_asks_for_longer() -> None:
    """--poll 1 through an app that asks for 10 s: the first line already says both (the start's Retry-After)."""
    import io

    from rich.console import Console

    from arr_cli.render import LineProgress

    clock = FakeClock(now=0.0)
    target = ScriptedTarget(clock, [("Starting", 10), "Ready"])
    target.is_app = True
    err = io.StringIO()
    reporter = LineProgress(Console(file=err, width=200))
    outcome = asyncio.run(wait_for_session(target, "s1", reporter,  # type: ignore[arg-type]
                                           first={"id": "s1", "status": "Starting"}, first_retry_after=10,
                                           poll_seconds=1, clock=clock, sleep=clock.sleep))
    assert target.polled_at == [10, 20] and outcome.ready
    assert err.getvalue() == "[0:00] s1: Starting (checking every 1 s, or as the app asks: 10 s)\n"

    ticks = run_wait([("Starting", 30), "Starting", "Ready"], poll_seconds=2)[2].ticks
    paces = list(dict.fromkeys(t.pace for t in ticks if t.status != "?"))
    assert paces == ["every 2 s, or as ARR asks: 30 s", "every 2 s"]  # ARR's 429 passed: our pace again
    assert Tick("s1", "Starting", 0, 1, 10, None, 0).pace == "every 10 s"


def test_options_given_after_the_command_win_over_those_before_it() -> None:
    from arr_cli.options import Common, merged

    before = Common(app="http://a", verbose=True, function_key="k1")
    assert merged(before, Common(app="http://b")) == Common(app="http://b", verbose=True, function_key="k1")
    assert merged(before, Common(json=True)) == Common(app="http://a", verbose=True, function_key="k1", json=True)
    assert merged(None, Common(json=True)) == Common(json=True)


def test_the_log_of_an_app_call_shows_no_code() -> None:
    import httpx

    from arr_cli.targets.app import logged_path

    url = httpx.URL("http://app/api/history?top=5&code=s3cret%3D%3D&from=2026-11-01")
    assert logged_path(url) == "/api/history?top=5&code=***&from=2026-11-01"
    assert logged_path(httpx.URL("http://app/api/sessions")) == "/api/sessions"


def test_where_the_function_key_came_from_is_kept_never_the_key(tmp_path: Path) -> None:
    def source(flags: Flags, env: dict[str, str]) -> str | None:
        target = resolve(flags, env, tmp_path).target
        assert isinstance(target, AppConfig)
        return target.key_source

    url = "https://func-arr.azurewebsites.net"
    assert source(Flags(app=url, function_key="k"), {"ARR_SESSIONS_FUNCTION_KEY": "e"}) == "--function-key"
    assert source(Flags(app=url), {"ARR_SESSIONS_FUNCTION_KEY": "e"}) == "ARR_SESSIONS_FUNCTION_KEY"
    assert source(Flags(app=f"{url}?code=c"), {}) == "the ?code= of --app"
    assert source(Flags(), {"ARR_SESSIONS_APP_URL": f"{url}/api?code=c"}) == "the ?code= of ARR_SESSIONS_APP_URL"
    assert source(Flags(app=url), {}) is None


def test_a_missing_key_and_a_refused_one_are_configuration_errors_that_differ() -> None:
    from arr_cli.errors import USAGE, function_key_error

    missing, refused = function_key_error("listing sessions", None), function_key_error("listing sessions",
                                                                                          "--function-key")
    assert missing.exit_code == refused.exit_code == USAGE
    assert missing.message == "listing sessions: the app wants a function key, and none was given"
    assert "ARR_SESSIONS_FUNCTION_KEY" in (missing.hint or "")
    assert refused.message == "listing sessions: the app refused the function key from --function-key (HTTP 401)"


def _printed_error(problem: Any) -> str:
    import io

    from rich.console import Console

    from arr_cli.render import error

    out = io.StringIO()
    error(Console(file=out, width=200), problem)
    return out.getvalue()


def test_an_app_error_says_each_thing_once_and_speaks_of_an_ms_cv_only_when_arr_gave_one() -> None:
    import httpx

    from arr_cli.errors import problem_error

    detail = "session s1 already exists with size Standard and a lease of 20 minutes"
    in_use = httpx.Response(409, headers={"Content-Type": "application/problem+json"}, json={
        "title": "Session id in use", "status": 409, "detail": detail,
        "errors": [{"field": "sessionId", "message": detail}]})
    printed = _printed_error(problem_error(in_use, "starting the session"))
    assert printed == f"Error: starting the session: Session id in use - {detail}\n"  # once, and no MS-CV

    refused = httpx.Response(400, headers={"Content-Type": "application/problem+json"}, json={
        "title": "ARR refused the request", "status": 400, "detail": "bad", "correlationId": "cv-7",
        "arrError": {"code": "BadRequest", "message": "bad"}})
    assert _printed_error(problem_error(refused, "starting the session")).endswith(
        "\nMS-CV: cv-7 (ARR's, passed on by the app)\n")

    from arr_cli.errors import as_cli_error
    from arr_core.errors import TransportError

    assert _printed_error(as_cli_error(TransportError("no answer"))).endswith(
        "\nMS-CV: none (no answer from ARR carried one)\n")  # directly to ARR, as before


def test_tables_end_their_lines_with_their_last_word() -> None:
    import io

    from rich.console import Console

    from arr_cli import render

    sessions = [{"id": "a-long-session-id", "status": "Ready", "size": "Standard", "leaseMinutes": 60,
                 "remainingMinutes": 50, "createdAt": "2026-11-01T10:00:00Z", "requestedBy": "ana"},
                {"id": "s2", "status": "Starting", "size": "Premium", "leaseMinutes": 5, "remainingMinutes": None,
                 "createdAt": "2026-11-01T10:00:00Z", "requestedBy": None}]
    out = io.StringIO()
    console = Console(file=out, width=200)
    console.print(render.sessions_table(sessions))
    console.print(render.session_details(sessions[1]))
    console.print(render.events_table({"sessionId": "s2", "events": [{"seq": 1, "type": "requested"}]}))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("ID ") and lines[2].startswith("s2 ") and lines[2].endswith("2026-11-01 10:00")
    assert "Session  s2" in lines and "Events of s2" in lines
    assert [line for line in lines if line != line.rstrip()] == []



# -- what comes from outside: files and answers bounded, checked and shown harmless (issue 19.2) -----------------

RAW = ("\x1b", "\x07", "\x9b", "\x7f", "\u202e", "\u2066", "\u2028")
TITLE = "\x1b]0;pwned\x07\x1b[2J"


def _returns_within(seconds: float, call: Any) -> Any:
    """``call()``'s result or exception, failing the test if it takes longer than ``seconds`` (a FIFO blocks)."""
    import threading

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "/dev/urandom", "directory"])
def test_an_arrconfig_that_is_not_a_regular_file_is_refused_before_a_byte_is_read(tmp_path: Path, kind: str) -> None:
    from conftest import not_a_regular_file

    path = tmp_path / "arrconfig.json"
    not_a_regular_file(path, kind)
    with pytest.raises(UsageError) as caught:
        _returns_within(5, lambda: load_arrconfig(path))
    assert caught.value.message.startswith(f"{path}: is not a regular file (it is ")
    assert caught.value.exit_code == 2
    with pytest.raises(UsageError, match="is not a regular file"):  # ./arrconfig.json too, not passed over
        _returns_within(5, lambda: resolve(Flags(), {}, tmp_path))


def test_a_link_to_a_regular_file_is_read() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        real = write(Path(folder), filled(), name="real.json")
        link = Path(folder) / "arrconfig.json"
        link.symlink_to(real)
        assert load_arrconfig(link).account_id == ACCOUNT


@pytest.mark.parametrize(("content", "words"), [
    (b'{"accountSettings": {}}' + b" " * (1024 * 1024), "is larger than 1 MiB"),
    (b"[" * 30000 + b"]" * 30000, "nested more than 64 levels deep"),
    (b'{"a":' * 65 + b"1" + b"}" * 65, "nested more than 64 levels deep"),
    (b'{"accountSettings": {"arrAccountId": ' + b"1" * 5000 + b"}}", "not valid JSON: Exceeds the limit"),
    (b'{"accountSettings": {"arrAccountId": "\xff"}}', "not UTF-8"),
])
def test_an_arrconfig_too_large_too_deep_or_unreadable_is_a_message(tmp_path: Path, content: bytes,
                                                                    words: str) -> None:
    path = tmp_path / "arrconfig.json"
    path.write_bytes(content)
    with pytest.raises(UsageError) as caught:
        load_arrconfig(path)
    assert words in caught.value.message and caught.value.exit_code == 2


def test_an_arrconfig_of_exactly_1_mib_is_read(tmp_path: Path) -> None:
    from arr_cli.config import MAX_CONFIG_BYTES

    text = json.dumps(filled()).encode()
    path = tmp_path / "arrconfig.json"
    path.write_bytes(text + b" " * (MAX_CONFIG_BYTES - len(text)))
    assert load_arrconfig(path).account_id == ACCOUNT


def test_the_call_limit_comes_from_the_environment(tmp_path: Path) -> None:
    assert resolve(Flags(app="http://app"), {}, tmp_path).call_timeout is None
    assert resolve(Flags(app="http://app"), {"ARR_SESSIONS_CALL_TIMEOUT": "2"}, tmp_path).call_timeout == 2
    assert resolve(Flags(app="http://app"), {"ARR_SESSIONS_CALL_TIMEOUT": "2m"}, tmp_path).call_timeout == 120
    with pytest.raises(ConfigError, match="ARR_SESSIONS_CALL_TIMEOUT must be a duration"):
        resolve(Flags(app="http://app"), {"ARR_SESSIONS_CALL_TIMEOUT": "soon"}, tmp_path)


def test_control_characters_are_shown_escaped() -> None:
    from arr_cli.untrusted import printable

    assert printable(TITLE) == r"\x1b]0;pwned\x07\x1b[2J"
    assert printable("a\u202eb\u2066c\x9bd\x7fe\u2028") == r"a\u202eb\u2066c\x9bd\x7fe\u2028"
    assert printable("line\nnext\tcell\r") == r"line\nnext\tcell\r"
    assert printable("line\nnext\x1b", keep="\n") == "line\nnext\\x1b"
    text = "Ünïcödé, 日本, emoji 🙂‍↕️"
    assert printable(text) == text  # text is left alone, a zero-width joiner included
    assert printable(printable(TITLE)) == printable(TITLE)


def test_json_output_escapes_the_same_characters_and_says_the_same() -> None:
    from arr_cli.untrusted import json_printable

    value = {"title": TITLE, "rtl": "a\u202eb", "c1": "\x9b", "text": "Ünï 日本"}
    text = json_printable(json.dumps(value, ensure_ascii=False))
    assert not any(c in text for c in RAW) and "Ünï 日本" in text
    assert json.loads(text) == value


def test_json_nested_past_the_limit_is_a_value_error_never_a_recursion_error() -> None:
    from arr_cli.untrusted import MAX_DEPTH, parse_json

    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    for text in ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "[" * 30000 + "]" * 30000,
                 '{"a": ' * 30000 + "1" + "}" * 30000):
        with pytest.raises(ValueError, match=f"nested more than {MAX_DEPTH} levels deep"):
            parse_json(text)
    with pytest.raises(ValueError, match="not JSON: Expecting value at line 1 column 1"):
        parse_json(b"<html>")


def _answer(body: Any, status: int = 200) -> Any:
    import httpx

    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(("model", "body", "words"), [
    ("SessionList", {"sessions": "notalist"}, "sessions: Input should be a valid list"),
    ("SessionList", {"sessions": [{"id": "s1"}]}, "sessions.0.status: Field required"),
    ("SessionList", {"sessions": [{"id": "../../cleanup", "status": "Ready"}]}, "is not a session id"),
    ("SessionAnswer", {"id": "s1", "status": "Ready", "teraflops": "8.1"}, "teraflops: Input should be a valid number"),
    ("SessionAnswer", {"id": "s1", "status": "Ready", "leaseMinutes": True}, "leaseMinutes: Input should be"),
    ("SessionAnswer", {"id": "s1", "status": "Ready", "labels": {"k": 1}}, "labels.k: Input should be a valid str"),
    ("SessionAnswer", ["s1"], "the answer: Input should be a valid dictionary"),
    ("HistoryPage", {"sessions": [], "nextLink": 7}, "nextLink"),
    ("UsageReport", {"rows": [{"key": "day", "billedMinutes": "60"}]}, "rows.0.billedMinutes"),
    ("CleanupReport", {"stopped": {"id": "s1"}}, "stopped: Input should be a valid list"),
    ("SessionEvents", {"events": [{"detail": "text"}]}, "events.0.detail"),
    ("SessionList", b"[" * 30000 + b"]" * 30000, "nested more than 64 levels deep"),
    ("SessionList", b"<html>", "not JSON"),
    ("OverrideList", {"overrides": [{"id": "../../cleanup", "until": "2026-11-02T09:00:00Z"}]},
     "overrides.0.id: Value error, is not an override id"),
    ("OverrideList", {"overrides": {"id": "ovr-0123456789ab"}}, "overrides: Input should be a valid list"),
    ("OverrideAnswer", {"id": "ovr-0123456789ab"}, "until: Field required"),
    ("OverrideAnswer", {"id": "ovr-0123456789ab", "until": "x", "sessionId": "a/b"}, "sessionId: Value error"),
    ("OverrideAnswer", {"id": "ovr-0123456789ab", "until": "x", "labels": {"k": 1}}, "labels.k: Input should be"),
    ("PoolList", {"pools": [{"name": "../claim", "open": True, "ready": 1}]}, "pools.0.name: Value error, is not a"),
    ("PoolList", {"pools": [{"name": "p", "open": "yes", "ready": 1}]}, "pools.0.open: Input should be a valid bool"),
    ("PoolList", {"pools": [{"name": "p", "open": True, "ready": 1, "costPerHour": "12"}]}, "pools.0.costPerHour"),
    ("BudgetAnswer", {"amount": 500, "spent": "12.5", "refusingStarts": False}, "spent: Input should be a valid"),
    ("BudgetAnswer", {"amount": 500, "spent": 1, "refusingStarts": False, "thresholds": [{"percent": 50}]},
     "thresholds.0.crossed: Field required"),
])
def test_an_answer_of_the_wrong_shape_is_unreadable_naming_the_field(model: str, body: Any, words: str) -> None:
    from arr_cli import answers
    from arr_cli.errors import AnswerUnreadable

    with pytest.raises(AnswerUnreadable) as caught:
        answers.read(_answer(body), getattr(answers, model), "listing sessions")
    assert caught.value.message.startswith("listing sessions: the app's answer could not be read: ")
    assert words in caught.value.message and caught.value.exit_code == 5


def test_an_answer_that_fits_keeps_what_came_and_adds_nothing() -> None:
    from arr_cli import answers

    body = {"sessions": [{"id": "s1", "status": "Stopped", "stoppedBy": "ana", "teraflops": 8}],
            "nightlyShutdown": {"nextAt": "2026-11-02T00:00:00Z"}}
    assert answers.read(_answer(body), answers.SessionList, "listing sessions") == {
        "sessions": [{"id": "s1", "status": "Stopped", "stoppedBy": "ana", "teraflops": 8.0}],
        "nightlyShutdown": {"nextAt": "2026-11-02T00:00:00Z"}}
    usage = {"from": "2026-11-01T00:00:00Z", "rows": [], "total": {"key": "total", "sessions": 0}}
    assert answers.read(_answer(usage), answers.UsageReport, "reading usage") == usage


def test_a_hostile_problem_document_is_said_clipped_and_escaped() -> None:
    from arr_cli.errors import problem_error

    problem = problem_error(_answer({"title": TITLE, "status": 404, "detail": "x" * 100_000, "sessionId": TITLE,
                                     "correlationId": "cv\x1b[2J", "errors": "notalist", "type": {"deep": [1]}},
                                    404), "reading session s1")
    assert problem.message.startswith(r"reading session s1: \x1b]0;pwned\x07\x1b[2J - xxx")
    assert len(problem.message) < 600 and problem.message.endswith("…")
    assert problem.hint is None  # no command to suggest with an id that is none
    assert problem.correlation_id == r"cv\x1b[2J" and problem.code == "{'deep': [1]}"
    deep = problem_error(_answer(b'{"title": ' + b"[" * 30000 + b"]" * 30000 + b"}", 400), "listing sessions")
    assert deep.message == "listing sessions: the app answered HTTP 400 Bad Request"


def test_what_a_service_says_is_rendered_escaped_on_any_console() -> None:
    import io

    from rich.console import Console

    from arr_cli import render
    from arr_cli.errors import ServiceFailure

    session = {"id": "s1", "status": "Ready\x1b[31m", "hostname": "h\u202e", "handshakePort": 1,
               "requestedBy": TITLE, "reason": "r\x9b", "labels": {"k": TITLE}, "createdAt": "not\x1b a date",
               "error": {"code": "C\x1b", "message": TITLE}}
    out = io.StringIO()
    console = Console(file=out, width=200)  # a plain console: the values themselves are escaped
    console.print(render.sessions_table([session]))
    console.print(render.session_details(session))
    console.print(render.events_table({"sessionId": TITLE, "events": [{"type": TITLE, "detail": {"k": TITLE}}]}))
    console.print(render.cleanup_table({"mode": TITLE, "stopped": [{"id": "s1", "reason": TITLE}]}))
    render.error(console, ServiceFailure(f"reading: {TITLE}\nsecond line", hint=TITLE, correlation_id=TITLE))
    shown = out.getvalue()
    assert not any(c in shown for c in RAW), shown
    assert r"\x1b]0;pwned\x07\x1b[2J" in shown and r"h\u202e:1" in shown and "\nsecond line" in shown


def test_overrides_are_rendered_escaped_and_without_trailing_spaces() -> None:
    import io
    from datetime import UTC, datetime

    from rich.console import Console

    from arr_cli import render

    now = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    overrides = [{"id": "ovr-0123456789ab", "sessionId": None, "labels": {"team": TITLE, "a": "b"},
                  "until": "2026-11-03T12:30:00Z", "reason": "why\u202e", "requestedBy": TITLE,
                  "createdAt": "2026-11-01T09:00:00Z"},
                 {"id": "ovr-ba9876543210", "sessionId": "s1", "labels": None, "until": "2026-11-01T10:45:00+00:00",
                  "reason": None, "requestedBy": None, "createdAt": None}]
    out = io.StringIO()
    console = Console(file=out, width=200)
    console.print(render.overrides_table(overrides, now))
    console.print(render.override_details(overrides[0], now))
    shown = out.getvalue()
    assert not any(c in shown for c in RAW), shown
    lines = shown.splitlines()
    assert lines[0] == "Overrides of the nightly shutdown" and [line for line in lines if line != line.rstrip()] == []
    assert lines[2].startswith(r"ovr-0123456789ab  sessions labelled a=b, team=\x1b]0;pwned\x07\x1b[2J  2026-11-03 12:30")
    assert "2 d 2 h" in lines[2] and r"why\u202e" in lines[2]
    assert lines[3].split() == ["ovr-ba9876543210", "session", "s1", "2026-11-01", "10:45", "45", "min"]
    assert "Until         2026-11-03 12:30:00 UTC (2 d 2 h left)" in lines
    assert render.time_left("2026-11-01T09:59:00Z", now) == "ended" and render.time_left("soon", now) == ""
    assert render.time_left("2026-11-01T13:05:00", now) == "3 h 5 min"  # no offset: UTC, as the app writes


def test_until_is_a_duration_from_now_or_an_iso_time_in_the_future() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from arr_cli.commands import _until

    now = datetime(2026, 11, 1, 10, 0, 30, tzinfo=UTC)
    assert _until("90m", now) == now + timedelta(minutes=90)
    assert _until(" 12h ", now) == now + timedelta(hours=12)
    assert _until("2d", now) == now + timedelta(days=2)
    assert _until("2026-11-02T09:00", now) == datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # UTC without an offset
    assert _until("2026-11-02T09:00+01:00", now) == datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    assert _until("2026-11-02T09:00Z", now) == datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    assert _until("2026-11-02", now) == datetime(2026, 11, 2, tzinfo=UTC)
    assert _until("2026-11-01T11:00:00-01:00", now).tzinfo == timezone(timedelta(hours=-1))
    for text, words in (("tomorrow 09:00", "a duration from now"), ("3", "a duration from now"),
                        ("3w", "a duration from now"), ("-3h", "a duration from now"), ("0m", "later than now"),
                        ("2026-11-01T10:00", "in the future"), ("2026-11-01T11:00:00+01:00", "in the future"),
                        ("999999d", "a duration from now")):
        with pytest.raises(UsageError, match="--until must be") as caught:
            _until(text, now)
        assert words in caught.value.message, (text, caught.value.message)


def test_an_app_without_overrides_says_so() -> None:
    """In-process: an app from before overrides answers their routes with the host's bare 404; a 404 problem of an
    app that has them is an override it does not know."""
    import httpx

    from arr_cli.config import AppConfig
    from arr_cli.errors import ServiceFailure
    from arr_cli.targets.app import AppTarget

    def answering(problem: bool) -> httpx.MockTransport:
        def app(request: httpx.Request) -> httpx.Response:
            assert request.headers["x-functions-key"] == "k"
            if not problem:
                return httpx.Response(404, text="")
            return httpx.Response(404, headers={"Content-Type": "application/problem+json"},
                                  json={"title": "Override not found", "status": 404,
                                        "detail": "no override 'ovr-0123456789ab'"})
        return httpx.MockTransport(app)

    async def call(transport: httpx.MockTransport, method: str, *args: Any) -> None:
        target = AppTarget(AppConfig("http://app", "k"), transport=transport)
        try:
            await getattr(target, method)(*args)
        finally:
            await target.aclose()

    for method, args in (("list_overrides", ()), ("add_override", ({"sessionId": "s1", "until": "x"},)),
                         ("remove_override", ("ovr-0123456789ab",))):
        with pytest.raises(ServiceFailure, match="this app version has no overrides of the nightly shutdown"):
            asyncio.run(call(answering(problem=False), method, *args))
    with pytest.raises(ServiceFailure) as caught:
        asyncio.run(call(answering(problem=True), "remove_override", "ovr-0123456789ab"))
    assert caught.value.message == ("lifting override ovr-0123456789ab: Override not found - no override "
                                    "'ovr-0123456789ab'")
    assert "lifted already, ended by itself, or never made" in (caught.value.hint or "")


def test_the_cli_console_escapes_whatever_slips_past_the_values() -> None:
    import io

    from rich.text import Text

    from arr_cli.render import EscapingConsole

    out = io.StringIO()
    console = EscapingConsole(file=out, width=80, force_terminal=True)
    console.print(Text(f"raw {TITLE} here", style="bold"))
    shown = out.getvalue()
    assert r"raw \x1b]0;pwned\x1b[2J here" in shown  # (Rich's Text itself drops a BEL)
    assert shown.count("\x1b") == shown.count("\x1b[") and "\x1b]" not in shown  # only its own style codes


def test_arrs_unreadable_answers_exit_5_and_its_timeouts_say_so() -> None:
    import httpx

    from arr_cli.errors import as_cli_error
    from arr_core.arr.transport import AnswerTooLarge
    from arr_core.errors import ServiceError, ServiceTimeoutError

    unreadable = as_cli_error(ServiceError("ARR answered 200 without a session the client can read",
                                           status_code=200, code="InvalidResponse", correlation_id="cv-1"))
    assert unreadable is not None and unreadable.exit_code == 5 and unreadable.correlation_id == "cv-1"
    assert unreadable.message == ("ARR's answer could not be read: ARR answered 200 without a session the client "
                                  "can read")
    try:
        raise ServiceError("GET /x: the answer is longer than 16777216 bytes", status_code=200) \
            from AnswerTooLarge(httpx.Response(200), 16 * 2**20)
    except ServiceError as exc:
        too_large = as_cli_error(exc)
    assert too_large is not None and too_large.exit_code == 5
    assert too_large.message == "ARR's answer could not be read: it is larger than 16 MiB"
    slow = as_cli_error(ServiceTimeoutError("GET /x timed out (TimeoutError)"))
    assert slow is not None and slow.exit_code == 3 and slow.message.startswith("ARR did not answer in time: ")
    said = as_cli_error(ServiceError(TITLE, status_code=500, code="C\x1b"))
    assert said is not None and said.message == r"ARR answered 500: C\x1b: \x1b]0;pwned\x07\x1b[2J"


def test_the_apps_answer_is_bounded_in_size_and_in_total_time_in_process() -> None:
    """A MockTransport streaming 17 MiB, and one trickling a byte every 0.05 s: each read is quick, only the limit on
    the whole call ends it."""
    import time

    import httpx

    from arr_cli.config import AppConfig
    from arr_cli.errors import AnswerUnreadable, ServiceFailure
    from arr_cli.targets.app import AppTarget

    async def huge() -> Any:
        for _ in range(17):
            yield b" " * 2**20

    async def trickle() -> Any:
        for _ in range(100):
            yield b" "
            await asyncio.sleep(0.05)

    def app(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=huge() if "huge" in request.url.path else trickle())

    async def list_at(path: str) -> None:
        target = AppTarget(AppConfig(f"http://app/{path}"), transport=httpx.MockTransport(app), call_seconds=0.3)
        try:
            await target.list()
        finally:
            await target.aclose()

    with pytest.raises(AnswerUnreadable, match="listing sessions: the app's answer could not be read: it is larger "
                                               "than 16 MiB"):
        asyncio.run(list_at("huge"))
    started = time.monotonic()
    with pytest.raises(ServiceFailure, match="listing sessions: the app did not answer within 0.3 s"):
        asyncio.run(list_at("trickle"))
    assert 0.25 < time.monotonic() - started < 1.5


# -- issue 22: warm pools and the budget ---------------------------------------------------------------------------

def test_pools_and_the_budget_are_rendered_escaped_and_without_trailing_spaces() -> None:
    import io

    from rich.console import Console

    from arr_cli import render

    pools = [{"name": "design-review", "size": "Premium", "days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "opens": "08:30",
              "closes": "18:00", "timeZone": "Europe/Berlin", "open": True, "ready": 2, "starting": 0, "claimed": 1,
              "costPerHour": 24.0, "currency": "EUR"},
             {"name": "night", "size": "Standard", "days": ["Mon", "Wed", "Fri"], "opens": "22:00", "closes": "06:00",
              "timeZone": TITLE, "open": False, "ready": 0, "starting": 0, "claimed": 0, "costPerHour": None,
              "currency": "EUR"}]
    budget = {"amount": 500, "currency": "EUR\u202e", "timeZone": "Europe/Berlin", "month": "2026-12", "spent": 462.5,
              "percent": 92.5, "unpricedMinutes": 12, "refusingStarts": True,
              "thresholds": [{"percent": 50, "action": "notify", "crossed": True},
                             {"percent": 90, "action": "refuse-starts", "crossed": True},
                             {"percent": 100, "action": TITLE, "crossed": False}]}
    out = io.StringIO()
    console = Console(file=out, width=200)
    console.print(render.pools_table(pools))
    console.print(render.budget_details(budget))
    shown = out.getvalue()
    assert not any(c in shown for c in RAW), shown
    lines = shown.splitlines()
    assert [line for line in lines if line != line.rstrip()] == [], shown
    assert lines[0] == "Warm pools"
    assert lines[2].split() == ["design-review", "Premium", "open", "2", "0", "1", "Mon-Fri", "08:30-18:00",
                                "(Europe/Berlin)", "24.00", "EUR"]
    assert lines[3].split()[:10] == ["night", "Standard", "closed", "0", "0", "0", "Mon,", "Wed,", "Fri", "22:00-06:00"]
    assert r"next day (\x1b]0;pwned\x07\x1b[2J)" in lines[3] and lines[3].endswith("n/a")
    assert "Budget    2026-12 (Europe/Berlin)" in lines
    assert r"Spent     462.50 of 500.00 EUR\u202e (92.5%)" in lines
    assert "Crossed   50% (notify), 90% (refuse-starts)" in lines
    assert 'Starts    refused: a start is answered 409 "Budget exceeded"' in lines
    assert "Unpriced  12 min of sizes without a rate (not in the spend)" in lines
    assert lines[lines.index("Thresholds") + 1].split() == ["Percent", "Action", "Crossed"]
    assert lines[-1].split() == ["100%", r"\x1b]0;pwned\x07\x1b[2J", "no"]


@pytest.mark.parametrize(("days", "opens", "closes", "said"), [
    (["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "00:00", "00:00", "always (UTC)"),
    (["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "07:00", "19:00", "every day 07:00-19:00 (UTC)"),
    (["Sat", "Sun"], "00:00", "00:00", "Sat, Sun all day (UTC)"),
    (["Mon", "Tue", "Wed", "Fri", "Sat"], "22:00", "06:00", "Mon-Wed, Fri, Sat 22:00-06:00 next day (UTC)"),
    (["Mon", "Funday"], "08:00", "09:00", "Mon, Funday 08:00-09:00 (UTC)"),  # a day this CLI does not know
])
def test_a_pools_window_in_words(days: list[str], opens: str, closes: str, said: str) -> None:
    from arr_cli.render import pool_window

    assert pool_window({"days": days, "opens": opens, "closes": closes, "timeZone": "UTC"}) == said


def _claims(*outcomes: Any) -> tuple[Any, list[tuple[str | None, Any]]]:
    """A mock app whose claims answer ``outcomes`` in turn (an exception is raised: no answer), and what it got."""
    import httpx

    seen: list[tuple[str | None, Any]] = []
    answers = iter(outcomes)

    def app(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/pools/warm/claim" and request.headers["x-functions-key"] == "k"
        seen.append((request.headers.get("Idempotency-Key"), json.loads(request.content)))
        outcome = next(answers)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return httpx.MockTransport(app), seen


def _claim(transport: Any, **kwargs: Any) -> dict[str, Any]:
    from arr_cli.targets.app import AppTarget

    async def call() -> dict[str, Any]:
        target = AppTarget(AppConfig("http://app", "k"), transport=transport)
        try:
            return await target.claim_pool("warm", **kwargs)
        finally:
            await target.aclose()

    return asyncio.run(call())


PROBLEM = {"Content-Type": "application/problem+json"}
CLAIMED = {"id": "pool-warm-0123456789ab", "status": "Ready", "requestedBy": "ana", "remainingMinutes": 60}


def test_a_claim_sent_again_carries_the_same_idempotency_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """No answer (a connection lost), then a 503: sent a third time, with the one key made for this claim; the body
    the same each time (the app binds the key to it)."""
    import httpx

    from arr_cli.targets import app as app_target

    monkeypatch.setattr(app_target, "CLAIM_RETRY_SECONDS", 0.0)
    monkeypatch.setattr(app_target, "CLAIM_RETRY_MAX_SECONDS", 0.0)
    transport, seen = _claims(httpx.RemoteProtocolError("Server disconnected without sending a response."),
                              httpx.Response(503, headers={**PROBLEM, "Retry-After": "30"},
                                             json={"title": "Session history unavailable", "status": 503}),
                              httpx.Response(200, json=CLAIMED))
    assert _claim(transport, requested_by="ana", lease_minutes=45)["id"] == CLAIMED["id"]
    keys = {key for key, _ in seen}
    assert len(seen) == 3 and len(keys) == 1 and next(iter(keys)).startswith("arr-sessions-cli-"), seen
    assert [body for _, body in seen] == [{"requestedBy": "ana", "leaseMinutes": 45}] * 3

    transport, again = _claims(httpx.Response(200, json=CLAIMED))  # another claim: a key of its own
    _claim(transport, requested_by="ana", lease_minutes=None)
    assert again[0][0] not in keys and again[0][1] == {"requestedBy": "ana"}


def test_a_claim_is_sent_three_times_at_most_and_a_refusal_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from arr_cli.errors import PoolEmpty, ServiceFailure
    from arr_cli.targets import app as app_target

    monkeypatch.setattr(app_target, "CLAIM_RETRY_SECONDS", 0.0)
    monkeypatch.setattr(app_target, "CLAIM_RETRY_MAX_SECONDS", 0.0)
    lost = httpx.ConnectError("connection refused")
    transport, seen = _claims(lost, lost, lost, lost)
    with pytest.raises(httpx.ConnectError):
        _claim(transport, requested_by="ana", lease_minutes=None)
    assert len(seen) == 3

    busy = httpx.Response(502, headers=PROBLEM, json={"title": "ARR failed", "status": 502, "detail": "boom"})
    transport, seen = _claims(busy, busy, busy, busy)
    with pytest.raises(ServiceFailure, match="claiming a session from pool warm: ARR failed - boom"):
        _claim(transport, requested_by="ana", lease_minutes=None)
    assert len(seen) == 3

    empty = httpx.Response(409, headers={**PROBLEM, "Retry-After": "60"}, json={
        "title": "Pool empty", "status": 409, "detail": "pool warm has no Ready session to hand out now"})
    transport, seen = _claims(empty)
    with pytest.raises(PoolEmpty) as caught:
        _claim(transport, requested_by="ana", lease_minutes=None)
    assert len(seen) == 1 and caught.value.exit_code == 6
    assert caught.value.message == ("claiming a session from pool warm: Pool empty - pool warm has no Ready session "
                                    "to hand out now")
    assert (caught.value.hint or "").startswith("The app asks to try again in 60 s. `arr-sessions pool list`")

    other = httpx.Response(409, headers=PROBLEM, json={"title": "Idempotency-Key reused", "status": 409})
    transport, seen = _claims(other)
    with pytest.raises(ServiceFailure) as refused:
        _claim(transport, requested_by="ana", lease_minutes=None)
    assert not isinstance(refused.value, PoolEmpty) and refused.value.exit_code == 3 and len(seen) == 1


def test_an_app_without_pools_or_a_budget_says_so() -> None:
    """In-process: an app from before pools and the budget answers their routes with the host's bare 404; the 404
    problem "No budget" of an app that has the route is no budget set (exit 7)."""
    import httpx

    from arr_cli.errors import NoBudget, ServiceFailure
    from arr_cli.targets.app import AppTarget

    def answering(response: httpx.Response) -> httpx.MockTransport:
        return httpx.MockTransport(lambda request: response)

    async def call(transport: httpx.MockTransport, method: str, *args: Any, **kwargs: Any) -> Any:
        target = AppTarget(AppConfig("http://app", "k"), transport=transport)
        try:
            return await getattr(target, method)(*args, **kwargs)
        finally:
            await target.aclose()

    bare = answering(httpx.Response(404, text=""))
    with pytest.raises(ServiceFailure, match="listing the warm pools: this app version has no warm pools"):
        asyncio.run(call(bare, "list_pools"))
    with pytest.raises(ServiceFailure, match="claiming a session from pool warm: this app version has no warm pools"):
        asyncio.run(call(bare, "claim_pool", "warm", requested_by="ana", lease_minutes=None))
    with pytest.raises(ServiceFailure, match="reading the budget: this app version has no budget") as old:
        asyncio.run(call(bare, "budget"))
    assert not isinstance(old.value, NoBudget)
    none = answering(httpx.Response(404, headers=PROBLEM, json={"title": "No budget", "status": 404,
                                                               "detail": "no ARR_BUDGET is set"}))
    with pytest.raises(NoBudget) as caught:
        asyncio.run(call(none, "budget"))
    assert caught.value.exit_code == 7 and "no budget set" in caught.value.message


def test_the_clis_pool_and_schedule_patterns_are_the_apps() -> None:
    """The command writes them out (the app's modules need tzdata, which the command alone does not install)."""
    from arr_cli.answers import POOL_NAME, SCHEDULE_ID
    from arr_core.domain.pools import POOL_NAME as APP_POOL_NAME
    from arr_core.domain.schedules import SCHEDULE_ID as APP_SCHEDULE_ID

    assert (POOL_NAME.pattern, SCHEDULE_ID.pattern) == (APP_POOL_NAME.pattern, APP_SCHEDULE_ID.pattern)


def test_importing_the_cli_commands_needs_no_tzdata() -> None:
    """`pip install -r requirements-cli.txt` has no tzdata: nothing the commands import at load time may need it."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['tzdata'] = None; import arr_cli.commands, arr_cli.answers, arr_cli.render, "
            "arr_cli.targets.app")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("value", "days"), [
    ("Mon-Fri", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
    ("sat,SUN", ["Sat", "Sun"]),
    (" monday - wednesday , friday ", ["Mon", "Tue", "Wed", "Fri"]),
    ("Fri,Mon,Fri", ["Mon", "Fri"]),
])
def test_days_are_weekdays_with_ranges(value: str, days: list[str]) -> None:
    from arr_cli.commands import _days

    assert _days(value) == days


@pytest.mark.parametrize(("value", "monthly"), [
    ("last Fri", {"nth": -1, "weekday": "Fri"}),
    ("2 tue", {"nth": 2, "weekday": "Tue"}),
    ("first Monday", {"nth": 1, "weekday": "Mon"}),
    ("3rd:Wed", {"nth": 3, "weekday": "Wed"}),
])
def test_monthly_is_the_nth_weekday(value: str, monthly: dict[str, Any]) -> None:
    from arr_cli.commands import _monthly

    assert _monthly(value) == monthly


@pytest.mark.parametrize(("call", "value", "words"), [
    ("_days", "Mo", "--days must name weekdays"), ("_days", "", "--days must name weekdays"),
    ("_days", "Sun-Mon", "a range goes from Mon towards Sun"), ("_monthly", "5 Fri", "--monthly must be"),
    ("_monthly", "last", "--monthly must be"), ("_monthly", "last Fry", "--monthly must name weekdays"),
    ("_local_date", "2026-02-30", "--except must be a local date"), ("_local_date", "2026-1-5", "--except must be"),
])
def test_what_cannot_be_a_schedule_is_refused(call: str, value: str, words: str) -> None:
    from arr_cli import commands

    with pytest.raises(UsageError) as caught:
        getattr(commands, call)(value)
    assert words in caught.value.message, caught.value.message


def test_schedules_are_rendered_escaped_in_their_own_time_zone() -> None:
    import io

    from rich.console import Console

    from arr_cli import render

    schedules = [{"id": "sch-0123456789ab", "description": f"Standard Ready by 09:00 {TITLE}", "timeZone": "Asia/Tokyo",
                  "requestedBy": "ana\u202e", "enabled": True, "exceptions": ["2026-12-24"], "fallbacks": ["Premium"],
                  "labels": {"team": TITLE}, "createdAt": "2026-12-01T10:00:00Z",
                  "next": {"localDate": "2026-12-08", "readyBy": "2026-12-08T09:00:00+09:00",
                           "createAt": "2026-12-08T08:44:30+09:00", "leadMinutes": 15.5,
                           "sessionId": "sched-0123456789ab-20261208"}},
                 {"id": "sch-ba9876543210", "description": "Premium Ready by 16:30 America/St_Johns", "enabled": False,
                  "timeZone": "America/St_Johns", "next": None}]
    out = io.StringIO()
    console = Console(file=out, width=200)
    console.print(render.schedules_table(schedules, "tzdata 2026f"))
    console.print(render.schedule_details(schedules[0]))
    console.print(render.schedule_details(schedules[1]))
    shown = out.getvalue()
    assert not any(c in shown for c in RAW), shown
    lines = shown.splitlines()
    assert [line for line in lines if line != line.rstrip()] == []
    assert lines[0] == "Schedules (local times from tzdata 2026f)"
    assert lines[2].split() == ["sch-0123456789ab", "Standard", "Ready", "by", "09:00", r"\x1b]0;pwned\x07\x1b[2J",
                                "2026-12-08", "09:00", "+09:00", "Asia/Tokyo", r"ana\u202e"]
    assert lines[3].split()[-2:] == ["disabled", "America/St_Johns"]
    assert ("Next          Ready by 2026-12-08 09:00 +09:00: session sched-0123456789ab-20261208, created at 08:44 "
            "+09:00, 15.5 min ahead") in lines
    assert r"Labels        team=\x1b]0;pwned\x07\x1b[2J" in lines
    assert "Enabled   no: it starts nothing" in lines and "Next      none: it is disabled" in lines
    assert render.local_time("2026-03-29T03:30:00-02:30") == "2026-03-29 03:30 -02:30" and render.local_time("x") == "x"


def test_an_app_without_schedules_says_so() -> None:
    import httpx

    from arr_cli.errors import ServiceFailure
    from arr_cli.targets.app import AppTarget

    async def call(response: httpx.Response, method: str, *args: Any) -> Any:
        target = AppTarget(AppConfig("http://app", "k"), transport=httpx.MockTransport(lambda request: response))
        try:
            return await getattr(target, method)(*args)
        finally:
            await target.aclose()

    for method, args in (("list_schedules", ()), ("add_schedule", ({"readyBy": "09:00"},)),
                         ("remove_schedule", ("sch-0123456789ab",))):
        with pytest.raises(ServiceFailure, match="this app version has no schedules"):
            asyncio.run(call(httpx.Response(404, text=""), method, *args))
    with pytest.raises(ServiceFailure) as caught:
        asyncio.run(call(httpx.Response(404, headers=PROBLEM, json={
            "title": "Schedule not found", "status": 404, "detail": "no schedule 'sch-0123456789ab'"}),
            "remove_schedule", "sch-0123456789ab"))
    assert caught.value.message == ("removing schedule sch-0123456789ab: Schedule not found - no schedule "
                                    "'sch-0123456789ab'")
    assert "removed already, or never made" in (caught.value.hint or "")
