"""The node set-ups the relay tests share: origin and edge nodes (`liverelay serve`
subprocesses) with ffmpeg publishers, stopped together at the end; and the wait until an
origin serves its stream. One copy for the V3, default-vhost and republish tests."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import NodeProcess, ffmpeg_publish, start_node
from tests.integration.relay_helpers import EDGE_CONFIG, FlvViewer, register_vhost

APP, STREAM = "live", "s"  # what every origin here publishes


class RelayNodes:
    """Nodes and publishers of one test, under `base`; `close()` stops them all."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.started: list[NodeProcess] = []
        self._publishers = contextlib.ExitStack()

    def node(
        self, name: str, config: str | None = None, ports: tuple[int, int, int] | None = None
    ) -> NodeProcess:
        n = start_node(self.base / name, config=config, ports=ports)
        self.started.append(n)
        return n

    def publish(self, ffmpeg: str, sample: Path, url: str) -> subprocess.Popen[bytes]:
        return self._publishers.enter_context(ffmpeg_publish(ffmpeg, sample, url))

    def origin(self, ffmpeg: str, sample: Path, name: str = "origin") -> NodeProcess:
        """A node with ffmpeg publishing live/s into it."""
        origin = self.node(name)
        self.publish(ffmpeg, sample, origin.rtmp_url(APP, STREAM))
        return origin

    def edge(self, config: str = EDGE_CONFIG, *, vhost: bool = True) -> NodeProcess:
        """The edge node (the relay helpers' short timeouts); with `vhost`, the test vhost registered."""
        e = self.node("edge", config=config)
        if vhost:
            register_vhost(e)
        return e

    def close(self) -> None:
        self._publishers.close()
        stop_nodes(self.started)


@contextlib.contextmanager
def relay_nodes(base: Path) -> Iterator[RelayNodes]:
    nodes = RelayNodes(base)
    try:
        yield nodes
    finally:
        nodes.close()


def stop_nodes(nodes: list[NodeProcess], timeout: float = 10.0) -> None:
    """SIGTERM to every node at once, then wait for each (SIGKILL past `timeout`): the nodes'
    graceful stops overlap instead of adding up."""
    running = [n for n in nodes if n.proc.poll() is None]
    for n in running:
        n.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for n in running:
        try:
            n.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            n.kill()  # SIGKILL, waited for


async def wait_stream_served(node: NodeProcess, timeout: float = 10.0) -> None:
    """Until `node` serves live/s over HTTP-FLV (its publisher is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        viewer = await FlvViewer(node.flv_url(APP, STREAM)).start()
        try:
            with contextlib.suppress(AssertionError):
                await viewer.wait_video(1, timeout=2)
                return
        finally:
            await viewer.close()
        await asyncio.sleep(0.2)
    raise AssertionError(f"node {node.rtmp_port} never served {APP}/{STREAM}")
