"""`liverelay cluster status`: the cluster's nodes (DescribeClusterNodes)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from .app import cli
from .client import ApiContext, api_command
from .output import age, out, print_json, table

NODE_COLUMNS = (
    "Node",
    "API",
    "Media (RTMP / HTTP)",
    "Up since",
    "Heartbeat",
    "State",
    "Streams",
    "Viewers",
    "Fixed relays",
)


def node_state(item: Mapping[str, Any]) -> str:
    if not item.get("Alive"):
        return "dead"
    return "draining" if item.get("Draining") else "alive"


def node_cells(item: Mapping[str, Any], own: str) -> list[str]:
    node_id = str(item.get("NodeId", ""))
    return [
        f"{node_id} *" if node_id == own else node_id,
        str(item.get("ApiUrl", "")),
        f"{item.get('RtmpUrl', '')}\n{item.get('HttpUrl', '')}",
        str(item.get("StartedAt", "")),
        f"{age(item.get('HeartbeatAt', ''))} ago",
        node_state(item),
        str(item.get("Streams", 0)),
        str(item.get("Viewers", 0)),
        str(item.get("FixedRelays", 0)),
    ]


def nodes_table(response: Mapping[str, Any]) -> Table:
    result = response.get("Result") or {}
    items = result.get("NodeList", [])
    own = str(result.get("NodeId", ""))
    alive = sum(1 for item in items if item.get("Alive"))
    title = (
        f"nodes ({alive} alive of {len(items)}) at {datetime.now(UTC).strftime('%H:%M:%S')} UTC; * = answered"
    )
    return table(title, list(NODE_COLUMNS), [node_cells(item, own) for item in items])


@cli.group()
def cluster() -> None:
    """The nodes of the cluster (one node without a cluster database)."""


@cluster.command("status")
@api_command
def cluster_status(api: ApiContext) -> None:
    """Nodes: id, addresses, up since, last heartbeat, state, streams, viewers, fixed relays."""
    response = api.call("describe_cluster_nodes")
    if api.as_json:
        print_json(response)
    else:
        out.print(nodes_table(response))
