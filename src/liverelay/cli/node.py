"""`liverelay node drain`: move a cluster node's fixed relays to the other nodes before stopping it."""

from __future__ import annotations

import time
from typing import Any

import click

from .app import cli
from .client import ApiContext, api_command
from .output import fail, print_json


@cli.group()
def node() -> None:
    """This node within its cluster (PostgreSQL store)."""


def _progress(result: dict[str, Any]) -> str:
    return (
        f"node {result['NodeId']}: {result['FixedRelaysOwned']} fixed relay(s) left"
        f" ({result['HandingOff']} handing off, {result['TargetNodes']} node(s) to take them)"
    )


@node.command("drain")
@click.option("--cancel", is_flag=True, help="Stop draining: the node takes fixed relays again.")
@click.option("--no-wait", is_flag=True, help="Start the drain and return at once.")
@click.option(
    "--drain-timeout",
    default=120.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Longest wait for the node to hold no fixed relay (seconds); exit 1 past it.",
)
@click.option("--interval", default=0.5, show_default=True, type=click.FloatRange(min=0.05), help="Seconds.")
@api_command
def drain(api: ApiContext, cancel: bool, no_wait: bool, drain_timeout: float, interval: float) -> None:
    """Hand the node's fixed relays to the other nodes (make-before-break: each new owner's
    pull is up before this node lets go) and wait until it holds none (DrainNode)."""
    result = api.call("drain_node", {"Cancel": cancel})["Result"]
    if cancel or no_wait:
        api.report({"Result": result}, _progress(result) + ("; draining stopped" if cancel else "; draining"))
        return
    deadline = time.monotonic() + drain_timeout
    last = ""
    while result["FixedRelaysOwned"] > 0:
        line = _progress(result)
        if line != last and not api.as_json:
            click.echo(line)
            last = line
        if time.monotonic() >= deadline:
            if api.as_json:
                print_json({"Result": result})
            left = result["FixedRelaysOwned"]
            fail(f"node {result['NodeId']} still holds {left} fixed relay(s) after {drain_timeout:g}s")
        time.sleep(interval)
        result = api.call("drain_node", {})["Result"]
    api.report(
        {"Result": result},
        f"node {result['NodeId']} holds no fixed relay: safe to stop (it stays draining until it restarts)",
    )
