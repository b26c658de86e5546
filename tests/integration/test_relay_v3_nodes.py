"""Play-triggered relays (V3) end to end: origin and edge nodes as real subprocesses,
ffmpeg publishing, ffprobe and a Python HTTP-FLV reader as viewers, configured through
signed API calls with our SDK. Everything on 127.0.0.1."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from bench.peers import metric
from tests.conftest import NodeProcess, free_port
from tests.integration.relay_helpers import (
    EDGE_CONFIG,
    FlvViewer,
    await_status,
    delete_v3,
    ffprobe_video,
    flv_server,
    relay_status,
    rtmp_server,
    serve_app,
    set_v3,
    wait_status,
    webhook_receiver,
)
from tests.integration.relay_nodes import RelayNodes, relay_nodes, wait_stream_served

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[RelayNodes]:
    """Nodes and publishers for the test; everything is stopped at teardown."""
    with relay_nodes(tmp_path) as n:
        yield n


@pytest.fixture(scope="module")
def live_origin(
    tmp_path_factory: pytest.TempPathFactory, ffmpeg: str, sample_flv: Path
) -> Iterator[NodeProcess]:
    """One origin publishing live/s for the tests that only read from it (none kills it or
    counts its viewers): a node start and a publisher less per test."""
    with relay_nodes(tmp_path_factory.mktemp("live-origin")) as nodes:
        yield nodes.origin(ffmpeg, sample_flv)


async def edge_relaying_origin(
    nodes: RelayNodes,
    origin: NodeProcess,
    *,
    before: tuple[dict[str, Any], ...] = (),
    server: Callable[[NodeProcess], dict[str, Any]] = rtmp_server,
) -> NodeProcess:
    """An edge whose V3 group lists `before`, then `origin` (publishing live/s); returned
    once the origin serves the stream."""
    edge = nodes.edge()
    set_v3(edge, [*before, server(origin)])
    await wait_stream_served(origin)
    return edge


@pytest.mark.parametrize("protocol", ["rtmp", "flv"])
async def test_edge_serves_the_origin_stream_over_rtmp_and_flv(
    nodes: RelayNodes, live_origin: NodeProcess, ffprobe: str, protocol: str
) -> None:
    server = rtmp_server if protocol == "rtmp" else flv_server
    edge = await edge_relaying_origin(nodes, live_origin, server=server)

    for url in (edge.rtmp_url("live", "s"), edge.flv_url("live", "s")):
        info = await asyncio.to_thread(ffprobe_video, ffprobe, url)
        assert (info["codec_name"], info["width"], info["height"]) == ("h264", 640, 360), info
        assert info["frames"] > 10, info
    rows = relay_status(edge)
    assert len(rows) == 1
    row = rows[0]
    assert (row["Type"], row["App"], row["Stream"], row["SourceIndex"]) == ("play", "live", "s", 0)
    assert row["SourceUrl"].startswith("rtmp://" if protocol == "rtmp" else "http://")
    assert row["Bytes"] > 0 and row["Frames"] > 0 and row["UpSince"]


async def test_first_origin_dead_second_serves(nodes: RelayNodes, live_origin: NodeProcess) -> None:
    dead = free_port()  # nothing listens there: connection refused
    origin = live_origin
    edge = await edge_relaying_origin(nodes, origin, before=(rtmp_server(dead),))

    viewer = await FlvViewer(edge.flv_url("live", "s")).start()
    try:
        await viewer.wait_video(10, timeout=8)
        first_video = viewer.first_video_delay()
    finally:
        await viewer.close()
    rows = relay_status(edge)
    assert rows[0]["SourceIndex"] == 1 and rows[0]["Attempts"] == 2
    assert rows[0]["LastError"].startswith("connect")

    # The same cold start with only the live origin configured, for the difference.
    set_v3(edge, [rtmp_server(origin)])
    await await_status(edge, lambda r: r == [], 6, "the first pull to linger out")
    viewer = await FlvViewer(edge.flv_url("live", "s")).start()
    try:
        await viewer.wait_video(10, timeout=8)
        direct = viewer.first_video_delay()
    finally:
        await viewer.close()
    print(
        f"\ncold start to first video frame: first origin refused {first_video * 1000:.0f} ms, "
        f"only the live origin {direct * 1000:.0f} ms (extra {(first_video - direct) * 1000:.0f} ms)"
    )


async def test_every_origin_down_viewer_gets_its_error_within_the_start_timeout(
    nodes: RelayNodes, ffprobe: str
) -> None:
    edge = nodes.edge()
    set_v3(edge, [rtmp_server(free_port()), flv_server(free_port())])
    started = time.monotonic()
    viewer = await FlvViewer(edge.flv_url("live", "s")).start()
    await asyncio.wait_for(viewer.eof.wait(), 10)
    elapsed = time.monotonic() - started
    await viewer.close()
    assert viewer.status == 404
    # First round, not start_timeout_s (6 s): a generous bound below it.
    assert elapsed < 5.0, f"refused origins took {elapsed:.1f}s to report"
    started = time.monotonic()
    proc = await asyncio.to_thread(
        subprocess.run,
        [ffprobe, "-v", "error", "-rw_timeout", "8000000", edge.rtmp_url("live", "s")],
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode != 0
    assert time.monotonic() - started < 6.0  # EDGE_CONFIG start_timeout_s
    assert relay_status(edge) == []
    print(f"\nall origins refused: HTTP-FLV 404 after {elapsed * 1000:.0f} ms")


async def test_midstream_failover_and_failback_without_reconnecting(
    nodes: RelayNodes, ffmpeg: str, sample_flv: Path
) -> None:
    first = nodes.origin(ffmpeg, sample_flv, "first")
    second = nodes.origin(ffmpeg, sample_flv, "second")
    edge = nodes.edge()
    set_v3(edge, [rtmp_server(first), rtmp_server(second)])
    await wait_stream_served(first)
    await wait_stream_served(second)

    viewer = await FlvViewer(edge.flv_url("live", "s")).start()
    try:
        await viewer.wait_video(60, timeout=10)
        first_ports = (first.api_port, first.http_port, first.rtmp_port)
        killed_at = time.monotonic()
        first.kill(signal.SIGKILL)  # the origin dies mid-stream
        before = len(viewer.video())
        await viewer.wait_video(before + 90, timeout=12)  # 3 s more video, same connection
        gap = viewer.max_video_gap(since=killed_at - 0.5)
        rows = relay_status(edge)
        assert rows[0]["SourceIndex"] == 1 and rows[0]["Switches"] == 1, rows
        assert not viewer.eof.is_set()
        print(f"\nfailover: largest video gap at the viewer {gap * 1000:.0f} ms")
        assert gap < 6.0

        # The first origin comes back on its old address: fail-back at a keyframe.
        revived = nodes.node("first-again", ports=first_ports)
        nodes.publish(ffmpeg, sample_flv, revived.rtmp_url("live", "s"))
        rows = await await_status(
            edge, lambda r: r and r[0]["SourceIndex"] == 0 and r[0]["State"] == "up", 20, "fail-back"
        )
        assert rows[0]["Switches"] == 2
        before = len(viewer.video())
        await viewer.wait_video(before + 60, timeout=10)
        assert not viewer.eof.is_set(), "the viewer was disconnected"
        viewer.assert_monotonic()
    finally:
        await viewer.close()


async def test_simultaneous_viewers_one_pull_and_linger(
    nodes: RelayNodes, ffmpeg: str, sample_flv: Path
) -> None:
    origin = nodes.origin(ffmpeg, sample_flv)  # its own: the test counts the origin's viewers
    edge = await edge_relaying_origin(nodes, origin)

    viewers = [FlvViewer(edge.flv_url("live", "s")) for _ in range(2)]
    await asyncio.gather(*(v.start() for v in viewers))
    await asyncio.gather(*(v.wait_video(10, timeout=8) for v in viewers))
    rows = relay_status(edge)
    assert len(rows) == 1 and rows[0]["Attempts"] == 1 and rows[0]["Viewers"] == 2, rows
    # The origin sees exactly one viewer: the edge's single pull.
    text = await scrape(f"http://127.0.0.1:{origin.http_port}/metrics")
    assert metric(text, 'liverelay_viewers{protocol="rtmp"}') == 1
    for v in viewers:
        await v.close()
    await await_status(edge, lambda r: r and r[0]["State"] == "lingering", 3, "lingering")

    late = await FlvViewer(edge.flv_url("live", "s")).start()  # arrives during the 2 s linger
    await late.wait_video(5, timeout=5)
    rows = relay_status(edge)
    assert rows[0]["Attempts"] == 1 and rows[0]["State"] == "up", rows  # same pull
    await late.close()
    left = time.monotonic()
    await await_status(edge, lambda r: r == [], 6, "pull stopped after the linger")
    assert time.monotonic() - left >= 1.5


async def test_relay_source_params_reach_the_origin(nodes: RelayNodes, sample_flv: Path) -> None:
    """An aiohttp HTTP-FLV origin records what the edge asked for and serves the sample."""
    seen: list[tuple[str, dict[str, str]]] = []
    data = sample_flv.read_bytes()

    async def serve(request: web.Request) -> web.StreamResponse:
        seen.append((request.path, dict(request.query)))
        resp = web.StreamResponse(headers={"Content-Type": "video/x-flv"})
        await resp.prepare(request)
        for i in range(0, len(data), 64 * 1024):  # ~10 s of media in ~2.5 s
            await resp.write(data[i : i + 64 * 1024])
            await asyncio.sleep(0.1)
        return resp

    app = web.Application()
    app.router.add_get("/{app}/{stream}", serve)
    async with serve_app(app) as port:
        edge = nodes.edge()
        set_v3(edge, [flv_server(port, {"domain": "live.push.net", "k": "a b&c"})])
        viewer = await FlvViewer(edge.flv_url("live", "s") + "?token=xyz").start()
        await viewer.wait_video(5, timeout=8)
        await viewer.close()
        assert seen, "the origin was never asked"
        path, query = seen[0]
        assert path == "/live/s.flv"
        assert query == {"token": "xyz", "domain": "live.push.net", "k": "a b&c"}


async def test_config_update_moves_the_pull_and_delete_stops_it(
    nodes: RelayNodes, ffmpeg: str, sample_flv: Path
) -> None:
    first = nodes.origin(ffmpeg, sample_flv, "first")
    second = nodes.origin(ffmpeg, sample_flv, "second")
    edge = nodes.edge()
    set_v3(edge, [rtmp_server(first)])
    await wait_stream_served(first)
    await wait_stream_served(second)

    viewer = await FlvViewer(edge.flv_url("live", "s")).start()
    try:
        await viewer.wait_video(20, timeout=8)
        set_v3(edge, [rtmp_server(second)])  # the origin in use is gone from the config
        rows = await await_status(
            edge,
            lambda r: r and f":{second.rtmp_port}/" in r[0]["SourceUrl"] and r[0]["State"] == "up",
            8,
            "move",
        )
        assert rows[0]["Switches"] == 1
        before = len(viewer.video())
        await viewer.wait_video(before + 30, timeout=8)
        assert not viewer.eof.is_set()

        delete_v3(edge)
        await asyncio.wait_for(viewer.eof.wait(), 5)  # the pull stopped: viewers get EOF
        wait_status(edge, lambda r: r == [], 5, "no pulls")
    finally:
        await viewer.close()


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        return await resp.text()


async def test_webhooks_and_metrics_report_the_pull(nodes: RelayNodes, live_origin: NodeProcess) -> None:
    events: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        events.append(await request.json())
        return web.Response(status=204)

    async with webhook_receiver(hook) as hook_url:
        origin = live_origin
        config = EDGE_CONFIG + f'\n[webhook]\nurl = "{hook_url}"\ntimeout_s = 2.0\n'
        edge = nodes.edge(config)
        set_v3(edge, [rtmp_server(free_port()), rtmp_server(origin)])
        await wait_stream_served(origin)

        viewer = await FlvViewer(edge.flv_url("live", "s")).start()
        await viewer.wait_video(30, timeout=8)
        text = await scrape(f"http://127.0.0.1:{edge.http_port}/metrics")
        assert metric(text, 'liverelay_relay_pulls{type="play"}') == 1
        assert metric(text, "liverelay_relay_starts_total") == 1
        assert metric(text, 'liverelay_relay_failures_total{reason="connect"}') == 1
        assert metric(text, "liverelay_relay_time_to_first_frame_seconds_count") == 1
        assert metric(text, "liverelay_relay_bytes_in_total") > 0
        await viewer.close()

        deadline = time.monotonic() + 8  # linger 2 s, then "stopped" is posted
        while not any(e["Event"] == "stopped" for e in events) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        names = [e["Event"] for e in events]
        assert names == ["origin_failed", "relay_started", "stopped"], events
        failed, started, stopped = events
        assert failed["Reason"] == "connect" and failed["SourceIndex"] == 0
        assert started["SourceIndex"] == 1 and started["TimeToFirstFrameMs"] >= 0
        assert stopped["Reason"] == "stopped: no viewers"
        for e in events:
            assert (e["Type"], e["Vhost"], e["App"], e["Stream"]) == ("play", "vh.test", "live", "s")
            assert e["Time"].endswith("Z")
        text = await scrape(f"http://127.0.0.1:{edge.http_port}/metrics")
        assert metric(text, 'liverelay_relay_pulls{type="play"}') == 0


async def test_a_local_publisher_takes_over_a_relayed_stream(
    nodes: RelayNodes, live_origin: NodeProcess, ffmpeg: str, sample_flv: Path
) -> None:
    edge = await edge_relaying_origin(nodes, live_origin)

    viewer = await FlvViewer(edge.flv_url("live", "s")).start()
    try:
        await viewer.wait_video(10, timeout=8)
        assert len(relay_status(edge)) == 1
        nodes.publish(ffmpeg, sample_flv, edge.rtmp_url("live", "s"))  # a publisher pushes to the edge
        await await_status(edge, lambda r: r == [], 8, "the relay gave way")
        await wait_stream_served(edge)  # the edge now serves the publisher's stream
    finally:
        await viewer.close()


async def test_origin_that_accepts_but_never_answers_is_skipped_after_the_connect_timeout(
    nodes: RelayNodes, live_origin: NodeProcess
) -> None:
    """nginx-rtmp `pull` hangs its viewers for 60 s on such an origin (anchors-measured.md)."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # keep the connection open, never answer the handshake

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    silent_port = server.sockets[0].getsockname()[1]
    try:
        edge = await edge_relaying_origin(nodes, live_origin, before=(rtmp_server(silent_port),))
        viewer = await FlvViewer(edge.flv_url("live", "s")).start()
        try:
            await viewer.wait_video(10, timeout=8)
            delay = viewer.first_video_delay()
        finally:
            await viewer.close()
        assert accepted, "the silent origin was not tried first"
        assert 1.8 <= delay < 5.0, delay  # EDGE_CONFIG connect_timeout_s = 2
        assert relay_status(edge)[0]["LastError"].startswith("timeout")
        print(f"\nsilent first origin: first video after {delay * 1000:.0f} ms (connect timeout 2 s)")
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
