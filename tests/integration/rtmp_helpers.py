"""Helpers for the RTMP integration tests: an in-process Hub + RtmpServer, our own RTMP
client driven over a real socket, ffprobe/ffmpeg runners and an nginx-rtmp launcher.

Everything binds 127.0.0.1; every wait is bounded; every subprocess is killed on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry
from tests.conftest import free_port, wait_port

from liverelay.config import Settings
from liverelay.hub import Hub, StreamKey
from liverelay.media.frame import Frame, FrameKind
from liverelay.media.rtmp import (
    MediaReceived,
    RtmpClientSession,
    StatusEvent,
)
from liverelay.servers.protocols import DomainLookup, ListenerDeps
from liverelay.servers.rtmp import RtmpServer
from liverelay.urlauth import UrlAuthVerifier

NGINX_RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
DEFAULT_VHOST = "__defaultVhost__"


def fast_settings() -> Settings:
    s = Settings()
    s.media.handshake_timeout_s = 1.0
    s.media.idle_timeout_s = 5.0
    s.media.max_message_bytes = 1 << 20
    s.relay.start_timeout_s = 1.0
    s.relay.connect_timeout_s = 2.0
    s.relay.first_frame_timeout_s = 5.0
    s.relay.no_media_timeout_s = 3.0
    return s


class RtmpNode:
    """Hub + RtmpServer in this process (without `domains`: every host lands in the default vhost)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        domains: DomainLookup | None = None,
        urlauth: UrlAuthVerifier | None = None,
    ) -> None:
        self.settings = settings or fast_settings()
        self.metrics = CollectorRegistry()
        self.hub = Hub(self.settings.media, metrics=self.metrics)
        self.deps = ListenerDeps(self.settings, self.hub, domains, self.metrics, urlauth=urlauth)
        self.server = RtmpServer(self.deps)
        self.port = 0

    async def start(self) -> RtmpNode:
        self.port = await self.server.start("127.0.0.1", 0)
        return self

    async def close(self) -> None:
        await self.server.close()
        await self.hub.close()

    def url(self, app: str = "live", stream: str = "s") -> str:
        return f"rtmp://127.0.0.1:{self.port}/{app}/{stream}"

    def key(self, app: str = "live", stream: str = "s") -> StreamKey:
        return StreamKey(DEFAULT_VHOST, app, stream)

    async def wait_source(self, key: StreamKey, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stream = self.hub.get(key)
            if stream is not None and stream.has_source and stream.video_header is not None:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no source with media for {key} after {timeout}s")


@dataclass
class RecordingSink:
    """A FrameSink that keeps frames and the arrival time of the first one."""

    frames: list[Frame] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    first_at: float | None = None
    first_video_at: float | None = None

    def on_frame(self, frame: Frame) -> None:
        now = time.monotonic()
        if self.first_at is None:
            self.first_at = now
        if self.first_video_at is None and frame.kind == FrameKind.VIDEO and not frame.config:
            self.first_video_at = now
        self.frames.append(frame)

    def on_frames(self, frames: list[Frame]) -> None:
        for frame in frames:
            self.on_frame(frame)

    def on_unpublished(self) -> bool:
        return False  # end the pull, as every pull did before the republish wait existed

    def count(self, kind: FrameKind) -> int:
        return sum(1 for f in self.frames if f.kind == kind and not f.config)


class RtmpTestClient:
    """Our client session over a real socket, for publishing test media and reading statuses."""

    def __init__(self, port: int, app: str, *, play: str | None = None, publish: str | None = None) -> None:
        self.session = RtmpClientSession(
            app=app, tc_url=f"rtmp://127.0.0.1:{port}/{app}", play=play, publish=publish
        )
        self.port = port
        self.statuses: list[StatusEvent] = []
        self.frames: list[Frame] = []
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.session.initiate()
        self.writer.write(self.session.data_to_send())
        await self.writer.drain()

    async def pump_until(self, predicate: object, timeout: float = 5.0) -> bool:
        """Read and answer until predicate() is true; False on EOF."""
        assert self.reader is not None and self.writer is not None
        async with asyncio.timeout(timeout):
            while not predicate():  # type: ignore[operator]
                data = await self.reader.read(65536)
                if not data:
                    return False
                for ev in self.session.receive_data(data):
                    if isinstance(ev, StatusEvent):
                        self.statuses.append(ev)
                    elif isinstance(ev, MediaReceived):
                        self.frames.append(ev.frame)
                out = self.session.data_to_send()
                if out:
                    self.writer.write(out)
                    await self.writer.drain()
        return True

    def codes(self) -> list[str]:
        return [s.code for s in self.statuses]

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()


async def run_tool(*args: str, timeout: float = 30.0) -> tuple[int, str, str]:
    """Run ffmpeg/ffprobe without blocking the event loop that serves them."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def ffprobe_count(
    ffprobe: str, url: str, seconds: float, timeout: float = 30.0
) -> tuple[dict[str, int], str]:
    """Decode `seconds` of media from `url`; return ({codec_type: frames}, stderr)."""
    rc, out, err = await run_tool(
        ffprobe,
        "-v",
        "error",
        "-rw_timeout",
        "5000000",
        "-count_frames",
        "-read_intervals",
        f"%+{seconds}",
        "-show_entries",
        "stream=codec_type,codec_name,nb_read_frames",
        "-of",
        "json",
        url,
        timeout=timeout,
    )
    assert rc == 0, f"ffprobe failed ({rc}): {err}"
    counts: dict[str, int] = {}
    for stream in json.loads(out).get("streams", []):
        n = stream.get("nb_read_frames")
        counts[stream["codec_type"]] = int(n) if n and n.isdigit() else 0
    return counts, err


@contextlib.contextmanager
def nginx_rtmp(tmp: Path, *, extra_app: str = "") -> Iterator[int]:
    """A real nginx-rtmp (one worker, no daemon) on a free port; yields the RTMP port."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "nginx.conf"
    temp_paths = " ".join(
        f"{name}_temp_path {tmp / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf.write_text(
        f"load_module {NGINX_RTMP_MODULE};\n"
        "daemon off;\nmaster_process off;\nerror_log stderr info;\n"
        f"pid {tmp / 'nginx.pid'};\n"
        "events {}\n"
        f"rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n"
        f"  application live {{ live on; }}\n{extra_app}\n}} }}\n"
        f"http {{ access_log off; {temp_paths} }}\n"
    )
    log = (tmp / "nginx.log").open("wb")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_port(port, timeout=10)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=5)


def raw_socket(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


async def started_node() -> AsyncIterator[RtmpNode]:
    node = await RtmpNode().start()
    try:
        yield node
    finally:
        await node.close()
