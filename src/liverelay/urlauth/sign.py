"""Signing stream URLs as the Volcengine live service documents it (docs/auth.md).

    volcTime={UnixTime}&volcSecret=md5("/{AppName}/{StreamName}{SecretKey}{volcTime}")

volcTime is the URL's expiry (Unix seconds, decimal); volcSecret the lower-case hex MD5
of the string above. The same parameters sign an RTMP, HTTP-FLV or HLS URL of the stream
(the string holds the app and stream names, not the protocol's path suffix).

Our extension, algorithm "hmac_sha256": volcSecret = hex HMAC-SHA256 keyed with the
SecretKey over "/{AppName}/{StreamName}{volcTime}" (the key is the MAC key, not text in
the message).
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl, quote, urlencode

TIME_PARAM = "volcTime"
SECRET_PARAM = "volcSecret"
MD5 = "md5"
HMAC_SHA256 = "hmac_sha256"
ALGORITHMS = (MD5, HMAC_SHA256)
MAX_QUERY_CHARS = 4096  # a longer query is not parsed (the request is refused as unsigned)


def string_to_sign(app: str, stream: str, secret_key: str, volc_time: str) -> str:
    """The documented MD5 input: "/{AppName}/{StreamName}{SecretKey}{volcTime}"."""
    return f"/{app}/{stream}{secret_key}{volc_time}"


def url_signature(algorithm: str, app: str, stream: str, secret_key: str, volc_time: str) -> str:
    """The volcSecret value (lower-case hex) for one key."""
    if algorithm == MD5:
        return hashlib.md5(string_to_sign(app, stream, secret_key, volc_time).encode()).hexdigest()
    if algorithm == HMAC_SHA256:
        message = f"/{app}/{stream}{volc_time}".encode()
        return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()
    raise ValueError(f"unknown algorithm {algorithm!r}")


def signed_query(algorithm: str, app: str, stream: str, secret_key: str, expires: int) -> str:
    """ "volcTime=...&volcSecret=..." for a URL that expires at `expires` (Unix seconds)."""
    volc_time = str(expires)
    secret = url_signature(algorithm, app, stream, secret_key, volc_time)
    return urlencode({TIME_PARAM: volc_time, SECRET_PARAM: secret}, quote_via=quote)


def auth_params(query: str) -> tuple[str | None, str | None]:
    """(volcTime, volcSecret) of a raw query string; None where absent or given twice."""
    if len(query) > MAX_QUERY_CHARS:
        return None, None
    found: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in (TIME_PARAM, SECRET_PARAM):
            found.setdefault(name, []).append(value)
    times, secrets = found.get(TIME_PARAM, []), found.get(SECRET_PARAM, [])
    return (times[0] if len(times) == 1 else None, secrets[0] if len(secrets) == 1 else None)


def matches(expected: str, given: str) -> bool:
    """Constant-time comparison of two hex signatures (case-insensitive)."""
    return hmac.compare_digest(expected.encode(), given.lower().encode())
