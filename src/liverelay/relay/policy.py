"""Source policy for relays: the CIDR allow/deny decision and the resolve-once check.

The code lives in sources/policy.py, beside the pullers that connect to the addresses it
checked; this module is the name relay/ and the docs use (RelayManager builds one
`SourcePolicy(settings.relay)`, RelayPull calls `check_url` before each attempt).
"""

from __future__ import annotations

from ..sources.policy import (
    ALWAYS_DENIED,
    CheckedOrigin,
    IPAddress,
    IPNetwork,
    SourcePolicy,
    address_allowed,
    embedded_ipv4,
    parse_cidrs,
    pinned_addresses,
)

__all__ = [
    "ALWAYS_DENIED",
    "CheckedOrigin",
    "IPAddress",
    "IPNetwork",
    "SourcePolicy",
    "address_allowed",
    "embedded_ipv4",
    "parse_cidrs",
    "pinned_addresses",
]
