"""Session history in Azure Table Storage: one record per session, an event per change, written safely.

Table layout (one table, ``ARR_HISTORY_TABLE``):

============  ==================================  ==================================  =============================
entity        PartitionKey                        RowKey                              why
============  ==================================  ==================================  =============================
session       ``s-<yyyymm>`` of creation (UTC)    ``<createdAt ISO>~<session id>``     date ranges are key ranges
event         same as its session                 ``<session RowKey>~e<seq:05d>``      same partition: one batch
                                                                                      with the session update
id index      ``id``                              session id                          find a session by id; the
                                                                                      first insert fixes where its
                                                                                      one record lives
idempotency   ``idem``                            sha256 of the key                   conditional insert
table epoch   ``meta``                            ``table``                           when this app created the
                                                                                      table (history before it is
                                                                                      lost)
lease         ``lease``                           the job (``cleanup``)               one cleanup at a time
cleanup run   ``run-<yyyymm>``                    inverted ticks                      newest first
nightly mark  ``nightly``                         local date                          once per night
============  ==================================  ==================================  =============================

Every change to a session is an ETag-conditional update of its record *and* the insert of its events in one
entity-group transaction: two writers can never both record the same change, and a lost race is retried on fresh
data. A record is only ever *inserted*, at the place its id index names, so racing writers make one record.

Faults: every call is bounded in time (:data:`CALL_SECONDS`, and the request's budget); a table that has gone
(deleted, or an emulator restarted) is created again and the call retried once, and what this process remembers
of active sessions is written back. Storage trouble surfaces as :class:`HistoryUnavailable`, never as a raw SDK
error.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from typing import Any, Protocol, runtime_checkable

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient

from . import deadline
from .continuation import decode_token, page_filters, page_ranges, take_page
from .errors import DeadlineExceeded, HistoryConflict, HistoryUnavailable
from .lifecycle import restore
from .views import CleanupReport
from .records import (
    Event,
    IdempotencyClaim,
    Mutation,
    SessionRecord,
    _aware,
    created_at_of,
    event_to_entity,
    idempotency_row,
    index_entity,
    months_between,
    record_from_entity,
    record_to_entity,
    row_for,
    utcnow,
)

log = logging.getLogger("arr_core.history")

MAX_TICKS = 3155378975999999999  # .NET's DateTime.MaxValue in ticks: run rows sort newest first
MAX_UPDATE_ATTEMPTS = 8
MAX_REMEMBERED_WRITES = 4096
CALL_SECONDS = 5.0  # one Table call (or one page of a query): an outage answers 503 in seconds, not minutes
# azure-core retries on its own; within CALL_SECONDS that is one quick retry of a dropped connection.
CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 1, "retry_backoff_factor": 0.2, "retry_backoff_max": 1,
                                  "connection_timeout": 3, "read_timeout": CALL_SECONDS}
# What a caller handles itself (a lost race, an entity that is not there); everything else is "unavailable".
_PASSED_ON = {404, 409, 412}


def _table_missing(exc: BaseException) -> bool:
    """The table itself is gone (``TableNotFound``), as opposed to one entity being absent."""
    if getattr(exc, "status_code", None) != 404:
        return False
    return getattr(exc, "error_code", None) == "TableNotFound" or "TableNotFound" in str(exc)


def _describe(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None) or ""
    return f"Table Storage answered {exc.status_code} {getattr(code, 'value', code)}".strip()


@runtime_checkable
class History(Protocol):
    """What the app needs of session history. :class:`HistoryStore` is the Table Storage one;
    :class:`arr_core.memory_history.MemoryHistory` keeps it in memory for unit tests."""

    async def aclose(self) -> None: ...
    async def ping(self) -> None: ...
    async def claim(self, record: SessionRecord, event: Event) -> tuple[SessionRecord, bool]: ...
    async def get(self, session_id: str) -> SessionRecord | None: ...
    async def update(self, session_id: str, mutate: Mutation,
                     current: SessionRecord | None = None) -> SessionRecord | None: ...
    async def events(self, session_id: str) -> list[dict[str, Any]]: ...
    def sessions_created(self, start: datetime, end: datetime, *,
                         only_active: bool = False) -> AsyncIterator[SessionRecord]: ...
    async def since(self) -> datetime | None: ...
    async def history_page(self, start: datetime, end: datetime, *, requested_by: str | None, size: str | None,
                           statuses: set[str] | None, top: int, token: str | None,
                           ) -> tuple[list[SessionRecord], str | None]: ...
    async def claim_key(self, key: str, fingerprint: str, session_id: str,
                        ttl: timedelta = ...) -> IdempotencyClaim: ...
    async def take_lease(self, job: str, holder: str, seconds: float) -> bool: ...
    async def release_lease(self, job: str, holder: str) -> None: ...
    async def nights_done(self, nights: list[date]) -> set[date]: ...
    async def mark_night(self, night: date, ran_at: datetime) -> None: ...
    async def record_run(self, report: CleanupReport) -> None: ...


class HistoryStore:
    """Reads and writes session history; every method raises :class:`HistoryUnavailable` if storage fails."""

    def __init__(self, table: TableClient, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._table = table
        self._clock = clock
        self._pointers: dict[str, tuple[str, str]] = {}  # id -> where its record lives (fixed once written)
        # The record this process last wrote, with its new ETag: the next update starts from it instead of a
        # read. If anyone changed it since, the conditional write fails (412) and the update re-reads.
        self._written: OrderedDict[str, SessionRecord] = OrderedDict()
        self._ready = False
        self._recreating = asyncio.Lock()

    @classmethod
    def from_connection_string(cls, connection_string: str, table_name: str) -> HistoryStore:
        return cls(TableClient.from_connection_string(connection_string, table_name=table_name, **CLIENT_OPTIONS))

    @classmethod
    def from_endpoint(cls, endpoint: str, table_name: str, credential: Any) -> HistoryStore:
        return cls(TableClient(endpoint=endpoint, table_name=table_name, credential=credential, **CLIENT_OPTIONS))

    async def aclose(self) -> None:
        await self._table.close()

    async def ping(self) -> None:
        """Prove that the table answers, creating it again if it has gone (health must not say ok otherwise)."""
        await self._call(self._table_get, "meta", "ping")

    # -- sessions -------------------------------------------------------------------------------------------

    async def claim(self, record: SessionRecord, event: Event) -> tuple[SessionRecord, bool]:
        """Write ``record`` and its first event unless history already has the session.

        Returns the record history holds and whether this call wrote it. Racing claims of one id write one
        record: the id index's first insert fixes the record's place, and the record itself is insert-only.
        """
        for _ in range(MAX_UPDATE_ATTEMPTS):
            try:
                await self._call(self._table.create_entity, index_entity(record))
            except ResourceExistsError:
                index = await self._call(self._table_get, "id", record.session_id)
                if index is None:
                    continue  # deleted meanwhile: try again
                pointer = (index["RecordPartition"], index["RecordRow"])
                existing = await self._read_at(pointer)
                if existing is not None:
                    self._pointers[record.session_id] = pointer
                    return existing, False
                # The index's writer is still writing, or died before its record: write ours at that place.
                record = replace(record, created_at=created_at_of(index))
            first = replace(record, event_count=1, updated_at=event.at)
            try:
                result = await self._call(self._table.submit_transaction, [
                    ("create", record_to_entity(first)), ("create", event_to_entity(first, 1, event))])
            except (TableTransactionError, ResourceExistsError) as exc:
                if getattr(exc, "status_code", None) != 409:
                    raise HistoryUnavailable(_describe(exc)) from exc
                existing = await self.get(record.session_id)
                if existing is None:
                    continue
                return existing, False
            self._pointers[record.session_id] = (first.partition, first.row)
            return self._remember(first, result), True
        msg = f"claiming {record.session_id} did not settle"
        raise HistoryConflict(msg)

    async def get(self, session_id: str) -> SessionRecord | None:
        pointer = self._pointers.get(session_id)
        if pointer is not None:
            record = await self._read_at(pointer)
            if record is not None:
                return record
            self._pointers.pop(session_id, None)  # the table was recreated since: ask the index again
        index = await self._call(self._table_get, "id", session_id)
        if index is None:
            return None
        pointer = (index["RecordPartition"], index["RecordRow"])
        record = await self._read_at(pointer)
        if record is not None:
            self._pointers[session_id] = pointer
        return record

    async def update(self, session_id: str, mutate: Mutation,
                     current: SessionRecord | None = None) -> SessionRecord | None:
        """Apply ``mutate`` to the current record and write it with its events, conditionally; retried on races.

        ``mutate`` returns None when there is nothing to change. Returns the record as written (or as found), or
        None when history has no record of the session. ``current`` (a record just read, with its ETag) saves
        the first read; a lost race, or a record that has gone, re-reads.
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
            new = replace(new, event_count=current.event_count + len(events), updated_at=self._clock())
            condition = {"etag": current.etag, "match_condition": MatchConditions.IfNotModified}
            try:
                if events:
                    result = await self._call(self._table.submit_transaction, [
                        ("update", record_to_entity(new), {"mode": UpdateMode.REPLACE, **condition}),
                        *(("create", event_to_entity(new, current.event_count + i + 1, e))
                          for i, e in enumerate(events))])
                else:  # one entity: a plain conditional write, no batch to encode
                    result = [await self._call(self._table.update_entity, record_to_entity(new),
                                               mode=UpdateMode.REPLACE, **condition)]
            except (TableTransactionError, ResourceModifiedError, ResourceExistsError, ResourceNotFoundError) as exc:
                # Another writer got there first (412/409), or the record has gone (404): decide again on
                # fresh data. A record gone from a table another host recreated is written back first, if
                # this process remembers it active, so its keepAlive, requester and reason survive.
                remembered = self._written.get(session_id)
                current = None
                self._forget(session_id)
                gone = isinstance(exc, ResourceNotFoundError) or getattr(exc, "status_code", None) == 404
                if gone and remembered is not None and remembered.is_active:
                    await self._write_back([remembered])
                continue
            return self._remember(new, result)
        msg = f"gave up updating {session_id} after {MAX_UPDATE_ATTEMPTS} conflicting writes"
        raise HistoryConflict(msg)

    async def events(self, session_id: str) -> list[dict[str, Any]]:
        record = await self.get(session_id)
        if record is None:
            return []
        query = "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi"
        return await self.query(query, pk=record.partition, lo=f"{record.row}~e", hi=f"{record.row}~f")

    async def sessions_created(self, start: datetime, end: datetime, *, only_active: bool = False,
                               ) -> AsyncIterator[SessionRecord]:
        """Records of sessions created in [start, end), oldest first: a key-range query per month partition."""
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and Kind eq 'session'"
        if only_active:
            query += " and Active eq true"
        for partition in months_between(start, end):
            async for entity in self.rows(query, pk=partition, lo=row_for(start, ""), hi=row_for(end, "")):
                yield record_from_entity(entity)

    async def since(self) -> datetime | None:
        """When this app created the table: sessions started before it may have had records that are lost.

        None when the table's origin is unknown (made by hand, or by an older version): then it is trusted.
        """
        row = await self._call(self._table_get, "meta", "table")
        return _aware(row["CreatedAt"]) if row is not None else None

    async def history_page(self, start: datetime, end: datetime, *, requested_by: str | None, size: str | None,
                           statuses: set[str] | None, top: int, token: str | None,
                           ) -> tuple[list[SessionRecord], str | None]:
        """One page of records created in [start, end), oldest first, filtered in the query itself; the token
        (opaque, bound to these filters) says where the next page starts."""
        filters = page_filters(start, end, requested_by, size, statuses)
        after = decode_token(token, filters) if token else None
        query = "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi and Kind eq 'session'"
        params: dict[str, Any] = {"hi": row_for(end, "")}
        if requested_by is not None:
            query += " and RequestedBy eq @rb"
            params["rb"] = requested_by
        if size is not None:
            query += " and Size eq @size"
            params["size"] = size
        if statuses:
            query += " and ( " + " or ".join(f"Status eq @st{i}" for i in range(len(statuses))) + " )"
            params |= {f"st{i}": status for i, status in enumerate(sorted(statuses))}

        async def records() -> AsyncIterator[SessionRecord]:
            for partition, low in page_ranges(start, end, after):
                async with aclosing(self.rows(query, pk=partition, lo=low, **params)) as rows:
                    async for row in rows:  # in key order: oldest first
                        yield record_from_entity(row)

        return await take_page(records(), top, filters)

    # -- idempotency ----------------------------------------------------------------------------------------

    async def claim_key(self, key: str, fingerprint: str, session_id: str,
                        ttl: timedelta = timedelta(hours=24)) -> IdempotencyClaim:
        """Bind ``key`` to ``session_id`` unless it is bound already; a binding older than ``ttl`` is replaced.

        Whoever inserts (or replaces) first owns the key; everyone else gets the owner's session and fingerprint.
        """
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
                except (ResourceModifiedError, ResourceNotFoundError):
                    continue
        msg = "idempotency key contention did not settle"
        raise HistoryConflict(msg)

    # -- cleanup bookkeeping --------------------------------------------------------------------------------

    async def take_lease(self, job: str, holder: str, seconds: float) -> bool:
        """Hold ``job`` for ``seconds`` unless another holder's lease is still running; False if it is.

        A conditional row with an expiry: a holder that died frees the job when its lease runs out.
        """
        now = self._clock()
        entity = {"PartitionKey": "lease", "RowKey": job, "Holder": holder,
                  "Until": now + timedelta(seconds=seconds)}
        try:
            await self._call(self._table.create_entity, entity)
            return True
        except ResourceExistsError:
            pass
        current = await self._call(self._table_get, "lease", job)
        if current is not None and _aware(current["Until"]) > now and current.get("Holder") != holder:
            return False
        try:
            if current is None:
                await self._call(self._table.create_entity, entity)
            else:
                await self._call(self._table.update_entity, entity, mode=UpdateMode.REPLACE,
                                 etag=current.metadata["etag"], match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return False  # someone else took it between our read and our write
        return True

    async def release_lease(self, job: str, holder: str) -> None:
        current = await self._call(self._table_get, "lease", job)
        if current is None or current.get("Holder") != holder:
            return
        try:
            await self._call(self._table.delete_entity, "lease", job, etag=current.metadata["etag"],
                             match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            pass

    async def nights_done(self, nights: list[date]) -> set[date]:
        clauses = " or ".join(f"RowKey eq @n{i}" for i in range(len(nights)))
        rows = await self.query(f"PartitionKey eq 'nightly' and ( {clauses} )",
                                **{f"n{i}": night.isoformat() for i, night in enumerate(nights)})
        return {date.fromisoformat(r["RowKey"]) for r in rows}

    async def mark_night(self, night: date, ran_at: datetime) -> None:
        try:
            await self._call(self._table.create_entity, {"PartitionKey": "nightly", "RowKey": night.isoformat(),
                                                         "RanAt": ran_at})
        except ResourceExistsError:
            pass

    async def record_run(self, report: CleanupReport) -> None:
        """Keep the run's report (newest first: inverted ticks), so an operator can see what each run did."""
        ticks = int((report.ran_at - datetime(1, 1, 1, tzinfo=timezone.utc)).total_seconds() * 10_000_000)
        await self._call(self._table.upsert_entity, {
            "PartitionKey": f"run-{report.ran_at:%Y%m}", "RowKey": f"{MAX_TICKS - ticks:019d}_{uuid.uuid4().hex[:8]}",
            "Kind": "run", "RanAt": report.ran_at, "Mode": report.mode, "Stopped": len(report.stopped),
            "Kept": len(report.kept), "Reconciled": len(report.reconciled), "Errors": len(report.errors),
            "Deferred": len(report.deferred), "Report": report.model_dump_json(by_alias=True)[:30_000],
        }, mode=UpdateMode.REPLACE)

    # -- queries --------------------------------------------------------------------------------------------

    async def query(self, query: str, **parameters: Any) -> list[dict[str, Any]]:
        return [row async for row in self.rows(query, **parameters)]

    async def rows(self, query: str, **parameters: Any) -> AsyncIterator[dict[str, Any]]:
        """Entities matching ``query``, page by page, each page bounded in time like any other call."""
        await self._ensure_table()
        first = True
        pages: Any = None
        while True:
            try:
                async with self._bounded():
                    if pages is None:
                        pages = self._table.query_entities(query, parameters=parameters,
                                                           results_per_page=1000).by_page()
                    page = await anext(pages)
                    rows = [dict(e) async for e in page]
            except StopAsyncIteration:
                return
            except ResourceNotFoundError as exc:
                if first and _table_missing(exc):
                    await self._recreate()
                    pages = None
                    first = False
                    continue
                raise HistoryUnavailable(_describe(exc)) from exc
            first = False
            for row in rows:
                yield row

    # -- plumbing -------------------------------------------------------------------------------------------

    async def _read_at(self, pointer: tuple[str, str]) -> SessionRecord | None:
        entity = await self._call(self._table_get, *pointer)
        return record_from_entity(entity) if entity is not None else None

    async def _table_get(self, partition: str, row: str) -> Any:
        try:
            return await self._table.get_entity(partition, row)
        except ResourceNotFoundError as exc:
            if _table_missing(exc):
                raise
            return None

    def _remember(self, record: SessionRecord, result: Any) -> SessionRecord:
        etag = result[0].get("etag") if result else None
        written = replace(record, etag=etag)
        self._written[record.session_id] = written
        self._written.move_to_end(record.session_id)
        while len(self._written) > MAX_REMEMBERED_WRITES:
            self._written.popitem(last=False)
        return written

    def _forget(self, session_id: str) -> None:
        self._written.pop(session_id, None)
        self._pointers.pop(session_id, None)

    @asynccontextmanager
    async def _bounded(self) -> AsyncIterator[None]:
        """One Table call: within CALL_SECONDS and the request's budget; outages become HistoryUnavailable."""
        deadline.check()
        try:
            async with asyncio.timeout(deadline.bounded(CALL_SECONDS)):
                yield
        except TimeoutError:
            left = deadline.remaining()
            if left is not None and left <= 0:
                raise DeadlineExceeded("the request's time budget ran out waiting for Table Storage") from None
            raise HistoryUnavailable(f"Table Storage did not answer within {CALL_SECONDS:.0f} s") from None
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            raise
        except TableTransactionError as exc:
            if exc.status_code in _PASSED_ON:
                raise
            raise HistoryUnavailable(_describe(exc)) from exc
        except HttpResponseError as exc:
            raise HistoryUnavailable(_describe(exc)) from exc
        except (AzureError, OSError) as exc:  # connection refused or reset, DNS
            raise HistoryUnavailable(f"Table Storage could not be reached ({type(exc).__name__})") from exc

    async def _call(self, method: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        await self._ensure_table()
        for attempt in (1, 2):
            try:
                async with self._bounded():
                    return await method(*args, **kwargs)
            except (ResourceNotFoundError, TableTransactionError) as exc:
                if attempt == 1 and _table_missing(exc):
                    await self._recreate()
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _ensure_table(self) -> None:
        if self._ready:
            return
        async with self._recreating:
            if not self._ready:
                await self._create_table()

    async def _create_table(self) -> bool:
        """Create the table if it is missing; True when this call created it (and stamped its epoch)."""
        try:
            async with self._bounded():
                await self._table.create_table()
            created = True
        except ResourceExistsError:
            created = False
        if created or await self._empty():
            # An empty table without its epoch was made by someone who died before stamping it: stamping it
            # now errs on the safe side (older sessions count as possibly lost, so keepAlive is never assumed).
            try:
                async with self._bounded():
                    await self._table.create_entity({"PartitionKey": "meta", "RowKey": "table",
                                                     "CreatedAt": self._clock()})
            except ResourceExistsError:
                pass
        self._ready = True
        return created

    async def _empty(self) -> bool:
        async with self._bounded():
            pages = self._table.list_entities(results_per_page=1, select=["PartitionKey"]).by_page()
            try:
                return not [e async for e in await anext(pages)]
            except StopAsyncIteration:
                return True

    async def _recreate(self) -> None:
        """The table has gone: create it again, forget stale places and ETags, and write back what this process
        remembers of active sessions (so their keepAlive, requester and reason survive)."""
        async with self._recreating:
            remembered = [r for r in self._written.values() if r.is_active]
            self._pointers.clear()
            self._written.clear()
            created = await self._create_table()
        if created or remembered:
            log.error("history table was missing (recreated %s); restoring %d active sessions this process knew",
                      "here" if created else "elsewhere", len(remembered))
        await self._write_back(remembered)

    async def _write_back(self, remembered: list[SessionRecord]) -> None:
        """Write records this process remembers into a table that lost them (merging into adoptions)."""
        now = self._clock()
        for record in remembered:
            event = Event("restored", now, to_status=record.status,
                          detail={"reason": "history table was lost and recreated"})
            held, wrote = await self.claim(replace(record, event_count=0, etag=None), event)
            if not wrote:  # adopted meanwhile, knowing less than we do
                await self.update(record.session_id, lambda r, known=record: restore(r, known, now))


__all__ = ["CALL_SECONDS", "History", "HistoryStore"]
