"""Issue 8 items 2 and 3 replayed in-process against the sans-IO server session.

Fed the way the listener feeds it (256 KiB reads); CPU is measured with
time.process_time and memory with tracemalloc, around the session calls only (the
attack bytes themselves are built before measuring).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

from liverelay.media import amf0
from liverelay.media.rtmp import MemoryBudget, PublishRequest, RtmpError, RtmpServerSession, encode_message

READ = 256 * 1024  # servers/rtmp.py READ_SIZE
HANDSHAKE = b"\x03" + bytes(1536)
C2 = bytes(1536)
MAX_LEN = 0xFFFFFF  # the largest length a message header can announce (16 MiB - 1)


def set_chunk_size(size: int) -> bytes:
    return encode_message(2, 1, 0, 0, size.to_bytes(4, "big"), 128)


def handshaken(budget: MemoryBudget | None = None) -> RtmpServerSession:
    s = RtmpServerSession(budget=budget, connect_handler=lambda req: None)
    s.receive_data(HANDSHAKE)
    s.receive_data(C2)
    s.data_to_send()
    return s


def reads(wire: bytes) -> list[bytes]:
    return [wire[i : i + READ] for i in range(0, len(wire), READ)]


def _feed_until_refused(session: RtmpServerSession, pieces: list[bytes]) -> int:
    fed = 0
    with pytest.raises(RtmpError):
        for piece in pieces:
            fed += len(piece)
            session.receive_data(piece)
    session.close()
    return fed


def run_attack(make: Callable[[], RtmpServerSession], pieces: list[bytes]) -> tuple[int, float, int]:
    """Feed fresh sessions until they refuse: once timed (CPU), once traced (tracemalloc
    slows Python down many times, so the two are measured on separate runs).
    Returns (bytes fed, CPU seconds, traced peak bytes)."""
    t0 = time.process_time()
    fed = _feed_until_refused(make(), pieces)
    cpu = time.process_time() - t0
    session = make()
    tracemalloc.start()
    try:
        assert _feed_until_refused(session, pieces) == fed
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return fed, cpu, peak


def nested_values(size: int) -> bytes:
    """A command body of `size` bytes made of tiny nested values: 'connect', 1.0, then
    strict arrays of arrays of nulls, as deep as the decoder allows."""
    head = amf0.encode("connect", 1.0)
    body = bytearray()
    while len(head) + len(body) + 5 + 6 * 31 + 5 < size:
        n = min(5_000, size - len(head) - len(body) - 5 - 6 * 31 - 5)
        body += b"\x0a\x00\x00\x00\x01" * 30 + b"\x0a" + n.to_bytes(4, "big") + b"\x05" * n
    body += b"\x05" * (size - len(head) - len(body))
    return head + bytes(body[: size - len(head)])


def test_16_mib_nested_command_before_connect_is_refused_on_its_header() -> None:
    payload = nested_values(MAX_LEN)
    wire = set_chunk_size(MAX_LEN) + encode_message(3, 20, 0, 0, payload, MAX_LEN)
    pieces = reads(wire)
    fed, cpu, peak = run_attack(handshaken, pieces)
    assert fed == len(pieces[0]), "refused on the first read: the header announced 16 MiB"
    assert cpu < 0.05, f"{cpu * 1000:.1f} ms of CPU"
    assert peak < 1 << 20, f"{peak} bytes traced"


@pytest.mark.parametrize("connected", [False, True])
def test_nested_command_at_the_size_cap_fails_fast_on_the_value_count(connected: bool) -> None:
    def make() -> RtmpServerSession:
        s = handshaken()
        if connected:
            connect = amf0.encode("connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live"})
            s.receive_data(encode_message(3, 20, 0, 0, connect, 128))
            assert s.connected
        return s

    limits = make().limits
    size = limits.command_bytes if connected else limits.command_bytes_before_connect
    payload = nested_values(size)
    payload = payload.replace(b"connect", b"connecx", 1) if connected else payload
    wire = set_chunk_size(4096) + encode_message(3, 20, 0, 0, payload, 4096)
    fed, cpu, peak = run_attack(make, [wire])
    assert fed == len(wire), "within the size cap: refused by the AMF0 value count"
    assert cpu < 0.05, f"{cpu * 1000:.1f} ms of CPU"
    assert peak < 1 << 20, f"{peak} bytes traced"


def chunk_size_one(total: int) -> Iterator[bytes]:
    """Set Chunk Size 1, then messages on many chunk streams, one byte per chunk, round robin:
    every chunk is a 1-byte header + 1 payload byte (how the 11.5 MB attack was built)."""
    yield set_chunk_size(1)
    csids = list(range(3, 60))
    for c in csids:
        yield bytes([c]) + bytes(3) + (16 << 10).to_bytes(3, "big") + b"\x14" + bytes(4) + b"\x05"
    sent = len(csids) * 13
    row = b"".join(bytes([0xC0 | c, 5]) for c in csids)
    while sent < total:
        yield row
        sent += len(row)


def test_chunk_size_one_with_11_mb_partial_messages_is_refused_by_the_pre_connect_cap() -> None:
    wire = b"".join(chunk_size_one(11_500_000))
    pieces = reads(wire)
    budget = MemoryBudget(1 << 30)
    fed, cpu, peak = run_attack(lambda: handshaken(budget), pieces)
    cap = RtmpServerSession().limits.buffer_before_connect
    # Every partial byte costs one byte: refused within the first read, having held no more
    # than the cap (the old reader held ~28 bytes per payload byte).
    assert fed == len(pieces[0])
    assert peak < 4 * cap + 2 * READ, f"{peak} bytes traced"
    assert cpu < 0.05, f"{cpu * 1000:.1f} ms of CPU"
    assert budget.used == 0, "close() returned what the session held"


def test_publisher_at_chunk_size_one_costs_one_byte_per_buffered_byte() -> None:
    # After publish a large message is legitimate; its partial must not cost per chunk.
    s = handshaken()
    for i, cmd in enumerate(
        (
            amf0.encode("connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live"}),
            amf0.encode("createStream", 2.0, None),
            amf0.encode("publish", 3.0, None, "s", "live"),
        )
    ):
        for ev in s.receive_data(encode_message(3, 20, 0, 1 if i == 2 else 0, cmd, 128)):
            if isinstance(ev, PublishRequest):
                s.accept_publish(ev)
    size = 200_000
    wire = set_chunk_size(1) + encode_message(7, 9, 0, 1, b"\x17\x01" + bytes(size - 2), 1)
    pieces = reads(wire[:-10])  # all but the end: the message stays partial
    tracemalloc.start()
    try:
        for piece in pieces:
            s.receive_data(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held = s.reader.buffered
    assert size - 10 < held <= size
    assert peak < 2 * held + 2 * READ, f"{peak} bytes traced for {held} held"
    s.close()
    assert s.reader.buffered == 0


def test_many_connections_share_one_budget() -> None:
    # Each connection stays under its own pre-publish cap; together they hit the node cap.
    budget = MemoryBudget(1 << 20)
    sessions = []
    connect = amf0.encode("connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live"})
    partial = set_chunk_size(4096) + encode_message(4, 20, 0, 0, bytes(60_000), 4096)[: 12 + 14 * 4097]
    with pytest.raises(RtmpError, match="budget"):
        for _ in range(100):
            s = handshaken(budget)
            sessions.append(s)
            s.receive_data(encode_message(3, 20, 0, 0, connect, 128))
            s.receive_data(partial)
    assert budget.used <= budget.limit
    assert 10 < len(sessions) < 100
    for s in sessions:
        s.close()
    assert budget.used == 0


def test_a_read_of_tiny_chunks_is_parsed_in_small_slices_per_loop_turn() -> None:
    # Parsing costs per chunk: at chunk size 1 a 64 KiB slice is 32 Ki chunks (tens of ms
    # in one callback), so a turn takes at most FEED_SLICE_CHUNKS of the peer's chunks.
    from liverelay.servers.rtmp import (
        FEED_SLICE_BYTES,
        FEED_SLICE_CHUNKS,
        FEED_SLICE_MIN_BYTES,
        feed_slice_bytes,
    )

    assert feed_slice_bytes(1) == FEED_SLICE_MIN_BYTES == 4096
    assert feed_slice_bytes(16) == 16 * FEED_SLICE_CHUNKS
    assert feed_slice_bytes(128) == FEED_SLICE_BYTES  # the RTMP default: whole slices
    assert feed_slice_bytes(4096) == FEED_SLICE_BYTES
    assert feed_slice_bytes(1 << 24) == FEED_SLICE_BYTES
    for size in (1, 2, 3, 7, 50, 64, 100):
        slice_bytes = feed_slice_bytes(size)
        # at most FEED_SLICE_CHUNKS chunks (plus the floor) in one turn
        assert slice_bytes <= max(FEED_SLICE_MIN_BYTES, size * FEED_SLICE_CHUNKS)
