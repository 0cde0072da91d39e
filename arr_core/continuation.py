"""Opaque continuation tokens for history pages: where to go on, bound to the query that issued them.

A token carries the last (partition, row) read and a digest of the query's filters, plus a checksum: an altered
token, or one from another query, is refused with :class:`InvalidToken` (a 400 to the caller), never a 500.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any


class InvalidToken(ValueError):
    """A continuation token that this app did not issue for this query."""


def _digest(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def encode_token(partition: str, row: str, filters: dict[str, Any]) -> str:
    payload = json.dumps({"p": partition, "r": row, "f": _digest(json.dumps(filters, sort_keys=True))},
                         separators=(",", ":"))
    raw = json.dumps({"v": 1, "d": payload, "s": _digest(payload)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, filters: dict[str, Any]) -> tuple[str, str]:
    """The (partition, row) to continue after; :class:`InvalidToken` when it was altered or is for another query."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        payload = raw["d"]
        if raw.get("v") != 1 or raw["s"] != _digest(payload):
            raise InvalidToken("the continuation token was altered")
        data = json.loads(payload)
        if data["f"] != _digest(json.dumps(filters, sort_keys=True)):
            raise InvalidToken("the continuation token belongs to another query")
        partition, row = str(data["p"]), str(data["r"])
    except InvalidToken:
        raise
    except (ValueError, KeyError, TypeError):
        raise InvalidToken("the continuation token is not one this app issued") from None
    if not partition.startswith("s-"):
        raise InvalidToken("the continuation token is not one this app issued")
    return partition, row
