"""HLS output end to end: real nodes (subprocesses), ffmpeg publishing, ffprobe as the player.

ffprobe decodes video and audio from the classic HLS URL of a published stream, of a
V3-pulled stream (the HLS request itself triggers the pull) and of a V4-relayed stream;
the frames decoded match what was published within one segment."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import m3u8
import pytest
from tests.conftest import NodeProcess, ffmpeg_publish, start_node
from tests.integration.hls_helpers import (
    HLS_CONFIG,
    classic_url,
    ffprobe_counts,
    get,
    segments_vs_frames,
    wait_master,
    with_hls,
)
from tests.integration.relay_helpers import (
    EDGE_CONFIG,
    await_status,
    register_vhost,
    relay_status,
    rtmp_server,
    set_v3,
)

pytestmark = pytest.mark.timeout(120)

FPS = 30  # sample_flv: 10 s of 30 fps video, 2 s GOP, AAC 44.1 kHz
AAC_FPS = 44100 / 1024
SEGMENT_S = 2.0


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, Any]]:
    started: list[NodeProcess] = []

    def node(name: str, config: str | None = None) -> NodeProcess:
        n = start_node(tmp_path / name, config=config)
        started.append(n)
        return n

    yield {"node": node}
    for n in started:
        n.kill(signal.SIGTERM)


def _client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))


async def test_published_stream_every_frame_over_classic_hls(
    nodes: dict[str, Any], ffmpeg: str, ffprobe: str, sample_flv: Path
) -> None:
    node = nodes["node"]("n", config=HLS_CONFIG)
    url = classic_url(node.http_port, "live", "pub")
    with ffmpeg_publish(ffmpeg, sample_flv, node.rtmp_url("live", "pub"), loop=False):
        async with _client() as client:
            await wait_master(client, url, timeout=15)
        # From the first segment (live_start_index 0) to EXT-X-ENDLIST once the publisher ends.
        # ffprobe's own log of what it fetched goes to `trace` (shown if the count is short).
        trace = node.data_dir / "ffprobe.log"
        counts = await asyncio.to_thread(
            ffprobe_counts,
            ffprobe,
            url,
            timeout=60,
            extra=["-live_start_index", "0", "-report"],
            env={"FFREPORT": f"file={trace}:level=40"},
        )
    print(f"published 10 s: decoded {counts}")
    assert counts["codecs"] == {"video": "h264", "audio": "aac"}, counts
    # Everything published, within one segment (the muxer joins at the GOP cache's keyframe).
    why = f"{counts}\n{_fetches(trace)}\n{node.log()[-3000:]}"
    assert abs(counts["video"] - 10 * FPS) <= SEGMENT_S * FPS, why
    assert abs(counts["audio"] - 10 * AAC_FPS) <= SEGMENT_S * AAC_FPS + 2, why


def _fetches(trace: Path) -> str:
    """What ffprobe opened and what went wrong, from its -report log."""
    if not trace.exists():
        return "(no ffprobe report)"
    keep = ("Opening", "rror", "ailed", "arning", "skipping", "EOF", "keepalive")
    lines = [ln for ln in trace.read_text(errors="replace").splitlines() if any(k in ln for k in keep)]
    return "\n".join(lines[-60:])


async def test_a_player_slower_than_the_linger_keeps_its_playlist(
    nodes: dict[str, Any], ffmpeg: str, sample_flv: Path
) -> None:
    """A player reloading less often than `hls_linger_s` (2 s here) but within its session
    timeout (3 s) keeps its variant: its playlist only moves forward. (The variant was dropped
    under it and made again on the next reload: that reload was held for two new segments and
    the sequence numbers started over at 0, so ffprobe stopped reading.)"""
    node = nodes["node"]("n", config=HLS_CONFIG)
    url = classic_url(node.http_port, "live", "slow")
    with ffmpeg_publish(ffmpeg, sample_flv, node.rtmp_url("live", "slow")):
        async with _client() as client:
            media = await wait_master(client, url, timeout=15)
            seen: list[tuple[int, int]] = []
            for _ in range(4):
                status, body, _ = await get(client, media)
                assert status == 200, (status, body)
                playlist = m3u8.loads(body.decode())
                first = playlist.media_sequence or 0
                seen.append((first, first + len(playlist.segments)))
                await asyncio.sleep(2.6)  # the slow player: longer than the linger, within the session
    print(f"slow player saw (first, end) sequence numbers {seen}")
    for before, after in itertools.pairwise(seen):
        assert after[0] >= before[0] and after[1] >= before[1], seen
    assert seen[-1][1] >= seen[0][1] + 2, seen  # ~8 s of stream went by: new segments were listed


async def _check_live_hls(url: str, ffprobe: str, tmp: Path) -> None:
    """ffprobe decodes both tracks from the URL, and the listed segments hold the frames
    their durations say (within one segment)."""
    counts = await asyncio.to_thread(
        ffprobe_counts, ffprobe, url, timeout=40, extra=["-read_intervals", "%+4"]
    )
    assert counts["codecs"] == {"video": "h264", "audio": "aac"}, counts
    assert counts["video"] > 30 and counts["audio"] > 40, counts
    async with _client() as client:
        media = await wait_master(client, url, timeout=15)
        listed_s, frames = await segments_vs_frames(client, media, ffprobe, tmp, FPS)
    print(f"{url}: segments of {listed_s:.3f} s hold {frames}")
    assert abs(frames["video"] - listed_s * FPS) <= SEGMENT_S * FPS, (listed_s, frames)
    assert abs(frames["audio"] - listed_s * AAC_FPS) <= SEGMENT_S * AAC_FPS + 2, (listed_s, frames)


async def test_v3_pull_triggered_by_an_hls_request(
    nodes: dict[str, Any], ffmpeg: str, ffprobe: str, sample_flv: Path, tmp_path: Path
) -> None:
    origin = nodes["node"]("origin")
    edge = nodes["node"]("edge", config=with_hls(EDGE_CONFIG))
    register_vhost(edge)
    set_v3(edge, [rtmp_server(origin)])
    with ffmpeg_publish(ffmpeg, sample_flv, origin.rtmp_url("live", "s")):
        # The origin has the stream once its own HLS answers (it serves any stream it has).
        async with _client() as client:
            await wait_master(client, classic_url(origin.http_port, "live", "s"), timeout=15)
            # No pull runs on the edge yet: the HLS request starts it.
            assert relay_status(edge) == []
            status, body, _ = await get(client, classic_url(edge.http_port, "live", "s"))
            assert status == 200, body
        await _check_live_hls(classic_url(edge.http_port, "live", "s"), ffprobe, tmp_path)
        rows = await await_status(edge, lambda r: len(r) == 1, 5, "the play-triggered pull")
        assert rows[0]["Viewers"] >= 1, rows
        # Nobody fetches any more: the sessions expire, the muxer lingers out, then the pull.
        await await_status(edge, lambda r: r == [], 3 + 2 + 2 + 10, "the pull to linger out")
        assert "hls muxer of" in edge.log()


async def test_v4_relayed_stream(
    nodes: dict[str, Any], ffmpeg: str, ffprobe: str, sample_flv: Path, tmp_path: Path
) -> None:
    from tests.integration.test_relay_v4 import RELAY_CONFIG, VHOST, create_fixed, setup_domains, wait_up

    origin = nodes["node"]("origin")
    relay = nodes["node"]("relay", config=with_hls(RELAY_CONFIG + f'\n[media]\ndefault_vhost = "{VHOST}"\n'))
    with ffmpeg_publish(ffmpeg, sample_flv, origin.rtmp_url("live", "src")):
        service = setup_domains(relay)
        create_fixed(service, "fixed", [origin.rtmp_url("live", "src")])
        await asyncio.to_thread(wait_up, service, "fixed")
        await _check_live_hls(classic_url(relay.http_port, "live", "fixed"), ffprobe, tmp_path)


async def test_missing_stream_is_404_within_the_start_timeout(nodes: dict[str, Any]) -> None:
    node = nodes["node"]("n", config=HLS_CONFIG)
    async with _client() as client:
        started = time.monotonic()
        for url in (
            classic_url(node.http_port, "live", "nope"),
            f"http://127.0.0.1:{node.http_port}/live/nope/index.m3u8",
        ):
            status, _, _ = await get(client, url)
            assert status == 404
        assert time.monotonic() - started < 10
        with contextlib.suppress(Exception):
            status, _, _ = await get(client, f"http://127.0.0.1:{node.http_port}/live/nope/seg0.ts")
            assert status == 404


async def test_cors_origin_list(nodes: dict[str, Any]) -> None:
    """With a configured origin list, only listed origins get Access-Control-Allow-Origin."""
    node = nodes["node"]("n", config='[media]\nhls_cors_origins = ["http://ok.test"]\n')
    url = classic_url(node.http_port, "live", "nope")
    async with _client() as client:
        async with client.get(url, headers={"Origin": "http://ok.test"}) as resp:
            assert resp.status == 404
            assert resp.headers["Access-Control-Allow-Origin"] == "http://ok.test"
            assert "Origin" in resp.headers["Vary"]
        async with client.get(url, headers={"Origin": "http://evil.test"}) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers
        async with client.options(url, headers={"Origin": "http://ok.test"}) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == "http://ok.test"
