"""Starting caps of play-triggered pulls (Issue 8 item 5) on a real `liverelay serve` node.

The origin is a TCP listener that accepts and never answers the RTMP handshake, so every
admitted pull stays "starting" for connect_timeout_s. Viewers ask for many distinct
missing names; the node may open at most the capped number of origin connections, the
excess get their 404 at once, the refusals are counted in /metrics by cap, and the
admin API stays responsive throughout.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from bench.peers import metric
from tests.conftest import NodeProcess, start_node
from tests.integration.relay_helpers import (
    EDGE_VHOST,
    api,
    register_vhost,
    relay_status,
    rtmp_server,
    set_v3,
)

pytestmark = pytest.mark.timeout(120)

PER_VHOST = 4
PER_NODE = 6
OTHER_VHOST = "vb.test"
OTHER_DOMAIN = "pull.vb.test"
# Long enough that the admitted pulls are all still starting while the excess arrives.
CONNECT_TIMEOUT_S = 15.0

CAP_CONFIG = f"""
[media]
default_vhost = "{EDGE_VHOST}"

[relay]
connect_timeout_s = {CONNECT_TIMEOUT_S}
first_frame_timeout_s = 2.0
start_timeout_s = 20.0
max_starting_pulls_per_vhost = {PER_VHOST}
max_starting_pulls = {PER_NODE}
"""


class SilentOrigin:
    """Accepts TCP and never sends a byte; counts open connections and their peak."""

    def __init__(self) -> None:
        self.open = 0
        self.peak = 0
        self.accepted = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.accepted += 1
        self.peak = max(self.peak, self.open)
        try:
            while await reader.read(65536):  # swallow the handshake, answer nothing
                pass
        except ConnectionError:
            pass
        finally:
            self.open -= 1
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def origin() -> AsyncIterator[SilentOrigin]:
    o = SilentOrigin()
    await o.start()
    yield o
    await o.close()


async def play(session: aiohttp.ClientSession, node: NodeProcess, host: str, name: str) -> tuple[int, float]:
    """(HTTP status, seconds to the answer) of one HTTP-FLV play."""
    t0 = time.monotonic()
    async with session.get(node.flv_url("live", name), headers={"Host": host}) as resp:
        return resp.status, time.monotonic() - t0


async def test_starting_pulls_are_capped_per_vhost_and_per_node(tmp_path: Path, origin: SilentOrigin) -> None:
    assert origin.server is not None
    port = int(origin.server.sockets[0].getsockname()[1])
    node = start_node(tmp_path / "edge", config=CAP_CONFIG)
    try:
        register_vhost(node)
        set_v3(node, [rtmp_server(port)])
        with api(node) as svc:
            svc.create_domain_v2(
                {
                    "Vhost": OTHER_VHOST,
                    "Domains": [{"DomainName": OTHER_DOMAIN, "Type": "pull-flv", "Region": "cn"}],
                }
            )
            svc.update_relay_source_v3(
                {
                    "Vhost": OTHER_VHOST,
                    "App": "live",
                    "GroupDetails": [{"Group": "g", "Servers": [rtmp_server(port)]}],
                }
            )
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            # 1. Twelve missing names on the default vhost: PER_VHOST start, the rest are refused.
            first = [asyncio.create_task(play(session, node, "127.0.0.1", f"a{i}")) for i in range(12)]
            deadline = time.monotonic() + 30
            while sum(t.done() for t in first) < 12 - PER_VHOST and time.monotonic() < deadline:
                await asyncio.wait(first, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            refused_a = [t.result() for t in first if t.done()]
            assert len(refused_a) == 12 - PER_VHOST
            # 2. Twelve on the other vhost: the node cap leaves room for PER_NODE - PER_VHOST.
            t_api = time.monotonic()
            rows = relay_status(node)
            api_s = time.monotonic() - t_api
            second = [asyncio.create_task(play(session, node, OTHER_DOMAIN, f"b{i}")) for i in range(12)]
            admitted_b = PER_NODE - PER_VHOST
            deadline = time.monotonic() + 30
            while sum(t.done() for t in second) < 12 - admitted_b and time.monotonic() < deadline:
                await asyncio.wait(second, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            refused_b = [t.result() for t in second if t.done()]
            assert len(refused_b) == 12 - admitted_b
            # The admitted pulls are still starting: their viewers have had no answer yet,
            # and each holds one origin connection (the cap is reached, never passed).
            assert sum(not t.done() for t in first + second) == PER_NODE
            deadline = time.monotonic() + 10
            while origin.open < PER_NODE and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert origin.open == PER_NODE
            async with session.get(f"http://127.0.0.1:{node.http_port}/metrics") as resp:
                text = await resp.text()
            # Every refused viewer got not-found, fast: well before start_timeout_s.
            for status, seconds in refused_a + refused_b:
                assert status == 404
                assert seconds < CONNECT_TIMEOUT_S / 3, seconds
            assert metric(text, 'liverelay_relay_start_refusals_total{scope="vhost"}') == 12 - PER_VHOST
            assert metric(text, 'liverelay_relay_start_refusals_total{scope="node"}') == 12 - admitted_b
            # The admin API answered while the pulls were starting, and lists only the admitted.
            assert api_s < 5.0, api_s
            assert len([r for r in rows if r["Type"] == "play"]) == PER_VHOST
            assert origin.accepted <= PER_NODE and origin.peak <= PER_NODE
            # The admitted viewers get their 404 once the silent origin times out.
            results = await asyncio.gather(*first, *second)
            assert all(status == 404 for status, _ in results)
        assert origin.peak <= PER_NODE
        assert "too many pulls starting" in node.log()
    finally:
        node.kill(signal.SIGTERM)
