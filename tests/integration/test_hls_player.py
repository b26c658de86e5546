"""hls.js plays the node's classic HLS and LL-HLS in headless Chromium (real browser, real
node, real ffmpeg publisher), and keeps playing through a V3 origin failover.

Prints the live latency as wall clock minus hls.js `playingDate` (the PROGRAM-DATE-TIME the
node stamped at the receipt of the frame being shown). Goals: LL-HLS <= 1.5 s, classic <=
one segment + 2 s; the asserts are generous (a shared 2-core machine), the prints exact."""

from __future__ import annotations

import contextlib
import signal
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright
from tests.conftest import NodeProcess, ffmpeg_publish, free_port
from tests.integration.chromium import chromium_launch_options
from tests.integration.hls_helpers import with_hls
from tests.integration.hlsjs import (
    AUTOPLAY_FLAG,
    hlsjs_path,
    require_chromium,
    serve_page,
    wait_playing,
    watch,
)
from tests.integration.relay_helpers import (
    EDGE_CONFIG,
    await_status,
    register_vhost,
    rtmp_server,
    set_v3,
)

pytestmark = pytest.mark.timeout(150)

PLAY_S = 20.0
SEGMENT_S = 2.0  # sample_flv's GOP
LL_CONFIG = {"lowLatencyMode": True}
CLASSIC_CONFIG = {"lowLatencyMode": False}


@contextlib.asynccontextmanager
async def player(url: str, config: dict[str, Any]) -> AsyncIterator[Page]:
    require_chromium()
    hlsjs = hlsjs_path()
    port = free_port()
    runner = await serve_page(port, hlsjs, url, config)
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(**chromium_launch_options(AUTOPLAY_FLAG))
            try:
                page = await browser.new_page()
                await page.goto(f"http://127.0.0.1:{port}/")
                yield page
            finally:
                await browser.close()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("variant", ["ll", "classic"])
async def test_hlsjs_plays_without_a_stall(
    node_factory: Any, ffmpeg: str, sample_flv: Path, variant: str
) -> None:
    node: NodeProcess = node_factory("n", config=with_hls(""))
    path = "s/index.m3u8" if variant == "ll" else "s.m3u8"
    url = f"http://127.0.0.1:{node.http_port}/live/{path}"
    with ffmpeg_publish(ffmpeg, sample_flv, node.rtmp_url("live", "s")):
        async with player(url, LL_CONFIG if variant == "ll" else CLASSIC_CONFIG) as page:
            await wait_playing(page, timeout=30)
            report = await watch(page, PLAY_S)
    last = report.last
    latencies = report.latencies()
    assert latencies, "hls.js never reported a playingDate"
    print(
        f"\n{variant}: currentTime advanced {report.advanced_s():.2f}s in {PLAY_S:.0f}s; live latency "
        f"median {statistics.median(latencies):.3f}s, min {min(latencies):.3f}s, max {max(latencies):.3f}s; "
        f"stalls {last['waits']}; errors {last['errors']}"
    )
    assert not last["fatal"], last
    assert report.advanced_s() >= PLAY_S - 3, report.advanced_s()
    assert not last["waits"] and not last["waiting"], f"stalled: {last}"
    goal = 1.5 if variant == "ll" else SEGMENT_S + 2
    assert statistics.median(latencies) <= 2 * goal, (goal, latencies)


async def test_hlsjs_keeps_playing_through_an_origin_failover(
    tmp_path: Path, node_factory: Any, ffmpeg: str, sample_flv: Path
) -> None:
    first: NodeProcess = node_factory("first")
    second: NodeProcess = node_factory("second")
    edge: NodeProcess = node_factory("edge", config=with_hls(EDGE_CONFIG))
    register_vhost(edge)
    set_v3(edge, [rtmp_server(first), rtmp_server(second)])
    url = f"http://127.0.0.1:{edge.http_port}/live/s/index.m3u8"
    with (
        ffmpeg_publish(ffmpeg, sample_flv, first.rtmp_url("live", "s")),
        ffmpeg_publish(ffmpeg, sample_flv, second.rtmp_url("live", "s")),
    ):
        async with player(url, LL_CONFIG) as page:
            await wait_playing(page, timeout=30)
            await watch(page, 4)
            killed_at = time.monotonic()
            first.kill(signal.SIGKILL)  # the origin dies mid-stream
            rows = await await_status(
                edge, lambda r: r and r[0]["SourceIndex"] == 1 and r[0]["State"] == "up", 15, "failover"
            )
            switched_at = time.monotonic()
            report = await watch(page, 12)
    gap = switched_at - killed_at
    last = report.last
    print(
        f"\nfailover: origin gap <= {gap:.2f}s; stalls {last['waits']} ms; currentTime advanced "
        f"{report.advanced_s():.2f}s in 12s after the switch; errors {last['errors']}"
    )
    assert rows[0]["Switches"] == 1, rows
    assert not last["fatal"], last
    assert len(last["waits"]) <= 1 and not last["waiting"], last
    assert all(w / 1000 <= gap + 1.0 for w in last["waits"]), (last["waits"], gap)
    assert report.advanced_s() >= 12 - 3, report.advanced_s()
