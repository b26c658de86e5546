"""DescribeRelayStatus (our extension): the live state of relays on this node."""

from __future__ import annotations

from typing import Any

from ...schemas.relay_sources import DESCRIBE_RELAY_STATUS
from ..binding import bind
from ..context import ActionContext, Result


def _field(item: dict[str, Any], name: str) -> Any:
    # RelayManager.status() items use lower-case keys; accept the API's spelling too.
    return item.get(name.lower(), item.get(name))


async def describe_relay_status(ctx: ActionContext, body: dict[str, Any]) -> Result:
    req = bind(DESCRIBE_RELAY_STATUS, body)
    filters = {"Vhost": req.get("Vhost"), "App": req.get("App"), "Stream": req.get("Stream")}
    relay_type = req.get("Type")
    if ctx.relays is None:
        return {"RelayStatusList": []}
    items = list(ctx.relays.status())
    selected = [
        item
        for item in items
        if all(not want or _field(item, name) == want for name, want in filters.items())
        and (not relay_type or _field(item, "Type") == relay_type)
    ]
    return {"RelayStatusList": selected}
