"""Group commit: writes to one partition that come while a batch of them is on its way go together in the next one.

Each write is one caller's change (a record's conditional replace and its events, say): operations on one
partition that succeed or fail together. Writes to the same partition under the same request budget that come
while :data:`BATCHES_IN_FLIGHT` batches of them are on their way wait, and the next one to send takes as many of
them as fit one entity-group transaction. Table Storage's rules for that transaction:

- one partition (writes are grouped by PartitionKey);
- at most :data:`MAX_BATCH_OPS` (100) operations;
- at most 4 MiB of payload (:data:`MAX_BATCH_CHARS`, counted as characters of the entities);
- each entity at most once (a write touching an entity already in the batch waits for the next one).

A transaction is all or nothing and each write keeps its own ETag conditions, so no write lands without its events
and none lands twice. A transaction the table *refused* (one lost race, say) wrote nothing: each of its writes is
sent again alone, and answers its caller exactly as it would have alone. A transaction that got *no answer* fails
every write in it (no one knows what was written). A write is acknowledged only once its transaction is, so the
order of one caller's writes is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from .. import deadline
from ..errors import DeadlineExceeded, HistoryUnavailable
from .table import Op, TableRefusal

MAX_BATCH_OPS = 100  # Table Storage's limit for one entity-group transaction
MAX_BATCH_CHARS = 600_000  # its limit is 4 MiB of payload: a character costs at most 6 bytes (a JSON \u escape)
# Batches on their way at once, per partition and budget: writes that come meanwhile wait, and go together in the
# next one. One batches best (the least CPU per write); two measured no faster on the nightly benchmark.
BATCHES_IN_FLIGHT = 1
_LEAD = object()  # what a waiting write is told when it is its turn to send a batch
_ALONE: ContextVar[bool] = ContextVar("arr_core_group_commit_alone", default=False)

Send = Callable[[list[Op]], Awaitable[list[str]]]


@dataclass(eq=False)
class _Write:
    """One caller's change: operations on one partition that succeed or fail together, and its answer."""

    ops: list[Op]
    done: asyncio.Future[Any]
    keys: frozenset[str] = field(init=False)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.keys = frozenset(op[1]["RowKey"] for op in self.ops)
        self.size = sum(weight(op[1]) for op in self.ops)


@dataclass(eq=False)
class _Lane:
    """Writes to one partition, under one request budget, waiting for a batch, and how many are on their way."""

    waiting: list[_Write] = field(default_factory=list)
    sending: int = 0


def weight(entity: dict[str, Any]) -> int:
    """An upper bound of an entity's characters in a batch (names, values, OData type annotations)."""
    return sum(len(name) * 2 + 64 + (len(value) if isinstance(value, str) else 0) for name, value in entity.items())


def refused(exc: BaseException) -> bool:
    """The table answered the call with an error: nothing of it was written."""
    return isinstance(exc, TableRefusal) or isinstance(exc.__cause__, TableRefusal)


def _failed(exc: BaseException) -> Exception:
    """What a write raises whose batch another caller sent and got no answer for: that error, as its own."""
    if isinstance(exc, (HistoryUnavailable, DeadlineExceeded)):
        failure: Exception = type(exc)(exc.message)
    else:
        failure = HistoryUnavailable(f"Table Storage did not answer the batch with this write ({type(exc).__name__})")
    failure.__cause__ = exc
    return failure


@contextmanager
def alone() -> Iterator[None]:
    """Writes in this context are sent alone, never batched (used while restoring a lost table: that may run inside
    the sending of a batch whose call found the table gone)."""
    token = _ALONE.set(True)
    try:
        yield
    finally:
        _ALONE.reset(token)


class GroupCommit:
    """Sends writes through ``send`` (one call: a lone operation as itself, more as one transaction), batching
    concurrent ones. ``bounded`` bounds a write's wait for its batch as any call is bounded."""

    def __init__(self, send: Send, bounded: Callable[[], AbstractAsyncContextManager[None]]) -> None:
        self._send = send
        self._bounded = bounded
        self._lanes: dict[tuple[str, Any], _Lane] = {}  # (partition, request budget) -> writes waiting

    async def write(self, ops: list[Op]) -> list[str]:
        """Write ``ops`` (one caller's change, one partition) all or nothing; each operation's new ETag."""
        if _ALONE.get():
            return await self._send(ops)
        loop = asyncio.get_running_loop()
        lane_key = (ops[0][1]["PartitionKey"], deadline.current_budget())  # the budget itself, not what is left
        lane = self._lanes.get(lane_key)
        if lane is None:
            lane = self._lanes[lane_key] = _Lane()
        write = _Write(ops, loop.create_future())
        if lane.sending >= BATCHES_IN_FLIGHT:
            lane.waiting.append(write)
            try:
                async with self._bounded():
                    outcome = await write.done
            except BaseException:  # out of time, or cancelled: a write never sent is dropped, a turn passed on
                if write in lane.waiting:
                    lane.waiting.remove(write)
                if write.done.done() and not write.done.cancelled() and write.done.exception() is None \
                        and write.done.result() is _LEAD:
                    self._pass_lead(lane_key, lane)
                raise
            if outcome is not _LEAD:
                return outcome
            write.done = loop.create_future()  # its turn (and out of the queue): it sends the next batch
        else:
            lane.sending += 1
        try:
            await self._send_batch(lane, write)
        finally:
            self._pass_lead(lane_key, lane)
        return write.done.result()

    def _pass_lead(self, lane_key: tuple[str, Any], lane: _Lane) -> None:
        """The next write still waiting sends the next batch in place of the one just sent."""
        while lane.waiting:
            first = lane.waiting.pop(0)
            if not first.done.done():  # else its caller gave up
                first.done.set_result(_LEAD)
                return
        lane.sending -= 1
        if not lane.sending:
            self._lanes.pop(lane_key, None)

    def _take_batch(self, lane: _Lane, leader: _Write) -> list[_Write]:
        """``leader`` and the writes waiting behind it that fit one transaction with it (the rules above)."""
        batch = [leader]
        keys = set(leader.keys)
        count, size = len(leader.ops), leader.size
        for write in list(lane.waiting):
            if count >= MAX_BATCH_OPS:
                break
            if write.done.done():  # its caller gave up
                lane.waiting.remove(write)
                continue
            if (count + len(write.ops) > MAX_BATCH_OPS or size + write.size > MAX_BATCH_CHARS
                    or not keys.isdisjoint(write.keys)):
                continue  # the next batch's (a transaction may touch an entity only once)
            batch.append(write)
            lane.waiting.remove(write)
            keys |= write.keys
            count += len(write.ops)
            size += write.size
        return batch

    async def _send_batch(self, lane: _Lane, leader: _Write) -> None:
        """Send ``leader`` with the writes that fit behind it; settle each one's future."""
        batch = self._take_batch(lane, leader)
        try:
            if len(batch) == 1:
                await self._settle(leader)
                return
            try:
                result = await self._send([op for write in batch for op in write.ops])
            except Exception as exc:
                if not refused(exc):
                    raise
                # The table refused the whole transaction (one write's condition, say): nothing was written.
                await asyncio.gather(*(self._settle(write) for write in batch))
                return
            offset = 0
            for write in batch:
                if not write.done.done():
                    write.done.set_result(result[offset:offset + len(write.ops)])
                offset += len(write.ops)
        except BaseException as exc:  # out of time, unreachable, or cancelled: no one knows if it was written
            for write in batch:
                if not write.done.done():
                    write.done.set_exception(exc if write is leader and isinstance(exc, Exception) else _failed(exc))
            if not isinstance(exc, Exception):
                if not leader.done.cancelled():
                    leader.done.exception()  # its caller is cancelled: it will never look
                raise

    async def _settle(self, write: _Write) -> None:
        """Send one write alone and settle its future with the answer."""
        try:
            result = await self._send(write.ops)
        except Exception as exc:  # noqa: BLE001 - handed to its caller, who raises it
            if not write.done.done():
                write.done.set_exception(exc)
            return
        if not write.done.done():
            write.done.set_result(result)


__all__ = ["BATCHES_IN_FLIGHT", "MAX_BATCH_CHARS", "MAX_BATCH_OPS", "GroupCommit", "alone", "refused", "weight"]
