"""The settings model alone: defaults, the ARR endpoint and credentials it derives, and how a bad value is named.

tests/integration/test_settings.py has the table of malformed values per variable and the host's 503; this file
checks what that table does not: every default, boundaries, blank values, the error's exact form, secrets in repr.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from arr_core.arr.models import SessionSize
from arr_core.errors import Misconfigured, Unavailable
from arr_core.services.settings import ENV_NAMES, PLATFORM_NAMES, AppSettings


def refused(env: dict[str, str]) -> str:
    with pytest.raises(Misconfigured) as caught:
        AppSettings.from_env(env)
    return str(caught.value)


def test_every_default() -> None:
    """What a user gets with nothing set (docs/operations.md's settings table mirrors these)."""
    s = AppSettings.from_env({})
    assert s.model_dump() == {
        "account_id": "", "account_domain": "", "endpoint": "", "region": "", "sts_endpoint": None,
        "account_key": None, "managed_identity_client_id": None, "storage_connection": None, "table_endpoint": None,
        "history_table": "arrsessions", "default_size": SessionSize.STANDARD, "default_lease_minutes": 60,
        "max_lease_minutes": 480, "poll_seconds": 10, "nightly_shutdown_at": None, "time_zone": "UTC",
        "max_session_minutes": None, "stuck_starting_minutes": 30, "stop_concurrency": 16,
        "rate_standard_per_hour": None, "rate_premium_per_hour": None, "currency": "USD",
        "cleanup_schedule": "0 */5 * * * *", "public_base_url": None, "link_signing_key": None, "hook_rules": None,
        "hook_standard_secrets": None, "hook_github_secrets": None,
        "request_timeout_seconds": 90.0,
        "cleanup_budget_seconds": 60.0, "queue_endpoint": None, "website_instance_id": None,
        "stop_warning_minutes": 30, "idle_after_ready_minutes": None, "idle_minutes": None, "pool_config": None, "max_sessions": None, "max_sessions_per_requester": None,
        "budget_config": None,
    }
    assert (s.arr_endpoint, s.arr_configured, s.uses_managed_identity, s.development) == ("", False, True, True)
    assert not AppSettings.from_env({"WEBSITE_INSTANCE_ID": "0f1e2d"}).development


def test_every_field_has_its_variable() -> None:
    """A field without a variable could never be set in Azure."""
    assert set(ENV_NAMES) | set(PLATFORM_NAMES) == set(AppSettings.model_fields)
    assert len(set(ENV_NAMES.values())) == len(ENV_NAMES)


def test_from_env_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ARR_POLL_SECONDS", "42")
    monkeypatch.setenv("ARR_DEFAULT_SIZE", "premium")  # any case, as the PowerShell scripts write it
    s = AppSettings.from_env()
    assert (s.poll_seconds, s.default_size) == (42, SessionSize.PREMIUM)


def test_only_the_documented_variable_names_are_read() -> None:
    """Field names and unknown variables are ignored, not an error (app settings hold much else)."""
    s = AppSettings.from_env({"poll_seconds": "0", "ARR_UNKNOWN": "x", "WEBSITE_SITE_NAME": "app"})
    assert s.poll_seconds == 10


def test_the_error_names_the_variable_and_hides_pydantics_details() -> None:
    """Misconfigured is a 503 at the edge (Unavailable) and a ValueError; no chained ValidationError, no URL."""
    with pytest.raises(Misconfigured) as caught:
        AppSettings.from_env({"ARR_POLL_SECONDS": "0"})
    error = caught.value
    assert str(error) == "setting ARR_POLL_SECONDS is invalid: Input should be greater than or equal to 1"
    assert isinstance(error, Unavailable) and isinstance(error, ValueError) and error.code == "Misconfigured"
    assert error.__cause__ is None and error.__suppress_context__
    assert refused({"ARR_MAX_LEASE_MINUTES": "30"}) == (
        "setting ARR_MAX_LEASE_MINUTES is invalid: Value error, must be at least ARR_DEFAULT_LEASE_MINUTES (60), "
        "or every start without a lease is refused")


def test_a_bad_url_is_named_with_an_example_of_its_kind() -> None:
    """A service URL's example is ARR's endpoint; the public base URL's says it takes no query or fragment."""
    assert refused({"ARR_STS_ENDPOINT": "sts.example"}) == (
        "setting ARR_STS_ENDPOINT is invalid: Value error, must be an absolute http(s) URL, "
        "e.g. https://remoterendering.eastus.mixedreality.azure.com")
    assert refused({"ARR_PUBLIC_BASE_URL": "https://arr.example/?a=1"}) == (
        "setting ARR_PUBLIC_BASE_URL is invalid: Value error, must be an absolute http(s) URL without query or "
        "fragment, e.g. https://arr.contoso.com")
    assert AppSettings.from_env({"ARR_PUBLIC_BASE_URL": "https://arr.example/api//"}).public_base_url == \
        "https://arr.example/api"


def test_of_several_bad_settings_the_first_field_is_named() -> None:
    message = refused({"ARR_TIME_ZONE": "Mars/Base", "ARR_REGION": "West Europe", "ARR_POLL_SECONDS": "0"})
    assert message.startswith("setting ARR_REGION is invalid:")


def test_arr_endpoint_prefers_the_endpoint_and_drops_its_trailing_slash() -> None:
    both = AppSettings.from_env({"ARR_ENDPOINT": " https://arr.example/ ", "ARR_REGION": "westeurope"})
    assert (both.endpoint, both.arr_endpoint) == ("https://arr.example/", "https://arr.example")
    assert AppSettings.from_env({"ARR_REGION": "eastus2"}).arr_endpoint == \
        "https://remoterendering.eastus2.mixedreality.azure.com"


@pytest.mark.parametrize(("env", "configured"), [
    ({"ARR_ACCOUNT_ID": "id", "ARR_ACCOUNT_DOMAIN": "eastus.mixedreality.azure.com", "ARR_REGION": "eastus"}, True),
    ({"ARR_ACCOUNT_ID": "id", "ARR_ACCOUNT_DOMAIN": "d", "ARR_ENDPOINT": "http://127.0.0.1:1"}, True),
    ({"ARR_ACCOUNT_DOMAIN": "d", "ARR_REGION": "eastus"}, False),
    ({"ARR_ACCOUNT_ID": "id", "ARR_REGION": "eastus"}, False),
    ({"ARR_ACCOUNT_ID": "id", "ARR_ACCOUNT_DOMAIN": "d"}, False),
])
def test_arr_is_configured_with_an_account_its_domain_and_an_endpoint(env: dict[str, str], configured: bool) -> None:
    assert AppSettings.from_env(env).arr_configured is configured


def test_an_account_key_means_no_managed_identity() -> None:
    assert not AppSettings.from_env({"ARR_ACCOUNT_KEY": "k"}).uses_managed_identity
    assert AppSettings.from_env({"ARR_MANAGED_IDENTITY_CLIENT_ID": "c"}).uses_managed_identity


def test_a_blank_setting_is_unset_and_its_default_applies() -> None:
    """Portals and local.settings.json keep blanks for "not used": every blank reads as if it were absent."""
    blank = {name: " " if i % 2 else "" for i, name in enumerate(ENV_NAMES.values()) if name != "ARR_CLEANUP_SCHEDULE"}
    assert AppSettings.from_env(blank) == AppSettings.from_env({})
    assert AppSettings.from_env({"ARR_ACCOUNT_KEY": "  "}).uses_managed_identity


def test_a_blank_schedule_is_refused_because_the_host_reads_it_itself() -> None:
    """The Functions host resolves %ARR_CLEANUP_SCHEDULE% on its own: a blank there stops the timer."""
    assert refused({"ARR_CLEANUP_SCHEDULE": "   "}).startswith("setting ARR_CLEANUP_SCHEDULE is invalid: ")


def test_secrets_are_not_in_the_repr() -> None:
    s = AppSettings.from_env({"ARR_ACCOUNT_KEY": "key-not-to-log",
                              "AzureWebJobsStorage": "AccountKey=conn-not-to-log"})
    assert "key-not-to-log" not in repr(s) and "conn-not-to-log" not in repr(s)
    assert s.account_key == "key-not-to-log"


def test_settings_are_frozen() -> None:
    s = AppSettings.from_env({})
    with pytest.raises(ValidationError, match="frozen"):
        s.poll_seconds = 1  # type: ignore[misc]


@pytest.mark.parametrize(("env", "field", "expected"), [
    ({"ARR_HISTORY_TABLE": "abc"}, "history_table", "abc"),
    ({"ARR_HISTORY_TABLE": "T" + "1" * 62}, "history_table", "T" + "1" * 62),
    ({"ARR_POLL_SECONDS": "300"}, "poll_seconds", 300),
    ({"ARR_STOP_CONCURRENCY": "200"}, "stop_concurrency", 200),
    ({"ARR_MAX_SESSION_MINUTES": "1"}, "max_session_minutes", 1),
    ({"ARR_STUCK_STARTING_MINUTES": "1"}, "stuck_starting_minutes", 1),
    ({"ARR_DEFAULT_LEASE_MINUTES": "0"}, "default_lease_minutes", 0),
    ({"ARR_RATE_PREMIUM_PER_HOUR": "0"}, "rate_premium_per_hour", 0.0),
    ({"ARR_RATE_STANDARD_PER_HOUR": "3.5"}, "rate_standard_per_hour", 3.5),
    ({"ARR_CLEANUP_SCHEDULE": "1.00:00:00"}, "cleanup_schedule", "1.00:00:00"),
    ({"ARR_CLEANUP_SCHEDULE": "0 30 22 * * Mon-Fri"}, "cleanup_schedule", "0 30 22 * * Mon-Fri"),
])
def test_values_at_the_edges_are_accepted(env: dict[str, str], field: str, expected: object) -> None:
    assert getattr(AppSettings.from_env(env), field) == expected


@pytest.mark.parametrize(("name", "value"), [
    ("ARR_HISTORY_TABLE", "T" + "1" * 63), ("ARR_HISTORY_TABLE", "1abc"), ("ARR_POLL_SECONDS", "301"),
    ("ARR_STOP_CONCURRENCY", "201"), ("ARR_STOP_CONCURRENCY", "0"), ("ARR_MAX_SESSION_MINUTES", "0"),
    ("ARR_STUCK_STARTING_MINUTES", "0"), ("ARR_DEFAULT_LEASE_MINUTES", "-1"), ("ARR_MAX_LEASE_MINUTES", "1441"),
    ("ARR_CLEANUP_SCHEDULE", "0 0 0 * * * *"), ("ARR_CLEANUP_SCHEDULE", "5:00"),
])
def test_values_just_past_the_edges_are_refused(name: str, value: str) -> None:
    assert refused({name: value}).startswith(f"setting {name} is invalid: ")
