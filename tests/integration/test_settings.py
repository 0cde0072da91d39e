"""Settings are checked when they are read, and a bad one is named, never a 500 (issue 8, part 10).

In-process: :meth:`AppSettings.from_env` refuses each malformed value naming its variable, and the links the app
hands out come from its own base URL, never from the caller's ``Host``. Over HTTP: a host started with a bad
setting answers every route 503 "misconfigured", and one behind a public URL ignores a forged ``Host``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from conftest import ROOT, Azurite, Emulator, Host, function_app_env, start_host, stop

import blueprints.http as edge
from arr_core.services import context
from arr_core.services.settings import ENV_NAMES, AppSettings

# -- read and checked at load ----------------------------------------------------------------------------------

BAD = [
    ("ARR_TIME_ZONE", "Mars/Base"), ("ARR_TIME_ZONE", "UTC+2"), ("ARR_TIME_ZONE", "../../etc/passwd"),
    ("ARR_NIGHTLY_SHUTDOWN_AT", "ten"), ("ARR_NIGHTLY_SHUTDOWN_AT", "25:00"), ("ARR_NIGHTLY_SHUTDOWN_AT", "22:60"),
    ("ARR_NIGHTLY_SHUTDOWN_AT", "22"), ("ARR_NIGHTLY_SHUTDOWN_AT", "10pm"),
    ("ARR_CLEANUP_SCHEDULE", "*/5 * * * *"), ("ARR_CLEANUP_SCHEDULE", "every 5 minutes"), ("ARR_CLEANUP_SCHEDULE", ""),
    ("ARR_HISTORY_TABLE", "ab"), ("ARR_HISTORY_TABLE", "arr-sessions"),
    ("ARR_DEFAULT_LEASE_MINUTES", "2000"), ("ARR_DEFAULT_LEASE_MINUTES", "600"), ("ARR_MAX_LEASE_MINUTES", "30"),
    ("ARR_DEFAULT_SIZE", "Tiny"), ("ARR_STOP_CONCURRENCY", "lots"), ("ARR_POLL_SECONDS", "0"),
    ("ARR_RATE_STANDARD_PER_HOUR", "-1"), ("ARR_RATE_PREMIUM_PER_HOUR", "inf"), ("ARR_RATE_STANDARD_PER_HOUR", "nan"),
    ("ARR_ENDPOINT", "remoterendering.eastus.mixedreality.azure.com"), ("ARR_STS_ENDPOINT", "sts.example"),
    ("ARR_HISTORY_TABLE_ENDPOINT", "ftp://x"), ("ARR_REGION", "West Europe"),
    ("ARR_PUBLIC_BASE_URL", "arr.contoso.com"), ("ARR_PUBLIC_BASE_URL", "ftp://arr.contoso.com"),
    ("ARR_PUBLIC_BASE_URL", "https://arr.contoso.com/?x=1"), ("ARR_PUBLIC_BASE_URL", "https://arr.contoso.com/#f"),
    ("ARR_PUBLIC_BASE_URL", "javascript:alert(1)"), ("ARR_PUBLIC_BASE_URL", "https://arr contoso.com"),
    ("ARR_REQUEST_TIMEOUT_SECONDS", "4.9"), ("ARR_REQUEST_TIMEOUT_SECONDS", "101"),
    ("ARR_REQUEST_TIMEOUT_SECONDS", "soon"), ("ARR_REQUEST_TIMEOUT_SECONDS", "nan"),
    ("ARR_CLEANUP_BUDGET_SECONDS", "4"), ("ARR_CLEANUP_BUDGET_SECONDS", "91"), ("ARR_CLEANUP_BUDGET_SECONDS", "inf"),
    ("ARR_HOOK_RULES", "{}"), ("ARR_HOOK_RULES", '[{"name": "r1", "sender": "eventgrid"}]'),
    ("ARR_HOOK_RULES", '[{"name": "r1", "sender": "mail", "action": {"kind": "stopAll"}}]'),
    ("ARR_HOOK_STANDARD_SECRETS", "whsec_not base64!"), ("ARR_LINK_SIGNING_KEY", "too-short"),
]
EXTRA = {"ARR_DEFAULT_LEASE_MINUTES": {"ARR_MAX_LEASE_MINUTES": "480"}}  # 600 is within ARR's 1440, above the max


@pytest.mark.parametrize(("name", "value"), BAD, ids=[f"{n}={v}" for n, v in BAD])
def test_a_malformed_setting_is_refused_naming_its_variable(name: str, value: str) -> None:
    """``Mars/Base`` or ``ten`` used to pass here and fail later, in every route, as a 500."""
    with pytest.raises(ValueError, match=name):  # Misconfigured: a 503 at the edge
        AppSettings.from_env({name: value, **EXTRA.get(name, {})})


@pytest.mark.parametrize(("env", "field", "expected"), [
    ({"ARR_TIME_ZONE": "Europe/Amsterdam"}, "time_zone", "Europe/Amsterdam"),
    ({"ARR_TIME_ZONE": "America/Argentina/Buenos_Aires"}, "time_zone", "America/Argentina/Buenos_Aires"),
    ({"ARR_NIGHTLY_SHUTDOWN_AT": "22:00"}, "nightly_shutdown_at", "22:00"),
    ({"ARR_NIGHTLY_SHUTDOWN_AT": "07:30:15"}, "nightly_shutdown_at", "07:30:15"),
    ({"ARR_CLEANUP_SCHEDULE": "0 0 0 1 1 *"}, "cleanup_schedule", "0 0 0 1 1 *"),
    ({"ARR_CLEANUP_SCHEDULE": "00:05:00"}, "cleanup_schedule", "00:05:00"),
    ({"ARR_PUBLIC_BASE_URL": "https://arr.contoso.com/"}, "public_base_url", "https://arr.contoso.com"),
    ({"ARR_PUBLIC_BASE_URL": " https://apim.contoso.com/arr/ "}, "public_base_url", "https://apim.contoso.com/arr"),
    ({"ARR_PUBLIC_BASE_URL": "http://127.0.0.1:7071"}, "public_base_url", "http://127.0.0.1:7071"),
    ({"ARR_PUBLIC_BASE_URL": " "}, "public_base_url", None),
    ({"ARR_REQUEST_TIMEOUT_SECONDS": "5"}, "request_timeout_seconds", 5.0),
    ({"ARR_REQUEST_TIMEOUT_SECONDS": "100"}, "request_timeout_seconds", 100.0),
    ({"ARR_CLEANUP_BUDGET_SECONDS": "12.5"}, "cleanup_budget_seconds", 12.5),
    ({"ARR_DEFAULT_LEASE_MINUTES": "600", "ARR_MAX_LEASE_MINUTES": "600"}, "default_lease_minutes", 600),
])
def test_good_settings_are_read(env: dict[str, str], field: str, expected: Any) -> None:
    assert getattr(AppSettings.from_env(env), field) == expected


def test_defaults_of_the_new_settings() -> None:
    """Logic Apps wait 120 s: a request has 90 s, a cleanup acts for 60 s; links follow the request locally."""
    settings = AppSettings.from_env({})
    assert (settings.request_timeout_seconds, settings.cleanup_budget_seconds) == (90.0, 60.0)
    assert settings.public_base_url is None


def test_settings_defaults_and_region() -> None:
    """ARR_REGION builds the endpoint; blank optional settings count as unset."""
    settings = AppSettings.from_env({"ARR_REGION": "westeurope", "ARR_NIGHTLY_SHUTDOWN_AT": " "})
    assert settings.arr_endpoint == "https://remoterendering.westeurope.mixedreality.azure.com"
    assert settings.nightly_shutdown_at is None and settings.uses_managed_identity


def test_the_example_settings_are_valid() -> None:
    """``local.settings.example.json`` (what ``make run`` copies) passes its own checks and lists every setting the
    app reads, so that a user who runs ``func start`` sees them all; its blanks are unset (defaults apply)."""
    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    assert set(ENV_NAMES.values()) - set(values) == set()
    settings = AppSettings.from_env(values)
    assert (settings.max_session_minutes, settings.region, settings.rate_standard_per_hour) == (None, "", None)
    assert AppSettings.from_env({"ARR_STOP_CONCURRENCY": " ", "ARR_POLL_SECONDS": ""}).stop_concurrency == 16


# -- links on the app's own base URL, in-process ---------------------------------------------------------------

@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The process environment for one test; the settings cached from it are forgotten before and after."""
    for name in ("ARR_PUBLIC_BASE_URL", "WEBSITE_HOSTNAME", "ARR_TIME_ZONE", "ARR_REQUEST_TIMEOUT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    context.load_settings.cache_clear()
    yield monkeypatch
    context.load_settings.cache_clear()


@pytest.mark.parametrize(("env", "base"), [
    ({"ARR_PUBLIC_BASE_URL": "https://arr.contoso.com/", "WEBSITE_HOSTNAME": "app.azurewebsites.net"},
     "https://arr.contoso.com"),
    ({"ARR_PUBLIC_BASE_URL": "https://apim.contoso.com/arr"}, "https://apim.contoso.com/arr"),
    ({"WEBSITE_HOSTNAME": "app.azurewebsites.net"}, "https://app.azurewebsites.net"),
    ({"WEBSITE_HOSTNAME": "localhost:7071"}, "http://localhost:7071"),  # as Core Tools sets it
    ({"WEBSITE_HOSTNAME": "127.0.0.1:8123"}, "http://127.0.0.1:8123"),  # as devhost sets it
    ({"ARR_PUBLIC_BASE_URL": "https://arr.contoso.com", "ARR_TIME_ZONE": "Mars/Base"}, "https://arr.contoso.com"),
    ({}, "http://localhost:7071"),  # nothing says what the app's URL is: Core Tools' default, never the request's
])
def test_links_use_the_public_url_then_website_hostname_then_core_tools_default(environment: pytest.MonkeyPatch,
                                                                                env: dict[str, str],
                                                                                base: str) -> None:
    """ARR_PUBLIC_BASE_URL, else WEBSITE_HOSTNAME, else Core Tools' address; no request enters into it, so neither
    its Host nor its code can reach a link. A malformed other setting does not drop the public URL."""
    for name, value in env.items():
        environment.setenv(name, value)
    assert edge.absolute_url("sessions/s1/ready") == f"{base}/api/sessions/s1/ready"
    assert edge.absolute_url("history", top="1") == f"{base}/api/history?top=1"
    assert edge.ready_location("s1") == f"{base}/api/sessions/s1/ready"  # no signing key: the plain link


def test_the_request_budget_comes_from_the_setting(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("ARR_REQUEST_TIMEOUT_SECONDS", "30")
    assert edge._request_seconds() == 30.0
    environment.setenv("ARR_TIME_ZONE", "Mars/Base")
    context.load_settings.cache_clear()
    assert edge._request_seconds() == 90.0  # unreadable settings: the default budget (the answer is a 503)


# -- over HTTP -------------------------------------------------------------------------------------------------

ROUTES = [("POST", "/api/sessions", {}), ("GET", "/api/sessions", None), ("GET", "/api/sessions/s1", None),
          ("GET", "/api/sessions/s1/ready", None), ("PATCH", "/api/sessions/s1", {"leaseMinutes": 90}),
          ("POST", "/api/sessions/s1/stop", {}), ("GET", "/api/history", None), ("GET", "/api/usage", None),
          ("POST", "/api/cleanup", None)]


def forging_client(host: Host) -> httpx.Client:
    """A client of ``host`` that says ``Host: evil.example``."""
    return httpx.Client(base_url=host.url, headers={"x-functions-key": host.key, "Host": "evil.example"}, timeout=60)


@pytest.fixture
def host_with(emulator: Emulator, azurite: Azurite) -> Iterator[Any]:
    """Start the real app with extra settings; stopped at the end of the test."""
    hosts: list[Host] = []

    def start(**settings: str) -> Host:
        hosts.append(start_host(function_app_env(emulator, azurite, f"s{uuid.uuid4().hex[:10]}", **settings),
                                "function_app", "--no-timers"))
        return hosts[-1]

    yield start
    for host in hosts:
        stop(host.process)


@pytest.mark.parametrize(("name", "value"), [("ARR_TIME_ZONE", "Mars/Base"), ("ARR_NIGHTLY_SHUTDOWN_AT", "ten"),
                                            ("ARR_HOOK_RULES", '[{"name": "bad-rule", "sender": "eventgrid"}]')])
def test_a_bad_setting_makes_every_route_503_misconfigured(host_with: Any, emulator: Emulator, name: str,
                                                            value: str) -> None:
    """Every route, health included, was a 500. Now each is 503 problem+json "The function app is misconfigured"
    naming the setting; health answers 503 in its own shape; the OpenAPI document is still served."""
    host = host_with(**{name: value})
    with host.client() as client:
        for method, path, body in ROUTES:
            r = client.request(method, path, json=body)
            assert r.status_code == 503, (method, path, r.text[:300])
            assert r.headers["content-type"].startswith("application/problem+json")
            problem = r.json()
            assert problem["title"] == "The function app is misconfigured" and name in problem["detail"], problem
        assert client.get("/api/openapi.json").status_code == 200
    health = httpx.get(f"{host.url}/api/health")
    assert health.status_code == 503 and health.headers["content-type"].startswith("application/json")
    report = health.json()
    assert set(report) == {"status", "arr", "history"} and report["status"] == "misconfigured"
    assert report["arr"]["status"] == report["history"]["status"] == "misconfigured"
    assert name in report["history"]["detail"]
    if name == "ARR_HOOK_RULES":  # the rule is named too
        assert "'bad-rule': action" in report["history"]["detail"], report
    assert emulator.state()["requests"]["create"] == 0


@pytest.mark.parametrize("public", [None, "https://arr.contoso.example/"])
def test_a_forged_host_header_never_reaches_links(host_with: Any, emulator: Emulator, public: str | None) -> None:
    """The Host header went into Location, links, nextLink and the OpenAPI host when no public URL was set (locally),
    with the caller's code: ``Host: evil.example`` and ``?code=KEY`` gave
    ``Location: http://evil.example/api/sessions/<id>/ready?code=KEY``. Every URL is now on the app's own address
    (the public URL, else the address the host was started on) and none carries a key."""
    host = host_with(**({"ARR_PUBLIC_BASE_URL": public} if public else {}))
    own = f"{(public or host.url + '/').rstrip('/')}/api/"
    with forging_client(host) as client:
        started = [client.post("/api/sessions", params={"code": host.key}, json={"leaseMinutes": 5})
                   for _ in range(2)]
        for r in started:
            assert r.status_code == 202, r.text[:300]
            assert r.headers["Location"].startswith(own + "sessions/"), r.headers["Location"]
            assert all(link.startswith(own) for link in r.json()["links"].values())
        page = client.get("/api/history", params={"top": "1", "code": host.key}).json()
        assert page["nextLink"].startswith(own + "history?")
        assert "code" not in parse_qs(urlsplit(page["nextLink"]).query)
        document = client.get("/api/openapi.json").json()
        assert f"{document['schemes'][0]}://{document['host']}{document['basePath']}/" == own
        texts = [r.text + json.dumps(dict(r.headers)) for r in started] + [json.dumps(page), json.dumps(document)]
    assert not any("evil.example" in text for text in texts)
    assert not any(host.key in text for text in texts)


def test_a_signed_location_is_polled_without_a_key_and_only_as_signed(host_with: Any, emulator: Emulator) -> None:
    """With ARR_LINK_SIGNING_KEY, a 202's Location is a signed link that a poller holding no key (Logic Apps, Power
    Automate) follows to Ready; changed, moved to another session, or with another key's signature, it is a 403."""
    signing_key = "s" * 48
    host = host_with(ARR_LINK_SIGNING_KEY=f"{signing_key} {'o' * 40}")
    with host.client() as client:
        r = client.post("/api/sessions", json={"leaseMinutes": 5})
        other = client.post("/api/sessions", json={"leaseMinutes": 5}).json()["id"]
    assert r.status_code == 202, r.text[:300]
    location = r.headers["Location"]
    session_id = r.json()["id"]
    assert location.startswith(f"{host.url}/api/signed/sessions/{session_id}/ready?expires=")
    assert host.key not in location and signing_key not in location
    with httpx.Client(timeout=60) as anonymous:  # no function key at all
        assert anonymous.get(f"{host.url}/api/sessions/{session_id}/ready").status_code == 401
        polled = anonymous.get(location)
        assert polled.status_code == 202, polled.text[:300]
        assert polled.headers["Location"].startswith(f"{host.url}/api/signed/sessions/{session_id}/ready?")
        for _ in range(30):  # as Logic Apps polls: each new Location after Retry-After (on the emulator's clock)
            if polled.status_code != 202:
                break
            emulator.advance(int(polled.headers["Retry-After"]))
            polled = anonymous.get(polled.headers["Location"])
        assert polled.status_code == 200 and polled.json()["status"] == "Ready", polled.text[:300]
        query = parse_qs(urlsplit(location).query)
        expires, signature = query["expires"][0], query["signature"][0]
        forged_links = [location.replace(session_id, other),
                        location.replace(f"expires={expires}", f"expires={int(expires) + 3600}"),
                        location.replace(signature, ("A" if signature[0] != "A" else "B") + signature[1:]),
                        location.split("&signature=")[0]]
        for forged_link in forged_links:
            refused = anonymous.get(forged_link)
            assert refused.status_code == 403, (forged_link, refused.text[:300])
            assert refused.json()["title"] == "Link refused" and signing_key not in refused.text


def test_in_azure_without_a_public_url_links_use_website_hostname(host_with: Any, emulator: Emulator) -> None:
    """Azure sets WEBSITE_HOSTNAME to the app's own host name: that, not the caller's Host, makes the links."""
    host = host_with(WEBSITE_HOSTNAME="arr-sessions.azurewebsites.net")
    with forging_client(host) as client:
        r = client.post("/api/sessions", json={"leaseMinutes": 5})
    assert r.status_code == 202, r.text[:300]
    assert r.headers["Location"].startswith("https://arr-sessions.azurewebsites.net/api/sessions/")
    assert "evil.example" not in r.text
