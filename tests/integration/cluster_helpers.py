"""Shared pieces of the cluster tests (three `liverelay serve` nodes on one real PostgreSQL).

Used by test_cluster_store.py (configuration across nodes) and test_cluster_leases.py
(membership, fixed-relay leases, drain).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.conftest import NodeProcess
from tests.integration.relay_helpers import EDGE_CONFIG, api

from liverelay.sdk import LiveService

NodeFactory = Callable[..., NodeProcess]
PULL_DOMAIN = "pull.vh.test"
# The API's per-key limit (10/s) would throttle the polling below.
CLUSTER_CONFIG = EDGE_CONFIG + "\n[api]\nrate_limit_per_s = 100000.0\nrate_burst = 100000\n"
# Fixed relays whose window opens tomorrow: every node schedules them (a status row with
# the written times) and none pulls, so the rows show what each node's data plane holds.
FUTURE = int(time.time()) + 86_400


def start_cluster(
    node_factory: NodeFactory, url: str, names: tuple[str, ...] = ("a", "b", "c")
) -> list[NodeProcess]:
    env = {"LIVERELAY_DATABASE_URL": url}
    return [node_factory(name, extra_env=env, config=CLUSTER_CONFIG) for name in names]


def fixed_rows(node: NodeProcess, svc: LiveService | None = None) -> dict[str, dict[str, Any]]:
    """The node's fixed-relay status rows by stream (what its scheduler runs)."""
    if svc is None:
        with api(node) as own:
            return fixed_rows(node, own)
    result = svc.describe_relay_status({"Type": "fixed"})
    rows = result.get("Result", result).get("RelayStatusList", [])
    return {r["Stream"]: r for r in rows}


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def v4_body(stream: str, start: int, *, src: str = "rtmp://127.0.0.1:1/live/x") -> dict[str, Any]:
    return {
        "Domain": PULL_DOMAIN,
        "App": "live",
        "Stream": stream,
        "SrcAddrS": [src],
        "StartTime": start,
        "EndTime": start + 3600,
    }


def listed_v4(svc: LiveService) -> dict[str, dict[str, Any]]:
    result = svc.list_relay_source_v4({"Domain": PULL_DOMAIN, "Page": 1, "Size": 500})
    return {item["Stream"]: item for item in result.get("Result", result).get("List", [])}
