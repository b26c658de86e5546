"""sources.ffmpeg against real origins: a live HLS playlist over HTTP and an ffmpeg SRT listener.

Also home of the origin helpers the node-level V4 tests (test_relay_v4.py) use:
`HlsOrigin` (ffmpeg writing a live playlist, served by aiohttp in a thread) and
`srt_listener` (ffmpeg as SRT listener, one caller).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from tests.conftest import free_port, stop_process

from liverelay.config import RelaySettings
from liverelay.media.frame import Frame, FrameKind
from liverelay.sources.base import SourceError
from liverelay.sources.ffmpeg import pull

# -- origins ---------------------------------------------------------------------------------


def looping_ffmpeg(ffmpeg: str, sample: Path, output: list[str]) -> subprocess.Popen[bytes]:
    """ffmpeg sending `sample` in real time, looped and stream-copied, to `output` (format, target)."""
    command = [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(sample)]
    return subprocess.Popen(
        [*command, "-c", "copy", *output],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class HlsOrigin:
    """ffmpeg writes a live HLS playlist (1 s target, 2 s GOP) into a temp dir; aiohttp serves it.

    The HTTP server runs on its own loop in a thread so that tests can stay synchronous
    (API calls, ffprobe) while a node pulls from it.
    """

    def __init__(self, ffmpeg: str, sample: Path, directory: Path) -> None:
        self.ffmpeg = ffmpeg
        self.sample = sample
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hls/index.m3u8"
        self._proc: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None

    def start(self) -> HlsOrigin:
        self.directory.mkdir(parents=True, exist_ok=True)
        hls = ["-hls_time", "1", "-hls_list_size", "4", "-hls_flags", "delete_segments+omit_endlist"]
        self._proc = looping_ffmpeg(
            self.ffmpeg, self.sample, ["-f", "hls", *hls, str(self.directory / "index.m3u8")]
        )
        self._thread = threading.Thread(target=self._serve, name="hls-origin", daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "HLS HTTP server did not start"
        playlist = self.directory / "index.m3u8"
        deadline = time.monotonic() + 15
        while not (playlist.exists() and playlist.read_text().count("#EXTINF") >= 2):
            assert time.monotonic() < deadline, "ffmpeg wrote no live playlist"
            assert self._proc.poll() is None, "the HLS ffmpeg died"
            time.sleep(0.1)
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def setup() -> None:
            app = web.Application()
            app.router.add_static("/hls", self.directory)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        loop.run_until_complete(setup())
        self._ready.set()
        loop.run_forever()
        if self._runner is not None:
            loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)


@contextlib.contextmanager
def hls_origin(ffmpeg: str, sample: Path, directory: Path) -> Iterator[HlsOrigin]:
    origin = HlsOrigin(ffmpeg, sample, directory)
    try:
        yield origin.start()
    finally:
        origin.stop()


@contextlib.contextmanager
def srt_listener(
    ffmpeg: str, sample: Path, port: int, *, passphrase: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """ffmpeg as an SRT listener sending `sample` in real time (serves one caller, then exits)."""
    url = f"srt://127.0.0.1:{port}?mode=listener"
    if passphrase:
        url += f"&passphrase={passphrase}"
    proc = looping_ffmpeg(ffmpeg, sample, ["-f", "mpegts", url])
    try:
        time.sleep(0.3)  # SRT is UDP: there is no port to poll; give the listener time to bind
        assert proc.poll() is None, "the SRT listener ffmpeg died"
        yield proc
    finally:
        stop_process(proc)


# -- pulling -----------------------------------------------------------------------------------


class FrameCounter:
    def __init__(self, enough_video: int) -> None:
        self.frames: list[Frame] = []
        self.enough_video = enough_video
        self.done = asyncio.Event()

    def on_frame(self, frame: Frame) -> None:
        self.frames.append(frame)
        if sum(1 for f in self.frames if f.kind == FrameKind.VIDEO and not f.config) >= self.enough_video:
            self.done.set()


def _settings(ffmpeg: str) -> RelaySettings:
    return RelaySettings(
        connect_timeout_s=3.0, first_frame_timeout_s=8.0, no_media_timeout_s=5.0, ffmpeg_path=ffmpeg
    )


async def _pull_until(url: str, ffmpeg: str, enough_video: int = 30, timeout: float = 20.0) -> FrameCounter:
    sink = FrameCounter(enough_video)
    task = asyncio.create_task(pull(url, sink, settings=_settings(ffmpeg)))
    try:
        done = asyncio.create_task(sink.done.wait())
        finished, _ = await asyncio.wait({task, done}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        done.cancel()
        if task in finished:
            task.result()  # raises the SourceError if the pull failed
            pytest.fail("the pull ended before delivering enough frames")
        assert finished, f"not enough frames after {timeout}s: {len(sink.frames)} frames"
        return sink
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, SourceError):
            async with asyncio.timeout(10):  # a pull that ignores cancellation fails here
                await task


def _assert_playable_frames(frames: list[Frame]) -> None:
    kinds = {f.kind for f in frames}
    assert FrameKind.VIDEO in kinds and FrameKind.AUDIO in kinds
    video_config = [f for f in frames if f.kind == FrameKind.VIDEO and f.config]
    assert video_config, "no AVC sequence header"
    assert video_config[0].payload[0] & 0x0F == 7  # AVC
    assert any(f.kind == FrameKind.VIDEO and f.keyframe for f in frames)
    assert any(f.kind == FrameKind.AUDIO and f.config for f in frames), "no AAC sequence header"
    video_ts = [f.timestamp for f in frames if f.kind == FrameKind.VIDEO and not f.config]
    assert video_ts == sorted(video_ts), "video timestamps go backwards"


async def test_hls_source_delivers_avc_and_aac(ffmpeg: str, sample_flv: Path, tmp_path: Path) -> None:
    origin = HlsOrigin(ffmpeg, sample_flv, tmp_path / "hls")
    await asyncio.to_thread(origin.start)
    try:
        sink = await _pull_until(origin.url, ffmpeg)
    finally:
        await asyncio.to_thread(origin.stop)
    _assert_playable_frames(sink.frames)
    assert any(f.kind == FrameKind.DATA and b"onMetaData" in f.payload for f in sink.frames)


async def test_srt_source_with_streamid_and_passphrase(ffmpeg: str, sample_flv: Path) -> None:
    port = free_port()
    url = f"srt://127.0.0.1:{port}?streamid=live/s1&passphrase=liverelay-test-1"
    with srt_listener(ffmpeg, sample_flv, port, passphrase="liverelay-test-1"):
        sink = await _pull_until(url, ffmpeg)
    _assert_playable_frames(sink.frames)


async def test_srt_source_with_wrong_passphrase_fails_with_reason(ffmpeg: str, sample_flv: Path) -> None:
    port = free_port()
    url = f"srt://127.0.0.1:{port}?passphrase=not-the-right-one"
    listener = srt_listener(ffmpeg, sample_flv, port, passphrase="liverelay-test-1")
    with listener, pytest.raises(SourceError) as err:
        await asyncio.wait_for(pull(url, FrameCounter(1), settings=_settings(ffmpeg)), 15)
    assert err.value.reason == "process_exit"
    assert "not-the-right-one" not in err.value.message  # the secret is not echoed into status/logs
