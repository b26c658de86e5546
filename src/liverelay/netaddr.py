"""Network addresses: the one HOST:PORT parser and the one formatter back to HOST:PORT."""

from __future__ import annotations


def parse_hostport(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """'HOST:PORT', ':PORT' or '[v6]:PORT' -> (host, port); ValueError says what is wrong."""
    host, sep, port = value.rpartition(":")
    if not sep:
        raise ValueError(f"{value!r} must be HOST:PORT")
    if host.startswith("[") != host.endswith("]") or (":" in host and not host.startswith("[")):
        raise ValueError(f"{value!r}: write an IPv6 host in brackets, [::1]:PORT")
    host = host.strip("[]") or default_host
    try:
        port_no = int(port)
    except ValueError:
        raise ValueError(f"{value!r} has a bad port {port!r}") from None
    if not 0 <= port_no <= 65535:
        raise ValueError(f"{value!r} has a port out of range 0..65535")
    return host, port_no


def format_hostport(host: str, port: int) -> str:
    """(host, port) -> 'HOST:PORT', an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
