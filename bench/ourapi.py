"""Configuring our node through the project's SDK (the same calls a user makes).

The bench node maps every unknown Host/tcUrl domain (viewers use 127.0.0.1) to one
vhost, BENCH_VHOST, so a play-triggered config on that vhost covers the bench URLs.
"""

from __future__ import annotations

from typing import Any

from liverelay.sdk import AsyncLiveService

from .peers import BENCH_AK, BENCH_SK, LiverelayNode

BENCH_VHOST = "bench-vhost"
BENCH_PULL_DOMAIN = "pull.bench.test"


def node_config(*, linger_s: float | None = None, log_level: str = "WARNING", extra: str = "") -> str:
    """TOML for a bench node: quiet logs (1000 joins must not be measured as log lines),
    unknown domains -> BENCH_VHOST, an API rate limit that does not throttle setup, and
    loopback viewers not counted by the per-address connection cap."""
    relay = f"[relay]\nlinger_s = {linger_s}\n" if linger_s is not None else ""
    return (
        f'log_level = "{log_level}"\n'
        "[api]\nrate_limit_per_s = 1000.0\nrate_burst = 1000\n"
        f'[media]\ndefault_vhost = "{BENCH_VHOST}"\n'
        # Every bench viewer comes from 127.0.0.1: the per-address cap must not count them.
        "conn_cap_exempt_loopback = true\n"
        f"{relay}{extra}"
    )


def service(node: LiverelayNode) -> AsyncLiveService:
    return AsyncLiveService(node.api_host, BENCH_AK, BENCH_SK, scheme="http", timeout=10.0)


async def create_bench_domain(api: AsyncLiveService) -> None:
    domain = {"DomainName": BENCH_PULL_DOMAIN, "Type": "pull-flv", "Region": "cn"}
    await api.create_domain_v2({"Vhost": BENCH_VHOST, "Domains": [domain]})


async def configure_v3(api: AsyncLiveService, origins: list[str], *, app: str = "live") -> None:
    """Play-triggered pull of `app` from `origins` (host:port, tried in order), over RTMP."""
    servers = [{"RelaySourceProtocol": "rtmp", "RelaySourceDomain": o} for o in origins]
    await api.update_relay_source_v3(
        {"Vhost": BENCH_VHOST, "App": app, "GroupDetails": [{"Group": "bench", "Servers": servers}]}
    )


async def make_v3_edge(node: LiverelayNode, origins: list[str]) -> None:
    """Make `node` an edge: the bench domain, and a play-triggered pull of "live" from
    `origins` (host:port, tried in order), through an API client of its own."""
    api = service(node)
    try:
        await create_bench_domain(api)
        await configure_v3(api, origins)
    finally:
        await api.aclose()


async def create_v4(
    api: AsyncLiveService, stream: str, src_urls: list[str], *, app: str = "live"
) -> dict[str, Any]:
    """A permanent fixed relay of `app/stream` from `src_urls`."""
    return await api.create_relay_source_v4(
        {"Domain": BENCH_PULL_DOMAIN, "App": app, "Stream": stream, "SrcAddrS": src_urls}
    )


async def running_play_pulls(api: AsyncLiveService) -> int:
    """How many play-triggered (V3) pulls the node runs now (DescribeRelayStatus, our extension)."""
    envelope = await api.describe_relay_status({"Type": "play"})
    return len((envelope.get("Result") or {}).get("RelayStatusList") or [])


async def wait_no_play_pulls(node: LiverelayNode, timeout: float = 10.0) -> bool:
    """Poll until the node runs no V3 pull (the next play is cold again); False on timeout."""
    import asyncio

    api = service(node)
    try:
        for _ in range(int(timeout / 0.2) + 1):
            if await running_play_pulls(api) == 0:
                return True
            await asyncio.sleep(0.2)
    finally:
        await api.aclose()
    return False
