"""DescribeRelayStatus (our extension): the live state of the relays of every node.

Result: `{"RelayStatusList": [row, ...]}` with rows as schemas.status.RelayStatusRow on
the wire, each with the `NodeId` of the node running it, plus `"Error": "<text>"` when
part of the relays could not report (the other rows are still listed: a partial answer,
never a silent one). This node's rows are live; in a cluster, every other live node's
rows are those of its last heartbeat (at most one heartbeat interval old); a fixed relay
whose window is not open is listed by this node only (every node keeps every schedule).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...schemas.relay_sources import DESCRIBE_RELAY_EVENTS, DESCRIBE_RELAY_STATUS
from ...schemas.status import RelayState, RelayStatusReport, RelayStatusRow, RelayType
from ..binding import bind
from ..context import ActionContext, Result
from ..protocols import RelayStatusSource

# A fixed relay in these states runs nowhere (window not open, or over).
_NOT_RUNNING = frozenset({RelayState.SCHEDULED, RelayState.ENDED})


def running_fixed(row: RelayStatusRow) -> bool:
    return row.type == RelayType.FIXED and row.state not in _NOT_RUNNING


def _peer_row(row: RelayStatusRow) -> bool:
    """Another node's row worth listing: every node keeps every fixed relay's schedule, so
    a fixed relay that runs nowhere is listed once, by this node, not once per node."""
    return row.type != RelayType.FIXED or running_fixed(row)


def _selected(
    row: RelayStatusRow, vhost: str | None, app: str | None, stream: str | None, relay_type: str | None
) -> bool:
    return (
        (not vhost or row.vhost == vhost)
        and (not app or row.app == app)
        and (not stream or row.stream == stream)
        and (not relay_type or row.type == relay_type)
    )


async def describe_relay_status(ctx: ActionContext, body: dict[str, Any]) -> Result:
    req = bind(DESCRIBE_RELAY_STATUS, body)
    vhost, app, stream = req.get("Vhost"), req.get("App"), req.get("Stream")
    relay_type = req.get("Type")
    relays: RelayStatusSource | None = ctx.relays
    if relays is None:
        return {"RelayStatusList": []}
    report = relays.status()
    rows = report.rows
    cluster = ctx.directory
    if cluster is not None:
        own = cluster.node_id
        rows = [row.with_node(own) for row in rows]
        for record in cluster.nodes():
            if record.node_id != own and record.alive:
                rows.extend(row.with_node(record.node_id) for row in record.status if _peer_row(row))
    rows = [row for row in rows if _selected(row, vhost, app, stream, relay_type)]
    return RelayStatusReport(rows=rows, error=report.error).wire()


async def describe_relay_events(ctx: ActionContext, body: dict[str, Any]) -> Result:
    """Our extension: the node's last relay events (relay_started, origin_failed, switched,
    stopped, task_*), newest first, the same bodies the webhooks get. `Limit` (default
    100) caps the answer; the node keeps the last relay.events.RECENT_EVENTS."""
    req = bind(DESCRIBE_RELAY_EVENTS, body)
    vhost, app, stream = req.get("Vhost"), req.get("App"), req.get("Stream")
    relay_type, limit = req.get("Type"), req.get("Limit", 100)
    relays: RelayStatusSource | None = ctx.relays
    events: list[Mapping[str, object]] = []
    if relays is not None:
        for event in reversed(relays.events.recent):
            if len(events) >= limit:
                break
            if (
                (not vhost or event.get("Vhost") == vhost)
                and (not app or event.get("App") == app)
                and (not stream or event.get("Stream") == stream)
                and (not relay_type or event.get("Type") == relay_type)
            ):
                events.append(event)
    return {"EventList": events}
