"""Native HLS source: follow a live .m3u8 over HTTP(S) and demux its segments (MPEG-TS, fMP4).

No ffmpeg process: playlists are parsed by sources.hls_playlist (the `m3u8` package),
MPEG-TS segments demuxed by media.mpegts.TsDemuxer and fMP4 ones (EXT-X-MAP) by
media.fmp4.Fmp4Demuxer into the hub's frames.

Source policy, for every request: each playlist, segment and key URL, and each
redirect target, must be http(s) and its host must pass the relay source policy
(policy.pinned_addresses: the check RelayPull made for the configured host, a fresh
check for any other host); the connection then goes to the checked addresses only
(`CheckedHosts`, an aiohttp resolver that knows nothing else), so there is no second
DNS lookup and no rebinding window. A denied URL ends the source with reason 'policy'.

Behaviour: a master playlist -> its highest-BANDWIDTH variant (give a variant's URL
to pick another); reloads per RFC 8216 §6.3.4 (hls_playlist.PlaylistTracker); a
segment that answers 404 (or another error status) is skipped and counted, a run of
MAX_FAILED_SEGMENTS in a row fails the source; a media-sequence gap skips ahead
(counted); EXT-X-DISCONTINUITY, a gap or a skipped segment resets the demuxer's
timestamp unwrapping and rebases the next frames to continue the previous timeline, so
the sink (the relay's FrameSink, which has only on_frame) sees one continuous timeline;
a playlist that stops growing for max(no_media_timeout_s, 1.5 x target duration) fails
the source with reason 'timeout' (the relay fails over); AES-128 segments are decrypted
with the key from their key URI (fetched through the same policy).

Frames are paced to the wall clock (like ffmpeg -re): a segment arrives at once, but
viewers get its frames evenly instead of in bursts separated by silences.

Bounded memory: one segment at a time (relay.hls_max_segment_bytes), read whole and
demuxed in one call; playlists up to relay.hls_max_playlist_bytes, at most MAX_HOSTS
hosts and MAX_KEYS keys per pull.

CPU (bench hlspull): a reload that returns the same bytes is not parsed again, and a
changed one parses only its new segments (hls_playlist.PlaylistParser).
relay.hls_puller = "ffmpeg" sends .m3u8 sources to sources.ffmpeg instead (fallback).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections import OrderedDict
from collections.abc import AsyncIterator
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from yarl import URL

from ..config import RelaySettings
from ..media.fmp4 import Fmp4Demuxer, Fmp4Error
from ..media.frame import Frame
from ..media.mpegts import TsDemuxer, TsError
from ..wakegrid import tick_at_or_after
from .base import FrameSink, SourceError, redact_url
from .flv import PinnedResolver, request_headers
from .hls_playlist import (
    LIVE_START_SEGMENTS,
    MIN_RELOAD_S,
    Key,
    MasterPlaylist,
    MediaPlaylist,
    PlaylistError,
    PlaylistParser,
    PlaylistTracker,
    Segment,
)
from .policy import pinned_addresses

log = logging.getLogger("liverelay.sources.hls")

MAX_REDIRECTS = 3
MAX_HOSTS = 8  # distinct hosts one pull may reach (playlists, segments, keys)
MAX_KEYS = 4  # AES keys kept per pull (keys rotate; old ones are not needed again)
MAX_QUEUED_SEGMENTS = 8  # live segments waiting to be fetched; past it, skip to the live edge
MAX_FAILED_SEGMENTS = 3  # segments in a row that fail with an HTTP status before the source fails
STALL_TARGET_FACTOR = 1.5  # a playlist may take this many target durations to grow
PACE_TICK_S = 0.25  # frames due within this are delivered at once (<= ~4 wake-ups per second)
PACE_RESET_S = 3.0  # a frame this far off its wall-clock slot re-anchors the pacing clock
DISCONTINUITY_STEP_MS = 40  # the first frame after a discontinuity lands this far after the last
# Bodies (segments, playlists) are read whole: buffered as they arrive instead of pausing
# the socket every 128 kB (aiohttp's default), and taken from the buffer in large pieces.
_READ_BUFFER = 1 << 20
_READ_CHUNK = 1 << 20
_REDIRECTS = (301, 302, 303, 307, 308)


async def pull(url: str, sink: FrameSink, *, settings: RelaySettings) -> None:
    """Relay the HLS stream at `url` into `sink` until it ends (EXT-X-ENDLIST) or fails."""
    if settings.hls_puller == "ffmpeg":  # the documented fallback
        from . import ffmpeg

        await ffmpeg.pull(url, sink, settings=settings)
        return
    shown = redact_url(url)
    hosts = CheckedHosts()
    # No sock_read timer: every read runs under an asyncio.timeout of its own (read_small,
    # _fetch_frames), and aiohttp would re-arm that timer on every chunk of every body.
    timeout = aiohttp.ClientTimeout(
        total=None, connect=settings.connect_timeout_s, sock_connect=settings.connect_timeout_s
    )
    connector = aiohttp.TCPConnector(limit=4, resolver=hosts)
    async with aiohttp.ClientSession(
        timeout=timeout,
        connector=connector,
        auto_decompress=False,
        headers=request_headers(),
        read_bufsize=_READ_BUFFER,
    ) as session:
        puller = HlsPuller(url, sink, settings, HlsClient(session, hosts, settings))
        try:
            await puller.run()
        finally:
            log.debug(
                "HLS %s ended: %d segments, %d skipped, %d gap segments, %d discontinuities, "
                "%d playlist loads, %d parsed (%d segments taken from the load before)",
                shown,
                puller.segments,
                puller.skipped,
                puller.tracker.gaps,
                puller.discontinuities,
                puller.tracker.loads,
                puller.parsed,
                puller.parser.reused,
            )


class CheckedHosts(AbstractResolver):
    """aiohttp's resolver for one pull: the hosts the policy checked, at their checked addresses."""

    def __init__(self) -> None:
        self._hosts: dict[str, PinnedResolver] = {}

    def knows(self, host: str) -> bool:
        return host.lower() in self._hosts

    def add(self, host: str, addresses: tuple[str, ...]) -> None:
        if len(self._hosts) >= MAX_HOSTS:
            raise SourceError("protocol", f"HLS source names more than {MAX_HOSTS} hosts")
        self._hosts[host.lower()] = PinnedResolver(host, addresses)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        pinned = self._hosts.get(host.lower())
        if pinned is None:  # never happens through HlsClient, which checks first
            raise OSError(f"{host} was not checked by the relay source policy")
        return await pinned.resolve(host, port, family)

    async def close(self) -> None:
        return None


class HlsClient:
    """HTTP GETs for one pull: every URL (redirects included) passes the policy first."""

    def __init__(self, session: aiohttp.ClientSession, hosts: CheckedHosts, settings: RelaySettings) -> None:
        self.session = session
        self.hosts = hosts
        self.settings = settings

    async def allow(self, url: str, what: str) -> None:
        """SourceError('policy') unless `url` is http(s) on a host the policy allows."""
        try:
            await self._check(url)
        except SourceError as exc:
            raise SourceError(exc.reason, f"HLS {what} {redact_url(url)[:300]}: {exc.message}") from None

    async def _check(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            host, _port = parts.hostname, parts.port  # .port raises ValueError on a bad port
        except ValueError:
            raise SourceError("protocol", "malformed URL") from None
        if parts.scheme.lower() not in ("http", "https") or not host:
            raise SourceError("policy", "not an http(s) URL")
        if not self.hosts.knows(host):
            self.hosts.add(host, await pinned_addresses(host, self.settings))

    @contextlib.asynccontextmanager
    async def get(self, url: str, what: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """The response to GET `url` after redirects (each target checked); any status."""
        for _ in range(MAX_REDIRECTS + 1):
            await self.allow(url, what)
            try:
                response = await self.session.get(URL(url, encoded=True), allow_redirects=False)
            except TimeoutError:
                raise SourceError("timeout", f"no HTTP response from {redact_url(url)} in time") from None
            except aiohttp.ClientConnectorError as exc:
                raise SourceError(
                    "connect", f"cannot connect to {redact_url(url)}: {exc.os_error or exc}"
                ) from None
            except (aiohttp.ClientError, OSError) as exc:
                raise SourceError("connect", f"{redact_url(url)}: {type(exc).__name__}: {exc}") from None
            location = response.headers.get("Location")
            if response.status in _REDIRECTS and location:
                response.release()
                target = urljoin(url, location)
                log.debug("HLS %s %s redirects to %s", what, redact_url(url), redact_url(target))
                try:
                    await self._check(target)
                except SourceError as exc:
                    where = f"{redact_url(url)} redirects to {redact_url(target)[:300]}"
                    raise SourceError(exc.reason, f"HLS {what} {where}: {exc.message}") from None
                url = target
                continue
            try:
                yield response
            finally:
                response.release()
            return
        raise SourceError("http_status", f"HLS {what} {redact_url(url)}: more than {MAX_REDIRECTS} redirects")

    async def read_small(self, url: str, what: str, limit: int) -> tuple[str, bytes]:
        """(final URL, body) of a 200 response up to `limit` bytes; SourceError otherwise."""
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s + self.settings.no_media_timeout_s):
                async with self.get(url, what) as response:
                    final = str(response.url)
                    if response.status != 200:
                        status = response.status
                        raise SourceError("http_status", f"HTTP {status} from HLS {what} {redact_url(final)}")
                    body = await read_body(response, limit, f"HLS {what} {redact_url(final)}")
        except TimeoutError:
            raise SourceError("timeout", f"HLS {what} {redact_url(url)} not read in time") from None
        except aiohttp.ClientError as exc:
            raise SourceError("eof", f"HLS {what} {redact_url(url)}: {type(exc).__name__}: {exc}") from None
        return final, body


async def read_body(response: aiohttp.ClientResponse, limit: int, label: str) -> bytes:
    """The whole body of `response`, SourceError('protocol') past `limit` bytes (a
    Content-Length over it is refused before reading). Read in pieces of up to _READ_CHUNK
    from the session's _READ_BUFFER-sized buffer and joined once: measured on a 550 kB
    segment over loopback, a quarter of the CPU of `response.read()`, and a third of that
    of 64 kB pieces from aiohttp's default 64 kB buffer (which pauses the socket as it fills)."""
    length = response.content_length
    if length is not None and length > limit:
        raise SourceError("protocol", f"{label} is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise SourceError("protocol", f"{label} is over {limit} bytes")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Decryptor:
    """AES-128-CBC with PKCS#7 padding, fed in pieces (the last block is held until finish)."""

    def __init__(self, key: bytes, iv: bytes) -> None:
        self._ctx: CipherContext = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        self._held = b""

    def update(self, data: bytes) -> bytes:
        out = self._held + self._ctx.update(data)
        self._held = out[-16:]
        return out[:-16]

    def finish(self) -> bytes:
        try:
            tail = self._held + self._ctx.finalize()
            unpadder = padding.PKCS7(128).unpadder()
            return unpadder.update(tail) + unpadder.finalize()
        except ValueError as exc:
            raise SourceError("protocol", f"AES-128 segment does not decrypt: {exc}") from None


class Playout:
    """Timestamps continue across discontinuities; frames leave at their wall-clock pace."""

    def __init__(self) -> None:
        self._offset = 0
        self._last: int | None = None
        self._rebase = False
        self._clock: tuple[float, int] | None = None  # (wall s, timestamp ms) anchor

    def discontinuity(self) -> None:
        self._rebase = self._last is not None

    def place(self, frame: Frame) -> None:
        """Move `frame` onto the continuous timeline (frames from the demuxer are ours to change)."""
        if self._rebase and self._last is not None:
            self._offset = self._last + DISCONTINUITY_STEP_MS - frame.timestamp
            self._rebase = False
        ts = max(0, frame.timestamp + self._offset)
        frame.timestamp = ts
        if self._last is None or ts > self._last:
            self._last = ts

    def delay(self, ts: int, now: float) -> float:
        """Seconds until the frame stamped `ts` is due (re-anchored when far off)."""
        if self._clock is None:
            self._clock = (now, ts)
            return 0.0
        wall, base = self._clock
        wait = wall + (ts - base) / 1000 - now
        if not -PACE_RESET_S < wait < PACE_RESET_S:
            self._clock = (now, ts)
            return 0.0
        return wait


class HlsPuller:
    """One pull of one HLS URL (state and counters; run() does the work)."""

    def __init__(self, url: str, sink: FrameSink, settings: RelaySettings, client: HlsClient) -> None:
        self.url = url
        self.shown = redact_url(url)
        self.sink = sink
        self.settings = settings
        self.client = client
        self.tracker = PlaylistTracker()
        self.parser = PlaylistParser()
        self.demuxer = TsDemuxer(max_pes_bytes=min(8 << 20, settings.hls_max_segment_bytes))
        self.playout = Playout()
        self.keys: OrderedDict[str, bytes] = OrderedDict()
        self.fmp4: Fmp4Demuxer | None = None
        self.fmp4_init: str | None = None
        self.fmp4_config: list[Frame] = []  # the init section's sequence headers, not yet delivered
        self.segments = 0
        self.skipped = 0  # segments that answered an error status
        self.discontinuities = 0
        self.parsed = 0  # playlist bodies parsed (a byte-identical reload is not)
        self._failed_in_row = 0
        self._last_load: tuple[str, bytes, MasterPlaylist | MediaPlaylist] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        media_url, playlist = await self._first_playlist()
        queue = self.tracker.update(playlist, loop.time())
        retry_at = 0.0  # after a failed reload: not before this
        while True:
            reload_at = max(self.tracker.reload_at(), retry_at)
            if not queue:
                if self.tracker.endlist:
                    return
                await asyncio.sleep(max(0.0, reload_at - loop.time()))
            elif self.tracker.endlist or loop.time() < reload_at:
                await self._segment(queue.pop(0))
                continue
            started = loop.time()
            try:
                playlist = await self._media_playlist(media_url)
            except SourceError as exc:
                if exc.reason == "policy":
                    raise
                self._check_stall(started, f" (last reload: {exc})")
                log.debug("HLS %s reload failed (%s); retrying", self.shown, exc)
                retry_at = started + max(MIN_RELOAD_S, self.tracker.target_duration / 2)
                continue
            queue.extend(self.tracker.update(playlist, started))
            self._check_stall(loop.time(), "")
            if len(queue) > MAX_QUEUED_SEGMENTS and not self.tracker.endlist:
                queue = self._skip_to_live_edge(queue)

    def _skip_to_live_edge(self, queue: list[Segment]) -> list[Segment]:
        """Far behind a live playlist (a slow origin, or one that lists many at once): jump ahead."""
        keep = queue[-LIVE_START_SEGMENTS:]
        self.tracker.gaps += len(queue) - len(keep)
        log.info("HLS %s: %d segments behind the live edge, skipped ahead", self.shown, len(queue))
        return [dataclasses.replace(keep[0], discontinuity=True), *keep[1:]]

    def _check_stall(self, now: float, detail: str) -> None:
        limit = max(self.settings.no_media_timeout_s, STALL_TARGET_FACTOR * self.tracker.target_duration)
        stalled = self.tracker.stalled_for(now)
        if stalled > limit:
            raise SourceError(
                "timeout", f"HLS playlist {self.shown} has not grown for {stalled:.1f}s (stalled){detail}"
            )

    async def _first_playlist(self) -> tuple[str, MediaPlaylist]:
        final, playlist = await self._load(self.url, "playlist")
        if isinstance(playlist, MasterPlaylist):
            variant = playlist.best()
            log.debug("HLS %s: variant %s (%d bit/s)", self.shown, redact_url(variant.uri), variant.bandwidth)
            final, playlist = await self._load(variant.uri, "variant playlist")
            if isinstance(playlist, MasterPlaylist):
                raise SourceError("protocol", f"HLS variant {redact_url(variant.uri)} is a master playlist")
        return final, playlist

    async def _media_playlist(self, url: str) -> MediaPlaylist:
        _final, playlist = await self._load(url, "playlist")
        if isinstance(playlist, MasterPlaylist):
            raise SourceError("protocol", f"HLS playlist {redact_url(url)} turned into a master playlist")
        return playlist

    async def _load(self, url: str, what: str) -> tuple[str, MasterPlaylist | MediaPlaylist]:
        final, body = await self.client.read_small(url, what, self.settings.hls_max_playlist_bytes)
        last = self._last_load
        if last is not None and last[0] == final and last[1] == body:
            # Byte-identical to the last load (a reload before the next segment, RFC 8216
            # §6.3.4's half-target retry): the same playlist, not parsed again.
            return final, last[2]
        try:
            playlist = self.parser.parse(body.decode("utf-8", errors="replace"), final)
        except PlaylistError as exc:
            raise SourceError("protocol", f"HLS {what} {redact_url(final)}: {exc}") from None
        self.parsed += 1
        self._last_load = (final, body, playlist)
        return final, playlist

    async def _key(self, key: Key) -> bytes:
        cached = self.keys.get(key.uri)
        if cached is not None:
            return cached
        _final, body = await self.client.read_small(key.uri, "key", 16)
        if len(body) != 16:
            raise SourceError("protocol", f"HLS key {redact_url(key.uri)} is {len(body)} bytes, not 16")
        self.keys[key.uri] = body
        while len(self.keys) > MAX_KEYS:
            self.keys.popitem(last=False)
        return body

    async def _segment(self, segment: Segment) -> None:
        decryptor = None
        if segment.key is not None:
            iv = segment.key.iv or segment.msn.to_bytes(16, "big")
            decryptor = Decryptor(await self._key(segment.key), iv)
        if segment.discontinuity:
            self._discontinuity()
        frames = await self._fetch_frames(segment, decryptor)
        if frames is None:
            self.skipped += 1
            self._failed_in_row += 1
            self._discontinuity()  # the next segment does not continue this timeline
            return
        self._failed_in_row = 0
        self.segments += 1
        if self.fmp4_config:  # an fMP4 init section's sequence headers go first
            stamp = frames[0].timestamp if frames else 0
            for config in self.fmp4_config:
                config.timestamp = stamp
            frames = [*self.fmp4_config, *frames]
            self.fmp4_config = []
        await self._deliver(frames)

    def _discontinuity(self) -> None:
        self.discontinuities += 1
        self.demuxer.reset_timeline()
        self.fmp4 = None  # a new timeline: a fresh fMP4 demuxer (and its init again)
        self.playout.discontinuity()

    async def _fetch_frames(self, segment: Segment, decryptor: Decryptor | None) -> list[Frame] | None:
        """The segment's frames; None when it answered an error status (skipped)."""
        shown = redact_url(segment.uri)
        limit = self.settings.hls_max_segment_bytes
        bound = self.settings.connect_timeout_s + max(self.settings.no_media_timeout_s, 2 * segment.duration)
        try:
            async with asyncio.timeout(bound):
                async with self.client.get(segment.uri, "segment") as response:
                    status = response.status
                    if status != 200:
                        log.info("HLS %s: segment %s answered %d, skipped", self.shown, shown, status)
                        if self._failed_in_row + 1 >= MAX_FAILED_SEGMENTS:
                            raise SourceError(
                                "http_status",
                                f"HTTP {status} from HLS segment {shown} "
                                f"({MAX_FAILED_SEGMENTS} segments in a row failed)",
                            )
                        return None
                    body = await read_body(response, limit, f"HLS segment {shown}")
            if decryptor is not None:
                body = decryptor.update(body) + decryptor.finish()
            if segment.init_uri is not None:
                fmp4 = await self._fmp4_for(segment.init_uri)
                return fmp4.segment(body)
            # The whole segment in one call: the demuxer's runs of packets span it, and its
            # per-call work (header slices, sorting) is paid once per segment.
            return self.demuxer.feed(body) + self.demuxer.flush()
        except TsError as exc:
            raise SourceError("protocol", f"bad MPEG-TS in HLS segment {shown}: {exc}") from None
        except Fmp4Error as exc:
            raise SourceError("protocol", f"bad fMP4 in HLS segment {shown}: {exc}") from None
        except TimeoutError:
            raise SourceError("timeout", f"HLS segment {shown} not read within {bound:.1f}s") from None
        except aiohttp.ClientError as exc:
            raise SourceError("eof", f"HLS segment {shown}: {type(exc).__name__}: {exc}") from None

    async def _fmp4_for(self, init_uri: str) -> Fmp4Demuxer:
        """The fMP4 demuxer for segments under this EXT-X-MAP (its frames are queued first)."""
        if self.fmp4 is not None and self.fmp4_init == init_uri:
            return self.fmp4
        limit = self.settings.hls_max_playlist_bytes
        _final, init = await self.client.read_small(init_uri, "init section", limit)
        fmp4 = Fmp4Demuxer()
        self.fmp4_config = fmp4.init(init)
        self.fmp4, self.fmp4_init = fmp4, init_uri
        return fmp4

    async def _deliver(self, frames: list[Frame]) -> None:
        loop = asyncio.get_running_loop()
        playout = self.playout
        on_frames = self.sink.on_frames
        for frame in frames:
            playout.place(frame)
        # The clock is read once per wake-up and the frames due by then are handed over as
        # one run (the hub's bookkeeping is per run, not per frame). A wait ends on a grid
        # of PACE_TICK_S in loop time (wakegrid), shared by every pull of the node, so the
        # node's HLS relays (and, on whole seconds, its 1 s pollers) wake together instead
        # of each on its own schedule: a frame goes out at most PACE_TICK_S before its
        # slot, as before, and never after it.
        now = loop.time()
        start = 0
        for i, frame in enumerate(frames):
            wait = playout.delay(frame.timestamp, now)
            if wait > PACE_TICK_S:
                if i > start:
                    on_frames(frames[start:i])
                    start = i
                wake = tick_at_or_after(now + wait - PACE_TICK_S, PACE_TICK_S)
                await asyncio.sleep(wake - now)
                now = loop.time()
        if start < len(frames):
            on_frames(frames[start:] if start else frames)
