"""Stream control for the stream actions: forbidden streams, ended streams, kill.

The stream actions (api/actions/streams.py) and the RTMP server's publish admission
share one `StreamControl` per node:

- `forbid(key, until)` / `resume(key)` / `is_forbidden(key)`: a forbidden stream's
  publisher is refused (servers/rtmp.py asks `is_forbidden` before `hub.publish`) until
  it is resumed or the forbid expires. At most `max_forbidden` entries (expired ones are
  dropped first); past it ForbidStream is refused.
- `kill(key)`: ends the stream's current source (an RTMP publisher's connection is cut,
  a play-triggered pull stops; a fixed relay's task starts it again, as its schedule says).
- `closed()`: the last `history` ended streams, newest last. A background task samples
  the hub once per `poll_s` (no hook in the hub's hot path), so an end time is accurate
  to about `poll_s`; a kill is recorded at once.

It needs of the hub only what `StreamHub` lists.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .hub.keys import SourceKind, StreamKey
from .tasks import cancel_and_wait
from .wakegrid import sleep_to_tick

log = logging.getLogger("liverelay.streamctl")


class SourceView(Protocol):
    """What stream control reads of a stream's source (hub.Publication)."""

    kind: SourceKind
    owner: str
    started_at: float
    on_preempted: Callable[[], None] | None

    @property
    def active(self) -> bool: ...

    def close(self, reason: str = ...) -> None: ...


class StreamView(Protocol):
    """What stream control and the stream actions read of a stream (hub.Stream)."""

    @property
    def key(self) -> StreamKey: ...
    @property
    def source(self) -> SourceView | None: ...


class StreamHub(Protocol):
    def streams(self) -> Sequence[StreamView]: ...


class EmptyHub:
    """The hub of an API served without media (the API alone, as in tests): no streams."""

    bytes_in_total = 0
    bytes_out_total = 0

    def streams(self) -> list[StreamView]:
        return []

    def viewers_by_protocol(self) -> dict[str, int]:
        return {}


def source_type(kind: SourceKind) -> str:
    """Volcengine's SourceType: push (a publisher) or relay (a pull)."""
    return "push" if kind is SourceKind.PUBLISHER else "relay"


@dataclass(frozen=True, slots=True)
class ClosedStream:
    key: StreamKey
    kind: SourceKind
    owner: str
    start: float  # Unix seconds
    end: float
    reason: str  # "ended" (seen gone), "killed", "forbidden"


@dataclass(frozen=True, slots=True)
class Forbid:
    since: float  # Unix seconds: when ForbidStream was called
    until: float  # Unix seconds: when the publisher may come back


class StreamControl:
    def __init__(
        self,
        hub: StreamHub,
        *,
        history: int = 1000,
        max_forbidden: int = 10_000,
        poll_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hub = hub
        self.max_forbidden = max_forbidden
        self.poll_s = poll_s
        self.clock = clock
        self._forbidden: dict[StreamKey, Forbid] = {}
        self._closed: deque[ClosedStream] = deque(maxlen=max(1, history))
        # Sources seen live at the last sample: id(source) -> (key, source).
        self._live: dict[int, tuple[StreamKey, SourceView]] = {}
        self._task: asyncio.Task[None] | None = None
        self.started_at = clock()
        # Listener name (api, http, rtmp) -> URL, filled by the node once they are bound.
        self.listeners: dict[str, str] = {}

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="streamctl")

    async def close(self) -> None:
        await cancel_and_wait(self._task, "the stream sampler", logger=log)
        self._task = None
        self.sample()  # what ended with the node's shutdown is history too

    async def _run(self) -> None:
        while True:
            await sleep_to_tick(self.poll_s)  # with the node's other 1 s pollers
            try:
                self.sample()
            except Exception:  # a bug here must not end the sampling for good
                log.exception("stream history sample failed")

    def sample(self) -> None:
        """Record sources that were live at the last sample and are gone now."""
        now: dict[int, tuple[StreamKey, SourceView]] = {}
        for stream in self.hub.streams():
            source = stream.source
            if source is not None and source.active:
                now[id(source)] = (stream.key, source)
        for ident, (key, source) in self._live.items():
            if ident not in now:
                self._record(key, source, "ended")
        self._live = now

    def _record(self, key: StreamKey, source: SourceView, reason: str) -> None:
        self._closed.append(
            ClosedStream(key, source.kind, source.owner, source.started_at, self.clock(), reason)
        )

    # -- ended streams -----------------------------------------------------------

    def closed(self) -> list[ClosedStream]:
        return list(self._closed)

    # -- kill --------------------------------------------------------------------

    def kill(self, key: StreamKey, reason: str = "killed") -> bool:
        """End the current source of `key`; False when the stream has none."""
        for stream in self.hub.streams():
            source = stream.source
            if stream.key != key or source is None or not source.active:
                continue
            self._live.pop(id(source), None)
            self._record(key, source, reason)
            callback = source.on_preempted
            source.close(reason)
            if callback is not None:
                # The owner's "you are done" hook: the RTMP publisher drops its connection,
                # a play-triggered pull stops instead of writing into a closed stream.
                try:
                    callback()
                except Exception:
                    log.exception("ending the source of %s after %s failed", key, reason)
            log.info("stream %s: source %r %s", key, source.owner, reason)
            return True
        return False

    # -- forbid ------------------------------------------------------------------

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, entry in self._forbidden.items() if entry.until <= now]:
            del self._forbidden[key]

    def forbid(self, key: StreamKey, until: float) -> bool:
        """Refuse `key`'s publisher until `until` (Unix seconds); False when the list is full."""
        self._expire()
        if key not in self._forbidden and len(self._forbidden) >= self.max_forbidden:
            return False
        self._forbidden[key] = Forbid(self.clock(), until)
        self.kill(key, "forbidden")
        return True

    def resume(self, key: StreamKey) -> bool:
        return self._forbidden.pop(key, None) is not None

    def is_forbidden(self, key: StreamKey) -> bool:
        entry = self._forbidden.get(key)
        if entry is None:
            return False
        if entry.until <= self.clock():
            del self._forbidden[key]
            return False
        return True

    def forbidden(self) -> dict[StreamKey, Forbid]:
        """The forbidden streams now (expired entries dropped)."""
        self._expire()
        return dict(self._forbidden)


__all__ = [
    "ClosedStream",
    "EmptyHub",
    "Forbid",
    "SourceView",
    "StreamControl",
    "StreamHub",
    "StreamView",
    "source_type",
]
