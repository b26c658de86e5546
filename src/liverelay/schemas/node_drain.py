"""DrainNode (our extension): move this node's fixed relays to the other nodes of its cluster."""

from __future__ import annotations

from typing_extensions import TypedDict

from .fields import request_adapter


class DrainNodeRequest(TypedDict, total=False):
    Cancel: bool  # true: stop draining (the node takes tasks again); default false = drain


class DrainNodeResult(TypedDict):
    NodeId: str
    Draining: bool
    FixedRelaysOwned: int  # leases this node still holds (0 = safe to stop)
    HandingOff: int  # of which already offered to another node (its pull starting there)
    TargetNodes: int  # live, non-draining nodes that can take them (0 = the drain cannot progress)


DRAIN_NODE = request_adapter(DrainNodeRequest)
