"""What this node says of itself in each heartbeat (a SnapshotSource), and the one-node directory.

`NodeSnapshotSource` reads the hub and the relays when membership asks (once per
heartbeat): every stream with a source, where its media comes from, its viewers; the
relays' status rows; the node's viewers. Source kinds:

- a local publisher (hub SourceKind.PUBLISHER) -> "publish";
- a fixed relay (RELAY_FIXED) -> "fixed";
- a play-triggered pull (RELAY_PLAY) -> "peer" while its source is a cluster peer, else
  "origin" (a configured origin).

`LocalDirectory` is the NodeDirectory of a node without a cluster (SQLite): just this
node, built from a fresh snapshot, so DescribeRelayStatus and DescribeClusterNodes answer
the same way on one node and on many.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from ..hub import SourceKind, StreamKey
from ..schemas.status import RelayStatusReport
from .types import HeldSource, HeldStream, NodeRecord, NodeSnapshot

_KINDS: dict[SourceKind, HeldSource] = {
    SourceKind.PUBLISHER: "publish",
    SourceKind.RELAY_FIXED: "fixed",
    SourceKind.RELAY_PLAY: "origin",
}


class HeldView(Protocol):
    """What the snapshot reads of a hub stream (hub.Stream)."""

    @property
    def key(self) -> StreamKey: ...
    @property
    def source_kind(self) -> SourceKind | None: ...
    @property
    def viewer_count(self) -> int: ...


class HeldHub(Protocol):
    def streams(self) -> Sequence[HeldView]: ...


class RelayView(Protocol):
    """What the snapshot reads of the relays (relay.manager.RelayManager)."""

    def status(self) -> RelayStatusReport: ...


class PeerPullView(Protocol):
    """Whether a play pull's source is a cluster peer (relay.ondemand.OnDemandRelays)."""

    def from_peer(self, key: StreamKey) -> bool: ...


class NodeSnapshotSource:
    def __init__(self, hub: HeldHub, relays: RelayView, play_pulls: PeerPullView) -> None:
        self.hub = hub
        self.relays = relays
        self.play_pulls = play_pulls

    def held(self) -> list[HeldStream]:
        held: list[HeldStream] = []
        for stream in self.hub.streams():
            kind = stream.source_kind
            if kind is None:
                continue
            source = _KINDS[kind]
            if kind is SourceKind.RELAY_PLAY and self.play_pulls.from_peer(stream.key):
                source = "peer"
            key = stream.key
            held.append(HeldStream(key.vhost, key.app, key.name, source, stream.viewer_count))
        return held

    def snapshot(self) -> NodeSnapshot:
        viewers = sum(max(0, s.viewer_count) for s in self.hub.streams())
        return NodeSnapshot(streams=self.held(), status=self.relays.status().rows, viewers=viewers)


class LocalDirectory:
    """The NodeDirectory of a node that is not in a cluster: itself, live."""

    def __init__(self, node_id: str, source: NodeSnapshotSource) -> None:
        self._node_id = node_id
        self.source = source
        self.started_at = int(time.time() * 1000)
        # Filled by the node once its listeners are bound.
        self.api_url = ""
        self.rtmp_url = ""
        self.http_url = ""

    @property
    def node_id(self) -> str:
        return self._node_id

    def nodes(self) -> list[NodeRecord]:
        snap = self.source.snapshot()
        now = int(time.time() * 1000)
        return [
            NodeRecord(
                node_id=self._node_id,
                api_url=self.api_url,
                rtmp_url=self.rtmp_url,
                http_url=self.http_url,
                started_at=self.started_at,
                heartbeat_at=now,
                draining=False,
                streams=snap.streams,
                status=snap.status,
                stats={"viewers": snap.viewers},
                alive=True,
            )
        ]
