"""Fuzz the TS demuxer: arbitrary, truncated and mutated real segments raise nothing but TsError,
in bounded time and with bounded buffered memory."""

from __future__ import annotations

import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liverelay.media.elementary import VideoCodec
from liverelay.media.flv import FlvDecoder
from liverelay.media.frame import Frame
from liverelay.media.mpegts import PACKET_SIZE, TsDemuxer, TsError, TsMuxer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
HEVC_TS = (FIXTURES / "hls" / "tiny_hevc_aac.ts").read_bytes()
MAX_PES = 64 * 1024
# A generous wall-clock bound per example: the demuxer is linear in its input.
MAX_SECONDS = 5.0


def _avc_segment() -> bytes:
    frames = [
        e
        for e in FlvDecoder().feed((FIXTURES / "flv" / "tiny_h264_aac.flv").read_bytes())
        if isinstance(e, Frame)
    ]
    mux = TsMuxer(video=VideoCodec.AVC, audio=True)
    return mux.start_segment() + b"".join(mux.mux(f) for f in frames)


AVC_TS = _avc_segment()
SAMPLES = [AVC_TS, HEVC_TS]


def drive(data: bytes, split: int) -> int:
    demux = TsDemuxer(max_pes_bytes=MAX_PES)
    start = time.monotonic()
    frames = 0
    try:
        for i in range(0, len(data), split):
            frames += len(demux.feed(data[i : i + split]))
            # 2 elementary streams at most MAX_PES each, one PSI section, one partial packet.
            assert demux.buffered_bytes <= 2 * (MAX_PES + PACKET_SIZE) + 4096 + PACKET_SIZE
        frames += len(demux.flush())
    except TsError:
        pass
    assert time.monotonic() - start < MAX_SECONDS
    return frames


def test_clean_samples_demux_without_error() -> None:
    for sample in SAMPLES:
        assert drive(sample, 4096) > 50


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4 * PACKET_SIZE * 8), st.integers(min_value=1, max_value=2000))
def test_arbitrary_bytes(data: bytes, split: int) -> None:
    drive(data, split)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SAMPLES),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), max_size=40),
    st.integers(min_value=0),
    st.integers(min_value=1, max_value=5000),
)
def test_mutated_real_segments(sample: bytes, flips: list[tuple[int, int]], cut: int, split: int) -> None:
    data = bytearray(sample[: max(PACKET_SIZE, cut % (len(sample) + 1))])
    for pos, value in flips:
        data[pos % len(data)] = value
    drive(bytes(data), split)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SAMPLES), st.integers(min_value=0, max_value=400), st.binary(max_size=PACKET_SIZE))
def test_packets_with_garbage_payloads_keep_sync(sample: bytes, index: int, garbage: bytes) -> None:
    """Valid headers around garbage payloads: exercises PES/PSI/ADTS/NAL parsing, not the sync check."""
    pkts = [bytearray(sample[i : i + PACKET_SIZE]) for i in range(0, len(sample), PACKET_SIZE)]
    pkt = pkts[index % len(pkts)]
    body = garbage.ljust(PACKET_SIZE - 4, b"\xff")[: PACKET_SIZE - 4]
    pkt[4:] = body
    drive(b"".join(pkts), 188 * 7)
