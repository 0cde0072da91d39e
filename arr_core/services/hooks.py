"""Inbound webhooks: take a sender's events, remember each one, and carry out what the rules decided, once.

:meth:`HookService.receive` runs while the sender waits (it must answer within about 10 s): it decides, records
each event's delivery (a sender's retry finds it, on any host, after any restart) and queues the ones with actions.
:meth:`HookService.carry_out` runs from the ``arr-hooks`` queue: it reads the delivery back from the table (a
message only names one) and does what it says as ``hook:<sender>``, whose changes are announced like any other.
A delivery that is done is never done again; one carried out twice before it was marked done (two hosts, a lost
table) still starts one session, since the session id comes from the delivery, and stops and extends to a total
lease are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..api.views import ExtendSessionRequest, HookOutcome, HookReceipt, StartSessionRequest
from ..domain.hooks.deliveries import HOOK_QUEUE, HookDelivery, HookMessage, hook_actor, hook_session_id
from ..domain.hooks.rules import HookAction, HookRule, decide
from ..domain.hooks.senders import HookEvent
from ..domain.records import SessionRecord, utcnow
from ..errors import LeaseMustGrow, Refused, SessionEnded

if TYPE_CHECKING:
    from ..store.history import History
    from ..store.queues import Queues
    from .notifier import Links, Notifier
    from .sessions import SessionService, SessionState

log = logging.getLogger("arr_sessions.hooks")
LEASE_SECONDS = 120  # one host carries a delivery out at a time; a host that dies frees it after this
RECEIVE_CONCURRENCY = 16  # table writes and queue sends in flight for one delivery's events


@dataclass
class HookService:
    """The hooks' part of the app: rules from the settings, everything else shared with the other services."""

    sessions: SessionService
    history: History
    queues: Queues
    notifier: Notifier
    rules: Sequence[HookRule]
    clock: Callable[[], datetime] = utcnow
    _scoped: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def receive(self, events: Sequence[HookEvent], *, dry_run: bool = False) -> HookReceipt:
        """Decide on each event, and (unless a dry run) remember it and queue its actions, RECEIVE_CONCURRENCY at
        a time (an Event Grid batch holds up to 5,000). A retried event gets the outcome of its first delivery and
        is not queued again once it is done."""
        gate = asyncio.Semaphore(RECEIVE_CONCURRENCY)

        async def one(event: HookEvent) -> HookOutcome:
            async with gate:
                return await self._receive(event, dry_run=dry_run)

        return HookReceipt(events=list(await asyncio.gather(*(one(event) for event in events))))

    async def _receive(self, event: HookEvent, *, dry_run: bool) -> HookOutcome:
        decision = decide(self.rules, event)
        if dry_run:
            return HookOutcome(delivery_id=event.delivery_id, type=event.type,
                               outcome="wouldAct" if decision.actions else "ignored",
                               actions=list(decision.actions), reason=decision.ignored)
        delivery, new = await self.history.record_delivery(HookDelivery(
            sender=event.sender, delivery_id=event.delivery_id, event_type=event.type,
            received_at=self.clock(), actions=decision.actions, ignored=decision.ignored))
        if delivery.actions and delivery.done_at is None:
            # Again for a retry that finds it not done: the first may have died between its record and its
            # message. Carrying out twice does no harm (see the module); finding it done, nothing.
            message = HookMessage(sender=event.sender, delivery_id=event.delivery_id)
            await self.queues.send(HOOK_QUEUE, message.model_dump(by_alias=True))
        outcome = "done" if delivery.done_at else "queued" if delivery.actions else "ignored"
        log.info("hook %s delivery %s (%s): %s%s", event.sender, event.delivery_id[:128], event.type, outcome,
                 "" if new else " (a duplicate)")
        return HookOutcome(delivery_id=event.delivery_id, type=delivery.event_type, outcome=outcome,
                           duplicate=not new, actions=list(delivery.actions), reason=delivery.ignored,
                           results=list(delivery.results))

    async def carry_out(self, body: Any, links: Links) -> str:
        """Do what a queued delivery says, unless it is done or another host is doing it; what happened."""
        message = HookMessage.model_validate(body)  # ValidationError: not a message the app queued
        delivery = await self.history.delivery(message.sender, message.delivery_id)
        if delivery is None:
            return "no such delivery: not recorded by this app, or older than it keeps them"
        if delivery.done_at is not None:
            return "done already"
        job, holder = f"hook-{delivery.key}", uuid.uuid4().hex
        if not await self.history.take_lease(job, holder, LEASE_SECONDS):
            return "another host is carrying it out"
        try:
            # Read again under the lease: a run that held it a moment ago may have finished it (a second message
            # for one delivery is usual: a sender's retry queues it again while it is not done).
            delivery = await self.history.delivery(message.sender, message.delivery_id)
            if delivery is None or delivery.done_at is not None:
                return "done already"
            results = tuple([await self._act(delivery, action, links) for action in delivery.actions])
            await self.history.finish_delivery(delivery, results)
        finally:
            await self.history.release_lease(job, holder)
        log.info("hook %s delivery %s carried out: %s", delivery.sender, delivery.delivery_id[:128],
                 "; ".join(results))
        return "; ".join(results)

    async def _act(self, delivery: HookDelivery, action: HookAction, links: Links) -> str:
        """One action. A refusal (a lease above the limit, a size ARR refuses) is its result, not a retry; ARR's
        or storage's trouble raises, and the queue tries the delivery again."""
        actor = hook_actor(delivery.sender)
        try:
            if action.kind == "start":
                return await self._start(delivery, action, links)
            done = []
            async with self._scoped:  # this host's scope actions one at a time: each sees the last one's stops
                for state in await self._targets(action):
                    if action.kind == "extend":
                        try:
                            await self.sessions.extend(state.session_id, ExtendSessionRequest(
                                lease_minutes=action.lease_minutes, requested_by=actor, reason=action.reason))
                            done.append(state.session_id)
                        except (LeaseMustGrow, SessionEnded):
                            pass  # at that lease already (a repeat), or ended meanwhile
                        continue
                    current = await self.sessions.arr_view(state.session_id)  # the list may be seconds old
                    if current is None or current.status.is_terminal:
                        continue
                    stopped = await self.sessions.stop(state.session_id, action.reason, actor=actor, known=current)
                    await self.notifier.changed(stopped.record, links)
                    done.append(state.session_id)
        except Refused as exc:
            return f"{action.rule}: refused: {exc.message}"
        verb = "extended" if action.kind == "extend" else "stopped"
        return f"{action.rule}: {verb} {len(done)}" + (f" ({', '.join(done[:20])})" if done else "")

    async def _start(self, delivery: HookDelivery, action: HookAction, links: Links) -> str:
        request = StartSessionRequest(session_id=hook_session_id(delivery.sender, delivery.delivery_id, action.rule),
                                      size=action.size, lease_minutes=action.lease_minutes,  # type: ignore[arg-type]
                                      labels=action.labels or None, requested_by=action.requested_by,
                                      reason=action.reason)
        state = await self.sessions.start(request)
        await self.notifier.started(state, links)
        return f"{action.rule}: started {state.session_id}"

    async def _targets(self, action: HookAction) -> list[SessionState]:
        """The active sessions an action is for: every one not kept alive (stopAll), or those whose labels hold
        the action's scope (a session history does not know has no labels, so no scope takes it)."""
        active = (await self.sessions.list_active()).states
        if action.kind == "stopAll":
            return [s for s in active if not (s.record and s.record.keep_alive)]
        return [s for s in active if s.record is not None and _in_scope(s.record, action.scope)]


def _in_scope(record: SessionRecord, scope: dict[str, str]) -> bool:
    return all(record.labels.get(key) == value for key, value in scope.items())


__all__ = ["HookService"]
