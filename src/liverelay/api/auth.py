"""Gateway authentication: verify a SignerV4 HMAC-SHA256 request (spec B.2)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

from ..store import AccessKey
from . import errors
from .signing import AuthorizationFormatError, parse_authorization, parse_x_date, sha256_hex, verify_signature

KeyLookup = Callable[[str], Awaitable[AccessKey | None]]


async def authenticate(
    *,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    lookup_key: KeyLookup,
    region: str,
    service: str,
    max_skew_s: float,
    now: datetime | None = None,
) -> str:
    """Return the access key that signed the request, or raise the gateway ApiError.

    `headers` is case-insensitive (aiohttp's CIMultiDict) or has lower-case keys.
    """
    authorization = headers.get("Authorization") or headers.get("authorization")
    if not authorization:
        raise errors.missing_authentication_token()
    try:
        parsed = parse_authorization(authorization)
    except AuthorizationFormatError as exc:
        if exc.part == "signature":
            raise errors.missing_signature() from None
        if exc.part == "credential":
            raise errors.invalid_credential(str(exc)) from None
        raise errors.invalid_authorization(str(exc)) from None
    for required in ("host", "x-date"):
        if required not in parsed.signed_headers:
            raise errors.invalid_authorization(f"SignedHeaders must include {required}")

    signed: dict[str, str] = {}
    for name in parsed.signed_headers:
        value = headers.get(name)
        if value is None:
            raise errors.missing_request_info(f"signed header {name}")
        signed[name] = value

    x_date = signed["x-date"]
    try:
        when = parse_x_date(x_date)
    except ValueError:
        raise errors.invalid_timestamp() from None
    if parsed.terminator != "request":
        raise errors.invalid_credential("the credential scope must end with /request")
    if parsed.service != service:
        raise errors.service_not_found(parsed.service)
    if parsed.region != region:
        raise errors.invalid_credential(f"region {parsed.region!r} is not served here")
    if parsed.short_date != x_date[:8]:
        raise errors.invalid_credential("the credential date does not match X-Date")
    current = now or datetime.now(UTC)
    if abs((current - when).total_seconds()) > max_skew_s:
        raise errors.invalid_timestamp()

    key = await lookup_key(parsed.access_key)
    if key is None or not key.enabled:
        raise errors.invalid_access_key(parsed.access_key)

    body_hash = sha256_hex(body)
    declared_hash = headers.get("X-Content-Sha256") or headers.get("x-content-sha256")
    if declared_hash is not None and not hmac.compare_digest(declared_hash.lower(), body_hash):
        raise errors.signature_does_not_match()
    ok = verify_signature(
        parsed,
        secret_key=key.sk,
        method=method,
        path=path,
        query=query,
        headers=signed,
        body=body,
        body_hash=body_hash,
    )
    if not ok:
        raise errors.signature_does_not_match()
    return key.ak
