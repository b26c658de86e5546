"""Helpers for the HLS output tests: fetch playlists and segments like a player, count frames."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import m3u8
from tests.integration.relay_helpers import run_ffprobe

# Short HLS timers so sessions and muxers end within a test.
HLS_MEDIA = "hls_session_timeout_s = 3.0\nhls_linger_s = 2.0\n"
HLS_CONFIG = "[media]\n" + HLS_MEDIA


def with_hls(config: str) -> str:
    """`config` (TOML) with the short HLS timers added to its [media] table (or a new one)."""
    if "[media]\n" in config:
        return config.replace("[media]\n", "[media]\n" + HLS_MEDIA, 1)
    return config + "\n" + HLS_CONFIG


def classic_url(port: int, app: str, stream: str) -> str:
    return f"http://127.0.0.1:{port}/{app}/{stream}.m3u8"


def ll_url(port: int, app: str, stream: str) -> str:
    return f"http://127.0.0.1:{port}/{app}/{stream}/index.m3u8"


async def get(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, float]:
    async with session.get(url, headers=headers) as resp:
        body = await resp.read()
        return resp.status, body, time.monotonic()


async def wait_master(session: aiohttp.ClientSession, url: str, timeout: float) -> str:
    """The master playlist once the node serves one (the stream may still be starting);
    returns the media playlist's absolute URL (with this viewer's session token)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        status, body, _ = await get(session, url)
        if status == 200:
            master = m3u8.loads(body.decode())
            assert master.is_variant, body
            return urljoin(url, master.playlists[0].uri)
        last = status
        await asyncio.sleep(0.3)
    raise AssertionError(f"no master playlist at {url} within {timeout}s (last status {last})")


def ffprobe_counts(
    ffprobe: str,
    url: str,
    *,
    timeout: float,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Frames ffprobe decodes per stream type from `url`: {"video": n, "audio": n, "codecs": {...}}."""
    args = [*(extra or []), "-count_frames", "-show_entries", "stream=codec_type,codec_name,nb_read_frames"]
    report = run_ffprobe(ffprobe, url, args, timeout=timeout, what=url, env=env)
    out: dict[str, Any] = {"video": 0, "audio": 0, "codecs": {}}
    for s in report.get("streams", []):
        kind = s.get("codec_type")
        if kind in ("video", "audio"):
            out[kind] += int(s.get("nb_read_frames") or 0)
            out["codecs"][kind] = s.get("codec_name")
    return out


async def segments_vs_frames(
    session: aiohttp.ClientSession, media_url: str, ffprobe: str, tmp: Path, fps: float
) -> tuple[float, dict[str, Any]]:
    """Download every segment the classic playlist lists, ffprobe them concatenated; returns
    (the EXTINF sum in seconds, the frame counts). The counts must match the durations."""
    status, body, _ = await get(session, media_url)
    assert status == 200, (status, body)
    playlist = m3u8.loads(body.decode())
    assert playlist.segments, body
    data = bytearray()
    for seg in playlist.segments:
        status, chunk, _ = await get(session, urljoin(media_url, seg.uri))
        assert status == 200, (seg.uri, status)
        data += chunk
    path = tmp / "segments.ts"
    path.write_bytes(bytes(data))
    counts = await asyncio.to_thread(ffprobe_counts, ffprobe, str(path), timeout=60)
    return sum(s.duration for s in playlist.segments), counts
