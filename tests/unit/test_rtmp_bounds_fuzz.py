"""Fuzz AMF0 decoding and chunk reassembly for cost, not only for the exception type.

Every input must finish within a CPU bound (time.process_time, measured without
tracing) and a memory bound (tracemalloc peak, measured on a second run): hostile bytes
may fail, but never cost more than a small multiple of their own size.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liverelay.media import amf0
from liverelay.media.rtmp import ChunkReader, RtmpError, RtmpLimits, RtmpServerSession, encode_message

LIMITS = RtmpLimits()


def cost(fn: Callable[[], object]) -> tuple[float, int]:
    """(CPU seconds of one run, tracemalloc peak of another) of fn()."""
    t0 = time.process_time()
    fn()
    cpu = time.process_time() - t0
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return cpu, peak


def decode(data: bytes) -> None:
    try:
        amf0.decode_all(data, max_elements=LIMITS.amf0_max_elements, max_depth=LIMITS.amf0_max_depth)
    except amf0.AMF0Error:
        pass


# Small building blocks of hostile AMF0: nulls, nested arrays/objects/ECMA arrays, keys,
# numbers, strings with long declared lengths, end markers.
_PIECES = [
    b"\x05",
    b"\x06",
    b"\x0a\x00\x00\x00\x01",
    b"\x0a\x00\x00\xff\xff",
    b"\x03",
    b"\x08\x00\x00\x00\x00",
    b"\x00\x01a",
    b"\x00\x00\x09",
    b"\x00" + bytes(8),
    b"\x02\x00\x03abc",
    b"\x0c\x00\x01\x00\x00",
    b"\x10\x00\x01C",
    b"\x0b" + bytes(10),
]

_amf0_inputs = st.one_of(
    st.binary(max_size=4096),
    st.builds(
        lambda pieces, repeat: b"".join(pieces) * repeat,
        st.lists(st.sampled_from(_PIECES), min_size=1, max_size=12),
        st.integers(1, 8000),
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_amf0_inputs)
def test_amf0_decode_cost_is_bounded_per_input(data: bytes) -> None:
    data = data[: LIMITS.command_bytes]  # the largest command the session ever decodes
    cpu, peak = cost(lambda: decode(data))
    # 1024 values at most: a few ms, whatever the length; memory a small multiple of the input.
    assert cpu < 0.05, f"{cpu * 1000:.1f} ms for {len(data)} bytes"
    assert peak < 512 * 1024 + 4 * len(data), f"{peak} bytes traced for {len(data)} bytes"


_messages = st.lists(
    st.tuples(
        st.sampled_from([3, 4, 6, 7, 63, 64, 320]),
        st.sampled_from([8, 9, 18, 20]),
        st.integers(0, 20_000),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_messages, st.sampled_from([1, 7, 128, 4096]), st.sampled_from([1000, 65536, 262144]))
def test_chunk_reassembly_cost_is_bounded_per_input(
    messages: list[tuple[int, int, int]], chunk_size: int, split: int
) -> None:
    if chunk_size < 128:
        # Two header-bearing chunks per few bytes: keep the traced run short.
        messages = [(c, t, n // 16) for c, t, n in messages]
    wire = b"".join(encode_message(c, t, 0, 1, bytes(n), chunk_size) for c, t, n in messages)
    pieces = [wire[i : i + split] for i in range(0, len(wire), split)]
    largest = max(n for _, _, n in messages)

    def run() -> None:
        r = ChunkReader(max_buffered=1 << 20)
        r.chunk_size = chunk_size
        for piece in pieces:
            r.feed(piece)

    cpu, peak = cost(run)
    # Per chunk a handful of operations; per byte no object: 2 payload copies at most
    # (partial + result) and the messages one read completes.
    assert cpu < 0.02 + 3e-6 * len(wire), f"{cpu * 1000:.1f} ms for {len(wire)} bytes at chunk {chunk_size}"
    assert peak < 2 * largest + 2 * min(split, len(wire)) + 64 * 1024, (
        f"{peak} bytes traced, largest {largest}"
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=65536), st.sampled_from([1, 128, 4096]), st.booleans())
def test_session_cost_on_garbage_is_bounded(garbage: bytes, chunk_size: int, connected: bool) -> None:
    prefix = encode_message(2, 1, 0, 0, chunk_size.to_bytes(4, "big"), 128)
    if connected:
        connect = amf0.encode("connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live"})
        prefix = encode_message(3, 20, 0, 0, connect, 128) + prefix

    def run() -> None:
        s = RtmpServerSession(connect_handler=lambda req: None)
        try:
            s.receive_data(b"\x03" + bytes(1536))
            s.receive_data(bytes(1536) + prefix + garbage)
        except RtmpError as exc:
            assert not exc.internal, exc.reason
        finally:
            s.close()

    cpu, peak = cost(run)
    assert cpu < 0.1, f"{cpu * 1000:.1f} ms for {len(garbage)} bytes"
    assert peak < 1 << 20, f"{peak} bytes traced for {len(garbage)} bytes"
