"""The table port: the few operations the history store needs of a table, and what they raise.

The store (:mod:`arr_core.store.history`) is written against this port only, so that its algorithms (claims, ETag
races, group commit, re-creating a lost table) run the same over Azure Table Storage
(:mod:`arr_core.store.azure_table`) and over the dict of :mod:`arr_core.testing.memory_table` in unit tests.

Entities are dicts with ``PartitionKey`` and ``RowKey``; what a read returns is an :class:`Entity`, which also
carries its ETag. Queries are structured (:class:`Query`), not filter strings: an adapter turns one into its own
language (OData for Azure), and :meth:`Query.matches` is their meaning.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Op = tuple[Literal["insert", "replace"], dict[str, Any], str | None]
"""One operation of a write: insert ``entity``, or replace it if its ETag is still the given one (None: any)."""


class Entity(dict[str, Any]):
    """An entity as read from the table, with the ETag a conditional write of it must match."""

    def __init__(self, values: Mapping[str, Any], etag: str | None = None) -> None:
        super().__init__(values)
        self.etag = etag


@dataclass(frozen=True)
class Query:
    """Entities of one partition whose RowKey lies in a range, with equal (or one-of) column values.

    ``low``/``high`` bound the RowKey (``high`` is exclusive; ``low`` inclusive unless ``low_inclusive`` is False);
    ``equal`` columns must hold the value; ``one_of`` columns any of the values (all of them, when several).
    Values are strings or booleans: the Tables SDK writes the integers 0 and 1 into a filter as false and true.
    """

    partition: str
    low: str | None = None
    high: str | None = None
    low_inclusive: bool = True
    equal: Mapping[str, Any] = field(default_factory=dict)
    one_of: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def matches(self, entity: Mapping[str, Any]) -> bool:
        row = entity["RowKey"]
        return (entity["PartitionKey"] == self.partition
                and (self.low is None or (row >= self.low if self.low_inclusive else row > self.low))
                and (self.high is None or row < self.high)
                and all(entity.get(name) == value for name, value in self.equal.items())
                and all(entity.get(name) in values for name, values in self.one_of.items()))


class TableRefusal(Exception):
    """The table answered with an error: nothing of the call was written. ``code`` is the service's error code."""

    def __init__(self, status: int, code: str = "") -> None:
        super().__init__(f"Table Storage answered {status} {code}".strip())
        self.status = status
        self.code = code


class EntityExists(TableRefusal):
    """An insert found the entity there already (409)."""


class EntityChanged(TableRefusal):
    """A conditional write found the entity changed since its ETag was read (412)."""


class EntityMissing(TableRefusal):
    """A conditional write or a delete found no such entity (404)."""


class TableMissing(TableRefusal):
    """The table itself is gone: deleted, or an emulator restarted (404 ``TableNotFound``)."""


class TableUnreachable(Exception):
    """No answer: the connection failed or was dropped. Whether a write landed is unknown."""


class Table(Protocol):
    """What the history store needs of a table. Every method may raise :class:`TableMissing`,
    :class:`TableRefusal` and :class:`TableUnreachable`; the store bounds each call in time."""

    async def create_table(self) -> bool:
        """Create the table; False if it was there already."""
        ...

    async def is_empty(self) -> bool: ...
    async def get(self, partition: str, row: str) -> Entity | None: ...
    def query(self, query: Query, *, page_size: int = 1000) -> AsyncIterator[list[Entity]]:
        """The matching entities in RowKey order, a page at a time (each page is one call)."""
        ...

    async def insert(self, entity: dict[str, Any]) -> str:
        """Insert; the new ETag. :class:`EntityExists` if it is there."""
        ...

    async def replace(self, entity: dict[str, Any], etag: str | None) -> str:
        """Replace if the ETag matches (None: unconditionally, inserting if absent); the new ETag."""
        ...

    async def delete(self, partition: str, row: str, etag: str | None) -> None:
        """Delete if the ETag matches (None: any); :class:`EntityChanged` if it does not. An entity (or a table)
        that is not there is no error: Table Storage's SDK answers that with success."""
        ...
    async def transact(self, ops: list[Op]) -> list[str]:
        """All operations (one partition) or none; their new ETags. Raises what the failing operation would."""
        ...

    async def close(self) -> None: ...


__all__ = ["Entity", "EntityChanged", "EntityExists", "EntityMissing", "Op", "Query", "Table", "TableMissing",
           "TableRefusal", "TableUnreachable"]
