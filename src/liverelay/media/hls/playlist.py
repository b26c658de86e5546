"""HLS media playlists from an HlsSegmenter, and the blocking-reload decision (sans-IO).

- `render_playlist(seg, names=..., skip=False)`: RFC 8216 classic playlist for a TS
  segmenter; for an fMP4 segmenter the LL-HLS form of draft-pantos-hls-rfc8216bis
  (EXT-X-MAP, EXT-X-SERVER-CONTROL with CAN-BLOCK-RELOAD / PART-HOLD-BACK /
  CAN-SKIP-UNTIL, EXT-X-PART-INF, EXT-X-PART, EXT-X-PRELOAD-HINT and, when `skip`
  is true (the client sent `_HLS_skip=YES`), a delta update with EXT-X-SKIP).
- `reload_decision(seg, msn, part)`: what a request with `_HLS_msn` / `_HLS_part`
  gets: READY (answer now), WAIT (hold it, bounded by the caller's timeout) or
  BAD_REQUEST (400: malformed, or too far ahead of the live edge: more than two
  segments, or more than `ADVANCE_PART_LIMIT` parts, past the last one listed).
- `ResourceNames`: the URIs written into playlists and `parse_resource(name)` to map
  a requested file name back to (kind, msn, part/init id).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import Enum

from .segmenter import Container, HlsSegmenter, Segment

ADVANCE_PART_LIMIT = 3  # draft-pantos-hls-rfc8216bis 6.2.5.2
PART_HOLD_BACK_FACTOR = 3.0  # spec minimum 2x the part target; 3x is the recommended value
SKIP_FACTOR = 6  # CAN-SKIP-UNTIL must be at least six target durations


class Reload(Enum):
    READY = "ready"
    WAIT = "wait"
    BAD_REQUEST = "bad_request"


@dataclass(frozen=True, slots=True)
class ResourceNames:
    """File names of a variant's resources, relative to its playlist. `query` (e.g. "?s=tok")
    is appended to every URI so a viewer session can be recognised on each fetch."""

    query: str = ""

    def segment(self, msn: int, container: Container) -> str:
        ext = "ts" if container is Container.TS else "m4s"
        return f"seg{msn}.{ext}{self.query}"

    def part(self, msn: int, index: int) -> str:
        return f"part{msn}.{index}.m4s{self.query}"

    def init(self, init_id: int) -> str:
        return f"init{init_id}.mp4{self.query}"


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str  # "segment" | "part" | "init"
    msn: int  # the init id for "init"
    part: int | None = None


_RESOURCE_RE = re.compile(
    r"^(?:seg(\d{1,12})\.(?:ts|m4s)|part(\d{1,12})\.(\d{1,6})\.m4s|init(\d{1,9})\.mp4)$"
)


def parse_resource(name: str) -> Resource | None:
    """Map a requested file name (no query) back to what ResourceNames wrote; None if unknown."""
    m = _RESOURCE_RE.match(name)
    if m is None:
        return None
    if m.group(1) is not None:
        return Resource("segment", int(m.group(1)))
    if m.group(2) is not None:
        return Resource("part", int(m.group(2)), int(m.group(3)))
    return Resource("init", int(m.group(4)))


def _pdt(wall_clock: float) -> str:
    ms = round(wall_clock * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _f(seconds: float) -> str:
    return f"{seconds:.3f}"


def skipped_count(seg: HlsSegmenter) -> int:
    """Segments a delta update may leave out: the oldest ones, keeping at least
    CAN-SKIP-UNTIL seconds of segments at the end of the playlist."""
    listed = seg.listed
    keep_s = SKIP_FACTOR * seg.target_duration_s
    span = 0.0
    keep = 0
    for s in reversed(listed):
        if span >= keep_s:
            break
        span += s.duration_ms / 1000
        keep += 1
    return len(listed) - keep


def render_playlist(seg: HlsSegmenter, *, names: ResourceNames | None = None, skip: bool = False) -> str:
    """The media playlist as text. Call once `seg.playable` (before, there is nothing to list:
    the server holds the first request, bounded, like a blocking reload)."""
    names = names or ResourceNames()
    container = seg.config.container
    ll = seg.parts_enabled
    listed = seg.listed
    lines = ["#EXTM3U"]
    version = 9 if ll else (7 if container is Container.FMP4 else 3)
    lines.append(f"#EXT-X-VERSION:{version}")
    lines.append(f"#EXT-X-TARGETDURATION:{seg.target_duration_s}")
    if ll:
        control = f"CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={_f(PART_HOLD_BACK_FACTOR * seg.part_target_s)}"
        control += f",CAN-SKIP-UNTIL={_f(float(SKIP_FACTOR * seg.target_duration_s))}"
        lines.append(f"#EXT-X-SERVER-CONTROL:{control}")
        lines.append(f"#EXT-X-PART-INF:PART-TARGET={_f(seg.part_target_s)}")
    else:
        # Blocking reload for `_HLS_msn` (rfc8216bis 6.2.5.2; it needs no parts): a player
        # that uses it (hls.js does) gets each segment the moment it is cut, instead of on
        # its next reload timer, so it can play closer to the live edge.
        lines.append("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES")
    lines.append(f"#EXT-X-MEDIA-SEQUENCE:{seg.media_sequence}")
    lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{seg.discontinuity_sequence}")
    shown: list[Segment] = list(listed)
    if ll and seg.current is not None and seg.current.parts:
        shown.append(seg.current)  # the open segment: its parts so far, no EXTINF yet
    if all(s.independent for s in shown):
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    skipped = skipped_count(seg) if (skip and ll) else 0
    if skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    init_id: int | None = None
    part_from = len(listed) - seg.config.part_segments  # index in `listed` from which parts are listed
    for i, s in enumerate(shown):
        if i < skipped:
            continue
        if s.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if container is Container.FMP4 and s.init_id != init_id:
            init_id = s.init_id
            lines.append(f'#EXT-X-MAP:URI="{names.init(s.init_id)}"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(s.wall_clock)}")
        if ll and (i >= part_from or not s.complete):
            for p in s.parts:
                attrs = f'DURATION={_f(p.duration_ms / 1000)},URI="{names.part(s.msn, p.index)}"'
                if p.independent:
                    attrs += ",INDEPENDENT=YES"
                lines.append(f"#EXT-X-PART:{attrs}")
        if s.complete:
            lines.append(f"#EXTINF:{_f(s.duration_ms / 1000)},")
            lines.append(names.segment(s.msn, container))
    if seg.ended:
        lines.append("#EXT-X-ENDLIST")
    elif ll:
        # The part being built; between segments (after a discontinuity, until the next
        # keyframe) the first part of the next segment.
        cur = seg.current
        hint = names.part(cur.msn, len(cur.parts)) if cur is not None else names.part(seg.next_msn, 0)
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{hint}"')
    return "\n".join(lines) + "\n"


def reload_decision(seg: HlsSegmenter, msn: int | None, part: int | None) -> Reload:
    """Blocking playlist reload (draft-pantos-hls-rfc8216bis 6.2.5.2) for `_HLS_msn`/`_HLS_part`."""
    if msn is None:
        return Reload.BAD_REQUEST if part is not None else Reload.READY
    if msn < 0 or (part is not None and part < 0):
        return Reload.BAD_REQUEST
    if part is not None and not seg.parts_enabled:
        return Reload.BAD_REQUEST
    if seg.ended:
        return Reload.READY
    cur = seg.current
    # The last segment the playlist shows: the open one once it has parts listed.
    last_msn = cur.msn if (cur is not None and seg.parts_enabled and cur.parts) else seg.last_complete_msn
    if msn > last_msn + 2:
        return Reload.BAD_REQUEST
    if msn <= seg.last_complete_msn:
        return Reload.READY  # that segment (hence all its parts) is complete
    if part is None:
        return Reload.WAIT
    if cur is not None and msn == cur.msn:
        have = len(cur.parts)
        if part < have:
            return Reload.READY
        if part > have - 1 + ADVANCE_PART_LIMIT:
            return Reload.BAD_REQUEST
        return Reload.WAIT
    # A segment after the open one: only its first few parts can be waited for.
    if part >= ADVANCE_PART_LIMIT:
        return Reload.BAD_REQUEST
    return Reload.WAIT


def part_decision(seg: HlsSegmenter, msn: int, index: int) -> Reload:
    """A request for a part (e.g. the preload hint): READY when it exists, WAIT when it is the
    open segment's next part(s), BAD_REQUEST (404 for the caller) when it can never appear."""
    if seg.part_data(msn, index) is not None:
        return Reload.READY
    cur = seg.current
    if seg.ended:
        return Reload.BAD_REQUEST
    if cur is None:
        # Between segments: only the next segment's first parts can still come.
        ok = seg.started and msn == seg.next_msn and index < ADVANCE_PART_LIMIT
        return Reload.WAIT if ok else Reload.BAD_REQUEST
    if msn == cur.msn and len(cur.parts) <= index < len(cur.parts) + ADVANCE_PART_LIMIT:
        return Reload.WAIT
    if msn == cur.msn + 1 and index < ADVANCE_PART_LIMIT:
        return Reload.WAIT  # the hint may name the next segment's first part around a cut
    return Reload.BAD_REQUEST
