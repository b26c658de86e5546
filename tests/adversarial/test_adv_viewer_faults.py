"""ISSUE-13 Faults, viewers and dying publishers, against a real node (the harness's, with
its own watched stream, API poller and /proc sampler; see harness.py). Each test states
the expected behaviour; each also runs inside the harness's attack guard (node alive,
its viewer never stalls, the API answers, open files back to baseline, bounded log).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from tests.adversarial.conftest import HarnessFactory, NodeFactory
from tests.adversarial.harness import (
    ADV_CONFIG,
    APP,
    WATCH_STREAM,
    Harness,
    origin_server,
    proc_rss,
    relay_rows,
    set_v3_origins,
)
from tests.conftest import NodeProcess, ffmpeg_publish

from liverelay.media.rtmp import MediaReceived, RtmpClientSession, RtmpError

pytestmark = [pytest.mark.adversarial, pytest.mark.timeout(180)]

SLACK_S = 5.0
# Viewer churn: the issue asks for a minute; the suite runs CHURN_S (LIVERELAY_TEST_CHURN_S=60
# for the full minute).
CHURN_S = float(os.environ.get("LIVERELAY_TEST_CHURN_S", "20"))
CHURN_PER_S = 50


def metric(node: NodeProcess, name: str) -> float:
    """Sum of one metric's samples from the node's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total


def with_media(**media: object) -> str:
    lines = "".join(f"{k} = {v}\n" for k, v in media.items())
    assert "[media]\n" in ADV_CONFIG
    return ADV_CONFIG.replace("[media]\n", "[media]\n" + lines, 1)


def flv_request(node: NodeProcess, stream: str) -> bytes:
    # Connection: close - the end of the stream is then the end of the connection (with
    # keep-alive the node ends the chunked body and waits for the next request).
    return f"GET /{APP}/{stream}.flv HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()


# ---- a viewer that never reads ------------------------------------------------------------


def test_http_flv_viewer_that_never_reads_is_bounded_dropped_and_counted(
    harness_factory: HarnessFactory,
) -> None:
    """An HTTP-FLV viewer that sends its request and never reads: what the node holds for it
    is bounded (kernel send buffer + media.viewer_queue_bytes), then it skips to keyframes
    and, still not reading after media.viewer_max_skips skips, is dropped - the node closes
    the socket and counts it in liverelay_viewer_drops; the harness's viewer of the same
    stream never stalls and the node's RSS does not grow with it."""
    h: Harness = harness_factory(config=with_media(viewer_queue_bytes=128 * 1024, viewer_max_skips=1))
    node = h.node
    drops0 = metric(node, "liverelay_viewer_drops_total")
    rss0 = proc_rss(h.pid)
    with h.attack_guard("HTTP-FLV viewer that never reads", max_log_lines=10) as guard:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
        try:
            sock.connect(("127.0.0.1", node.http_port))
            sock.sendall(flv_request(node, WATCH_STREAM))
            deadline = time.monotonic() + 60
            dropped = False
            for _ in range(600):
                if metric(node, "liverelay_viewer_drops_total") > drops0:
                    dropped = True
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            took = time.monotonic() - guard.started
            guard.note(f"dropped after {took:.1f}s")
            assert dropped, "the node never dropped the viewer that does not read"
            assert proc_rss(h.pid) - rss0 < 32 * 1024 * 1024, "RSS grew with one stalled viewer"
            # The node closed the socket: draining what the kernel holds ends in EOF/RST.
            sock.settimeout(10)
            received = 0
            for _ in range(100_000):
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                received += len(data)
            guard.note(f"the stalled viewer had {received} bytes waiting in its kernel buffers")
        finally:
            sock.close()
    assert metric(node, "liverelay_viewer_drops_total") == drops0 + 1


# ---- churn ----------------------------------------------------------------------------------


async def _flv_blip(port: int, request: bytes) -> bool:
    """Join over HTTP-FLV, read the response head and some media, leave. True if it played."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                return False
            await reader.readexactly(13 + 1024)  # FLV header + some tags
        return True
    finally:
        writer.transport.abort()


async def _rtmp_blip(port: int) -> bool:
    """Join over RTMP, play until the first media message, leave. True if it played."""
    session = RtmpClientSession(app=APP, tc_url=f"rtmp://127.0.0.1:{port}/{APP}", play=WATCH_STREAM)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        session.initiate()
        writer.write(session.data_to_send())
        async with asyncio.timeout(5):
            for _ in range(1000):
                data = await reader.read(65536)
                if not data:
                    return False
                events = session.receive_data(data)
                out = session.data_to_send()
                if out:
                    writer.write(out)
                if any(isinstance(e, MediaReceived) for e in events):
                    return True
        return False
    except RtmpError:
        return False
    finally:
        session.close()
        writer.transport.abort()


def test_viewers_joining_and_leaving_fifty_times_a_second(harness_factory: HarnessFactory) -> None:
    """Viewers (HTTP-FLV and RTMP, alternately) join and leave 50 times a second for
    CHURN_S seconds: every one of them plays, the harness's long-lived viewer never stalls,
    the API keeps answering, and afterwards nothing is left behind: the viewer gauge is back
    to the one long-lived viewer, open files are back to their baseline, RSS did not grow
    with the number of joins."""
    h: Harness = harness_factory()
    node = h.node
    request = flv_request(node, WATCH_STREAM)
    viewers0 = metric(node, "liverelay_viewers")
    rss0 = proc_rss(h.pid)
    total = int(CHURN_S * CHURN_PER_S)
    # Each join/leave may log one line; nothing more.
    with h.attack_guard(
        f"{total} viewer joins and leaves in {CHURN_S:g}s", max_log_lines=total + 50
    ) as guard:

        async def churn() -> list[bool]:
            tasks: list[asyncio.Task[bool]] = []
            started = time.monotonic()
            for i in range(total):
                due = started + i / CHURN_PER_S
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                blip = _flv_blip(node.http_port, request) if i % 2 else _rtmp_blip(node.rtmp_port)
                tasks.append(asyncio.get_running_loop().create_task(blip))
            results = await asyncio.gather(*tasks, return_exceptions=True)
            return [r is True for r in results]

        played = asyncio.run(churn())
        guard.note(f"{sum(played)}/{total} churn viewers played")
        assert sum(played) >= 0.99 * total, f"only {sum(played)}/{total} churn viewers played"
    # The guard waited for open files to come back; the gauge and RSS must have too.
    assert metric(node, "liverelay_viewers") == viewers0
    assert proc_rss(h.pid) - rss0 < 32 * 1024 * 1024


# ---- a publisher dies with 100 viewers attached -----------------------------------------------

N_VIEWERS = 100


class ByteViewer:
    """A light HTTP-FLV viewer: counts bytes, notes when they last came and when EOF came."""

    def __init__(self, port: int, request: bytes) -> None:
        self.port = port
        self.request = request
        self.bytes = 0
        self.last_at = 0.0
        self.eof_at: float | None = None
        self.status = b""
        self.task: asyncio.Task[None] | None = None

    def start(self) -> ByteViewer:
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(self.request)
            self.status = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n", 1)[0]
            for _ in range(10_000_000):
                data = await reader.read(65536)
                if not data:
                    break
                self.bytes += len(data)
                self.last_at = time.monotonic()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.eof_at = time.monotonic()
            writer.transport.abort()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def _until(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.05) + 2):
        if pred():
            return
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_publisher_dies_with_a_hundred_viewers(
    harness_factory: HarnessFactory, ffmpeg: str, sample_flv: Path
) -> None:
    """ffmpeg publishes a plain stream, 100 HTTP-FLV viewers watch it, ffmpeg is SIGKILLed:
    every viewer gets EOF (the node ends the stream and closes them) within
    media.idle_timeout_s of the kill, and once they are gone open files are back to the
    baseline (the guard checks) and the viewer gauge is back to the harness's one viewer."""
    idle_s = 5.0
    h: Harness = harness_factory(config=with_media(idle_timeout_s=idle_s))
    node = h.node
    viewers0 = metric(node, "liverelay_viewers")
    request = flv_request(node, "dies")
    with (
        h.attack_guard("a publisher with 100 viewers dies", max_log_lines=N_VIEWERS + 30),
        ffmpeg_publish(ffmpeg, sample_flv, node.rtmp_url(APP, "dies")) as publisher,
    ):

        async def scenario() -> None:
            await _wait_playable(node.http_port, request)
            viewers = [ByteViewer(node.http_port, request).start() for _ in range(N_VIEWERS)]
            try:
                await _until(lambda: all(v.bytes > 150_000 for v in viewers), 20, "all 100 viewers playing")
                assert all(v.status.endswith(b"200 OK") for v in viewers)
                killed = time.monotonic()
                publisher.send_signal(signal.SIGKILL)
                await _until(
                    lambda: all(v.eof_at is not None for v in viewers), idle_s + SLACK_S, "EOF everywhere"
                )
                late = max(v.eof_at or 0.0 for v in viewers) - killed
                assert late <= idle_s + 1.0, f"the last viewer got EOF {late:.1f}s after the publisher died"
            finally:
                for v in viewers:
                    await v.close()

        asyncio.run(scenario())
    assert metric(node, "liverelay_viewers") == viewers0


def test_origin_publisher_dies_with_a_hundred_relay_viewers(
    harness_factory: HarnessFactory, node_factory_adv: NodeFactory, ffmpeg: str, sample_flv: Path
) -> None:
    """Two origins (real nodes) carry the same stream; the edge (the harness's node) pulls
    it play-triggered from the first; 100 HTTP-FLV viewers watch the edge. The first
    origin's publisher is SIGKILLed: the edge switches to the second origin and every one
    of the 100 viewers stays connected and keeps receiving media; once they leave, the
    edge's open files are back to the baseline (the guard checks) and nothing is left."""
    h: Harness = harness_factory()
    edge = h.node
    origins = [node_factory_adv("origin-a"), node_factory_adv("origin-b")]
    viewers0 = metric(edge, "liverelay_viewers")
    request = flv_request(edge, "relayed")
    with (
        ffmpeg_publish(ffmpeg, sample_flv, origins[0].rtmp_url(APP, "relayed")) as publisher_a,
        ffmpeg_publish(ffmpeg, sample_flv, origins[1].rtmp_url(APP, "relayed")),
        h.attack_guard("the origin's publisher dies under 100 relay viewers", max_log_lines=N_VIEWERS + 30),
    ):
        set_v3_origins(edge, [origin_server("rtmp", o.rtmp_port) for o in origins])

        async def scenario() -> None:
            await _wait_playable(origins[1].http_port, flv_request(origins[1], "relayed"))
            await _wait_playable(edge.http_port, request)
            viewers = [ByteViewer(edge.http_port, request).start() for _ in range(N_VIEWERS)]
            try:
                await _until(lambda: all(v.bytes > 150_000 for v in viewers), 20, "all 100 viewers playing")
                rows = await asyncio.to_thread(relay_rows, edge, "play")
                assert rows and rows[0]["SourceIndex"] == 0, rows
                publisher_a.send_signal(signal.SIGKILL)
                killed = time.monotonic()
                marks = [v.bytes for v in viewers]
                await _until(
                    lambda: all(v.bytes > m + 100_000 for v, m in zip(viewers, marks, strict=True)),
                    20,
                    "media again on every viewer",
                )
                assert all(v.eof_at is None for v in viewers), "a relay viewer was disconnected"
                rows = await asyncio.to_thread(relay_rows, edge, "play")
                assert rows[0]["SourceIndex"] == 1, rows
                print(
                    f"\nall 100 relay viewers got media again {time.monotonic() - killed:.1f}s after the kill"
                )
            finally:
                for v in viewers:
                    await v.close()

        asyncio.run(scenario())
        # The pull lingers (relay.linger_s) after the last viewer left, then ends.
        deadline = time.monotonic() + 15
        while relay_rows(edge, "play") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not relay_rows(edge, "play"), "the relay outlived its viewers and its linger"
    assert metric(edge, "liverelay_viewers") == viewers0


async def _wait_playable(port: int, request: bytes, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.25) + 2):
        try:
            if await _flv_blip(port, request):
                return
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    raise AssertionError(f"nothing playable on port {port} within {timeout}s")
