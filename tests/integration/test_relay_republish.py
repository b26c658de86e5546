"""Origin republish through a real edge node (`liverelay serve`), against fake RTMP origins
on real sockets (tests/adversarial/fake_origin.py) that do what nginx-rtmp and SRS do when
their publisher leaves and returns: StreamEOF + NetStream.Play.UnpublishNotify, then
StreamBegin + NetStream.Play.PublishNotify and the new publisher's media (timestamps from
0 again) on the same connection.

Expected behaviour:
- one origin: the edge keeps that connection and waits for the republish (Attempts stays
  1, the fake saw one connection); its viewer stays connected, gets the new media after a
  pause of about the origin's own absence, with monotonic timestamps;
- two origins: the unpublish ends the attempt and the edge fails over to the second
  origin at once, as for any end of stream (its viewer stays connected).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.adversarial.fake_origin import MEDIA_BEFORE_FAULT_S, REPUBLISH_AFTER_S, FakeOrigin, sample_frames
from tests.conftest import NodeProcess
from tests.integration.relay_helpers import (
    EDGE_CONFIG,
    FlvViewer,
    relay_status,
    rtmp_server,
    set_v3,
)
from tests.integration.relay_nodes import relay_nodes

from liverelay.media.frame import Frame

pytestmark = pytest.mark.timeout(90)

SLACK_S = 3.0


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[NodeProcess]:
    with relay_nodes(tmp_path) as nodes:
        yield nodes.edge(EDGE_CONFIG)


@pytest.fixture
def frames(sample_flv: Path) -> list[Frame]:
    return sample_frames(str(sample_flv))


async def test_one_origin_keeps_its_connection_across_a_republish(
    edge: NodeProcess, frames: list[Frame]
) -> None:
    with FakeOrigin("republish", frames) as origin:
        set_v3(edge, [rtmp_server(origin.port)])
        viewer = await FlvViewer(edge.flv_url("live", "s")).start()
        try:
            await viewer.wait_video(10, timeout=10)
            started = viewer.video()[0][0]
            # Past the unpublish (at MEDIA_BEFORE_FAULT_S) and well into the republished media.
            await viewer.wait_video(int((MEDIA_BEFORE_FAULT_S + 2.0) * 30), timeout=MEDIA_BEFORE_FAULT_S + 10)
            assert not viewer.eof.is_set(), f"the edge viewer was disconnected ({viewer.error})"
            viewer.assert_monotonic()
            gap = viewer.max_video_gap(since=started)
            assert REPUBLISH_AFTER_S - 0.1 <= gap <= REPUBLISH_AFTER_S + SLACK_S, f"pause of {gap:.2f}s"
            assert len(origin.connections) == 1, "the edge reconnected instead of waiting on its connection"
            assert origin.connections[0].closed is None
            rows = relay_status(edge)
            assert len(rows) == 1 and rows[0]["Attempts"] == 1 and rows[0]["State"] == "up", rows
        finally:
            await viewer.close()


async def test_several_origins_fail_over_on_an_unpublish(edge: NodeProcess, frames: list[Frame]) -> None:
    with FakeOrigin("republish", frames) as first, FakeOrigin("good", frames) as second:
        set_v3(edge, [rtmp_server(first.port), rtmp_server(second.port)])
        viewer = await FlvViewer(edge.flv_url("live", "s")).start()
        try:
            await viewer.wait_video(10, timeout=10)
            deadline = time.monotonic() + MEDIA_BEFORE_FAULT_S + 10
            while not second.connections and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert second.connections, "the edge never went to the second origin"
            conn = first.connections[0]
            assert conn.closed is not None and conn.closed_by_peer, (
                "the edge kept waiting on the first origin"
            )
            # It left at the unpublish, not after waiting out the republish.
            assert conn.closed - conn.opened < MEDIA_BEFORE_FAULT_S + REPUBLISH_AFTER_S, conn
            count = len(viewer.video())
            await viewer.wait_video(count + 30, timeout=10)
            assert not viewer.eof.is_set(), f"the edge viewer was disconnected ({viewer.error})"
            viewer.assert_monotonic()
            rows = relay_status(edge)
            assert len(rows) == 1 and rows[0]["Switches"] >= 1, rows
        finally:
            await viewer.close()
