"""The ARR session as the 2021-01-01 REST API describes it, parsed leniently.

Real responses vary (the recordings of real traffic in ``tests/recordings`` show it): ports are 0 or absent while a
session starts, the hostname may be null, ``creationTime`` has 6 or 7 fraction digits and ``Z`` or ``+00:00``, and newer
service versions may add fields. The model accepts all of that; ports of 0 ("not assigned yet") become None.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _CaseInsensitiveEnum(str, enum.Enum):
    """Accepts ``standard`` as well as ``Standard``: older API versions and the PowerShell scripts use lowercase."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            for member in cls:
                if member.value.lower() == value.lower():
                    return member
        return None

    def __str__(self) -> str:
        return self.value


class SessionSize(_CaseInsensitiveEnum):
    """Size of the rendering server; fixed for the life of the session."""

    STANDARD = "Standard"
    PREMIUM = "Premium"


class SessionStatus(_CaseInsensitiveEnum):
    """Life cycle of a session: Starting, then Ready, then one of the three terminal states."""

    STARTING = "Starting"
    READY = "Ready"
    STOPPED = "Stopped"
    EXPIRED = "Expired"
    ERROR = "Error"

    @property
    def is_terminal(self) -> bool:
        """Stopped, Expired and Error never change again."""
        return self in (SessionStatus.STOPPED, SessionStatus.EXPIRED, SessionStatus.ERROR)


class ArrErrorDetail(BaseModel):
    """The ``error`` object of a failed session (and of error responses)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow", frozen=True)

    code: str
    message: str
    target: str | None = None
    details: list[ArrErrorDetail] | None = None
    inner_error: ArrErrorDetail | None = Field(default=None, alias="innerError")


class RenderingSession(BaseModel):
    """One ARR rendering session, as ARR last reported it."""

    model_config = ConfigDict(populate_by_name=True, extra="allow", frozen=True)

    id: str
    status: SessionStatus
    size: SessionSize
    lease_minutes: int | None = Field(default=None, alias="maxLeaseTimeMinutes")
    elapsed_minutes: int | None = Field(default=None, alias="elapsedTimeMinutes")
    hostname: str | None = None
    handshake_port: int | None = Field(default=None, alias="handshakePort")
    arr_inspector_port: int | None = Field(default=None, alias="arrInspectorPort")
    teraflops: float | None = None
    created_at: datetime | None = Field(default=None, alias="creationTime")
    error: ArrErrorDetail | None = None

    @field_validator("handshake_port", "arr_inspector_port")
    @classmethod
    def _unassigned_port_is_none(cls, value: int | None) -> int | None:
        return value or None

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value

    @property
    def remaining_minutes(self) -> int | None:
        """Lease minutes left; None until the session is Ready (the lease counts from Ready)."""
        if self.status is not SessionStatus.READY or self.lease_minutes is None:
            return None
        return max(0, self.lease_minutes - (self.elapsed_minutes or 0))


__all__ = ["ArrErrorDetail", "RenderingSession", "SessionSize", "SessionStatus"]
