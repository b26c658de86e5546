"""MPEG-TS muxer and demuxer: byte-level structure on real H.264/AAC (and H.265) fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from liverelay.media.elementary import (
    VideoCodec,
    VideoPacket,
    parse_avcc,
    parse_video_tag,
    split_annexb,
    split_length_prefixed,
)
from liverelay.media.flv import FlvDecoder
from liverelay.media.frame import Frame, FrameKind
from liverelay.media.mpegts import (
    PACKET_SIZE,
    PID_AUDIO,
    PID_PAT,
    PID_PMT,
    PID_VIDEO,
    PTS_OFFSET_90K,
    TsDemuxer,
    TsError,
    TsMuxer,
    crc32_mpeg2,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FLV = (FIXTURES / "flv" / "tiny_h264_aac.flv").read_bytes()
HEVC_TS = (FIXTURES / "hls" / "tiny_hevc_aac.ts").read_bytes()


def flv_frames() -> list[Frame]:
    return [e for e in FlvDecoder().feed(FLV) if isinstance(e, Frame)]


def packets(data: bytes) -> list[bytes]:
    assert len(data) % PACKET_SIZE == 0
    return [data[i : i + PACKET_SIZE] for i in range(0, len(data), PACKET_SIZE)]


def pid_of(pkt: bytes) -> int:
    return ((pkt[1] & 0x1F) << 8) | pkt[2]


def payload_of(pkt: bytes) -> bytes:
    afc = (pkt[3] >> 4) & 3
    pos = 5 + pkt[4] if afc & 2 else 4
    return pkt[pos:] if afc & 1 else b""


def read_ts(b: bytes) -> int:
    return ((b[0] >> 1) & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


def pes_units(data: bytes, pid: int) -> list[tuple[bytes, bytes]]:
    """(first packet, whole PES) per PES on `pid`."""
    out: list[tuple[bytes, bytearray]] = []
    for pkt in packets(data):
        if pid_of(pkt) != pid:
            continue
        if pkt[1] & 0x40:
            out.append((pkt, bytearray()))
        out[-1][1].extend(payload_of(pkt))
    return [(p, bytes(b)) for p, b in out]


def mux_all(frames: list[Frame], segments: int = 1) -> tuple[TsMuxer, list[bytes]]:
    mux = TsMuxer(video=VideoCodec.AVC, audio=True)
    per = max(1, len(frames) // segments)
    out = []
    for s in range(segments):
        chunk = frames[s * per : (s + 1) * per] if s < segments - 1 else frames[s * per :]
        out.append(mux.start_segment() + b"".join(mux.mux(f) for f in chunk))
    return mux, out


def test_packets_are_188_bytes_with_sync_and_psi_first() -> None:
    _, (seg,) = mux_all(flv_frames())
    pkts = packets(seg)
    assert all(p[0] == 0x47 for p in pkts)
    assert pid_of(pkts[0]) == PID_PAT and pid_of(pkts[1]) == PID_PMT
    for pkt in pkts[:2]:
        body = payload_of(pkt)
        assert body[0] == 0  # pointer field
        length = ((body[2] & 0x0F) << 8) | body[3]
        section = body[1 : 4 + length]
        assert crc32_mpeg2(section[:-4]) == int.from_bytes(section[-4:], "big")
    pmt = payload_of(pkts[1])[1:]
    assert ((pmt[8] & 0x1F) << 8 | pmt[9]) == PID_VIDEO  # PCR PID
    assert pmt[12:17] == bytes([0x1B, 0xE1, 0x00, 0xF0, 0x00])
    assert pmt[17:22] == bytes([0x0F, 0xE1, 0x01, 0xF0, 0x00])


def test_continuity_counters_run_on_across_segments() -> None:
    _, segs = mux_all(flv_frames(), segments=3)
    last: dict[int, int] = {}
    for pkt in packets(b"".join(segs)):
        pid, cc = pid_of(pkt), pkt[3] & 0x0F
        if pid in last:
            assert cc == (last[pid] + 1) & 0x0F, f"CC jump on PID {pid:#x}"
        last[pid] = cc
    assert set(last) == {PID_PAT, PID_PMT, PID_VIDEO, PID_AUDIO}


def test_video_pes_has_pcr_pts_dts_aud_and_parameter_sets_before_idr() -> None:
    frames = flv_frames()
    _, (seg,) = mux_all(frames)
    video = [f for f in frames if f.kind == FrameKind.VIDEO and not f.config and len(f.payload) > 5]
    units = pes_units(seg, PID_VIDEO)
    assert len(units) == len(video)
    header = next(f for f in frames if f.kind == FrameKind.VIDEO and f.config)
    cfg = parse_avcc(header.payload[5:])
    for (first, pes), frame in zip(units, video, strict=True):
        tag = parse_video_tag(frame.payload)
        assert tag is not None and tag.packet is VideoPacket.FRAMES
        # PCR in the adaptation field of the first packet == DTS (before the PTS offset).
        assert first[3] & 0x20 and first[5] & 0x10
        pcr = first[6:12]
        base = pcr[0] << 25 | pcr[1] << 17 | pcr[2] << 9 | pcr[3] << 1 | pcr[4] >> 7
        assert base == frame.timestamp * 90
        assert bool(first[5] & 0x40) == frame.keyframe  # random_access_indicator
        assert pes[:4] == b"\x00\x00\x01\xe0"
        assert pes[7] & 0xC0 in (0x80, 0xC0)
        pts = read_ts(pes[9:14])
        dts = read_ts(pes[14:19]) if pes[7] & 0x40 else pts
        assert dts == frame.timestamp * 90 + PTS_OFFSET_90K
        assert pts == (frame.timestamp + tag.cts_ms) * 90 + PTS_OFFSET_90K
        nalus = split_annexb(pes[9 + pes[8] :])
        assert nalus[0][0] & 0x1F == 9  # AUD first
        original = split_length_prefixed(tag.data, cfg.length_size)
        if frame.keyframe:
            assert [n[0] & 0x1F for n in nalus[1:3]] == [7, 8]
            assert nalus[1:3] == list(cfg.parameter_sets)
        assert [n for n in nalus if n[0] & 0x1F not in (7, 8, 9)] == [
            n for n in original if n[0] & 0x1F not in (7, 8, 9)
        ]


def test_audio_pes_carry_adts_and_bounded_length() -> None:
    frames = flv_frames()
    _, (seg,) = mux_all(frames)
    audio = [f for f in frames if f.kind == FrameKind.AUDIO and not f.config]
    units = pes_units(seg, PID_AUDIO)
    assert len(units) == len(audio)
    for (_, pes), frame in zip(units, audio, strict=True):
        assert pes[:4] == b"\x00\x00\x01\xc0"
        length = int.from_bytes(pes[4:6], "big")
        assert length == len(pes) - 6 or len(pes) - 6 - length < PACKET_SIZE  # stuffing only in AF
        body = pes[9 + pes[8] : 6 + length]
        assert body[0] == 0xFF and body[1] & 0xF6 == 0xF0
        assert ((body[3] & 3) << 11 | body[4] << 3 | body[5] >> 5) == len(body)
        assert body[7:] == frame.payload[2:]
        assert read_ts(pes[9:14]) == frame.timestamp * 90 + PTS_OFFSET_90K


def test_demux_round_trip_gives_the_same_frames() -> None:
    frames = flv_frames()
    _, (seg,) = mux_all(frames)
    demux = TsDemuxer()
    out: list[Frame] = []
    for i in range(0, len(seg), 1000):  # any split
        out += demux.feed(seg[i : i + 1000])
    out += demux.flush()
    media_in = [f for f in frames if not f.config and f.kind != FrameKind.DATA and len(f.payload) > 5]
    media_out = [f for f in out if not f.config]
    assert len(media_out) == len(media_in)
    by_kind_in = {k: [f for f in media_in if f.kind == k] for k in (FrameKind.AUDIO, FrameKind.VIDEO)}
    by_kind_out = {k: [f for f in media_out if f.kind == k] for k in (FrameKind.AUDIO, FrameKind.VIDEO)}
    first = min(f.timestamp for f in media_in)
    for k in by_kind_in:
        for a, b in zip(by_kind_in[k], by_kind_out[k], strict=True):
            assert b.timestamp == a.timestamp - first
            assert b.keyframe == a.keyframe
            if k == FrameKind.AUDIO:
                assert b.payload[2:] == a.payload[2:]
    configs = [f for f in out if f.config]
    assert {f.kind for f in configs} == {FrameKind.AUDIO, FrameKind.VIDEO}
    vcfg = next(f for f in configs if f.kind == FrameKind.VIDEO)
    assert vcfg.payload[:2] == b"\x17\x00"
    header = next(f for f in frames if f.kind == FrameKind.VIDEO and f.config)
    assert parse_avcc(vcfg.payload[5:]).parameter_sets == parse_avcc(header.payload[5:]).parameter_sets


def test_demux_hevc_emits_enhanced_rtmp_hvc1_and_remuxes() -> None:
    demux = TsDemuxer()
    out = demux.feed(HEVC_TS) + demux.flush()
    cfg = next(f for f in out if f.kind == FrameKind.VIDEO and f.config)
    assert cfg.payload[0] == 0x90 and cfg.payload[1:5] == b"hvc1"
    tag = parse_video_tag(cfg.payload)
    assert tag is not None and tag.codec is VideoCodec.HEVC
    video = [f for f in out if f.kind == FrameKind.VIDEO and not f.config]
    assert video[0].keyframe and len(video) == 30  # 2 s at 15 fps
    assert sum(1 for f in out if f.kind == FrameKind.AUDIO and not f.config) > 30
    mux = TsMuxer(video=VideoCodec.HEVC, audio=True)
    again = mux.start_segment() + b"".join(mux.mux(f) for f in out)
    demux2 = TsDemuxer()
    out2 = demux2.feed(again) + demux2.flush()

    def key(f: Frame) -> tuple[int, int, bool]:
        return (f.kind, f.timestamp, not f.config)

    assert [(f.kind, f.timestamp, f.payload) for f in sorted(out2, key=key)] == [
        (f.kind, f.timestamp, f.payload) for f in sorted(out, key=key)
    ]


def test_timestamps_unwrap_across_the_33_bit_boundary() -> None:
    frames = flv_frames()
    mux = TsMuxer(video=VideoCodec.AVC, audio=True)
    near_wrap = (1 << 33) // 90 - 500  # ms: wraps half a second in
    shifted = [f.with_timestamp(f.timestamp + near_wrap) for f in frames]
    data = mux.start_segment() + b"".join(mux.mux(f) for f in shifted)
    demux = TsDemuxer()
    out = demux.feed(data) + demux.flush()
    ts = [f.timestamp for f in out if f.kind == FrameKind.VIDEO and not f.config]
    assert ts == sorted(ts) and ts[-1] - ts[0] > 1000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x48" + b"\x00" * 187, "lost sync"),
        (bytes([0x47, 0x40, 0x00, 0x10, 0x00, 0x00, 0xB0, 0x0D]) + b"\x00" * 180, "CRC"),
        (bytes([0x47, 0x00, 0x00, 0x30, 0xB8]) + b"\x00" * 183, "adaptation field"),
    ],
)
def test_malformed_input_raises_ts_error_and_keeps_raising(data: bytes, message: str) -> None:
    demux = TsDemuxer()
    with pytest.raises(TsError, match=message):
        demux.feed(data)
    with pytest.raises(TsError):
        demux.feed(b"")


def test_oversized_pes_is_refused() -> None:
    frames = flv_frames()
    _, (seg,) = mux_all(frames)
    demux = TsDemuxer(max_pes_bytes=2000)
    with pytest.raises(TsError, match="exceeds"):
        demux.feed(seg)
