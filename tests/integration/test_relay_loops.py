"""Relay loops end at once, and names round-trip, over real `liverelay serve` nodes.

A node that is its own V3 origin, and two nodes that are each other's origin, over RTMP
and HTTP-FLV, with names carrying '%', a space and non-ASCII: the viewer gets its
not-found, and each node made at most one origin attempt (liverelay_relay_failures in
/metrics counts every failed attempt, i.e. every connection a node opened to an origin).
A normal edge -> origin relay of such names plays the stream of that exact name
(two streams whose names differ only by an escape have different picture sizes; ffprobe
tells them apart through the edge).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from tests.conftest import NodeProcess, ffmpeg_publish, start_node, synthetic_source_args
from tests.integration.relay_helpers import (
    EDGE_CONFIG,
    FlvViewer,
    ffprobe_video,
    flv_server,
    register_vhost,
    rtmp_server,
    set_v3,
)

pytestmark = pytest.mark.timeout(120)

LOOP_NAMES = ["a b%c", "é中 x", "plain"]


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, Any]]:
    started: list[NodeProcess] = []
    publishers: list[contextlib.ExitStack] = []

    def node(name: str) -> NodeProcess:
        n = start_node(tmp_path / name, config=EDGE_CONFIG)
        started.append(n)
        register_vhost(n)
        return n

    def publish(ffmpeg: str, sample: Path, url: str) -> subprocess.Popen[bytes]:
        stack = contextlib.ExitStack()
        proc = stack.enter_context(ffmpeg_publish(ffmpeg, sample, url))
        publishers.append(stack)
        return proc

    yield {"node": node, "publish": publish}
    for stack in publishers:
        stack.close()
    for n in started:
        n.kill(signal.SIGTERM)


@pytest.fixture(scope="module")
def small_flv(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    """A second clip, 320x180, to tell two streams apart by picture size."""
    out = tmp_path_factory.mktemp("small") / "small.flv"
    args = synthetic_source_args(ffmpeg, size="320x180", rate=30, seconds=6)
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-bf", "0", "-pix_fmt", "yuv420p"]
    subprocess.run([*args, "-f", "flv", str(out)], check=True, timeout=120)
    return out


async def failures(node: NodeProcess) -> float:
    """Origin attempts that failed at `node` (its liverelay_relay_failures_total, all reasons)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{node.http_port}/metrics") as resp,
    ):
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("liverelay_relay_failures_total{")
    )


async def viewer_not_found(url: str, timeout: float) -> float:
    """GET an HTTP-FLV URL that must be answered 404; returns how long the answer took."""
    started = time.monotonic()
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
        session.get(url) as resp,
    ):
        assert resp.status == 404, f"{url}: HTTP {resp.status}"
    return time.monotonic() - started


async def settled(nodes: list[NodeProcess], expected: list[float], what: str) -> None:
    """The failure counts reach `expected` and stay there for 2 s (the loop does not go on)."""
    deadline = time.monotonic() + 10
    got = [await failures(n) for n in nodes]
    while got != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        got = [await failures(n) for n in nodes]
    assert got == expected, f"{what}: origin attempts per node {got}, wanted {expected}"
    stable_until = time.monotonic() + 2.0
    while time.monotonic() < stable_until:  # bounded: 2 s of samples
        await asyncio.sleep(0.25)
        got = [await failures(n) for n in nodes]
        assert got == expected, f"{what}: attempts went on after the loop was refused: {got}"


def viewer_url(node: NodeProcess, name: str) -> str:
    return node.flv_url("live", quote(name, safe=""))


@pytest.mark.parametrize("protocol", ["rtmp", "flv"])
@pytest.mark.parametrize("name", LOOP_NAMES)
async def test_self_loop_ends_after_one_connection(nodes: dict[str, Any], protocol: str, name: str) -> None:
    node = nodes["node"]("self")
    server = rtmp_server if protocol == "rtmp" else flv_server
    set_v3(node, [server(node)])

    took = await viewer_not_found(viewer_url(node, name), timeout=15)
    await settled([node], [1.0], f"self loop {protocol} {name!r}")
    assert took < 5.0, f"the loop was not refused at once ({took:.1f}s)"
    assert "relay loop: this node" in node.log()


@pytest.mark.parametrize("protocol", ["rtmp", "flv"])
@pytest.mark.parametrize("name", LOOP_NAMES)
async def test_two_node_loop_ends_after_one_hop_each(nodes: dict[str, Any], protocol: str, name: str) -> None:
    a, b = nodes["node"]("a"), nodes["node"]("b")
    server = rtmp_server if protocol == "rtmp" else flv_server
    set_v3(a, [server(b)])
    set_v3(b, [server(a)])

    took = await viewer_not_found(viewer_url(a, name), timeout=15)
    await settled([a, b], [1.0, 1.0], f"two-node loop {protocol} {name!r}")
    assert took < 5.0, f"the loop was not refused at once ({took:.1f}s)"
    assert "relay loop: this node" in a.log()


async def test_hop_limit_refuses_a_long_chain(nodes: dict[str, Any]) -> None:
    """A marked request whose chain already has relay.max_hops (4) entries starts no pull."""
    node = nodes["node"]("hops")
    set_v3(node, [rtmp_server(node)])
    url = viewer_url(node, "s") + "?lr_via=n1.n2.n3.n4"
    await viewer_not_found(url, timeout=10)
    await settled([node], [0.0], "hop limit")
    assert "reaches relay.max_hops=4" in node.log()
    # The same chain in the header our FLV puller sends counts the same way.
    async with (
        aiohttp.ClientSession() as session,
        session.get(viewer_url(node, "t"), headers={"Liverelay-Via": "n1.n2.n3.n4"}) as resp,
    ):
        assert resp.status == 404
    await settled([node], [0.0], "hop limit (header)")


@pytest.mark.parametrize("protocol", ["rtmp", "flv"])
async def test_edge_relays_the_stream_of_that_exact_name(
    nodes: dict[str, Any], ffmpeg: str, ffprobe: str, sample_flv: Path, small_flv: Path, protocol: str
) -> None:
    origin = nodes["node"]("origin")
    # Two streams whose names differ only by an escape: "a b" and "a%20b" (URL a%2520b).
    nodes["publish"](ffmpeg, sample_flv, origin.rtmp_url("live", quote("a b", safe="")))
    nodes["publish"](ffmpeg, small_flv, origin.rtmp_url("live", quote("a%20b", safe="")))
    odd = "é 100%+x"
    nodes["publish"](ffmpeg, small_flv, origin.rtmp_url("live", quote(odd, safe="")))
    edge = nodes["node"]("edge")
    set_v3(edge, [(rtmp_server if protocol == "rtmp" else flv_server)(origin)])

    # The origin serves each under its own name (published over RTMP, played over HTTP-FLV).
    for name, size in (("a b", (640, 360)), ("a%20b", (320, 180)), (odd, (320, 180))):
        viewer = await FlvViewer(viewer_url(origin, name)).start()
        try:
            await viewer.wait_video(1, timeout=15)
        finally:
            await viewer.close()
        for url in (viewer_url(edge, name), edge.rtmp_url("live", quote(name, safe=""))):
            info = await asyncio.to_thread(ffprobe_video, ffprobe, url)
            assert (info["width"], info["height"]) == size, (name, url, info)
            assert info["frames"] > 5, info
