"""HLS playlists for the native puller, sans-IO: parse (the `m3u8` package) and track.

`parse_playlist(text, url)` turns a playlist body into a `MasterPlaylist` (variants by
bandwidth) or a `MediaPlaylist` (segments with absolute URIs, media sequence numbers,
discontinuities, AES-128 keys and, for fMP4, the EXT-X-MAP init section); anything
malformed raises `PlaylistError`. `PlaylistParser` answers the same for the reloads
of one playlist, parsing only the segments the last load did not list (a live
playlist's new tail) when the playlist is a plain one (no keys, maps, byte ranges).

`PlaylistTracker` decides, load after load, which segments to fetch next and when to
reload (RFC 8216 §6.3.4): after a load that found the playlist changed, wait the target
duration from the start of that load; after one that found it unchanged, half of it.
It starts `live_start` segments behind the live edge (a playlist with EXT-X-ENDLIST
from its first load plays from its start), skips ahead when the playlist moved past
the next segment (a media-sequence gap: counted, and the next segment starts a
discontinuity), and restarts at the live edge when the media sequence goes back (an
origin restart). `stalled_for(now)` is how long the playlist has not grown.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from urllib.parse import urlsplit

import m3u8  # type: ignore[import-untyped]  # no stubs published; used in this module only

# Segments behind the live edge where a live playlist starts: the next segment is
# published before the current one is played out (the same as ffmpeg's -live_start_index -2).
LIVE_START_SEGMENTS = 2
# A target duration outside this range is not a live stream we can follow.
MAX_TARGET_DURATION_S = 60.0
MIN_RELOAD_S = 0.1


class PlaylistError(ValueError):
    """The playlist cannot be used (malformed, unsupported, or pointing outside HTTP(S))."""


@dataclass(frozen=True)
class Key:
    """AES-128 key of a segment: where the key is, and the IV (None: the media sequence number)."""

    uri: str
    iv: bytes | None


@dataclass(frozen=True)
class Segment:
    msn: int
    uri: str  # absolute
    duration: float
    discontinuity: bool  # EXT-X-DISCONTINUITY before it (or a gap / skipped segment before it)
    key: Key | None
    init_uri: str | None = None  # EXT-X-MAP (absolute): an fMP4 segment; None: MPEG-TS


@dataclass(frozen=True)
class MediaPlaylist:
    target_duration: float
    media_sequence: int
    segments: tuple[Segment, ...]
    endlist: bool

    @property
    def last_msn(self) -> int:
        return self.media_sequence + len(self.segments) - 1


@dataclass(frozen=True)
class Variant:
    uri: str  # absolute
    bandwidth: int


@dataclass(frozen=True)
class MasterPlaylist:
    variants: tuple[Variant, ...]

    def best(self) -> Variant:
        """The highest-bandwidth variant (the first of equals)."""
        if not self.variants:
            raise PlaylistError("master playlist lists no variant")
        return max(self.variants, key=lambda v: v.bandwidth)


def _http_uri(uri: str, what: str) -> str:
    scheme = urlsplit(uri).scheme.lower()
    if scheme not in ("http", "https"):
        raise PlaylistError(f"{what} {uri[:200]!r} is not an http(s) URL")
    return uri


def _parse_iv(text: str | None) -> bytes | None:
    if not text:
        return None
    hex_digits = text[2:] if text[:2].lower() == "0x" else text
    try:
        raw = bytes.fromhex(hex_digits.rjust(32, "0"))
    except ValueError:
        raise PlaylistError(f"bad EXT-X-KEY IV {text[:40]!r}") from None
    if len(raw) != 16:
        raise PlaylistError(f"EXT-X-KEY IV {text[:40]!r} is not 128 bits")
    return raw


def _key_of(segment: m3u8.Segment) -> Key | None:
    key = segment.key
    if key is None or key.method is None or key.method.upper() == "NONE":
        return None
    if key.method.upper() != "AES-128":
        raise PlaylistError(f"EXT-X-KEY METHOD={key.method} is not supported (AES-128 only)")
    if not key.uri:
        raise PlaylistError("EXT-X-KEY METHOD=AES-128 without a URI")
    return Key(_http_uri(key.absolute_uri, "key URI"), _parse_iv(key.iv))


def parse_playlist(text: str, url: str) -> MasterPlaylist | MediaPlaylist:
    """The playlist at `url` (relative URIs resolve against it); PlaylistError if unusable."""
    text = text.lstrip("\ufeff")
    if not text.startswith("#EXTM3U"):
        raise PlaylistError("not an M3U8 playlist (no #EXTM3U)")
    try:
        parsed = m3u8.loads(text, uri=url)
    except Exception as exc:  # the parser's own failures on untrusted text (ValueError, ...)
        raise PlaylistError(f"malformed playlist: {type(exc).__name__}: {exc}") from None
    if parsed.is_variant:
        variants = tuple(
            Variant(_http_uri(p.absolute_uri, "variant URI"), int(p.stream_info.bandwidth or 0))
            for p in parsed.playlists
        )
        return MasterPlaylist(variants)
    target = float(parsed.target_duration or 0)
    if not 0 < target <= MAX_TARGET_DURATION_S:
        raise PlaylistError(f"EXT-X-TARGETDURATION {parsed.target_duration!r} is missing or out of range")
    first = int(parsed.media_sequence or 0)
    if first < 0:
        raise PlaylistError(f"EXT-X-MEDIA-SEQUENCE {first} is negative")
    segments: list[Segment] = []
    for i, seg in enumerate(parsed.segments):
        init_uri = None
        if seg.init_section is not None:
            if seg.init_section.byterange:
                raise PlaylistError("EXT-X-MAP with BYTERANGE is not supported by the native puller")
            if not seg.init_section.uri:
                raise PlaylistError("EXT-X-MAP without a URI")
            init_uri = _http_uri(seg.init_section.absolute_uri, "EXT-X-MAP URI")
        if not seg.uri:
            raise PlaylistError("segment without a URI")
        if seg.byterange:
            raise PlaylistError("EXT-X-BYTERANGE segments are not supported by the native puller")
        duration = float(seg.duration or 0)
        if not 0 <= duration <= MAX_TARGET_DURATION_S * 2:
            raise PlaylistError(f"EXTINF {duration} out of range")
        segments.append(
            Segment(
                msn=first + i,
                uri=_http_uri(seg.absolute_uri, "segment URI"),
                duration=duration,
                discontinuity=bool(seg.discontinuity),
                key=_key_of(seg),
                init_uri=init_uri,
            )
        )
    return MediaPlaylist(target, first, tuple(segments), bool(parsed.is_endlist))


class PlaylistTracker:
    """Which segments of a media playlist to fetch, and when to load it again."""

    def __init__(self, *, live_start: int = LIVE_START_SEGMENTS) -> None:
        self.live_start = live_start
        self.next_msn: int | None = None
        self.target_duration = 1.0
        self.endlist = False
        self.gaps = 0  # segments the playlist dropped before we fetched them
        self.restarts = 0  # media sequence went back (origin restarted): restarted at the live edge
        self.loads = 0
        self._last_msn: int | None = None
        self._loaded_at: float | None = None
        self._changed = True
        self._changed_at: float | None = None

    def update(self, playlist: MediaPlaylist, loaded_at: float) -> list[Segment]:
        """Record a load that began at `loaded_at` (monotonic s); the new segments to fetch, in order."""
        self.loads += 1
        self.target_duration = playlist.target_duration
        self.endlist = playlist.endlist
        self._loaded_at = loaded_at
        segments = playlist.segments
        last = playlist.last_msn if segments else None
        self._changed = last != self._last_msn or self._changed_at is None
        if self._changed:
            self._changed_at = loaded_at
        if not segments:
            return []
        first = playlist.media_sequence
        force_discontinuity = False
        if self.next_msn is None:
            start = 0 if playlist.endlist else max(0, len(segments) - self.live_start)
            self.next_msn = first + start
        elif self._last_msn is not None and last is not None and last < self._last_msn:
            # The media sequence went back: the origin restarted its stream.
            self.restarts += 1
            self.next_msn = first + max(0, len(segments) - self.live_start)
            force_discontinuity = True
        elif self.next_msn < first:
            self.gaps += first - self.next_msn
            self.next_msn = first
            force_discontinuity = True
        self._last_msn = last
        fresh = [s for s in segments if s.msn >= self.next_msn]
        if fresh:
            self.next_msn = fresh[-1].msn + 1
            if force_discontinuity and not fresh[0].discontinuity:
                fresh[0] = dataclasses.replace(fresh[0], discontinuity=True)
        return fresh

    def reload_at(self) -> float:
        """When the next load may begin (monotonic s), per RFC 8216 §6.3.4."""
        if self._loaded_at is None:
            return 0.0
        wait = self.target_duration if self._changed else self.target_duration / 2
        return self._loaded_at + max(MIN_RELOAD_S, wait)

    def stalled_for(self, now: float) -> float:
        """Seconds since a load last found the playlist grown (0 before the first load)."""
        return 0.0 if self._changed_at is None else max(0.0, now - self._changed_at)


# The tags of a plain live MPEG-TS media playlist (what nginx-rtmp, ffmpeg and most
# packagers write). With only these, a segment is fully described by its own lines (its
# EXTINF, DISCONTINUITY, PROGRAM-DATE-TIME and URI), so a reload's segments that the last
# load already listed at the same media sequence number need no parsing again.
_HEADER_TAGS = (
    "#EXTM3U",
    "#EXT-X-VERSION:",
    "#EXT-X-TARGETDURATION:",
    "#EXT-X-MEDIA-SEQUENCE:",
    "#EXT-X-DISCONTINUITY-SEQUENCE:",
    "#EXT-X-PLAYLIST-TYPE:",
    "#EXT-X-INDEPENDENT-SEGMENTS",
    "#EXT-X-ENDLIST",
)
_SEGMENT_TAGS = ("#EXTINF:", "#EXT-X-PROGRAM-DATE-TIME:")
_DISCONTINUITY = "#EXT-X-DISCONTINUITY"
_MEDIA_SEQUENCE = "#EXT-X-MEDIA-SEQUENCE:"


@dataclass(frozen=True)
class _Plain:
    """A plain media playlist cut into its header lines and one text per segment."""

    header: list[str]
    entries: list[str]
    first: int


def _plain(text: str) -> _Plain | None:
    """`text` cut up, when it is a plain media playlist; None for anything else (the caller
    parses it whole)."""
    header: list[str] = []
    entries: list[str] = []
    entry: list[str] = []
    first = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line[0] != "#":
            entry.append(line)
            entries.append("\n".join(entry))
            entry = []
        elif line == _DISCONTINUITY or line.startswith(_SEGMENT_TAGS):
            entry.append(line)
        elif line.startswith(_HEADER_TAGS):
            if line.startswith(_MEDIA_SEQUENCE):
                try:
                    first = int(line[len(_MEDIA_SEQUENCE) :])
                except ValueError:
                    return None
            header.append(line)
        elif line.startswith("#EXT"):
            return None  # keys, maps, byte ranges, variants, parts...: the whole parse
    if entry:
        return None  # tags after the last URI
    return _Plain(header, entries, first)


class PlaylistParser:
    """parse_playlist for the reloads of one media playlist: a plain playlist's segments
    that the last load listed (same media sequence number, same lines) are taken from that
    load, and only the new ones (a live playlist's tail) go through the `m3u8` package,
    behind the playlist's own header lines. Anything else is parsed whole."""

    def __init__(self) -> None:
        self._url: str | None = None
        self._seen: dict[int, tuple[str, Segment]] = {}  # msn -> (its lines, its Segment)
        self.reused = 0  # segments taken from the last load

    def parse(self, text: str, url: str) -> MasterPlaylist | MediaPlaylist:
        text = text.lstrip("\ufeff")
        plain = _plain(text) if text.startswith("#EXTM3U") else None
        seen = self._seen if url == self._url else {}
        self._url, self._seen = url, {}
        if plain is None:
            return parse_playlist(text, url)
        entries, first = plain.entries, plain.first
        # The run of segments the last load listed (a live playlist's older ones); the
        # rest, its new tail, is parsed behind the header.
        known = 0
        while known < len(entries) and (cached := seen.get(first + known)) is not None:
            if cached[0] != entries[known]:
                break
            known += 1
        lines = [h for h in plain.header if not h.startswith(_MEDIA_SEQUENCE)]
        lines.append(f"{_MEDIA_SEQUENCE}{first + known}")
        tail = parse_playlist("\n".join([*lines, *entries[known:]]) + "\n", url)
        if not isinstance(tail, MediaPlaylist) or len(tail.segments) != len(entries) - known:
            return parse_playlist(text, url)  # not what the cut promised: the whole parse decides
        segments = tuple(seen[first + i][1] for i in range(known)) + tail.segments
        self.reused += known
        self._seen = {s.msn: (entries[i], s) for i, s in enumerate(segments)}
        return MediaPlaylist(tail.target_duration, first, segments, tail.endlist)
