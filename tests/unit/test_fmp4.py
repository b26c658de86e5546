"""fMP4/CMAF writer: box structure of the init segment and of fragments, on real H.264/AAC and H.265."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liverelay.media.elementary import VideoCodec, parse_video_tag
from liverelay.media.flv import FlvDecoder
from liverelay.media.fmp4 import (
    AUDIO_TRACK_ID,
    SAMPLE_FLAGS_NON_SYNC,
    SAMPLE_FLAGS_SYNC,
    VIDEO_TRACK_ID,
    Fmp4Demuxer,
    Fmp4Error,
    Fmp4Writer,
)
from liverelay.media.frame import Frame, FrameKind
from liverelay.media.mpegts import TsDemuxer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"dinf"}


def flv_frames() -> list[Frame]:
    data = (FIXTURES / "flv" / "tiny_h264_aac.flv").read_bytes()
    return [e for e in FlvDecoder().feed(data) if isinstance(e, Frame)]


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """(type, body start, body end) of the boxes in data[start:end]; asserts sizes tile exactly."""
    end = len(data) if end is None else end
    out = []
    pos = start
    while pos < end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        assert size >= 8 and pos + size <= end, f"box {kind!r} overruns its parent"
        out.append((kind, pos + 8, pos + size))
        pos += size
    assert pos == end
    return out


def tree(data: bytes, start: int = 0, end: int | None = None) -> dict[bytes, list[tuple[int, int]]]:
    """Every box path ('moov/trak/mdia') -> list of (body start, body end)."""
    found: dict[bytes, list[tuple[int, int]]] = {}

    def walk(prefix: bytes, s: int, e: int) -> None:
        for kind, bs, be in boxes(data, s, e):
            path = prefix + kind
            found.setdefault(path, []).append((bs, be))
            if kind in CONTAINERS:
                walk(path + b"/", bs, be)

    walk(b"", start, end)
    return found


def write_fragments(frames: list[Frame], codec: VideoCodec, every_ms: int = 300) -> tuple[bytes, list[bytes]]:
    w = Fmp4Writer(video=codec, audio=True)
    frags: list[bytes] = []
    init = b""
    start: int | None = None
    for f in frames:
        if (
            f.kind == FrameKind.VIDEO
            and not f.config
            and start is not None
            and f.timestamp - start >= every_ms
        ):
            frag = w.fragment(f.timestamp)
            assert frag is not None
            frags.append(frag)
            start = f.timestamp
        w.add(f)
        if not init and w.ready():
            init = w.init_segment()
        if start is None and f.keyframe:
            start = f.timestamp
    last = w.fragment(frames[-1].timestamp + 33)
    if last:
        frags.append(last)
    return init, frags


def test_init_segment_structure_h264_aac() -> None:
    frames = flv_frames()
    init, _ = write_fragments(frames, VideoCodec.AVC)
    t = tree(init)
    assert [k for k, _, _ in boxes(init)] == [b"ftyp", b"moov"]
    assert len(t[b"moov/trak"]) == 2 and len(t[b"moov/mvex/trex"]) == 2
    s, e = t[b"moov/trak/mdia/minf/stbl/stsd"][0]
    entry = boxes(init, s + 8, e)
    assert entry[0][0] == b"avc1"
    avc1_s, avc1_e = entry[0][1], entry[0][2]
    width, height = struct.unpack(">HH", init[avc1_s + 24 : avc1_s + 28])
    assert (width, height) == (160, 120)  # from the SPS, as ffprobe reports the fixture
    inner = boxes(init, avc1_s + 78, avc1_e)
    assert inner[0][0] == b"avcC"
    header = next(f for f in frames if f.kind == FrameKind.VIDEO and f.config)
    assert init[inner[0][1] : inner[0][2]] == header.payload[5:]
    s, e = t[b"moov/trak/mdia/minf/stbl/stsd"][1]
    mp4a = boxes(init, s + 8, e)[0]
    assert mp4a[0] == b"mp4a"
    asc = next(f for f in frames if f.kind == FrameKind.AUDIO and f.config).payload[2:]
    assert asc in init[mp4a[1] : mp4a[2]]
    timescales = [struct.unpack(">I", init[s + 12 : s + 16])[0] for s, _ in t[b"moov/trak/mdia/mdhd"]]
    assert timescales[0] == 90000 and timescales[1] in (22050, 44100, 48000)
    handlers = [init[s + 8 : s + 12] for s, _ in t[b"moov/trak/mdia/hdlr"]]
    assert handlers == [b"vide", b"soun"]


def test_fragments_offsets_sizes_and_flags() -> None:
    frames = flv_frames()
    _, frags = write_fragments(frames, VideoCodec.AVC)
    video = [f for f in frames if f.kind == FrameKind.VIDEO and not f.config and len(f.payload) > 5]
    audio = [f for f in frames if f.kind == FrameKind.AUDIO and not f.config]
    seen_video: list[tuple[int, int, bytes]] = []
    seen_audio: list[bytes] = []
    decode_time = {VIDEO_TRACK_ID: None, AUDIO_TRACK_ID: None}
    for seq, frag in enumerate(frags, start=1):
        top = boxes(frag)
        assert [k for k, _, _ in top] == [b"moof", b"mdat"]
        t = tree(frag)
        ((ms, _),) = t[b"moof/mfhd"]
        assert struct.unpack(">I", frag[ms + 4 : ms + 8])[0] == seq
        for (ts, _), (ds, _), (rs, re_) in zip(
            t[b"moof/traf/tfhd"], t[b"moof/traf/tfdt"], t[b"moof/traf/trun"], strict=True
        ):
            track = struct.unpack(">I", frag[ts + 4 : ts + 8])[0]
            assert frag[ts + 1 : ts + 4] == b"\x02\x00\x00"  # default-base-is-moof
            assert frag[ds] == 1
            base = struct.unpack(">Q", frag[ds + 4 : ds + 12])[0]
            count, offset = struct.unpack(">Ii", frag[rs + 4 : rs + 12])
            assert re_ - rs == 12 + 16 * count
            prev = decode_time[track]
            if prev is not None:
                assert base == prev, "decode time must continue from the previous fragment"
            pos = offset
            total = 0
            for i in range(count):
                dur, size, flags, cts = struct.unpack(">IIIi", frag[rs + 12 + 16 * i : rs + 28 + 16 * i])
                data = frag[pos : pos + size]
                pos += size
                total += dur
                if track == VIDEO_TRACK_ID:
                    seen_video.append((flags, cts, data))
                else:
                    seen_audio.append(data)
                    assert dur == 1024
            decode_time[track] = base + total
    assert len(seen_video) == len(video) and len(seen_audio) == len(audio)
    for (flags, cts, data), frame in zip(seen_video, video, strict=True):
        tag = parse_video_tag(frame.payload)
        assert tag is not None
        assert data == tag.data
        assert cts == tag.cts_ms * 90
        assert flags == (SAMPLE_FLAGS_SYNC if frame.keyframe else SAMPLE_FLAGS_NON_SYNC)
    assert seen_audio == [f.payload[2:] for f in audio]


def test_hevc_init_has_hvc1_and_hvcc() -> None:
    demux = TsDemuxer()
    frames = demux.feed((FIXTURES / "hls" / "tiny_hevc_aac.ts").read_bytes()) + demux.flush()
    init, frags = write_fragments(frames, VideoCodec.HEVC)
    t = tree(init)
    s, e = t[b"moov/trak/mdia/minf/stbl/stsd"][0]
    entry = boxes(init, s + 8, e)[0]
    assert entry[0] == b"hvc1"
    assert [k for k, _, _ in boxes(init, entry[1] + 78, entry[2])] == [b"hvcC"]
    assert struct.unpack(">HH", init[entry[1] + 24 : entry[1] + 28]) == (160, 96)
    assert frags and all(boxes(f)[0][0] == b"moof" for f in frags)


def test_demuxer_round_trip_gives_the_same_frames() -> None:
    frames = flv_frames()
    init, frags = write_fragments(frames, VideoCodec.AVC)
    demux = Fmp4Demuxer()
    configs = demux.init(init)
    header_v = next(f for f in frames if f.kind == FrameKind.VIDEO and f.config)
    header_a = next(f for f in frames if f.kind == FrameKind.AUDIO and f.config)
    assert {f.payload for f in configs} == {header_v.payload, header_a.payload}
    assert all(f.config for f in configs)
    out = [f for frag in frags for f in demux.segment(frag)]
    media_in = [f for f in frames if not f.config and f.kind != FrameKind.DATA and len(f.payload) > 5]
    start = next(f.timestamp for f in media_in if f.kind == FrameKind.VIDEO)
    for kind in (FrameKind.VIDEO, FrameKind.AUDIO):
        a = [f for f in media_in if f.kind == kind]
        b = [f for f in out if f.kind == kind]
        assert len(b) == len(a)
        if kind == FrameKind.VIDEO:
            assert [(f.timestamp, f.keyframe, f.payload) for f in b] == [
                (x.timestamp - start, x.keyframe, x.payload) for x in a
            ]
        else:
            assert [f.payload for f in b] == [x.payload for x in a]


def test_demuxer_refuses_malformed_input() -> None:
    frames = flv_frames()
    init, frags = write_fragments(frames, VideoCodec.AVC)
    with pytest.raises(Fmp4Error, match="before an init"):
        Fmp4Demuxer().segment(frags[0])
    with pytest.raises(Fmp4Error):
        Fmp4Demuxer().init(init[:-20])
    demux = Fmp4Demuxer()
    demux.init(init)
    broken = bytearray(frags[0])
    broken[0:4] = (len(broken) * 2).to_bytes(4, "big")
    with pytest.raises(Fmp4Error, match="overruns"):
        demux.segment(bytes(broken))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=30), st.integers(0))
def test_demuxer_fuzz_mutated_real_fragments(flips: list[tuple[int, int]], cut: int) -> None:
    init, frags = _FUZZ_SAMPLE
    for target_init in (True, False):
        data = bytearray(init if target_init else frags[1])
        data = data[: max(8, cut % (len(data) + 1))]
        for pos, value in flips:
            data[pos % len(data)] = value
        demux = Fmp4Demuxer()
        start = time.monotonic()
        try:
            demux.init(bytes(data) if target_init else init)
            demux.segment(frags[0] if target_init else bytes(data))
        except Fmp4Error:
            pass
        assert time.monotonic() - start < 5.0


_FUZZ_SAMPLE = write_fragments(flv_frames(), VideoCodec.AVC)
