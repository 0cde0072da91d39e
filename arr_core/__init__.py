"""arr_core: everything arr-sessions knows about Azure Remote Rendering, with no Azure Functions in it.

The client (:class:`ArrClient`) talks to the ARR Session Management REST API; the rest of the package keeps the
session history and decides what to stop.
"""

from __future__ import annotations

from .auth import AccountKeyCredential, StaticAccessToken, StsTokenCache, TokenCredential, jwt_expiry
from .client import API_VERSION, ArrClient
from .errors import (
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
from .models import ArrErrorDetail, RenderingSession, SessionSize, SessionStatus
from .retries import RetryPolicy, parse_retry_after

__all__ = [
    "API_VERSION",
    "AccountKeyCredential",
    "ArrClient",
    "ArrError",
    "ArrErrorDetail",
    "AuthenticationError",
    "ConflictError",
    "InvalidRequestError",
    "NotFoundError",
    "RenderingSession",
    "RetryPolicy",
    "ServiceError",
    "ServiceTimeoutError",
    "SessionSize",
    "SessionStatus",
    "StaticAccessToken",
    "StsTokenCache",
    "ThrottledError",
    "TokenCredential",
    "TransportError",
    "jwt_expiry",
    "parse_retry_after",
]
