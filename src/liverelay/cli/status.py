"""`liverelay relay status` (and its short form `liverelay status`): live state of every relay."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import click
from rich.table import Table

from .app import cli
from .client import ApiContext, api_command
from .output import age, out, print_json, table
from .relay import relay

# -- relay status ---------------------------------------------------------------------------

# Column -> keys a status row may carry it under (compared without case and underscores).
STATUS_COLUMNS: list[tuple[str, tuple[str, ...]]] = [
    ("Stream", ("stream", "key", "name")),
    ("Type", ("type", "kind", "mode")),
    ("State", ("state", "status")),
    ("Source", ("source", "source_url", "url", "current_source", "source_in_use")),
    ("#", ("source_index", "index", "current_index")),
    ("Attempts", ("attempts", "attempt", "retries")),
    ("Last error", ("last_error", "error")),
    ("Up for", ("up_since", "since", "started_at", "connected_at")),
    ("Bitrate", ("bitrate", "bitrate_bps", "bitrate_kbps", "kbps")),
    ("Viewers", ("viewers", "viewer_count")),
    ("Switches", ("switches", "switch_count", "failovers")),
]


def _norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def pick(row: Mapping[str, Any], names: Iterable[str]) -> tuple[str | None, Any]:
    by_norm = {_norm(k): k for k in row}
    for name in names:
        key = by_norm.get(_norm(name))
        if key is not None and row[key] not in (None, ""):
            return key, row[key]
    return None, None


def status_rows(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The list of row dicts in a DescribeRelayStatus response, wherever it sits."""
    result: Any = response.get("Result", response)
    if isinstance(result, list):
        return [r for r in result if isinstance(r, dict)]
    if isinstance(result, dict):
        for value in result.values():
            if isinstance(value, list) and all(isinstance(r, dict) for r in value):
                return list(value)
    return []


def format_status_cell(column: str, key: str | None, value: Any, row: Mapping[str, Any]) -> str:
    if value is None:
        return ""
    if column == "Stream":
        if isinstance(value, dict | list | tuple):
            parts = list(value.values()) if isinstance(value, dict) else list(value)
            return "/".join(str(p) for p in parts if p not in (None, ""))
        prefix = [str(row[k]) for k in ("vhost", "app", "Vhost", "App") if row.get(k)]
        return "/".join([*prefix, str(value)]) if _norm(key or "") == "stream" else str(value)
    if column == "Up for":
        return age(value)
    if column == "Bitrate" and isinstance(value, int | float):
        kbps = value if "kbps" in _norm(key or "") else value / 1000
        return f"{kbps:,.0f}k"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def status_table(rows: list[dict[str, Any]]) -> Table:
    cells = []
    for row in rows:
        cells.append([format_status_cell(col, *pick(row, names), row) for col, names in STATUS_COLUMNS])
    t = table(
        f"relays ({len(rows)}) at {datetime.now(UTC).strftime('%H:%M:%S')} UTC",
        [c for c, _ in STATUS_COLUMNS],
        cells,
    )
    return t


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
            out.print(status_table(status_rows(response)))
        return
    from rich.live import Live

    refreshes = 0
    try:
        with Live(status_table([]), console=out, auto_refresh=False) as live:
            while True:
                response = api.call("describe_relay_status")
                live.update(status_table(status_rows(response)), refresh=True)
                refreshes += 1
                if count and refreshes >= count:
                    break
                time.sleep(interval)
    except KeyboardInterrupt:
        pass


# `liverelay status` is short for `liverelay relay status`.
cli.add_command(relay_status, "status")
