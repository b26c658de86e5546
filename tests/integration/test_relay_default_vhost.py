"""Issue 9 §10: the default vhost relays. An edge reached by IP address (no domain
registered at all) serves a viewer from a V3 config on `__defaultVhost__`, and a V4 relay
created on that vhost plays too. Two real `liverelay serve` nodes, ffmpeg publishing,
ffprobe and an HTTP-FLV reader as viewers, everything on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import NodeProcess
from tests.integration.relay_helpers import (
    EDGE_CONFIG,
    EDGE_VHOST,
    FlvViewer,
    api,
    ffprobe_video,
    relay_status,
    rtmp_server,
    wait_status,
)
from tests.integration.relay_nodes import relay_nodes, wait_stream_served

pytestmark = pytest.mark.timeout(90)

DEFAULT_VHOST = "__defaultVhost__"  # settings.media.default_vhost's default
_VHOST_LINE = f'[media]\ndefault_vhost = "{EDGE_VHOST}"\n'
assert _VHOST_LINE in EDGE_CONFIG
# The relay helpers' short timeouts, with the node's own default vhost.
IP_EDGE_CONFIG = EDGE_CONFIG.replace(_VHOST_LINE, "")


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str, sample_flv: Path) -> Iterator[NodeProcess]:
    """An origin publishing live/s, shared by the tests here (they only read from it)."""
    with relay_nodes(tmp_path_factory.mktemp("origin")) as nodes:
        yield nodes.origin(ffmpeg, sample_flv)


@pytest.fixture
def origin_and_edge(origin: NodeProcess, tmp_path: Path) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    """The origin and a fresh edge with no domain registered; the edge is stopped at teardown."""
    with relay_nodes(tmp_path) as nodes:
        yield origin, nodes.edge(IP_EDGE_CONFIG, vhost=False)


def _wait_fixed_up(edge: NodeProcess, timeout: float = 20.0) -> None:
    """Until the edge's fixed relay on the default vhost is up (the event, not a delay)."""
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    with api(edge) as svc:
        while time.monotonic() < deadline:
            rows = svc.describe_relay_status({"Type": "fixed"})["Result"]["RelayStatusList"]
            if any(r.get("Vhost") == DEFAULT_VHOST and r.get("State") == "up" for r in rows):
                return
            time.sleep(0.2)
    raise AssertionError(f"the fixed relay never came up; last status {rows}")


async def test_play_by_ip_triggers_v3_on_the_default_vhost(
    origin_and_edge: tuple[NodeProcess, NodeProcess], ffprobe: str
) -> None:
    origin, edge = origin_and_edge
    with api(edge) as svc:
        assert svc.list_domain_detail({"PageNum": 1, "PageSize": 10})["Result"]["Total"] == 0
        group = {"Group": "g1", "Servers": [rtmp_server(origin)]}
        svc.update_relay_source_v3({"Vhost": DEFAULT_VHOST, "App": "live", "GroupDetails": [group]})
        configs = svc.describe_relay_source_v3({"Vhost": DEFAULT_VHOST})["Result"]["RelaySourceConfigList"]
        assert [(c["Vhost"], c["App"]) for c in configs] == [(DEFAULT_VHOST, "live")]
    await wait_stream_served(origin, timeout=15.0)

    # http://127.0.0.1:port/live/s.flv: the Host is an IP address, so the default vhost.
    info = await asyncio.to_thread(ffprobe_video, ffprobe, edge.flv_url("live", "s"))
    assert (info["codec_name"], info["width"], info["height"]) == ("h264", 640, 360), info
    assert info["frames"] > 10, info
    rows = relay_status(edge)
    assert [(r["Type"], r["Vhost"], r["App"], r["Stream"]) for r in rows] == [
        ("play", DEFAULT_VHOST, "live", "s")
    ], rows

    # Deleting the config stops new triggers: once the pull lingered out, a play finds nothing.
    with api(edge) as svc:
        svc.delete_relay_source_v3({"Vhost": DEFAULT_VHOST, "App": "live"})
        assert svc.describe_relay_source_v3({"Vhost": DEFAULT_VHOST})["Result"]["RelaySourceConfigList"] == []
    wait_status(edge, lambda r: r == [], 15, "the play-triggered pull to linger out")
    viewer = await FlvViewer(edge.flv_url("live", "s")).start()
    try:
        await asyncio.wait_for(viewer.eof.wait(), timeout=15)
    finally:
        await viewer.close()
    assert viewer.status == 404 and viewer.video() == [], (viewer.status, viewer.error)


async def test_fixed_relay_on_the_default_vhost_plays_by_ip(
    origin_and_edge: tuple[NodeProcess, NodeProcess],
) -> None:
    origin, edge = origin_and_edge
    body: dict[str, Any] = {
        "Vhost": DEFAULT_VHOST,
        "App": "live",
        "Stream": "fixed",
        "SrcAddrS": [origin.rtmp_url("live", "s")],
    }
    with api(edge) as svc:
        task = svc.create_relay_source_v4(body)["Result"]["TaskId"]
        listed = svc.list_relay_source_v4({"Vhost": DEFAULT_VHOST})["Result"]["List"]
        assert [(r["Vhost"], r["Stream"], r["TaskId"]) for r in listed] == [(DEFAULT_VHOST, "fixed", task)]
    await wait_stream_served(origin, timeout=15.0)
    await asyncio.to_thread(_wait_fixed_up, edge)
    viewer = await FlvViewer(edge.flv_url("live", "fixed")).start()
    try:
        await viewer.wait_video(10, timeout=20)
    finally:
        await viewer.close()
