"""ISSUE-8 class 4: connections that never end.

- Idle and half-sent requests on the HTTP-FLV, API and RTMP listeners, a slowloris on
  both HTTP listeners and an RTMP peer trickling a byte a second: the node closes every
  one of them within its (short, configured) timeouts.
- Many connections from one address: the node holds at most its per-address cap of them
  and logs that the cap was reached; other clients are served.
- File-limit pressure: the node raises its soft open-file limit to the hard limit at
  start, and keeps serving viewers and the API while hundreds of idle connections sit
  on its ports.

Settings these tests set (names as on the `servers` branch, docs/limits-servers.md):
  LIVERELAY_MEDIA_HTTP_HEADER_TIMEOUT_S  HTTP-FLV: the request head must arrive within
                                         this of connect (a total, not per read)
  LIVERELAY_API_HEADER_TIMEOUT_S         the same for the API listener
  LIVERELAY_MEDIA_RTMP_SETUP_TIMEOUT_S   RTMP: from accept until publish or play
  LIVERELAY_MEDIA_MAX_CONNS_PER_IP, LIVERELAY_API_MAX_CONNS_PER_IP
  (existing) LIVERELAY_MEDIA_HANDSHAKE_TIMEOUT_S, LIVERELAY_MEDIA_IDLE_TIMEOUT_S
"""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Iterator

import pytest
from tests.adversarial.conftest import HarnessFactory
from tests.adversarial.harness import APP, WATCH_STREAM, proc_fds, proc_nofile
from tests.adversarial.wire import (
    AttackConn,
    AttackSockets,
    attacker_address,
    connect_command,
    rtmp_handshake,
    send_quietly,
)
from tests.integration.relay_helpers import FlvViewer

pytestmark = [pytest.mark.adversarial, pytest.mark.timeout(120)]

HEADER_TIMEOUT_S = 2.0
RTMP_SETUP_TIMEOUT_S = 3.0
TIMEOUT_ENV = {
    "LIVERELAY_MEDIA_HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
    "LIVERELAY_API_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
    "LIVERELAY_MEDIA_RTMP_SETUP_TIMEOUT_S": str(RTMP_SETUP_TIMEOUT_S),
    "LIVERELAY_MEDIA_HANDSHAKE_TIMEOUT_S": str(HEADER_TIMEOUT_S),
    "LIVERELAY_MEDIA_IDLE_TIMEOUT_S": str(HEADER_TIMEOUT_S),
}
# Every attack connection must be closed by the node this long after it was opened:
# the longest timeout above plus room for a loaded machine.
CLOSE_WITHIN_S = 10.0
PER_ADDRESS_CAP = 20


class Openings:
    """Attack connections, each from its own attacker address (no per-address cap applies)."""

    def __init__(self, attack: AttackSockets) -> None:
        self.attack = attack
        self.index = 0
        self.refused: dict[str, str] = {}  # label -> why opening stopped

    def open(self, port: int, label: str, count: int, first_bytes: bytes = b"") -> list[AttackConn]:
        """Up to `count` connections; the first that cannot connect within a second stops
        this label (a node that no longer accepts leaves the rest hanging in SYN_SENT)."""
        conns = []
        for i in range(count):
            try:
                conn = self.attack.open(port, label, source=attacker_address(self.index), timeout=1.0)
            except OSError as exc:
                self.refused[label] = f"{i}/{count} connected, then {type(exc).__name__}: {exc}"
                break
            self.index += 1
            if first_bytes:
                send_quietly(conn, first_bytes)
            conns.append(conn)
        return conns

    def summary(self) -> str:
        return "\n".join(f"{label}: {why}" for label, why in self.refused.items())


class Trickle:
    """Connections that send the next byte of `data` on every tick (1 byte per second)."""

    def __init__(self) -> None:
        self.streams: list[tuple[AttackConn, bytes]] = []
        self.sent = 0

    def add(self, conns: list[AttackConn], data: bytes) -> None:
        self.streams += [(c, data) for c in conns]

    def tick(self) -> None:
        for conn, data in self.streams:
            if conn.open and self.sent < len(data):
                send_quietly(conn, data[self.sent : self.sent + 1])
        self.sent += 1


def test_idle_and_half_requests_are_closed_on_every_listener(harness_factory: HarnessFactory) -> None:
    harness = harness_factory(env=TIMEOUT_ENV)
    node = harness.node
    flv_request = f"GET /{APP}/{WATCH_STREAM}.flv HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    api_request = b"POST /?Action=ListRelaySourceV4&Version=2023-01-01 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    with (
        harness.attack_guard("idle and half-sent requests", max_log_lines=220) as guard,
        AttackSockets() as attack,
    ):
        opening = Openings(attack)
        trickle = Trickle()
        opening.open(node.http_port, "http: nothing", 30)
        opening.open(node.http_port, "http: half request line", 30, flv_request[:12])
        opening.open(node.http_port, "http: headers never end", 20, flv_request)
        trickle.add(opening.open(node.http_port, "http: slowloris", 5, flv_request), b"X-Pad: " + b"a" * 60)
        opening.open(node.api_port, "api: nothing", 25)
        opening.open(node.api_port, "api: half request line", 25, api_request[:14])
        opening.open(node.api_port, "api: headers never end", 15, api_request)
        trickle.add(opening.open(node.api_port, "api: slowloris", 5, api_request), b"X-Pad: " + b"a" * 60)
        opening.open(node.rtmp_port, "rtmp: nothing", 25)
        opening.open(node.rtmp_port, "rtmp: half handshake", 15, b"\x03" + b"\x00" * 700)
        trickling = opening.open(node.rtmp_port, "rtmp: trickle after handshake", 5)
        for conn in trickling:
            rtmp_handshake(conn)
        # The bytes of a real connect command, one a second: never idle, never done.
        trickle.add(trickling, connect_command(node.rtmp_port))
        attack.wait_closed_by_node(CLOSE_WITHIN_S, tick=trickle.tick)
        guard.note(attack.summary())
        assert not attack.still_open(), (
            f"connections still open {CLOSE_WITHIN_S}s after they were opened:\n{attack.summary()}"
        )


def test_per_address_cap(harness_factory: HarnessFactory) -> None:
    harness = harness_factory(
        env={
            "LIVERELAY_MEDIA_MAX_CONNS_PER_IP": str(PER_ADDRESS_CAP),
            "LIVERELAY_API_MAX_CONNS_PER_IP": str(PER_ADDRESS_CAP),
        }
    )
    node = harness.node
    one_address = attacker_address(248)
    per_listener = 3 * PER_ADDRESS_CAP
    ports = (node.http_port, node.api_port, node.rtmp_port)
    # Three listeners, each holding at most the cap for this address (one shared cap is fine too).
    allowed = len(ports) * PER_ADDRESS_CAP
    with (
        harness.attack_guard(
            "connections from one address", max_log_lines=len(ports) * per_listener + 10
        ) as guard,
        AttackSockets() as attack,
    ):
        for port in ports:
            for _ in range(per_listener):
                attack.open(port, f"port {port}", source=one_address)
        # Wait (bounded) for the node to reach the cap on every listener (its log line says
        # so; the line may reach the log after the refusals) and to drop what is over it.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            attack.poll(0.1)
            logged = [line for line in harness.log_tail(guard.log_offset) if "max_conns_per_ip" in line]
            settled = proc_fds(harness.pid) <= guard.baseline_fds + allowed
            if settled and len(logged) >= len(ports):
                break
        held = proc_fds(harness.pid) - guard.baseline_fds
        guard.note(f"node holds {held} more files with {len(attack.conns)} connections from {one_address}")
        guard.note(attack.summary())
        # Someone else still gets in: a new viewer from 127.0.0.1.
        fresh = harness.monitor.run(_fresh_viewer_frames(node.flv_url(APP, WATCH_STREAM)))
        assert held <= allowed + 5, (
            f"the node holds {held} connections from one address (cap {PER_ADDRESS_CAP})"
        )
        assert logged, "the node reached a per-address cap and logged nothing"
        assert fresh >= 5, f"a viewer from another address got {fresh} video frames while the cap was hit"


async def _fresh_viewer_frames(url: str) -> int:
    viewer = await FlvViewer(url).start()
    try:
        with contextlib.suppress(AssertionError):
            await viewer.wait_video(5, timeout=8)
        return len(viewer.video())
    finally:
        await viewer.close()


SOFT_NOFILE = 256


@contextlib.contextmanager
def low_soft_nofile() -> Iterator[None]:
    """The node inherits a soft open-file limit of SOFT_NOFILE (hard limit unchanged)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= SOFT_NOFILE * 4:
        pytest.fail(f"the hard open-file limit ({hard}) is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT_NOFILE, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_file_limit_pressure(harness_factory: HarnessFactory) -> None:
    harness = harness_factory(env=TIMEOUT_ENV, before_start=low_soft_nofile)
    node = harness.node
    soft, hard = proc_nofile(harness.pid)
    count = SOFT_NOFILE + 60  # more than the inherited limit, each from its own address
    with (
        harness.attack_guard(
            "idle connections past the inherited file limit", max_log_lines=count + 20
        ) as guard,
        AttackSockets() as attack,
    ):
        guard.note(f"open-file limit of the node: soft {soft}, hard {hard}")
        opening = Openings(attack)
        opening.open(node.http_port, "http: nothing", count // 2)
        opening.open(node.api_port, "api: nothing", count - count // 2)
        guard.note(opening.summary())
        fresh = harness.monitor.run(_fresh_viewer_frames(node.flv_url(APP, WATCH_STREAM)))
        assert fresh >= 5, f"a new viewer got {fresh} video frames while {count} idle connections were open"
        attack.wait_closed_by_node(CLOSE_WITHIN_S)
        guard.note(attack.summary())
    assert soft == hard, f"the node kept a soft open-file limit of {soft} (hard {hard})"
