"""Chunk stream reader and writer with hand-built byte fixtures and round-trip properties."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liverelay.media.frame import Frame, FrameKind
from liverelay.media.rtmp import ChunkReader, RtmpError, encode_message, frame_chunks
from liverelay.media.rtmp.chunk import basic_header


def u24(n: int) -> bytes:
    return n.to_bytes(3, "big")


def fmt0(csid: int, ts: int, length: int, type_id: int, msid: int) -> bytes:
    return bytes([csid]) + u24(ts) + u24(length) + bytes([type_id]) + struct.pack("<I", msid)


def fmt1(csid: int, delta: int, length: int, type_id: int) -> bytes:
    return bytes([0x40 | csid]) + u24(delta) + u24(length) + bytes([type_id])


def fmt2(csid: int, delta: int) -> bytes:
    return bytes([0x80 | csid]) + u24(delta)


def fmt3(csid: int) -> bytes:
    return bytes([0xC0 | csid])


def test_fmt0_single_chunk() -> None:
    r = ChunkReader()
    (msg,) = r.feed(fmt0(4, 1000, 3, 9, 1) + b"abc")
    assert (msg.type_id, msg.timestamp, msg.stream_id, msg.payload, msg.csid) == (9, 1000, 1, b"abc", 4)


def test_fmt1_fmt2_fmt3_deltas_spec_example() -> None:
    # RTMP spec 5.3.2.1 example: audio messages with constant delta 33 on one chunk stream.
    r = ChunkReader()
    data = fmt0(3, 1000, 32, 8, 12345) + b"a" * 32
    data += fmt2(3, 20) + b"b" * 32
    data += fmt3(3) + b"c" * 32
    data += fmt3(3) + b"d" * 32
    msgs = r.feed(data)
    assert [m.timestamp for m in msgs] == [1000, 1020, 1040, 1060]
    assert all(m.stream_id == 12345 and m.type_id == 8 for m in msgs)
    data = fmt1(3, 5, 2, 9) + b"xy"
    (m,) = r.feed(data)
    assert (m.timestamp, m.type_id, m.payload) == (1065, 9, b"xy")


def test_fmt3_new_message_after_fmt0_reuses_the_timestamp_field() -> None:
    # As ffmpeg and SRS read it: after fmt 0 the "delta" for fmt 3 is the fmt 0 field.
    r = ChunkReader()
    msgs = r.feed(fmt0(5, 40, 1, 8, 1) + b"a" + fmt3(5) + b"b")
    assert [m.timestamp for m in msgs] == [40, 80]


def test_message_split_over_chunks_and_interleaved_streams() -> None:
    r = ChunkReader()
    video = b"V" * 300
    audio = b"A" * 200
    data = fmt0(6, 0, 300, 9, 1) + video[:128]
    data += fmt0(4, 0, 200, 8, 1) + audio[:128]
    data += fmt3(6) + video[128:256]
    data += fmt3(4) + audio[128:]
    data += fmt3(6) + video[256:]
    msgs = r.feed(data)
    assert [(m.type_id, m.payload) for m in msgs] == [(8, audio), (9, video)]


def test_byte_by_byte_feeding() -> None:
    payload = bytes(range(256)) * 2
    data = encode_message(6, 9, 77, 1, payload, 128)
    r = ChunkReader()
    out = []
    for b in data:
        out += r.feed(bytes([b]))
    assert len(out) == 1 and out[0].payload == payload and out[0].timestamp == 77


def test_set_chunk_size_applies_to_following_bytes_in_same_feed() -> None:
    r = ChunkReader()
    payload = b"x" * 1000
    data = fmt0(2, 0, 4, 1, 0) + struct.pack(">I", 4096)
    data += fmt0(6, 5, len(payload), 9, 1) + payload  # one chunk at the new size
    msgs = r.feed(data)
    assert r.chunk_size == 4096
    assert msgs[-1].payload == payload


def test_set_chunk_size_zero_or_short_is_error() -> None:
    with pytest.raises(RtmpError):
        ChunkReader().feed(fmt0(2, 0, 4, 1, 0) + b"\x00\x00\x00\x00")
    with pytest.raises(RtmpError):
        ChunkReader().feed(fmt0(2, 0, 2, 1, 0) + b"\x00\x01")


def test_abort_discards_partial_message() -> None:
    r = ChunkReader()
    data = fmt0(6, 0, 200, 9, 1) + b"p" * 128
    data += fmt0(2, 0, 4, 2, 0) + struct.pack(">I", 6)  # Abort csid 6
    data += fmt0(6, 10, 3, 9, 1) + b"new"
    msgs = r.feed(data)
    assert [m.payload for m in msgs if m.type_id == 9] == [b"new"]
    assert r.buffered == 0


def test_extended_timestamp_with_repeated_field_on_continuations() -> None:
    ts = 0x01000000 + 5
    payload = b"z" * 200
    data = bytes([6]) + u24(0xFFFFFF) + u24(200) + b"\x09" + struct.pack("<I", 1) + struct.pack(">I", ts)
    data += payload[:128] + fmt3(6) + struct.pack(">I", ts) + payload[128:]
    (m,) = ChunkReader().feed(data)
    assert m.timestamp == ts and m.payload == payload


def test_extended_timestamp_without_repetition_quirk() -> None:
    ts = 0x01000000 + 5
    payload = b"z" * 200
    data = bytes([6]) + u24(0xFFFFFF) + u24(200) + b"\x09" + struct.pack("<I", 1) + struct.pack(">I", ts)
    data += payload[:128] + fmt3(6) + payload[128:]
    (m,) = ChunkReader().feed(data)
    assert m.timestamp == ts and m.payload == payload


def test_writer_extended_timestamp_round_trip() -> None:
    payload = bytes(1000)
    data = encode_message(7, 9, 0x12345678, 1, payload, 128)
    # fmt 0 header + 4-byte ext, then 7 continuations each with 1+4 bytes of header.
    assert len(data) == 12 + 4 + 1000 + 7 * 5
    (m,) = ChunkReader().feed(data)
    assert m.timestamp == 0x12345678 and m.payload == payload


def test_basic_header_forms() -> None:
    assert basic_header(0, 3) == b"\x03"
    assert basic_header(3, 64) == b"\xc0\x00"
    assert basic_header(1, 319) == b"\x40\xff"
    assert basic_header(2, 320) == b"\x81\x00\x01"
    for csid in (2, 63, 64, 300, 319, 320, 5000, 65599):
        data = encode_message(csid, 8, 1, 1, b"q" * 300, 128)
        (m,) = ChunkReader().feed(data)
        assert m.csid == csid and m.payload == b"q" * 300


def test_message_size_limit() -> None:
    r = ChunkReader(max_message_bytes=1000)
    with pytest.raises(RtmpError, match="exceeds"):
        r.feed(fmt0(6, 0, 1001, 9, 1))


def test_chunk_stream_limit() -> None:
    r = ChunkReader(max_chunk_streams=4)
    data = b"".join(fmt0(c, 0, 1, 8, 1) + b"x" for c in range(3, 8))
    with pytest.raises(RtmpError, match="chunk streams"):
        r.feed(data)


def test_first_chunk_may_be_fmt1() -> None:
    # ffmpeg opens csid 2/3 with fmt 1 when the message stream id is 0.
    (m,) = ChunkReader().feed(fmt1(3, 0, 2, 20) + b"hi")
    assert (m.stream_id, m.payload, m.type_id) == (0, b"hi", 20)


def test_zero_length_message() -> None:
    (m,) = ChunkReader().feed(fmt0(3, 0, 0, 20, 0))
    assert m.payload == b""


def test_frame_chunks_cached_once() -> None:
    frame = Frame(FrameKind.VIDEO, 1234, b"\x17\x01" + bytes(9000), keyframe=True)
    a = frame_chunks(frame, 4096, 1)
    assert frame_chunks(frame, 4096, 1) is a
    assert frame_chunks(frame, 128, 1) is not a
    r = ChunkReader()
    r.chunk_size = 4096
    (m,) = r.feed(a)
    assert (m.type_id, m.timestamp, m.stream_id, m.payload, m.csid) == (9, 1234, 1, frame.payload, 7)


def test_data_frames_go_out_at_timestamp_zero() -> None:
    frame = Frame(FrameKind.DATA, 5000, b"\x02\x00\x0aonMetaData\x05")
    (m,) = ChunkReader().feed(frame_chunks(frame, 4096, 1))
    assert m.timestamp == 0 and m.type_id == 18


_messages = st.lists(
    st.tuples(
        st.sampled_from([3, 4, 6, 7, 63, 64, 100, 320]),
        st.sampled_from([8, 9, 18, 20]),
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 5),
        st.binary(max_size=700),
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(_messages, st.sampled_from([1, 2, 7, 128, 4096]), st.integers(1, 97))
def test_writer_reader_round_trip(messages: list, chunk_size: int, split: int) -> None:
    wire = b"".join(encode_message(c, t, ts, sid, p, chunk_size) for c, t, ts, sid, p in messages)
    r = ChunkReader()
    r.chunk_size = chunk_size
    out = []
    for i in range(0, len(wire), split):
        out += r.feed(wire[i : i + split])
    assert [(m.csid, m.type_id, m.timestamp, m.stream_id, m.payload) for m in out] == messages
    assert r.buffered == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([1, 128, 4096]))
def test_reader_fuzz_only_rtmperror(data: bytes, chunk_size: int) -> None:
    r = ChunkReader(max_message_bytes=4096, max_chunk_streams=8)
    r.chunk_size = chunk_size
    try:
        r.feed(data)
    except RtmpError:
        pass
