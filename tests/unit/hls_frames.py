"""Synthetic live streams for the HLS segmenter tests: real codec payloads from the FLV fixture,
re-timed to any frame rate, GOP and length, with timestamp jumps where a test wants them."""

from __future__ import annotations

from pathlib import Path

from liverelay.media.flv import FlvDecoder
from liverelay.media.frame import Frame, FrameKind

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "flv" / "tiny_h264_aac.flv"
WALL0 = 1_700_000_000.0


def _fixture() -> list[Frame]:
    return [e for e in FlvDecoder().feed(FIXTURE.read_bytes()) if isinstance(e, Frame)]


_FRAMES = _fixture()
VIDEO_HEADER = next(f for f in _FRAMES if f.kind == FrameKind.VIDEO and f.config)
AUDIO_HEADER = next(f for f in _FRAMES if f.kind == FrameKind.AUDIO and f.config)
KEY = next(f for f in _FRAMES if f.keyframe)
INTER = next(
    f for f in _FRAMES if f.kind == FrameKind.VIDEO and not f.keyframe and not f.config and len(f) > 50
)
AAC = next(f for f in _FRAMES if f.kind == FrameKind.AUDIO and not f.config)


def live_stream(
    seconds: float,
    *,
    fps: int = 30,
    gop_s: float = 1.0,
    audio: bool = True,
    video: bool = True,
    start_ms: int = 0,
    jumps: dict[int, int] | None = None,
) -> list[Frame]:
    """Headers, then video every 1000/fps ms (keyframe every gop_s) and AAC every 1024/44100 s,
    interleaved by timestamp. `jumps` maps a frame timestamp to an offset added from it on."""
    out: list[Frame] = []
    if video:
        out.append(VIDEO_HEADER.with_timestamp(start_ms))
    if audio:
        out.append(AUDIO_HEADER.with_timestamp(start_ms))
    media: list[Frame] = []
    if video:
        n = int(seconds * fps)
        per_gop = max(1, round(gop_s * fps))
        for i in range(n):
            ts = start_ms + i * 1000 // fps
            src = KEY if i % per_gop == 0 else INTER
            media.append(Frame(FrameKind.VIDEO, ts, src.payload, keyframe=src.keyframe))
    if audio:
        n = int(seconds * 44100 / 1024)
        for i in range(n):
            media.append(Frame(FrameKind.AUDIO, start_ms + i * 1024 * 1000 // 44100, AAC.payload))
    media.sort(key=lambda f: (f.timestamp, f.kind != FrameKind.VIDEO))
    offset = 0
    for f in media:
        if jumps and f.timestamp in jumps:
            offset = jumps[f.timestamp]
        out.append(f.with_timestamp(f.timestamp + offset) if offset else f)
    return out


def wall(frame: Frame, lag_s: float = 0.0) -> float:
    """The wall clock of receipt a test passes in: stream time from WALL0 plus a lag."""
    return WALL0 + frame.timestamp / 1000 + lag_s
