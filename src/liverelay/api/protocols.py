"""What the admin API needs from the rest of the node besides the store and settings."""

from __future__ import annotations

from typing import Protocol

from ..schemas.status import RelayStatusReport


class RelayStatusSource(Protocol):
    """The relays as DescribeRelayStatus sees them (relay.manager.RelayManager)."""

    def status(self) -> RelayStatusReport: ...
