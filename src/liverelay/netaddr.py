"""Network addresses and URL schemes, once: HOST:PORT parsing and formatting, and the table
of the URL schemes the node pulls from with their default ports."""

from __future__ import annotations

# Every URL scheme an origin may use, with the port it means when the URL gives none
# (None: the URL must give one). The API's V4 validation, the source dispatcher and the
# pullers all read this table.
ORIGIN_SCHEMES: dict[str, int | None] = {"rtmp": 1935, "rtmps": 443, "http": 80, "https": 443, "srt": None}
# A V3 server's RelaySourceProtocol -> the URL scheme it is pulled with.
V3_PROTOCOL_SCHEMES: dict[str, str] = {"rtmp": "rtmp", "flv": "http"}


def split_hostport(value: str) -> tuple[str, str | None]:
    """'host', 'host:port', '[v6]' or '[v6]:port' -> (host without brackets, port text or None).

    ValueError (the text says why, without the value) for a bare IPv6 address, which is
    ambiguous, or a malformed bracket. The port is not checked: see parse_port.
    """
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ValueError("is not host[:port]")
        host, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError("is not host[:port]")
        return host, rest[1:] if rest else None
    if value.count(":") > 1:
        raise ValueError("write an IPv6 address as [addr] or [addr]:port")
    host, sep, port = value.partition(":")
    return host, port if sep else None


def parse_port(text: str, *, allow_zero: bool = False) -> int:
    """Port text -> int in 1..65535 (0 too with allow_zero: 'any free port' for a listener)."""
    if not (text.isascii() and text.isdigit()) or not (0 if allow_zero else 1) <= int(text) <= 65535:
        raise ValueError(f"has a bad port {text!r}")
    return int(text)


def parse_hostport(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """A listen address 'HOST:PORT', ':PORT' or '[v6]:PORT' -> (host, port); ValueError says why."""
    try:
        host, port = split_hostport(value)
    except ValueError as exc:
        raise ValueError(f"{value!r}: {exc}") from None
    if port is None:
        raise ValueError(f"{value!r} must be HOST:PORT")
    try:
        return host or default_host, parse_port(port, allow_zero=True)
    except ValueError as exc:
        raise ValueError(f"{value!r}: {exc}") from None


def format_host(host: str) -> str:
    """A host as it goes before ':port' or into a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def format_hostport(host: str, port: int) -> str:
    """(host, port) -> 'HOST:PORT', an IPv6 host in brackets."""
    return f"{format_host(host)}:{port}"


def with_default_port(address: str, port: int) -> str:
    """'host' -> 'host:port'; 'host:p' and '[v6]:p' unchanged; a bare IPv6 address gets brackets."""
    address = address.strip()
    try:
        host, given = split_hostport(address)
    except ValueError:
        if address.count(":") > 1 and not address.startswith("["):  # a bare IPv6 literal
            return format_hostport(address, port)
        raise
    return address if given is not None else format_hostport(host, port)
