"""Three nodes on one PostgreSQL: how fast a change reaches the other nodes, and what the
store costs per signed API write on SQLite vs PostgreSQL.

PostgreSQL is Debian's (initdb + pg_ctl in a temporary directory on a free loopback
port, as the tests run it: tests/pgserver.py), stopped at the end.

Propagation: one fixed relay (V4) whose window opens tomorrow, so every node schedules
it and none pulls; `changes` updates of its StartTime, written round-robin through the
three nodes' APIs; after each, every other node's DescribeRelayStatus is polled until
its scheduler shows the new StartTime. A sample = write acknowledged -> visible on that
node's data plane (the poll's own round trip included, so it is an upper bound).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from liverelay.sdk import AsyncLiveService

from .ourapi import BENCH_PULL_DOMAIN, create_bench_domain, node_config, service
from .peers import LiverelayNode
from .report import progress
from .store import writes_per_s

POLL_BOUND_S = 5.0


def fixed_relay(stream: str, start: int, domain: str = BENCH_PULL_DOMAIN) -> dict[str, Any]:
    return {
        "Domain": domain,
        "App": "live",
        "Stream": stream,
        "SrcAddrS": ["rtmp://127.0.0.1:1/live/none"],
        "StartTime": start,
        "EndTime": start + 3600,
    }


async def scheduled_start(api: AsyncLiveService, stream: str) -> int | None:
    """StartTime of `stream`'s fixed-relay row in the node's DescribeRelayStatus."""
    envelope = await api.describe_relay_status({"Type": "fixed", "Stream": stream})
    rows = (envelope.get("Result") or {}).get("RelayStatusList") or []
    return rows[0].get("StartTime") if rows else None


async def propagation(
    apis: list[AsyncLiveService], changes: int, *, domain: str = BENCH_PULL_DOMAIN, stream: str = "prop"
) -> list[float]:
    """Seconds from each write's acknowledgement until each other node shows it."""
    future = int(time.time()) + 86_400
    await apis[0].create_relay_source_v4(fixed_relay(stream, future, domain))
    for api in apis:
        await _until(api, stream, future)
    samples: list[float] = []
    for i in range(changes):
        writer = i % len(apis)
        start = future + 60 * (i + 1)
        await apis[writer].update_relay_source_v4(fixed_relay(stream, start, domain))
        written = time.perf_counter()
        for j, api in enumerate(apis):
            if j != writer:
                await _until(api, stream, start)
                samples.append(time.perf_counter() - written)
    return samples


async def _until(api: AsyncLiveService, stream: str, start: int) -> None:
    deadline = time.perf_counter() + POLL_BOUND_S
    while await scheduled_start(api, stream) != start:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"StartTime {start} of {stream} not visible within {POLL_BOUND_S}s")
        await asyncio.sleep(0.001)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(*, changes: int = 200, writes: int = 400) -> dict[str, Any]:
    from tests.pgserver import PostgresServer, pg_bin_dir

    bin_dir = pg_bin_dir()
    if bin_dir is None:
        return {"failed": "PostgreSQL is not installed (apt-get install postgresql)"}
    server = PostgresServer(bin_dir)
    results: dict[str, Any] = {}
    try:
        server.init()
        server.start()
        url = server.new_database()
        config = f'database_url = "{url}"\n' + node_config()
        progress(f"cluster: 3 nodes on PostgreSQL, {changes} changes")
        nodes = [LiverelayNode(config=config, name=f"cluster-{i}").start() for i in range(3)]
        apis = [service(n) for n in nodes]
        try:
            await create_bench_domain(apis[0])
            samples = await propagation(apis, changes)
        finally:
            for api in apis:
                await api.aclose()
            for n in nodes:
                n.stop()
        results["propagation"] = {
            "changes": changes,
            "samples": len(samples),
            "p50_ms": round(percentile(samples, 50) * 1000, 1),
            "p99_ms": round(percentile(samples, 99) * 1000, 1),
            "max_ms": round(max(samples) * 1000, 1),
            "mean_ms": round(statistics.mean(samples) * 1000, 1),
        }
        progress(f"cluster: propagation {results['propagation']}")
        progress(f"cluster: {writes} signed writes on SQLite, then on PostgreSQL")
        results["sqlite_writes_per_s"] = round(await writes_per_s("", count=writes), 1)
        results["postgresql_writes_per_s"] = round(await writes_per_s(server.new_database(), count=writes), 1)
        progress(f"cluster: writes/s {results}")
    finally:
        server.cleanup()
    return results
