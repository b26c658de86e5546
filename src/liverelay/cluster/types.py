"""Shapes shared by the cluster's parts: what a node says of itself, what it reads of its peers.

A node's heartbeat writes one `nodes` row (store/schema.py) from a NodeSnapshot; every node
reads the rows back as NodeRecords. Membership owns the row; the snapshot is built from the
hub and the relays (cluster/snapshot.py); peer pulls and `cluster status` read the records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..schemas.status import RelayStatusRow

# Where a held stream's media comes from. Only "publish", "fixed" and "origin" are primary:
# peers pull from a primary holder only, never from a node that itself pulls from a peer
# (two nodes pulling the stream from each other would keep it alive with no source).
HeldSource = Literal["publish", "fixed", "origin", "peer"]
PRIMARY_SOURCES: frozenset[str] = frozenset({"publish", "fixed", "origin"})


@dataclass(frozen=True, slots=True)
class HeldStream:
    vhost: str
    app: str
    stream: str
    source: HeldSource
    viewers: int = 0

    @property
    def primary(self) -> bool:
        return self.source in PRIMARY_SOURCES


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """What a node reports in each heartbeat (built fresh every time)."""

    streams: list[HeldStream] = field(default_factory=list)
    status: list[RelayStatusRow] = field(default_factory=list)
    viewers: int = 0


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One `nodes` row as read back. Times are Unix ms on the database's clock."""

    node_id: str
    api_url: str
    rtmp_url: str  # rtmp://host:port as peers reach it
    http_url: str
    started_at: int
    heartbeat_at: int
    draining: bool
    streams: list[HeldStream]
    status: list[RelayStatusRow]
    stats: dict[str, int]
    alive: bool  # heartbeat within the liveness bound when read


class SnapshotSource(Protocol):
    """What membership calls on each heartbeat."""

    def snapshot(self) -> NodeSnapshot: ...


class NodeDirectory(Protocol):
    """What peer pulls, the status action and the lease balancer read: the cluster's nodes."""

    @property
    def node_id(self) -> str: ...

    def nodes(self) -> list[NodeRecord]:
        """Every known node as of the last heartbeat round (this one included), live or not."""
        ...
