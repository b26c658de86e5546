"""ISSUE-8 class 5: viewers asking for many distinct missing streams must not multiply
origin connections.

The node has a play-triggered (V3) relay whose origin accepts TCP connections and never
answers (each pull hangs until its connect timeout). 200 viewers ask at once for 200
distinct stream names. The node may start only a bounded number of pulls at a time;
the viewers over that bound get not-found at once, and /metrics counts the refusals.

Settings (proposed names; see the report):
  LIVERELAY_RELAY_MAX_STARTING_PULLS           pulls starting at once, per node
  LIVERELAY_RELAY_MAX_STARTING_PULLS_PER_VHOST pulls starting at once, per vhost
"""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest
from tests.adversarial.conftest import HarnessFactory
from tests.adversarial.harness import ADV_CONFIG, APP, origin_server, set_v3_origins
from tests.adversarial.wire import NODE_HOST, attacker_address

pytestmark = [pytest.mark.adversarial, pytest.mark.timeout(120)]

VIEWERS = 200
PER_NODE_CAP = 32
PER_VHOST_CAP = 16
CAP_ENV = {
    "LIVERELAY_RELAY_MAX_STARTING_PULLS": str(PER_NODE_CAP),
    "LIVERELAY_RELAY_MAX_STARTING_PULLS_PER_VHOST": str(PER_VHOST_CAP),
}
# Each pull hangs on the silent origin for the connect timeout: long enough that the
# pulls overlap, short enough to end within the test.
CONFIG = ADV_CONFIG.replace("connect_timeout_s = 2.0", "connect_timeout_s = 4.0")
FAST_NOT_FOUND_S = 1.5
VIEWER_TIMEOUT_S = 20.0


class SilentOrigin:
    """Accepts connections, reads and never answers; counts how many are open at once."""

    def __init__(self) -> None:
        self.open = 0
        self.peak = 0
        self.total = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._hold, NODE_HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.total += 1
        self.peak = max(self.peak, self.open)
        self._writers.add(writer)
        try:
            while await reader.read(65536):
                pass
        except OSError:
            pass
        finally:
            self.open -= 1
            self._writers.discard(writer)
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await asyncio.wait_for(self._server.wait_closed(), 5)


async def _ask(port: int, name: str, source: str) -> tuple[int, float]:
    """One HTTP-FLV viewer asking for `name`: (status, seconds to the answer); 0 = none."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(VIEWER_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(NODE_HOST, port, local_addr=(source, 0))
            try:
                writer.write(f"GET /{APP}/{name}.flv HTTP/1.1\r\nHost: {NODE_HOST}\r\n\r\n".encode())
                line = await reader.readline()
            finally:
                writer.transport.abort()
    except (TimeoutError, OSError):
        return 0, time.monotonic() - started
    parts = line.split()
    status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
    return status, time.monotonic() - started


async def _crowd(port: int) -> list[tuple[int, float]]:
    return await asyncio.gather(
        *(_ask(port, f"missing-{i}", attacker_address(i % 50)) for i in range(VIEWERS))
    )


def _metric_sum(http_port: int, word: str) -> float:
    """Sum of every /metrics sample whose name contains `word` (e.g. "refus")."""
    with urllib.request.urlopen(f"http://{NODE_HOST}:{http_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if word in name:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_many_missing_names_start_a_bounded_number_of_pulls(harness_factory: HarnessFactory) -> None:
    harness = harness_factory(config=CONFIG, env=CAP_ENV)
    origin = SilentOrigin()
    harness.monitor.run(origin.start())
    try:
        set_v3_origins(harness.node, [origin_server("rtmp", origin.port)])
        with harness.attack_guard("distinct missing names", max_log_lines=4 * VIEWERS + 20) as guard:
            answers = asyncio.run(_crowd(harness.node.http_port))
            fast = sum(1 for status, took in answers if status == 404 and took <= FAST_NOT_FOUND_S)
            statuses = sorted({status for status, _ in answers})
            slowest = max(took for _, took in answers)
            guard.note(
                f"origin connections: peak {origin.peak} at once, {origin.total} in all; "
                f"viewers: statuses {statuses}, {fast} not-found within {FAST_NOT_FOUND_S}s, "
                f"slowest answer {slowest:.1f}s"
            )
            refusals = _metric_sum(harness.node.http_port, "refus")
            guard.note(f"/metrics samples named *refus*: {refusals}")
            assert origin.peak <= PER_VHOST_CAP, (
                f"{origin.peak} origin connections at once for one vhost (cap {PER_VHOST_CAP})"
            )
            assert all(status == 404 for status, _ in answers), f"viewer answers: {statuses}"
            assert fast >= VIEWERS - PER_NODE_CAP, (
                f"only {fast}/{VIEWERS} viewers over the cap got a quick not-found"
            )
            assert refusals > 0, "/metrics counts no refused pull starts"
    finally:
        harness.monitor.run(origin.close())
