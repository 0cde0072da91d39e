"""arr_core: everything arr-sessions knows about Azure Remote Rendering, with no Azure Functions in it.

The client (:class:`ArrClient`) talks to the ARR Session Management REST API; the rest of the package keeps the
session history and decides what to stop. Names are imported on first use, so that a function app that imports
``arr_core`` at start-up does not pay for httpx and pydantic models until it needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AccountKeyCredential": "arr.auth", "StaticAccessToken": "arr.auth", "StsTokenCache": "arr.auth",
    "TokenCredential": "arr.auth", "jwt_expiry": "arr.auth",
    "API_VERSION": "arr.client", "ArrClient": "arr.client",
    "ArrError": "errors", "AuthenticationError": "errors", "ConflictError": "errors",
    "InvalidRequestError": "errors", "NotFoundError": "errors", "ServiceError": "errors",
    "ServiceTimeoutError": "errors", "ThrottledError": "errors", "TransportError": "errors",
    "ArrErrorDetail": "arr.models", "RenderingSession": "arr.models", "SessionSize": "arr.models", "SessionStatus": "arr.models",
    "RetryPolicy": "arr.retries", "parse_retry_after": "arr.retries",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'arr_core' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # the names above, for type checkers and IDEs
    from .arr.auth import AccountKeyCredential, StaticAccessToken, StsTokenCache, TokenCredential, jwt_expiry  # noqa: F401
    from .arr.client import API_VERSION, ArrClient  # noqa: F401
    from .arr.models import ArrErrorDetail, RenderingSession, SessionSize, SessionStatus  # noqa: F401
    from .arr.retries import RetryPolicy, parse_retry_after  # noqa: F401
    from .errors import (  # noqa: F401
        ArrError,
        AuthenticationError,
        ConflictError,
        InvalidRequestError,
        NotFoundError,
        ServiceError,
        ServiceTimeoutError,
        ThrottledError,
        TransportError,
    )
