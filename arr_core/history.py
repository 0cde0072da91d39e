"""Session history in Azure Table Storage: one record per session, an event per change, written safely.

Table layout (one table, ``ARR_HISTORY_TABLE``):

============  ==================================  ==================================  =============================
entity        PartitionKey                        RowKey                              why
============  ==================================  ==================================  =============================
session       ``s-<yyyymm>`` of creation (UTC)    ``<createdAt ISO>~<session id>``     date ranges are key ranges
event         same as its session                 ``<session RowKey>~e<seq:05d>``      same partition: one batch
                                                                                      with the session update
id index      ``id``                              session id                          find a session by id
idempotency   ``idem``                            sha256 of the key                   conditional insert
cleanup run   ``run-<yyyymm>``                    inverted ticks                      newest first
nightly mark  ``nightly``                         local date                          once per night
============  ==================================  ==================================  =============================

Every change to a session is an ETag-conditional update of its record *and* the insert of its events in one
entity-group transaction: two writers can never both record the same change, and a lost race is retried on fresh
data.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient

from .errors import HistoryConflict, HistoryUnavailable
from .records import (
    Event,
    IdempotencyClaim,
    Mutation,
    SessionRecord,
    event_to_entity,
    idempotency_row,
    months_between,
    record_from_entity,
    _aware,
    record_to_entity,
    row_for,
    utcnow,
)

log = logging.getLogger("arr_core.history")

MAX_UPDATE_ATTEMPTS = 8
MAX_REMEMBERED_WRITES = 4096
# azure-core retries on its own; keep an outage's answer (503 to the caller) within seconds, not minutes.
CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 2, "retry_backoff_factor": 0.2, "retry_backoff_max": 2,
                                  "connection_timeout": 5, "read_timeout": 20}
class HistoryStore:
    """Reads and writes session history; every method raises :class:`HistoryUnavailable` if storage fails."""

    def __init__(self, table: TableClient, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._table = table
        self._clock = clock
        self._pointers: dict[str, tuple[str, str]] = {}  # id index entries never change: cache them
        # The record this process last wrote, with its new ETag: the next update starts from it instead of a
        # read. If anyone changed it since, the conditional write fails (412) and the update re-reads.
        self._written: OrderedDict[str, SessionRecord] = OrderedDict()
        self._ready = False

    @classmethod
    def from_connection_string(cls, connection_string: str, table_name: str) -> HistoryStore:
        return cls(TableClient.from_connection_string(connection_string, table_name=table_name, **CLIENT_OPTIONS))

    @classmethod
    def from_endpoint(cls, endpoint: str, table_name: str, credential: Any) -> HistoryStore:
        return cls(TableClient(endpoint=endpoint, table_name=table_name, credential=credential, **CLIENT_OPTIONS))

    async def aclose(self) -> None:
        await self._table.close()

    async def ensure_table(self) -> None:
        if self._ready:
            return
        try:
            await self._table.create_table()
        except ResourceExistsError:
            pass
        except HttpResponseError as exc:
            raise HistoryUnavailable(_describe(exc)) from None
        except Exception as exc:  # azure-core transport errors (connection refused, DNS)
            raise HistoryUnavailable(type(exc).__name__) from None
        self._ready = True

    async def ping(self) -> None:
        """Prove that the table answers (a point read of an entity that need not exist)."""
        await self._call(self._table_get, "id", "~health~")

    # -- sessions -------------------------------------------------------------------------------------------

    async def claim(self, record: SessionRecord, event: Event) -> SessionRecord | None:
        """Record the intent to start ``record`` before ARR is called.

        Returns None when the id was free (the record and its first event are written), or the existing record
        when the id is already in history.
        """
        index = {"PartitionKey": "id", "RowKey": record.session_id, "RecordPartition": record.partition,
                 "RecordRow": record.row}
        try:
            await self._call(self._table.create_entity, index)
        except ResourceExistsError:
            existing = await self.get(record.session_id)
            if existing is not None:
                return existing
            # The index was written by a writer that died before its record: take the id over.
            await self._call(self._table.upsert_entity, index, mode=UpdateMode.REPLACE)
        self._pointers[record.session_id] = (record.partition, record.row)
        first = replace(record, event_count=1, updated_at=event.at)
        result = await self._call(self._table.submit_transaction, [
            ("upsert", record_to_entity(first), {"mode": UpdateMode.REPLACE}),
            ("create", event_to_entity(first, 1, event)),
        ])
        self._remember(first, result)
        return None

    async def adopt(self, record: SessionRecord, event: Event) -> bool:
        """Write a record for a session history did not know (reconciliation); False if one appeared meanwhile."""
        existing = await self.claim(record, event)
        return existing is None

    async def get(self, session_id: str) -> SessionRecord | None:
        pointer = self._pointers.get(session_id)
        if pointer is None:
            index = await self._call(self._table_get, "id", session_id)
            if index is None:
                return None
            pointer = (index["RecordPartition"], index["RecordRow"])
            self._pointers[session_id] = pointer
        entity = await self._call(self._table_get, *pointer)
        return record_from_entity(entity) if entity is not None else None

    async def update(self, session_id: str, mutate: Mutation,
                     current: SessionRecord | None = None) -> SessionRecord | None:
        """Apply ``mutate`` to the current record and write it with its events, conditionally; retried on races.

        ``mutate`` returns None when there is nothing to change. Returns the record as written (or as found).
        ``current`` (a record just read, with its ETag) saves the first read; a lost race re-reads.
        """
        current = current or self._written.get(session_id)
        for _ in range(MAX_UPDATE_ATTEMPTS):
            if current is None or current.etag is None:
                current = await self.get(session_id)
            if current is None:
                return None
            change = mutate(current)
            if change is None:
                return current
            new, events = change
            now = self._clock()
            new = replace(new, event_count=current.event_count + len(events), updated_at=now)
            operations: list[Any] = [("update", record_to_entity(new), {
                "mode": UpdateMode.REPLACE, "etag": current.etag, "match_condition": MatchConditions.IfNotModified})]
            operations += [("create", event_to_entity(new, current.event_count + i + 1, e))
                           for i, e in enumerate(events)]
            try:
                result = await self._call(self._table.submit_transaction, operations)
            except (TableTransactionError, ResourceModifiedError, ResourceExistsError) as exc:
                status = getattr(exc, "status_code", None)
                if status in (409, 412) or isinstance(exc, (ResourceModifiedError, ResourceExistsError)):
                    current = None
                    self._written.pop(session_id, None)
                    continue  # another writer got there first: re-read and decide again
                raise
            return self._remember(new, result)
        msg = f"gave up updating {session_id} after {MAX_UPDATE_ATTEMPTS} conflicting writes"
        raise HistoryConflict(msg)

    def _remember(self, record: SessionRecord, result: Any) -> SessionRecord:
        etag = result[0].get("etag") if result else None
        written = replace(record, etag=etag)
        self._written[record.session_id] = written
        self._written.move_to_end(record.session_id)
        while len(self._written) > MAX_REMEMBERED_WRITES:
            self._written.popitem(last=False)
        return written

    async def events(self, session_id: str) -> list[dict[str, Any]]:
        record = await self.get(session_id)
        if record is None:
            return []
        query = "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi"
        params = {"pk": record.partition, "lo": f"{record.row}~e", "hi": f"{record.row}~f"}
        return [dict(e) async for e in self._table.query_entities(query, parameters=params)]

    async def sessions_created(self, start: datetime, end: datetime, *, only_active: bool = False,
                               ) -> AsyncIterator[SessionRecord]:
        """Records of sessions created in [start, end), oldest first: a key-range query per month partition."""
        for partition in months_between(start, end):
            query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and Kind eq 'session'"
            if only_active:
                query += " and Active eq true"
            params = {"pk": partition, "lo": row_for(start, ""), "hi": row_for(end, "")}
            try:
                async for entity in self._table.query_entities(query, parameters=params, results_per_page=1000):
                    yield record_from_entity(entity)
            except HttpResponseError as exc:
                raise HistoryUnavailable(_describe(exc)) from None

    # -- idempotency ----------------------------------------------------------------------------------------

    async def claim_idempotency(self, key: str, fingerprint: str, session_id: str,
                                ttl: timedelta = timedelta(hours=24)) -> IdempotencyClaim:
        """Conditionally insert the key; whoever inserts first owns it. Expired keys are taken over."""
        now = self._clock()
        entity = {"PartitionKey": "idem", "RowKey": idempotency_row(key), "Fingerprint": fingerprint,
                  "SessionId": session_id, "CreatedAt": now}
        for _ in range(MAX_UPDATE_ATTEMPTS):
            try:
                await self._call(self._table.create_entity, entity)
                return IdempotencyClaim(session_id, fingerprint, now, owned=True)
            except ResourceExistsError:
                existing = await self._call(self._table_get, "idem", entity["RowKey"])
                if existing is None:
                    continue
                created = _aware(existing["CreatedAt"])
                if now - created < ttl:
                    return IdempotencyClaim(existing["SessionId"], existing["Fingerprint"], created, owned=False)
                try:
                    await self._call(self._table.update_entity, entity, mode=UpdateMode.REPLACE,
                                     etag=existing.metadata["etag"], match_condition=MatchConditions.IfNotModified)
                    return IdempotencyClaim(session_id, fingerprint, now, owned=True)
                except ResourceModifiedError:
                    continue
        msg = "idempotency key contention did not settle"
        raise HistoryConflict(msg)

    # -- run records ----------------------------------------------------------------------------------------

    async def claim_marker(self, partition: str, row: str, **properties: Any) -> bool:
        """Insert a marker entity once; False if it already exists (someone else did the job)."""
        try:
            await self._call(self._table.create_entity, {"PartitionKey": partition, "RowKey": row, **properties})
        except ResourceExistsError:
            return False
        return True

    async def write(self, entity: dict[str, Any]) -> None:
        await self._call(self._table.upsert_entity, entity, mode=UpdateMode.REPLACE)

    async def query(self, query: str, **parameters: Any) -> list[dict[str, Any]]:
        try:
            return [dict(e) async for e in self._table.query_entities(query, parameters=parameters)]
        except HttpResponseError as exc:
            raise HistoryUnavailable(_describe(exc)) from None

    # -- plumbing -------------------------------------------------------------------------------------------

    async def _table_get(self, partition: str, row: str) -> Any:
        try:
            return await self._table.get_entity(partition, row)
        except ResourceNotFoundError:
            return None

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        await self.ensure_table()
        try:
            return await method(*args, **kwargs)
        except (ResourceExistsError, ResourceModifiedError, TableTransactionError):
            raise
        except HttpResponseError as exc:
            if exc.status_code == 404 and "TableNotFound" in str(getattr(exc, "error_code", "")):
                self._ready = False
            raise HistoryUnavailable(_describe(exc)) from None
        except Exception as exc:
            if isinstance(exc, (ValueError, TypeError, KeyError)):
                raise
            raise HistoryUnavailable(type(exc).__name__) from None


def _describe(exc: HttpResponseError) -> str:
    return f"Table Storage answered {exc.status_code} {getattr(exc, 'error_code', '') or ''}".strip()
