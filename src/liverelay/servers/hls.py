"""HLS and LL-HLS output on the HTTP listener: one muxer per stream, sessions per viewer.

URLs (docs/hls.md):
- `/{app}/{stream}.m3u8`        classic HLS (MPEG-TS): a master playlist naming `{stream}/ts.m3u8?s=TOKEN`
- `/{app}/{stream}/index.m3u8`  LL-HLS (fMP4/CMAF parts): a master naming `ll.m3u8?s=TOKEN`
- `/{app}/{stream}/ts.m3u8`, `/{app}/{stream}/ll.m3u8`: the media playlists
  (`_HLS_msn`, `_HLS_part`, `_HLS_skip=YES` on ll.m3u8)
- `/{app}/{stream}/seg{n}.ts|seg{n}.m4s|part{n}.{i}.m4s|init{id}.mp4?v=GEN&s=TOKEN`

Design:
- `HlsMuxer`, one per stream with HLS viewers: one internal hub Subscriber (protocol
  `hls-muxer`, not counted as a viewer) in push mode; the hub's fan-out hands it frames and they are segmented
  synchronously (no task switch, the wall clock of receipt is read there). Variants
  (TS, fMP4) start on the first request for them, fed the stream's current decoder
  configs, so a stream only ever played as classic HLS never builds fMP4.
- `HlsSession`, one per viewer (the `s` query token in every URI the playlists write):
  a hub Subscriber with protocol `hls` that only counts (its frames are discarded on
  arrival), so an HLS viewer counts for the V3 linger, DescribeRelayStatus Viewers and
  liverelay_viewers{protocol="hls"} while it keeps fetching. Its hub.play() is what
  triggers a play-triggered pull for a missing stream.
- A janitor (once a second) ends sessions not seen for `hls_session_timeout_s` and muxers
  not fetched from for `hls_linger_s`.
- Segment URIs carry the muxer's generation (`v=`): sequence numbers restart with a new
  muxer, so a URI never names two different bodies and segments may be cached immutable.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import re
import secrets
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..config import MediaSettings
from ..hub import StreamKey, Subscriber
from ..media.elementary import BitstreamError, aac_payload, parse_asc, parse_video_config, parse_video_tag
from ..media.frame import Frame, FrameKind
from ..media.hls.playlist import (
    Reload,
    ResourceNames,
    parse_resource,
    part_decision,
    reload_decision,
    render_playlist,
)
from ..media.hls.segmenter import Container, HlsSegmenter, Published, SegmenterConfig
from .admission import RateLimitedLog
from .peertext import clip
from .protocols import MediaHub

if TYPE_CHECKING:
    from prometheus_client import Metric

log = logging.getLogger("liverelay.hls")
_LOG = RateLimitedLog(log)

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
CONTENT_TYPES = {"ts": "video/mp2t", "m4s": "video/iso.segment", "mp4": "video/mp4"}
MUXER_PROTOCOL = "hls-muxer"  # the muxer's own hub subscriber (one per stream with HLS viewers)
VIEWER_PROTOCOL = "hls"
JANITOR_INTERVAL_S = 1.0
GZIP_MIN_BYTES = 512  # smaller playlists are not worth the CPU
TOKEN_MARK = "\x00token\x00"  # stands for the session token in a cached playlist
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_MAX_GOP_WAIT_MS = 1500  # track detection: media buffered before starting without a missing track
_MAX_PENDING_FRAMES = 2000


class HlsError(Exception):
    """A request the HLS service answers with `status` (404 missing, 503 over a cap)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


# ------------------------------------------------------------------ variants and muxers


@dataclass(slots=True)
class Variant:
    """One segmenter (TS or fMP4) of a muxer and the waiters for what it publishes."""

    segmenter: HlsSegmenter
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    last_fetch: float = field(default_factory=time.monotonic)
    waiters: int = 0  # requests held for it (the janitor keeps a variant someone waits for)
    version: int = 0  # bumped on every change: the key of the rendered-playlist cache
    # (version, skip) -> the playlist rendered with TOKEN_MARK for the session token: one
    # render per change, not per viewer request.
    rendered: dict[bool, tuple[int, str]] = field(default_factory=dict)

    def publish(self, events: list[Published]) -> None:
        if events:
            self.version += 1
            # Wake everything waiting, then give later waiters a fresh event.
            self.changed.set()
            self.changed = asyncio.Event()

    async def wait_change(self, timeout: float) -> bool:
        if timeout <= 0:
            return False
        event = self.changed
        self.waiters += 1
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            return False
        finally:
            self.waiters -= 1
            self.last_fetch = time.monotonic()
        return True


class HlsMuxer:
    """The HLS output of one stream: its hub subscriber and its variants."""

    def __init__(self, service: HlsService, key: StreamKey, sub: Subscriber) -> None:
        self.service = service
        self.key = key
        self.sub = sub
        self.generation = secrets.token_hex(4)
        self.variants: dict[Container, Variant] = {}
        self.sessions: dict[str, HlsSession] = {}
        self.last_fetch = time.monotonic()
        self.ended = False
        self.frames_in = 0
        # Frames seen before the tracks are known (a fresh pull sends its configs as they come).
        self._pending: list[tuple[Frame, float]] = []
        self._tracks: tuple[bool, bool] | None = None
        sub.on_drop = self._dropped

    # -- the hub side (runs inside the hub's fan-out: never raises) -------------------

    def wake(self) -> None:
        try:
            frames = self.sub.take()
            if frames:
                now = time.time()
                for frame in frames:
                    self._frame(frame, now)
            if self.sub.ended and not self.sub.queued_frames:
                self._finish()
        except Exception:
            log.exception("hls muxer of %s failed", clip(self.key))
            self._finish()

    def _frame(self, frame: Frame, now: float) -> None:
        self.frames_in += 1
        if self._tracks is None:
            self._pending.append((frame, now))
            tracks = self._detect_tracks()
            if tracks is None:
                return
            self._tracks = tracks
            pending, self._pending = self._pending, []
            for container, placeholder in list(self.variants.items()):
                self.variants[container] = self._new_variant(container, prime=False)
                placeholder.publish([Published(-1, None)])  # its waiters look again
            for held, when in pending:
                self._feed(held, when)
            return
        self._feed(frame, now)

    def _feed(self, frame: Frame, now: float) -> None:
        for variant in self.variants.values():
            seg = variant.segmenter
            malformed = seg.malformed_frames
            variant.publish(seg.push(frame, now))
            if seg.malformed_frames != malformed:
                _LOG.warning("malformed", "hls %s: frame skipped: %s", clip(self.key), clip(seg.last_error))

    def _detect_tracks(self) -> tuple[bool, bool] | None:
        """(video, audio) once both configs arrived, or once enough media says a track is absent."""
        video = any(f.config and _is_video(f) for f, _ in self._pending)
        audio = any(f.config and _is_aac(f) for f, _ in self._pending)
        if video and audio:
            return True, True
        media = [f.timestamp for f, _ in self._pending if not f.config and f.kind is not FrameKind.DATA]
        span = (max(media) - min(media)) if media else 0
        if span >= _MAX_GOP_WAIT_MS or len(self._pending) >= _MAX_PENDING_FRAMES:
            # A track whose config came before we joined: the stream's current header says.
            video = video or _is_video_header(self.service.hub, self.key)
            audio = audio or _is_aac_header(self.service.hub, self.key)
            if video or audio:
                return video, audio
            self._pending.clear()  # nothing we can mux (e.g. no AAC, unknown video): keep waiting
        return None

    def _new_variant(self, container: Container, *, prime: bool) -> Variant:
        video, audio = self._tracks or (True, True)
        s = self.service.settings
        target_ms = s.hls_target_duration_ms
        for other in self.variants.values():
            if not target_ms and other.segmenter.segments:
                # The GOP another variant measured: EXT-X-TARGETDURATION must not change later.
                target_ms = other.segmenter.target_duration_s * 1000
        config = SegmenterConfig(
            container=container,
            target_duration_ms=target_ms,
            part_target_ms=s.hls_part_target_ms if container is Container.FMP4 else 0,
            window_segments=s.hls_window_segments,
            max_window_bytes=s.hls_max_window_bytes,
        )
        variant = Variant(HlsSegmenter(config, video=video, audio=audio))
        stream = self.service.hub.get(self.key)
        if prime and stream is not None:
            # A variant added to a running muxer: give it the current decoder configs.
            now = time.time()
            for header in (stream.video_header, stream.audio_header):
                if header is not None:
                    variant.segmenter.push(header, now)
        return variant

    def variant(self, container: Container) -> Variant:
        variant = self.variants.get(container)
        if variant is None:
            if self._tracks is None:
                # Tracks unknown yet: a placeholder, rebuilt when they are (see _frame).
                variant = Variant(HlsSegmenter(SegmenterConfig(container=container), video=True, audio=True))
            else:
                variant = self._new_variant(container, prime=True)
            self.variants[container] = variant
        variant.last_fetch = self.last_fetch = time.monotonic()
        return variant

    def _finish(self) -> None:
        if self.ended:
            return
        self.ended = True
        for variant in self.variants.values():
            variant.publish(variant.segmenter.finish())
            variant.publish([Published(-1, None)])  # wake waiters even when nothing closed
        self.service.muxer_ended(self)

    def _dropped(self) -> None:
        log.warning("hls muxer of %s fell behind the stream and was dropped", clip(self.key))

    def close(self) -> None:
        self.sub.set_waker(None)
        self.sub.close()
        self._finish()

    @property
    def bytes_held(self) -> int:
        return sum(v.segmenter.bytes_held for v in self.variants.values())

    @property
    def waiters(self) -> int:
        return sum(v.waiters for v in self.variants.values())


def _is_video(frame: Frame) -> bool:
    try:
        return frame.kind is FrameKind.VIDEO and parse_video_tag(frame.payload) is not None
    except BitstreamError:
        return False


def _is_aac(frame: Frame) -> bool:
    return frame.kind is FrameKind.AUDIO and aac_payload(frame.payload) is not None


def _is_video_header(hub: MediaHub, key: StreamKey) -> bool:
    stream = hub.get(key)
    return stream is not None and stream.video_header is not None and _is_video(stream.video_header)


def _is_aac_header(hub: MediaHub, key: StreamKey) -> bool:
    stream = hub.get(key)
    return stream is not None and stream.audio_header is not None and _is_aac(stream.audio_header)


# ------------------------------------------------------------------ sessions


@dataclass(slots=True)
class HlsSession:
    """One HLS viewer: a counting-only hub subscriber, alive while the viewer fetches."""

    token: str
    key: StreamKey
    sub: Subscriber
    remote: str
    created: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    requests: int = 0
    bytes_out: int = 0
    busy: int = 0  # requests of this session in progress (a held request keeps it alive)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Around a request that may wait: the session is not idle meanwhile."""
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1
            self.last_seen = time.monotonic()

    def discard(self) -> None:
        """The waker: the session only counts; its frames are dropped on arrival."""
        self.sub.take()


# ------------------------------------------------------------------ the service


class HlsService:
    """Every HLS muxer and session of the node; the HTTP handlers call `playlist`/`resource`."""

    def __init__(self, hub: MediaHub, settings: MediaSettings, start_timeout_s: float) -> None:
        self.hub = hub
        self.settings = settings
        self.start_timeout_s = start_timeout_s
        self.muxers: dict[StreamKey, HlsMuxer] = {}
        self.sessions: dict[str, HlsSession] = {}
        self._starting: dict[StreamKey, asyncio.Future[HlsMuxer | None]] = {}
        self._janitor: asyncio.Task[None] | None = None
        self.requests = 0
        self.bytes_out = 0
        self.muxers_started = 0
        self.sessions_started = 0
        self.refused = 0

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        if self._janitor is None:
            self._janitor = asyncio.get_running_loop().create_task(self._janitor_loop())

    async def close(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            self._janitor = None
        for session in list(self.sessions.values()):
            self._end_session(session, "node shutting down")
        for muxer in list(self.muxers.values()):
            muxer.close()

    async def _janitor_loop(self) -> None:
        while True:
            await asyncio.sleep(JANITOR_INTERVAL_S)
            try:
                self.sweep(time.monotonic())
            except Exception:
                log.exception("hls janitor failed")

    def sweep(self, now: float) -> None:
        """End idle sessions, idle variants and idle muxers."""
        s = self.settings
        for session in list(self.sessions.values()):
            if not session.busy and now - session.last_seen > s.hls_session_timeout_s:
                self._end_session(session, "idle")
        for muxer in list(self.muxers.values()):
            if muxer.ended:
                # Kept so its viewers get the playlist with EXT-X-ENDLIST, then forgotten.
                if now - muxer.last_fetch > s.hls_linger_s:
                    del self.muxers[muxer.key]
                continue
            if muxer.waiters:
                continue
            if not muxer.sessions and now - muxer.last_fetch > s.hls_linger_s:
                log.info("hls muxer of %s stopped: no fetch for %.0fs", clip(muxer.key), s.hls_linger_s)
                muxer.close()
                continue
            for container, variant in list(muxer.variants.items()):
                if now - variant.last_fetch > s.hls_linger_s:
                    del muxer.variants[container]

    def muxer_ended(self, muxer: HlsMuxer) -> None:
        log.info("hls muxer of %s ended (%d frames)", clip(muxer.key), muxer.frames_in)

    def _end_session(self, session: HlsSession, reason: str) -> None:
        if self.sessions.get(session.token) is session:
            del self.sessions[session.token]
        muxer = self.muxers.get(session.key)
        if muxer is not None:
            muxer.sessions.pop(session.token, None)
            if not muxer.sessions:
                muxer.last_fetch = time.monotonic()  # the linger starts now
        session.sub.set_waker(None)
        session.sub.close()
        log.info(
            "hls viewer %s of %s ended: %d requests, %d bytes in %.1fs (%s)",
            session.remote,
            clip(session.key),
            session.requests,
            session.bytes_out,
            time.monotonic() - session.created,
            reason,
        )

    # -- sessions and muxers ----------------------------------------------------

    async def session(self, key: StreamKey, token: str | None, remote: str, query: str) -> HlsSession:
        """The viewer's session (created, with its hub subscriber, when new or expired)."""
        if token is not None:
            found = self.sessions.get(token)
            muxer = self.muxers.get(key)
            ended_here = muxer is not None and muxer.ended and not self._has_source(key)
            if found is not None and found.key == key and (not found.sub.ended or ended_here):
                # A viewer of an ended stream keeps its session: it gets the final playlist.
                found.last_seen = time.monotonic()
                found.requests += 1
                return found
            if found is not None:
                self._end_session(found, "stream changed" if found.key != key else "stream ended")
        if len(self.sessions) >= self.settings.hls_max_sessions:
            self.refused += 1
            raise HlsError(503, "too many HLS sessions")
        sub = await self.hub.play(
            key, protocol=VIEWER_PROTOCOL, remote=remote, query=query, timeout=self.start_timeout_s
        )
        if sub is None:
            raise HlsError(404, "stream not found")
        if token is None or token in self.sessions:
            token = secrets.token_urlsafe(12)
        session = HlsSession(token, key, sub, remote)
        session.requests = 1
        sub.set_waker(session.discard)
        session.discard()  # the join burst is already queued
        self.sessions[token] = session
        self.sessions_started += 1
        muxer = await self.muxer(key, remote)
        muxer.sessions[token] = session
        return session

    async def muxer(self, key: StreamKey, remote: str) -> HlsMuxer:
        muxer = self.muxers.get(key)
        if muxer is not None and (not muxer.ended or not self._has_source(key)):
            return muxer  # an ended muxer serves its final playlist until a source returns
        starting = self._starting.get(key)
        if starting is not None:
            got = await asyncio.shield(starting)
            if got is None:
                raise HlsError(404, "stream not found")
            return got
        if len(self.muxers) >= self.settings.hls_max_muxers:
            self.refused += 1
            raise HlsError(503, "too many HLS streams")
        future: asyncio.Future[HlsMuxer | None] = asyncio.get_running_loop().create_future()
        self._starting[key] = future
        made: HlsMuxer | None = None
        try:
            stream = self.hub.get(key)
            if stream is not None and stream.has_source:
                # The stream exists (the session's play found or started it): no trigger here.
                # Not a viewer: only the sessions count (a running muxer must not hold a V3 pull).
                sub = stream.subscribe(protocol=MUXER_PROTOCOL, remote="hls", query="", counted=False)
                made = HlsMuxer(self, key, sub)
                self.muxers[key] = made
                self.muxers_started += 1
                sub.set_waker(made.wake)
                made.wake()  # the join burst (headers, GOP) is already queued
                log.info("hls muxer of %s started for %s", clip(key), remote)
        finally:
            del self._starting[key]
            future.set_result(made)
        if made is None:
            raise HlsError(404, "stream not found")
        return made

    def _has_source(self, key: StreamKey) -> bool:
        stream = self.hub.get(key)
        return stream is not None and stream.has_source

    # -- requests ---------------------------------------------------------------

    async def ready_variant(self, muxer: HlsMuxer, container: Container, deadline: float) -> Variant:
        """The variant once its playlist has something to list (bounded by `deadline`)."""
        while True:
            variant = muxer.variant(container)
            if _ready(variant.segmenter, self.settings.hls_min_segments) or muxer.ended:
                return variant
            if not await variant.wait_change(deadline - time.monotonic()):
                if _ready(variant.segmenter, 1):  # long GOPs: one segment is better than a 404
                    return variant
                raise HlsError(404, "no segment yet")

    def media_playlist(self, muxer: HlsMuxer, variant: Variant, token: str, skip: bool) -> str:
        cached = variant.rendered.get(skip)
        if cached is None or cached[0] != variant.version or muxer.ended:
            names = ResourceNames(query=f"?v={muxer.generation}&s={TOKEN_MARK}")
            cached = (variant.version, render_playlist(variant.segmenter, names=names, skip=skip))
            variant.rendered[skip] = cached
        return cached[1].replace(TOKEN_MARK, token)

    async def blocking_reload(
        self, muxer: HlsMuxer, variant: Variant, msn: int | None, part: int | None
    ) -> Variant:
        """Hold a `_HLS_msn`/`_HLS_part` request until the playlist has it (bounded)."""
        deadline = time.monotonic() + self._block_s(variant)
        while True:
            variant = muxer.variants.get(variant.segmenter.config.container, variant)
            decision = reload_decision(variant.segmenter, msn, part)
            if decision is Reload.BAD_REQUEST:
                raise HlsError(400, "_HLS_msn/_HLS_part out of range")
            if decision is Reload.READY or muxer.ended:
                return variant
            if not await variant.wait_change(deadline - time.monotonic()):
                return variant  # the bound passed: the current playlist

    async def part(self, muxer: HlsMuxer, variant: Variant, msn: int, index: int) -> bytes:
        deadline = time.monotonic() + self._block_s(variant)
        while True:
            seg = variant.segmenter
            decision = part_decision(seg, msn, index)
            if decision is Reload.READY:
                data = seg.part_data(msn, index)
                if data is not None:
                    return data
            if decision is Reload.BAD_REQUEST or muxer.ended:
                raise HlsError(404, "no such part")
            if not await variant.wait_change(deadline - time.monotonic()):
                raise HlsError(404, "part not ready in time")

    def _block_s(self, variant: Variant) -> float:
        # The spec's hold: up to three target durations; our cap bounds a long-GOP stream.
        return min(3.0 * variant.segmenter.target_duration_s, self.settings.hls_block_max_s)

    # -- metrics ----------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        segments = parts = held = 0
        for muxer in self.muxers.values():
            for variant in muxer.variants.values():
                st = variant.segmenter.stats()
                segments += st["segments"]
                parts += st["parts"]
                held += st["bytes"]
        return {"segments": segments, "parts": parts, "bytes": held}


class HlsCollector(Collector):
    def __init__(self, service: HlsService) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        svc = self._service
        totals = svc.totals()
        yield GaugeMetricFamily(
            "liverelay_hls_muxers", "Streams with a running HLS muxer", value=len(svc.muxers)
        )
        yield GaugeMetricFamily("liverelay_hls_sessions", "HLS viewer sessions", value=len(svc.sessions))
        yield GaugeMetricFamily(
            "liverelay_hls_bytes_held",
            "Bytes of HLS segments, parts and init segments held",
            value=totals["bytes"],
        )
        yield GaugeMetricFamily("liverelay_hls_segments", "HLS segments held", value=totals["segments"])
        yield GaugeMetricFamily("liverelay_hls_parts", "LL-HLS parts held", value=totals["parts"])
        yield CounterMetricFamily("liverelay_hls_requests", "HLS requests answered", value=svc.requests)
        yield CounterMetricFamily("liverelay_hls_bytes_out", "HLS response body bytes", value=svc.bytes_out)
        yield CounterMetricFamily("liverelay_hls_refused", "HLS requests refused by a cap", value=svc.refused)


# ------------------------------------------------------------------ HTTP


HLS_SERVICE_KEY: web.AppKey[HlsService] = web.AppKey("liverelay_hls", HlsService)

PlayQuery = Callable[[web.Request], str]
Remote = Callable[[web.Request], str]


@dataclass(frozen=True, slots=True)
class HttpHooks:
    """What the HLS routes borrow from the HTTP listener (vhost resolution, loop markers)."""

    resolve: Callable[[web.Request, str, str], StreamKey | web.Response]
    play_query: PlayQuery
    remote: Remote


def add_hls_routes(app: web.Application, service: HlsService, hooks: HttpHooks) -> None:
    handlers = _Handlers(service, hooks)
    app[HLS_SERVICE_KEY] = service
    app.router.add_get("/{app}/{stream}.m3u8", handlers.classic_master)
    app.router.add_get("/{app}/{stream}/{name}", handlers.resource)
    app.router.add_route("OPTIONS", "/{app}/{stream}.m3u8", handlers.preflight)
    app.router.add_route("OPTIONS", "/{app}/{stream}/{name}", handlers.preflight)

    async def on_startup(_: web.Application) -> None:
        service.start()

    async def on_cleanup(_: web.Application) -> None:
        await service.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)


class _Handlers:
    def __init__(self, service: HlsService, hooks: HttpHooks) -> None:
        self.service = service
        self.hooks = hooks
        origins = service.settings.hls_cors_origins
        self.any_origin = "*" in origins
        self.origins = frozenset(origins)

    # -- helpers ----------------------------------------------------------------

    def _cors(self, request: web.Request) -> dict[str, str]:
        headers = {
            "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
            "Access-Control-Expose-Headers": "Content-Length, Content-Range, ETag, Last-Modified",
        }
        if self.any_origin:
            headers["Access-Control-Allow-Origin"] = "*"
        else:
            origin = request.headers.get("Origin")
            headers["Vary"] = "Origin"
            if origin is not None and origin in self.origins:
                headers["Access-Control-Allow-Origin"] = origin
        return headers

    def _error(self, request: web.Request, status: int, text: str) -> web.Response:
        return web.Response(status=status, text=text + "\n", headers=self._cors(request))

    async def preflight(self, request: web.Request) -> web.Response:
        headers = self._cors(request)
        headers["Access-Control-Allow-Headers"] = request.headers.get("Access-Control-Request-Headers", "*")
        headers["Access-Control-Max-Age"] = "86400"
        return web.Response(status=204, headers=headers)

    def _playlist_response(self, request: web.Request, text: str) -> web.Response:
        body = text.encode()
        etag = f'"{zlib.crc32(body):08x}{len(body):x}"'
        headers = self._cors(request)
        headers["Content-Type"] = PLAYLIST_TYPE
        headers["Cache-Control"] = "no-cache"
        headers["ETag"] = etag
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        if (
            self.service.settings.hls_gzip
            and len(body) >= GZIP_MIN_BYTES
            and "gzip" in request.headers.get("Accept-Encoding", "")
        ):
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = (
                headers.get("Vary", "") + (", " if "Vary" in headers else "") + "Accept-Encoding"
            )
        self.service.bytes_out += len(body)
        return web.Response(body=body, headers=headers)

    def _media_response(
        self, request: web.Request, data: bytes, ext: str, etag: str, wall_clock: float | None
    ) -> web.Response:
        s = self.service.settings
        headers = self._cors(request)
        headers["Content-Type"] = CONTENT_TYPES[ext]
        headers["Cache-Control"] = f"public, max-age={s.hls_segment_max_age_s}, immutable"
        headers["ETag"] = etag
        headers["Accept-Ranges"] = "bytes"
        if wall_clock is not None:
            headers["Last-Modified"] = formatdate(wall_clock, usegmt=True)
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        rng = request.headers.get("Range")
        if rng is not None:
            span = _byte_range(rng, len(data))
            if span is None:
                headers["Content-Range"] = f"bytes */{len(data)}"
                return web.Response(status=416, headers=headers)
            if span != (0, len(data)):
                start, end = span
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
                self.service.bytes_out += end - start
                return web.Response(status=206, body=data[start:end], headers=headers)
        self.service.bytes_out += len(data)
        return web.Response(body=data, headers=headers)

    async def _key(self, request: web.Request) -> StreamKey | web.Response:
        return self.hooks.resolve(request, request.match_info["app"], request.match_info["stream"])

    # -- routes -----------------------------------------------------------------

    async def classic_master(self, request: web.Request) -> web.StreamResponse:
        return await self._master(request, Container.TS)

    async def resource(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "index.m3u8":
            return await self._master(request, Container.FMP4)
        if name == "ts.m3u8":
            return await self._media_playlist(request, Container.TS)
        if name == "ll.m3u8":
            return await self._media_playlist(request, Container.FMP4)
        return await self._segment(request, name)

    async def _master(self, request: web.Request, container: Container) -> web.StreamResponse:
        """A master playlist naming this viewer's media playlist (its session token in the URI)."""
        svc = self.service
        svc.requests += 1
        key = await self._key(request)
        if isinstance(key, web.Response):
            return key
        deadline = time.monotonic() + svc.start_timeout_s
        try:
            session = await svc.session(
                key, _token(request), self.hooks.remote(request), self.hooks.play_query(request)
            )
            with session.held():
                muxer = await svc.muxer(key, session.remote)
                variant = await svc.ready_variant(muxer, container, deadline)
        except HlsError as exc:
            return self._error(request, exc.status, exc.text)
        name = "ts.m3u8" if container is Container.TS else "ll.m3u8"
        uri = f"{quote(key.name)}/{name}" if container is Container.TS else name
        text = _master_text(svc.hub, key, variant, f"{uri}?s={session.token}")
        return self._playlist_response(request, text)

    async def _media_playlist(self, request: web.Request, container: Container) -> web.StreamResponse:
        svc = self.service
        svc.requests += 1
        key = await self._key(request)
        if isinstance(key, web.Response):
            return key
        q = request.query
        try:
            msn = _int_param(q.get("_HLS_msn"))
            part = _int_param(q.get("_HLS_part"))
        except ValueError:
            return self._error(request, 400, "bad _HLS_msn/_HLS_part")
        skip = q.get("_HLS_skip", "").upper() in ("YES", "V2")
        deadline = time.monotonic() + svc.start_timeout_s
        try:
            session = await svc.session(
                key, _token(request), self.hooks.remote(request), self.hooks.play_query(request)
            )
            with session.held():
                muxer = await svc.muxer(key, session.remote)
                variant = await svc.ready_variant(muxer, container, deadline)
                if container is Container.TS and (msn is not None or part is not None):
                    raise HlsError(400, "blocking reload is for the LL-HLS playlist")
                if msn is not None or part is not None:
                    variant = await svc.blocking_reload(muxer, variant, msn, part)
        except HlsError as exc:
            return self._error(request, exc.status, exc.text)
        text = svc.media_playlist(muxer, variant, session.token, skip and container is Container.FMP4)
        return self._playlist_response(request, text)

    async def _segment(self, request: web.Request, name: str) -> web.StreamResponse:
        svc = self.service
        svc.requests += 1
        res = parse_resource(name)
        if res is None:
            return self._error(request, 404, "not found")
        key = await self._key(request)
        if isinstance(key, web.Response):
            return key
        muxer = svc.muxers.get(key)
        if muxer is None or request.query.get("v", muxer.generation) != muxer.generation:
            return self._error(request, 404, "segment gone")
        token = _token(request)
        if token is not None:
            session = svc.sessions.get(token)
            if session is not None and session.key == key:
                session.last_seen = time.monotonic()
                session.requests += 1
        ext = name.rsplit(".", 1)[1]
        container = Container.TS if ext == "ts" else Container.FMP4
        variant = muxer.variants.get(container)
        if variant is None:
            return self._error(request, 404, "not found")
        variant.last_fetch = muxer.last_fetch = time.monotonic()
        seg = variant.segmenter
        etag = f'"{muxer.generation}-{name}"'
        try:
            if res.kind == "init":
                data = seg.init_data(res.msn)
                if data is None:
                    raise HlsError(404, "no such init segment")
                return self._media_response(request, data, ext, etag, None)
            if res.kind == "part":
                data = await svc.part(muxer, variant, res.msn, res.part or 0)
                found = seg.find(res.msn)
                return self._media_response(request, data, ext, etag, found.wall_clock if found else None)
            data = seg.segment_data(res.msn)
            found = seg.find(res.msn)
            if data is None or found is None:
                raise HlsError(404, "no such segment")
            return self._media_response(request, data, ext, etag, found.wall_clock)
        except HlsError as exc:
            return self._error(request, exc.status, exc.text)


def _ready(seg: HlsSegmenter, min_segments: int) -> bool:
    """Whether a new viewer may get this variant's playlist. A complete segment first (an
    auto target duration is only known then, and EXT-X-TARGETDURATION must never change).
    LL-HLS: plus a part of the next segment, so a player starting one hold-back behind the
    edge finds the following parts coming. Classic: `min_segments` segments, so a player
    starting a few target durations back (hls.js: 3) has media to start on."""
    if len(seg.segments) < max(min_segments, 1):
        return False
    return not seg.parts_enabled or (seg.current is not None and bool(seg.current.parts))


def _token(request: web.Request) -> str | None:
    token = request.query.get("s")
    return token if token is not None and _TOKEN_RE.match(token) else None


def _int_param(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 12:
        raise ValueError(value)
    return int(value)


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """One `bytes=a-b` range as [start, end); the whole body for a form we do not serve
    (several ranges); None when unsatisfiable."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if m is None:
        return (0, size)
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        n = int(last)
        return (max(size - n, 0), size) if n > 0 and size > 0 else None
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or end <= start:
        return None
    return (start, end)


def _master_text(hub: MediaHub, key: StreamKey, variant: Variant, uri: str) -> str:
    seg = variant.segmenter
    stream = hub.get(key)
    bandwidth = 2_000_000
    codecs: list[str] = []
    if stream is not None:
        bandwidth = max(int(stream.bitrate() * 1.2), 64_000)
        try:
            header = stream.video_header
            tag = parse_video_tag(header.payload) if (seg.expect_video and header is not None) else None
            if tag is not None:
                codecs.append(parse_video_config(tag.codec, tag.data).codec_string)
            audio = stream.audio_header
            aac = aac_payload(audio.payload) if (seg.expect_audio and audio is not None) else None
            if aac is not None:
                codecs.append(parse_asc(aac[1]).codec_string)
        except BitstreamError:
            codecs = []
    attrs = f"BANDWIDTH={bandwidth}"
    if codecs:
        attrs += f',CODECS="{",".join(codecs)}"'
    version = 9 if seg.parts_enabled else 3
    return (
        f"#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:{attrs}\n{uri}\n"
    )
