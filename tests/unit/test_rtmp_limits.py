"""Every RTMP/AMF0 bound at its exact edge: at the limit passes, one byte (or value) over fails.

Byte fixtures only; the limits are the defaults of RtmpLimits (what the node runs with)
except where a smaller figure keeps a test light (the logic is the same).
"""

from __future__ import annotations

import gc
import struct
import weakref
from collections.abc import Callable

import pytest

from liverelay.media import amf0
from liverelay.media.rtmp import (
    ChunkReader,
    ConnectRequest,
    MemoryBudget,
    PublishRequest,
    RtmpError,
    RtmpLimits,
    RtmpServerSession,
    StreamDeleted,
    encode_message,
)
from liverelay.media.rtmp import messages as m

DEFAULTS = RtmpLimits()
HANDSHAKE = b"\x03" + bytes(1536)
C2 = bytes(1536)
CHUNK = 4096


def header(csid: int, length: int, type_id: int, msid: int = 0) -> bytes:
    return bytes([csid]) + bytes(3) + length.to_bytes(3, "big") + bytes([type_id]) + struct.pack("<I", msid)


def message(csid: int, type_id: int, payload: bytes, msid: int = 0) -> bytes:
    return encode_message(csid, type_id, 0, msid, payload, CHUNK)


def set_chunk_size(size: int) -> bytes:
    return header(2, 4, 1) + size.to_bytes(4, "big")


def connect_payload(size: int | None = None, extra_values: int = 0) -> bytes:
    """A connect command body, padded to exactly `size` bytes when given."""
    params: dict[str, object] = {"app": "live", "tcUrl": "rtmp://h/live"}
    tail: list[object] = [[None] * extra_values] if extra_values else []
    payload = amf0.encode("connect", 1.0, params, *tail)
    if size is None:
        return payload
    params["pad"] = ""
    base = len(amf0.encode("connect", 1.0, params, *tail))
    params["pad"] = "x" * (size - base)
    payload = amf0.encode("connect", 1.0, params, *tail)
    assert len(payload) == size
    return payload


def new_session(limits: RtmpLimits = DEFAULTS, budget: MemoryBudget | None = None) -> RtmpServerSession:
    s = RtmpServerSession(limits=limits, budget=budget, connect_handler=lambda req: None)
    s.receive_data(HANDSHAKE)
    s.receive_data(C2 + set_chunk_size(CHUNK))
    s.data_to_send()
    return s


def connected(limits: RtmpLimits = DEFAULTS, budget: MemoryBudget | None = None) -> RtmpServerSession:
    s = new_session(limits, budget)
    payload = connect_payload()
    evs = s.receive_data(header(3, len(payload), 20) + payload)
    assert [type(e) for e in evs] == [ConnectRequest] and s.connected
    return s


def publishing(limits: RtmpLimits = DEFAULTS, budget: MemoryBudget | None = None) -> RtmpServerSession:
    s = connected(limits, budget)
    for cmd in (amf0.encode("createStream", 2.0, None), amf0.encode("publish", 3.0, None, "s", "live")):
        msid = 1 if cmd.startswith(amf0.encode("publish")) else 0
        evs = s.receive_data(header(3, len(cmd), 20, msid) + cmd)
    (req,) = [e for e in evs if isinstance(e, PublishRequest)]
    s.accept_publish(req)
    return s


STAGES: dict[str, Callable[..., RtmpServerSession]] = {
    "before-connect": new_session,
    "connected": connected,
    "publishing": publishing,
}


def limit_for(stage: str, type_id: int, limits: RtmpLimits = DEFAULTS) -> int:
    media, command, data, _ = limits.stage(
        connected=stage != "before-connect", publishing=stage == "publishing"
    )
    if type_id in (8, 9, 22):
        return media
    if type_id in (15, 18):
        return data
    return command


def test_stage_limits_are_the_documented_defaults() -> None:
    # The figures the table in docs/limits-media.md promises.
    assert limit_for("before-connect", 20) == 16 << 10
    assert limit_for("connected", 20) == limit_for("publishing", 20) == 64 << 10
    assert limit_for("before-connect", 9) == 32 << 10
    assert limit_for("connected", 9) == 256 << 10
    assert limit_for("publishing", 9) == 16 << 20
    assert limit_for("publishing", 18) == 256 << 10


# ------------------------------------------------------------ message length, on the header


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("type_id", [20, 17, 18, 9, 8, 22, 4, 19])
def test_message_length_cap_is_checked_on_the_header(stage: str, type_id: int) -> None:
    # The default media cap (16 MiB) is the 24-bit field's own limit: test one just below it.
    limits = RtmpLimits(message_bytes=0xFFFFFF - 1)
    limit = limit_for(stage, type_id, limits)
    msid = 1 if stage == "publishing" else 0
    ok = STAGES[stage](limits)
    assert ok.receive_data(header(4, limit, type_id, msid)) == []  # waits for the payload
    bad = STAGES[stage](limits)
    with pytest.raises(RtmpError, match="exceeds the limit"):
        # Only the 12 header bytes: refused before a single payload byte is buffered.
        bad.receive_data(header(4, limit + 1, type_id, msid))


def test_connect_of_exactly_the_pre_connect_cap_is_decoded() -> None:
    limit = DEFAULTS.command_bytes_before_connect
    s = new_session()
    evs = s.receive_data(message(3, 20, connect_payload(limit)))
    assert [type(e) for e in evs] == [ConnectRequest] and s.connected
    with pytest.raises(RtmpError, match="exceeds"):
        new_session().receive_data(message(3, 20, connect_payload(limit + 1)))


def test_command_of_exactly_the_connected_cap_is_decoded() -> None:
    limit = DEFAULTS.command_bytes
    name = amf0.encode("FCPublish", 2.0, None)
    pad = limit - len(name) - 5  # a long string: marker, u32 length, bytes
    cmd = name + b"\x0c" + pad.to_bytes(4, "big") + b"x" * pad
    assert len(cmd) == limit
    s = connected()
    s.receive_data(message(3, 20, cmd))
    assert s.data_to_send(), "FCPublish is answered"
    with pytest.raises(RtmpError, match="exceeds"):
        connected().receive_data(message(3, 20, cmd + b"\x05"))


def test_metadata_of_exactly_the_data_cap_is_passed_on() -> None:
    limit = DEFAULTS.data_bytes
    head = m.SET_DATA_FRAME + amf0.encode("onMetaData")
    body = head + b"\x0c" + (limit - len(head) - 5).to_bytes(4, "big") + bytes(limit - len(head) - 5)
    assert len(body) == limit
    s = publishing()
    evs = s.receive_data(message(5, 18, body, 1))
    assert len(evs) == 1 and len(evs[0].frame.payload) == limit - len(m.SET_DATA_FRAME)
    with pytest.raises(RtmpError, match="exceeds"):
        publishing().receive_data(header(5, limit + 1, 18, 1))


# ------------------------------------------------------------ AMF0 values and depth


def test_amf0_element_cap_per_command() -> None:
    # connect, 1.0, {app, tcUrl}, [k nulls]: 1 + 1 + 3 + 1 + k values.
    at_limit = connect_payload(extra_values=DEFAULTS.amf0_max_elements - 6)
    s = new_session()
    assert [type(e) for e in s.receive_data(header(3, len(at_limit), 20) + at_limit)] == [ConnectRequest]
    over = connect_payload(extra_values=DEFAULTS.amf0_max_elements - 5)
    with pytest.raises(RtmpError, match="too many AMF0 values"):
        new_session().receive_data(header(3, len(over), 20) + over)


def test_amf0_decode_element_and_depth_caps() -> None:
    data = amf0.encode([None] * 99)  # 100 values
    assert len(amf0.decode_all(data, max_elements=100)[0]) == 99
    with pytest.raises(amf0.AMF0Error, match="too many"):
        amf0.decode_all(data, max_elements=99)
    # Nested strict arrays, built by hand (the encoder refuses this depth itself).
    nested = b"\x0a\x00\x00\x00\x01" * 32 + b"\x05"  # the null sits at depth 32
    amf0.decode_all(nested, max_depth=32)
    with pytest.raises(amf0.AMF0Error, match="nested deeper than 31"):
        amf0.decode_all(nested, max_depth=31)
    with pytest.raises(amf0.AMF0Error, match="nested deeper"):
        amf0.decode_all(b"\x0a\x00\x00\x00\x01" * 33 + b"\x05")  # the default depth is 32


# ------------------------------------------------------------ bytes held per connection


def fill(total: int, msg_len: int, type_id: int, msid: int) -> bytes:
    """Bytes that leave exactly `total` bytes held at chunk size 4096: unfinished messages of
    `msg_len` on fresh chunk streams, then an incomplete first chunk (unparsed input)."""
    out = []
    left = total
    csid = 4
    while left - 12 > CHUNK - 2:
        k = min((msg_len - 1) // CHUNK, (left - 12 - 1) // CHUNK)
        out.append(header(csid, msg_len, type_id, msid) + bytes(CHUNK))
        out.extend(bytes([0xC0 | csid]) + bytes(CHUNK) for _ in range(k - 1))
        left -= k * CHUNK
        csid += 1
    out.append(header(csid, msg_len, type_id, msid) + bytes(left - 12))
    return b"".join(out)


@pytest.mark.parametrize("stage", list(STAGES))
def test_bytes_held_per_connection_at_the_edge(stage: str) -> None:
    limits = RtmpLimits(buffer_bytes=1 << 20)  # the publishing figure, scaled down
    cap = limits.stage(connected=stage != "before-connect", publishing=stage == "publishing")[3]
    type_id, msid = (9, 1) if stage == "publishing" else (20, 0)
    wire = fill(cap, limit_for(stage, type_id, limits), type_id, msid)
    ok = STAGES[stage](limits)
    ok.receive_data(wire)
    assert ok.reader.buffered == cap
    bad = STAGES[stage](limits)
    with pytest.raises(RtmpError, match="buffered exceed the limit"):
        bad.receive_data(wire + b"\x00")


def test_reader_counts_unparsed_input() -> None:
    r = ChunkReader(max_buffered=100)
    r.chunk_size = 4096
    r.feed(header(4, 1000, 9, 1) + bytes(88))  # 100 bytes, no chunk complete yet
    assert r.buffered == 100
    with pytest.raises(RtmpError, match="buffered"):
        r.feed(b"\x00")


def test_pipelined_publish_and_media_use_the_publishing_caps() -> None:
    # A client that sends publish and a large keyframe in one write: the reader pauses after
    # the command so the session raises the caps before the media header is checked.
    s = connected()
    create = amf0.encode("createStream", 2.0, None)
    s.receive_data(header(3, len(create), 20) + create)
    publish = amf0.encode("publish", 3.0, None, "s", "live")
    key = b"\x17\x01" + bytes(DEFAULTS.buffer_before_publish * 2)
    wire = header(3, len(publish), 20, 1) + publish + header(7, len(key), 9, 1) + key[:CHUNK]
    wire += b"".join(b"\xc7" + key[i : i + CHUNK] for i in range(CHUNK, len(key), CHUNK))
    evs = s.receive_data(wire)
    assert isinstance(evs[0], PublishRequest) and len(evs) == 2 and evs[1].frame.payload == key


def test_limits_fall_back_when_the_publish_ends() -> None:
    s = publishing()
    delete = amf0.encode("deleteStream", 4.0, None, 1.0)
    evs = s.receive_data(header(3, len(delete), 20) + delete)
    assert [type(e) for e in evs] == [StreamDeleted]
    with pytest.raises(RtmpError, match="exceeds"):
        s.receive_data(header(7, DEFAULTS.buffer_before_publish + 1, 9, 1))


# ------------------------------------------------------------ node-wide budget and close()


def test_budget_is_shared_exact_and_returned_on_close() -> None:
    budget = MemoryBudget(40_000)
    a = new_session(budget=budget)
    b = new_session(budget=budget)
    a.receive_data(fill(30_000, 16 << 10, 20, 0))
    assert budget.used == 30_000
    b.receive_data(fill(10_000, 16 << 10, 20, 0))
    assert budget.used == 40_000  # exactly the limit
    with pytest.raises(RtmpError, match="budget"):
        b.receive_data(b"\x00")
    assert budget.used == 40_000, "a refused reservation counts nothing"
    b.close()
    assert budget.used == 30_000
    a.close()
    a.close()  # idempotent
    assert budget.used == 0 and budget.peak == 40_000


def test_budget_follows_completed_messages_down() -> None:
    budget = MemoryBudget(1 << 20)
    s = new_session(budget=budget)
    payload = connect_payload(10_000)
    wire = message(3, 20, payload)
    s.receive_data(wire[:9_000])
    assert budget.used == 9_000 - 12 - 1  # all but the parsed headers (fmt 0, one fmt 3)
    s.receive_data(wire[9_000:])
    assert budget.used == 0 and s.connected


def test_close_frees_buffers_without_the_cyclic_gc() -> None:
    class Owner:
        """Holds its session, whose connect handler is the owner's method (as servers/rtmp.py)."""

        def __init__(self, budget: MemoryBudget) -> None:
            self.session = RtmpServerSession(budget=budget, connect_handler=self.on_connect)

        def on_connect(self, req: ConnectRequest) -> str | None:
            return None

    budget = MemoryBudget(1 << 20)
    gc.disable()
    try:
        owner = Owner(budget)
        owner.session.receive_data(HANDSHAKE)
        owner.session.receive_data(C2 + set_chunk_size(CHUNK) + message(3, 20, bytes(10_000))[:5_000])
        assert budget.used > 4_900
        session_ref = weakref.ref(owner.session)
        owner_ref = weakref.ref(owner)
        owner.session.close()
        assert budget.used == 0 and owner.session.reader.buffered == 0
        del owner
        assert owner_ref() is None and session_ref() is None, "no reference cycle keeps them alive"
    finally:
        gc.enable()
