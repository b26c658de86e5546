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
import logging
import re
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..config import MediaSettings
from ..hub import StreamKey, Subscriber
from ..media.elementary import BitstreamError, aac_payload, parse_asc, parse_video_config, parse_video_tag
from ..media.frame import Frame, FrameKind
from ..media.hls.playlist import (
    Reload,
    Resource,
    ResourceNames,
    parse_resource,
    part_decision,
    reload_decision,
    render_playlist,
)
from ..media.hls.segmenter import PREROLL_MAX_FRAMES, Container, HlsSegmenter, Published, SegmenterConfig
from ..media.hls.tokengzip import TokenGzip, gzip_small
from ..sources.base import RELAY_VIA_PARAM
from ..urlauth import TIME_PARAM, UrlAuthVerifier
from ..wakegrid import sleep_to_tick
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
_MAX_KEPT_GOP_MS = 20_000  # a new variant starts on the current GOP when it is no longer than this


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
    # skip -> (version, the playlist rendered with TOKEN_MARK for the session token, its gzip
    # form for any token): one render and one deflate per change, not per viewer request.
    rendered: dict[bool, tuple[int, str, TokenGzip]] = field(default_factory=dict)
    # (name, CORS origin) -> the 200 reply for a segment, part or init segment, valid for
    # `replies_version` only: every request for it gets the same reply (and the fast path its
    # encoded head) until the variant changes; what a change removes (a segment out of the
    # window, parts, an init) is never answered from here.
    replies: dict[tuple[str, str | None], HlsReply] = field(default_factory=dict)
    replies_version: int = 0

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
        # The frames since the last video keyframe: a variant made later starts on it, not on the
        # next one. The first request's variant is made after the join burst was taken (its GOP
        # is the stream's first segment), and an LL-HLS viewer may come after classic ones.
        self._gop: list[tuple[Frame, float]] = []
        # Per container, the sequence number and init id a variant made again starts at: a
        # segment or init URI (muxer generation, number) never names two different ones.
        self._continue_at: dict[Container, tuple[int, int]] = {}  # (segment number, init id)
        sub.on_drop = self._dropped

    # -- the hub side (runs inside the hub's fan-out: never raises) -------------------

    def wake(self) -> None:
        self._take(join=False)

    def join(self) -> None:
        """Take the join burst (headers and the GOP cache). Its frames reached the node over
        the last GOP, not now: each gets the wall clock its timestamp says, so that the first
        segment's EXT-X-PROGRAM-DATE-TIME ends where the next one's begins (hls.js maps parts
        by it, and a first segment dated a GOP late leaves a hole it stalls on)."""
        self._take(join=True)

    def _take(self, *, join: bool) -> None:
        try:
            frames = self.sub.take()
            if frames:
                now = time.time()
                if join:
                    media = [f.timestamp for f in frames if not f.config and f.kind is not FrameKind.DATA]
                    newest = max(media) if media else 0
                    for frame in frames:
                        back_ms = newest - frame.timestamp
                        self._frame(frame, now - back_ms / 1000 if 0 < back_ms <= _MAX_KEPT_GOP_MS else now)
                else:
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
        self._keep_gop(frame, now)
        for variant in self.variants.values():
            seg = variant.segmenter
            malformed = seg.malformed_frames
            variant.publish(seg.push(frame, now))
            if seg.malformed_frames != malformed:
                _LOG.warning("malformed", "hls %s: frame skipped: %s", clip(self.key), clip(seg.last_error))

    def _keep_gop(self, frame: Frame, now: float) -> None:
        gop = self._gop
        if frame.keyframe and frame.kind is FrameKind.VIDEO and not frame.config:
            gop.clear()
            gop.append((frame, now))
        elif gop:
            if len(gop) >= PREROLL_MAX_FRAMES or frame.timestamp - gop[0][0].timestamp > _MAX_KEPT_GOP_MS:
                gop.clear()  # a GOP this long is not worth holding: a new variant waits for a keyframe
            else:
                gop.append((frame, now))

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
        first_msn, first_init_id = self._continue_at.get(container, (0, 0))
        config = SegmenterConfig(
            container=container,
            target_duration_ms=target_ms,
            part_target_ms=s.hls_part_target_ms if container is Container.FMP4 else 0,
            window_segments=s.hls_window_segments,
            max_window_bytes=s.hls_max_window_bytes,
            first_msn=first_msn,
            first_init_id=first_init_id,
        )
        variant = Variant(HlsSegmenter(config, video=video, audio=audio))
        stream = self.service.hub.get(self.key)
        if prime and stream is not None:
            # A variant added to a running muxer: give it the current decoder configs.
            now = time.time()
            for header in (stream.video_header, stream.audio_header):
                if header is not None:
                    variant.segmenter.push(header, now)
        if prime:
            for frame, when in self._gop:
                variant.segmenter.push(frame, when)
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

    def drop_variant(self, container: Container) -> None:
        """Stop segmenting `container` (nobody fetches it); a later request makes it again."""
        variant = self.variants.pop(container, None)
        if variant is not None:
            self._continue_at[container] = (variant.segmenter.next_msn, variant.segmenter.next_init_id)

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
    container: Container | None = None  # the variant it fetched last: kept while it is alive
    started: bool = False  # its first media playlist was sent (that one carries EXT-X-START)

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
        self.auth_refused = 0
        self.on_sweep: list[Callable[[float], None]] = []  # more to tidy once a second (monotonic now)

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
            await sleep_to_tick(JANITOR_INTERVAL_S)  # with the node's other 1 s pollers
            try:
                now = time.monotonic()
                self.sweep(now)
                for tidy in self.on_sweep:
                    tidy(now)
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
            in_use = {session.container for session in muxer.sessions.values()}
            for container, variant in list(muxer.variants.items()):
                # A live session's variant stays, however long its player waits between
                # reloads: made again, it would start over from the next keyframe.
                if container not in in_use and now - variant.last_fetch > s.hls_linger_s:
                    muxer.drop_variant(container)

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
            found = self.find_session(key, token)
            if found is not None:
                return found
            stale = self.sessions.get(token)
            if stale is not None:
                self._end_session(stale, "stream changed" if stale.key != key else "stream ended")
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
        stream = self.hub.get(key)
        if stream is not None:
            # It counts as a viewer; the frames it would be handed are the muxer's business.
            stream.count_only(sub)
        self.sessions[token] = session
        self.sessions_started += 1
        muxer = await self.muxer(key, remote)
        muxer.sessions[token] = session
        return session

    def find_session(self, key: StreamKey, token: str) -> HlsSession | None:
        """The live session `token` names for `key` (this fetch counted), else None."""
        found = self.sessions.get(token)
        if found is None or found.key != key:
            return None
        if found.sub.ended:
            # A viewer of an ended stream keeps its session: it gets the final playlist.
            muxer = self.muxers.get(key)
            if muxer is None or not muxer.ended or self._has_source(key):
                return None
        found.last_seen = time.monotonic()
        found.requests += 1
        return found

    def live_muxer(self, key: StreamKey) -> HlsMuxer | None:
        """The running muxer of `key` when no wait is needed to get it (else `muxer()`)."""
        muxer = self.muxers.get(key)
        if muxer is not None and (not muxer.ended or not self._has_source(key)):
            return muxer
        return None

    async def muxer(self, key: StreamKey, remote: str) -> HlsMuxer:
        muxer = self.live_muxer(key)
        if muxer is not None:
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
                made.join()  # the join burst (headers, GOP) is already queued
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

    def media_playlist(
        self, muxer: HlsMuxer, variant: Variant, session: HlsSession, skip: bool
    ) -> tuple[str, TokenGzip | None]:
        """The viewer's media playlist, and what gzips it (None: a text of its own)."""
        cached = variant.rendered.get(skip)
        if cached is None or cached[0] != variant.version or muxer.ended:
            names = ResourceNames(query=f"?v={muxer.generation}&s={TOKEN_MARK}")
            text = render_playlist(variant.segmenter, names=names, skip=skip)
            cached = (variant.version, text, TokenGzip(text, TOKEN_MARK))
            variant.rendered[skip] = cached
        text = cached[1].replace(TOKEN_MARK, session.token)
        if not session.started:
            session.started = True
            start = _start_tag(variant.segmenter, time.time())
            if start is not None:
                text = text.replace("\n#EXT-X-MEDIA-SEQUENCE:", f"\n{start}\n#EXT-X-MEDIA-SEQUENCE:", 1)
                return text, None
        return text, cached[2]

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
        yield CounterMetricFamily(
            "liverelay_hls_auth_refused", "HLS requests refused by URL authentication", value=svc.auth_refused
        )


# ------------------------------------------------------------------ HTTP


HLS_SERVICE_KEY: web.AppKey[HlsService] = web.AppKey("liverelay_hls", HlsService)

PlayQuery = Callable[[web.Request], str]
Remote = Callable[[web.Request], str]
MASTER_NAMES = ("index.m3u8",)  # besides `{stream}.m3u8` (name None): where a viewer enters
MEDIA_PLAYLISTS = {"ts.m3u8": Container.TS, "ll.m3u8": Container.FMP4}


@dataclass(frozen=True, slots=True)
class HttpHooks:
    """What the HLS routes borrow from the HTTP listener (vhost resolution, loop markers)."""

    resolve: Callable[[web.Request, str, str], StreamKey | web.Response]
    play_query: PlayQuery
    remote: Remote


@dataclass(slots=True)
class HlsRequest:
    """One HLS request, whichever HTTP server parsed it (aiohttp's routes or the fast path)."""

    method: str  # GET, HEAD or OPTIONS
    key: StreamKey
    name: str | None  # the file under /{app}/{stream}/; None for /{app}/{stream}.m3u8
    query: Mapping[str, str]  # decoded, first value of each name
    raw_query: str  # undecoded (a signature is checked on it)
    remote: str
    play_query: str  # what the hub's play trigger gets (raw query + a relay's loop marker)
    if_none_match: str | None = None
    range: str | None = None
    accept_encoding: str = ""
    origin: str | None = None
    request_headers: str | None = None  # Access-Control-Request-Headers


@dataclass(slots=True)
class HlsReply:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    # `headers` (and Content-Length) as HTTP/1.1 header lines, made by the fast path on the
    # first send: a cached reply (a segment every viewer fetches) is encoded once.
    wire: bytes = b""


def add_hls_routes(app: web.Application, http: HlsHttp, hooks: HttpHooks) -> None:
    """The HLS routes on aiohttp (the fast path, servers/hlsfast.py, answers the same URLs
    on the node's listener without them; these serve what it hands over)."""
    service = http.service
    app[HLS_SERVICE_KEY] = service

    async def route(request: web.Request) -> web.StreamResponse:
        info = request.match_info
        key = hooks.resolve(request, info["app"], info["stream"])
        if isinstance(key, web.Response):
            return key
        headers = request.headers
        query: dict[str, str] = {}
        for name, value in request.query.items():
            query.setdefault(name, value)  # the first of a repeated parameter, as .get() gave
        req = HlsRequest(
            method=request.method,
            key=key,
            name=info.get("name"),
            query=query,
            raw_query=request.rel_url.raw_query_string,
            remote=hooks.remote(request),
            play_query=hooks.play_query(request),
            if_none_match=headers.get("If-None-Match"),
            range=headers.get("Range"),
            accept_encoding=headers.get("Accept-Encoding", ""),
            origin=headers.get("Origin"),
            request_headers=headers.get("Access-Control-Request-Headers"),
        )
        reply = await http.handle(req)
        return web.Response(status=reply.status, body=reply.body or None, headers=reply.headers)

    app.router.add_get("/{app}/{stream}.m3u8", route)
    app.router.add_get("/{app}/{stream}/{name}", route)
    app.router.add_route("OPTIONS", "/{app}/{stream}.m3u8", route)
    app.router.add_route("OPTIONS", "/{app}/{stream}/{name}", route)

    async def on_startup(_: web.Application) -> None:
        service.start()

    async def on_cleanup(_: web.Application) -> None:
        await service.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)


class HlsHttp:
    """The HTTP side of HLS, independent of the server that parsed the request:
    `immediate(req)` answers what needs no wait (segments, parts that exist, a known
    viewer's playlist), `handle(req)` everything (blocking reloads, new sessions).

    URL authentication (docs/auth.md): where a pull key applies to the stream's vhost/app,
    a master playlist needs a valid signature, and everything under it (media playlists,
    segments, parts, init segments) the session token of a viewer admitted that way (or,
    for a media playlist, a signature of its own); else 403 and a log line naming why."""

    def __init__(self, service: HlsService, verifier: UrlAuthVerifier | None = None) -> None:
        self.service = service
        self.verifier = verifier
        origins = service.settings.hls_cors_origins
        self.any_origin = "*" in origins
        self.origins = frozenset(origins)
        s = service.settings
        self._segment_cache_control = f"public, max-age={s.hls_segment_max_age_s}, immutable"

    # -- helpers ----------------------------------------------------------------

    def cors(self, origin: str | None) -> dict[str, str]:
        headers = {
            "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
            "Access-Control-Expose-Headers": "Content-Length, Content-Range, ETag, Last-Modified",
        }
        if self.any_origin:
            headers["Access-Control-Allow-Origin"] = "*"
        else:
            headers["Vary"] = "Origin"
            if origin is not None and origin in self.origins:
                headers["Access-Control-Allow-Origin"] = origin
        return headers

    def error(self, req: HlsRequest, status: int, text: str) -> HlsReply:
        headers = self.cors(req.origin)
        headers["Content-Type"] = "text/plain; charset=utf-8"
        return HlsReply(status, headers, (text + "\n").encode())

    def preflight(self, req: HlsRequest) -> HlsReply:
        headers = self.cors(req.origin)
        headers["Access-Control-Allow-Headers"] = req.request_headers or "*"
        headers["Access-Control-Max-Age"] = "86400"
        return HlsReply(204, headers)

    def playlist_reply(
        self, req: HlsRequest, text: str, gz: TokenGzip | None = None, token: str = ""
    ) -> HlsReply:
        """`gz`: the gzip form of `text` given the viewer's `token` (a media playlist)."""
        body = text.encode()
        crc = zlib.crc32(body)
        etag = f'"{crc:08x}{len(body):x}"'
        headers = self.cors(req.origin)
        headers["Content-Type"] = PLAYLIST_TYPE
        headers["Cache-Control"] = "no-cache"
        headers["ETag"] = etag
        if req.if_none_match == etag:
            return HlsReply(304, headers)
        if self.service.settings.hls_gzip and len(body) >= GZIP_MIN_BYTES and "gzip" in req.accept_encoding:
            spliced = gz.compress(token, crc, len(body)) if gz is not None else None
            body = spliced if spliced is not None else gzip_small(body)
            headers["Content-Encoding"] = "gzip"
            vary = headers.get("Vary")
            headers["Vary"] = f"{vary}, Accept-Encoding" if vary else "Accept-Encoding"
        self.service.bytes_out += len(body)
        return HlsReply(200, headers, body)

    def media_reply(
        self, req: HlsRequest, data: bytes, ext: str, etag: str, wall_clock: float | None
    ) -> HlsReply:
        headers = self.cors(req.origin)
        headers["Content-Type"] = CONTENT_TYPES[ext]
        headers["Cache-Control"] = self._segment_cache_control
        headers["ETag"] = etag
        headers["Accept-Ranges"] = "bytes"
        if wall_clock is not None:
            headers["Last-Modified"] = _http_date(wall_clock)
        if req.if_none_match == etag:
            return HlsReply(304, headers)
        if req.range is not None:
            span = _byte_range(req.range, len(data))
            if span is None:
                headers["Content-Range"] = f"bytes */{len(data)}"
                return HlsReply(416, headers)
            if span != (0, len(data)):
                start, end = span
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
                self.service.bytes_out += end - start
                return HlsReply(206, headers, data[start:end])
        self.service.bytes_out += len(data)
        return HlsReply(200, headers, data)

    def _refuse(self, req: HlsRequest, reason: str) -> HlsReply:
        self.service.auth_refused += 1
        _LOG.warning(
            f"auth-hls-{reason}-{req.remote.rpartition(':')[0]}",
            "hls play %s/%s from %s refused: %s",
            clip(req.key),
            clip(req.name or "(master)"),
            req.remote,
            reason,
        )
        return self.error(req, 403, "forbidden")

    def _auth_applies(self, key: StreamKey) -> bool:
        v = self.verifier
        return v is not None and v.config_for(key.vhost, key.app, "pull") is not None

    def _signature_refusal(self, req: HlsRequest) -> str | None:
        """None when the request's own query is validly signed (or no key applies)."""
        v = self.verifier
        if v is None:
            return None
        refusal = v.check_play(req.key.vhost, req.key.app, req.key.name, req.raw_query)
        return None if refusal is None else refusal.reason

    # -- requests ---------------------------------------------------------------

    def immediate(self, req: HlsRequest) -> HlsReply | None:
        """The answer when it needs no wait, else None (then `handle`)."""
        if req.method == "OPTIONS":
            return self.preflight(req)
        name = req.name
        if name is None or name in MASTER_NAMES:
            return None  # a new viewer: a session (and maybe a pull) to start
        container = MEDIA_PLAYLISTS.get(name)
        if container is not None:
            return self._playlist_now(req, container)
        reply = self._segment(req, name)
        if reply is not None:
            self.service.requests += 1
        return reply

    async def handle(self, req: HlsRequest) -> HlsReply:
        reply = self.immediate(req)
        if reply is not None:
            return reply
        svc = self.service
        svc.requests += 1
        name = req.name
        if name is None or name in MASTER_NAMES:
            return await self._master(req, Container.TS if name is None else Container.FMP4)
        if name in MEDIA_PLAYLISTS:
            return await self._media_playlist(req, MEDIA_PLAYLISTS[name])
        return await self._part(req, name)

    def _playlist_params(self, req: HlsRequest) -> tuple[int | None, int | None, bool]:
        q = req.query
        skip = q.get("_HLS_skip", "").upper() in ("YES", "V2")
        return _int_param(q.get("_HLS_msn")), _int_param(q.get("_HLS_part")), skip

    def _playlist_now(self, req: HlsRequest, container: Container) -> HlsReply | None:
        """A known viewer's playlist without a blocking reload: answered at once."""
        svc = self.service
        token = _token(req.query)
        if token is None:
            return None
        try:
            msn, part, skip = self._playlist_params(req)
        except ValueError:
            return None  # `handle` answers the 400
        if msn is not None or part is not None:
            return None
        muxer = svc.live_muxer(req.key)
        variant = muxer.variants.get(container) if muxer is not None else None
        if muxer is None or variant is None or not (_ready(variant.segmenter, 1) or muxer.ended):
            return None
        session = svc.find_session(req.key, token)
        if session is None:
            return None  # `handle` opens one, or refuses it
        session.container = container
        svc.requests += 1
        variant.last_fetch = muxer.last_fetch = time.monotonic()
        text, gz = svc.media_playlist(muxer, variant, session, skip and container is Container.FMP4)
        return self.playlist_reply(req, text, gz, session.token)

    @contextlib.asynccontextmanager
    async def _viewer(
        self, req: HlsRequest, container: Container, token: str | None
    ) -> AsyncIterator[tuple[HlsSession, HlsMuxer, Variant]]:
        """The viewer's session, the stream's muxer and the variant once it has a playlist:
        what every playlist request starts with; the session counts as busy inside."""
        svc = self.service
        deadline = time.monotonic() + svc.start_timeout_s
        session = await svc.session(req.key, token, req.remote, req.play_query)
        session.container = container
        with session.held():
            muxer = await svc.muxer(req.key, session.remote)
            variant = await svc.ready_variant(muxer, container, deadline)
            yield session, muxer, variant

    async def _master(self, req: HlsRequest, container: Container) -> HlsReply:
        """A master playlist naming this viewer's media playlist (its session token in the URI)."""
        refusal = self._signature_refusal(req)
        if refusal is not None:
            return self._refuse(req, refusal)
        svc = self.service
        key = req.key
        try:
            async with self._viewer(req, container, _token(req.query)) as (session, _, variant):
                pass
        except HlsError as exc:
            return self.error(req, exc.status, exc.text)
        name = "ts.m3u8" if container is Container.TS else "ll.m3u8"
        uri = f"{quote(key.name)}/{name}" if container is Container.TS else name
        text = _master_text(svc.hub, key, variant, f"{uri}?s={session.token}")
        return self.playlist_reply(req, text)

    async def _media_playlist(self, req: HlsRequest, container: Container) -> HlsReply:
        svc = self.service
        try:
            msn, part, skip = self._playlist_params(req)
        except ValueError:
            return self.error(req, 400, "bad _HLS_msn/_HLS_part")
        token = _token(req.query)
        if self._auth_applies(req.key) and (token is None or svc.find_session(req.key, token) is None):
            # Not an admitted viewer: only a signature of its own may open a session.
            refusal = self._signature_refusal(req)
            if refusal is not None:
                signed = TIME_PARAM in req.query
                return self._refuse(req, refusal if signed else _token_reason(token))
        try:
            async with self._viewer(req, container, token) as (session, muxer, variant):
                if msn is not None or part is not None:
                    variant = await svc.blocking_reload(muxer, variant, msn, part)
        except HlsError as exc:
            return self.error(req, exc.status, exc.text)
        text, gz = svc.media_playlist(muxer, variant, session, skip and container is Container.FMP4)
        return self.playlist_reply(req, text, gz, session.token)

    def _resource(self, req: HlsRequest, name: str) -> tuple[HlsMuxer, Variant, Resource, str] | HlsReply:
        """What a segment, part or init URI names, after the session check."""
        svc = self.service
        res = _parse_resource(name)
        if res is None:
            return self.error(req, 404, "not found")
        token = _token(req.query)
        session = svc.sessions.get(token) if token is not None else None
        if session is not None and session.key != req.key:
            session = None
        if session is None and self._auth_applies(req.key):
            return self._refuse(req, _token_reason(token))
        muxer = svc.muxers.get(req.key)
        if muxer is None or req.query.get("v", muxer.generation) != muxer.generation:
            return self.error(req, 404, "segment gone")
        now = time.monotonic()
        ext = name.rsplit(".", 1)[1]
        container = Container.TS if ext == "ts" else Container.FMP4
        if session is not None:
            session.last_seen = now
            session.requests += 1
            session.container = container
        variant = muxer.variants.get(container)
        if variant is None:
            return self.error(req, 404, "not found")
        variant.last_fetch = muxer.last_fetch = now
        return muxer, variant, res, ext

    def _segment(self, req: HlsRequest, name: str) -> HlsReply | None:
        """A segment or init segment; a part that exists now; None for a part to wait for."""
        found = self._resource(req, name)
        if isinstance(found, HlsReply):
            return found
        muxer, variant, res, ext = found
        plain = req.range is None and req.if_none_match is None
        cache_key = (name, None if self.any_origin or req.origin not in self.origins else req.origin)
        if plain:
            if variant.replies_version != variant.version:
                variant.replies.clear()  # what changed may have removed a cached body
                variant.replies_version = variant.version
            else:
                cached = variant.replies.get(cache_key)
                if cached is not None:
                    self.service.bytes_out += len(cached.body)
                    return cached
        reply = self._media(req, muxer, variant, res, ext, name)
        if plain and reply is not None and reply.status == 200:
            variant.replies[cache_key] = reply
        return reply

    def _media(
        self, req: HlsRequest, muxer: HlsMuxer, variant: Variant, res: Resource, ext: str, name: str
    ) -> HlsReply | None:
        seg = variant.segmenter
        etag = f'"{muxer.generation}-{name}"'
        if res.kind == "init":
            data = seg.init_data(res.msn)
            if data is None:
                return self.error(req, 404, "no such init segment")
            return self.media_reply(req, data, ext, etag, None)
        if res.kind == "part":
            data = seg.part_data(res.msn, res.part or 0)
            if data is None:
                return None  # not there yet: `handle` waits for it
            found_seg = seg.find(res.msn)
            return self.media_reply(req, data, ext, etag, found_seg.wall_clock if found_seg else None)
        data = seg.segment_data(res.msn)
        found_seg = seg.find(res.msn)
        if data is None or found_seg is None:
            return self.error(req, 404, "no such segment")
        return self.media_reply(req, data, ext, etag, found_seg.wall_clock)

    async def _part(self, req: HlsRequest, name: str) -> HlsReply:
        """A part that does not exist yet (the preload hint): held until it does (bounded)."""
        found = self._resource(req, name)
        if isinstance(found, HlsReply):
            return found
        muxer, variant, res, ext = found
        try:
            data = await self.service.part(muxer, variant, res.msn, res.part or 0)
        except HlsError as exc:
            return self.error(req, exc.status, exc.text)
        found_seg = variant.segmenter.find(res.msn)
        etag = f'"{muxer.generation}-{name}"'
        return self.media_reply(req, data, ext, etag, found_seg.wall_clock if found_seg else None)


# Every viewer asks for the same few names: parse each once (Resource is immutable).
_parse_resource = lru_cache(maxsize=1024)(parse_resource)


def with_via_marker(raw_query: str, via: str | None) -> str:
    """The query for the hub's play trigger: undecoded (it may carry signatures), plus a
    relay's loop marker (the RELAY_VIA_HEADER value) when the request had one."""
    if via is None:
        return raw_query
    mark = urlencode({RELAY_VIA_PARAM: via}, quote_via=quote)
    return f"{raw_query}&{mark}" if raw_query else mark


def _token_reason(token: str | None) -> str:
    if token is None:
        return "missing session token (open the signed playlist URL first)"
    return "unknown or expired session token"


def _token(query: Mapping[str, str]) -> str | None:
    token = query.get("s")
    return token if token is not None and _TOKEN_RE.match(token) else None


_DATES: dict[int, str] = {}


def _http_date(wall_clock: float) -> str:
    """RFC 9110 IMF-fixdate, memoised per second (every viewer asks for the same segments)."""
    second = int(wall_clock)
    text = _DATES.get(second)
    if text is None:
        if len(_DATES) > 256:
            _DATES.clear()
        text = _DATES[second] = formatdate(second, usegmt=True)
    return text


START_MARGIN_S = 0.5  # a new classic player starts one target duration + this behind (at least)


def _start_tag(seg: HlsSegmenter, now: float) -> str | None:
    """EXT-X-START for a viewer's first classic playlist: where to start so that it plays a
    target duration plus a margin behind the wall clock, whatever the time since the last
    cut. Players default to three target durations back from the end of the playlist
    (hls.js: `liveSyncDurationCount` 3), i.e. 6-8 s behind with 2 s segments; with blocking
    reload (CAN-BLOCK-RELOAD, which hls.js uses) a segment reaches the player as it is cut,
    so one segment of buffer and the margin are enough. The offset is taken from the end
    of the playlist, which is as old as the last cut: hence computed per viewer.
    (rfc8216bis says a live TIME-OFFSET SHOULD NOT be within three target durations of the
    end: this node deviates on purpose, for the latency; docs/hls.md.)"""
    listed = seg.listed
    if seg.parts_enabled or seg.ended or not listed:
        return None  # LL-HLS: PART-HOLD-BACK says where to start
    last = listed[-1]
    cur = seg.current
    edge = cur.wall_clock if cur is not None else last.wall_clock + last.duration_ms / 1000
    target = float(seg.target_duration_s)
    behind = target + max(START_MARGIN_S, target / 4)
    total = sum(s.duration_ms for s in listed) / 1000
    offset = min(max(behind - max(now - edge, 0.0), START_MARGIN_S), total)
    return f"#EXT-X-START:TIME-OFFSET=-{offset:.3f}"


def _ready(seg: HlsSegmenter, min_segments: int) -> bool:
    """Whether a new viewer may get this variant's playlist. A complete segment first (an
    auto target duration is only known then, and EXT-X-TARGETDURATION must never change).
    LL-HLS: plus a part of the next segment, so a player starting one hold-back behind the
    edge finds the following parts coming. Classic: `min_segments` segments, so a player
    starting a few target durations back (hls.js: 3) has media to start on."""
    if len(seg.segments) < max(min_segments, 1):
        return False
    return not seg.parts_enabled or (seg.current is not None and bool(seg.current.parts))


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
