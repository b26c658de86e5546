"""An in-process node fragment for HTTP-FLV tests: Hub + the media HTTP listener on 127.0.0.1:0,
fed by a real ffmpeg writing FLV to a pipe (ffmpeg -> FlvDecoder -> Publication.write)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from liverelay.config import Settings
from liverelay.hub import Hub, Publication, SourceKind, StreamKey
from liverelay.media.flv import FlvDecoder, FlvHeader
from liverelay.media.frame import Frame, FrameKind
from liverelay.servers.http import create_http_app
from liverelay.servers.protocols import DomainLookup, ListenerDeps

DEFAULT_KEY = StreamKey("__defaultVhost__", "live", "s")


class HubNode:
    def __init__(self, settings: Settings | None = None, *, domains: DomainLookup | None = None) -> None:
        self.settings = settings or Settings()
        self.metrics = CollectorRegistry()
        self.hub = Hub(self.settings.media, metrics=self.metrics)
        self.deps = ListenerDeps(self.settings, self.hub, domains, self.metrics)
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._feeders: list[asyncio.Task[None]] = []
        self._procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> HubNode:
        self._runner = web.AppRunner(create_http_app(self.deps), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    def url(self, app: str = "live", stream: str = "s", query: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{app}/{stream}.flv" + (f"?{query}" if query else "")

    async def feed_ffmpeg(
        self,
        ffmpeg: str,
        sample: Path,
        key: StreamKey = DEFAULT_KEY,
        *,
        loop: bool = True,
        realtime: bool = True,
        extra: Iterable[str] = (),
        publication: Publication | None = None,
        close_at_end: bool = True,
    ) -> Publication:
        """Publish `sample` through ffmpeg -> pipe -> FlvDecoder; returns once the first frame is in.

        With `publication`, feed that one (e.g. after its discontinuity()) instead of publishing."""
        pub = publication or self.hub.publish(key, kind=SourceKind.PUBLISHER, owner="ffmpeg-pipe")
        args = [ffmpeg, "-hide_banner", "-loglevel", "error"]
        if realtime:
            args.append("-re")
        if loop:
            args += ["-stream_loop", "-1"]
        args += ["-i", str(sample), "-c", "copy", *extra, "-f", "flv", "pipe:1"]
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self._procs.append(proc)
        first = asyncio.get_running_loop().create_future()
        self._feeders.append(asyncio.create_task(self._pump(proc, pub, first, close_at_end)))
        await asyncio.wait_for(first, 10)
        return pub

    async def _pump(
        self, proc: asyncio.subprocess.Process, pub: Publication, first: asyncio.Future[None], close: bool
    ) -> None:
        decoder = FlvDecoder()
        assert proc.stdout is not None
        try:
            while chunk := await proc.stdout.read(65536):
                for event in decoder.feed(chunk):
                    if isinstance(event, FlvHeader):
                        continue
                    pub.write(event)
                    if not first.done():
                        first.set_result(None)
        finally:
            if close:
                pub.close("ffmpeg ended")
            if not first.done():
                first.set_exception(RuntimeError("ffmpeg produced no frames"))

    async def stop_feeds(self) -> None:
        """Kill every ffmpeg feeding the hub (like an origin dying)."""
        await self._end_feeds(cancel=False)

    async def _end_feeds(self, *, cancel: bool) -> None:
        """Kill the ffmpeg feeds and wait for their feeder tasks (bounded), which end on the
        feed's EOF; `cancel` does not wait for that (closing the node)."""
        for proc in self._procs:
            if proc.returncode is None:
                proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
        for task in self._feeders:
            if cancel:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 5)
        self._procs.clear()
        self._feeders.clear()

    async def close(self) -> None:
        await self._end_feeds(cancel=True)
        await self.hub.close()
        if self._runner is not None:
            await self._runner.cleanup()


async def ffprobe_frames(
    ffprobe: str, url: str, seconds: float, timeout: float = 30
) -> dict[str, list[dict]]:
    """Decode `seconds` of media from `url`; returns the frames per stream type (video/audio)."""
    proc = await asyncio.create_subprocess_exec(
        ffprobe, "-hide_banner", "-loglevel", "error", "-read_intervals", f"%+{seconds}",
        "-show_entries", "frame=media_type,key_frame,pts_time,pkt_dts_time,width,height",
        "-of", "json", url,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")
    frames = json.loads(out)["frames"]
    result: dict[str, list[dict]] = {"video": [], "audio": []}
    for frame in frames:
        result.setdefault(frame.get("media_type", "?"), []).append(frame)
    return result


class FlvViewer:
    """A raw HTTP/1.0 HTTP-FLV viewer (no chunking) that decodes what it receives.

    Records (wall time, frame) for every frame so tests can compare media time with
    wall time. `read=False` makes a viewer that connects and then never reads.
    """

    def __init__(self, port: int, path: str = "/live/s.flv", *, host: str = "127.0.0.1") -> None:
        self.port = port
        self.path = path
        self.host = host
        self.status = 0
        self.headers: dict[str, str] = {}
        self.frames: list[tuple[float, Frame]] = []
        self.bytes = 0
        self.connected_at = 0.0
        self.eof = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self, *, rcvbuf: int | None = None) -> FlvViewer:
        import socket

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        self._reader, self._writer = await asyncio.open_connection(sock=sock)
        self.connected_at = time.monotonic()
        self._writer.write(f"GET {self.path} HTTP/1.0\r\nHost: {self.host}\r\n\r\n".encode())
        return self

    async def read_headers(self, timeout: float = 10) -> int:
        assert self._reader is not None
        raw = await asyncio.wait_for(self._reader.readuntil(b"\r\n\r\n"), timeout)
        lines = raw.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                self.headers[name.strip().lower()] = value.strip()
        return self.status

    def start(self) -> None:
        """Read and decode the body in the background."""
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._reader is not None
        decoder = FlvDecoder()
        while chunk := await self._reader.read(65536):
            self.bytes += len(chunk)
            now = time.monotonic()
            for event in decoder.feed(chunk):
                if isinstance(event, Frame):
                    self.frames.append((now, event))
        self.eof = True

    def media(self, kind: FrameKind | None = None, *, coded: bool = True) -> list[Frame]:
        return [
            f
            for _, f in self.frames
            if (kind is None or f.kind == kind) and not (coded and (f.config or f.kind == FrameKind.DATA))
        ]

    def media_ms_between(self, t0: float, t1: float) -> int:
        """How far the video timeline advanced between two wall-clock instants."""
        stamps = [f.timestamp for t, f in self.frames if t0 <= t <= t1 and f.kind == FrameKind.VIDEO]
        return stamps[-1] - stamps[0] if len(stamps) > 1 else 0

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 2)
