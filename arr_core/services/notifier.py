"""Telling people what happened to their sessions: the status watcher, subscriptions and per-start callbacks.

The I/O around :mod:`arr_core.domain.notifications`' rules:

- :meth:`Notifier.watch` reads a session (ARR merged with history, which records the change), announces what
  changed, and asks to be called again while the session is starting (a delayed message on ``arr-watch``);
- :meth:`Notifier.announce` turns a record's unannounced change into one message per receiver on ``arr-notify``,
  then marks the record as announced; a crash between the two announces it again (same event id);
- :meth:`Notifier.deliver` makes one delivery attempt; a failure is retried by a delayed copy of the message with
  the next attempt number (backoff), a 410 removes the subscription.

A queue message is not trusted: anyone who can write to the queue could have written it. Each is read as a
:class:`Delivery` (every field bounded; a message that is not one is dropped, with a warning), and where it goes is
taken from storage, not from the message: a subscription's delivery goes only to that subscription's URL while it
still exists (a DELETE stops its retries too), a start's callback only to the URL its session's record holds. So a
410 can only remove the subscription whose own URL answered it, and a forged message can reach no one who is not
already a receiver of that session's changes. (The messages are not signed: see docs/integrations.md.)

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

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from ..api.present import build_view
from ..api.views import (
    SessionLinks,
    StatusNotification,
    StopActions,
    StopWarningNotification,
    SubscriptionRequest,
    WarningSubscriptionRequest,
)
from ..domain.notifications import (
    DEFAULT_EVENTS,
    MAX_DELIVERY_ATTEMPTS,
    MAX_URL_CHARS,
    NOTIFY_QUEUE,
    STOP_WARNING,
    SUBSCRIPTION_ID,
    WATCH_QUEUE,
    WATCHED_STATUSES,
    StatusChange,
    Subscription,
    callback_due,
    new_subscription_id,
    pending_change,
    retry_delay,
)
from ..domain.records import CLEANUP_ACTOR, SessionRecord, utcnow
from ..domain.warnings import UpcomingStop, warned
from ..errors import DeadlineExceeded, SubscriptionNotFound, Unavailable
from ..outbound.url_rules import require_callback
from ..outbound.webhooks import Outcome, Resolver, deliver, system_resolver
from ..store.queues import Queues

if TYPE_CHECKING:
    import httpx

    from ..arr.models import RenderingSession
    from ..store.history import History
    from .sessions import SessionService, SessionState

log = logging.getLogger("arr_core.notifier")
SUBSCRIPTIONS_TTL = 10.0  # seconds a process reuses the subscription list (a new one is heard within this)
Links = Callable[[str], SessionLinks]  # links without any caller's key: a notification goes to a third party
Signer = Callable[[str, datetime], str | None]  # a signed path's absolute URL good until then; None without a key
WATCH_FOR = timedelta(hours=2)  # a session still starting after this is the cleanup's (stuck-starting rule)


class Delivery(BaseModel):
    """One notification to one receiver, as queued on ``arr-notify``; what a message must be to be acted on."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    url: str = Field(min_length=1, max_length=MAX_URL_CHARS)
    subscription_id: str | None = Field(default=None, pattern=SUBSCRIPTION_ID.pattern)
    event_id: str = Field(min_length=1, max_length=600)
    attempt: int = Field(default=1, ge=1, le=MAX_DELIVERY_ATTEMPTS)
    payload: dict[str, Any]

    @property
    def session_id(self) -> str | None:
        session = self.payload.get("session")
        value = session.get("id") if isinstance(session, dict) else None
        return value if isinstance(value, str) else None

    def message(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


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

    async def subscribe(self, request: SubscriptionRequest | WarningSubscriptionRequest) -> Subscription:
        """A subscription to status changes, or (a :class:`WarningSubscriptionRequest`) to stop warnings."""
        url = require_callback(request.notification_url, field="notificationUrl", development=self.development)
        statuses = request.statuses if isinstance(request, SubscriptionRequest) else None
        events = DEFAULT_EVENTS if isinstance(request, SubscriptionRequest) else frozenset({STOP_WARNING})
        subscription = Subscription(new_subscription_id(), url, self.clock(), frozenset(statuses) if statuses else None,
                                    request.session_id, request.requested_by, events)
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
                delivery = Delivery(url=url, subscription_id=subscription_id, event_id=change.event_id,
                                    payload=payload)
                await self.queues.send(NOTIFY_QUEUE, delivery.message())
        elif record.is_active:  # nobody to tell, and the cleanup reads it anyway: no write
            return 0
        # Marked, also when nobody listened to an ended session: the cleanup then stops reading it (a subscription
        # made later hears only later changes).
        await self.history.update(record.session_id, lambda r: _announced(r, change), record)
        return len(receivers)

    async def warn(self, record: SessionRecord, stop: UpcomingStop, actions: StopActions, links: Links,
                   arr: RenderingSession | None = None) -> int:
        """Queue a warning of ``stop`` for every subscription that asked for warnings, then mark the record as
        warned (with its event); how many were queued. A crash between the two warns again at the next run, with
        the same event id. Nobody listening: the record is still marked, so the history shows the stop was seen
        coming."""
        now = self.clock()
        receivers = [s for s in await self._current_subscriptions() if s.wants_warning(record)]
        if receivers:
            payload = StopWarningNotification(
                event_id=stop.stop_id, at=now, stop_at=stop.at, minutes_ahead=stop.minutes_ahead(now), kind=stop.kind,
                reason=stop.reason, actions=actions, session=build_view(record.session_id, arr, record, links),
            ).model_dump(mode="json", by_alias=True)
            for subscription in receivers:
                delivery = Delivery(url=subscription.callback_url, subscription_id=subscription.id,
                                    event_id=stop.stop_id, payload=payload)
                await self.queues.send(NOTIFY_QUEUE, delivery.message())
        await self.history.update(record.session_id, lambda r: warned(r, stop, now, actor=CLEANUP_ACTOR), record)
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
        try:
            delivery = Delivery.model_validate(message)
        except ValidationError as exc:
            log.warning("a message on %s is no delivery the app queued, dropped: %s", NOTIFY_QUEUE,
                        "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]))
            return Outcome.REFUSED
        if not await self._still_wanted(delivery):
            return Outcome.REFUSED
        outcome = await deliver(self.http, delivery.url, delivery.payload, event_id=delivery.event_id,
                                development=self.development, resolve=self.resolve)
        if outcome == Outcome.GONE and delivery.subscription_id:
            await self.history.remove_subscription(delivery.subscription_id)
            self._subscriptions = None
            log.info("subscription %s removed: its receiver answered 410 Gone", delivery.subscription_id)
        elif outcome == Outcome.RETRY:
            delay = retry_delay(delivery.attempt)
            if delay is None:
                log.warning("notification %s dropped after %d attempts", delivery.event_id, delivery.attempt)
            else:
                later = delivery.model_copy(update={"attempt": delivery.attempt + 1})
                await self.queues.send(NOTIFY_QUEUE, later.message(), delay=delay)
        return outcome

    async def _still_wanted(self, delivery: Delivery) -> bool:
        """The receiver is one storage knows for this delivery: the subscription still exists with that URL, or the
        session's record holds that callback URL."""
        if delivery.subscription_id is not None:
            subscription = await self.history.subscription(delivery.subscription_id)
            if subscription is None or subscription.callback_url != delivery.url:
                log.info("notification %s not sent: subscription %s is gone or has another URL", delivery.event_id,
                         delivery.subscription_id)
                return False
            return True
        record = await self.history.get(delivery.session_id) if delivery.session_id else None
        if record is None or record.callback_url != delivery.url:
            log.warning("notification %s not sent: no session of its payload has that callback URL",
                        delivery.event_id)
            return False
        return True


def _announced(record: SessionRecord, change: StatusChange) -> tuple[SessionRecord, list[Any]] | None:
    """Mark ``change`` as announced, unless the record has moved on to another change meanwhile."""
    if record.status != change.status or record.notified_status == change.status:
        return None
    return replace(record, notified_status=change.status), []
