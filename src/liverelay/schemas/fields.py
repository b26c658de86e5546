"""Field types of the API's bodies: the rules of one field each, as pydantic validators.

A validator raises one of three custom pydantic errors, named after the API error it
becomes (see `api.binding`): `bind` (InvalidParam.BindError: the JSON type is wrong),
`invalid` (InvalidParam: the value breaks a rule) and `out_of_range`
(InvalidParam.OutOfRange). Messages never start with the field's name: the binder
puts the field's location in front. Echoed values are truncated; numbers out of
range are never echoed (a 401-digit number stays out of the answer and the log).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar, cast
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, TypeAdapter
from pydantic_core import PydanticCustomError

from ..netaddr import ORIGIN_SCHEMES, parse_port, split_hostport

APP_RE = re.compile(r"[A-Za-z0-9_.\-]{1,30}")
STREAM_RE = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
VHOST_RE = re.compile(r"[A-Za-z0-9_.\-]{1,60}")
GROUP_RE = re.compile(r"[^\x00-\x1f\x7f]{1,100}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_CONTROL_RE = re.compile(r"[\x00-\x20\x7f]")

APP_RULE = "letters, digits, '_', '-', '.'; 1-30 characters"
STREAM_RULE = "letters, digits, '_', '-', '.'; 1-100 characters"
VHOST_RULE = "letters, digits, '_', '-', '.'; 1-60 characters"
GROUP_RULE = "1-100 printable characters"

MAX_ADDRESSES = 10
MAX_FIXED_SPAN_S = 7 * 24 * 3600
V4_SCHEMES = tuple(ORIGIN_SCHEMES)
V3_PROTOCOLS = ("rtmp", "flv")
# Unix seconds that fit every client's int32/int64 and SQLite: up to year 2106.
MAX_UNIX_TIME = 2**32 - 1
# ListRelaySourceV4's Page: far beyond any real list (500 per page), small enough that
# PageCur is never a huge number echoed back and the OFFSET stays a plain SQLite integer.
MAX_PAGE = 1_000_000
ECHO_CHARS = 120  # how much of a bad value an error message repeats


def error(kind: str, detail: str) -> PydanticCustomError:
    """A validation error of `kind` (bind / invalid / out_of_range); `detail` is taken
    verbatim (passed as context, so braces in user text are never formatted)."""
    return PydanticCustomError(kind, "{detail}", {"detail": detail})


def invalid(detail: str) -> PydanticCustomError:
    return error("invalid", detail)


def echo(value: str) -> str:
    return repr(value[:ECHO_CHARS])


def _pattern(regex: re.Pattern[str], rule: str) -> AfterValidator:
    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise invalid(f"{echo(value)} is invalid: {rule}")
        return value

    return AfterValidator(check)


def bounded(low: int, high: int | None) -> AfterValidator:
    """An integer in low..high (high None: no upper bound), else OutOfRange."""

    def check(value: int) -> int:
        if value < low or (high is not None and value > high):
            text = f"should be at least {low}" if high is None else f"should be between {low} and {high}"
            raise error("out_of_range", text)
        return value

    return AfterValidator(check)


def max_items(limit: int, kind: str = "invalid") -> AfterValidator:
    def check(items: list[Any]) -> list[Any]:
        if len(items) > limit:
            raise error(kind, f"holds at most {limit} entries")
        return items

    return AfterValidator(check)


def is_valid_hostname(host: str) -> bool:
    if len(host) > 253:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(HOSTNAME_RE.fullmatch(host))


def check_host_port(value: str) -> str:
    """An origin address without scheme: 'host', 'host:port', '[v6]:port' (netaddr parses it)."""
    try:
        host, port = split_hostport(value)
    except ValueError as exc:  # the text says why, without the value
        raise invalid(f"{echo(value)}: {exc}") from None
    if value.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise invalid(f"{echo(value)} has a bad IPv6 address") from None
    elif not is_valid_hostname(host):
        raise invalid(f"{echo(value)} is not a domain or IP address (no scheme, no path)")
    if port is not None:
        try:
            parse_port(port)
        except ValueError:  # its text echoes the port unclipped: ours clips the value
            raise invalid(f"{echo(value)} has a bad port") from None
    return value


def check_origin_url(url: str) -> str:
    """A V4 origin: rtmp, rtmps, srt, or http(s) (FLV / HLS) URL with a host."""
    if len(url) > 2048 or _CONTROL_RE.search(url):
        raise invalid(f"{echo(url)} is not a valid URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise invalid(f"{echo(url)} is not a valid URL") from None
    if parts.scheme.lower() not in V4_SCHEMES:
        raise invalid(f"{echo(url)}: scheme must be one of {', '.join(V4_SCHEMES)}")
    host = parts.hostname or ""
    if not host or not is_valid_hostname(host):
        raise invalid(f"{echo(url)} has no valid host")
    if port == 0:
        raise invalid(f"{echo(url)} has a bad port")
    return url


def _domain_name(value: str) -> str:
    if len(value) > 60 or not is_valid_hostname(value) or ":" in value:
        raise invalid(f"{echo(value)} is not a domain name of 1-60 characters")
    return value


def _v3_protocol(value: str) -> str:
    """Case-insensitive on the wire, stored lower-case."""
    if value.lower() not in V3_PROTOCOLS:
        raise invalid(f"must be one of {', '.join(V3_PROTOCOLS)}")
    return value.lower()


def _unix_time_text(value: object) -> object:
    """The docs' examples send times as integers and as decimal-digit strings: accept both."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 12:
            raise error("bind", "must be an integer (Unix seconds)")
        return int(text)
    return value


def _unix_time_range(value: int) -> int:
    if not 0 < value <= MAX_UNIX_TIME:
        raise invalid(f"is not a valid Unix time (1..{MAX_UNIX_TIME})")
    return value


def _param_keys(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not key or len(key) > 256 or _CONTROL_RE.search(key):
            raise invalid(f"has an invalid key {key[:64]!r}")
    return value


def drop_absent(value: object) -> object:
    """JSON null and "" count as absent for an object's own fields (then a required
    field is reported missing, an optional one takes its default)."""
    if isinstance(value, Mapping):
        return {k: v for k, v in value.items() if v is not None and v != ""}
    return value


ABSENT_AS_MISSING = BeforeValidator(drop_absent)

AppName = Annotated[str, _pattern(APP_RE, APP_RULE)]
StreamName = Annotated[str, _pattern(STREAM_RE, STREAM_RULE)]
VhostName = Annotated[str, _pattern(VHOST_RE, VHOST_RULE)]
GroupName = Annotated[str, _pattern(GROUP_RE, GROUP_RULE)]
DomainName = Annotated[str, AfterValidator(_domain_name)]
HostPort = Annotated[str, AfterValidator(check_host_port)]
OriginUrl = Annotated[str, AfterValidator(check_origin_url)]
V3Protocol = Annotated[str, AfterValidator(_v3_protocol)]
UnixTime = Annotated[int, BeforeValidator(_unix_time_text), AfterValidator(_unix_time_range)]
ParamMap = Annotated[dict[str, str], AfterValidator(_param_keys)]


T = TypeVar("T")


def request_adapter(shape: type[T], *checks: Callable[[T], T]) -> TypeAdapter[T]:
    """The validator of a request body of `shape` (a TypedDict), with whole-body `checks`
    (rules across fields) run after every field passed."""
    # Annotated built from a run-time tuple (pydantic reads it); mypy only types literal
    # forms, so the form is Any here and the cast below gives the adapter its type back.
    annotated: Any = Annotated[(shape, ABSENT_AS_MISSING, *(AfterValidator(c) for c in checks))]
    return cast(TypeAdapter[T], TypeAdapter(annotated))
