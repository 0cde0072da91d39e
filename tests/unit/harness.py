"""One in-process world for unit tests: a fake clock shared by the ARR emulator (served in-process through
``httpx.ASGITransport``), a real :class:`ArrClient`, :class:`MemoryHistory`, :class:`SessionService` and
:class:`Maintenance`. Nothing listens on a socket; moving the clock moves every part at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from arr_core.arr.auth import AccountKeyCredential
from arr_core.arr.client import ArrClient
from arr_core.arr.retries import RetryPolicy
from arr_core.domain.records import Event, SessionRecord
from arr_core.services.maintenance import Maintenance
from arr_core.services.sessions import SessionService
from arr_core.services.settings import AppSettings
from arr_core.testing.memory_history import MemoryHistory
from arr_emulator import EmulatorState, Fault, create_app

ACCOUNT_ID = "00000000-0000-0000-0000-0000000000a1"
ACCOUNT_KEY = "unit-account-key-not-a-secret"
BASE_URL = "http://arr.test"
START = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)  # a Monday, before Europe's DST switch


@dataclass
class Clock:
    """Wall clock for everything in the world; only :meth:`advance` moves it."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def timestamp(self) -> float:
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class ClockedEmulatorState(EmulatorState):
    """The emulator's account on the world's clock (its own ``advance`` still adds an offset on top)."""

    def __init__(self, clock: Clock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock

    def now(self) -> float:
        return self.clock.timestamp() + self.clock_offset


Hook = Callable[[], Awaitable[None]]


class Spy:
    """ASGI middleware in front of the emulator: runs a hook when ARR *receives* a matching request, before the
    emulator acts on it; a test uses it to look at history at that moment, to hold a request, or to arm a fault."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.hooks: list[tuple[str, str, Hook]] = []

    def on(self, method: str, path_suffix: str, hook: Hook) -> None:
        self.hooks.append((method, path_suffix, hook))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for method, suffix, hook in list(self.hooks):
                if scope["method"] == method and scope["path"].endswith(suffix):
                    await hook()
        await self.app(scope, receive, send)


@dataclass
class World:
    clock: Clock
    emulator: ClockedEmulatorState
    spy: Spy
    http: httpx.AsyncClient
    arr: ArrClient
    history: MemoryHistory
    settings: AppSettings
    service: SessionService

    def maintenance(self) -> Maintenance:
        """A cleanup runner, as one instance of the app would have (its own lease holder name)."""
        return Maintenance(SessionService(self.arr, self.history, self.settings, clock=self.clock),
                           history=self.history, settings=self.settings, clock=self.clock)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def fault(self, *operations: str, **fault: Any) -> None:
        """Script an ARR fault (see :class:`arr_emulator.Fault`) for ``operations``."""
        self.emulator.faults.append(Fault(operations=operations, **fault))

    def start_at_arr(self, session_id: str, lease_minutes: int = 60, size: str = "Standard") -> None:
        """A session started directly at ARR, outside this app."""
        self.emulator.create(ACCOUNT_ID, session_id, size, lease_minutes)

    def stop_at_arr(self, session_id: str) -> None:
        session = self.emulator.get(ACCOUNT_ID, session_id)
        assert session is not None
        self.emulator.stop(session)

    def arr_statuses(self) -> dict[str, str]:
        now = self.emulator.now()
        return {sid: s.status(now) for (_, sid), s in self.emulator.sessions.items()}

    async def records(self) -> list[Any]:
        """Every session record history holds (created within a year of the clock)."""
        return [r async for r in self.history.sessions_created(self.clock.now - timedelta(days=365),
                                                               self.clock.now + timedelta(days=1))]

    async def event_types(self, session_id: str) -> list[tuple[int, str, str | None, str | None]]:
        return [(e["Seq"], e["Type"], e.get("FromStatus"), e.get("ToStatus"))
                for e in await self.history.events(session_id)]


def build_world(*, start: datetime = START, startup_seconds: float = 10.0, **settings: Any) -> World:
    clock = Clock(start)
    emulator = ClockedEmulatorState(clock, accounts={ACCOUNT_ID: ACCOUNT_KEY}, startup_seconds=startup_seconds)
    spy = Spy(create_app(emulator))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=spy), base_url=BASE_URL)
    arr = ArrClient(BASE_URL, ACCOUNT_ID, "eastus.mixedreality.azure.com", AccountKeyCredential(ACCOUNT_KEY),
                    sts_endpoint=BASE_URL, http_client=http, retry=RetryPolicy.off(), clock=clock.timestamp)
    app_settings = AppSettings(account_id=ACCOUNT_ID, account_domain="eastus.mixedreality.azure.com",
                               endpoint=BASE_URL, sts_endpoint=BASE_URL, account_key=ACCOUNT_KEY, **settings)
    history = MemoryHistory(clock=clock)
    service = SessionService(arr, history, app_settings, clock=clock)
    return World(clock, emulator, spy, http, arr, history, app_settings, service)


@dataclass
class FakeResolver:
    """Name resolution from a table, counting the lookups; a name not in it does not resolve."""

    answers: dict[str, list[str]]
    lookups: int = 0

    async def __call__(self, host: str) -> list[str]:
        self.lookups += 1
        if host not in self.answers:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return self.answers[host]


@dataclass
class FakeClock:
    """A monotonic and wall clock in seconds, in one; ``sleep`` advances it instead of waiting (retry policies, the
    token cache, the CLI's wait all take a clock and a sleep)."""

    now: float = 1_700_000_000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# -- history cases (the contract suite and MemoryHistory's own tests) -----------------------------------------------

def intent(session_id: str, created_at: datetime = START, **fields: object) -> SessionRecord:
    """A start's record as the session service writes it before ARR is asked."""
    values: dict[str, object] = {"size": "Standard", "lease_minutes": 30} | fields
    return SessionRecord(session_id=session_id, created_at=created_at, **values)  # type: ignore[arg-type]


def requested(at: datetime = START, actor: str | None = "alice") -> Event:
    return Event("requested", at, to_status="Requested", actor=actor, detail={"reason": "contract"})


def bump(kind: str = "bump", at: datetime = START) -> Callable[[SessionRecord], Any]:
    """A mutation that raises the lease by one minute and records one event."""
    return lambda r: (replace(r, lease_minutes=(r.lease_minutes or 0) + 1), [Event(kind, at)])

