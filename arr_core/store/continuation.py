"""Opaque continuation tokens for history pages: where to go on, bound to the query that issued them.

A token carries the last (partition, row) read and a digest of the query's filters, plus a checksum: an altered
token, or one from another query, is refused with :class:`InvalidToken` (a 400 to the caller), never a 500.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from datetime import datetime
from typing import Any

from ..api.views import HistoryOrder
from ..domain.records import SessionRecord
from ..errors import InvalidToken
from ..store.entities import months_between, row_for
from .entities import partition_of, row_of

# What a position can look like: a month partition, and a row key of printable ASCII (an ISO time, "~", a session
# id). The checksum is no secret, so a re-signed token is refused here rather than sent to Table Storage.
PARTITION = re.compile(r"s-\d{6}")
ROW = re.compile(r"[\x21-\x7e]{1,300}")


def _digest(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def encode_token(partition: str, row: str, filters: dict[str, Any]) -> str:
    payload = json.dumps({"p": partition, "r": row, "f": _digest(json.dumps(filters, sort_keys=True))},
                         separators=(",", ":"))
    raw = json.dumps({"v": 1, "d": payload, "s": _digest(payload)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, filters: dict[str, Any]) -> tuple[str, str]:
    """The (partition, row) to continue after; :class:`InvalidToken` when it was altered or is for another query.

    Anything that does not decode to exactly the shape :func:`encode_token` writes is refused, whatever its types.
    """
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        payload = raw.get("d") if isinstance(raw, dict) else None
        if not isinstance(payload, str) or raw.get("v") != 1 or raw.get("s") != _digest(payload):
            raise InvalidToken("the continuation token was altered")
        data = json.loads(payload)
        if not isinstance(data, dict) or data.get("f") != _digest(json.dumps(filters, sort_keys=True)):
            raise InvalidToken("the continuation token belongs to another query")
        partition, row = data.get("p"), data.get("r")
    except InvalidToken:
        raise
    except (ValueError, TypeError, RecursionError):  # not base64, not JSON, not UTF-8
        raise InvalidToken("the continuation token is not one this app issued") from None
    if not (isinstance(partition, str) and isinstance(row, str) and PARTITION.fullmatch(partition)
            and ROW.fullmatch(row)):
        raise InvalidToken("the continuation token is not one this app issued")
    return partition, row


def page_filters(start: datetime, end: datetime, requested_by: str | None, size: str | None,
                 statuses: set[str] | None, order: HistoryOrder = "oldest") -> dict[str, Any]:
    """What a token is bound to: the query that issued it, its order included. The oldest-first order is named
    only by its absence, so that the tokens issued before there was a choice still go on."""
    return {"requestedBy": requested_by, "size": size, "status": sorted(statuses) if statuses else None,
            "from": start.isoformat(), "to": end.isoformat(), **({"order": order} if order != "oldest" else {})}


def page_ranges(start: datetime, end: datetime, after: tuple[str, str] | None) -> list[tuple[str, str]]:
    """The (partition, lowest row, exclusive) to read, in order, for records created in [start, end) after the
    position a token names."""
    ranges = []
    for partition in months_between(start, end):
        if after is not None and partition < after[0]:
            continue
        ranges.append((partition, after[1] if after is not None and partition == after[0] else row_for(start, "")))
    return ranges


def newest_ranges(start: datetime, end: datetime, before: tuple[str, str] | None) -> list[tuple[str, str]]:
    """Newest first: the (partition, highest row, exclusive) to read, newest month first, for records created in
    [start, end) before the position a token names (the last, oldest, record of the page before)."""
    ranges = []
    for partition in reversed(months_between(start, end)):
        if before is not None and partition > before[0]:
            continue
        ranges.append((partition, before[1] if before is not None and partition == before[0] else row_for(end, "")))
    return ranges


async def take_newest_page(newest: Callable[[str, str, int], Awaitable[list[SessionRecord]]],
                           ranges: list[tuple[str, str]], top: int, filters: dict[str, Any],
                           ) -> tuple[list[SessionRecord], str | None]:
    """The ``top`` newest records of ``ranges`` (newest month first), and a token to go on with (to older ones)
    when there are more. ``newest(partition, high, count)`` gives the last ``count`` records of a partition below
    ``high``, newest first: Table Storage reads only in ascending order, so it reads the range and keeps a bounded
    tail; one record more than the page proves there is more."""
    out: list[SessionRecord] = []
    for partition, high in ranges:
        out += await newest(partition, high, top + 1 - len(out))
        if len(out) > top:
            last = out[top - 1]
            return out[:top], encode_token(partition_of(last), row_of(last), filters)
    return out, None


async def take_page(records: AsyncIterator[SessionRecord], top: int, filters: dict[str, Any],
                    ) -> tuple[list[SessionRecord], str | None]:
    """The first ``top`` records, and a token to go on with when there are more."""
    out: list[SessionRecord] = []
    async with aclosing(records) as stream:  # type: ignore[type-var]
        async for record in stream:
            out.append(record)
            if len(out) == top + 1:
                last = out[top - 1]
                return out[:top], encode_token(partition_of(last), row_of(last), filters)
    return out, None
