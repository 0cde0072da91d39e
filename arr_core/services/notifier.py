"""Telling people what happened to their sessions: the status watcher, subscriptions and per-start callbacks.

The I/O around :mod:`arr_core.domain.notifications`' rules:

- :meth:`Notifier.watch` reads a session (ARR merged with history, which records the change), announces what
  changed, and asks to be called again while the session is starting (a delayed message on ``arr-watch``);
- :meth:`Notifier.announce` turns a record's unannounced change into one message per receiver on ``arr-notify``,
  then marks the record as announced; a crash between the two announces it again (same event id);
- :meth:`Notifier.deliver` makes one delivery attempt; a failure is retried by a delayed copy of the message with
  the next attempt number (backoff), a 410 removes the subscription.

Nothing here delays the HTTP API or the cleanup for a slow receiver: they only enqueue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..api.present import build_view
from ..api.views import SessionLinks, StatusNotification, SubscriptionRequest
from ..domain.notifications import (
    NOTIFY_QUEUE,
    WATCH_QUEUE,
    WATCHED_STATUSES,
    StatusChange,
    Subscription,
    callback_due,
    new_subscription_id,
    pending_change,
    retry_delay,
)
from ..domain.records import SessionRecord, utcnow
from ..errors import DeadlineExceeded, SubscriptionNotFound, Unavailable
from ..outbound.url_rules import require_callback
from ..outbound.webhooks import Outcome, Resolver, deliver, system_resolver
from ..store.queues import Queues

if TYPE_CHECKING:
    import httpx

    from ..store.history import History
    from .sessions import SessionService, SessionState

log = logging.getLogger("arr_core.notifier")
SUBSCRIPTIONS_TTL = 10.0  # seconds a process reuses the subscription list (a new one is heard within this)
Links = Callable[[str], SessionLinks]  # links without any caller's key: a notification goes to a third party
WATCH_FOR = timedelta(hours=2)  # a session still starting after this is the cleanup's (stuck-starting rule)


@dataclass
class Notifier:
    """Announces status changes through the queues; one per process."""

    sessions: SessionService
    history: History
    queues: Queues
    http: httpx.AsyncClient
    poll_seconds: int
    development: bool
    clock: Callable[[], datetime] = utcnow
    resolve: Resolver = system_resolver
    _subscriptions: tuple[float, list[Subscription]] | None = field(default=None, init=False, repr=False)
    _reading: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def aclose(self) -> None:
        await self.queues.aclose()
        await self.http.aclose()

    # -- subscriptions --------------------------------------------------------------------------------------

    async def subscribe(self, request: SubscriptionRequest) -> Subscription:
        url = require_callback(request.notification_url, field="notificationUrl", development=self.development)
        subscription = Subscription(new_subscription_id(), url, self.clock(),
                                    frozenset(request.statuses) if request.statuses else None,
                                    request.session_id, request.requested_by)
        await self.history.add_subscription(subscription)
        self._subscriptions = None
        return subscription

    async def unsubscribe(self, subscription_id: str) -> Subscription:
        """Remove a subscription; the one removed."""
        removed = await self.history.remove_subscription(subscription_id)
        if removed is None:
            raise SubscriptionNotFound(f"no subscription {subscription_id}")
        self._subscriptions = None
        return removed

    async def _current_subscriptions(self) -> list[Subscription]:
        """The subscriptions, read at most once per SUBSCRIPTIONS_TTL: announcements that run side by side share
        one read."""
        async with self._reading:
            cached = self._subscriptions
            if cached is not None and time.monotonic() - cached[0] < SUBSCRIPTIONS_TTL:
                return cached[1]
            subscriptions = await self.history.subscriptions()
            self._subscriptions = (time.monotonic(), subscriptions)
            return subscriptions

    # -- the watcher ----------------------------------------------------------------------------------------

    async def watch_later(self, session_id: str) -> None:
        await self.queues.send(WATCH_QUEUE, {"sessionId": session_id}, delay=timedelta(seconds=self.poll_seconds))

    async def watch(self, session_id: str, links: Links) -> None:
        """One look at a session: record and announce what changed, and look again while it starts."""
        state = await self.sessions.read(session_id, missing_ok=True)
        if state.record is None:
            return
        await self.announce(state.record, links, state)
        if state.record.status in WATCHED_STATUSES and self.clock() - state.record.created_at < WATCH_FOR:
            await self.watch_later(session_id)

    # -- announcing -----------------------------------------------------------------------------------------

    async def started(self, state: SessionState, links: Links) -> None:
        """After a start: watch the session until it is Ready. Best effort: if the queue is down, the cleanup
        announces the change at its next run, and the start itself still succeeds."""
        try:
            await self.watch_later(state.session_id)
            if state.record is not None:
                await self.announce(state.record, links, state)
        except (Unavailable, DeadlineExceeded) as exc:
            log.warning("session %s: the watcher could not be asked (%s); the cleanup will announce its changes",
                        state.session_id, exc)

    async def changed(self, record: SessionRecord | None, links: Links) -> None:
        """After a caller's change (a stop): announce it, best effort as :meth:`started`."""
        if record is None:
            return
        try:
            await self.announce(record, links)
        except (Unavailable, DeadlineExceeded) as exc:
            log.warning("session %s: change not announced now (%s); the cleanup will", record.session_id, exc)

    async def announce(self, record: SessionRecord, links: Links, state: SessionState | None = None) -> int:
        """Queue the record's unannounced change for every receiver that wants it; how many were queued."""
        change = pending_change(record)
        if change is None:
            return 0
        receivers = [(s.callback_url, s.id) for s in await self._current_subscriptions()
                     if s.wants(change) and (record.updated_at is None or s.created_at <= record.updated_at)]
        if callback_due(record, change):
            receivers.append((record.callback_url or "", None))
        if receivers:
            payload = self._payload(record, change, links, state)
            for url, subscription_id in receivers:
                await self.queues.send(NOTIFY_QUEUE, {"url": url, "subscriptionId": subscription_id,
                                                      "eventId": change.event_id, "attempt": 1, "payload": payload})
        elif record.is_active:  # nobody to tell, and the cleanup reads it anyway: no write
            return 0
        # Marked, also when nobody listened to an ended session: the cleanup then stops reading it (a subscription
        # made later hears only later changes).
        await self.history.update(record.session_id, lambda r: _announced(r, change), record)
        return len(receivers)

    def _payload(self, record: SessionRecord, change: StatusChange, links: Links,
                 state: SessionState | None) -> dict[str, Any]:
        arr = state.arr if state is not None else None
        view = build_view(record.session_id, arr, record, links)
        return StatusNotification(event_id=change.event_id, at=record.updated_at or self.clock(),
                                  previous_status=change.previous_status, status=change.status,
                                  cause=change.cause, actor=change.actor, session=view,
                                  ).model_dump(mode="json", by_alias=True)

    # -- delivering -----------------------------------------------------------------------------------------

    async def deliver(self, message: dict[str, Any]) -> str:
        """One attempt for one queued notification; a failed attempt queues the next one, later."""
        attempt = int(message.get("attempt", 1))
        event_id = str(message.get("eventId"))
        outcome = await deliver(self.http, str(message["url"]), message["payload"], event_id=event_id,
                                development=self.development, resolve=self.resolve)
        if outcome == Outcome.GONE and message.get("subscriptionId"):
            await self.history.remove_subscription(str(message["subscriptionId"]))
            self._subscriptions = None
            log.info("subscription %s removed: its receiver answered 410 Gone", message["subscriptionId"])
        elif outcome == Outcome.RETRY:
            delay = retry_delay(attempt)
            if delay is None:
                log.warning("notification %s dropped after %d attempts", event_id, attempt)
            else:
                await self.queues.send(NOTIFY_QUEUE, {**message, "attempt": attempt + 1}, delay=delay)
        return outcome


def _announced(record: SessionRecord, change: StatusChange) -> tuple[SessionRecord, list[Any]] | None:
    """Mark ``change`` as announced, unless the record has moved on to another change meanwhile."""
    if record.status != change.status or record.notified_status == change.status:
        return None
    return replace(record, notified_status=change.status), []
