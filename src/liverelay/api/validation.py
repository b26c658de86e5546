"""Field readers for JSON request bodies.

Wrong JSON type -> InvalidParam.BindError (what a typed binder reports); a value of
the right type that breaks a rule -> InvalidParam; a number outside its range ->
InvalidParam.OutOfRange. JSON null counts as absent; unknown fields are ignored.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from ..netaddr import ORIGIN_SCHEMES, parse_port, split_hostport
from .errors import bind_error, invalid_param, out_of_range

APP_RE = re.compile(r"[A-Za-z0-9_.\-]{1,30}")
STREAM_RE = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
VHOST_RE = re.compile(r"[A-Za-z0-9_.\-]{1,60}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_CONTROL_RE = re.compile(r"[\x00-\x20\x7f]")

MAX_ADDRESSES = 10
MAX_FIXED_SPAN_S = 7 * 24 * 3600
V4_SCHEMES = tuple(ORIGIN_SCHEMES)
V3_PROTOCOLS = ("rtmp", "flv")
# Unix seconds that fit every client's int32/int64 and SQLite: up to year 2106.
MAX_UNIX_TIME = 2**32 - 1

Body = dict[str, Any]


def _present(body: Body, name: str) -> Any:
    return body.get(name)


def _given(body: Body, name: str, required: bool) -> Any:
    """The field's value, None when absent; an absent required field is InvalidParam."""
    value = _present(body, name)
    if value is None and required:
        raise invalid_param(f"{name} is required")
    return value


def get_str(
    body: Body,
    name: str,
    *,
    required: bool = False,
    pattern: re.Pattern[str] | None = None,
    rule: str = "",
) -> str | None:
    value = _given(body, name, required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bind_error(f"{name} must be a string")
    if value == "":
        if required:
            raise invalid_param(f"{name} is required")
        return value
    if pattern is not None and not pattern.fullmatch(value):
        raise invalid_param(f"{name} {value[:120]!r} is invalid: {rule or 'bad format'}")
    return value


def get_int(
    body: Body, name: str, *, default: int, low: int, high: int | None, required: bool = False
) -> int:
    value = _given(body, name, required)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise bind_error(f"{name} must be an integer")
    if value < low or (high is not None and value > high):
        raise out_of_range(name, low, high)
    return value


def get_unix_time(body: Body, name: str) -> int | None:
    """An integer or a string of decimal digits (the docs' examples use both); "" = absent."""
    value = _present(body, name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 12:
            raise bind_error(f"{name} must be an integer (Unix seconds)")
        value = int(text)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise bind_error(f"{name} must be an integer (Unix seconds)")
    if not 0 < value <= MAX_UNIX_TIME:
        raise invalid_param(f"{name} {value} is not a valid Unix time")
    return value


def get_list(body: Body, name: str, *, required: bool = False) -> list[Any] | None:
    value = _given(body, name, required)
    if value is None:
        return None
    if not isinstance(value, list):
        raise bind_error(f"{name} must be an array")
    return value


def get_str_list(body: Body, name: str, *, required: bool = False) -> list[str] | None:
    items = get_list(body, name, required=required)
    if items is None:
        return None
    if not all(isinstance(x, str) for x in items):
        raise bind_error(f"{name} must be an array of strings")
    return items


def get_int_list(body: Body, name: str) -> list[int] | None:
    items = get_list(body, name)
    if items is None:
        return None
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in items):
        raise bind_error(f"{name} must be an array of integers")
    return items


def as_object(value: Any, name: str) -> Body:
    if not isinstance(value, dict):
        raise bind_error(f"{name} must be an object")
    return value


def get_str_map(body: Body, name: str) -> dict[str, str]:
    value = _present(body, name)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise bind_error(f"{name} must be an object of strings")
    for key in value:
        if not key or len(key) > 256 or _CONTROL_RE.search(key):
            raise invalid_param(f"{name} has an invalid key {key[:64]!r}")
    return dict(value)


def is_valid_hostname(host: str) -> bool:
    if len(host) > 253:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(HOSTNAME_RE.fullmatch(host))


def check_host_port(value: str, name: str) -> str:
    """An origin address without scheme: 'host', 'host:port', '[v6]:port'."""
    try:
        host, port = split_hostport(value)
        if port is not None:
            parse_port(port)
    except ValueError as exc:
        raise invalid_param(f"{name} {value[:120]!r}: {exc}") from None
    if value.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise invalid_param(f"{name} {value[:120]!r} has a bad IPv6 address") from None
    elif not is_valid_hostname(host):
        raise invalid_param(f"{name} {value[:120]!r} is not a domain or IP address (no scheme, no path)")
    return value


def check_origin_url(url: str, name: str) -> str:
    """A V4 origin: rtmp, rtmps, srt, or http(s) (FLV / HLS) URL with a host."""
    if len(url) > 2048 or _CONTROL_RE.search(url):
        raise invalid_param(f"{name} {url[:120]!r} is not a valid URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise invalid_param(f"{name} {url[:120]!r} is not a valid URL") from None
    if parts.scheme.lower() not in V4_SCHEMES:
        raise invalid_param(f"{name} {url[:120]!r}: scheme must be one of {', '.join(V4_SCHEMES)}")
    host = parts.hostname or ""
    if not host or not is_valid_hostname(host):
        raise invalid_param(f"{name} {url[:120]!r} has no valid host")
    if port == 0:
        raise invalid_param(f"{name} {url[:120]!r} has a bad port")
    return url


def check_schedule(start: int | None, end: int | None) -> None:
    if (start is None) != (end is None):
        raise invalid_param("StartTime and EndTime must be given together (both absent = permanent relay)")
    if start is not None and end is not None:
        if end <= start:
            raise invalid_param("EndTime must be later than StartTime")
        if end - start > MAX_FIXED_SPAN_S:
            raise invalid_param("EndTime - StartTime must not exceed 7 days (604800 s)")
