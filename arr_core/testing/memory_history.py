"""Session history in memory, with the rules of :class:`arr_core.store.history.HistoryStore`, for unit tests.

A fake, never the only proof: the Azurite tests run the store itself. What makes this fake worth trusting is that
it keeps the same *rules*, not just the same method names:

- entities are kept in their table form (:func:`~arr_core.domain.records.record_to_entity` and friends), under the same
  PartitionKey and RowKey, so that what survives a round trip is what the table keeps (``keepAlive`` None is not
  stored, labels are JSON, keys order as strings);
- the algorithms are the store's, step by step: the id index fixes where the one record lives, records are
  insert-only, every change is an ETag-conditional replace plus its events in one all-or-nothing batch, a lost race
  re-reads and decides again;
- every table operation first yields to the event loop, as an awaited network call would, so that concurrent
  callers interleave between a read and its conditional write and the ETag rules are exercised, not sidestepped.

Test hooks (no mocks of internals needed): :meth:`MemoryHistory.fail_next` makes calls raise,
:meth:`MemoryHistory.lose_table` drops everything as a deleted table or a restarted emulator would, ``latency``
slows every table operation, ``calls`` counts calls per method, ``reports`` keeps the cleanup reports.

Not modelled: the store's per-call timeout, and its write-back of the active records one process remembers when
it finds its table gone (``lose_table`` is a lost table *and* a process that remembers nothing).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..domain import records as layout  # the table form of records and keys, shared with the store
from ..store.continuation import decode_token, page_filters, page_ranges, take_page
from ..errors import HistoryConflict, HistoryUnavailable
from ..domain.notifications import SUBSCRIPTION_PARTITION, Subscription, subscription_from_entity, subscription_to_entity
from ..domain.records import Event, IdempotencyClaim, Mutation, SessionRecord, utcnow
from ..api.views import CleanupRun

if TYPE_CHECKING:
    from ..api.views import CleanupReport

MAX_UPDATE_ATTEMPTS = 8  # as the store: a write that keeps losing gives up with HistoryConflict
MAX_STRING_UNITS = 32_768  # Table Storage refuses a string property above 64 KiB: 32K UTF-16 code units

_Key = tuple[str, str]
_Op = tuple[str, dict[str, Any], str | None]  # ("insert" | "replace", entity, ETag to match or None)


class _Exists(Exception):
    """409: an insert found the entity there already."""


class _Modified(Exception):
    """412 or 404: a conditional write found the entity changed, or gone, since its ETag was read."""


@dataclass
class _Fault:
    remaining: int  # < 0: until healed
    exc: BaseException
    only: frozenset[str] | None


class MemoryHistory:
    """The :class:`~arr_core.store.history.History` protocol in memory; raises what the store raises, when it would.

    ``clock`` stamps what the store stamps with its clock (``UpdatedAt``, key bindings, leases). ``since`` is what
    :meth:`since` answers: None (a table of unknown origin, trusted) unless given, or set by :meth:`lose_table`.
    """

    def __init__(self, *, clock: Callable[[], datetime] = utcnow, since: datetime | None = None,
                 latency: float = 0.0) -> None:
        self._clock = clock
        self._since = since
        self.latency = latency  # seconds each table operation takes: a slow table, for time-budget tests
        self.calls: Counter[str] = Counter()  # public calls by method name, faulted ones included
        self.reports: list[CleanupReport] = []  # record_run's reports, oldest first
        self._table: dict[_Key, tuple[dict[str, Any], str]] = {}  # (PartitionKey, RowKey) -> (entity, ETag)
        self._etags = itertools.count(1)
        self._faults: list[_Fault] = []

    # -- test hooks -----------------------------------------------------------------------------------------

    def fail_next(self, n: int = 1, exc: BaseException | None = None, *,
                  only: str | Collection[str] | None = None) -> None:
        """Make the next ``n`` calls (of the methods named in ``only``, or any) raise ``exc``; ``n`` < 0: until
        :meth:`heal`. The default is the store's answer to an outage, :class:`HistoryUnavailable`.

        Faults queue in the order given; a call takes the first that matches it. The call raises before it changes
        anything, as a store call that never reached the table.
        """
        if n == 0:
            return
        names = frozenset([only] if isinstance(only, str) else only) if only is not None else None
        self._faults.append(_Fault(n, exc or HistoryUnavailable("Table Storage did not answer (simulated)"), names))

    def heal(self) -> None:
        """Forget every fault not yet taken."""
        self._faults.clear()

    def lose_table(self) -> None:
        """Everything gone, as after the table was deleted or an in-memory emulator restarted; :meth:`since`
        then answers now, so sessions ARR runs that are older are adopted with ``keepAlive`` unknown."""
        self._table.clear()
        self.reports.clear()
        self._since = self._clock()

    # -- health ---------------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Nothing to close; present because the protocol has it."""

    async def ping(self) -> None:
        await self._begin("ping")

    # -- sessions -------------------------------------------------------------------------------------------

    async def claim(self, record: SessionRecord, event: Event) -> tuple[SessionRecord, bool]:
        """Write ``record`` and its first event unless history has the session; the store's steps, so racing
        claims of one id write one record (the index's first insert fixes its place; records are insert-only)."""
        await self._begin("claim")
        for _ in range(MAX_UPDATE_ATTEMPTS):
            try:
                await self._batch([("insert", layout.index_entity(record), None)])
            except _Exists:
                index = await self._entity("id", record.session_id)
                if index is None:
                    continue
                existing = await self._record_at(index["RecordPartition"], index["RecordRow"])
                if existing is not None:
                    return existing, False
                # The index's writer is still writing, or died before its record: write ours at that place.
                record = replace(record, created_at=layout.created_at_of(index))
            first = replace(record, event_count=1, updated_at=event.at)
            try:
                etag = await self._batch([("insert", layout.record_to_entity(first), None),
                                          ("insert", layout.event_to_entity(first, 1, event), None)])
            except _Exists:
                existing = await self._read(record.session_id)
                if existing is None:
                    continue
                return existing, False
            return replace(first, etag=etag), True
        msg = f"claiming {record.session_id} did not settle"
        raise HistoryConflict(msg)

    async def get(self, session_id: str) -> SessionRecord | None:
        await self._begin("get")
        return await self._read(session_id)

    async def update(self, session_id: str, mutate: Mutation,
                     current: SessionRecord | None = None) -> SessionRecord | None:
        """Apply ``mutate`` and write the record with its events if its ETag still matches; a lost race re-reads
        and decides again. None when history has no record; the record as found when ``mutate`` changes nothing."""
        await self._begin("update")
        for _ in range(MAX_UPDATE_ATTEMPTS):
            if current is None or current.etag is None:
                current = await self._read(session_id)
            if current is None:
                return None
            version = layout.next_version(current, mutate, self._clock())
            if version is None:
                return current
            new, events = version
            ops: list[_Op] = [("replace", layout.record_to_entity(new), current.etag)]
            ops += [("insert", event, None) for event in events]
            try:
                etag = await self._batch(ops)
            except (_Exists, _Modified):
                current = None
                continue
            return replace(new, etag=etag)
        msg = f"gave up updating {session_id} after {MAX_UPDATE_ATTEMPTS} conflicting writes"
        raise HistoryConflict(msg)

    async def events(self, session_id: str) -> list[dict[str, Any]]:
        """The session's event entities in sequence order (Seq, Type, At, …, Detail as a JSON string)."""
        await self._begin("events")
        record = await self._read(session_id)
        if record is None:
            return []
        return await self._scan(record.partition, f"{record.row}~e", f"{record.row}~f", low_inclusive=False)

    async def sessions_created(self, start: datetime, end: datetime, *, only_active: bool = False,
                               ) -> AsyncIterator[SessionRecord]:
        """Records of sessions created in [start, end), oldest first, month partition by month partition."""
        await self._begin("sessions_created")
        for partition in layout.months_between(start, end):
            for entity in await self._scan(partition, layout.row_for(start, ""), layout.row_for(end, "")):
                if entity.get("Kind") == "session" and (not only_active or entity.get("Active") is True):
                    yield layout.record_from_entity(entity)

    async def since(self) -> datetime | None:
        await self._begin("since")
        return self._since

    async def history_page(self, start: datetime, end: datetime, *, requested_by: str | None, size: str | None,
                           statuses: set[str] | None, top: int, token: str | None,
                           ) -> tuple[list[SessionRecord], str | None]:
        """One page of records created in [start, end), oldest first; the token is the store's (same filters
        digest), so a token from the store continues here and an altered one raises ``InvalidToken``."""
        filters = page_filters(start, end, requested_by, size, statuses)
        after = decode_token(token, filters) if token else None
        await self._begin("history_page")

        def wanted(entity: dict[str, Any]) -> bool:
            return (entity.get("Kind") == "session"
                    and (requested_by is None or entity.get("RequestedBy") == requested_by)
                    and (size is None or entity.get("Size") == size)
                    and (not statuses or entity.get("Status") in statuses))

        async def records() -> AsyncIterator[SessionRecord]:
            for partition, low in page_ranges(start, end, after):
                for entity in await self._scan(partition, low, layout.row_for(end, ""), low_inclusive=False):
                    if wanted(entity):
                        yield layout.record_from_entity(entity)

        return await take_page(records(), top, filters)

    # -- idempotency ----------------------------------------------------------------------------------------

    async def claim_key(self, key: str, fingerprint: str, session_id: str,
                        ttl: timedelta = timedelta(hours=24)) -> IdempotencyClaim:
        """Bind ``key`` to ``session_id`` unless bound within ``ttl``; an older binding is replaced, conditionally."""
        await self._begin("claim_key")
        now = self._clock()
        entity = {"PartitionKey": "idem", "RowKey": layout.idempotency_row(key), "Fingerprint": fingerprint,
                  "SessionId": session_id, "CreatedAt": now}
        for _ in range(MAX_UPDATE_ATTEMPTS):
            try:
                await self._batch([("insert", entity, None)])
                return IdempotencyClaim(session_id, fingerprint, now, owned=True)
            except _Exists:
                found = await self._stored("idem", entity["RowKey"])
                if found is None:
                    continue
                existing, etag = found
                created = layout.aware(existing["CreatedAt"])
                if now - created < ttl:
                    return IdempotencyClaim(existing["SessionId"], existing["Fingerprint"], created, owned=False)
                try:
                    await self._batch([("replace", entity, etag)])
                    return IdempotencyClaim(session_id, fingerprint, now, owned=True)
                except _Modified:
                    continue
        msg = "idempotency key contention did not settle"
        raise HistoryConflict(msg)

    # -- cleanup bookkeeping --------------------------------------------------------------------------------

    async def take_lease(self, job: str, holder: str, seconds: float) -> bool:
        """Hold ``job`` for ``seconds`` unless another holder's lease is still running (then False)."""
        await self._begin("take_lease")
        now = self._clock()
        entity = {"PartitionKey": "lease", "RowKey": job, "Holder": holder, "Until": now + timedelta(seconds=seconds)}
        try:
            await self._batch([("insert", entity, None)])
            return True
        except _Exists:
            pass
        found = await self._stored("lease", job)
        if found is not None and layout.aware(found[0]["Until"]) > now and found[0].get("Holder") != holder:
            return False
        try:
            await self._batch([("insert", entity, None) if found is None else ("replace", entity, found[1])])
        except (_Exists, _Modified):
            return False  # someone else took it between our read and our write
        return True

    async def release_lease(self, job: str, holder: str) -> None:
        await self._begin("release_lease")
        found = await self._stored("lease", job)
        if found is None or found[0].get("Holder") != holder:
            return
        await self._io()
        if self._table.get(("lease", job), (None, None))[1] == found[1]:
            del self._table[("lease", job)]

    async def nights_done(self, nights: list[date]) -> set[date]:
        await self._begin("nights_done")
        await self._io()
        asked = {night.isoformat() for night in nights}
        return {date.fromisoformat(row) for (partition, row) in self._table if partition == "nightly" and row in asked}

    async def mark_night(self, night: date, ran_at: datetime) -> None:
        await self._begin("mark_night")
        try:
            await self._batch([("insert", {"PartitionKey": "nightly", "RowKey": night.isoformat(), "RanAt": ran_at},
                                None)])
        except _Exists:
            pass

    async def record_run(self, report: CleanupReport) -> None:
        """Keep the run's report in :attr:`reports` (the store writes a row per run)."""
        await self._begin("record_run")
        await self._io()
        self.reports.append(report)

    async def runs(self, before: datetime, top: int) -> list[CleanupRun]:
        await self._begin("runs")
        await self._io()
        earliest = before - timedelta(days=31 * layout.RUN_MONTHS)
        kept = sorted((r for r in self.reports if earliest <= r.ran_at < before), key=lambda r: r.ran_at, reverse=True)
        return [CleanupRun.of(r) for r in kept[:top]]

    # -- subscriptions --------------------------------------------------------------------------------------

    async def add_subscription(self, subscription: Subscription) -> None:
        await self._begin("add_subscription")
        await self._batch([("insert", subscription_to_entity(subscription), None)])

    async def remove_subscription(self, subscription_id: str) -> Subscription | None:
        await self._begin("remove_subscription")
        found = await self._stored(SUBSCRIPTION_PARTITION, subscription_id)
        if found is None:
            return None
        await self._io()
        self._table.pop((SUBSCRIPTION_PARTITION, subscription_id), None)
        return subscription_from_entity(found[0])

    async def subscriptions(self) -> list[Subscription]:
        await self._begin("subscriptions")
        return [subscription_from_entity(e) for e in await self._scan(SUBSCRIPTION_PARTITION, "", "~")]

    # -- the table --------------------------------------------------------------------------------------------

    async def _begin(self, name: str) -> None:
        """Count the call and raise the first queued fault that matches it."""
        self.calls[name] += 1
        for fault in self._faults:
            if fault.only is None or name in fault.only:
                if fault.remaining > 0:
                    fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                raise fault.exc

    async def _io(self) -> None:
        """One round trip: let other tasks run first, as awaiting the network would."""
        await asyncio.sleep(self.latency)

    async def _read(self, session_id: str) -> SessionRecord | None:
        index = await self._entity("id", session_id)
        if index is None:
            return None
        return await self._record_at(index["RecordPartition"], index["RecordRow"])

    async def _record_at(self, partition: str, row: str) -> SessionRecord | None:
        found = await self._stored(partition, row)
        return replace(layout.record_from_entity(found[0]), etag=found[1]) if found is not None else None

    async def _entity(self, partition: str, row: str) -> dict[str, Any] | None:
        found = await self._stored(partition, row)
        return found[0] if found is not None else None

    async def _stored(self, partition: str, row: str) -> tuple[dict[str, Any], str] | None:
        await self._io()
        found = self._table.get((partition, row))
        return (_copy(found[0]), found[1]) if found is not None else None

    async def _scan(self, partition: str, low: str, high: str, *, low_inclusive: bool = True,
                    ) -> list[dict[str, Any]]:
        """Entities of one partition with ``low`` <= (or <) RowKey < ``high``, in key order (one query page)."""
        await self._io()
        keys = sorted(row for (p, row) in self._table if p == partition
                      and (low <= row if low_inclusive else low < row) and row < high)
        return [_copy(self._table[(partition, row)][0]) for row in keys]

    async def _batch(self, ops: list[_Op]) -> str:
        """An entity-group transaction: every operation or none. Returns the first entity's new ETag."""
        await self._io()
        seen: set[_Key] = set()
        for kind, entity, etag in ops:
            key = (entity["PartitionKey"], entity["RowKey"])
            if key in seen:
                raise HistoryUnavailable("Table Storage answered 400 InvalidDuplicateRow")
            seen.add(key)
            too_long = [name for name, value in entity.items()
                        if isinstance(value, str) and len(value.encode("utf-16-le")) // 2 > MAX_STRING_UNITS]
            if too_long:
                raise HistoryUnavailable(f"Table Storage answered 400 PropertyValueTooLarge ({too_long[0]})")
            present = self._table.get(key)
            if kind == "insert" and present is not None:
                raise _Exists(key)
            if kind == "replace" and (present is None or (etag is not None and present[1] != etag)):
                raise _Modified(key)
        etags = []
        for _, entity, _ in ops:
            etag = f'W/"{next(self._etags)}"'
            self._table[(entity["PartitionKey"], entity["RowKey"])] = (_copy(entity), etag)
            etags.append(etag)
        return etags[0]


def _copy(entity: dict[str, Any]) -> dict[str, Any]:
    """What a read returns: a copy (callers may change it), datetimes as aware UTC, as the SDK gives them."""
    return {name: layout.aware(value) for name, value in entity.items()}


__all__ = ["MemoryHistory"]
