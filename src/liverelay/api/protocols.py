"""What the admin API needs from the rest of the node besides the store and settings."""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

from ..schemas.status import RelayStatusReport


class RelayEventLog(Protocol):
    """relay.events.RelayEvents as DescribeRelayEvents sees it: the last events, newest last."""

    @property
    def recent(self) -> deque[dict[str, Any]]: ...


class DrainState(Protocol):
    """What DrainNode reports (cluster.leases.DrainStatus)."""

    node_id: str
    draining: bool
    owned: int
    handing_off: int
    targets: int


class ClusterControl(Protocol):
    """The cluster side of a node as DrainNode sees it (cluster.leases.LeaseManager)."""

    async def drain(self, draining: bool = True) -> DrainState: ...


class RelayStatusSource(Protocol):
    """The relays as DescribeRelayStatus and DescribeRelayEvents see them (relay.manager.RelayManager)."""

    @property
    def events(self) -> RelayEventLog: ...

    def status(self) -> RelayStatusReport: ...
