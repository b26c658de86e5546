"""DescribeRelayStatus (our extension): the live state of relays on this node."""

from __future__ import annotations

from typing import Any

from ..context import ActionContext, Result
from ..errors import ApiError
from ..validation import get_str

RELAY_TYPES = ("play", "fixed")


def _field(item: dict[str, Any], name: str) -> Any:
    # RelayManager.status() items use lower-case keys; accept the API's spelling too.
    return item.get(name.lower(), item.get(name))


async def describe_relay_status(ctx: ActionContext, body: dict[str, Any]) -> Result:
    filters = {name: get_str(body, name) for name in ("Vhost", "App", "Stream")}
    relay_type = get_str(body, "Type")
    if relay_type and relay_type not in RELAY_TYPES:
        raise ApiError(400, "InvalidParam.OutOfRange", f"Type should be one of {{[{' '.join(RELAY_TYPES)}]}}")
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
