"""Who is told what: pending changes off the record, causes, a start's callback, retries, and the URL rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from arr_core.domain.notifications import Cause, StatusChange, Subscription, callback_due, pending_change, retry_delay
from arr_core.domain.records import SessionRecord
from arr_core.errors import InvalidInput
from arr_core.outbound.url_rules import address_refusal, callback_refusal, require_callback
from arr_core.outbound.webhooks import Outcome, outcome_of
from arr_core.store.entities import subscription_from_entity, subscription_to_entity

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def record(status: str = "Ready", **fields: object) -> SessionRecord:
    return SessionRecord(session_id="s1", created_at=NOW, status=status, requested_by="ana",
                         **fields)  # type: ignore[arg-type]


def test_a_change_is_the_status_against_the_last_one_announced() -> None:
    assert pending_change(record("Requested")) is None  # the intent itself is no news
    assert pending_change(record("Ready", notified_status="Ready")) is None
    change = pending_change(record("Ready", notified_status="Starting"))
    assert change == StatusChange("s1", "Starting", "Ready", Cause.ARR, None, "ana")
    assert change.event_id == "s1.Starting.Ready"
    assert pending_change(record("Starting")).event_id == "s1.None.Starting"  # type: ignore[union-attr]


@pytest.mark.parametrize(("stopped_by", "cause"), [
    ("nightly", Cause.NIGHTLY_SHUTDOWN), ("cleanup", Cause.LEASE_CLEANUP), ("bob", Cause.CALLER), (None, Cause.CALLER)])
def test_a_stop_names_its_cause_and_actor(stopped_by: str | None, cause: Cause) -> None:
    change = pending_change(record("Stopped", notified_status="Ready", stopped_by=stopped_by, stop_reason="why"))
    assert change is not None and (change.cause, change.actor) == (cause, stopped_by)
    assert pending_change(record("Stopped", notified_status="Ready")).cause == Cause.ARR  # type: ignore[union-attr]
    assert pending_change(record("Expired", notified_status="Ready", stopped_by="bob")).cause == Cause.ARR  # type: ignore[union-attr]


def test_subscriptions_filter_on_status_session_and_caller() -> None:
    change = StatusChange("s1", "Starting", "Ready", Cause.ARR, None, "ana")
    every = Subscription("a", "https://x", NOW)
    assert every.wants(change)
    assert Subscription("b", "https://x", NOW, statuses=frozenset({"Ready"})).wants(change)
    assert not Subscription("c", "https://x", NOW, statuses=frozenset({"Stopped"})).wants(change)
    assert not Subscription("d", "https://x", NOW, session_id="s2").wants(change)
    assert not Subscription("e", "https://x", NOW, requested_by="bob").wants(change)


def test_a_start_callback_fires_on_ready_or_on_an_end_without_ready() -> None:
    with_url = record("Ready", callback_url="https://hook")
    assert callback_due(with_url, StatusChange("s1", "Starting", "Ready", Cause.ARR, None, None))
    assert not callback_due(with_url, StatusChange("s1", "Requested", "Starting", Cause.ARR, None, None))
    assert callback_due(with_url, StatusChange("s1", "Starting", "Error", Cause.ARR, None, None))
    assert not callback_due(with_url, StatusChange("s1", "Ready", "Stopped", Cause.CALLER, "bob", None))
    assert not callback_due(record("Ready"), StatusChange("s1", "Starting", "Ready", Cause.ARR, None, None))


def test_retries_back_off_then_give_up() -> None:
    delays = [retry_delay(attempt) for attempt in range(1, 10)]
    assert delays[:7] == [timedelta(seconds=s) for s in (5, 10, 20, 40, 80, 160, 300)]
    assert delays[7:] == [None, None]


@pytest.mark.parametrize(("status", "outcome"), [
    (200, Outcome.DELIVERED), (202, Outcome.DELIVERED), (204, Outcome.DELIVERED), (None, Outcome.RETRY),
    (500, Outcome.RETRY), (503, Outcome.RETRY), (429, Outcome.RETRY), (408, Outcome.RETRY), (410, Outcome.GONE),
    (400, Outcome.REFUSED), (404, Outcome.REFUSED), (301, Outcome.REFUSED)])
def test_a_receivers_answer_decides_the_outcome(status: int | None, outcome: str) -> None:
    assert outcome_of(status) == outcome


@pytest.mark.parametrize(("url", "development", "refused"), [
    ("https://prod-12.westeurope.logic.azure.com/workflows/x?sig=abc", False, None),
    ("http://example.com/hook", False, "must be https"),
    ("http://localhost:8080/hook", True, None),
    ("http://127.0.0.1:9/hook", True, None),
    ("https://localhost/hook", False, "must not be this machine"),
    ("https://127.0.0.1/hook", False, "must be a public address"),
    ("https://10.0.0.4/hook", False, "must be a public address"),
    ("https://169.254.169.254/metadata/instance", True, "must not be a link-local, metadata or non-unicast address"),
    ("https://[fe80::1]/x", True, "must not be a link-local, metadata or non-unicast address"),
    ("https://[::ffff:169.254.169.254]/x", True, "must not be a link-local, metadata or non-unicast address"),
    ("https://168.63.129.16/machine", True, "must not be a link-local, metadata or non-unicast address"),
    ("https://user:pass@example.com/hook", False, "must not carry credentials"),
    ("ftp://example.com/hook", True, "must be an absolute http(s) URL"),
    ("/relative", True, "must be an absolute http(s) URL"),
    ("https://example.com/" + "x" * 2048, False, "the URL is longer than 2048 characters"),
    # IPv6 forms that lead to an IPv4 address are checked as that address: 6to4, NAT64, IPv4-compatible, Teredo.
    ("https://[2002:a9fe:a9fe::]/x", True, "must not be a link-local, metadata or non-unicast address"),
    ("https://[64:ff9b::a9fe:a9fe]/x", True, "must not be a link-local, metadata or non-unicast address"),
    ("https://[::169.254.169.254]/x", True, "must not be a link-local, metadata or non-unicast address"),
    ("https://[2001:0:4136:e378:8000:63bf:56fe:5656]/x", False, "must be a public address"),
    ("https://[64:ff9b::808:808]/x", False, None),
    # In Azure only global addresses: shared (carrier NAT) space, IPv6 site-local.
    ("https://100.64.0.1/x", False, "must be a public address"),
    ("https://[fec0::1]/x", False, "must be a public address"),
    # What the delivery could not read is refused when it is given.
    ("https://example.com:abc/", False, "must be a URL that can be called (its host or port cannot be read)"),
    ("https://\u2603.example/", False, "must be a URL that can be called (its host or port cannot be read)"),
    ("http://localhost:99999/", True, "must have a port from 1 to 65535"),
    ("https://" + "a" * 64 + ".example/", False,
     "must name a host the DNS can look up (labels of 1 to 63 characters, 253 in all)"),
    ("https://a..example/", False, "must name a host the DNS can look up (labels of 1 to 63 characters, 253 in all)"),
    ("https://bücher.example/hook", False, None),
])
def test_callback_urls_the_app_will_not_call(url: str, development: bool, refused: str | None) -> None:
    assert callback_refusal(url, development=development) == refused


def test_a_refused_callback_names_its_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        require_callback("http://example.com", field="callbackUrl", development=False)
    assert caught.value.errors == [("callbackUrl", "callbackUrl must be https")]
    assert address_refusal("metadata.internal", development=False) is None  # names: checked once resolved


def test_subscriptions_round_trip_their_table_form() -> None:
    subscription = Subscription("0" * 32, "https://hook", NOW, frozenset({"Ready", "Error"}), None, "ana")
    entity = subscription_to_entity(subscription)
    assert entity == {"PartitionKey": "sub", "RowKey": "0" * 32, "Kind": "subscription", "CallbackUrl": "https://hook",
                      "CreatedAt": NOW, "Statuses": "Error,Ready", "RequestedBy": "ana"}
    assert subscription_from_entity(entity) == subscription
    bare = replace(subscription, statuses=None, requested_by=None)
    assert subscription_from_entity(subscription_to_entity(bare)) == bare
