"""Azure Table Storage (Azurite locally) as the :class:`~arr_core.store.table.Table` port.

The SDK's errors are translated here, by the service's error code (``TableErrorCode``) and status, never by
reading the message: an entity there already, a stale ETag, an entity or the table gone, any other answer, or no
answer. Structured queries become OData filters with parameters (never values pasted into the filter).
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError
from azure.data.tables import TableErrorCode, UpdateMode
from azure.data.tables.aio import TableClient

from .table import (
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

READ_SECONDS = 5.0  # as the store's bound of one call
# azure-core retries on its own; within the store's bound that is one quick retry of a dropped connection.
CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 1, "retry_backoff_factor": 0.2, "retry_backoff_max": 1,
                                  "connection_timeout": 3, "read_timeout": READ_SECONDS,
                                  # aiohttp's trust_env looks up ~/.netrc and the proxy variables in a worker
                                  # thread on every request: two thread hops per Table call. Only a proxy set in
                                  # the environment needs it (netrc cannot apply: each request carries its own
                                  # Authorization), and the environment changes only with a restart.
                                  "use_env_settings": bool(urllib.request.getproxies())}
_IF_MATCH = {"match_condition": MatchConditions.IfNotModified}


@dataclass(frozen=True)
class StorageTarget:
    """Where a storage service is, and how to sign in: a connection string, or an endpoint and a credential.
    Table and queue clients of the SDK are built from it alike (:meth:`client`)."""

    connection_string: str | None = None
    endpoint: str | None = None
    credential: Any = None

    def client(self, cls: Any, name: str, **options: Any) -> Any:
        """``cls`` (TableClient, QueueClient: the same two constructors) for the table or queue ``name``."""
        if self.connection_string:
            return cls.from_connection_string(self.connection_string, name, **options)
        return cls(self.endpoint, name, credential=self.credential, **options)


def _error_code(exc: HttpResponseError) -> str:
    """The service's error code: the SDK's (a ``TableErrorCode``) or, where its mapping kept none, the
    ``x-ms-error-code`` header of the answer."""
    code = getattr(exc, "error_code", None)
    if not code and exc.response is not None:
        code = exc.response.headers.get("x-ms-error-code")
    return str(getattr(code, "value", code) or "")


def _translate(exc: HttpResponseError) -> TableRefusal:
    """The port's error for an answer: by the service's code, by the status where the code says no more."""
    code = _error_code(exc)
    status = exc.status_code or 0
    if code == TableErrorCode.TABLE_NOT_FOUND:
        return TableMissing(status, code)
    if status == 409 and code not in ("", TableErrorCode.ENTITY_ALREADY_EXISTS):
        return TableRefusal(status, code)  # TableAlreadyExists, TableBeingDeleted: about the table, not an entity
    kinds: dict[int, type[TableRefusal]] = {409: EntityExists, 412: EntityChanged, 404: EntityMissing}
    return kinds.get(status, TableRefusal)(status, code)


async def _answer(call: Awaitable[Any]) -> Any:
    """The SDK call's result, or the port's error for what went wrong."""
    try:
        return await call
    except HttpResponseError as exc:
        raise _translate(exc) from exc
    except (AzureError, OSError) as exc:  # connection refused or reset, DNS
        raise TableUnreachable(type(exc).__name__) from exc


def _etag(metadata: Any) -> str:
    return metadata.get("etag") if isinstance(metadata, dict) else None  # type: ignore[return-value]


class AzureTable:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    @classmethod
    def connect(cls, target: StorageTarget, table_name: str) -> AzureTable:
        return cls(target.client(TableClient, table_name, **CLIENT_OPTIONS))

    async def create_table(self) -> bool:
        try:
            await _answer(self.client.create_table())
        except TableRefusal as exc:
            if exc.code == TableErrorCode.TABLE_ALREADY_EXISTS:  # not TableBeingDeleted, also a 409
                return False
            raise
        return True

    async def is_empty(self) -> bool:
        pages = self.client.list_entities(results_per_page=1, select=["PartitionKey"]).by_page()
        try:
            return not [e async for e in await _answer(anext(pages))]
        except StopAsyncIteration:
            return True

    async def get(self, partition: str, row: str) -> Entity | None:
        try:
            found = await _answer(self.client.get_entity(partition, row))
        except EntityMissing:
            return None
        return Entity(found, found.metadata.get("etag"))

    async def query(self, query: Query, *, page_size: int = 1000) -> AsyncIterator[list[Entity]]:
        text, parameters = odata(query)
        pages = self.client.query_entities(text, parameters=parameters, results_per_page=page_size).by_page()
        while True:
            try:
                page = await _answer(anext(pages))
                found = await _answer(_collect(page))
            except StopAsyncIteration:
                return
            yield found

    async def insert(self, entity: dict[str, Any]) -> str:
        return _etag(await _answer(self.client.create_entity(entity)))

    async def replace(self, entity: dict[str, Any], etag: str | None) -> str:
        if etag is None:
            return _etag(await _answer(self.client.upsert_entity(entity, mode=UpdateMode.REPLACE)))
        return _etag(await _answer(self.client.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag,
                                                             **_IF_MATCH)))

    async def delete(self, partition: str, row: str, etag: str | None) -> None:
        # The SDK answers any 404 of a delete (the entity, or the table, gone) with success.
        if etag is None:
            await _answer(self.client.delete_entity(partition, row))
            return
        await _answer(self.client.delete_entity(partition, row, etag=etag, **_IF_MATCH))

    async def transact(self, ops: list[Op]) -> list[str]:
        operations: list[Any] = [
            ("create", entity) if kind == "insert" else
            ("update", entity, {"mode": UpdateMode.REPLACE, "etag": etag, **_IF_MATCH}) if etag else
            ("upsert", entity, {"mode": UpdateMode.REPLACE})
            for kind, entity, etag in ops]
        return [_etag(metadata) for metadata in await _answer(self.client.submit_transaction(operations))]

    async def close(self) -> None:
        await self.client.close()


async def _collect(page: Any) -> list[Entity]:
    return [Entity(e, e.metadata.get("etag")) async for e in page]


def odata(query: Query) -> tuple[str, dict[str, Any]]:
    """The OData filter of ``query``, with its values as parameters."""
    clauses, parameters = ["PartitionKey eq @pk"], {"pk": query.partition}
    if query.low is not None:
        clauses.append(f"RowKey {'ge' if query.low_inclusive else 'gt'} @lo")
        parameters["lo"] = query.low
    if query.high is not None:
        clauses.append("RowKey lt @hi")
        parameters["hi"] = query.high
    for i, (name, value) in enumerate(query.equal.items()):
        clauses.append(f"{name} eq @eq{i}")
        parameters[f"eq{i}"] = value
    for i, (name, values) in enumerate(query.one_of.items()):
        names = [f"in{i}_{j}" for j in range(len(values))]
        clauses.append("( " + " or ".join(f"{name} eq @{n}" for n in names) + " )")
        parameters |= dict(zip(names, values, strict=True))
    return " and ".join(clauses), parameters


__all__ = ["CLIENT_OPTIONS", "AzureTable", "StorageTarget", "odata"]
