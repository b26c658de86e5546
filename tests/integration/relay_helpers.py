"""Helpers for the relay tests over real nodes: an HTTP-FLV viewer, API calls, status polling,
and small aiohttp servers on loopback (webhook receivers, HTTP origins)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from tests.conftest import TEST_AK, TEST_SK, NodeProcess

from liverelay.media.flv import FlvDecoder, FlvError
from liverelay.media.frame import Frame, FrameKind
from liverelay.sdk import LiveService

EDGE_VHOST = "vh.test"

# Short timeouts so failures show within seconds; linger short enough to observe.
EDGE_CONFIG = f"""
[media]
default_vhost = "{EDGE_VHOST}"

[relay]
connect_timeout_s = 2.0
first_frame_timeout_s = 3.0
start_timeout_s = 6.0
no_media_timeout_s = 2.0
linger_s = 2.0
backoff_initial_s = 0.3
backoff_max_s = 1.0
failback = true
failback_probe_interval_s = 1.0
"""


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[int]:
    """Serve `app` on a loopback port the kernel picks (no race for a free port): yields
    the port; the server is cleaned up on leaving."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def webhook_receiver(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """A webhook receiver answering POST /hook with `handler`: yields its URL."""
    app = web.Application()
    app.router.add_post("/hook", handler)
    async with serve_app(app) as port:
        yield f"http://127.0.0.1:{port}/hook"


def api(node: NodeProcess) -> LiveService:
    return LiveService(node.api_host, TEST_AK, TEST_SK, scheme="http", max_retries=0)


def register_vhost(node: NodeProcess) -> None:
    with api(node) as svc:
        svc.create_domain_v2(
            {
                "Vhost": EDGE_VHOST,
                "Domains": [{"DomainName": "pull.vh.test", "Type": "pull-flv", "Region": "cn"}],
            }
        )


def set_v3(node: NodeProcess, servers: list[dict[str, Any]], app: str = "live") -> None:
    body = {"Vhost": EDGE_VHOST, "App": app, "GroupDetails": [{"Group": "g1", "Servers": servers}]}
    with api(node) as svc:
        svc.update_relay_source_v3(body)


def delete_v3(node: NodeProcess, app: str = "live") -> None:
    with api(node) as svc:
        svc.delete_relay_source_v3({"Vhost": EDGE_VHOST, "App": app})


def rtmp_server(origin: NodeProcess | int) -> dict[str, Any]:
    port = origin if isinstance(origin, int) else origin.rtmp_port
    return {"RelaySourceProtocol": "rtmp", "RelaySourceDomain": f"127.0.0.1:{port}"}


def flv_server(origin: NodeProcess | int, params: dict[str, str] | None = None) -> dict[str, Any]:
    port = origin if isinstance(origin, int) else origin.http_port
    server: dict[str, Any] = {"RelaySourceProtocol": "flv", "RelaySourceDomain": f"127.0.0.1:{port}"}
    if params is not None:
        server["RelaySourceParams"] = params
    return server


def relay_status(node: NodeProcess) -> list[dict[str, Any]]:
    with api(node) as svc:
        result = svc.describe_relay_status({})
    rows = result.get("RelayStatusList", result.get("Result", {}).get("RelayStatusList", []))
    return [r for r in rows if r.get("Type") == "play"]


def wait_status(node: NodeProcess, predicate: Any, timeout: float, what: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = relay_status(node)
        if predicate(rows):
            return rows
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last status {rows}")


async def await_status(node: NodeProcess, predicate: Any, timeout: float, what: str) -> list[dict[str, Any]]:
    return await asyncio.to_thread(wait_status, node, predicate, timeout, what)


def run_ffprobe(
    ffprobe: str, url: str, args: list[str], *, timeout: float, what: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """The real ffprobe's JSON report on `url` (errors only on stderr); `args` say what to
    read and report, `env` adds to its environment. `what` names the attempt when ffprobe fails."""
    proc = subprocess.run(
        [ffprobe, "-v", "error", *args, "-of", "json", url],
        capture_output=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env} if env else None,
    )
    assert proc.returncode == 0, f"ffprobe {what} failed: {proc.stderr.decode(errors='replace')[-800:]}"
    return json.loads(proc.stdout)


def ffprobe_json(ffprobe: str, url: str, args: list[str], *, timeout: float, what: str) -> dict[str, Any]:
    """The real ffprobe's JSON report on the first video stream of `url`; `args` say what to read
    and report (and may carry input options such as headers). `what` names the attempt on failure."""
    args = ["-rw_timeout", "8000000", "-select_streams", "v:0", *args]
    return run_ffprobe(ffprobe, url, args, timeout=timeout, what=what)


def ffprobe_video(ffprobe: str, url: str, timeout: float = 20) -> dict[str, Any]:
    """Decode the first video stream's parameters with the real ffprobe."""
    args = ["-show_entries", "stream=codec_name,width,height", "-read_intervals", "%+2", "-show_frames"]
    info = ffprobe_json(ffprobe, url, args, timeout=timeout, what=url)
    streams = info.get("streams") or [{}]
    return {**streams[0], "frames": len(info.get("frames", []))}


class FlvViewer:
    """One HTTP-FLV connection kept open; records every frame with its arrival time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.status: int | None = None
        self.frames: list[tuple[float, Frame]] = []
        self.connected_at = 0.0
        self.eof = asyncio.Event()
        self.error: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> FlvViewer:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        self.connected_at = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _run(self) -> None:
        assert self._session is not None
        decoder = FlvDecoder()
        try:
            async with self._session.get(self.url) as resp:
                self.status = resp.status
                if resp.status != 200:
                    return
                async for chunk in resp.content.iter_any():
                    now = time.monotonic()
                    for item in decoder.feed(chunk):
                        if isinstance(item, Frame):
                            self.frames.append((now, item))
        except (aiohttp.ClientError, FlvError, OSError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.eof.set()

    def video(self) -> list[tuple[float, Frame]]:
        return [(t, f) for t, f in self.frames if f.kind == FrameKind.VIDEO and not f.config]

    async def wait_video(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.video()) < n and time.monotonic() < deadline and not self.eof.is_set():
            await asyncio.sleep(0.05)
        assert len(self.video()) >= n, (
            f"{self.url}: {len(self.video())} video frames, wanted {n} (status {self.status}, {self.error})"
        )

    def first_video_delay(self) -> float:
        video = self.video()
        assert video, "no video"
        return video[0][0] - self.connected_at

    def max_video_gap(self, since: float = 0.0) -> float:
        times = [t for t, _ in self.video() if t >= since]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def assert_monotonic(self) -> None:
        for kind in (FrameKind.VIDEO, FrameKind.AUDIO):
            ts = [f.timestamp for _, f in self.frames if f.kind == kind and not f.config]
            back = [(a, b) for a, b in itertools.pairwise(ts) if b < a]
            assert not back, f"{kind.name} timestamps went backwards: {back[:5]}"

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._session is not None:
            await self._session.close()
