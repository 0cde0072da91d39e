"""ARR itself, through :class:`arr_core.ArrClient`: what ``RenderingSession.ps1`` does, plus Azure sign-in.

With an account key the client exchanges it at the STS, as the script does. Without one it uses azure-identity's
``DefaultAzureCredential`` (a managed identity, environment credentials, or ``az login``), imported only then.
ARR keeps no history, reasons or labels: flags that need them say so and exit 2, rather than being dropped.

arr_core bounds what ARR and the STS can do to us: an answer is read up to 16 MiB, and each exchange, an answer
that trickles in included, ends within its timeout (30 s, or ``ARR_SESSIONS_CALL_TIMEOUT``); a call is tried a
second time only when the first ended within 20 s (:data:`CLI_RETRY`). Its errors become messages and exit codes
in :func:`~arr_cli.errors.as_cli_error`, and everything ARR says is shown with its control characters escaped
(:mod:`arr_cli.render`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from arr_core.arr.auth import AccountKeyCredential
from arr_core.arr.client import ArrClient
from arr_core.arr.models import RenderingSession
from arr_core.arr.retries import RetryPolicy
from arr_core.arr.validation import MAX_LEASE_MINUTES

from ..config import DirectConfig
from ..errors import UsageError, app_only
from .base import VIEW_KEYS, Poll, Session, StartRequest


def new_session_id(now: datetime | None = None) -> str:
    """The app's id format (``arr-20261101-101500-1a2b3c4d``), so that sessions started either way look alike."""
    now = now or datetime.now(UTC)
    return f"arr-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"


def view_of(session: RenderingSession) -> Session:
    """ARR's session in the app's view shape; what only the app's history knows is null."""
    view: Session = dict.fromkeys(VIEW_KEYS)
    view |= {
        "id": session.id,
        "status": session.status.value,
        "size": session.size.value,
        "leaseMinutes": session.lease_minutes,
        "elapsedMinutes": session.elapsed_minutes,
        "remainingMinutes": session.remaining_minutes,
        "hostname": session.hostname,
        "handshakePort": session.handshake_port,
        "arrInspectorPort": session.arr_inspector_port,
        "teraflops": session.teraflops,
        "createdAt": session.created_at.isoformat() if session.created_at else None,
        "error": {"code": session.error.code, "message": session.error.message} if session.error else None,
    }
    return view


# A person is waiting: one quick retry (a 429's Retry-After within the deadline is still honoured), then the
# error. A wait goes on checking at its own pace after a passing failure (:mod:`arr_cli.waiting`).
CLI_RETRY = RetryPolicy(attempts=2, deadline=20.0, wait_max=4.0)


def default_credential(config: DirectConfig) -> Any:
    """azure-identity's async DefaultAzureCredential (managed identity, environment, ``az login``)."""
    from azure.identity.aio import DefaultAzureCredential

    if config.managed_identity_client_id:
        return DefaultAzureCredential(managed_identity_client_id=config.managed_identity_client_id)
    return DefaultAzureCredential()


class DirectTarget:
    """ARR's session API for one account."""

    is_app = False

    def __init__(self, config: DirectConfig, *, credential: Any = None, call_seconds: float | None = None) -> None:
        self.config = config
        self._credential = credential or (AccountKeyCredential(config.account_key) if config.account_key
                                          else default_credential(config))
        timeout = httpx.Timeout(call_seconds, connect=min(10.0, call_seconds)) if call_seconds else None
        self.client = ArrClient(config.endpoint, config.account_id, config.account_domain, self._credential,
                                sts_endpoint=config.sts_endpoint, retry=CLI_RETRY, timeout=timeout)

    def describe(self) -> str:
        return self.config.describe()

    async def aclose(self) -> None:
        await self.client.aclose()
        close = getattr(self._credential, "close", None)
        if close is not None:
            await close()

    async def start(self, request: StartRequest) -> Poll:
        for flag, value in (("--reason", request.reason), ("--label", request.labels),
                            ("--keep-alive", request.keep_alive), ("--requested-by", request.requested_by)):
            if value:
                raise app_only(flag)
        session_id = request.session_id or new_session_id()
        assert request.size is not None and request.lease_minutes is not None
        created = await self.client.create_session(session_id, size=request.size, lease_minutes=request.lease_minutes)
        return Poll(view_of(created))

    async def get(self, session_id: str) -> Session:
        return view_of(await self.client.get_session(session_id))

    async def poll(self, session_id: str) -> Poll:
        return Poll(await self.get(session_id))

    async def list(self) -> dict[str, Any]:
        return {"sessions": [view_of(s) async for s in self.client.list_sessions()]}

    async def extend(self, session_id: str, *, lease_minutes: int | None, by_minutes: int | None,
                     reason: str | None = None, requested_by: str | None = None) -> Session:
        """ARR keeps no history: a ``reason`` is refused, ``requested_by`` not sent."""
        if reason:
            raise app_only("--reason")
        if by_minutes is not None:
            current = await self.client.get_session(session_id)
            lease_minutes = (current.lease_minutes or 0) + by_minutes
            if lease_minutes > MAX_LEASE_MINUTES:
                msg = (f"the lease would be {lease_minutes} minutes ({current.lease_minutes} + {by_minutes}); ARR "
                       f"allows at most {MAX_LEASE_MINUTES}")
                raise UsageError(msg)
        assert lease_minutes is not None
        return view_of(await self.client.update_session(session_id, lease_minutes=lease_minutes))

    async def stop(self, session_id: str, *, reason: str | None, requested_by: str | None) -> Session:
        """ARR keeps no history: there is nowhere to say why or who (``requested_by`` is not sent)."""
        if reason:
            raise app_only("--reason")
        await self.client.stop_session(session_id)
        return await self.get(session_id)
