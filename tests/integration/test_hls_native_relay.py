"""Fixed (V4) relays from HLS origins through the native puller, end to end.

A real `liverelay serve` node pulls from ffmpeg writing live HLS (plain and AES-128, one
ffmpeg process) into temp dirs that an aiohttp server in a thread serves on loopback,
next to a master playlist with two variants, a playlist that stalls, and one that
redirects to a denied address (a second site on 127.0.0.2, denied by the node's config).
ffprobe plays the relayed streams; the node must never start an ffmpeg (its children are
read from /proc during the whole test).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from tests.conftest import NodeProcess, free_port
from tests.integration.test_relay_v4 import (
    RELAY_CONFIG,
    assert_plays,
    children,
    create_fixed,
    relay_rows,
    setup_domains,
    wait_row,
    wait_up,
)
from tests.integration.test_relay_v4_sources import HlsOrigin

DENIED_HOST = "127.0.0.2"
KEY = bytes(range(16))
CONFIG = RELAY_CONFIG + f'deny_cidrs = ["169.254.0.0/16", "{DENIED_HOST}/32"]\n'


class LiveHls(HlsOrigin):
    """ffmpeg writing /hls (plain) and /enc (AES-128, IV = media sequence) live playlists,
    1 s segments; aiohttp (own loop, own thread) serving them plus /master.m3u8, /stall/
    (a frozen copy taken at the first request) and /redirect.m3u8 (302 to the denied site)."""

    def __init__(self, ffmpeg: str, sample: Path, directory: Path) -> None:
        super().__init__(ffmpeg, sample, directory)
        self.denied_port = free_port()
        self.denied_requests: list[str] = []
        self.requests: list[str] = []
        self._stall_lock = threading.Lock()

    def at(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> LiveHls:
        plain, enc = self.directory / "hls", self.directory / "enc"
        plain.mkdir(parents=True)
        enc.mkdir()
        (self.directory / "key.bin").write_bytes(KEY)
        keyinfo = self.directory / "keyinfo"
        keyinfo.write_text(f"/keys/k\n{self.directory / 'key.bin'}\n")
        hls = ["-hls_time", "1", "-hls_list_size", "4", "-hls_flags", "delete_segments+omit_endlist"]
        command = [self.ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1"]
        command += ["-i", str(self.sample)]
        command += ["-map", "0", "-c", "copy", "-f", "hls", *hls, str(plain / "index.m3u8")]
        command += ["-map", "0", "-c", "copy", "-f", "hls", *hls, "-hls_key_info_file", str(keyinfo)]
        command += [str(enc / "index.m3u8")]
        self._proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._thread = threading.Thread(target=self._serve, name="hls-native-origin", daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "HLS HTTP server did not start"
        deadline = time.monotonic() + 15
        for playlist in (plain / "index.m3u8", enc / "index.m3u8"):
            while not (playlist.exists() and playlist.read_text().count("#EXTINF") >= 3):
                assert time.monotonic() < deadline, f"ffmpeg wrote no live playlist {playlist}"
                assert self._proc.poll() is None, "the HLS ffmpeg died"
                time.sleep(0.1)
        assert "METHOD=AES-128" in (enc / "index.m3u8").read_text()
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        runners: list[web.AppRunner] = []

        async def setup() -> None:
            app = web.Application(middlewares=[self._count])
            app.router.add_static("/hls", self.directory / "hls")
            app.router.add_static("/enc", self.directory / "enc")
            app.router.add_get("/keys/k", self._key)
            app.router.add_get("/master.m3u8", self._master)
            app.router.add_get("/redirect.m3u8", self._redirect)
            app.router.add_get("/stall/{file}", self._stall)
            denied = web.Application()
            denied.router.add_route("*", "/{tail:.*}", self._denied)
            for application, host, port in (
                (app, "127.0.0.1", self.port),
                (denied, DENIED_HOST, self.denied_port),
            ):
                runner = web.AppRunner(application, access_log=None)
                await runner.setup()
                await web.TCPSite(runner, host, port).start()
                runners.append(runner)

        loop.run_until_complete(setup())
        self._ready.set()
        loop.run_forever()
        for runner in runners:
            loop.run_until_complete(runner.cleanup())
        loop.close()

    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(request.path)
        response: web.StreamResponse = await handler(request)
        return response

    async def _key(self, request: web.Request) -> web.Response:
        return web.Response(body=KEY)

    async def _master(self, request: web.Request) -> web.Response:
        return web.Response(
            text="#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=400000\n/lo/index.m3u8\n"
            "#EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=640x360\n/hls/index.m3u8\n"
        )

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://{DENIED_HOST}:{self.denied_port}/hls/index.m3u8")

    async def _denied(self, request: web.Request) -> web.Response:
        self.denied_requests.append(request.path)
        return web.Response(status=404)

    async def _stall(self, request: web.Request) -> web.StreamResponse:
        stall = self.directory / "stall"
        with self._stall_lock:
            if not stall.exists():  # freeze the live playlist and keep its segments
                stall.mkdir()
                text = (self.directory / "hls" / "index.m3u8").read_text()
                for line in text.splitlines():
                    if line and not line.startswith("#"):
                        shutil.copy(self.directory / "hls" / line, stall / line)
                (stall / "index.m3u8").write_text(text)
        path = stall / request.match_info["file"]
        if not path.is_file():
            return web.Response(status=404)
        return web.FileResponse(path)


@pytest.fixture
def live_hls(ffmpeg: str, sample_flv: Path, tmp_path: Path) -> Iterator[LiveHls]:
    origin = LiveHls(ffmpeg, sample_flv, tmp_path / "origin")
    try:
        yield origin.start()
    finally:
        origin.stop()


class ChildWatch:
    """Polls the node's ffmpeg children from /proc (10 Hz) while the test runs."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.seen: set[int] = set()
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="child-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.seen.update(children(self.node.proc.pid, "ffmpeg"))
            self.polls += 1

    def check(self) -> None:
        self.seen.update(children(self.node.proc.pid, "ffmpeg"))
        assert not self.seen, f"the node started ffmpeg for an HLS source: pids {sorted(self.seen)}"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_native_hls_relays_without_ffmpeg(node_factory: Any, ffprobe: str, live_hls: LiveHls) -> None:
    node: NodeProcess = node_factory("relay", config=CONFIG)
    watch = ChildWatch(node)
    try:
        run_relays(node, ffprobe, live_hls, watch)
    finally:
        watch.stop()
    assert watch.polls > 10
    watch.check()


def run_relays(node: NodeProcess, ffprobe: str, live_hls: LiveHls, watch: ChildWatch) -> None:
    service = setup_domains(node)
    streams = {
        "live": [live_hls.at("/hls/index.m3u8")],
        "master": [live_hls.at("/master.m3u8")],
        "aes": [live_hls.at("/enc/index.m3u8")],
        "denied": [live_hls.at("/redirect.m3u8")],
        "stalls": [live_hls.at("/stall/index.m3u8"), live_hls.at("/hls/index.m3u8")],
    }
    created = time.monotonic()
    for stream, urls in streams.items():
        create_fixed(service, stream, urls)
    watch.check()

    # The stalled source comes up, then fails over to the next SrcAddr.
    wait_up(service, "stalls", timeout=25)
    up_at = time.monotonic()
    no_media_timeout_s = 3.0  # RELAY_CONFIG
    row = wait_row(
        service,
        "stalls",
        lambda r: r is not None and r["State"] == "up" and r["SourceUrl"] == streams["stalls"][1],
        30,
        "failover from the stalled playlist",
    )
    failover_s = time.monotonic() - up_at
    print(f"stalled playlist: failed over {failover_s:.1f}s after coming up; row {row}")
    # The stall is detected no_media_timeout_s after the playlist's last growth (its first load,
    # when the copy froze), plus the segments still buffered (2 x 1 s) and polling slack.
    assert failover_s <= no_media_timeout_s + 2 * 1.0 + 5.0, failover_s

    for stream in ("live", "master", "aes"):
        row = wait_up(service, stream, timeout=25)
        assert row["SourceUrl"] == streams[stream][0] and row["Frames"] > 0, row
    for stream in ("live", "master", "aes"):
        assert_plays(ffprobe, node, stream)
    assert not [p for p in live_hls.requests if p.startswith("/lo/")], "the low variant was fetched"
    assert "/keys/k" in live_hls.requests

    row = wait_row(
        service,
        "denied",
        lambda r: r is not None and "policy" in str(r["LastError"]),
        20,
        "the redirect's policy error in status",
    )
    assert row is not None and row["State"] != "up" and DENIED_HOST in row["LastError"], row
    assert live_hls.denied_requests == [], "a pull reached the denied host"
    assert relay_rows(service, "denied")[0]["State"] != "up"
    watch.check()
    print(f"all relays decided {time.monotonic() - created:.1f}s after creation")
