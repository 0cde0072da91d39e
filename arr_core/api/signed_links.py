"""Signed links: a URL that lets whoever holds it do one thing to one session, without a function key.

Logic Apps and Power Automate poll the ``Location`` of a 202 exactly as given, with no key of their own. A function
key in that URL would hand the caller's key to every log and proxy that sees it, and to whatever the link points
at; so the app signs the one read a poller needs instead: ``signed/sessions/{id}/ready``, good for
:data:`LINK_SECONDS`, with a key only the app knows (``ARR_LINK_SIGNING_KEY``; several keys for rotation: the
first signs, any verifies). A signature grants nothing else: not the session's stop, nor another session.

A stop warning carries two more (:mod:`arr_core.domain.warnings`), good until the stop they warn of: postpone
(``signed/sessions/{id}/postpone/{lease}``: the lease becomes that total) and keep tonight
(``signed/sessions/{id}/keep-tonight/{night}``: an override for that night). What they do is in the signed path,
so each acts once by itself: a second use finds the lease already there, or the night's override already made.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from datetime import date, datetime

from ..errors import LinkRefused

LINK_SECONDS = 24 * 3600  # a start is Ready in minutes; a day covers any poller's patience and a slow start
MIN_KEY_CHARS = 32  # 32 characters of a generated key: at least 190 bits


def signed_path(session_id: str) -> str:
    """The path, under ``/api/``, of a session's signed ready link."""
    return f"signed/sessions/{session_id}/ready"


def postpone_path(session_id: str, lease_minutes: int) -> str:
    return f"signed/sessions/{session_id}/postpone/{lease_minutes}"


def keep_tonight_path(session_id: str, night: date) -> str:
    return f"signed/sessions/{session_id}/keep-tonight/{night.isoformat()}"


def _mac(key: str, path: str, expires: int) -> str:
    digest = hmac.new(key.encode(), f"GET\n/api/{path}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(keys: Sequence[str], path: str, now: datetime, until: datetime | None = None) -> dict[str, str]:
    """The query parameters that make ``path`` a signed link until ``until`` (at most, and by default, ``now``
    plus :data:`LINK_SECONDS`)."""
    expires = int(now.timestamp()) + LINK_SECONDS
    if until is not None:
        expires = min(expires, int(until.timestamp()))
    return {"expires": str(expires), "signature": _mac(keys[0], path, expires)}


def check(keys: Sequence[str], path: str, expires: str | None, signature: str | None, now: datetime) -> None:
    """Pass a link signed by one of ``keys`` for ``path`` that has not expired; raise :class:`LinkRefused` else.
    Every refusal says the same, so that a guesser learns nothing from it."""
    refused = LinkRefused("this link is not valid: it was not signed by this app, was changed, or has expired; "
                          "start polling again from the Location of a new request")
    if not keys or not expires or not signature or not expires.isdigit() or len(expires) > 12:
        raise refused
    at = int(expires)
    if at < now.timestamp() or at > now.timestamp() + LINK_SECONDS + 60:
        raise refused
    if not any(hmac.compare_digest(_mac(key, path, at), signature) for key in keys):
        raise refused
