"""The bench's RTMP viewers and nginx-rtmp launcher against a real nginx-rtmp + ffmpeg publisher."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from bench.fanout import wait_playable
from bench.loadclient import ViewerPool
from bench.peers import NginxRtmp, nginx_conf
from bench.rtmpviewer import RtmpViewer, split_rtmp_url
from bench.sample import start_publisher
from tests.conftest import needs_nginx_rtmp


def test_split_rtmp_url() -> None:
    assert split_rtmp_url("rtmp://127.0.0.1:1935/live/s?k=v") == (
        "rtmp://127.0.0.1:1935/live",
        "live",
        "s?k=v",
    )
    with pytest.raises(ValueError):
        split_rtmp_url("rtmp://127.0.0.1/onlyapp")


def test_nginx_conf_is_the_anchor_setup(tmp_path: Path) -> None:
    conf = nginx_conf(tmp_path, 1935, 8080, ["rtmp://127.0.0.1:1/live", "rtmp://127.0.0.1:2/live"])
    assert "master_process off;" in conf and "worker_processes 1;" in conf and "chunk_size 4096;" in conf
    assert conf.index("pull rtmp://127.0.0.1:1/live;") < conf.index("pull rtmp://127.0.0.1:2/live;")
    assert "access_log off;" in conf


@needs_nginx_rtmp
async def test_counting_and_parsed_rtmp_viewers_keep_up(sample_flv: Path) -> None:
    with NginxRtmp() as server:
        pub = start_publisher(sample_flv, server.rtmp_url("live", "t"))
        try:
            await wait_playable(server.rtmp_url("live", "t"))
            pool = ViewerPool(server.rtmp_url("live", "t"), 4, parse_every=2)
            try:
                await pool.start()
                await asyncio.sleep(1.0)
                pool.mark()
                await asyncio.sleep(3.0)
                summary = pool.summary(full_rate_bps=50_000)  # the 800 kbit/s test sample is ~100 kB/s
                counters = [v for v in pool.viewers if not v.parsed]
                assert all(isinstance(v, RtmpViewer) and v.counting for v in counters)
            finally:
                await pool.close()
        finally:
            pub.stop()
    assert summary["errors"] == 0, summary["error_examples"]
    assert summary["parsed_with_media"] == 2
    assert 0.85 < summary["media_wall_min"] < 1.15
    assert summary["full_rate"] == 4, summary


@needs_nginx_rtmp
async def test_unknown_stream_gives_no_media_and_process_is_stopped() -> None:
    server = NginxRtmp().start()
    try:
        v = RtmpViewer(0, server.rtmp_url("nosuchapp", "x"), parsed=True)
        await v.connect()
        deadline = time.monotonic() + 5
        while not v.closed.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert v.stats.first_video_key_at is None
        assert v.stats.error is not None  # nginx-rtmp closes: no such application
    finally:
        server.stop()
    assert server.process is not None and server.process.proc.poll() is not None
