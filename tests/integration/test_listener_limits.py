"""Listener admission against a real `liverelay serve` subprocess: connections that say
nothing, half a request or trickle bytes are closed within their timeouts on all three
listeners; the per-address cap refuses the excess (one log line) while the node keeps
serving; a Host port out of range is a 400; peer text is clipped in replies and logs;
the soft open-file limit is raised to the hard one at start.

Timeouts are set small through the environment so the tests run in seconds; every wait
is bounded and waits on the event (the peer's close), not on a sleep.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.conftest import NodeProcess, ffmpeg_publish
from tests.integration.rtmp_helpers import RtmpTestClient

from liverelay.media.rtmp import StatusEvent

FAST = {
    "LIVERELAY_MEDIA_HTTP_HEADER_TIMEOUT_S": "1.0",
    # Longer than the head deadline, so that the head deadline is the one that acts.
    "LIVERELAY_MEDIA_HTTP_IDLE_TIMEOUT_S": "2.0",
    "LIVERELAY_API_HEADER_TIMEOUT_S": "1.0",
    "LIVERELAY_API_IDLE_TIMEOUT_S": "2.0",
    "LIVERELAY_MEDIA_HANDSHAKE_TIMEOUT_S": "1.0",
    "LIVERELAY_MEDIA_RTMP_SETUP_TIMEOUT_S": "2.0",
    "LIVERELAY_MEDIA_IDLE_TIMEOUT_S": "1.5",
}
# How long a connection may outlive its timeout on a loaded 2-core machine.
SLACK_S = 4.0
# Without these limits, each of these connections stays open for 75 s or for ever.
NEVER_CLOSED_S = 20.0

NodeFactory = Callable[..., NodeProcess]


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.settimeout(NEVER_CLOSED_S)
    return s


def _closed_after(sock: socket.socket, *, trickle: bytes = b"", every: float = 0.2) -> float:
    """Seconds until the server closes `sock` (EOF or reset), reading what it sends; while
    waiting, send `trickle` one byte every `every` s. Fails after NEVER_CLOSED_S."""
    t0 = time.monotonic()
    pending = bytearray(trickle)
    sock.settimeout(every if pending else NEVER_CLOSED_S)
    while time.monotonic() - t0 < NEVER_CLOSED_S:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            if pending:
                try:
                    sock.sendall(bytes(pending[:1]))
                except OSError:
                    return time.monotonic() - t0
                del pending[:1]
                if not pending:
                    sock.settimeout(NEVER_CLOSED_S)
            continue
        except OSError:  # reset by the server
            return time.monotonic() - t0
        if not data:
            return time.monotonic() - t0
    raise AssertionError(f"connection still open after {NEVER_CLOSED_S}s")


@pytest.fixture
def fast_node(node_factory: NodeFactory) -> NodeProcess:
    return node_factory(extra_env=FAST)


@pytest.mark.parametrize("listener", ["http", "api"])
@pytest.mark.parametrize(
    "sent,trickle",
    [
        (b"", b""),  # nothing at all
        (b"GET /live/s.fl", b""),  # half a request line
        (b"GET /healthz HTTP/1.1\r\n", b"Host: 127.0.0.1\r\nX-Slow: " + b"a" * 100),  # headers trickled
    ],
    ids=["silent", "half-line", "trickled-headers"],
)
def test_http_listeners_close_incomplete_request_heads(
    fast_node: NodeProcess, listener: str, sent: bytes, trickle: bytes
) -> None:
    port = fast_node.http_port if listener == "http" else fast_node.api_port
    with _connect(port) as sock:
        sock.sendall(sent)
        waited = _closed_after(sock, trickle=trickle)
    assert waited < 1.0 + SLACK_S
    assert "no complete request head within 1.0s" in fast_node.log()


@pytest.mark.parametrize("listener", ["http", "api"])
def test_http_listeners_close_idle_keepalive(fast_node: NodeProcess, listener: str) -> None:
    port = fast_node.http_port if listener == "http" else fast_node.api_port
    with _connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 "), first
        assert b"Connection: close" not in first  # a keep-alive connection, then silence
        waited = _closed_after(sock)
    assert waited < 2.0 + SLACK_S


def _handshake(sock: socket.socket) -> None:
    """The plain (digest-less) RTMP handshake, by hand."""
    sock.sendall(b"\x03" + bytes(1536))
    got = bytearray()
    while len(got) < 1 + 1536 * 2:
        data = sock.recv(65536)
        assert data, "server closed during the handshake"
        got += data
    sock.sendall(bytes(got[1 : 1 + 1536]))  # C2 = S1


def test_rtmp_silent_and_half_handshake_closed(fast_node: NodeProcess) -> None:
    with _connect(fast_node.rtmp_port) as silent, _connect(fast_node.rtmp_port) as half:
        half.sendall(b"\x03" + bytes(100))
        assert _closed_after(silent) < 1.0 + SLACK_S
        assert _closed_after(half) < 1.0 + SLACK_S
    assert "handshake timeout" in fast_node.log()


def test_rtmp_trickle_before_connect_hits_the_setup_deadline(node_factory: NodeFactory) -> None:
    # A long idle timeout: the setup deadline alone must end this connection.
    node = node_factory(extra_env={**FAST, "LIVERELAY_MEDIA_IDLE_TIMEOUT_S": "60"})
    with _connect(node.rtmp_port) as sock:
        _handshake(sock)
        # A chunk header announcing a 1000-byte command, then its body a byte at a time:
        # every read brings bytes, none ever completes a message.
        header = b"\x03" + bytes(3) + (1000).to_bytes(3, "big") + b"\x14" + bytes(4)
        waited = _closed_after(sock, trickle=header + b"\x02" * 200, every=0.2)
    assert waited < 2.0 + SLACK_S
    assert "setup timeout" in node.log()


async def test_rtmp_publisher_trickling_a_message_hits_the_idle_timeout(fast_node: NodeProcess) -> None:
    client = RtmpTestClient(fast_node.rtmp_port, "live", publish="trickle")
    await client.connect()
    try:
        assert await client.pump_until(lambda: client.session.state == "publishing" or client.statuses, 5)
        assert client.reader is not None and client.writer is not None
        # A video message of 50000 bytes on chunk stream 6, sent one byte every 0.2 s.
        header = b"\x06" + bytes(3) + (50_000).to_bytes(3, "big") + b"\x09" + (1).to_bytes(4, "little")
        client.writer.write(header)
        t0 = time.monotonic()
        closed = False
        for _ in range(int(NEVER_CLOSED_S / 0.2)):
            try:
                data = await asyncio.wait_for(client.reader.read(65536), 0.2)
            except TimeoutError:
                client.writer.write(b"\x00")
                continue
            except OSError:
                closed = True
                break
            if not data:
                closed = True
                break
        assert closed, "a publisher trickling one message stayed connected"
        assert time.monotonic() - t0 < 1.5 + SLACK_S
    finally:
        client.close()
    log = fast_node.log()
    assert "idle timeout" in log and " publish " in log


@pytest.fixture
def capped_node(node_factory: NodeFactory) -> NodeProcess:
    env = {
        "LIVERELAY_MEDIA_MAX_CONNS_PER_IP": "5",
        "LIVERELAY_API_MAX_CONNS_PER_IP": "5",
        "LIVERELAY_MEDIA_HANDSHAKE_TIMEOUT_S": "30",
        "LIVERELAY_MEDIA_RTMP_SETUP_TIMEOUT_S": "30",
        "LIVERELAY_MEDIA_HTTP_HEADER_TIMEOUT_S": "30",
        "LIVERELAY_API_HEADER_TIMEOUT_S": "30",
    }
    return node_factory(extra_env=env)


def _refused(port: int) -> bool:
    """True when the server closes a fresh connection without being asked anything."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(5)
        try:
            return sock.recv(1) == b""
        except TimeoutError:
            return False
        except OSError:
            return True


def _healthz(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        return got


@pytest.mark.parametrize("listener", ["http", "api", "rtmp"])
def test_per_address_cap_refuses_the_excess_and_the_node_keeps_serving(
    capped_node: NodeProcess, listener: str
) -> None:
    port = {"http": capped_node.http_port, "api": capped_node.api_port, "rtmp": capped_node.rtmp_port}[
        listener
    ]
    held = [_connect(port) for _ in range(5)]
    try:
        for _ in range(20):  # the excess: each refused, one log line for all of them
            assert _refused(port)
        # The other listeners still serve this address.
        assert _healthz(capped_node.http_port if listener != "http" else capped_node.api_port) != b""
        held.pop().close()
        deadline = time.monotonic() + 10
        while _refused(port):  # the slot is freed once the server sees the close
            assert time.monotonic() < deadline, "a freed slot was never reusable"
        if listener == "http":
            assert _healthz(port).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()
    lines = [x for x in capped_node.log().splitlines() if f"{listener} listener:" in x and "max_conns" in x]
    assert 1 <= len(lines) <= 2, lines  # rate-limited: not one line per refusal


def test_loopback_may_be_exempt_from_the_cap(node_factory: NodeFactory) -> None:
    node = node_factory(
        extra_env={
            "LIVERELAY_MEDIA_MAX_CONNS_PER_IP": "2",
            "LIVERELAY_MEDIA_CONN_CAP_EXEMPT_LOOPBACK": "true",
        }
    )
    held = [_connect(node.http_port) for _ in range(6)]
    try:
        assert _healthz(node.http_port).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()


def test_host_port_out_of_range_is_400_with_one_line(node: NodeProcess) -> None:
    with _connect(node.http_port) as sock:
        sock.sendall(b"GET /live/s.flv HTTP/1.1\r\nHost: x:99999999\r\nConnection: close\r\n\r\n")
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 400 "), got[:200]
    log = node.log()
    assert "Traceback" not in log
    assert sum("bad Host header" in x for x in log.splitlines()) == 1


async def _connect_refused(port: int, tc_url: str) -> tuple[int, list[StatusEvent], bool]:
    """Connect with `tc_url`; returns (bytes the server sent, statuses, closed)."""
    client = RtmpTestClient(port, "live", publish="cam")
    client.session.tc_url = tc_url
    await client.connect()
    assert client.reader is not None and client.writer is not None
    received = 0
    closed = False
    try:
        async with asyncio.timeout(15):
            while True:
                data = await client.reader.read(65536)
                if not data:
                    closed = True
                    break
                received += len(data)
                client.session.receive_data(data)
                out = client.session.data_to_send()
                if out:
                    client.writer.write(out)
    except OSError:
        closed = True
    finally:
        client.close()
    return received, client.statuses, closed


@pytest.mark.parametrize("host_len", [3000, 1 << 20])
async def test_long_tcurl_is_clipped_in_the_reply_and_the_log(
    node_factory: NodeFactory, host_len: int
) -> None:
    node = node_factory(extra_env={"LIVERELAY_MEDIA_DEFAULT_VHOST": ""})  # strict: unknown domains refused
    tc_url = f"rtmp://{'a' * host_len}.example:{node.rtmp_port}/live"
    received, _statuses, closed = await _connect_refused(node.rtmp_port, tc_url)
    assert closed
    # The handshake (3073 bytes) plus a short _error, not the megabyte echoed back.
    assert received < 3073 + 2048
    lines = node.log().splitlines()
    assert lines and max(map(len, lines)) < 2048
    if host_len == 3000:  # small enough for any command cap: refused for its domain, clipped
        assert any("unknown domain" in x and "...(+" in x for x in lines)


@pytest.fixture
def low_soft_nofile() -> Iterator[int]:
    """Lower this process's soft open-file limit so the node inherits a low one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 512
    if hard != resource.RLIM_INFINITY and hard <= low:
        pytest.fail(f"the hard open-file limit ({hard}) is too low to test raising the soft one")
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        yield low
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_soft_file_limit_raised_to_hard(node_factory: NodeFactory, low_soft_nofile: int) -> None:
    node = node_factory()
    limits = Path(f"/proc/{node.proc.pid}/limits").read_text()
    (line,) = [x for x in limits.splitlines() if x.startswith("Max open files")]
    soft, hard = line.split()[3:5]
    assert int(soft) > low_soft_nofile and soft == hard
    assert f"open-file limit: soft {soft} (was {low_soft_nofile}), hard {hard}" in node.log()


def test_viewers_outlive_the_listener_timeouts(
    fast_node: NodeProcess, ffmpeg: str, ffprobe: str, sample_flv: Path
) -> None:
    """The timeouts bound connections that do not do their part, not long plays: an
    HTTP-FLV viewer and an RTMP player keep receiving well past every timeout."""
    with ffmpeg_publish(ffmpeg, sample_flv, fast_node.rtmp_url("live", "long")):
        flv = _connect(fast_node.http_port)
        flv.settimeout(10)
        deadline = time.monotonic() + 20
        while True:  # the stream starts once ffmpeg's publish is up
            flv.sendall(b"GET /live/long.flv HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = flv.recv(65536)
            if head.startswith(b"HTTP/1.1 200"):
                break
            assert time.monotonic() < deadline, head[:200]
            flv.close()
            time.sleep(0.2)
            flv = _connect(fast_node.http_port)
            flv.settimeout(10)
        with flv:
            t0 = time.monotonic()
            late = 0
            while time.monotonic() - t0 < 5.0:  # past the 1 s head and 2 s idle timeouts
                data = flv.recv(65536)
                assert data, f"the viewer was closed after {time.monotonic() - t0:.1f}s"
                if time.monotonic() - t0 > 3.0:
                    late += len(data)
        assert late > 10_000
        # An RTMP player: 5 s of media (with the GOP burst, about 4 s of wall time) while
        # the idle timeout is 1.5 s; ffprobe fails if the node closes it early.
        probe = subprocess.run(
            [ffprobe, "-hide_banner", "-loglevel", "error", "-read_intervals", "%+5", "-count_frames",
             "-show_entries", "stream=codec_type,nb_read_frames", "-of", "json",
             fast_node.rtmp_url("live", "long")],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stderr
        counts = {s["codec_type"]: int(s["nb_read_frames"]) for s in json.loads(probe.stdout)["streams"]}
        assert counts["video"] >= 120, counts  # 30 fps: at least 4 s of video
