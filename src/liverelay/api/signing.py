"""HMAC-SHA256 request signing as Volcengine's SignerV4 computes it.

One implementation serves the server (verify) and our SDK (sign). See
shared spec section B. The canonical request is built from the *raw* body bytes:
re-serialising JSON would change the hash.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

ALGORITHM = "HMAC-SHA256"
DEFAULT_REGION = "cn-north-1"
DEFAULT_SERVICE = "live"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def format_x_date(when: datetime | None = None) -> str:
    when = when or datetime.now(UTC)
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


_X_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z")
# RFC 3986 unreserved characters: a value made of these alone is its own encoding.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def parse_x_date(value: str) -> datetime:
    """'20240508T120000Z' -> aware datetime; ValueError when it is not a valid time."""
    match = _X_DATE.fullmatch(value)
    if match is None:
        # strptime accepts a few looser shapes (one-digit fields): keep its verdict on them.
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    year, month, day, hour, minute, second = map(int, match.groups())
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)  # checks the ranges


def _quote(value: str) -> str:
    # Only RFC 3986 unreserved characters stay as they are (space -> %20, / -> %2F).
    if _UNRESERVED.fullmatch(value):
        return value  # the common case, without quote()'s encode and per-byte table walk
    return quote(value, safe="-_.~")


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """Sorted by key (byte order), list values keep their order (stable sort)."""
    pairs = sorted(((k, v) for k, v in params), key=lambda kv: kv[0].encode("utf-8"))
    return "&".join(f"{_quote(k)}={_quote(v)}" for k, v in pairs)


def signing_host(host: str) -> str:
    """The SDK drops a default port from Host when signing, and only then."""
    for suffix in (":80", ":443"):
        if host.endswith(suffix):
            return host[: -len(suffix)]
    return host


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: list[str],
    body_hash: str,
) -> str:
    """`headers` maps lower-case names to values; `signed_headers` is sorted, lower-case."""
    lines = []
    for name in signed_headers:
        value = headers.get(name, "")
        if name == "host":
            value = signing_host(value)
        lines.append(f"{name}:{value}\n")
    return "\n".join(
        [
            method.upper(),
            "/" if path in ("", "/") else quote(path, safe="/"),
            canonical_query(query),
            "".join(lines),
            ";".join(signed_headers),
            body_hash,
        ]
    )


@functools.lru_cache(maxsize=256)
def signing_key(secret_key: str, short_date: str, region: str, service: str) -> bytes:
    """Four chained HMACs, the same all day for a key: derived once per (key, day, scope)."""
    k_date = _hmac(secret_key.encode("utf-8"), short_date)
    k_region = _hmac(k_date, region)
    k_service = _hmac(k_region, service)
    return _hmac(k_service, "request")


def string_to_sign(x_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, x_date, scope, sha256_hex(canonical.encode("utf-8"))])


def compute_signature(
    secret_key: str,
    x_date: str,
    region: str,
    service: str,
    canonical: str,
) -> str:
    scope = f"{x_date[:8]}/{region}/{service}/request"
    key = signing_key(secret_key, x_date[:8], region, service)
    return hmac.new(key, string_to_sign(x_date, scope, canonical).encode("utf-8"), hashlib.sha256).hexdigest()


def _is_signed_header(name: str) -> bool:
    lower = name.lower()
    return lower in ("content-type", "content-md5", "host") or lower.startswith("x-")


def sign_request(
    *,
    method: str,
    host: str,
    path: str,
    query: list[tuple[str, str]],
    body: bytes,
    access_key: str,
    secret_key: str,
    region: str = DEFAULT_REGION,
    service: str = DEFAULT_SERVICE,
    content_type: str = "application/json",
    session_token: str | None = None,
    when: datetime | None = None,
) -> dict[str, str]:
    """Return the headers to send (Host, Content-Type, X-Date, X-Content-Sha256, Authorization...)."""
    x_date = format_x_date(when)
    body_hash = sha256_hex(body)
    headers = {
        "Host": host,
        "Content-Type": content_type,
        "X-Date": x_date,
        "X-Content-Sha256": body_hash,
    }
    if session_token:
        headers["X-Security-Token"] = session_token
    lower = {k.lower(): v for k, v in headers.items() if _is_signed_header(k)}
    signed = sorted(lower)
    canonical = canonical_request(method, path, query, lower, signed, body_hash)
    signature = compute_signature(secret_key, x_date, region, service, canonical)
    scope = f"{x_date[:8]}/{region}/{service}/request"
    headers["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, "
        f"SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return headers


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    access_key: str
    short_date: str
    region: str
    service: str
    terminator: str
    signed_headers: list[str]
    signature: str


class AuthorizationFormatError(ValueError):
    """The Authorization header cannot be parsed; `part` says which piece is off."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(message)
        self.part = part


def parse_authorization(value: str) -> ParsedAuthorization:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise AuthorizationFormatError("algorithm", f"unsupported algorithm {algorithm!r}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if sep:
            fields[key.strip()] = val.strip()
    if "Signature" not in fields:
        raise AuthorizationFormatError("signature", "missing Signature")
    credential = fields.get("Credential", "")
    pieces = credential.split("/")
    if len(pieces) != 5 or not all(pieces):
        raise AuthorizationFormatError("credential", "malformed Credential")
    signed = [h.strip().lower() for h in fields.get("SignedHeaders", "").split(";") if h.strip()]
    if not signed:
        raise AuthorizationFormatError("signedheaders", "missing SignedHeaders")
    return ParsedAuthorization(
        access_key=pieces[0],
        short_date=pieces[1],
        region=pieces[2],
        service=pieces[3],
        terminator=pieces[4],
        signed_headers=signed,
        signature=fields["Signature"],
    )


def verify_signature(
    parsed: ParsedAuthorization,
    *,
    secret_key: str,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    body_hash: str | None = None,
) -> bool:
    """Recompute the signature over what was received. `headers` keys are lower-case;
    `body_hash` is sha256_hex(body) when the caller has it already."""
    x_date = headers.get("x-date", "")
    if body_hash is None:
        body_hash = sha256_hex(body)
    canonical = canonical_request(method, path, query, headers, parsed.signed_headers, body_hash)
    expected = compute_signature(secret_key, x_date, parsed.region, parsed.service, canonical)
    return hmac.compare_digest(expected, parsed.signature.lower())
