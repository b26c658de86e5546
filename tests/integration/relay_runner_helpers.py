"""Scaffolding for the in-process relay tests: scripted origins replaying the real sample,
a Subscriber-reading viewer, fast settings and small waits (used by test_relay_v3_runner.py
and test_relay_v3_hardening.py; their fixtures live in tests/integration/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

from liverelay.config import RelaySettings
from liverelay.hub import Hub, SourceKind, StreamKey
from liverelay.media.frame import Frame, FrameKind
from liverelay.relay.events import RelayEvents
from liverelay.relay.ondemand import OnDemandRelays
from liverelay.relay.policy import SourcePolicy
from liverelay.relay.pull import RelayPull
from liverelay.sources import SourceError
from liverelay.store.models import RelayGroup, RelayServer, RelayV3Config

KEY = StreamKey("vh", "live", "s")


class Origin:
    """One scripted origin: replays the sample in real time while `alive`."""

    def __init__(self, frames: list[Frame]) -> None:
        self.frames = frames
        self.alive = True
        self.stalled = False
        self.connects = 0
        self.streaming = 0
        self.queries: list[str] = []

    async def pull(self, url: str, sink: Any, *, settings: RelaySettings) -> None:
        self.connects += 1
        self.queries.append(url.partition("?")[2])
        if not self.alive:
            raise SourceError("connect", "connection refused")
        self.streaming += 1
        try:
            start = time.monotonic()
            offset = 0
            while True:  # loop the sample; bounded by the test timeout and cancellation
                for frame in self.frames:
                    due = start + (offset + frame.timestamp) / 1000
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    if not self.alive:
                        raise SourceError("eof", "origin went away")
                    while self.stalled:
                        await asyncio.sleep(0.05)
                    sink.on_frame(
                        Frame(
                            frame.kind,
                            offset + frame.timestamp,
                            frame.payload,
                            keyframe=frame.keyframe,
                            config=frame.config,
                        )
                    )
                offset += self.frames[-1].timestamp + 33
        finally:
            self.streaming -= 1


class Origins:
    def __init__(self, frames: list[Frame], n: int) -> None:
        self.by_url = {f"rtmp://127.0.0.1:{1000 + i}/live/s": Origin(frames) for i in range(n)}
        self.urls = list(self.by_url)

    def __getitem__(self, i: int) -> Origin:
        return self.by_url[self.urls[i]]

    def open_source(self, url: str) -> Any:
        return self.by_url[url.partition("?")[0]].pull


def fast_settings(**kw: Any) -> RelaySettings:
    base = dict(
        connect_timeout_s=1.0,
        first_frame_timeout_s=1.0,
        start_timeout_s=4.0,
        no_media_timeout_s=1.0,
        linger_s=0.5,
        backoff_initial_s=0.2,
        backoff_max_s=0.5,
        failback=True,
        failback_probe_interval_s=0.3,
    )
    base.update(kw)
    return RelaySettings(**base)  # type: ignore[arg-type]


class Viewer:
    """Reads a Subscriber until EOF, recording what a player would see."""

    def __init__(self, sub: Any) -> None:
        self.sub = sub
        self.frames: list[tuple[float, Frame]] = []
        self.eof = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.sub.read()
            if not batch:
                self.eof.set()
                return
            now = time.monotonic()
            self.frames.extend((now, f) for f in batch)

    def media(self) -> list[Frame]:
        return [f for _, f in self.frames if f.kind != FrameKind.DATA and not f.config]

    async def frames_after(self, n: int, timeout: float = 6.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.media()) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(self.media()) >= n, f"viewer got {len(self.media())} frames, wanted {n}"

    async def more_frames(self, n: int, timeout: float = 6.0) -> None:
        """Until n more media frames than now have arrived (the viewer plays on)."""
        await self.frames_after(len(self.media()) + n, timeout)

    def assert_monotonic(self) -> None:
        ts = [f.timestamp for f in self.media()]
        assert all(b >= a for a, b in itertools.pairwise(ts)), "timestamps went backwards"

    def max_gap(self) -> float:
        times = [t for t, f in self.frames if f.kind == FrameKind.VIDEO]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    async def close(self) -> None:
        self.sub.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def make_pull(
    hub: Hub, origins: Origins, settings: RelaySettings, kind: str = "play", **kw: Any
) -> RelayPull:
    source_kind = SourceKind.RELAY_PLAY if kind == "play" else SourceKind.RELAY_FIXED
    return RelayPull(
        key=KEY,
        kind=kind,
        urls=origins.urls,
        publication_factory=lambda: hub.publish(KEY, kind=source_kind, owner="test-relay"),
        settings=settings,
        events=kw.pop("events", None),
        open_source=origins.open_source,
        **kw,
    )


async def finish(pull: RelayPull, task: asyncio.Task[None]) -> None:
    await pull.stop("test over")
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


def v3_config(origins: Origins, params: dict[str, str] | None = None) -> RelayV3Config:
    servers = tuple(RelayServer("rtmp", url.split("/")[2], params or {}) for url in origins.urls)
    return RelayV3Config(vhost="vh", app="live", groups=(RelayGroup("g", servers),), created=0, updated=0)


def ondemand(hub: Hub, origins: Origins, settings: RelaySettings) -> OnDemandRelays:
    relays = OnDemandRelays(
        hub, settings, RelayEvents(), SourcePolicy(settings), open_source=origins.open_source
    )
    # RelayServer domains are "127.0.0.1:100x" -> URLs identical to origins.urls.
    relays.load([v3_config(origins)])
    hub.play_trigger = relays.play_trigger
    return relays
