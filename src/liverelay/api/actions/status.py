"""DescribeRelayStatus (our extension): the live state of relays on this node.

Result: `{"RelayStatusList": [row, ...]}` with rows as schemas.status.RelayStatusRow on
the wire, plus `"Error": "<text>"` when part of the relays could not report (the other
rows are still listed: a partial answer, never a silent one).
"""

from __future__ import annotations

from typing import Any

from ...schemas.relay_sources import DESCRIBE_RELAY_STATUS
from ...schemas.status import RelayStatusReport, RelayStatusRow
from ..binding import bind
from ..context import ActionContext, Result
from ..protocols import RelayStatusSource


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
    rows = [row for row in report.rows if _selected(row, vhost, app, stream, relay_type)]
    return RelayStatusReport(rows=rows, error=report.error).wire()
