"""Who may call a hook: the URL secret, Standard Webhooks and GitHub signatures, checked on the raw bytes.

Standard Webhooks deliveries are signed here by the reference library (``standardwebhooks``), not by our own code,
so that the verifier is checked against an independent signer; both providers' published vectors are checked too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from arr_core.domain.hooks.signatures import (
    check_github,
    check_standard_webhook,
    check_url_secret,
    standard_webhook_key,
)
from arr_core.errors import Refused, Unauthenticated

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "webhooks"
BODY = (REFERENCE / "standard-webhooks-contact-created.json").read_bytes()
NOW = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)
OLD = "whsec_" + base64.b64encode(b"the-old-secret-24-bytes!").decode()
NEW = "whsec_" + base64.b64encode(bytes(range(32))).decode()
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


def signed(secret: str = NEW, *, at: datetime = NOW, body: bytes = BODY, webhook_id: str = MSG_ID) -> dict[str, str]:
    """The three headers of a delivery, as the reference library signs it."""
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(webhook_id, at, body)}


# -- the URL secret (Event Grid, action groups) ------------------------------------------------------------------

@pytest.mark.parametrize("given", ["s3cret-old", "s3cret-new"])
def test_a_url_secret_passes_during_a_rotation_old_and_new(given: str) -> None:
    assert check_url_secret(["s3cret-old", "s3cret-new"], given) is None


@pytest.mark.parametrize(("given", "says"), [(None, "missing"), ("", "missing"), ("s3cret-ol", "not one"),
                                             ("s3cret-old ", "not one"), ("S3CRET-OLD", "not one"),
                                             ("sécret", "not one")])
def test_a_wrong_or_missing_url_secret_is_refused_without_echoing_anything(given: str | None, says: str) -> None:
    with pytest.raises(Unauthenticated, match=says) as refused:
        check_url_secret(["s3cret-old", "s3cret-new"], given)
    assert isinstance(refused.value, Refused)
    assert "s3cret" not in str(refused.value).lower() and (not given or given not in str(refused.value))


@pytest.mark.parametrize("secrets", [[], [""]])
def test_a_hook_without_a_secret_refuses_everyone_even_an_empty_one(secrets: list[str]) -> None:
    with pytest.raises(Unauthenticated, match="no secret is configured"):
        check_url_secret(secrets, "")


# -- Standard Webhooks -------------------------------------------------------------------------------------------

def test_the_published_standard_webhooks_vector_passes() -> None:
    headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
               "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    at = datetime.fromtimestamp(1614265330, UTC)
    assert check_standard_webhook(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], headers, b'{"test": 2432232314}',
                                  at) == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    with pytest.raises(Unauthenticated):
        check_standard_webhook(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], headers, b'{"test": 2432232315}', at)


def test_a_delivery_signed_by_the_reference_library_passes_and_yields_its_id() -> None:
    assert check_standard_webhook([NEW], signed(), BODY, NOW) == MSG_ID
    assert check_standard_webhook([NEW.removeprefix("whsec_")], signed(), BODY, NOW) == MSG_ID  # raw base64


def test_a_rotation_passes_with_either_secret_on_either_side() -> None:
    """The receiver accepts old and new; the sender may sign with both (space-separated)."""
    assert check_standard_webhook([OLD, NEW], signed(OLD), BODY, NOW) == MSG_ID
    both = signed(NEW) | {"webhook-signature": f"{signed(OLD)['webhook-signature']} {signed(NEW)['webhook-signature']}"}
    assert check_standard_webhook([NEW], both, BODY, NOW) == MSG_ID
    with pytest.raises(Unauthenticated, match="no v1 signature .* matches"):
        check_standard_webhook([NEW], signed(OLD), BODY, NOW)


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp", "signature"])
def test_a_tampered_delivery_is_refused(tamper: str) -> None:
    headers, body = signed(), BODY
    if tamper == "body":
        body = BODY.replace(b"John Smith", b"John Smyth")
    elif tamper == "id":
        headers["webhook-id"] = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4X"
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(int(NOW.timestamp()) + 1)
    else:
        signature = headers["webhook-signature"]
        headers["webhook-signature"] = signature[:-3] + ("A" if signature[-3] != "A" else "B") + signature[-2:]
    with pytest.raises(Unauthenticated, match="matches") as refused:
        check_standard_webhook([NEW], headers, body, NOW)
    assert headers["webhook-signature"].removeprefix("v1,") not in str(refused.value)
    assert NEW.removeprefix("whsec_") not in str(refused.value)


@pytest.mark.parametrize(("signed_at", "says"), [(NOW - timedelta(minutes=6), "6 minutes ago"),
                                                 (NOW + timedelta(minutes=6), "6 minutes ahead"),
                                                 (NOW - timedelta(days=3), "4320 minutes ago")])
def test_a_stale_or_future_signature_is_refused_even_when_it_is_right(signed_at: datetime, says: str) -> None:
    with pytest.raises(Unauthenticated, match=says):
        check_standard_webhook([NEW], signed(at=signed_at), BODY, NOW)


@pytest.mark.parametrize("offset", [timedelta(minutes=5), timedelta(minutes=-5), timedelta(0)])
def test_the_tolerance_is_five_minutes_either_way_inclusive(offset: timedelta) -> None:
    assert check_standard_webhook([NEW], signed(at=NOW + offset), BODY, NOW) == MSG_ID


def test_the_tolerance_can_be_narrowed() -> None:
    with pytest.raises(Unauthenticated, match="ago"):
        check_standard_webhook([NEW], signed(at=NOW - timedelta(seconds=61)), BODY, NOW, timedelta(minutes=1))


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused_by_name(missing: str) -> None:
    headers = signed()
    del headers[missing]
    with pytest.raises(Unauthenticated, match=f"the {missing} header is missing") as refused:
        check_standard_webhook([NEW], headers, BODY, NOW)
    assert refused.value.field == missing


@pytest.mark.parametrize(("header", "value", "says"), [
    ("webhook-signature", "v1a,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=", "no v1 signature"),  # ed25519
    ("webhook-signature", "v2,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=", "no v1 signature"),
    ("webhook-timestamp", "1793880000.5", "whole seconds"),
    ("webhook-timestamp", "-1793880000", "whole seconds"),
    ("webhook-id", "msg.1", "must not contain '.'"),
])
def test_malformed_headers_are_refused(header: str, value: str, says: str) -> None:
    with pytest.raises(Unauthenticated, match=says):
        check_standard_webhook([NEW], signed() | {header: value}, BODY, NOW)


def test_other_signature_versions_beside_v1_are_ignored() -> None:
    headers = signed()
    headers["webhook-signature"] = f"v1a,bm90IG91cnM= {headers['webhook-signature']}"
    assert check_standard_webhook([NEW], headers, BODY, NOW) == MSG_ID


@pytest.mark.parametrize("secret", ["whsec_", "whsec_not base64!", "whsec_QUJD*"])
def test_a_malformed_standard_secret_is_a_value_error_for_the_settings(secret: str) -> None:
    with pytest.raises(ValueError, match="Standard Webhooks secret"):
        standard_webhook_key(secret)


# -- GitHub ------------------------------------------------------------------------------------------------------

GITHUB_VECTOR = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def github_headers(signature: str = GITHUB_VECTOR) -> dict[str, str]:
    return {"x-hub-signature-256": signature, "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "x-github-event": "ping"}


def test_githubs_published_test_vector_passes_and_yields_the_delivery() -> None:
    assert check_github(["It's a Secret to Everybody"], github_headers(), b"Hello, World!") == (
        "72d3162e-cc78-11e3-81ab-4c9367dc0958")


def test_a_github_rotation_passes_with_the_second_secret() -> None:
    body = (REFERENCE / "github-ping.json").read_bytes()
    signature = "sha256=" + hmac.new(b"new-secret", body, hashlib.sha256).hexdigest()
    assert check_github(["old-secret", "new-secret"], github_headers(signature), body)
    with pytest.raises(Unauthenticated, match="does not match"):
        check_github(["old-secret"], github_headers(signature), body)


@pytest.mark.parametrize(("secrets", "body", "signature", "says"), [
    (["It's a Secret to Everybody"], b"Hello, World?", GITHUB_VECTOR, "does not match"),
    (["It's a secret to everybody"], b"Hello, World!", GITHUB_VECTOR, "does not match"),
    (["It's a Secret to Everybody"], b"Hello, World!", GITHUB_VECTOR.replace("sha256=", "sha1="), "'sha256='"),
    (["It's a Secret to Everybody"], b"Hello, World!", GITHUB_VECTOR[:-1], "does not match"),
])
def test_a_wrong_github_signature_is_refused_without_echoing_it(secrets: list[str], body: bytes, signature: str,
                                                               says: str) -> None:
    with pytest.raises(Unauthenticated, match=says) as refused:
        check_github(secrets, github_headers(signature), body)
    assert "757107ea" not in str(refused.value) and "Secret" not in str(refused.value)


@pytest.mark.parametrize("missing", ["x-hub-signature-256", "x-github-delivery"])
def test_a_github_delivery_without_its_headers_is_refused(missing: str) -> None:
    headers = github_headers()
    del headers[missing]
    with pytest.raises(Unauthenticated, match=f"the {missing} header is missing"):
        check_github(["It's a Secret to Everybody"], headers, b"Hello, World!")
