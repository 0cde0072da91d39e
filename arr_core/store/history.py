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
subscription  ``sub``                             subscription id                     trigger webhooks
============  ==================================  ==================================  =============================

Every change to a session is an ETag-conditional update of its record *and* the insert of its events in one
entity-group transaction: two writers can never both record the same change, and a lost race is retried on fresh
data. A record is only ever *inserted*, at the place its id index names, so racing writers make one record.

Group commit: each change is one caller's write, but writes to the same partition (a month's sessions share one),
under the same request budget, that come while a batch of them is on its way (:data:`BATCHES_IN_FLIGHT`) wait and
go together in the next transaction, up to Table Storage's 100 entities. Each keeps its own ETag condition and the
transaction is all or nothing, so no write lands without its events and none lands twice; a transaction the table
refuses (one lost race, say) wrote nothing, and each of its writes is sent again alone, answering its caller exactly
as it would have alone. A write is acknowledged only once its transaction is, so the order of a session's writes
(a stop's reason before ARR is asked) is kept. The cleanup's concurrent stops cost a few transactions, not two
calls each.

Faults: every call is bounded in time (:data:`CALL_SECONDS`, and the request's budget); a table that has gone
(deleted, or an emulator restarted) is created again and the call retried once, and what this process remembers
of active sessions is written back. Storage trouble surfaces as :class:`HistoryUnavailable`, never as a raw SDK
error.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.request
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
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

from .. import deadline
from .continuation import decode_token, page_filters, page_ranges, take_page
from ..errors import DeadlineExceeded, HistoryConflict, HistoryUnavailable
from ..domain.lifecycle import restore
from ..domain.notifications import SUBSCRIPTION_PARTITION, Subscription, subscription_from_entity, subscription_to_entity
from ..domain.records import (
    RUN_MONTHS,
    Event,
    IdempotencyClaim,
    Mutation,
    SessionRecord,
    aware,
    created_at_of,
    event_to_entity,
    idempotency_row,
    index_entity,
    months_between,
    next_version,
    record_from_entity,
    record_to_entity,
    row_for,
    utcnow,
)
from ..api.views import CleanupReport, CleanupRun

log = logging.getLogger("arr_core.store.history")

MAX_TICKS = 3155378975999999999  # .NET's DateTime.MaxValue in ticks: run rows sort newest first


def _ticks(at: datetime) -> int:
    return int((at - datetime(1, 1, 1, tzinfo=UTC)).total_seconds() * 10_000_000)


def _run_from_row(row: dict[str, Any]) -> CleanupRun:
    """A run row as a :class:`CleanupRun`: its kept report, or (if that was cut at the column's limit) its counts."""
    try:
        return CleanupRun.of(CleanupReport.model_validate_json(row["Report"]))
    except (KeyError, ValueError):
        return CleanupRun(ran_at=aware(row["RanAt"]), mode=row.get("Mode", "lease"), stopped=[],
                          kept=row.get("Kept", 0), reconciled=row.get("Reconciled", 0), errors=[],
                          deferred=row.get("Deferred", 0))
MAX_UPDATE_ATTEMPTS = 8
MAX_REMEMBERED_WRITES = 4096
CALL_SECONDS = 5.0  # one Table call (or one page of a query): an outage answers 503 in seconds, not minutes
# azure-core retries on its own; within CALL_SECONDS that is one quick retry of a dropped connection.
CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 1, "retry_backoff_factor": 0.2, "retry_backoff_max": 1,
                                  "connection_timeout": 3, "read_timeout": CALL_SECONDS,
                                  # aiohttp's trust_env looks up ~/.netrc and the proxy variables in a worker
                                  # thread on every request: two thread hops per Table call. Only a proxy set in
                                  # the environment needs it (netrc cannot apply: each request carries its own
                                  # Authorization), and the environment changes only with a restart.
                                  "use_env_settings": bool(urllib.request.getproxies())}
# What a caller handles itself (a lost race, an entity that is not there); everything else is "unavailable".
_PASSED_ON = {404, 409, 412}
MAX_BATCH_OPS = 100  # Table Storage's limit for one entity-group transaction
MAX_BATCH_CHARS = 600_000  # its limit is 4 MiB of payload: a character costs at most 6 bytes (a JSON \u escape)
# Batches on their way at once, per partition and budget: writes that come meanwhile wait, and go together in the
# next one. One batches best (the least CPU per write); two measured no faster on the nightly benchmark.
BATCHES_IN_FLIGHT = 1
_LEAD = object()  # what a waiting write is told when it is its turn to send a batch
_ALONE: ContextVar[bool] = ContextVar("arr_core_history_alone", default=False)  # while restoring a lost table


@dataclass(eq=False)
class _Write:
    """One caller's change: operations on one partition that succeed or fail together, and its answer."""

    ops: list[Any]
    done: asyncio.Future[Any]
    keys: frozenset[str] = field(init=False)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.keys = frozenset(op[1]["RowKey"] for op in self.ops)
        self.size = sum(_weight(op[1]) for op in self.ops)


@dataclass(eq=False)
class _Lane:
    """Writes to one partition, under one request budget, waiting for a batch, and how many are on their way."""

    waiting: list[_Write] = field(default_factory=list)
    sending: int = 0


def _weight(entity: dict[str, Any]) -> int:
    """An upper bound of an entity's characters in a batch (names, values, OData type annotations)."""
    return sum(len(name) * 2 + 64 + (len(value) if isinstance(value, str) else 0) for name, value in entity.items())


def _failed(exc: BaseException) -> Exception:
    """What a write raises whose batch another caller sent and got no answer for: that error, as its own."""
    if isinstance(exc, (HistoryUnavailable, DeadlineExceeded)):
        failure: Exception = type(exc)(exc.message)
    else:
        failure = HistoryUnavailable(f"Table Storage did not answer the batch with this write ({type(exc).__name__})")
    failure.__cause__ = exc
    return failure


def _refused(exc: BaseException) -> bool:
    """The table answered a transaction with an error: nothing of it was written."""
    cause = exc if isinstance(exc, HttpResponseError) else exc.__cause__
    return isinstance(cause, HttpResponseError)


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
    :class:`arr_core.testing.memory_history.MemoryHistory` keeps it in memory for unit tests."""

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
    async def runs(self, before: datetime, top: int) -> list[CleanupRun]: ...
    async def add_subscription(self, subscription: Subscription) -> None: ...
    async def remove_subscription(self, subscription_id: str) -> Subscription | None: ...
    async def subscriptions(self) -> list[Subscription]: ...


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
        self._restoring: asyncio.Future[None] | None = None  # the write-back after a lost table, while under way
        self._lanes: dict[tuple[str, Any], _Lane] = {}  # (partition, request budget) -> writes waiting to be sent

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
                await self._transact([("create", index_entity(record))])
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
                result = await self._transact([("create", record_to_entity(first)),
                                               ("create", event_to_entity(first, 1, event))])
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
        record = await self._lookup(session_id)
        restoring = self._restoring
        if record is None and restoring is not None and restoring is not asyncio.current_task():
            # The table was lost and this process is writing back what it remembers: this one may be among them.
            await asyncio.wait([restoring], timeout=deadline.bounded(CALL_SECONDS))
            record = await self._lookup(session_id)
        return record

    async def _lookup(self, session_id: str) -> SessionRecord | None:
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
        if current is None or current.etag is None:
            current = self._written.get(session_id) or current
        for _ in range(MAX_UPDATE_ATTEMPTS):
            if current is None or current.etag is None:
                current = await self.get(session_id)
            if current is None:
                return None
            version = next_version(current, mutate, self._clock())
            if version is None:
                return current
            new, events = version
            condition = {"mode": UpdateMode.REPLACE, "etag": current.etag,
                         "match_condition": MatchConditions.IfNotModified}
            try:
                result = await self._transact([("update", record_to_entity(new), condition),
                                               *(("create", event) for event in events)])
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
        return aware(row["CreatedAt"]) if row is not None else None

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
                created = aware(existing["CreatedAt"])
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
        if current is not None and aware(current["Until"]) > now and current.get("Holder") != holder:
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
        ticks = _ticks(report.ran_at)
        await self._call(self._table.upsert_entity, {
            "PartitionKey": f"run-{report.ran_at:%Y%m}", "RowKey": f"{MAX_TICKS - ticks:019d}_{uuid.uuid4().hex[:8]}",
            "Kind": "run", "RanAt": report.ran_at, "Mode": report.mode, "Stopped": len(report.stopped),
            "Kept": len(report.kept), "Reconciled": len(report.reconciled), "Errors": len(report.errors),
            "Deferred": len(report.deferred), "Report": report.model_dump_json(by_alias=True)[:30_000],
        }, mode=UpdateMode.REPLACE)

    async def runs(self, before: datetime, top: int) -> list[CleanupRun]:
        """Up to ``top`` cleanup runs that started before ``before``, newest first, from the last RUN_MONTHS."""
        after = f"{MAX_TICKS - _ticks(before):019d}~"  # "_" < "~": the rows of exactly ``before`` are left out
        found: list[CleanupRun] = []
        for month in reversed(months_between(before - timedelta(days=31 * RUN_MONTHS), before + timedelta(days=1))):
            rows = self.rows("PartitionKey eq @pk and RowKey gt @after", pk=f"run-{month[2:]}", after=after)
            async with aclosing(rows):
                async for row in rows:
                    found.append(_run_from_row(row))
                    if len(found) == top:
                        return found
        return found

    # -- subscriptions (the trigger's webhooks) ----------------------------------------------------------

    async def add_subscription(self, subscription: Subscription) -> None:
        await self._call(self._table.create_entity, subscription_to_entity(subscription))

    async def remove_subscription(self, subscription_id: str) -> Subscription | None:
        """Remove it; the one removed, or None when there was none (a repeated DELETE)."""
        entity = await self._call(self._table_get, SUBSCRIPTION_PARTITION, subscription_id)
        if entity is None:
            return None
        try:
            await self._call(self._table.delete_entity, SUBSCRIPTION_PARTITION, subscription_id)
        except ResourceNotFoundError:
            return None
        return subscription_from_entity(entity)

    async def subscriptions(self) -> list[Subscription]:
        return [subscription_from_entity(row) for row in await self.query(f"PartitionKey eq '{SUBSCRIPTION_PARTITION}'")]

    # -- queries --------------------------------------------------------------------------------------------

    async def query(self, query: str, **parameters: Any) -> list[dict[str, Any]]:
        return [dict(row) async for row in self.rows(query, **parameters)]

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
                    rows = [e async for e in page]  # with their ETags (``metadata``): a record read here is current
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

    async def _transact(self, ops: list[Any]) -> list[Any]:
        """Write ``ops`` (one session's change, all in one partition) all or nothing; each operation's metadata.

        Alone, the write is sent as it always was (one entity: a single call; more: one transaction). Writes to the
        same partition, under the same request budget, that come while :data:`BATCHES_IN_FLIGHT` batches of them
        are on their way are sent together in the next transaction (group commit): each keeps its own conditions,
        and the transaction is all or nothing. If the table refuses it (a lost race, an entity there already, a bad
        entity), nothing was written, and each write in it is sent again alone, so that each caller gets exactly the
        answer it would have got alone. A write waits for its batch within the bounds of any call.
        """
        if _ALONE.get():
            return await self._send(ops)
        loop = asyncio.get_running_loop()
        lane_key = (ops[0][1]["PartitionKey"], deadline._deadline.get())  # the budget itself, not what is left of it
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

    async def _send_batch(self, lane: _Lane, leader: _Write) -> None:
        """Send ``leader`` with the writes waiting behind it that fit one transaction; settle each one's future."""
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
        try:
            if len(batch) == 1:
                await self._settle(leader)
                return
            try:
                result = await self._send([op for write in batch for op in write.ops])
            except Exception as exc:
                if not _refused(exc):
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

    async def _send(self, ops: list[Any]) -> list[Any]:
        """One call: a lone entity as a single write (no batch to encode), more as one transaction."""
        if len(ops) == 1:
            kind, entity, *options = ops[0]
            if kind == "create":
                return [await self._call(self._table.create_entity, entity)]
            if kind == "update":
                return [await self._call(self._table.update_entity, entity, **(options[0] if options else {}))]
        return await self._call(self._table.submit_transaction, ops)

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
        try:
            async with deadline.call("Table Storage", CALL_SECONDS, HistoryUnavailable):
                yield
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
        remembers of active sessions (so their keepAlive, requester and reason survive).

        Calls that find the table gone while that write-back is under way wait for it (and then try again on the
        records it restored) instead of starting another: one that forgot what the first is writing back would
        find those records missing, and decide on nothing.
        """
        async with self._recreating:
            restoring = self._restoring
            if restoring is None or restoring is asyncio.current_task():  # (lost again while writing back)
                remembered = [r for r in self._written.values() if r.is_active]
                self._pointers.clear()
                self._written.clear()
                created = await self._create_table()
                if created or remembered:
                    log.error("history table was missing (recreated %s); restoring %d active sessions this process "
                              "knew", "here" if created else "elsewhere", len(remembered))
                restoring = self._restoring = asyncio.ensure_future(self._write_back(remembered))
                restoring.add_done_callback(self._restored)
        await asyncio.shield(restoring)

    def _restored(self, restoring: asyncio.Future[None]) -> None:
        if self._restoring is restoring:
            self._restoring = None
        if not restoring.cancelled():
            restoring.exception()  # retrieved: every caller waiting on it raises it itself

    async def _write_back(self, remembered: list[SessionRecord]) -> None:
        """Write records this process remembers into a table that lost them (merging into adoptions).

        Sent alone, never batched: this may run inside the sending of a batch (whose call found the table gone).
        """
        now = self._clock()
        token = _ALONE.set(True)
        try:
            await self._restore(remembered, now)
        finally:
            _ALONE.reset(token)

    async def _restore(self, remembered: list[SessionRecord], now: datetime) -> None:
        for record in remembered:
            event = Event("restored", now, to_status=record.status,
                          detail={"reason": "history table was lost and recreated"})
            _, wrote = await self.claim(replace(record, event_count=0, etag=None), event)
            if not wrote:  # adopted meanwhile, knowing less than we do
                await self.update(record.session_id, lambda r, known=record: restore(r, known, now))


__all__ = ["CALL_SECONDS", "History", "HistoryStore"]
