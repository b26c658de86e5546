"""`liverelay relay status` (and its short form `liverelay status`): live state of every relay."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import click
from rich.table import Table

from ..schemas.status import RelayStatusRow
from .app import cli
from .client import ApiContext, api_command
from .output import age, out, print_json, table
from .relay import relay

# -- relay status ---------------------------------------------------------------------------

STATUS_COLUMNS = (
    "Stream",
    "Type",
    "State",
    "Source",
    "#",
    "Attempts",
    "Last error",
    "Up for",
    "Bitrate",
    "Viewers",
    "Switches",
)


def status_rows(response: Mapping[str, Any]) -> list[RelayStatusRow]:
    """The rows of a DescribeRelayStatus response, read through the one status model."""
    result = response.get("Result") or {}
    return [RelayStatusRow.model_validate(item) for item in result.get("RelayStatusList", [])]


def status_cells(row: RelayStatusRow) -> list[str]:
    return [
        "/".join(part for part in (row.vhost, row.app, row.stream) if part),
        row.type.value,
        row.state.value,
        row.source_url,
        "" if row.source_index is None else str(row.source_index),
        str(row.attempts),
        row.last_error or "",
        age(row.up_since) if row.up_since else "",
        f"{row.bitrate / 1000:,.0f}k",
        str(row.viewers),
        str(row.switches),
    ]


def status_table(rows: list[RelayStatusRow], error: str | None = None) -> Table:
    title = f"relays ({len(rows)}) at {datetime.now(UTC).strftime('%H:%M:%S')} UTC"
    if error:
        title += f" - partial: {error}"
    if any(row.node_id for row in rows):  # rows of a cluster's nodes: say which node runs each
        cells = [[row.node_id or "", *status_cells(row)] for row in rows]
        return table(title, ["Node", *STATUS_COLUMNS], cells)
    return table(title, list(STATUS_COLUMNS), [status_cells(row) for row in rows])


def render_status(response: Mapping[str, Any]) -> Table:
    result = response.get("Result") or {}
    return status_table(status_rows(response), result.get("Error"))


@relay.command("status")
@click.option("--watch", is_flag=True, help="Refresh the table until Ctrl-C.")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.1), help="Seconds.")
@click.option("--count", default=0, type=click.IntRange(0), help="With --watch: stop after N refreshes.")
@api_command
def relay_status(api: ApiContext, watch: bool, interval: float, count: int) -> None:
    """Live state of every relay (DescribeRelayStatus)."""
    if not watch:
        response = api.call("describe_relay_status")
        if api.as_json:
            print_json(response)
        else:
            out.print(render_status(response))
        return
    from rich.live import Live

    refreshes = 0
    try:
        with Live(status_table([]), console=out, auto_refresh=False) as live:
            while True:
                response = api.call("describe_relay_status")
                live.update(render_status(response), refresh=True)
                refreshes += 1
                if count and refreshes >= count:
                    break
                time.sleep(interval)
    except KeyboardInterrupt:
        pass


# `liverelay status` is short for `liverelay relay status`.
cli.add_command(relay_status, "status")
