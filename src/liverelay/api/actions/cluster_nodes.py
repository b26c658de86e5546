"""DescribeClusterNodes (our extension): the nodes of the cluster, as `liverelay cluster status` shows them.

Result: `{"NodeId": <the node that answered>, "NodeList": [node, ...]}`, one item per node
known to the cluster's directory (dead ones too, `Alive: false`, until their row is
removed), sorted by NodeId. Each item is what the node said of itself in its last
heartbeat (streams held and their source, viewers, fixed relays running). On a node
without a cluster (SQLite) the list is this node alone, live.
"""

from __future__ import annotations

from typing import Any

from ...cluster.types import NodeRecord
from ...schemas.status import DESCRIBE_CLUSTER_NODES, ClusterNodeItem, DescribeClusterNodesResult
from ...timefmt import utc_iso
from ..binding import bind
from ..context import ActionContext, Result
from .status import running_fixed


def node_item(record: NodeRecord) -> ClusterNodeItem:
    return {
        "NodeId": record.node_id,
        "ApiUrl": record.api_url,
        "RtmpUrl": record.rtmp_url,
        "HttpUrl": record.http_url,
        "StartedAt": utc_iso(record.started_at / 1000),
        "HeartbeatAt": utc_iso(record.heartbeat_at / 1000),
        "Alive": record.alive,
        "Draining": record.draining,
        "Streams": len(record.streams),
        "Viewers": sum(held.viewers for held in record.streams),
        "FixedRelays": sum(1 for row in record.status if running_fixed(row)),
        "StreamList": [
            {"Vhost": h.vhost, "App": h.app, "Stream": h.stream, "Source": h.source, "Viewers": h.viewers}
            for h in record.streams
        ],
    }


async def describe_cluster_nodes(ctx: ActionContext, body: dict[str, Any]) -> Result:
    bind(DESCRIBE_CLUSTER_NODES, body)
    cluster = ctx.directory
    if cluster is None:
        result: DescribeClusterNodesResult = {"NodeId": "", "NodeList": []}
        return result
    records = sorted(cluster.nodes(), key=lambda r: r.node_id)
    result = {"NodeId": cluster.node_id, "NodeList": [node_item(r) for r in records]}
    return result
