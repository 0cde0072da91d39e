"""The cleanup run, history pages and usage reports: the I/O around :mod:`arr_core.cleanup`'s decisions."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from typing import Any

from .continuation import decode_token, encode_token
from .cleanup import Action, CleanupPolicy, Decision, decide, nightly_due
from .errors import ArrError, NotFoundError
from .records import Event, SessionRecord, months_between, record_from_entity, row_for, utcnow
from .lifecycle import observe
from .models import RenderingSession
from .sessions import ACTIVE_WINDOW, SessionService
from .settings import AppSettings
from .views import CleanupAction, CleanupReport, UsageReport, UsageRow

log = logging.getLogger("arr_core.maintenance")
MAX_TICKS = 3155378975999999999


def policy_from(settings: AppSettings) -> CleanupPolicy:
    return CleanupPolicy.from_settings(time_zone=settings.time_zone, nightly_at=settings.nightly_shutdown_at,
                                       max_session_minutes=settings.max_session_minutes,
                                       stuck_starting_minutes=settings.stuck_starting_minutes)


class Maintenance:
    """Runs the cleanup and answers history and usage questions."""

    def __init__(self, sessions: SessionService, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.sessions = sessions
        self.history = sessions.history
        self.settings = sessions.settings
        self.policy = policy_from(self.settings)
        self._clock = clock

    # -- cleanup --------------------------------------------------------------------------------------------

    async def run_cleanup(self, *, dry_run: bool = False, mode: str = "lease") -> CleanupReport:
        """Decide (pure), then act: adopt, reconcile, stop with bounded concurrency; one failure stops nothing
        else. Writes a run record; ``dry_run`` decides and reports without acting."""
        now = self._clock()
        arr_sessions = [s async for s in self.sessions.arr.list_sessions()]
        records = [r async for r in self.history.sessions_created(now - ACTIVE_WINDOW, now + timedelta(minutes=5),
                                                                  only_active=True)]
        night = None
        cutoff = None
        if mode == "nightly":
            cutoff = now
        else:
            done = await self._nights_done(now)
            due = nightly_due(now, self.policy, done)
            if due is not None:
                night, cutoff = due
        decisions = decide(arr_sessions, records, now, self.policy, nightly_cutoff=cutoff)
        report = CleanupReport(ran_at=now, dry_run=dry_run, mode="nightly" if cutoff else "lease",
                               stopped=[], kept=[], reconciled=[], errors=[])
        if dry_run:
            for d in decisions:
                bucket = {Action.STOP: report.stopped, Action.KEEP: report.kept}.get(d.action, report.reconciled)
                bucket.append(CleanupAction(id=d.session_id, reason=d.reason))
            return report
        for d in [d for d in decisions if d.action is Action.ADOPT]:
            await self._guard(report, d, self._adopt(d, report))
        await asyncio.gather(*(self._guard(report, d, self._reconcile(d, report))
                               for d in decisions if d.action is Action.RECONCILE))
        limit = asyncio.Semaphore(self.settings.stop_concurrency)

        async def stop(d: Decision) -> None:
            async with limit:
                await self.sessions.stop(d.session_id, d.reason, actor="cleanup", known=d.arr, record=d.record)
                report.stopped.append(CleanupAction(id=d.session_id, reason=d.reason))

        await asyncio.gather(*(self._guard(report, d, stop(d)) for d in decisions if d.action is Action.STOP))
        report.kept.extend(CleanupAction(id=d.session_id, reason=d.reason)
                           for d in decisions if d.action is Action.KEEP)
        if night is not None and not report.errors:
            await self.history.claim_marker("nightly", night.isoformat(), RanAt=now)
        await self._write_run(report)
        return report

    async def _guard(self, report: CleanupReport, decision: Decision, work: Any) -> None:
        try:
            await work
        except Exception as exc:  # one failure must not stop the others: it is reported and logged
            log.warning("cleanup of %s failed: %s", decision.session_id, exc)
            detail = str(exc) if isinstance(exc, ArrError) else type(exc).__name__
            report.errors.append(CleanupAction(id=decision.session_id, reason=f"{decision.action.value}: {detail}"))

    async def _adopt(self, decision: Decision, report: CleanupReport) -> None:
        arr = decision.arr
        assert arr is not None
        now = self._clock()
        record = SessionRecord(session_id=arr.id, created_at=arr.created_at or now, status="Requested",
                               size=arr.size.value, lease_minutes=arr.lease_minutes,
                               reason="adopted: started outside this app or lost mid-start")
        if await self.history.adopt(record, Event("adopted", now, to_status="Requested", actor="cleanup")):
            await self.history.update(arr.id, lambda r: observe(r, arr, now, actor="cleanup"))
            report.reconciled.append(CleanupAction(id=arr.id, reason="adopted into history"))

    async def _reconcile(self, decision: Decision, report: CleanupReport) -> None:
        record = decision.record
        assert record is not None
        now = self._clock()
        try:
            arr: RenderingSession | None = await self.sessions.arr.get_session(record.session_id)
        except NotFoundError:
            arr = None
        if arr is not None:
            written = await self.history.update(record.session_id, lambda r: observe(r, arr, now, actor="cleanup"))
            if written is not None and arr.status.is_terminal:
                report.reconciled.append(CleanupAction(
                    id=record.session_id, reason=f"closed: ARR reports {arr.status.value}, "
                    f"{arr.elapsed_minutes or 0} billed minutes"))
            return

        def never_created(r: SessionRecord) -> tuple[SessionRecord, list[Event]] | None:
            if not r.is_active:
                return None
            new = replace(r, status="Error", ended_at=now, elapsed_minutes=r.elapsed_minutes or 0,
                          error_code=r.error_code or "NotFoundAtArr",
                          error_message=r.error_message or "ARR does not know this session")
            return new, [Event("reconciled", now, from_status=r.status, to_status="Error", actor="cleanup",
                               detail={"reason": "ARR does not know this session"})]

        if await self.history.update(record.session_id, never_created) is not None:
            report.reconciled.append(CleanupAction(id=record.session_id, reason="closed: ARR does not know it"))

    async def _nights_done(self, now: datetime) -> set[date]:
        days = [(now - timedelta(days=i)).astimezone(self.policy.time_zone).date() for i in range(2)]
        rows = await self.history.query("PartitionKey eq 'nightly' and ( RowKey eq @a or RowKey eq @b )",
                                        a=days[0].isoformat(), b=days[1].isoformat())
        return {date.fromisoformat(r["RowKey"]) for r in rows}

    async def _write_run(self, report: CleanupReport) -> None:
        ticks = int((report.ran_at - datetime(1, 1, 1, tzinfo=timezone.utc)).total_seconds() * 10_000_000)
        body = report.model_dump_json(by_alias=True)
        await self.history.write({
            "PartitionKey": f"run-{report.ran_at:%Y%m}", "RowKey": f"{MAX_TICKS - ticks:019d}_{uuid.uuid4().hex[:8]}",
            "Kind": "run", "RanAt": report.ran_at, "Mode": report.mode, "Stopped": len(report.stopped),
            "Kept": len(report.kept), "Reconciled": len(report.reconciled), "Errors": len(report.errors),
            "Report": body[:30_000],
        })

    # -- history --------------------------------------------------------------------------------------------

    async def history_page(self, start: datetime, end: datetime, *, requested_by: str | None, size: str | None,
                           statuses: set[str] | None, top: int, token: str | None,
                           ) -> tuple[list[SessionRecord], str | None]:
        """One page of records created in [start, end), oldest first, filtered in the query itself."""
        filters = {"requestedBy": requested_by, "size": size, "status": sorted(statuses) if statuses else None,
                   "from": start.isoformat(), "to": end.isoformat()}
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
            clauses = []
            for i, status in enumerate(sorted(statuses)):
                clauses.append(f"Status eq @st{i}")
                params[f"st{i}"] = status
            query += f" and ( {' or '.join(clauses)} )"
        out: list[SessionRecord] = []
        for partition in months_between(start, end):
            if after is not None and partition < after[0]:
                continue
            low = after[1] if after is not None and partition == after[0] else row_for(start, "")
            rows = await self.history.query(query, pk=partition, lo=low, **params)
            for row in sorted(rows, key=lambda r: r["RowKey"]):
                out.append(record_from_entity(row))
                if len(out) == top + 1:
                    last = out[top - 1]
                    return out[:top], encode_token(last.partition, last.row, filters)
        return out, None

    # -- usage ----------------------------------------------------------------------------------------------

    async def usage(self, start: datetime, end: datetime, group_by: str) -> UsageReport:
        """Billed minutes (Ready to end, ARR's elapsed minutes) of sessions created in [start, end)."""
        rates = {"Standard": self.settings.rate_standard_per_hour, "Premium": self.settings.rate_premium_per_hour}
        groups: dict[str, list[SessionRecord]] = defaultdict(list)
        everything: list[SessionRecord] = []
        async for record in self.history.sessions_created(start, end):
            key = _group_key(record, group_by, self.policy)
            groups[key].append(record)
            everything.append(record)
        rows = [_usage_row(key, records, rates) for key, records in sorted(groups.items())]
        return UsageReport(from_=start, to=end, currency=self.settings.currency, rows=rows,
                           total=_usage_row("total", everything, rates))


def _group_key(record: SessionRecord, group_by: str, policy: CleanupPolicy) -> str:
    if group_by == "size":
        return record.size or "unknown"
    if group_by == "requestedBy":
        return record.requested_by or "unknown"
    return record.created_at.astimezone(policy.time_zone).date().isoformat()


def _usage_row(key: str, records: list[SessionRecord], rates: dict[str, float | None]) -> UsageRow:
    minutes = sum(r.elapsed_minutes or 0 for r in records)
    cost: float | None = 0.0
    for record in records:
        rate = rates.get(record.size or "")
        if rate is None:
            if record.elapsed_minutes:
                cost = None
                break
            continue
        cost = (cost or 0.0) + (record.elapsed_minutes or 0) / 60 * rate
    return UsageRow(key=key, sessions=len(records), billed_minutes=minutes,
                    estimated_cost=None if cost is None else round(cost, 4))


__all__ = ["Maintenance"]
