"""Who may call a hook: checked on the raw request, before its body is parsed. Stdlib only, no I/O.

Each check takes every secret currently accepted (old and new during a rotation), compares in constant time
(:func:`hmac.compare_digest`, against every secret, without stopping at the first that matches) and raises
:class:`~arr_core.errors.Unauthenticated` when the request does not prove it knows one. A message says which
header or check failed, never a secret or the signature that was given.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from ...errors import Unauthenticated

STANDARD_TOLERANCE = timedelta(minutes=5)  # Standard Webhooks' and its reference library's window, either way
STANDARD_SECRET_PREFIX = "whsec_"
GITHUB_SIGNATURE_PREFIX = "sha256="


def _matches_any(expected: Sequence[bytes], given: bytes) -> bool:
    """Compares ``given`` with every expected value, so the time taken says nothing about which one (or whether
    an early one) matched."""
    matched = False
    for candidate in expected:
        matched |= hmac.compare_digest(candidate, given)
    return matched


def _usable(secrets: Sequence[str]) -> list[str]:
    """The secrets that can be matched: an empty one must never accept an empty answer."""
    usable = [secret for secret in secrets if secret]
    if not usable:
        raise Unauthenticated("no secret is configured for this hook: every request is refused")
    return usable


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise Unauthenticated(f"the {name} header is missing", field=name)
    return value


def check_url_secret(secrets: Sequence[str], given: str | None) -> None:
    """The secret that Event Grid and Azure Monitor action groups send in the hook's URL (neither signs its
    body; action groups cannot send headers)."""
    expected = [secret.encode() for secret in _usable(secrets)]
    if not given:
        raise Unauthenticated("the hook's secret is missing from its URL")
    if not _matches_any(expected, given.encode(errors="replace")):
        raise Unauthenticated("the hook's secret in its URL is not one this app accepts")


def standard_webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: ``whsec_`` and base64, or the base64 alone. ValueError when it
    is neither (settings check their secrets with this when they load)."""
    text = secret.strip().removeprefix(STANDARD_SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:  # binascii.Error included
        msg = "a Standard Webhooks secret is 'whsec_' followed by base64"
        raise ValueError(msg) from None
    if not key:
        msg = "a Standard Webhooks secret must not be empty"
        raise ValueError(msg)
    return key


def check_standard_webhook(secrets: Sequence[str], headers: Mapping[str, str], body: bytes, now: datetime,
                           tolerance: timedelta = STANDARD_TOLERANCE) -> str:
    """Standard Webhooks 1.0: ``webhook-signature`` holds space-separated ``v1,<base64 HMAC-SHA256>`` entries
    (several during the sender's rotation; other versions such as ``v1a`` are not ours to check) over
    ``{webhook-id}.{webhook-timestamp}.{body}``, and the timestamp is within ``tolerance`` of ``now`` either way
    (a replay of an old delivery, or one signed ahead, is refused). Returns the webhook-id, which the sender keeps
    the same on every retry. ``headers`` has lower-case names; ``now`` is aware (the caller's clock)."""
    keys = [standard_webhook_key(secret) for secret in _usable(secrets)]
    webhook_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    if "." in webhook_id:  # the id and the timestamp are joined with "." in what is signed: the spec forbids it
        raise Unauthenticated("the webhook-id header must not contain '.'", field="webhook-id")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise Unauthenticated("the webhook-timestamp header is not a Unix time in whole seconds",
                              field="webhook-timestamp")
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    expected = [base64.b64encode(hmac.digest(key, signed, hashlib.sha256)) for key in keys]
    given = [entry.removeprefix("v1,").encode(errors="replace")
             for entry in signatures.split() if entry.startswith("v1,")]
    if not given:
        raise Unauthenticated("the webhook-signature header has no v1 signature", field="webhook-signature")
    matched = [_matches_any(expected, signature) for signature in given]  # every entry, not up to the first match
    if not any(matched):
        raise Unauthenticated("no v1 signature in webhook-signature matches a secret this app accepts",
                              field="webhook-signature")
    age = now.timestamp() - int(timestamp)
    if age > tolerance.total_seconds():
        raise Unauthenticated(f"the delivery was signed {age / 60:.0f} minutes ago, more than the "
                              f"{tolerance.total_seconds() / 60:.0f} allowed", field="webhook-timestamp")
    if -age > tolerance.total_seconds():
        raise Unauthenticated(f"the delivery is signed {-age / 60:.0f} minutes ahead of this app's clock, more "
                              f"than the {tolerance.total_seconds() / 60:.0f} allowed", field="webhook-timestamp")
    return webhook_id


def check_github(secrets: Sequence[str], headers: Mapping[str, str], body: bytes) -> str:
    """GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``. Returns ``X-GitHub-Delivery``
    (the same on a redelivery). ``headers`` has lower-case names."""
    keys = [secret.encode() for secret in _usable(secrets)]
    signature = _header(headers, "x-hub-signature-256")
    delivery = _header(headers, "x-github-delivery")
    if not signature.startswith(GITHUB_SIGNATURE_PREFIX):
        raise Unauthenticated("the X-Hub-Signature-256 header does not start with 'sha256='",
                              field="x-hub-signature-256")
    expected = [hmac.digest(key, body, hashlib.sha256).hex().encode() for key in keys]
    if not _matches_any(expected, signature.removeprefix(GITHUB_SIGNATURE_PREFIX).lower().encode(errors="replace")):
        raise Unauthenticated("X-Hub-Signature-256 does not match a secret this app accepts",
                              field="x-hub-signature-256")
    return delivery
