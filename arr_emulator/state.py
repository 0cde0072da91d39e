"""The emulated ARR account: sessions on a clock, tokens, and scripted faults. Pure state, no HTTP.

A session's status is computed from the clock, not stored: Starting until ``startup_seconds`` have passed, then
Ready, then Expired once it has been Ready longer than its lease; Stopped when stopped. ``advance`` moves the
clock forward so that tests never sleep.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

TERAFLOPS = {"Standard": 8.1, "Premium": 14.0}
SUPPORTED_API_VERSIONS = ("2021-01-01-preview", "2021-01-01", "2021-08-01-preview")
TOKEN_LIFETIME = 24 * 3600
OPERATIONS = ("token", "create", "get", "update", "stop", "list")


@dataclass
class EmulatedSession:
    id: str
    size: str
    lease_minutes: int
    created_at: float
    startup_seconds: float
    region: str
    fails_with: dict[str, str] | None = None
    stopped_at: float | None = None
    hostname: str = ""
    handshake_port: int = 0
    arr_inspector_port: int = 0

    @property
    def ready_at(self) -> float:
        return self.created_at + self.startup_seconds

    def status(self, now: float) -> str:
        if self.stopped_at is not None and self.stopped_at < self.ready_at:
            return "Stopped"
        if now < self.ready_at:
            return "Starting"
        if self.fails_with is not None:
            return "Error"
        expires_at = self.ready_at + self.lease_minutes * 60
        if self.stopped_at is not None and self.stopped_at < expires_at:
            return "Stopped"
        return "Expired" if now >= expires_at else "Ready"

    def ended_at(self, now: float) -> float | None:
        status = self.status(now)
        if status == "Stopped":
            return self.stopped_at
        if status == "Expired":
            return self.ready_at + self.lease_minutes * 60
        if status == "Error":
            return self.ready_at
        return None

    def elapsed_minutes(self, now: float) -> int:
        if now < self.ready_at or self.fails_with is not None:
            return 0
        until = self.ended_at(now) or now
        return max(0, math.floor((until - self.ready_at) / 60))

    def to_json(self, now: float) -> dict[str, Any]:
        """The session as ARR 2021-01-01 sends it (keys absent while Starting, as the 2022 recordings show)."""
        status = self.status(now)
        body: dict[str, Any] = {
            "id": self.id,
            "creationTime": datetime.fromtimestamp(self.created_at, timezone.utc).isoformat(timespec="microseconds"),
        }
        if status == "Ready":
            body |= {"arrInspectorPort": self.arr_inspector_port, "handshakePort": self.handshake_port}
        body["elapsedTimeMinutes"] = self.elapsed_minutes(now)
        if status == "Ready":
            body["hostname"] = self.hostname
        body |= {"maxLeaseTimeMinutes": self.lease_minutes, "size": self.size, "status": status}
        if status in ("Ready", "Stopped", "Expired") and now >= self.ready_at:
            body["teraflops"] = TERAFLOPS[self.size]
        if status == "Error":
            body["error"] = dict(self.fails_with or {})
        return body


@dataclass
class Fault:
    """A scripted misbehaviour: the next ``count`` matching requests get it."""

    operations: tuple[str, ...] = OPERATIONS
    status: int | None = None
    retry_after: float | None = None
    latency_ms: float = 0.0
    drop: bool = False
    count: int = 1

    def matches(self, operation: str) -> bool:
        return self.count != 0 and operation in self.operations


@dataclass
class EmulatorState:
    """One ARR account (or several) as the emulator sees it."""

    accounts: dict[str, str]  # account id -> account key
    region: str = "eastus"
    startup_seconds: float = 10.0
    page_size: int = 100
    capacity: int | None = None
    latency_ms: float = 0.0
    accept_aad_tokens: bool = True
    clock_offset: float = 0.0
    sessions: dict[tuple[str, str], EmulatedSession] = field(default_factory=dict)
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (account id, expires at)
    faults: list[Fault] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OPERATIONS, 0))

    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        self.clock_offset += seconds

    def reset(self) -> None:
        """Forget sessions, faults and counters; issued tokens stay valid, as they would at the real STS."""
        self.sessions.clear()
        self.faults.clear()
        self.requests = dict.fromkeys(OPERATIONS, 0)
        self.clock_offset = 0.0

    # -- tokens ---------------------------------------------------------------------------------------------

    def issue_token(self, account_id: str) -> str:
        exp = int(self.now()) + TOKEN_LIFETIME
        header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=")
        claims = {"aud": f"https://manage.sa.{self.region}.mixedreality.azure.com/", "accountId": account_id,
                  "exp": exp, "nbf": exp - TOKEN_LIFETIME, "iat": exp - TOKEN_LIFETIME}
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        token = f"{header}.{payload}.{secrets.token_urlsafe(24)}"
        self.tokens[token] = (account_id, exp)
        return token

    def token_account(self, token: str) -> str | None:
        """The account a token was issued for, if it is one of ours and still valid."""
        entry = self.tokens.get(token)
        if entry is None or entry[1] <= self.now():
            return None
        return entry[0]

    # -- faults ---------------------------------------------------------------------------------------------

    def take_fault(self, operation: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(operation):
                if fault.count > 0:
                    fault.count -= 1
                if fault.count == 0:
                    self.faults.remove(fault)
                return fault
        return None

    # -- sessions -------------------------------------------------------------------------------------------

    def active_count(self, account_id: str) -> int:
        now = self.now()
        return sum(1 for (acct, _), s in self.sessions.items()
                   if acct == account_id and s.status(now) in ("Starting", "Ready"))

    def create(self, account_id: str, session_id: str, size: str, lease: int) -> tuple[int, EmulatedSession]:
        """201 for a new session, 200 for a repeat with the same settings, 409 for other settings."""
        existing = self.sessions.get((account_id, session_id))
        if existing is not None:
            same = existing.size == size and existing.lease_minutes == lease
            return (200 if same else 409), existing
        fails_with = None
        if self.capacity is not None and self.active_count(account_id) >= self.capacity:
            fails_with = {"code": "NoCapacity",
                          "message": f"No {size} rendering servers are available in {self.region}. Try again later "
                                     "or try another size or region."}
        session = EmulatedSession(
            id=session_id, size=size, lease_minutes=lease, created_at=self.now(),
            startup_seconds=self.startup_seconds, region=self.region, fails_with=fails_with,
            hostname=f"arr{self.region[:2]}{size.lower()}{secrets.token_hex(16)}"
                     f".remoterendering.vm.{self.region}.mixedreality.azure.com",
            handshake_port=49152 + secrets.randbelow(16382),
            arr_inspector_port=49152 + secrets.randbelow(16382),
        )
        self.sessions[(account_id, session_id)] = session
        return 201, session

    def get(self, account_id: str, session_id: str) -> EmulatedSession | None:
        return self.sessions.get((account_id, session_id))

    def stop(self, session: EmulatedSession) -> None:
        if session.status(self.now()) in ("Starting", "Ready"):
            session.stopped_at = self.now()

    def active(self, account_id: str) -> list[EmulatedSession]:
        now = self.now()
        return [s for (acct, _), s in self.sessions.items()
                if acct == account_id and s.status(now) in ("Starting", "Ready")]

    def snapshot(self) -> dict[str, Any]:
        now = self.now()
        return {
            "now": datetime.fromtimestamp(now, timezone.utc).isoformat(),
            "clockOffsetSeconds": self.clock_offset,
            "requests": dict(self.requests),
            "faults": len(self.faults),
            "sessions": [dict(s.to_json(now), accountId=acct, stoppedAt=s.stopped_at)
                         for (acct, _), s in self.sessions.items()],
        }
