"""Origin republish through a real nginx-rtmp origin and a real edge node.

Expected behaviour: when the publisher at the (one) origin dies and comes back within the
edge's no-media timeout, the edge keeps its pull connection open (nginx-rtmp sends
NetStream.Play.UnpublishNotify, then PublishNotify and fresh media on the same
connection), the edge's viewer stays connected and receives the republished stream with
monotonic timestamps, and the pull is not reconnected (Attempts stays 1). The delay is
bounded generously here; bench/republish.py measures it against nginx-rtmp's own edge.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import NodeProcess, ffmpeg_publish
from tests.integration.relay_helpers import (
    EDGE_CONFIG,
    FlvViewer,
    relay_status,
    rtmp_server,
    set_v3,
)
from tests.integration.relay_nodes import relay_nodes
from tests.interop.test_nginx_origin import nginx_origin  # noqa: F401 (the fixture)

pytestmark = pytest.mark.timeout(90)

# Room for ffmpeg to die and start again inside the wait for the republish.
REPUBLISH_CONFIG = EDGE_CONFIG.replace("no_media_timeout_s = 2.0", "no_media_timeout_s = 8.0")
GAP_S = 0.5  # no frame for this long on the edge viewer = the publisher is gone


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[NodeProcess]:
    with relay_nodes(tmp_path) as nodes:
        yield nodes.edge(REPUBLISH_CONFIG)


async def wait_quiet(viewer: FlvViewer, quiet_s: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        video = viewer.video()
        if video and time.monotonic() - video[-1][0] >= quiet_s:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the edge viewer kept receiving frames {timeout}s after the publisher died")


async def test_edge_viewer_stays_connected_across_an_origin_republish(
    nginx_origin: int,  # noqa: F811
    edge: NodeProcess,
    ffmpeg: str,
    sample_flv: Path,
) -> None:
    assert "no_media_timeout_s = 8.0" in REPUBLISH_CONFIG
    set_v3(edge, [rtmp_server(nginx_origin)])
    url = f"rtmp://127.0.0.1:{nginx_origin}/live/s"
    viewer: FlvViewer | None = None
    try:
        with ffmpeg_publish(ffmpeg, sample_flv, url) as first:
            await asyncio.sleep(1.0)  # let the publish reach nginx
            viewer = await FlvViewer(edge.flv_url("live", "s")).start()
            await viewer.wait_video(30, timeout=15)
            first.send_signal(signal.SIGKILL)
            await wait_quiet(viewer, GAP_S, timeout=10)
        before = len(viewer.video())
        assert not viewer.eof.is_set(), (
            f"the edge dropped its viewer when the publisher left ({viewer.error})"
        )
        restart = time.monotonic()
        with ffmpeg_publish(ffmpeg, sample_flv, url):
            await viewer.wait_video(before + 30, timeout=15)
            after = [t for t, _ in viewer.video()[before:]]
            delay = after[0] - restart
            print(f"\nrepublish: edge viewer's first frame {delay * 1000:.0f} ms after ffmpeg restarted")
            # Generous: ffmpeg's own start-up is in it; the old path (backoff + reconnect +
            # next keyframe) is caught by Attempts below, not by this bound.
            assert delay < 5.0, delay
            assert not viewer.eof.is_set(), f"the edge viewer was disconnected ({viewer.error})"
            viewer.assert_monotonic()
            rows = relay_status(edge)
            assert len(rows) == 1, rows
            assert rows[0]["State"] == "up", rows
            assert rows[0]["Attempts"] == 1, f"the edge reconnected instead of waiting: {rows}"
    finally:
        if viewer is not None:
            await viewer.close()
