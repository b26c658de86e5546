"""Typed errors for the SDK: one class per way a call can fail.

The official SDK returns any HTTP 200 body as a dict and raises a bare
`Exception(bytes)` for everything else. Ours turns the Volcengine error envelope
(`ResponseMetadata.Error`) into an exception whose class says what to do about it:
fix the credentials (AuthError), fix the request (InvalidParamError), wait
(ThrottledError), or try again later (ServerError, LiveConnectionError).
"""

from __future__ import annotations

import json
from typing import Any

# Gateway codes that mean "who you are / how you signed is wrong" (spec section E).
AUTH_CODES = frozenset(
    {
        "MissingAuthenticationToken",
        "MissingSignature",
        "MissingRequestInfo",
        "InvalidTimestamp",
        "InvalidAccessKey",
        "SignatureDoesNotMatch",
        "InvalidSecretToken",
        "InvalidAuthorization",
        "InvalidCredential",
    }
)
FORBIDDEN_CODES = frozenset({"LackPolicy", "AccessDenied"})
NOT_FOUND_CODES = frozenset({"InvalidActionOrVersion", "ServiceNotFound"})


class LiveError(Exception):
    """Base of every error the SDK raises."""


class LiveConnectionError(LiveError):
    """The request did not get an HTTP response: connect failure, reset, timeout."""

    def __init__(self, message: str, *, action: str = "", sent: bool = True) -> None:
        super().__init__(message)
        self.action = action
        # False when the failure happened before any byte of the request left
        # (connection refused, connect timeout): safe to retry even a Create.
        self.sent = sent


class LiveAPIError(LiveError):
    """The server answered with an error envelope (or a body that is not one)."""

    def __init__(
        self,
        code: str,
        message: str,
        request_id: str = "",
        http_status: int = 0,
        *,
        action: str = "",
        code_n: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" + (f" ({request_id})" if request_id else ""))
        self.code = code
        self.message = message
        self.request_id = request_id
        self.http_status = http_status
        self.action = action
        self.code_n = code_n
        # Seconds from a Retry-After response header, when the server sent one.
        self.retry_after = retry_after


class AuthError(LiveAPIError):
    """Credentials or signature rejected (401, and the gateway's auth codes)."""


class ForbiddenError(LiveAPIError):
    """The key may not touch that resource: unknown Vhost/Domain, missing policy (403)."""


class NotFoundError(LiveAPIError):
    """Unknown Action/Version or service (404), or a code naming something missing."""


class InvalidParamError(LiveAPIError):
    """The request body broke a rule (InvalidParam*, MissingParameter)."""


class ThrottledError(LiveAPIError):
    """Rate limit hit (429); retried automatically with backoff."""


class ServerError(LiveAPIError):
    """The server failed (5xx); retried automatically for idempotent actions."""


def error_class_for(code: str, http_status: int) -> type[LiveAPIError]:
    """Pick the exception class for an error envelope's Code and the HTTP status."""
    if http_status == 429 or code.endswith("FlowLimitExceeded"):
        return ThrottledError
    if code in AUTH_CODES or http_status == 401:
        return AuthError
    if code.startswith("InvalidParam") or code == "MissingParameter":
        return InvalidParamError
    if code in FORBIDDEN_CODES or code.startswith("RequestForbidden") or http_status == 403:
        return ForbiddenError
    if code in NOT_FOUND_CODES or "NotFound" in code or http_status == 404:
        return NotFoundError
    if http_status >= 500:
        return ServerError
    return LiveAPIError


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is not used by API gateways)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_from_response(
    http_status: int, content: bytes, *, action: str = "", retry_after: str | None = None
) -> LiveAPIError | None:
    """The error a response stands for, or None when it is a success.

    A 2xx body with `ResponseMetadata.Error` (the documented `CommonErr` case) is an
    error too: the official SDK hands it back as a success, which hides failures.
    """
    envelope: Any = None
    try:
        envelope = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
        envelope = None
    meta = envelope.get("ResponseMetadata") if isinstance(envelope, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    error = meta.get("Error")
    ok = 200 <= http_status < 300
    if ok and isinstance(envelope, dict) and not isinstance(error, dict):
        return None
    request_id = str(meta.get("RequestId") or "")
    delay = parse_retry_after(retry_after)
    if isinstance(error, dict):
        code = str(error.get("Code") or f"HTTP{http_status}")
        message = str(error.get("Message") or "")
        code_n = error.get("CodeN") if isinstance(error.get("CodeN"), int) else None
        cls = error_class_for(code, http_status)
        return cls(code, message, request_id, http_status, action=action, code_n=code_n, retry_after=delay)
    # Not an envelope: a proxy page, a truncated body, a 200 that is not a JSON object.
    snippet = content[:200].decode("utf-8", "replace").strip()
    code = f"HTTP{http_status}" if not ok else "InvalidResponse"
    message = snippet or ("empty response" if ok else f"HTTP {http_status} without an error envelope")
    cls = error_class_for(code, http_status) if not ok else LiveAPIError
    return cls(code, message, request_id, http_status, action=action, retry_after=delay)
