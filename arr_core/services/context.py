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
    from ..arr.client import ArrClient
    from ..store.history import HistoryStore
    from .maintenance import Maintenance
    from .notifier import Notifier
    from ..store.azure_queues import StorageQueues
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


def build_history(settings: AppSettings) -> HistoryStore:
    from ..store.history import HistoryStore  # noqa: PLC0415

    if settings.storage_connection and "=" in settings.storage_connection:
        return HistoryStore.from_connection_string(settings.storage_connection, settings.history_table)
    if settings.table_endpoint:
        return HistoryStore.from_endpoint(settings.table_endpoint, settings.history_table,
                                          _managed_identity(settings))
    msg = "setting AzureWebJobsStorage (a connection string) or ARR_HISTORY_TABLE_ENDPOINT is required"
    raise Misconfigured(msg)


def build_queues(settings: AppSettings) -> StorageQueues:
    from ..store.azure_queues import StorageQueues  # noqa: PLC0415

    connection = settings.storage_connection
    if connection and "=" in connection:
        if "AccountName=devstoreaccount1" in connection and "QueueEndpoint=" not in connection:
            # Azurite's account without its Queue service: the SDK would try devstoreaccount1.queue.core.windows.net
            return StorageQueues.unavailable("the development storage account has no QueueEndpoint")
        return StorageQueues.from_connection_string(connection)
    if settings.queue_endpoint:
        return StorageQueues.from_endpoint(settings.queue_endpoint, _managed_identity(settings))
    msg = "setting AzureWebJobsStorage (a connection string) or ARR_QUEUE_ENDPOINT is required"
    raise Misconfigured(msg)


@dataclass
class AppContext:
    settings: AppSettings
    arr: ArrClient
    history: HistoryStore
    sessions: SessionService
    maintenance: Maintenance
    notifier: Notifier

    @classmethod
    def from_settings(cls, settings: AppSettings) -> AppContext:
        import httpx  # noqa: PLC0415

        from .maintenance import Maintenance  # noqa: PLC0415
        from .notifier import Notifier  # noqa: PLC0415
        from .sessions import SessionService  # noqa: PLC0415

        arr, history = build_arr_client(settings), build_history(settings)
        sessions = SessionService(arr, history, settings)
        # Deliveries ignore proxy settings: a proxy would look the receiver's name up again (see webhooks.pinned).
        notifier = Notifier(sessions, history, build_queues(settings), httpx.AsyncClient(trust_env=False),
                            poll_seconds=settings.poll_seconds, development=settings.development)
        return cls(settings, arr, history, sessions, Maintenance(sessions, notifier), notifier)

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

