"""FLV decoder/encoder against real ffmpeg-produced bytes (tests/fixtures/flv/)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liverelay.media.codecs import make_frame
from liverelay.media.flv import FlvDecoder, FlvError, FlvHeader, flv_header, flv_tag
from liverelay.media.frame import Frame, FrameKind

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "flv" / "tiny_h264_aac.flv"
DATA = FIXTURE.read_bytes()


def decode_all(chunks: list[bytes], **kwargs: int) -> list[FlvHeader | Frame]:
    decoder = FlvDecoder(**kwargs)
    events: list[FlvHeader | Frame] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


def summary(events: list[FlvHeader | Frame]) -> list[tuple]:
    return [
        (e.has_audio, e.has_video)
        if isinstance(e, FlvHeader)
        else (e.kind, e.timestamp, e.payload, e.keyframe, e.config)
        for e in events
    ]


REFERENCE = decode_all([DATA])


def test_fixture_decodes_to_header_metadata_headers_and_frames() -> None:
    header, *frames = REFERENCE
    assert header == FlvHeader(has_audio=True, has_video=True)
    assert all(isinstance(f, Frame) for f in frames)
    assert frames[0].kind == FrameKind.DATA and frames[0].payload.startswith(b"\x02\x00\x0aonMetaData")
    video = [f for f in frames if f.kind == FrameKind.VIDEO]
    audio = [f for f in frames if f.kind == FrameKind.AUDIO]
    # 1.5 s at 15 fps with a 10-frame GOP; AAC at 22.05 kHz (1024 samples a frame).
    assert [f.config for f in video].count(True) == 1 and video[0].config
    assert [f.config for f in audio].count(True) == 1 and audio[0].config
    coded = [f for f in video if f.payload[1] == 1]  # AVC NALUs (not header, not end of sequence)
    assert len(coded) == 23
    assert video[-1].payload[:2] == b"\x17\x02" and not video[-1].keyframe  # ffmpeg's end-of-sequence tag
    assert [i for i, f in enumerate(coded) if f.keyframe] == [0, 10, 20]
    assert 30 <= len(audio) - 1 <= 34
    for kind_frames in (coded, audio[1:]):
        stamps = [f.timestamp for f in kind_frames]
        assert stamps == sorted(stamps) and stamps[-1] > 1300


def test_byte_by_byte_feed_gives_the_same_events() -> None:
    assert summary(decode_all([DATA[i : i + 1] for i in range(len(DATA))])) == summary(REFERENCE)


def test_every_two_piece_split_point() -> None:
    expected = summary(REFERENCE)
    # Every split in the header and first tags, then every 13th byte (tags are all covered).
    points = [*range(0, 2048), *range(2048, len(DATA), 13), len(DATA)]
    for i in points:
        assert summary(decode_all([DATA[:i], DATA[i:]])) == expected, f"split at {i}"


def test_reencoding_reproduces_the_file_byte_for_byte() -> None:
    header, *frames = REFERENCE
    assert isinstance(header, FlvHeader)
    rebuilt = flv_header(header.has_audio, header.has_video) + b"".join(flv_tag(f) for f in frames)
    assert rebuilt == DATA


def test_flv_tag_is_memoised_per_frame() -> None:
    frame = make_frame(FrameKind.AUDIO, 5, b"\xaf\x01abc")
    first = flv_tag(frame)
    assert flv_tag(frame) is first
    assert frame.cache["flv"] is first
    assert len(first) == 11 + 5 + 4
    assert struct.unpack(">I", first[-4:])[0] == 11 + 5


def test_extended_timestamp_round_trip() -> None:
    frame = make_frame(FrameKind.VIDEO, 0x12345678, b"\x17\x01\x00\x00\x00data")
    tag = flv_tag(frame)
    assert tag[4:8] == bytes([0x34, 0x56, 0x78, 0x12])  # lower 24 bits, then the extension byte
    (out,) = decode_all([flv_header(), tag])[1:]
    assert isinstance(out, Frame) and out.timestamp == 0x12345678 and out.keyframe


@pytest.mark.parametrize(
    ("payload", "keyframe", "config"),
    [
        (b"\x1c\x00\x00\x00\x00hvcC", False, True),  # HEVC id 12 sequence header
        (b"\x1c\x01\x00\x00\x00nal", True, False),  # HEVC id 12 keyframe
        (b"\x2c\x01\x00\x00\x00nal", False, False),  # HEVC id 12 inter frame
        (b"\x90hvc1hvcC", False, True),  # Enhanced RTMP SequenceStart
        (b"\x91hvc1\x00\x00\x00nal", True, False),  # Enhanced RTMP CodedFrames, key
        (b"\x93av01nal", True, False),  # Enhanced RTMP CodedFramesX, key
        (b"\xa3av01nal", False, False),  # Enhanced RTMP inter frame
    ],
)
def test_hevc_and_enhanced_rtmp_pass_through(payload: bytes, keyframe: bool, config: bool) -> None:
    tag = flv_tag(make_frame(FrameKind.VIDEO, 40, payload))
    (out,) = decode_all([flv_header(False, True), tag])[1:]
    assert isinstance(out, Frame)
    assert (out.payload, out.keyframe, out.config) == (payload, keyframe, config)


def test_set_data_frame_is_stripped_from_script_tags() -> None:
    body = b"\x02\x00\x0aonMetaData\x03\x00\x00\x09"
    tag = flv_tag(Frame(FrameKind.DATA, 0, b"\x02\x00\x0d@setDataFrame" + body))
    (out,) = decode_all([flv_header(), tag])[1:]
    assert isinstance(out, Frame) and out.payload == body


def test_unknown_and_encrypted_tags_are_skipped() -> None:
    unknown = b"\x0f\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00ab\x00\x00\x00\x0d"
    encrypted = b"\x28\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00ab\x00\x00\x00\x0d"
    audio = flv_tag(Frame(FrameKind.AUDIO, 1, b"\xaf\x01z"))
    events = decode_all([flv_header(), unknown, encrypted, audio])
    assert summary(events[1:]) == [(FrameKind.AUDIO, 1, b"\xaf\x01z", False, False)]


def test_header_with_larger_data_offset() -> None:
    head = b"FLV\x01\x05" + struct.pack(">I", 13) + b"xxxx" + b"\x00\x00\x00\x00"
    audio = flv_tag(Frame(FrameKind.AUDIO, 7, b"\xaf\x01z"))
    for split in range(len(head) + 1):
        events = decode_all([head[:split], head[split:] + audio])
        assert [type(e) for e in events] == [FlvHeader, Frame]


@pytest.mark.parametrize(
    "data",
    [
        b"RIFF\x00\x00\x00\x00",
        b"FL",  # fine so far ...
        b"FLV\x01\x05\x00\x00\x00\x03",  # data offset below 9
        b"FLV\x01\x05\x00\x01\x00\x00",  # data offset absurd
        flv_header() + b"\xc8" + b"\x00" * 14,  # reserved bits in the tag type
        flv_header() + b"\x09\xff\xff\xff" + b"\x00" * 7,  # 16 MiB tag over a 1 MiB limit
    ],
)
def test_malformed_input_raises_flv_error(data: bytes) -> None:
    decoder = FlvDecoder(max_tag_bytes=1 << 20)
    if data == b"FL":
        assert decoder.feed(data) == []
        with pytest.raises(FlvError):
            decoder.feed(b"X" * 10)
        return
    with pytest.raises(FlvError):
        decoder.feed(data)
    with pytest.raises(FlvError):  # stays failed
        decoder.feed(b"")


def test_tag_limit_applies_before_the_body_arrives() -> None:
    decoder = FlvDecoder(max_tag_bytes=1000)
    decoder.feed(flv_header())
    with pytest.raises(FlvError):
        decoder.feed(b"\x09\x00\x03\xe9\x00\x00\x00\x00\x00\x00\x00")  # 1001-byte body announced


def test_truncated_stream_yields_a_prefix_of_the_events() -> None:
    expected = summary(REFERENCE)
    for cut in range(0, len(DATA), 97):
        got = summary(decode_all([DATA[:cut]]))
        assert got == expected[: len(got)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512), st.integers(min_value=1, max_value=64))
def test_fuzz_arbitrary_bytes_only_raise_flv_error(data: bytes, step: int) -> None:
    decoder = FlvDecoder(max_tag_bytes=4096)
    try:
        for i in range(0, len(data), step):
            decoder.feed(data[i : i + step])
    except FlvError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(min_value=0, max_value=len(DATA) - 1), st.integers(0, 255)), max_size=8),
    st.integers(min_value=0, max_value=len(DATA)),
    st.integers(min_value=1, max_value=8192),
)
def test_fuzz_mutated_real_bytes_only_raise_flv_error(
    mutations: list[tuple[int, int]], cut: int, step: int
) -> None:
    data = bytearray(DATA[:cut])
    for pos, value in mutations:
        if pos < len(data):
            data[pos] = value
    decoder = FlvDecoder(max_tag_bytes=1 << 20)
    try:
        for i in range(0, len(data), step):
            for event in decoder.feed(bytes(data[i : i + step])):
                assert isinstance(event, FlvHeader | Frame)
    except FlvError:
        pass
