"""Signed API writes per second against one node (SQLite, or PostgreSQL when a URL is given).

Each write is an UpdateRelaySourceV3 of its own app through the project's SDK (signed,
validated, committed durably, announced on the bus), issued by `concurrency` workers at
once. The figure is writes acknowledged / wall time of the whole batch.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .ourapi import BENCH_VHOST, node_config, service
from .peers import LiverelayNode
from .report import progress


async def _writes(node: LiverelayNode, count: int, concurrency: int, tag: str) -> float:
    api = service(node)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            servers = [{"RelaySourceProtocol": "rtmp", "RelaySourceDomain": f"o{i}.example.com:1935"}]
            await api.update_relay_source_v3(
                {
                    "Vhost": BENCH_VHOST,
                    "App": f"{tag}{i}",
                    "GroupDetails": [{"Group": "g", "Servers": servers}],
                }
            )

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)
    finally:
        await api.aclose()


async def writes_per_s(database_url: str = "", *, count: int = 400, concurrency: int = 8) -> float:
    extra = f'database_url = "{database_url}"\n' if database_url else ""
    with LiverelayNode(config=extra + node_config()).start() as node:
        await _writes(node, 40, concurrency, "warm")  # first connections, code paths, caches
        return await _writes(node, count, concurrency, "w")


async def run(database_url: str = "", *, count: int = 400, concurrency: int = 8) -> dict[str, Any]:
    results: dict[str, Any] = {}
    progress(f"store: {count} signed writes on SQLite ({concurrency} at once)")
    results["sqlite_writes_per_s"] = round(await writes_per_s("", count=count, concurrency=concurrency), 1)
    if database_url:
        progress(f"store: {count} signed writes on PostgreSQL ({concurrency} at once)")
        rate = await writes_per_s(database_url, count=count, concurrency=concurrency)
        results["postgresql_writes_per_s"] = round(rate, 1)
    progress(f"store: {results}")
    return results
