"""The app's settings, read once from the environment (app settings in Azure, ``local.settings.json`` locally)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from ..api.signed_links import MIN_KEY_CHARS
from ..arr.models import SessionSize
from ..arr.validation import MAX_LEASE_MINUTES
from ..domain.cleanup import parse_clock
from ..domain.hooks.rules import HookRule, parse_rules
from ..domain.budget import BudgetSpec, parse_budget
from ..domain.caps import Caps
from ..domain.pools import PoolSpec, parse_pools
from ..domain.hooks.signatures import standard_webhook_key
from ..errors import Misconfigured

# The Functions host reads the timer's schedule itself: NCRONTAB with six fields (seconds first), or a TimeSpan.
# Checked here too, so that the usual five-field cron is named by the app rather than a timer that never fires.
NCRONTAB = re.compile(r"[0-9A-Za-z*/,?-]+(?: +[0-9A-Za-z*/,?-]+){5}")
TIMESPAN = re.compile(r"(?:\d+\.)?\d{1,2}:\d{2}:\d{2}")


ENV_NAMES = {
    "account_id": "ARR_ACCOUNT_ID",
    "account_domain": "ARR_ACCOUNT_DOMAIN",
    "endpoint": "ARR_ENDPOINT",
    "region": "ARR_REGION",
    "sts_endpoint": "ARR_STS_ENDPOINT",
    "account_key": "ARR_ACCOUNT_KEY",
    "managed_identity_client_id": "ARR_MANAGED_IDENTITY_CLIENT_ID",
    "storage_connection": "AzureWebJobsStorage",
    "table_endpoint": "ARR_HISTORY_TABLE_ENDPOINT",
    "queue_endpoint": "ARR_QUEUE_ENDPOINT",
    "history_table": "ARR_HISTORY_TABLE",
    "default_size": "ARR_DEFAULT_SIZE",
    "default_lease_minutes": "ARR_DEFAULT_LEASE_MINUTES",
    "max_lease_minutes": "ARR_MAX_LEASE_MINUTES",
    "poll_seconds": "ARR_POLL_SECONDS",
    "nightly_shutdown_at": "ARR_NIGHTLY_SHUTDOWN_AT",
    "time_zone": "ARR_TIME_ZONE",
    "max_session_minutes": "ARR_MAX_SESSION_MINUTES",
    "stuck_starting_minutes": "ARR_STUCK_STARTING_MINUTES",
    "stop_concurrency": "ARR_STOP_CONCURRENCY",
    "rate_standard_per_hour": "ARR_RATE_STANDARD_PER_HOUR",
    "rate_premium_per_hour": "ARR_RATE_PREMIUM_PER_HOUR",
    "currency": "ARR_CURRENCY",
    "cleanup_schedule": "ARR_CLEANUP_SCHEDULE",
    "public_base_url": "ARR_PUBLIC_BASE_URL",
    "link_signing_key": "ARR_LINK_SIGNING_KEY",
    "hook_rules": "ARR_HOOK_RULES",
    "hook_standard_secrets": "ARR_HOOK_STANDARD_SECRETS",
    "hook_github_secrets": "ARR_HOOK_GITHUB_SECRETS",
    "request_timeout_seconds": "ARR_REQUEST_TIMEOUT_SECONDS",
    "cleanup_budget_seconds": "ARR_CLEANUP_BUDGET_SECONDS",
    "stop_warning_minutes": "ARR_STOP_WARNING_MINUTES",
    "idle_after_ready_minutes": "ARR_IDLE_AFTER_READY_MINUTES",
    "idle_minutes": "ARR_IDLE_MINUTES",
    "pool_config": "ARR_POOLS",
    "max_sessions": "ARR_MAX_SESSIONS",
    "max_sessions_per_requester": "ARR_MAX_SESSIONS_PER_REQUESTER",
    "budget_config": "ARR_BUDGET",
}
PLATFORM_NAMES = {"website_instance_id": "WEBSITE_INSTANCE_ID"}  # set by Azure itself, never by users

HOST_RESOLVED = frozenset({"cleanup_schedule"})  # %ARR_CLEANUP_SCHEDULE% in the timer binding: the host reads it


def _http_url(value: str, example: str, *, base: bool = False) -> str:
    """An absolute http(s) URL (stripped); a ``base`` URL also has no query, fragment or inner space."""
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or (base and re.search(r"[?#\s]", value)):
        msg = f"must be an absolute http(s) URL{example}"
        raise ValueError(msg)
    return value


def _several(value: str | None) -> tuple[str, ...]:
    """A setting that holds several secrets or keys, for rotation: separated by spaces or commas."""
    return tuple(value.replace(",", " ").split()) if value else ()


class AppSettings(BaseModel):
    """Every setting, with the default a user gets when it is not set. The settings table of docs/operations.md mirrors it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    account_id: str = ""
    account_domain: str = ""
    endpoint: str = ""
    region: str = ""
    sts_endpoint: str | None = None
    account_key: str | None = Field(default=None, repr=False)
    managed_identity_client_id: str | None = None
    storage_connection: str | None = Field(default=None, repr=False)
    table_endpoint: str | None = None
    queue_endpoint: str | None = None
    history_table: str = Field(default="arrsessions", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$")
    default_size: SessionSize = SessionSize.STANDARD
    default_lease_minutes: int = Field(default=60, ge=0, le=MAX_LEASE_MINUTES)
    max_lease_minutes: int = Field(default=480, ge=0, le=MAX_LEASE_MINUTES, validate_default=True)
    poll_seconds: int = Field(default=10, ge=1, le=300)
    nightly_shutdown_at: str | None = None
    time_zone: str = "UTC"
    max_session_minutes: int | None = Field(default=None, ge=1)
    stuck_starting_minutes: int = Field(default=30, ge=1)
    stop_concurrency: int = Field(default=16, ge=1, le=200)
    rate_standard_per_hour: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    rate_premium_per_hour: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    currency: str = "USD"
    cleanup_schedule: str = "0 */5 * * * *"
    public_base_url: str | None = None
    link_signing_key: str | None = Field(default=None, repr=False)
    hook_rules: str | None = None
    hook_standard_secrets: str | None = Field(default=None, repr=False)
    hook_github_secrets: str | None = Field(default=None, repr=False)
    request_timeout_seconds: float = Field(default=90.0, ge=5, le=100, allow_inf_nan=False)
    cleanup_budget_seconds: float = Field(default=60.0, ge=5, le=90, allow_inf_nan=False)
    stop_warning_minutes: int = Field(default=30, ge=0, le=240)
    idle_after_ready_minutes: int | None = Field(default=None, ge=0, le=1440)  # None or 0: off (arr_core.domain.idle)
    idle_minutes: int | None = Field(default=None, ge=0, le=1440)
    pool_config: str | None = None
    max_sessions: int | None = Field(default=None, ge=1, le=10000)
    max_sessions_per_requester: int | None = Field(default=None, ge=1, le=10000)
    budget_config: str | None = None
    website_instance_id: str | None = None

    @field_validator("endpoint", "sts_endpoint", "table_endpoint", "queue_endpoint")
    @classmethod
    def _service_url(cls, value: str | None) -> str | None:
        return _http_url(value, ", e.g. https://remoterendering.eastus.mixedreality.azure.com") if value else value

    @field_validator("region")
    @classmethod
    def _region_name(cls, value: str) -> str:
        if value and not re.fullmatch(r"[a-z0-9]+", value):
            msg = "must be an Azure region name such as westeurope"
            raise ValueError(msg)
        return value

    @field_validator("max_lease_minutes")
    @classmethod
    def _default_within_max(cls, value: int, info: ValidationInfo) -> int:
        default = info.data.get("default_lease_minutes")
        if default is not None and default > value:
            msg = f"must be at least ARR_DEFAULT_LEASE_MINUTES ({default}), or every start without a lease is refused"
            raise ValueError(msg)
        return value

    @field_validator("cleanup_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        if not (NCRONTAB.fullmatch(value.strip()) or TIMESPAN.fullmatch(value.strip())):
            msg = "must be NCRONTAB with six fields, seconds first (e.g. 0 */5 * * * *), or a TimeSpan hh:mm:ss"
            raise ValueError(msg)
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            msg = f"{value!r} is not an IANA time zone (e.g. Europe/Amsterdam)"
            raise ValueError(msg) from None
        return value

    @field_validator("nightly_shutdown_at")
    @classmethod
    def _time_of_day(cls, value: str | None) -> str | None:
        if value is not None:
            parse_clock(value)
        return value

    @field_validator("public_base_url")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _http_url(value, " without query or fragment, e.g. https://arr.contoso.com", base=True).rstrip("/")

    @field_validator("link_signing_key")
    @classmethod
    def _signing_keys(cls, value: str | None) -> str | None:
        if any(len(key) < MIN_KEY_CHARS for key in _several(value)):
            msg = f"each key must have at least {MIN_KEY_CHARS} characters (several keys: separated by spaces)"
            raise ValueError(msg)
        return value

    @field_validator("budget_config")
    @classmethod
    def _budget(cls, value: str | None) -> str | None:
        if value:
            parse_budget(value)
        return value

    @property
    def budget(self) -> BudgetSpec | None:
        """The monthly budget ``ARR_BUDGET`` declares (checked when the settings load); None without one."""
        return parse_budget(self.budget_config) if self.budget_config else None

    @field_validator("pool_config")
    @classmethod
    def _pools(cls, value: str | None) -> str | None:
        if value:
            parse_pools(value)
        return value

    @property
    def caps(self) -> Caps:
        return Caps(total=self.max_sessions, per_requester=self.max_sessions_per_requester)

    @property
    def rates(self) -> dict[str, float | None]:
        """The hourly rate of each size, as configured (None: not known)."""
        return {"Standard": self.rate_standard_per_hour, "Premium": self.rate_premium_per_hour}

    @property
    def pools(self) -> tuple[PoolSpec, ...]:
        """The warm pools ``ARR_POOLS`` declares (checked when the settings load)."""
        return parse_pools(self.pool_config) if self.pool_config else ()

    @field_validator("hook_rules")
    @classmethod
    def _rules(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rules(value)
        return value

    @field_validator("hook_standard_secrets")
    @classmethod
    def _standard_secrets(cls, value: str | None) -> str | None:
        for secret in _several(value):
            standard_webhook_key(secret)
        return value

    @property
    def rules(self) -> tuple[HookRule, ...]:
        """The hook rules (``ARR_HOOK_RULES``, a JSON array; checked when the settings load)."""
        return parse_rules(self.hook_rules) if self.hook_rules else ()

    @property
    def standard_secrets(self) -> tuple[str, ...]:
        return _several(self.hook_standard_secrets)

    @property
    def github_secrets(self) -> tuple[str, ...]:
        return _several(self.hook_github_secrets)

    @property
    def link_signing_keys(self) -> tuple[str, ...]:
        """The keys of signed links, the signing one first (``ARR_LINK_SIGNING_KEY``; spaces or commas between)."""
        return _several(self.link_signing_key)

    @property
    def arr_endpoint(self) -> str:
        """ARR's base URL: ``ARR_ENDPOINT``, or built from ``ARR_REGION``."""
        if self.endpoint:
            return self.endpoint.rstrip("/")
        if self.region:
            return f"https://remoterendering.{self.region}.mixedreality.azure.com"
        return ""

    @property
    def arr_configured(self) -> bool:
        return bool(self.account_id and self.account_domain and self.arr_endpoint)

    @property
    def development(self) -> bool:
        """Not in Azure (Azure sets WEBSITE_INSTANCE_ID): callbacks may then be http and local."""
        return self.website_instance_id is None

    @property
    def uses_managed_identity(self) -> bool:
        return not self.account_key

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AppSettings:
        """Read the settings; a malformed one raises :class:`Misconfigured` naming the variable. A blank setting
        is unset (its default applies): portals and ``local.settings.json`` keep blanks for "not used"; but not
        one the Functions host resolves itself (a blank schedule would stop the timer), which is refused."""
        env = os.environ if env is None else env
        values = {field: env[name] for field, name in (ENV_NAMES | PLATFORM_NAMES).items()
                  if env.get(name, "").strip() or (name in env and field in HOST_RESOLVED)}
        try:
            return cls(**values)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            name = ENV_NAMES.get(str(first["loc"][0]), str(first["loc"][0])) if first["loc"] else "a setting"
            msg = f"setting {name} is invalid: {first['msg']}"
            raise Misconfigured(msg) from None
