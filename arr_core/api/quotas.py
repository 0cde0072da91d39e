"""The shapes of the quotas' HTTP API (``/api/quotas``, docs/API.md section 1): their request bodies and views.

Kept beside :mod:`.views` (whose building blocks they use: free text, labels, time zones), generated into the
OpenAPI document the same way. The rules are :mod:`arr_core.domain.quotas`'.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import model_validator

from ..domain.quotas import MAX_QUOTA_MINUTES, MAX_TOP_UP_MINUTES, MAX_TOP_UPS
from ..domain.records import MAX_LABEL_KEY, MAX_LABELS
from ..domain.schedules import TZ_DATABASE
from .views import ApiModel, LabelKey, LabelValue, ShortText, TimeZoneName, described

PeriodName = Literal["month", "week"]


class QuotaRequest(ApiModel):
    """A quota: Ready-minutes per period for one requester's sessions, or for those with some labels."""

    minutes: int = described("Minutes", f"Ready-minutes the scope's sessions may use per period (1-{MAX_QUOTA_MINUTES}"
                             "), as ARR bills them: rounded up to whole minutes per session.",
                             ge=1, le=MAX_QUOTA_MINUTES)
    period: PeriodName = described("Period", "month (the calendar month) or week (ISO: Monday 00:00 to Monday "
                                   "00:00), in timeZone; each period starts from minutes again.")
    time_zone: TimeZoneName | None = described("Time Zone", "The IANA time zone the periods start in, e.g. "
                                               f"Europe/Berlin ({TZ_DATABASE}); default UTC.", default=None)
    requested_by: ShortText | None = described("Requested By", "The scope: the sessions requested by this requester "
                                               "(not with labels).", default=None, min_length=1)
    labels: dict[LabelKey, LabelValue] | None = described(
        "Labels", f"The scope: the sessions whose labels hold all of these (not with requestedBy): 1-{MAX_LABELS}, "
        f"each key 1-{MAX_LABEL_KEY} letters, digits, '_', '.', ':' or '-'.", default=None, min_length=1,
        max_length=MAX_LABELS)
    reason: ShortText | None = described("Reason", "Why, for whoever reads the quotas.", default=None)

    @model_validator(mode="after")
    def _one_scope(self) -> QuotaRequest:
        if (self.requested_by is None) == (self.labels is None):
            msg = "give requestedBy or labels, not both"
            raise ValueError(msg)
        return self


class TopUpRequest(ApiModel):
    """Minutes added to a quota for its current period only."""

    minutes: int = described("Minutes", f"Minutes to add to this period's allowance (1-{MAX_TOP_UP_MINUTES}); the "
                             "next period starts without them.", ge=1, le=MAX_TOP_UP_MINUTES)
    requested_by: ShortText = described("Requested By", "Who adds them.", min_length=1)
    reason: ShortText | None = described("Reason", "Why.", default=None)


class TopUpView(ApiModel):
    minutes: int = described("Minutes", "The minutes added.")
    requested_by: str = described("Requested By", "Who added them.")
    reason: str | None = described("Reason", "Why.")
    at: datetime = described("At", "When: they count in the period this falls in (ISO 8601).")


class QuotaView(ApiModel):
    """A quota, and its current period: what is used, committed and left."""

    id: str = described("Quota ID", "The quota's id (quo- and 12 hex digits): DELETE /api/quotas/{id} deletes it.")
    minutes: int = described("Minutes", "Ready-minutes allowed per period, before top-ups.")
    period: PeriodName = described("Period", "month or week (ISO, from Monday 00:00).")
    time_zone: str = described("Time Zone", "The IANA time zone the periods start in.")
    requested_by: str | None = described("Requested By", "The requester whose sessions count, if that is the scope.")
    labels: dict[str, str] | None = described("Labels", "The labels a session must all have to count, if that is the "
                                              "scope.")
    reason: str | None = described("Reason", "Why.")
    created_at: datetime = described("Created At", "When it was made (ISO 8601).")
    top_ups: list[TopUpView] = described("Top Ups", f"Its top-ups, oldest first (at most {MAX_TOP_UPS}; those of past "
                                         "periods make room for new ones).")
    period_start: datetime = described("Period Start", "When the current period began (with the zone's offset).")
    period_end: datetime = described("Period End", "When it ends: the next period begins.")
    allowance: int = described("Allowance", "minutes plus the top-ups made in this period.")
    used: int = described("Used", "Ready-minutes of the scope's sessions in this period, running ones to now, rounded "
                          "up per session.")
    committed: int = described("Committed", "What the scope's running sessions may still use: the rest of each lease "
                               "(all of it before Ready).")
    left: int = described("Left", "allowance minus used and committed (never below 0): the most a new lease may be.")
    reached: bool = described("Reached", "used is at the allowance: the cleanup stops the scope's running sessions.")


class QuotaList(ApiModel):
    quotas: list[QuotaView] = described("Quotas", "Every quota, by id, with its current period.")
