"""A table in a dict: the :class:`~arr_core.store.table.Table` port for unit tests, with fault switches.

It keeps Table Storage's rules that the store relies on: inserts refuse an entity that is there (409), conditional
writes refuse a stale ETag (412) or a missing entity (404), a transaction is all or nothing, holds one partition,
at most 100 operations and each entity once, and a string property holds at most 32K UTF-16 code units. Every call
first yields to the event loop (and sleeps ``latency``), as an awaited network call would, so concurrent callers
interleave between a read and its conditional write.

Switches: :meth:`fail_next` (the next calls raise), :meth:`lose_table` (deleted, or an emulator restarted),
``latency`` (seconds per call); ``calls`` counts calls per method.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Collection
from typing import Any

from ..store.entities import aware
from ..store.group_commit import MAX_BATCH_OPS
from ..store.table import (
    Entity,
    EntityChanged,
    EntityExists,
    EntityMissing,
    Op,
    Query,
    TableMissing,
    TableRefusal,
    TableUnreachable,
)

MAX_STRING_UNITS = 32_768  # Table Storage refuses a string property above 64 KiB: 32K UTF-16 code units


class MemoryTable:
    def __init__(self, *, latency: float = 0.0, rows: list[dict[str, Any]] | None = None) -> None:
        """A table that does not exist yet, or (``rows`` given) one that holds those entities."""
        self.latency = latency
        self.calls: Counter[str] = Counter()
        self._rows: dict[tuple[str, str], tuple[dict[str, Any], str]] | None = None
        if rows is not None:
            self._rows = {(e["PartitionKey"], e["RowKey"]): (dict(e), 'W/"0"') for e in rows}
        self._etags = itertools.count(1)
        self._faults: list[tuple[list[int], BaseException, frozenset[str] | None]] = []

    def fail_next(self, n: int = 1, exc: BaseException | None = None, *, only: Collection[str] | None = None) -> None:
        """The next ``n`` calls (of the methods in ``only``, or any) raise ``exc`` (default: no answer) before
        changing anything; ``n`` < 0: until :meth:`heal`."""
        self._faults.append(([n], exc or TableUnreachable("no answer (simulated)"),
                             frozenset(only) if only is not None else None))

    def heal(self) -> None:
        self._faults.clear()

    def lose_table(self) -> None:
        self._rows = None

    @property
    def rows(self) -> dict[tuple[str, str], dict[str, Any]]:
        """What the table holds, for assertions."""
        return {key: dict(entity) for key, (entity, _) in (self._rows or {}).items()}

    async def _begin(self, name: str) -> dict[tuple[str, str], tuple[dict[str, Any], str]]:
        self.calls[name] += 1
        await asyncio.sleep(self.latency)
        for fault in self._faults:
            left, exc, only = fault
            if only is None or name in only:
                left[0] -= 1
                if left[0] == 0:
                    self._faults.remove(fault)
                raise exc
        if self._rows is None and name != "create_table":
            raise TableMissing(404, "TableNotFound")
        return self._rows if self._rows is not None else {}

    async def create_table(self) -> bool:
        await self._begin("create_table")
        if self._rows is not None:
            return False
        self._rows = {}
        return True

    async def is_empty(self) -> bool:
        return not await self._begin("is_empty")

    async def get(self, partition: str, row: str) -> Entity | None:
        found = (await self._begin("get")).get((partition, row))
        return _read(found) if found else None

    async def query(self, query: Query, *, page_size: int = 1000) -> AsyncIterator[list[Entity]]:
        found = sorted((key, value) for key, value in (await self._begin("query")).items() if query.matches(value[0]))
        for start in range(0, len(found), page_size):
            if start:
                await self._begin("query")  # each further page is a call of its own
            yield [_read(value) for _, value in found[start:start + page_size]]

    async def insert(self, entity: dict[str, Any]) -> str:
        return (await self._write("insert", [("insert", entity, None)]))[0]

    async def replace(self, entity: dict[str, Any], etag: str | None) -> str:
        return (await self._write("replace", [("replace", entity, etag)]))[0]

    async def transact(self, ops: list[Op]) -> list[str]:
        if len(ops) > MAX_BATCH_OPS or len({op[1]["PartitionKey"] for op in ops}) > 1:
            await self._begin("transact")
            raise TableRefusal(400, "InvalidInput")
        return await self._write("transact", ops)

    async def delete(self, partition: str, row: str, etag: str | None) -> None:
        try:
            rows = await self._begin("delete")
        except TableMissing:
            return  # as the SDK answers it
        found = rows.get((partition, row))
        if found is None:
            return
        if etag is not None and found[1] != etag:
            raise EntityChanged(412, "UpdateConditionNotSatisfied")
        del rows[(partition, row)]

    async def close(self) -> None:
        """Nothing to close."""

    async def _write(self, name: str, ops: list[Op]) -> list[str]:
        rows = await self._begin(name)
        keys = [(entity["PartitionKey"], entity["RowKey"]) for _, entity, _ in ops]
        if len(set(keys)) < len(keys):
            raise TableRefusal(400, "InvalidDuplicateRow")
        for (kind, entity, etag), key in zip(ops, keys, strict=True):
            if any(isinstance(v, str) and len(v.encode("utf-16-le")) // 2 > MAX_STRING_UNITS for v in entity.values()):
                raise TableRefusal(400, "PropertyValueTooLarge")
            present = rows.get(key)
            if kind == "insert" and present is not None:
                raise EntityExists(409, "EntityAlreadyExists")
            if kind == "replace" and etag is not None and (present is None or present[1] != etag):
                raise (EntityMissing(404, "ResourceNotFound") if present is None
                       else EntityChanged(412, "UpdateConditionNotSatisfied"))
        etags = [f'W/"{next(self._etags)}"' for _ in ops]
        for (_, entity, _), key, etag in zip(ops, keys, etags, strict=True):
            rows[key] = (dict(entity), etag)
        return etags


def _read(found: tuple[dict[str, Any], str]) -> Entity:
    """A copy (callers may change it), datetimes as aware UTC (a naive one read as UTC), as the SDK gives them."""
    entity, etag = found
    return Entity({k: aware(v) for k, v in entity.items()}, etag)


__all__ = ["MemoryTable"]
