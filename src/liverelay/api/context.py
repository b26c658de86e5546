"""What an action handler gets: the store, the settings and (optionally) the relay manager."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..cluster.types import NodeDirectory
from ..config import Settings
from ..store import Store
from ..streamctl import StreamControl
from .protocols import ClusterControl, RelayStatusSource


@dataclass(frozen=True, slots=True)
class ActionContext:
    settings: Settings
    store: Store
    # None: a node without relays (the API alone, in tests): DescribeRelayStatus lists nothing.
    relays: RelayStatusSource | None = None
    streams: StreamControl | None = None  # the stream actions' view of the hub (None: they answer 503)
    cluster: ClusterControl | None = None  # DrainNode (None: SQLite, not in a cluster)
    # The cluster's nodes (cluster/; one node: a LocalDirectory). None: this node's rows only, no NodeId.
    directory: NodeDirectory | None = None


# An action's result object (a TypedDict of liverelay.schemas), or None for "no Result".
Result = Mapping[str, object] | None
ActionHandler = Callable[[ActionContext, dict[str, Any]], Awaitable[Result]]
