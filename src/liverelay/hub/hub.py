"""The stream registry: who writes each stream, who reads it, and the play trigger."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry

from ..config import MediaSettings
from .keys import SourceKind, StreamBusy, StreamKey
from .metrics import HubCollector
from .stream import Publication, Stream
from .subscriber import Subscriber

log = logging.getLogger("liverelay.hub")

PlayTrigger = Callable[[StreamKey, str], Awaitable[bool]]


def _may_take_over(new: SourceKind, current: SourceKind) -> bool:
    """A play-triggered pull (RELAY_PLAY) only serves until a better source appears: a
    local publisher or a fixed relay takes it over. Nothing takes over a PUBLISHER or a
    RELAY_FIXED source (a fixed relay between origins keeps its stream)."""
    return current is SourceKind.RELAY_PLAY and new in (SourceKind.PUBLISHER, SourceKind.RELAY_FIXED)


class Hub:
    def __init__(self, media_settings: MediaSettings, metrics: CollectorRegistry | None = None) -> None:
        self.settings = media_settings
        self._streams: dict[StreamKey, Stream] = {}
        # Set by the on-demand relay: awaited when a viewer asks for a stream with no source.
        self.play_trigger: PlayTrigger | None = None
        self._viewers_by_protocol: Counter[str] = Counter()
        # Totals of streams already removed (live streams are summed at scrape time).
        self._retired_bytes_in = 0
        self._retired_bytes_out = 0
        self._retired_skips = 0
        self._retired_drops = 0
        self._closed = False
        if metrics is not None:
            metrics.register(HubCollector(self))

    # -- registry ---------------------------------------------------------------

    def get(self, key: StreamKey) -> Stream | None:
        return self._streams.get(key)

    def streams(self) -> list[Stream]:
        return list(self._streams.values())

    def _get_or_create(self, key: StreamKey) -> Stream:
        stream = self._streams.get(key)
        if stream is None:
            stream = Stream(self, key, self.settings)
            self._streams[key] = stream
        return stream

    # -- StreamOwner (hub/protocols.py): what streams tell the hub -----------------

    def stream_idle(self, stream: Stream) -> None:
        if stream.source is None and not stream.has_readers and self._streams.get(stream.key) is stream:
            del self._streams[stream.key]
            self._retire(stream)

    def viewer_joined(self, sub: Subscriber) -> None:
        self._viewers_by_protocol[sub.protocol] += 1

    def viewer_left(self, sub: Subscriber) -> None:
        self._viewers_by_protocol[sub.protocol] -= 1

    def _retire(self, stream: Stream) -> None:
        self._retired_bytes_in += stream.bytes_in
        self._retired_bytes_out += stream.bytes_out
        self._retired_skips += stream.viewer_skips
        self._retired_drops += stream.viewer_drops

    # -- writers ----------------------------------------------------------------

    def publish(self, key: StreamKey, *, kind: SourceKind, owner: str = "") -> Publication:
        """Become the source of `key`; StreamBusy when the current source may not be taken over."""
        if self._closed:
            raise StreamBusy(key, kind, "hub closed")
        stream = self._get_or_create(key)
        current = stream.source
        if current is not None and not _may_take_over(kind, current.kind):
            raise StreamBusy(key, current.kind, current.owner)
        pub = Publication(stream, kind, owner)
        if current is not None:
            current.preempt()
            log.info(
                "stream %s: %s %r takes over from %s %r",
                key,
                kind.value,
                owner,
                current.kind.value,
                current.owner,
            )
        stream.set_source(pub)
        if current is not None and current.on_preempted is not None:
            try:
                current.on_preempted()
            except Exception:
                log.exception("on_preempted of %r failed", current)
        return pub

    # -- readers ----------------------------------------------------------------

    async def play(
        self,
        key: StreamKey,
        *,
        protocol: str,
        remote: str = "",
        query: str = "",
        timeout: float = 10.0,
    ) -> Subscriber | None:
        """A subscriber for `key`, or None when the stream has no source and none can be started."""
        if self._closed:
            return None
        stream = self._streams.get(key)
        if stream is not None and stream.has_source:
            return stream.subscribe(protocol=protocol, remote=remote, query=query)
        trigger = self.play_trigger
        if trigger is None:
            return None
        # Registered first so the relay counts this viewer while it starts the pull.
        stream = self._get_or_create(key)
        sub = stream.subscribe(protocol=protocol, remote=remote, query=query)
        ok = False
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for returns the trigger's result
            # when the viewer's task is cancelled (client gone) just as the trigger
            # completes, and the cancel is lost.
            async with asyncio.timeout(timeout):
                ok = bool(await trigger(key, query))
        except TimeoutError:
            log.info("play %s from %s: no source within %.1fs", key, remote, timeout)
        except asyncio.CancelledError:
            sub.close()
            raise
        except Exception:
            log.exception("play trigger for %s failed", key)
        if not ok or sub.ended:
            sub.close()
            return None
        return sub

    # -- totals -----------------------------------------------------------------

    def viewers_by_protocol(self) -> dict[str, int]:
        return dict(self._viewers_by_protocol)

    @property
    def bytes_in_total(self) -> int:
        return self._retired_bytes_in + sum(s.bytes_in for s in self._streams.values())

    @property
    def bytes_out_total(self) -> int:
        return self._retired_bytes_out + sum(s.bytes_out for s in self._streams.values())

    @property
    def viewer_skips(self) -> int:
        """Times a slow viewer skipped to the next keyframe, over the hub's life."""
        return self._retired_skips + sum(s.viewer_skips for s in self._streams.values())

    @property
    def viewer_drops(self) -> int:
        """Viewers disconnected for being too slow, over the hub's life."""
        return self._retired_drops + sum(s.viewer_drops for s in self._streams.values())

    async def close(self) -> None:
        """End every stream: sources are closed and viewers get EOF."""
        self._closed = True
        for stream in list(self._streams.values()):
            stream.close("node shutting down")
            self.stream_idle(stream)
        for stream in self._streams.values():
            self._retire(stream)
        self._streams.clear()
