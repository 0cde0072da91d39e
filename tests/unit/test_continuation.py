"""Continuation tokens and paging: a token goes on where its page ended, only for the query that issued it, and
anything else (altered, re-signed, malformed) is an :class:`InvalidToken`, never an exception of another kind."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from arr_core.domain.records import SessionRecord
from arr_core.errors import InvalidInput, InvalidToken
from arr_core.store.continuation import (
    decode_token,
    encode_token,
    newest_ranges,
    page_filters,
    page_ranges,
    take_newest_page,
    take_page,
)
from arr_core.store.entities import partition_of, row_for, row_of

START = datetime(2026, 1, 20, tzinfo=UTC)
END = datetime(2026, 3, 5, tzinfo=UTC)
FILTERS = {"requestedBy": "flow", "size": None, "status": ["Ready"], "from": START.isoformat(), "to": END.isoformat()}
ROW = "2026-02-03T10:00:00.000000+00:00~s-7"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def signed(data: Any, *, version: Any = 1) -> str:
    """A token with a correct checksum around any payload: what someone who read this module could forge."""
    payload = json.dumps(data, separators=(",", ":"))
    raw = json.dumps({"v": version, "d": payload, "s": digest(payload)})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def position(partition: Any, row: Any, filters: dict[str, Any] = FILTERS) -> dict[str, Any]:
    return {"p": partition, "r": row, "f": digest(json.dumps(filters, sort_keys=True))}


def records(count: int) -> list[SessionRecord]:
    return [SessionRecord(session_id=f"s-{i}", created_at=START + timedelta(days=i)) for i in range(count)]


async def stream(items: list[SessionRecord], log: list[str]) -> AsyncIterator[SessionRecord]:
    try:
        for item in items:
            log.append(item.session_id)
            yield item
    finally:
        log.append("closed")


def test_a_token_returns_its_position_for_the_same_query() -> None:
    token = encode_token("s-202602", ROW, FILTERS)
    assert decode_token(token, FILTERS) == ("s-202602", ROW)
    assert decode_token(token, dict(reversed(FILTERS.items()))) == ("s-202602", ROW)  # key order is no difference
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")  # URL-safe, no '='
    assert encode_token("s-202602", ROW, FILTERS) == token  # deterministic: the same page, the same link


@pytest.mark.parametrize("other", [{**FILTERS, "size": "Premium"}, {**FILTERS, "status": None},
                                   {**FILTERS, "to": (END + timedelta(seconds=1)).isoformat()}])
def test_a_token_of_another_query_is_refused(other: dict[str, Any]) -> None:
    token = encode_token("s-202602", ROW, FILTERS)
    with pytest.raises(InvalidToken, match="belongs to another query") as caught:
        decode_token(token, other)
    assert (caught.value.code, isinstance(caught.value, InvalidInput)) == ("InvalidContinuationToken", True)


def test_an_altered_token_is_refused() -> None:
    """Any change to the payload breaks the checksum; a token of another version is refused the same way."""
    token = encode_token("s-202602", ROW, FILTERS)
    raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw["d"] = raw["d"].replace("s-7", "s-8")
    altered = base64.urlsafe_b64encode(json.dumps(raw).encode()).decode()
    with pytest.raises(InvalidToken, match="was altered"):
        decode_token(altered, FILTERS)
    with pytest.raises(InvalidToken, match="was altered"):
        decode_token(signed(position("s-202602", ROW), version=2), FILTERS)
    assert decode_token(signed(position("s-202602", ROW)), FILTERS) == ("s-202602", ROW)  # the forger's baseline


@pytest.mark.parametrize("token", [
    "", "!!!!", "not a token", base64.urlsafe_b64encode(b"\xff\xfe").decode(),  # not base64 / not UTF-8
    base64.urlsafe_b64encode(b"{not json").decode(),
    base64.urlsafe_b64encode(b"[1, 2]").decode(), base64.urlsafe_b64encode(b'"text"').decode(),  # JSON, not an object
    base64.urlsafe_b64encode(b"[" * 100_000).decode(),  # deep enough to exhaust the JSON parser's recursion
    base64.urlsafe_b64encode(json.dumps({"v": 1, "d": 5, "s": "x"}).encode()).decode(),  # payload not text
], ids=["empty", "punctuation", "spaces", "not-utf8", "not-json", "list", "string", "deep", "payload-number"])
def test_malformed_tokens_are_invalid_tokens_not_crashes(token: str) -> None:
    with pytest.raises(InvalidToken):
        decode_token(token, FILTERS)


@pytest.mark.parametrize("data", [
    position("s-2026-02", ROW), position("x-202602", ROW), position(202602, ROW), position("s-202602", 7),
    position("s-202602", ""), position("s-202602", "a" * 301), position("s-202602", "2026 ~s"),
    position("s-202602", "2026~é"), position("s-202602", "a\u0000b"),
    position(None, None),
], ids=["partition-dashes", "partition-prefix", "partition-number", "row-number", "row-empty", "row-301",
        "row-space", "row-non-ascii", "row-control", "nulls"])
def test_a_re_signed_token_with_an_impossible_position_is_refused(data: dict[str, Any]) -> None:
    """The checksum is no secret: what a token names is checked before it reaches Table Storage."""
    with pytest.raises(InvalidToken, match="not one this app issued"):
        decode_token(signed(data), FILTERS)


def test_a_re_signed_payload_that_is_not_an_object_is_another_query() -> None:
    with pytest.raises(InvalidToken, match="belongs to another query"):
        decode_token(signed(["s-202602", ROW]), FILTERS)


def test_the_longest_printable_row_is_accepted() -> None:
    row = "~" * 300
    assert decode_token(signed(position("s-202602", row)), FILTERS) == ("s-202602", row)


def test_page_filters_are_the_query_in_a_stable_form() -> None:
    """Statuses in any order (a set) bind the same token; no status and an empty set are both 'all'."""
    assert page_filters(START, END, "flow", "Premium", {"Stopped", "Ready"}) == {
        "requestedBy": "flow", "size": "Premium", "status": ["Ready", "Stopped"],
        "from": "2026-01-20T00:00:00+00:00", "to": "2026-03-05T00:00:00+00:00"}
    assert page_filters(START, END, None, None, set()) == page_filters(START, END, None, None, None)
    assert page_filters(START, END, None, None, None)["status"] is None


def test_page_ranges_read_every_month_from_the_start_or_from_the_token() -> None:
    low = row_for(START, "")
    assert low == "2026-01-20T00:00:00.000000+00:00~"
    assert page_ranges(START, END, None) == [("s-202601", low), ("s-202602", low), ("s-202603", low)]
    # After a token: earlier months are skipped, the token's month goes on after its row, later ones from the start.
    assert page_ranges(START, END, ("s-202602", ROW)) == [("s-202602", ROW), ("s-202603", low)]
    assert page_ranges(START, END, ("s-202603", "r")) == [("s-202603", "r")]
    assert page_ranges(START, END, ("s-202612", "r")) == []


def test_the_order_binds_a_token_and_oldest_first_is_named_by_its_absence() -> None:
    """Newest first is another query; oldest-first filters are what they were, so tokens issued before still go on."""
    oldest, newest = page_filters(START, END, "flow", None, None), page_filters(START, END, "flow", None, None, "newest")
    assert oldest == page_filters(START, END, "flow", None, None, "oldest") and "order" not in oldest
    assert newest == oldest | {"order": "newest"}
    with pytest.raises(InvalidToken, match="belongs to another query"):
        decode_token(encode_token("s-202602", ROW, oldest), newest)
    with pytest.raises(InvalidToken, match="belongs to another query"):
        decode_token(encode_token("s-202602", ROW, newest), oldest)


def test_newest_ranges_read_every_month_backwards_to_the_token() -> None:
    high = row_for(END, "")
    assert newest_ranges(START, END, None) == [("s-202603", high), ("s-202602", high), ("s-202601", high)]
    # Before a token: later months are skipped, the token's month goes on below its row, earlier ones to the end.
    assert newest_ranges(START, END, ("s-202602", ROW)) == [("s-202602", ROW), ("s-202601", high)]
    assert newest_ranges(START, END, ("s-202601", "r")) == [("s-202601", "r")]
    assert newest_ranges(START, END, ("s-202512", "r")) == []


async def test_take_newest_page_asks_each_month_for_what_the_page_still_needs() -> None:
    """Each month is asked for at most one record more than the page still lacks, newest month first; the token is
    the page's last (oldest) record."""
    months = {"s-202603": records(3)[2:], "s-202602": records(3)[:2][::-1], "s-202601": []}  # newest first
    asked: list[tuple[str, int]] = []

    async def newest(partition: str, high: str, count: int) -> list[SessionRecord]:
        asked.append((partition, count))
        return months[partition][:count]

    ranges = [(month, "high") for month in months]
    page, token = await take_newest_page(newest, ranges, 2, FILTERS)
    assert ([r.session_id for r in page], asked) == (["s-2", "s-1"], [("s-202603", 3), ("s-202602", 2)])
    assert token is not None and decode_token(token, FILTERS) == (partition_of(page[-1]), row_of(page[-1]))
    asked.clear()
    page, token = await take_newest_page(newest, ranges, 3, FILTERS)
    assert ([r.session_id for r in page], token, asked) == (["s-2", "s-1", "s-0"], None, [
        ("s-202603", 4), ("s-202602", 3), ("s-202601", 1)])


async def test_take_page_stops_after_one_record_more_than_the_page_and_closes_the_stream() -> None:
    """The extra record proves there is more; the token is the last record kept; the source is closed at once."""
    log: list[str] = []
    page, token = await take_page(stream(records(5), log), 2, FILTERS)
    assert [r.session_id for r in page] == ["s-0", "s-1"]
    assert log == ["s-0", "s-1", "s-2", "closed"]
    assert token is not None and decode_token(token, FILTERS) == (partition_of(page[-1]), row_of(page[-1]))


@pytest.mark.parametrize(("count", "top"), [(0, 1), (2, 3), (3, 3)])
async def test_take_page_without_more_gives_no_token(count: int, top: int) -> None:
    log: list[str] = []
    page, token = await take_page(stream(records(count), log), top, FILTERS)
    assert ([r.session_id for r in page], token) == ([f"s-{i}" for i in range(count)], None)
    assert log[-1] == "closed"
