"""Fixed-relay take-over after kill -9: how long until a dead node's relays run on a survivor.

Three nodes of ours on one PostgreSQL (tests/pgserver.py: initdb + pg_ctl in a temporary
directory on a free loopback port), an origin node of ours (SQLite) with one publisher;
K permanent fixed relays (V4) of the origin's stream, each into its own stream, spread by
the leases over the three nodes. Once every relay is up on exactly one node, the node
owning the most is killed with SIGKILL; each of its relays is then timed from the kill
until a survivor's DescribeRelayStatus shows it "up" (media flowing on the new owner),
polled every 50 ms. p50 / p99 / max over the moved relays, per K.

nginx-rtmp has no counterpart (no cluster), so there is no ratio: the figure to compare
with is the lease TTL (3 s by default), the lower bound of a take-over.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from liverelay.sdk import AsyncLiveService

from .cluster import percentile
from .ourapi import create_bench_domain, create_v4, node_config, service
from .peers import LiverelayNode
from .report import progress, save, table
from .sample import ensure_sample, start_publisher

POLL_S = 0.05
UP_BOUND_S = 60.0
TAKEOVER_BOUND_S = 20.0


async def _up_by_node(apis: list[AsyncLiveService]) -> list[set[str]]:
    """Per node, the streams whose fixed relay is up there."""
    out: list[set[str]] = []
    for api in apis:
        envelope = await api.describe_relay_status({"Type": "fixed"})
        rows = (envelope.get("Result") or {}).get("RelayStatusList") or []
        out.append({r["Stream"] for r in rows if r.get("State") == "up"})
    return out


async def _settled(apis: list[AsyncLiveService], names: set[str]) -> list[set[str]]:
    deadline = time.monotonic() + UP_BOUND_S
    while True:
        up = await _up_by_node(apis)
        if set().union(*up) == names and sum(len(s) for s in up) == len(names):
            return up
        if time.monotonic() > deadline:
            raise TimeoutError(f"relays not up on exactly one node each within {UP_BOUND_S}s: {up}")
        await asyncio.sleep(0.2)


async def one_run(count: int, url: str, origin: LiverelayNode) -> dict[str, Any]:
    config = f'database_url = "{url}"\n' + node_config()
    nodes = [LiverelayNode(config=config, name=f"takeover-{i}").start() for i in range(3)]
    apis = [service(n) for n in nodes]
    try:
        await asyncio.sleep(2.5)  # every node's first heartbeats: the claims spread at once
        await create_bench_domain(apis[0])
        names = {f"t{i:03d}" for i in range(count)}
        for name in sorted(names):
            await create_v4(apis[0], name, [origin.rtmp_url("live", "src")])
        up = await _settled(apis, names)
        spread = [len(s) for s in up]
        victim = max(range(3), key=lambda i: spread[i])
        moved = set(up[victim])
        survivors = [api for i, api in enumerate(apis) if i != victim]
        progress(f"takeover: {count} relays spread {spread}; kill -9 node {victim} ({len(moved)} relays)")
        os.kill(nodes[victim].pid, signal.SIGKILL)
        killed = time.monotonic()
        times: dict[str, float] = {}
        while len(times) < len(moved) and time.monotonic() - killed < TAKEOVER_BOUND_S:
            now_up = set().union(*await _up_by_node(survivors))
            stamp = time.monotonic() - killed
            for name in (moved & now_up) - set(times):
                times[name] = stamp
            await asyncio.sleep(POLL_S)
        samples = sorted(times.values())
        return {
            "relays": count,
            "spread": spread,
            "moved": len(moved),
            "taken_over": len(samples),
            "p50_s": round(percentile(samples, 50), 2) if samples else None,
            "p99_s": round(percentile(samples, 99), 2) if samples else None,
            "max_s": round(max(samples), 2) if samples else None,
            "loadavg": os.getloadavg(),
        }
    finally:
        for api in apis:
            await api.aclose()
        for n in nodes:
            n.stop()


async def run(counts: list[int]) -> dict[str, Any]:
    from tests.pgserver import PostgresServer, pg_bin_dir

    bin_dir = pg_bin_dir()
    if bin_dir is None:
        return {"failed": "PostgreSQL is not installed (apt-get install postgresql)"}
    sample = ensure_sample()
    server = PostgresServer(bin_dir)
    results: dict[str, Any] = {}
    origin = LiverelayNode(config=node_config(), name="takeover-origin").start()
    publisher = start_publisher(sample, origin.rtmp_url("live", "src"))
    try:
        server.init()
        server.start()
        for count in counts:
            results[str(count)] = await one_run(count, server.new_database(), origin)
            progress(f"takeover: {results[str(count)]}")
    finally:
        publisher.stop()
        origin.stop()
        server.cleanup()
    rows = [
        [
            r["relays"],
            r["moved"],
            r["taken_over"],
            r["p50_s"],
            r["p99_s"],
            r["max_s"],
            f"{r['loadavg'][0]:.1f}",
        ]
        for r in results.values()
    ]
    print(table(["relays", "moved", "taken over", "p50 s", "p99 s", "max s", "load"], rows))
    save("takeover", results)
    return results
