"""ARR's own argument rules, checked before a request is sent.

Pure functions: a refused argument raises :class:`~arr_core.errors.InvalidRequestError` naming it, so callers learn
what is wrong without spending a round trip (or an STS token) on it.
"""

from __future__ import annotations

import re

from ..errors import InvalidRequestError
from .models import SessionSize

SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
MAX_LEASE_MINUTES = 1440


def check_session_id(session_id: object, *, argument: str = "session_id") -> str:
    """Letters, digits, ``-`` and ``_``, 1 to 256 characters, case sensitive (ARR's rule)."""
    if not isinstance(session_id, str) or not SESSION_ID_PATTERN.fullmatch(session_id):
        msg = "must be 1-256 characters of letters, digits, '-' and '_'"
        raise InvalidRequestError(f"{argument} {msg}", argument=argument, code="InvalidArgument")
    return session_id


def check_lease_minutes(lease_minutes: object, *, argument: str = "lease_minutes") -> int:
    """A whole number of minutes from 0 to 1440."""
    if isinstance(lease_minutes, bool) or not isinstance(lease_minutes, int):
        raise InvalidRequestError(f"{argument} must be a whole number", argument=argument, code="InvalidArgument")
    if not 0 <= lease_minutes <= MAX_LEASE_MINUTES:
        msg = f"{argument} must be between 0 and {MAX_LEASE_MINUTES} minutes, not {lease_minutes}"
        raise InvalidRequestError(msg, argument=argument, code="InvalidArgument")
    return lease_minutes


def check_size(size: object, *, argument: str = "size") -> SessionSize:
    """``Standard`` or ``Premium`` (any case)."""
    try:
        return SessionSize(size)
    except ValueError:
        msg = f"{argument} must be 'Standard' or 'Premium', not {size!r}"
        raise InvalidRequestError(msg, argument=argument, code="InvalidArgument") from None

