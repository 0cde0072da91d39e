"""History's rows: how records, events and the store's bookkeeping map to table entities, apart from the store.

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
hook delivery ``hook``                            sha256 of sender and delivery id    a sender's retry is known
override      ``override``                        override id                         nightly exemptions
schedule      ``schedule``                        schedule id                         "Ready by T" schedules
schedule tick ``meta``                            ``schedules``                       the schedules' last timer run
quota         ``quota``                           quota id                            Ready-minutes per period;
                                                                                      replaced by ETag (top-ups)
============  ==================================  ==================================  =============================

Stored rows are their own format, never the HTTP API's JSON: renaming a field of the API changes no row. A cleanup
run row says which format it is in (``Schema``); rows of format 1 (the API's report as JSON) are still read.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from ..api.views import CleanupAction, CleanupReport, CleanupRun
from ..domain.hooks.deliveries import HookDelivery
from ..domain.hooks.rules import HookAction
from ..domain.notifications import DEFAULT_EVENTS, Subscription
from ..domain.overrides import Override
from ..domain.quotas import Quota, TopUp
from ..domain.records import Event, IdempotencyClaim, Mutation, SessionRecord, idempotency_row
from ..domain.schedules import Monthly, Schedule

INDEX = "id"
IDEMPOTENCY = "idem"
META = "meta"
LEASE = "lease"
NIGHTLY = "nightly"
SUBSCRIPTION_PARTITION = "sub"  # one row per subscription, RowKey its id
OVERRIDE_PARTITION = "override"  # one row per override, RowKey its id
SCHEDULE_PARTITION = "schedule"  # one row per schedule, RowKey its id
SCHEDULE_TICK = "schedules"  # the META row of the schedules' last timer run
QUOTA_PARTITION = "quota"  # one row per quota, RowKey its id
TOP_UPS_CHUNK = 15_000  # characters per top-ups column: at most 30K UTF-16 units, within a string property's 32K
HOOK_PARTITION = "hook"  # one row per hook delivery, RowKey delivery_key(sender, delivery id)
MAX_TICKS = 3155378975999999999  # .NET's DateTime.MaxValue in ticks: run rows sort newest first
RUN_SCHEMA = 2  # 1: the API's CleanupReport as JSON in ``Report``; 2: our own columns (below)
MAX_ACTION_CHARS = 30_000  # a string property holds 32K UTF-16 code units; the actions a run row keeps fit in this


def partition_for(created_at: datetime) -> str:
    return f"s-{created_at.astimezone(UTC):%Y%m}"


def row_for(created_at: datetime, session_id: str) -> str:
    return f"{created_at.astimezone(UTC).isoformat(timespec='microseconds')}~{session_id}"


def months_between(start: datetime, end: datetime) -> list[str]:
    """The session partitions that can hold sessions created in [start, end)."""
    months, cursor = [], start.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while cursor < end:
        months.append(f"s-{cursor:%Y%m}")
        cursor = (cursor + timedelta(days=32)).replace(day=1)
    return months


_RECORD_FIELDS = {
    "session_id": "SessionId", "status": "Status", "size": "Size", "lease_minutes": "LeaseMinutes",
    "requested_by": "RequestedBy", "reason": "Reason", "keep_alive": "KeepAlive", "created_at": "CreatedAt",
    "arr_created_at": "ArrCreatedAt", "ready_at": "ReadyAt", "ended_at": "EndedAt",
    "elapsed_minutes": "ElapsedMinutes", "error_code": "ErrorCode", "error_message": "ErrorMessage",
    "stop_reason": "StopReason", "stopped_by": "StoppedBy", "idempotency_key": "IdempotencyKey",
    "callback_url": "CallbackUrl", "notified_status": "NotifiedStatus",
    "warned": "Warned", "last_heartbeat": "LastHeartbeat",
    "event_count": "EventCount", "updated_at": "UpdatedAt",
}


def aware(value: Any) -> Any:
    """A datetime from the table (the SDK's own subclass, or naive: then UTC, as the table keeps times) as a plain
    aware UTC datetime."""
    if isinstance(value, datetime):
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value
        return datetime.fromtimestamp(utc.timestamp(), UTC)
    return value


def _json(value: Any) -> str:
    """Compact UTF-8 JSON: Table Storage limits a string to 32K characters, and ``\\u00e9`` would cost six."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=str)


def record_to_entity(record: SessionRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": partition_of(record), "RowKey": row_of(record), "Kind": "session",
                              "Labels": _json(record.labels),
                              "Active": record.cleanup_watches}
    for attr, name in _RECORD_FIELDS.items():
        entity[name] = getattr(record, attr)
    return {k: v for k, v in entity.items() if v is not None}


def record_from_entity(entity: dict[str, Any]) -> SessionRecord:
    values = {attr: aware(entity.get(name)) for attr, name in _RECORD_FIELDS.items() if entity.get(name) is not None}
    values["labels"] = json.loads(entity.get("Labels") or "{}")
    values.setdefault("keep_alive", None)  # not stored: unknown
    return SessionRecord(**values, etag=getattr(entity, "etag", None))


def event_to_entity(record: SessionRecord, seq: int, event: Event) -> dict[str, Any]:
    entity = {
        "PartitionKey": partition_of(record), "RowKey": f"{row_of(record)}~e{seq:05d}", "Kind": "event",
        "SessionId": record.session_id, "Seq": seq, "Type": event.type, "At": event.at,
        "FromStatus": event.from_status, "ToStatus": event.to_status, "Actor": event.actor,
        "Detail": _json(event.detail),
    }
    return {k: v for k, v in entity.items() if v is not None}


def event_from_entity(entity: dict[str, Any]) -> tuple[int, Event]:
    """An event row as (its sequence number, the event)."""
    detail = json.loads(entity.get("Detail") or "{}")
    return int(entity["Seq"]), Event(entity["Type"], aware(entity["At"]), entity.get("FromStatus"),
                                     entity.get("ToStatus"), entity.get("Actor"), detail)


def next_version(current: SessionRecord, mutate: Mutation,
                 now: datetime) -> tuple[SessionRecord, list[dict[str, Any]]] | None:
    """What ``mutate`` makes of ``current``: the new record, numbered after its events, and the events' entities
    (what one conditional write stores); None when there is nothing to change. The store writes through this."""
    change = mutate(current)
    if change is None:
        return None
    new, events = change
    new = replace(new, event_count=current.event_count + len(events), updated_at=now)
    return new, [event_to_entity(new, current.event_count + i + 1, event) for i, event in enumerate(events)]


def index_entity(record: SessionRecord) -> dict[str, Any]:
    """The id index row: where a session's one record lives. Whoever inserts it first decides that place."""
    return {"PartitionKey": INDEX, "RowKey": record.session_id, "RecordPartition": partition_of(record),
            "RecordRow": row_of(record), "CreatedAt": record.created_at}


def created_at_of(index: dict[str, Any]) -> datetime:
    """The creation time an index row fixes (older rows carry it only in their RecordRow)."""
    if index.get("CreatedAt") is not None:
        return aware(index["CreatedAt"])
    return datetime.fromisoformat(str(index["RecordRow"]).split("~", 1)[0])


def partition_of(record: SessionRecord) -> str:
    return partition_for(record.created_at)


def row_of(record: SessionRecord) -> str:
    return row_for(record.created_at, record.session_id)


def epoch_entity(created_at: datetime) -> dict[str, Any]:
    """When this app created the table: sessions started before it may have had records that are lost."""
    return {"PartitionKey": META, "RowKey": "table", "CreatedAt": created_at}


def idempotency_entity(key: str, fingerprint: str, session_id: str, now: datetime) -> dict[str, Any]:
    return {"PartitionKey": IDEMPOTENCY, "RowKey": idempotency_row(key), "Fingerprint": fingerprint,
            "SessionId": session_id, "CreatedAt": now}


def claim_from_entity(entity: dict[str, Any], *, owned: bool) -> IdempotencyClaim:
    return IdempotencyClaim(entity["SessionId"], entity["Fingerprint"], aware(entity["CreatedAt"]), owned=owned)


def lease_entity(job: str, holder: str, until: datetime) -> dict[str, Any]:
    return {"PartitionKey": LEASE, "RowKey": job, "Holder": holder, "Until": until}


def night_entity(night: date, ran_at: datetime) -> dict[str, Any]:
    return {"PartitionKey": NIGHTLY, "RowKey": night.isoformat(), "RanAt": ran_at}


def subscription_to_entity(subscription: Subscription) -> dict[str, Any]:
    entity = {"PartitionKey": SUBSCRIPTION_PARTITION, "RowKey": subscription.id, "Kind": "subscription",
              "CallbackUrl": subscription.callback_url, "CreatedAt": subscription.created_at,
              "Statuses": ",".join(sorted(subscription.statuses)) if subscription.statuses else None,
              "SessionId": subscription.session_id, "RequestedBy": subscription.requested_by,
              "Events": None if subscription.events == DEFAULT_EVENTS else ",".join(sorted(subscription.events))}
    return {k: v for k, v in entity.items() if v is not None}


def subscription_from_entity(entity: dict[str, Any]) -> Subscription:
    statuses = entity.get("Statuses")
    return Subscription(id=entity["RowKey"], callback_url=entity["CallbackUrl"],
                        created_at=aware(entity["CreatedAt"]),
                        statuses=frozenset(statuses.split(",")) if statuses else None,
                        session_id=entity.get("SessionId"), requested_by=entity.get("RequestedBy"),
                        events=frozenset(entity["Events"].split(",")) if entity.get("Events") else DEFAULT_EVENTS)


def delivery_to_entity(delivery: HookDelivery) -> dict[str, Any]:
    """A hook delivery's row. Its actions are bounded by the rules (at most 100, 32 labels each); actions too large
    for one property are refused by the table, never cut."""
    entity = {"PartitionKey": HOOK_PARTITION, "RowKey": delivery.key, "Sender": delivery.sender,
              "DeliveryId": delivery.delivery_id, "EventType": delivery.event_type,
              "ReceivedAt": delivery.received_at,
              "Actions": json.dumps([a.model_dump(mode="json", by_alias=True) for a in delivery.actions]),
              "Ignored": delivery.ignored, "DoneAt": delivery.done_at,
              "Results": json.dumps(list(delivery.results)) if delivery.results else None}
    return {k: v for k, v in entity.items() if v is not None}


def delivery_from_entity(entity: dict[str, Any]) -> HookDelivery:
    return HookDelivery(sender=entity["Sender"], delivery_id=entity["DeliveryId"], event_type=entity["EventType"],
                        received_at=aware(entity["ReceivedAt"]),
                        actions=tuple(HookAction.model_validate(a) for a in json.loads(entity.get("Actions") or "[]")),
                        ignored=entity.get("Ignored"), done_at=aware(entity["DoneAt"]) if entity.get("DoneAt") else None,
                        results=tuple(json.loads(entity["Results"])) if entity.get("Results") else ())


def override_to_entity(override: Override) -> dict[str, Any]:
    entity = {"PartitionKey": OVERRIDE_PARTITION, "RowKey": override.id, "Until": override.until,
              "CreatedAt": override.created_at, "SessionId": override.session_id,
              "Labels": _json(override.labels) if override.labels else None, "Reason": override.reason,
              "RequestedBy": override.requested_by}
    return {k: v for k, v in entity.items() if v is not None}


def override_from_entity(entity: dict[str, Any]) -> Override:
    return Override(id=entity["RowKey"], until=aware(entity["Until"]), created_at=aware(entity["CreatedAt"]),
                    session_id=entity.get("SessionId"), labels=json.loads(entity.get("Labels") or "{}"),
                    reason=entity.get("Reason"), requested_by=entity.get("RequestedBy"))


def schedule_to_entity(schedule: Schedule) -> dict[str, Any]:
    """A schedule's row: its collections as JSON columns (at most 100 exception dates: about 1.3K characters)."""
    monthly = schedule.monthly
    entity = {"PartitionKey": SCHEDULE_PARTITION, "RowKey": schedule.id, "Kind": "schedule",
              "TimeZone": schedule.time_zone, "ReadyBy": schedule.ready_by.isoformat(),
              "DurationMinutes": schedule.duration_minutes, "Size": schedule.size,
              "Weekdays": _json(sorted(schedule.weekdays)) if schedule.weekdays else None,
              "Monthly": _json({"nth": monthly.nth, "weekday": monthly.weekday}) if monthly else None,
              "Exceptions": _json(sorted(d.isoformat() for d in schedule.exceptions)) if schedule.exceptions else None,
              "Labels": _json(schedule.labels) if schedule.labels else None, "RequestedBy": schedule.requested_by,
              "Fallbacks": _json(list(schedule.fallbacks)) if schedule.fallbacks else None,
              "Enabled": schedule.enabled, "CreatedAt": schedule.created_at, "UpdatedAt": schedule.updated_at}
    return {k: v for k, v in entity.items() if v is not None}


def schedule_from_entity(entity: dict[str, Any]) -> Schedule:
    monthly = json.loads(entity["Monthly"]) if entity.get("Monthly") else None
    return Schedule(id=entity["RowKey"], time_zone=entity["TimeZone"], ready_by=time.fromisoformat(entity["ReadyBy"]),
                    duration_minutes=int(entity["DurationMinutes"]), size=entity["Size"],
                    created_at=aware(entity["CreatedAt"]), updated_at=aware(entity.get("UpdatedAt")),
                    weekdays=frozenset(json.loads(entity.get("Weekdays") or "[]")),
                    monthly=Monthly(monthly["nth"], monthly["weekday"]) if monthly else None,
                    exceptions=frozenset(date.fromisoformat(d) for d in json.loads(entity.get("Exceptions") or "[]")),
                    labels=json.loads(entity.get("Labels") or "{}"), requested_by=entity.get("RequestedBy"),
                    fallbacks=tuple(json.loads(entity.get("Fallbacks") or "[]")),
                    enabled=bool(entity.get("Enabled", True)))


def schedule_tick_entity(at: datetime) -> dict[str, Any]:
    return {"PartitionKey": META, "RowKey": SCHEDULE_TICK, "TickedAt": at}


def quota_to_entity(quota: Quota) -> dict[str, Any]:
    """A quota's row. Its top-ups (at most MAX_TOP_UPS, with free text) are one JSON text cut into columns
    ``TopUps0``, ``TopUps1``, ... of TOP_UPS_CHUNK characters: a hundred top-ups with long reasons pass one string
    property's 32K limit, never the entity's 1 MiB."""
    top_ups = _json([{"minutes": t.minutes, "by": t.by, "at": t.at.isoformat(), "reason": t.reason}
                     for t in quota.top_ups]) if quota.top_ups else ""
    chunks = {f"TopUps{i}": top_ups[start:start + TOP_UPS_CHUNK]
              for i, start in enumerate(range(0, len(top_ups), TOP_UPS_CHUNK))}
    entity = {"PartitionKey": QUOTA_PARTITION, "RowKey": quota.id, "Kind": "quota", "Minutes": quota.minutes,
              "Period": quota.period, "TimeZone": quota.time_zone, "CreatedAt": quota.created_at,
              "RequestedBy": quota.requested_by, "Labels": _json(quota.labels) if quota.labels else None,
              "Reason": quota.reason, **chunks}
    return {k: v for k, v in entity.items() if v is not None}


def quota_from_entity(entity: dict[str, Any]) -> Quota:
    parts: list[str] = []
    while f"TopUps{len(parts)}" in entity:
        parts.append(entity[f"TopUps{len(parts)}"])
    text = "".join(parts)
    top_ups = tuple(TopUp(minutes=int(t["minutes"]), by=t["by"], at=datetime.fromisoformat(t["at"]),
                          reason=t.get("reason")) for t in (json.loads(text) if text else []))
    return Quota(id=entity["RowKey"], minutes=int(entity["Minutes"]), period=entity["Period"],
                 time_zone=entity["TimeZone"], created_at=aware(entity["CreatedAt"]),
                 requested_by=entity.get("RequestedBy"), labels=json.loads(entity.get("Labels") or "{}"),
                 reason=entity.get("Reason"), top_ups=top_ups)


def ticks(at: datetime) -> int:
    return int((at - datetime(1, 1, 1, tzinfo=UTC)).total_seconds() * 10_000_000)


def run_partition(at: datetime) -> str:
    return f"run-{at:%Y%m}"


def run_row_after(before: datetime) -> str:
    """The RowKeys of runs that started before ``before`` are greater than this ("_" < "~": the rows of exactly
    ``before`` are left out)."""
    return f"{MAX_TICKS - ticks(before):019d}~"


def _actions(actions: list[CleanupAction]) -> str:
    """As many ``[id, reason]`` pairs as fit the column, in order."""
    kept: list[list[str]] = []
    size = 2
    for action in actions:
        pair = [action.id, action.reason]
        size += len(_json(pair)) + 1
        if size > MAX_ACTION_CHARS // 2:
            break
        kept.append(pair)
    return _json(kept)


def run_to_entity(report: CleanupReport) -> dict[str, Any]:
    """A cleanup run's row (format :data:`RUN_SCHEMA`): when, which, counts, and what it stopped or failed on."""
    return {"PartitionKey": run_partition(report.ran_at),
            "RowKey": f"{MAX_TICKS - ticks(report.ran_at):019d}_{uuid.uuid4().hex[:8]}",
            "Kind": "run", "Schema": RUN_SCHEMA, "RanAt": report.ran_at, "Mode": report.mode,
            "Stopped": len(report.stopped), "Kept": len(report.kept), "Reconciled": len(report.reconciled),
            "Errors": len(report.errors), "Deferred": len(report.deferred),
            "StoppedActions": _actions(report.stopped), "ErrorActions": _actions(report.errors)}


def run_from_entity(row: dict[str, Any]) -> CleanupRun:
    """A run row of either format as a :class:`CleanupRun`."""
    if row.get("Schema") == RUN_SCHEMA:
        def actions(column: str) -> list[CleanupAction]:
            return [CleanupAction(id=i, reason=r) for i, r in json.loads(row.get(column) or "[]")]

        return CleanupRun(ran_at=aware(row["RanAt"]), mode=row.get("Mode", "lease"),
                          stopped=actions("StoppedActions"), kept=row.get("Kept", 0),
                          reconciled=row.get("Reconciled", 0), errors=actions("ErrorActions"),
                          deferred=row.get("Deferred", 0))
    try:  # format 1: the API's report, kept whole unless it was cut at the column's limit
        return CleanupRun.of(CleanupReport.model_validate_json(row["Report"]))
    except (KeyError, ValueError):
        return CleanupRun(ran_at=aware(row["RanAt"]), mode=row.get("Mode", "lease"), stopped=[],
                          kept=row.get("Kept", 0), reconciled=row.get("Reconciled", 0), errors=[],
                          deferred=row.get("Deferred", 0))
