"""liverelay's client SDK: the official LiveService's calls, with typed errors and retries.

from liverelay.sdk import LiveService
service = LiveService("127.0.0.1:8180", ak, sk, scheme="http")
service.describe_relay_source_v3({"Vhost": "push.example.com"})
"""

from ._base import API_VERSION, RetryPolicy, is_idempotent
from .actions import ACTIONS, Action, ActionMethods
from .aio import AsyncLiveService
from .client import LiveService
from .errors import (
    AuthError,
    ForbiddenError,
    InvalidParamError,
    LiveAPIError,
    LiveConnectionError,
    LiveError,
    NotFoundError,
    ServerError,
    ThrottledError,
    error_from_response,
)

__all__ = [
    "ACTIONS",
    "API_VERSION",
    "Action",
    "ActionMethods",
    "AsyncLiveService",
    "AuthError",
    "ForbiddenError",
    "InvalidParamError",
    "LiveAPIError",
    "LiveConnectionError",
    "LiveError",
    "LiveService",
    "NotFoundError",
    "RetryPolicy",
    "ServerError",
    "ThrottledError",
    "error_from_response",
    "is_idempotent",
]
