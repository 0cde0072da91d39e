"""A delivery a hook took: the sender's event, what the rules decided, and whether it has been carried out.

It is recorded (Table Storage) before the sender gets its 2xx, so that the sender's retry is recognised on any
host after any restart, and carried out from the ``arr-hooks`` queue. Carrying out is idempotent by itself: a
start's session id is derived from the delivery (sender, delivery id, rule), so a delivery acted on twice (a lost
table, a retry racing the queue) still starts one session; a stop, and an extend to a total lease, are idempotent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import Field

from ..records import HOOK_ACTOR_PREFIX
from .rules import HookAction
from .senders import MAX_DELIVERY_ID_CHARS, HookModel, Sender

HOOK_QUEUE = "arr-hooks"  # {"sender", "deliveryId"}: carry out a recorded delivery
# A delivery is remembered at least as long as its sender retries: Event Grid 24 h, Standard Webhooks about 3 days.
KEEP_DELIVERIES = timedelta(days=7)


def delivery_key(sender: str, delivery_id: str) -> str:
    """The delivery's row key: a digest (delivery ids hold '/' and run to 1,024 characters; keys may not)."""
    return hashlib.sha256(f"{sender}\n{delivery_id}".encode()).hexdigest()


def hook_session_id(sender: str, delivery_id: str, rule: str) -> str:
    """The one session a start rule makes of a delivery, whoever carries it out and however often."""
    return "hook-" + hashlib.sha256(f"{sender}\n{delivery_id}\n{rule}".encode()).hexdigest()[:32]


def hook_actor(sender: str) -> str:
    return f"{HOOK_ACTOR_PREFIX}{sender}"


@dataclass(frozen=True)
class HookDelivery:
    """One event of one sender, and what it made the app decide and do."""

    sender: str
    delivery_id: str
    event_type: str
    received_at: datetime
    actions: tuple[HookAction, ...] = ()
    ignored: str | None = None  # why nothing is done, when nothing is
    done_at: datetime | None = None
    results: tuple[str, ...] = ()  # what each action did, once done

    @property
    def key(self) -> str:
        return delivery_key(self.sender, self.delivery_id)

    def expired(self, now: datetime) -> bool:
        """Older than the senders retry: the same id is a new delivery now (and the row is taken over)."""
        return now - self.received_at >= KEEP_DELIVERIES


class HookMessage(HookModel):
    """What goes on the queue: which recorded delivery to carry out. Nothing else is taken from a message (anyone
    who can write to the queue could write one): the actions are read from the table."""

    sender: Sender
    delivery_id: str = Field(min_length=1, max_length=MAX_DELIVERY_ID_CHARS)
