"""The long-lived objects of one function-app process, built on first use from the settings.

Importing the app opens no connection: the ARR client, the token cache and the table client are created on the
first invocation and reused by every later one. ``azure.identity`` is imported only when managed identity is
configured (no ``ARR_ACCOUNT_KEY``, or a table endpoint instead of a connection string).
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import Misconfigured
from .settings import AppSettings

if TYPE_CHECKING:  # built on first use: importing the app stays cheap (httpx, azure-core, the table SDK)
    from ..arr.client import ArrClient  # noqa: PLC0415
    from ..store.azure_queues import StorageQueues  # noqa: PLC0415
    from ..store.azure_table import StorageTarget  # noqa: PLC0415
    from ..store.history import HistoryStore  # noqa: PLC0415
    from .budget import BudgetService
    from .heartbeats import Heartbeats
    from .hooks import HookService
    from .maintenance import Maintenance
    from .notifier import Notifier
    from .pools import PoolService
    from .queries import HistoryQueries
    from .quotas import QuotaService
    from .schedules import ScheduleService
    from .sessions import SessionService


@functools.lru_cache(maxsize=1)
def _managed_identity(settings: AppSettings) -> Any:
    """The process's one identity credential (ARR, tables and queues share it, and so its token cache)."""
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential  # noqa: PLC0415 - cold start

    if settings.managed_identity_client_id:
        return ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
    return DefaultAzureCredential()


def build_arr_client(settings: AppSettings) -> ArrClient:
    from ..arr.auth import AccountKeyCredential  # noqa: PLC0415
    from ..arr.client import ArrClient  # noqa: PLC0415

    if not settings.arr_configured:
        msg = "setting ARR_ACCOUNT_ID, ARR_ACCOUNT_DOMAIN and ARR_ENDPOINT (or ARR_REGION) are required"
        raise Misconfigured(msg)
    credential: Any = (_managed_identity(settings) if settings.uses_managed_identity
                       else AccountKeyCredential(settings.account_key or ""))
    return ArrClient(settings.arr_endpoint, settings.account_id, settings.account_domain, credential,
                     sts_endpoint=settings.sts_endpoint)


def storage_target(settings: AppSettings, endpoint: str | None, setting: str) -> StorageTarget:
    """Tables and queues alike: the storage connection string when it is one, else ``endpoint`` (the setting named
    ``setting``) with the managed identity."""
    from ..store.azure_table import StorageTarget  # noqa: PLC0415

    if settings.storage_connection and "=" in settings.storage_connection:
        return StorageTarget(connection_string=settings.storage_connection)
    if endpoint:
        return StorageTarget(endpoint=endpoint, credential=_managed_identity(settings))
    msg = f"setting AzureWebJobsStorage (a connection string) or {setting} is required"
    raise Misconfigured(msg)


def build_history(settings: AppSettings) -> HistoryStore:
    from ..store.azure_table import AzureTable  # noqa: PLC0415
    from ..store.history import HistoryStore  # noqa: PLC0415

    target = storage_target(settings, settings.table_endpoint, "ARR_HISTORY_TABLE_ENDPOINT")
    return HistoryStore(AzureTable.connect(target, settings.history_table))


def build_queues(settings: AppSettings) -> StorageQueues:
    from ..store.azure_queues import StorageQueues  # noqa: PLC0415

    target = storage_target(settings, settings.queue_endpoint, "ARR_QUEUE_ENDPOINT")
    connection = target.connection_string or ""
    if "AccountName=devstoreaccount1" in connection and "QueueEndpoint=" not in connection:
        # Azurite's account without its Queue service: the SDK would try devstoreaccount1.queue.core.windows.net
        return StorageQueues.unavailable("the development storage account has no QueueEndpoint")
    return StorageQueues.connect(target)


@dataclass
class AppContext:
    """The process's services, which the functions call, and the parts they share (``arr``, ``history``: held
    here to be closed, never called by a function)."""

    settings: AppSettings
    arr: ArrClient
    history: HistoryStore
    sessions: SessionService
    maintenance: Maintenance
    notifier: Notifier
    queries: HistoryQueries
    hooks: HookService
    pools: PoolService
    schedules: ScheduleService
    quotas: QuotaService

    @classmethod
    def from_settings(cls, settings: AppSettings) -> AppContext:
        import httpx  # noqa: PLC0415

        from .hooks import HookService  # noqa: PLC0415
        from .maintenance import Maintenance  # noqa: PLC0415
        from .notifier import Notifier  # noqa: PLC0415
        from .pools import PoolService
        from .queries import HistoryQueries  # noqa: PLC0415
        from .quotas import QuotaService
        from .schedules import ScheduleService
        from .sessions import SessionService  # noqa: PLC0415

        arr, history = build_arr_client(settings), build_history(settings)
        quotas = QuotaService(history)  # asked by every start and extend, and by the cleanup
        sessions = SessionService(arr, history, settings, quotas=quotas)
        # Deliveries ignore proxy settings: a proxy would look the receiver's name up again (see webhooks.pinned).
        queues = build_queues(settings)
        notifier = Notifier(sessions, history, queues, httpx.AsyncClient(trust_env=False),
                            poll_seconds=settings.poll_seconds, development=settings.development)
        maintenance = Maintenance(sessions, notifier, history=history, settings=settings, quotas=quotas)
        hooks = HookService(sessions, history, queues, notifier, settings.rules)
        return cls(settings, arr, history, sessions, maintenance, notifier, HistoryQueries(history, settings), hooks,
                   PoolService(sessions, history, settings), ScheduleService(sessions, history, settings), quotas)

    @functools.cached_property
    def heartbeats(self) -> Heartbeats:
        """Client heartbeats (idle stop): made on first use; it holds only what this process recorded last."""
        from .heartbeats import Heartbeats

        return Heartbeats(self.history, self.settings)

    @functools.cached_property
    def budget(self) -> BudgetService:
        """The monthly budget (``ARR_BUDGET``); made with the context, whose starts it may refuse."""
        from .budget import BudgetService

        return BudgetService(self.sessions, self.history, self.settings)

    def __post_init__(self) -> None:
        if self.settings.budget is not None:
            self.sessions.guard_starts(self.budget.check_start)

    async def aclose(self) -> None:
        await self.arr.aclose()
        await self.history.aclose()
        await self.notifier.aclose()


@functools.cache
def load_settings() -> AppSettings:
    """The process's settings, read from the environment once (app settings change only with a restart).

    A malformed setting raises :class:`Misconfigured` naming it, on every call: a raised error is not cached.
    """
    return AppSettings.from_env()


_context: AppContext | None = None
_lock = asyncio.Lock()


async def get_context() -> AppContext:
    """The process's context, created once (raises Misconfigured when a setting is missing or malformed)."""
    global _context  # noqa: PLW0603 - one per process, by design
    if _context is None:
        async with _lock:
            if _context is None:
                _context = AppContext.from_settings(load_settings())
    return _context

