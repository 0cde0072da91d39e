"""Session history: one record per session, an event per change, written safely. The layout is
:mod:`arr_core.store.entities`.

The store is written against the table port (:mod:`arr_core.store.table`) only: the Azure adapter
(:mod:`arr_core.store.azure_table`) in Azure and locally, the dict of :mod:`arr_core.testing.memory_table` in unit
tests, so that every algorithm below runs in both.

Every change to a session is an ETag-conditional replace of its record *and* the insert of its events in one
entity-group transaction: two writers can never both record the same change, and a lost race is retried on fresh
data. A record is only ever *inserted*, at the place its id index names, so racing writers make one record.
Concurrent writes to one partition go together (:mod:`arr_core.store.group_commit`).

Faults: every call is bounded in time (:data:`CALL_SECONDS`, and the request's budget); a table that has gone
(deleted, or an emulator restarted) is created again and the call retried once, and what this process remembers
of active sessions is written back. Storage trouble surfaces as :class:`HistoryUnavailable`, never as a port or
SDK error.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from .. import deadline
from ..api.views import CleanupReport, CleanupRun, HistoryOrder
from ..domain.hooks.deliveries import HookDelivery, delivery_key
from ..domain.lifecycle import restore
from ..domain.notifications import Subscription
from ..domain.overrides import Override
from ..domain.quotas import Quota
from ..domain.records import RUN_MONTHS, Event, IdempotencyClaim, Mutation, SessionRecord, utcnow
from ..domain.schedules import Schedule
from ..errors import HistoryConflict, HistoryUnavailable
from . import entities as rows
from .continuation import decode_token, newest_ranges, page_filters, page_ranges, take_newest_page, take_page
from .group_commit import GroupCommit, alone
from .table import (
    Entity,
    EntityChanged,
    EntityExists,
    EntityMissing,
    Op,
    Query,
    Table,
    TableMissing,
    TableRefusal,
    TableUnreachable,
)

log = logging.getLogger("arr_core.history")

MAX_UPDATE_ATTEMPTS = 8
MAX_REMEMBERED_WRITES = 4096
CALL_SECONDS = 5.0  # one Table call (or one page of a query): an outage answers 503 in seconds, not minutes
_CALLER_HANDLES = (EntityExists, EntityChanged, EntityMissing, TableMissing)  # a lost race, an absent entity
PURGE_SCAN_ROWS = 2000  # hook deliveries a cleanup run looks at for old ones: two pages, a second or so


@runtime_checkable
class History(Protocol):
    """What the app needs of session history: :class:`HistoryStore` over any table."""

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
                           statuses: set[str] | None, top: int, token: str | None, order: HistoryOrder = ...,
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
    async def subscription(self, subscription_id: str) -> Subscription | None: ...
    async def subscriptions(self) -> list[Subscription]: ...
    async def record_delivery(self, delivery: HookDelivery) -> tuple[HookDelivery, bool]: ...
    async def delivery(self, sender: str, delivery_id: str) -> HookDelivery | None: ...
    async def finish_delivery(self, delivery: HookDelivery, results: tuple[str, ...]) -> None: ...
    async def purge_deliveries(self, before: datetime, *, scan: int = ...) -> int: ...
    async def add_override(self, override: Override) -> None: ...
    async def overrides(self) -> list[Override]: ...
    async def remove_override(self, override_id: str) -> Override | None: ...
    async def add_quota(self, quota: Quota) -> None: ...
    async def quotas(self) -> list[Quota]: ...
    async def update_quota(self, quota_id: str, change: Callable[[Quota], Quota]) -> Quota | None: ...
    async def remove_quota(self, quota_id: str) -> Quota | None: ...
    async def add_schedule(self, schedule: Schedule) -> None: ...
    async def schedule(self, schedule_id: str) -> Schedule | None: ...
    async def schedules(self) -> list[Schedule]: ...
    async def update_schedule(self, schedule_id: str,
                              change: Callable[[Schedule], Schedule]) -> Schedule | None: ...
    async def remove_schedule(self, schedule_id: str) -> Schedule | None: ...
    async def schedules_ticked(self) -> datetime | None: ...
    async def mark_schedules_ticked(self, at: datetime) -> None: ...


class HistoryStore:
    """Reads and writes session history; every method raises :class:`HistoryUnavailable` if storage fails."""

    def __init__(self, table: Table, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.table = table
        self._clock = clock
        self._pointers: dict[str, tuple[str, str]] = {}  # id -> where its record lives (fixed once written)
        # The record this process last wrote, with its new ETag: the next update starts from it instead of a
        # read. If anyone changed it since, the conditional write fails (412) and the update re-reads.
        self._written: OrderedDict[str, SessionRecord] = OrderedDict()
        self._ready = False
        self._recreating = asyncio.Lock()
        self._restoring: asyncio.Future[None] | None = None  # the write-back after a lost table, while under way
        self._commits = GroupCommit(self._send, self._bounded)

    async def aclose(self) -> None:
        await self.table.close()

    async def ping(self) -> None:
        """Prove that the table answers, creating it again if it has gone (health must not say ok otherwise)."""
        await self._call(self.table.get, rows.META, "ping")

    # -- sessions -------------------------------------------------------------------------------------------

    async def claim(self, record: SessionRecord, event: Event) -> tuple[SessionRecord, bool]:
        """Write ``record`` and its first event unless history already has the session.

        Returns the record history holds and whether this call wrote it. Racing claims of one id write one
        record: the id index's first insert fixes the record's place, and the record itself is insert-only.
        """
        for _ in range(MAX_UPDATE_ATTEMPTS):
            try:
                await self._transact([("insert", rows.index_entity(record), None)])
            except EntityExists:
                index = await self._call(self.table.get, rows.INDEX, record.session_id)
                if index is None:
                    continue  # deleted meanwhile: try again
                pointer = (index["RecordPartition"], index["RecordRow"])
                existing = await self._read_at(pointer)
                if existing is not None:
                    self._pointers[record.session_id] = pointer
                    return existing, False
                # The index's writer is still writing, or died before its record: write ours at that place.
                record = replace(record, created_at=rows.created_at_of(index))
            first = replace(record, event_count=1, updated_at=event.at)
            try:
                etags = await self._transact([("insert", rows.record_to_entity(first), None),
                                              ("insert", rows.event_to_entity(first, 1, event), None)])
            except EntityExists:
                existing = await self.get(record.session_id)
                if existing is None:
                    continue
                return existing, False
            except (EntityChanged, EntityMissing) as exc:  # not what an insert is answered: the table misbehaves
                raise HistoryUnavailable(str(exc)) from exc
            self._pointers[record.session_id] = (rows.partition_of(first), rows.row_of(first))
            return self._remember(first, etags), True
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
        index = await self._call(self.table.get, rows.INDEX, session_id)
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
            version = rows.next_version(current, mutate, self._clock())
            if version is None:
                return current
            new, events = version
            try:
                etags = await self._transact([("replace", rows.record_to_entity(new), current.etag),
                                              *(("insert", event, None) for event in events)])
            except (EntityChanged, EntityExists, EntityMissing) as exc:
                # Another writer got there first (412/409), or the record has gone (404): decide again on
                # fresh data. A record gone from a table another host recreated is written back first, if
                # this process remembers it active, so its keepAlive, requester and reason survive.
                remembered = self._written.get(session_id)
                current = None
                self._forget(session_id)
                if isinstance(exc, EntityMissing) and remembered is not None and remembered.is_active:
                    await self._write_back([remembered])
                continue
            return self._remember(new, etags)
        msg = f"gave up updating {session_id} after {MAX_UPDATE_ATTEMPTS} conflicting writes"
        raise HistoryConflict(msg)

    async def events(self, session_id: str) -> list[dict[str, Any]]:
        """The session's event rows in sequence order (decoded by :func:`arr_core.store.entities.event_from_entity`)."""
        record = await self.get(session_id)
        if record is None:
            return []
        row = rows.row_of(record)
        return await self.query(Query(rows.partition_of(record), f"{row}~e", f"{row}~f", low_inclusive=False))

    async def sessions_created(self, start: datetime, end: datetime, *, only_active: bool = False,
                               ) -> AsyncIterator[SessionRecord]:
        """Records of sessions created in [start, end), oldest first: a key-range query per month partition."""
        equal: dict[str, Any] = {"Kind": "session", **({"Active": True} if only_active else {})}
        for partition in rows.months_between(start, end):
            query = Query(partition, rows.row_for(start, ""), rows.row_for(end, ""), equal=equal)
            async for entity in self.rows(query):
                yield rows.record_from_entity(entity)

    async def since(self) -> datetime | None:
        """When this app created the table: sessions started before it may have had records that are lost.

        None when the table's origin is unknown (made by hand, or by an older version): then it is trusted.
        """
        row = await self._call(self.table.get, rows.META, "table")
        return rows.aware(row["CreatedAt"]) if row is not None else None

    async def history_page(self, start: datetime, end: datetime, *, requested_by: str | None, size: str | None,
                           statuses: set[str] | None, top: int, token: str | None, order: HistoryOrder = "oldest",
                           ) -> tuple[list[SessionRecord], str | None]:
        """One page of records created in [start, end), oldest or newest first, filtered in the query itself; the
        token (opaque, bound to these filters and the order) names the last record returned: the next page goes
        on after it (oldest first) or before it (newest first)."""
        filters = page_filters(start, end, requested_by, size, statuses, order)
        position = decode_token(token, filters) if token else None
        equal: dict[str, Any] = {"Kind": "session"}
        if requested_by is not None:
            equal["RequestedBy"] = requested_by
        if size is not None:
            equal["Size"] = size
        one_of = {"Status": tuple(sorted(statuses))} if statuses else {}
        low = rows.row_for(start, "")

        if order == "newest":
            async def newest(partition: str, high: str, count: int) -> list[SessionRecord]:
                kept: deque[Entity] = deque(maxlen=count)  # the range's last rows: ascending is the table's only order
                query = Query(partition, low, high, low_inclusive=False, equal=equal, one_of=one_of)
                async with aclosing(self.rows(query)) as found:
                    async for row in found:
                        kept.append(row)
                return [rows.record_from_entity(row) for row in reversed(kept)]

            return await take_newest_page(newest, newest_ranges(start, end, position), top, filters)

        async def records() -> AsyncIterator[SessionRecord]:
            for partition, after in page_ranges(start, end, position):
                query = Query(partition, after, rows.row_for(end, ""), low_inclusive=False, equal=equal, one_of=one_of)
                async with aclosing(self.rows(query)) as found:
                    async for row in found:  # in key order: oldest first
                        yield rows.record_from_entity(row)

        return await take_page(records(), top, filters)

    # -- idempotency ----------------------------------------------------------------------------------------

    async def claim_key(self, key: str, fingerprint: str, session_id: str,
                        ttl: timedelta = timedelta(hours=24)) -> IdempotencyClaim:
        """Bind ``key`` to ``session_id`` unless it is bound already; a binding older than ``ttl`` is replaced.

        Whoever inserts (or replaces) first owns the key; everyone else gets the owner's session and fingerprint.
        """
        now = self._clock()
        entity = rows.idempotency_entity(key, fingerprint, session_id, now)
        for _ in range(MAX_UPDATE_ATTEMPTS):
            try:
                await self._call(self.table.insert, entity)
                return rows.claim_from_entity(entity, owned=True)
            except EntityExists:
                existing = await self._call(self.table.get, rows.IDEMPOTENCY, entity["RowKey"])
                if existing is None:
                    continue
                claim = rows.claim_from_entity(existing, owned=False)
                if now - claim.created_at < ttl:
                    return claim
                try:
                    await self._call(self.table.replace, entity, existing.etag)
                    return rows.claim_from_entity(entity, owned=True)
                except (EntityChanged, EntityMissing):
                    continue
        msg = "idempotency key contention did not settle"
        raise HistoryConflict(msg)

    # -- cleanup bookkeeping --------------------------------------------------------------------------------

    async def take_lease(self, job: str, holder: str, seconds: float) -> bool:
        """Hold ``job`` for ``seconds`` unless another holder's lease is still running; False if it is.

        A conditional row with an expiry: a holder that died frees the job when its lease runs out.
        """
        now = self._clock()
        entity = rows.lease_entity(job, holder, now + timedelta(seconds=seconds))
        try:
            await self._call(self.table.insert, entity)
            return True
        except EntityExists:
            pass
        current = await self._call(self.table.get, rows.LEASE, job)
        if current is not None and rows.aware(current["Until"]) > now and current.get("Holder") != holder:
            return False
        try:
            if current is None:
                await self._call(self.table.insert, entity)
            else:
                await self._call(self.table.replace, entity, current.etag)
        except (EntityExists, EntityChanged, EntityMissing):
            return False  # someone else took it between our read and our write
        return True

    async def release_lease(self, job: str, holder: str) -> None:
        current = await self._call(self.table.get, rows.LEASE, job)
        if current is None or current.get("Holder") != holder:
            return
        try:
            await self._call(self.table.delete, rows.LEASE, job, current.etag)
        except (EntityChanged, EntityMissing):
            pass

    async def nights_done(self, nights: list[date]) -> set[date]:
        if not nights:
            return set()
        found = await self.query(Query(rows.NIGHTLY, one_of={"RowKey": tuple(n.isoformat() for n in nights)}))
        return {date.fromisoformat(r["RowKey"]) for r in found}

    async def mark_night(self, night: date, ran_at: datetime) -> None:
        try:
            await self._call(self.table.insert, rows.night_entity(night, ran_at))
        except EntityExists:
            pass

    async def record_run(self, report: CleanupReport) -> None:
        """Keep the run's row (newest first: inverted ticks), so an operator can see what each run did."""
        try:
            await self._call(self.table.insert, rows.run_to_entity(report))
        except EntityExists:
            pass  # written by a first try whose answer was lost (the SDK retried it): the row is there

    async def runs(self, before: datetime, top: int) -> list[CleanupRun]:
        """Up to ``top`` cleanup runs that started before ``before``, newest first, from the last RUN_MONTHS."""
        found: list[CleanupRun] = []
        for month in reversed(rows.months_between(before - timedelta(days=31 * RUN_MONTHS),
                                                  before + timedelta(days=1))):
            query = Query(f"run-{month[2:]}", rows.run_row_after(before), low_inclusive=False)
            async with aclosing(self.rows(query)) as runs:
                async for row in runs:
                    found.append(rows.run_from_entity(row))
                    if len(found) == top:
                        return found
        return found

    # -- subscriptions (the trigger's webhooks) ----------------------------------------------------------

    async def add_subscription(self, subscription: Subscription) -> None:
        await self._call(self.table.insert, rows.subscription_to_entity(subscription))

    async def remove_subscription(self, subscription_id: str) -> Subscription | None:
        """Remove it; the one removed, or None when there was none (a repeated DELETE)."""
        entity = await self._remove(rows.SUBSCRIPTION_PARTITION, subscription_id)
        return rows.subscription_from_entity(entity) if entity is not None else None

    async def subscription(self, subscription_id: str) -> Subscription | None:
        entity = await self._call(self.table.get, rows.SUBSCRIPTION_PARTITION, subscription_id)
        return rows.subscription_from_entity(entity) if entity is not None else None

    async def subscriptions(self) -> list[Subscription]:
        return [rows.subscription_from_entity(row) for row in await self.query(Query(rows.SUBSCRIPTION_PARTITION))]

    # -- overrides of the nightly shutdown ---------------------------------------------------------------

    async def add_override(self, override: Override) -> None:
        await self._call(self.table.insert, rows.override_to_entity(override))

    async def overrides(self) -> list[Override]:
        """Every override not yet past its time (older ones are deleted here: they end by themselves)."""
        now = self._clock()
        found = [rows.override_from_entity(row) for row in await self.query(Query(rows.OVERRIDE_PARTITION))]
        for ended in (o for o in found if o.until <= now):
            try:
                await self._call(self.table.delete, rows.OVERRIDE_PARTITION, ended.id, None)
            except (EntityChanged, EntityMissing):
                pass
        return [o for o in found if o.until > now]

    async def remove_override(self, override_id: str) -> Override | None:
        entity = await self._remove(rows.OVERRIDE_PARTITION, override_id)
        return rows.override_from_entity(entity) if entity is not None else None

    # -- quotas of Ready-minutes --------------------------------------------------------------------------

    async def add_quota(self, quota: Quota) -> None:
        await self._call(self.table.insert, rows.quota_to_entity(quota))

    async def quotas(self) -> list[Quota]:
        return [rows.quota_from_entity(row) for row in await self.query(Query(rows.QUOTA_PARTITION))]

    async def update_quota(self, quota_id: str, change: Callable[[Quota], Quota]) -> Quota | None:
        """Replace a quota by ``change`` of its stored version if nobody replaced it since it was read (its ETag),
        so that two top-ups at once both count; a lost race is read and changed again. None when there is no such
        quota; what ``change`` raises is raised."""
        for _ in range(MAX_UPDATE_ATTEMPTS):
            entity = await self._call(self.table.get, rows.QUOTA_PARTITION, quota_id)
            if entity is None:
                return None
            new = change(rows.quota_from_entity(entity))
            try:
                await self._call(self.table.replace, rows.quota_to_entity(new), entity.etag)
            except (EntityChanged, EntityMissing):
                continue
            return new
        msg = "quota update contention did not settle"
        raise HistoryConflict(msg)

    async def remove_quota(self, quota_id: str) -> Quota | None:
        entity = await self._remove(rows.QUOTA_PARTITION, quota_id)
        return rows.quota_from_entity(entity) if entity is not None else None

    # -- schedules ("Ready by T") -------------------------------------------------------------------------

    async def add_schedule(self, schedule: Schedule) -> None:
        await self._call(self.table.insert, rows.schedule_to_entity(schedule))

    async def schedule(self, schedule_id: str) -> Schedule | None:
        entity = await self._call(self.table.get, rows.SCHEDULE_PARTITION, schedule_id)
        return rows.schedule_from_entity(entity) if entity is not None else None

    async def schedules(self) -> list[Schedule]:
        """Every schedule; a row that no longer reads as one (edited by hand) is logged and left out, so that the
        others still run."""
        found = []
        for row in await self.query(Query(rows.SCHEDULE_PARTITION)):
            try:
                found.append(rows.schedule_from_entity(row))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("schedule row %s left out: %s", row.get("RowKey"), exc)
        return found

    async def update_schedule(self, schedule_id: str,
                              change: Callable[[Schedule], Schedule]) -> Schedule | None:
        """Replace a schedule by ``change`` of its stored version, if nobody replaced it since it was read (its
        ETag); a lost race is read again and changed again. None when there is no such schedule."""
        for _ in range(MAX_UPDATE_ATTEMPTS):
            entity = await self._call(self.table.get, rows.SCHEDULE_PARTITION, schedule_id)
            if entity is None:
                return None
            new = change(rows.schedule_from_entity(entity))
            try:
                await self._call(self.table.replace, rows.schedule_to_entity(new), entity.etag)
            except (EntityChanged, EntityMissing):
                continue
            return new
        msg = "schedule update contention did not settle"
        raise HistoryConflict(msg)

    async def remove_schedule(self, schedule_id: str) -> Schedule | None:
        entity = await self._remove(rows.SCHEDULE_PARTITION, schedule_id)
        return rows.schedule_from_entity(entity) if entity is not None else None

    async def schedules_ticked(self) -> datetime | None:
        """When the schedules' timer last ran (on any host); None before the first run."""
        entity = await self._call(self.table.get, rows.META, rows.SCHEDULE_TICK)
        return rows.aware(entity["TickedAt"]) if entity is not None else None

    async def mark_schedules_ticked(self, at: datetime) -> None:
        await self._call(self.table.replace, rows.schedule_tick_entity(at), None)

    async def _remove(self, partition: str, row: str) -> Entity | None:
        """Delete a row; it as it was, or None when there was none (a repeated DELETE)."""
        entity = await self._call(self.table.get, partition, row)
        if entity is not None:
            await self._call(self.table.delete, partition, row, None)
        return entity

    # -- hook deliveries ----------------------------------------------------------------------------------

    async def record_delivery(self, delivery: HookDelivery) -> tuple[HookDelivery, bool]:
        """Remember ``delivery`` unless its sender delivered it before: (the one remembered, whether it is new).
        One older than KEEP_DELIVERIES is taken over (the sender no longer retries it)."""
        entity = rows.delivery_to_entity(delivery)
        for _ in range(MAX_UPDATE_ATTEMPTS):
            try:
                await self._call(self.table.insert, entity)
                return delivery, True
            except EntityExists:
                existing = await self._call(self.table.get, rows.HOOK_PARTITION, delivery.key)
                if existing is None:
                    continue
                known = rows.delivery_from_entity(existing)
                if not known.expired(self._clock()):
                    return known, False
                try:
                    await self._call(self.table.replace, entity, existing.etag)
                    return delivery, True
                except (EntityChanged, EntityMissing):
                    continue
        msg = "hook delivery contention did not settle"
        raise HistoryConflict(msg)

    async def delivery(self, sender: str, delivery_id: str) -> HookDelivery | None:
        entity = await self._call(self.table.get, rows.HOOK_PARTITION, delivery_key(sender, delivery_id))
        return rows.delivery_from_entity(entity) if entity is not None else None

    async def finish_delivery(self, delivery: HookDelivery, results: tuple[str, ...]) -> None:
        """Mark it carried out, with what each action did (a later message for it then does nothing)."""
        done = replace(delivery, done_at=self._clock(), results=results)
        await self._call(self.table.replace, rows.delivery_to_entity(done), None)

    async def purge_deliveries(self, before: datetime, *, scan: int = PURGE_SCAN_ROWS) -> int:
        """Delete the hook deliveries received before ``before``, among the first ``scan`` rows of their partition
        (keys are digests, so any slice holds its share of old ones); how many. Another writer's change wins."""
        purged = 0
        seen = 0
        async with aclosing(self.rows(Query(rows.HOOK_PARTITION))) as found:
            async for row in found:
                seen += 1
                if rows.aware(row["ReceivedAt"]) < before:
                    try:
                        await self._call(self.table.delete, rows.HOOK_PARTITION, row["RowKey"], row.etag)
                        purged += 1
                    except EntityChanged:
                        pass
                if seen >= scan:
                    break
        return purged

    # -- queries --------------------------------------------------------------------------------------------

    async def query(self, query: Query) -> list[Entity]:
        return [row async for row in self.rows(query)]

    async def rows(self, query: Query) -> AsyncIterator[Entity]:
        """Entities matching ``query``, page by page, each page bounded in time like any other call."""
        await self._ensure_table()
        first = True
        pages: Any = None
        while True:
            try:
                async with self._bounded():
                    if pages is None:
                        pages = self.table.query(query)
                    page = await anext(pages)  # with their ETags: a record read here is current
            except StopAsyncIteration:
                return
            except TableMissing:
                if not first:
                    raise HistoryUnavailable("the history table went away during a query") from None
                await self._recreate()
                pages = None
                first = False
                continue
            first = False
            for row in page:
                yield row

    # -- plumbing -------------------------------------------------------------------------------------------

    async def _transact(self, ops: list[Op]) -> list[str]:
        """Write ``ops`` (one session's change, all in one partition) all or nothing, with the writes to its
        partition that come meanwhile (group commit); each operation's new ETag."""
        return await self._commits.write(ops)

    async def _send(self, ops: list[Op]) -> list[str]:
        """One call: a lone entity as a single write (no batch to encode), more as one transaction."""
        if len(ops) == 1:
            kind, entity, etag = ops[0]
            if kind == "insert":
                return [await self._call(self.table.insert, entity)]
            return [await self._call(self.table.replace, entity, etag)]
        return await self._call(self.table.transact, ops)

    async def _read_at(self, pointer: tuple[str, str]) -> SessionRecord | None:
        entity = await self._call(self.table.get, *pointer)
        return rows.record_from_entity(entity) if entity is not None else None

    def _remember(self, record: SessionRecord, etags: list[str]) -> SessionRecord:
        written = replace(record, etag=etags[0] if etags else None)
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
        except _CALLER_HANDLES:
            raise
        except TableRefusal as exc:
            raise HistoryUnavailable(str(exc)) from exc
        except (TableUnreachable, OSError) as exc:  # connection refused or reset, DNS
            raise HistoryUnavailable(f"Table Storage could not be reached ({_cause_name(exc)})") from exc

    async def _call(self, method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        await self._ensure_table()
        for attempt in (1, 2):
            try:
                async with self._bounded():
                    return await method(*args)
            except TableMissing:
                if attempt == 2:
                    raise HistoryUnavailable("the history table went away again as it was created") from None
                await self._recreate()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _ensure_table(self) -> None:
        if self._ready:
            return
        async with self._recreating:
            if not self._ready:
                await self._create_table()

    async def _create_table(self) -> bool:
        """Create the table if it is missing; True when this call created it (and stamped its epoch).

        A table that cannot be created yet (Azure refuses for a while one that is being deleted) is an outage of
        history, as any other answer would be: :class:`HistoryUnavailable`, and the next call tries again.
        """
        created = await self._setup_call(self.table.create_table)
        if created or await self._setup_call(self.table.is_empty):
            # An empty table without its epoch was made by someone who died before stamping it: stamping it
            # now errs on the safe side (older sessions count as possibly lost, so keepAlive is never assumed).
            try:
                await self._setup_call(self.table.insert, rows.epoch_entity(self._clock()))
            except EntityExists:
                pass
        self._ready = True
        return created

    async def _setup_call(self, method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """One call of setting the table up, bounded like any other; the table gone again meanwhile is an outage."""
        try:
            async with self._bounded():
                return await method(*args)
        except TableMissing as exc:
            raise HistoryUnavailable("the history table is gone and could not be created yet") from exc

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
                created = await self._create_table()  # if it fails, what this process remembers is kept for later
                self._pointers.clear()
                self._written.clear()
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
        with alone():
            for record in remembered:
                event = Event("restored", now, to_status=record.status,
                              detail={"reason": "history table was lost and recreated"})
                _, wrote = await self.claim(replace(record, event_count=0, etag=None), event)
                if not wrote:  # adopted meanwhile, knowing less than we do
                    await self.update(record.session_id, lambda r, known=record: restore(r, known, now))


def _cause_name(exc: BaseException) -> str:
    """What failed underneath: the adapter's own exception (ClientConnectorError, ...), else this one's type."""
    return type(exc.__cause__).__name__ if isinstance(exc, TableUnreachable) and exc.__cause__ else type(exc).__name__


__all__ = ["CALL_SECONDS", "History", "HistoryStore"]
