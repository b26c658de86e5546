"""The relay status row: one model for relay/, the DescribeRelayStatus action, the CLI and /metrics.

Wire shape (PascalCase, the DescribeRelayStatus `RelayStatusList` items) - a play-triggered
(V3) row carries exactly these keys, in this order:

    Type, Vhost, App, Stream, State, SourceUrl, SourceIndex, Attempts, LastError,
    UpSince, Bytes, Bitrate, Frames, Viewers, Switches, TaskId

and a fixed (V4) row adds Domain, StartTime, EndTime, NextStart and SrcAddrS.
`wire()` dumps only the fields the builder set (`exclude_unset`), so each kind keeps
its own key set; builders in relay/ always set every field of their kind.
DescribeRelayStatus adds `NodeId` (the node running the relay) to every row it returns
(`with_node`), on one node as in a cluster.

Also here: DescribeClusterNodes (our extension), the cluster's nodes as `cluster status`
shows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from .fields import request_adapter


class RelayType(StrEnum):
    PLAY = "play"  # V3, play-triggered
    FIXED = "fixed"  # V4, scheduled / permanent


class RelayState(StrEnum):
    """What a relay is doing; a str enum so it serialises as the strings the API always had."""

    SCHEDULED = "scheduled"  # V4: window not open yet
    STARTING = "starting"  # connecting, no media yet
    UP = "up"  # media flows
    LINGERING = "lingering"  # V3: up, no viewers, waiting out linger_s
    FAILING_OVER = "failing_over"  # lost its origin, trying the next one
    RETRYING = "retrying"  # a full round failed: backing off
    ENDED = "ended"  # stopped (V3: gone; V4: window over or deleted)


# Python name -> wire (PascalCase) name; given as an alias generator so the fields stay
# plain annotated defaults (type checkers see snake_case keyword arguments).
WIRE_NAMES: dict[str, str] = {
    "type": "Type",
    "vhost": "Vhost",
    "app": "App",
    "stream": "Stream",
    "state": "State",
    "source_url": "SourceUrl",
    "source_index": "SourceIndex",
    "attempts": "Attempts",
    "last_error": "LastError",
    "up_since": "UpSince",
    "bytes": "Bytes",
    "bitrate": "Bitrate",
    "frames": "Frames",
    "viewers": "Viewers",
    "switches": "Switches",
    "task_id": "TaskId",
    "domain": "Domain",
    "start_time": "StartTime",
    "end_time": "EndTime",
    "next_start": "NextStart",
    "src_addrs": "SrcAddrS",
    "node_id": "NodeId",
}


class RelayStatusRow(BaseModel):
    """One DescribeRelayStatus row. Python names snake_case, wire names PascalCase aliases."""

    # Extra keys pass through unchanged (a part may add a field before the model names it).
    model_config = ConfigDict(alias_generator=WIRE_NAMES.__getitem__, populate_by_name=True, extra="allow")

    type: RelayType = RelayType.PLAY
    vhost: str = ""
    app: str = ""
    stream: str = ""
    state: RelayState = RelayState.STARTING
    source_url: str = ""  # redacted (sources.base.redact_url)
    source_index: int | None = None
    attempts: int = 0
    last_error: str | None = None  # redacted
    up_since: str | None = None  # RFC 3339 UTC, None when not up
    bytes: int = 0
    bitrate: int = 0  # bits per second, sampled about once a second
    frames: int = 0
    viewers: int = 0
    switches: int = 0
    task_id: str | None = None  # V4 only (None on V3 rows)
    # V4 only: the task's domain, window (Unix seconds), next start and (redacted) sources.
    domain: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    next_start: int | None = None
    src_addrs: list[str] | None = None
    node_id: str | None = None  # the node running the relay (set by DescribeRelayStatus)

    def wire(self) -> dict[str, Any]:
        """The row as the API sends it: PascalCase keys, the fields its builder set (enums are str)."""
        return self.model_dump(by_alias=True, exclude_unset=True)

    def with_node(self, node_id: str) -> RelayStatusRow:
        """A copy naming the node that runs the relay (`NodeId` on the wire)."""
        return self.model_copy(update={"node_id": node_id})  # marks it set: wire() shows it


class RelayStatusReport(BaseModel):
    """What RelayManager.status() returns: the rows, and why some are missing.

    `error` is set when a part of the relays (today: the fixed relays) could not report:
    the rows of the other parts are still returned, and DescribeRelayStatus adds
    `"Error": "<text>"` next to `RelayStatusList` so a partial answer is visible.
    """

    rows: list[RelayStatusRow] = Field(default_factory=list)
    error: str | None = None

    def wire(self) -> dict[str, Any]:
        result: dict[str, Any] = {"RelayStatusList": [row.wire() for row in self.rows]}
        if self.error is not None:
            result["Error"] = self.error
        return result


# ---- DescribeClusterNodes (our extension) --------------------------------------------


class DescribeClusterNodesRequest(TypedDict, total=False):
    pass


class ClusterNodeItem(TypedDict):
    NodeId: str
    ApiUrl: str
    RtmpUrl: str
    HttpUrl: str
    StartedAt: str  # RFC 3339 UTC
    HeartbeatAt: str  # RFC 3339 UTC (the node's last heartbeat, on the database's clock)
    Alive: bool
    Draining: bool
    Streams: int  # streams the node holds (with a source)
    Viewers: int
    FixedRelays: int  # fixed relays (V4) the node runs
    StreamList: list[Mapping[str, object]]  # {"Vhost", "App", "Stream", "Source", "Viewers"}


class DescribeClusterNodesResult(TypedDict):
    NodeId: str  # the node that answered
    NodeList: list[ClusterNodeItem]


DESCRIBE_CLUSTER_NODES = request_adapter(DescribeClusterNodesRequest)
