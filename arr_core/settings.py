"""The app's settings, read once from the environment (app settings in Azure, ``local.settings.json`` locally)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .cleanup import parse_clock
from .models import SessionSize
from .validation import MAX_LEASE_MINUTES


from .errors import Misconfigured


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
    "public_base_url": "ARR_PUBLIC_BASE_URL",
    "request_timeout_seconds": "ARR_REQUEST_TIMEOUT_SECONDS",
    "cleanup_budget_seconds": "ARR_CLEANUP_BUDGET_SECONDS",
}


class AppSettings(BaseModel):
    """Every setting, with the default a user gets when it is not set. The README's settings table mirrors it."""

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
    history_table: str = Field(default="arrsessions", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$")
    default_size: SessionSize = SessionSize.STANDARD
    default_lease_minutes: int = Field(default=60, ge=0, le=MAX_LEASE_MINUTES)
    max_lease_minutes: int = Field(default=480, ge=0, le=MAX_LEASE_MINUTES)
    poll_seconds: int = Field(default=10, ge=1, le=300)
    nightly_shutdown_at: str | None = None
    time_zone: str = "UTC"
    max_session_minutes: int | None = Field(default=None, ge=1)
    stuck_starting_minutes: int = Field(default=30, ge=1)
    stop_concurrency: int = Field(default=16, ge=1, le=200)
    rate_standard_per_hour: float | None = Field(default=None, ge=0)
    rate_premium_per_hour: float | None = Field(default=None, ge=0)
    currency: str = "USD"
    public_base_url: str | None = None
    request_timeout_seconds: float = Field(default=90.0, ge=5, le=100)
    cleanup_budget_seconds: float = Field(default=60.0, ge=5, le=90)

    @field_validator("sts_endpoint", "account_key", "managed_identity_client_id", "storage_connection",
                     "table_endpoint", "nightly_shutdown_at", "max_session_minutes", "rate_standard_per_hour",
                     "rate_premium_per_hour", "public_base_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

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
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            msg = "must be an absolute http(s) URL without query or fragment, e.g. https://arr.contoso.com"
            raise ValueError(msg)
        return value.strip().rstrip("/")

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
    def uses_managed_identity(self) -> bool:
        return not self.account_key

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AppSettings:
        """Read the settings; a malformed one raises :class:`Misconfigured` naming the variable."""
        env = os.environ if env is None else env
        values = {field: env[name] for field, name in ENV_NAMES.items() if name in env}
        try:
            return cls(**values)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ENV_NAMES.get(str(first["loc"][0]), str(first["loc"][0]))
            msg = f"setting {name} is invalid: {first['msg']}"
            raise Misconfigured(msg) from None
