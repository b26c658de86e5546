"""DrainNode (our extension): this node hands its fixed relays to the others and takes no more.

Idempotent: each call answers how many leases the node still holds, so `liverelay node
drain` calls it until that is 0. `Cancel: true` ends the drain. A node whose store is
SQLite is not in a cluster: 400 UnsupportedOperation (nothing could take its relays).
"""

from __future__ import annotations

from typing import Any

from ...schemas.node_drain import DRAIN_NODE, DrainNodeResult
from ..binding import bind
from ..context import ActionContext
from ..errors import ApiError


async def drain_node(ctx: ActionContext, body: dict[str, Any]) -> DrainNodeResult:
    req = bind(DRAIN_NODE, body)
    cluster = ctx.cluster
    if cluster is None:
        raise ApiError(
            400,
            "UnsupportedOperation",
            "This node is not in a cluster (its database is SQLite): there is no other node to drain to.",
        )
    status = await cluster.drain(not req.get("Cancel", False))
    return {
        "NodeId": status.node_id,
        "Draining": status.draining,
        "FixedRelaysOwned": status.owned,
        "HandingOff": status.handing_off,
        "TargetNodes": status.targets,
    }
