"""RTMP handshake: simple and digest, both sides, and a real C1 captured from ffmpeg."""

from __future__ import annotations

from pathlib import Path

import pytest

from liverelay.media.rtmp import RtmpError
from liverelay.media.rtmp.handshake import (
    FMS_KEY,
    FMS_KEY_SHORT,
    FP_KEY,
    FP_KEY_SHORT,
    PACKET_SIZE,
    ClientHandshake,
    ServerHandshake,
    digest_offset,
    find_digest,
    make_signed_packet,
    verify_response,
)

CAPTURE = Path(__file__).resolve().parent.parent / "fixtures" / "rtmp" / "ffmpeg_publish_c2s.bin"


def test_keys_are_the_published_constants() -> None:
    assert len(FMS_KEY) == 68 and len(FP_KEY) == 62
    assert FMS_KEY_SHORT == b"Genuine Adobe Flash Media Server 001"
    assert FP_KEY_SHORT == b"Genuine Adobe Flash Player 001"


def test_digest_offsets() -> None:
    packet = bytearray(PACKET_SIZE)
    packet[8:12] = bytes((1, 2, 3, 4))
    assert digest_offset(bytes(packet), 0) == 10 + 12
    packet[772:776] = bytes((200, 200, 200, 200))
    assert digest_offset(bytes(packet), 1) == 800 % 728 + 776


def test_simple_handshake_both_sides() -> None:
    client = ClientHandshake(digest=False)
    server = ServerHandshake()
    c0c1 = client.start()
    assert len(c0c1) == 1 + PACKET_SIZE and c0c1[5:9] == b"\x00\x00\x00\x00"
    s012 = server.feed(c0c1)
    assert len(s012) == 1 + 2 * PACKET_SIZE
    assert not server.digest
    assert s012[1 + PACKET_SIZE :] == c0c1[1:]  # S2 echoes C1
    c2 = client.feed(s012)
    assert client.done and c2 == s012[1 : 1 + PACKET_SIZE]  # C2 echoes S1
    assert server.feed(c2 + b"after") == b""
    assert server.done and server.leftover == b"after"


@pytest.mark.parametrize("scheme", [0, 1])
def test_digest_handshake_both_sides(scheme: int) -> None:
    client = ClientHandshake(digest=True)
    c0c1 = client.start()
    if scheme == 1:
        # Re-sign C1 with scheme 1 to check the server finds either position.
        c1, digest = make_signed_packet(c0c1[5:9], FP_KEY_SHORT, 1, lambda n: b"\x07" * n)
        client._c1, client._c1_digest = c1, digest
        c0c1 = b"\x03" + c1
    assert find_digest(c0c1[1:], FP_KEY_SHORT) is not None
    server = ServerHandshake()
    s012 = server.feed(c0c1)
    assert server.digest
    s1 = s012[1 : 1 + PACKET_SIZE]
    found = find_digest(s1, FMS_KEY_SHORT)
    assert found is not None and found[0] == scheme
    c2 = client.feed(s012)
    assert client.server_verified, "S2 must be signed with the client's digest"
    # C2 is signed with the server's digest under the Flash Player key.
    assert verify_response(c2, found[1], FP_KEY)


def test_server_falls_back_to_simple_on_bad_digest() -> None:
    c1 = bytearray(b"\x00\x00\x00\x00\x09\x00\x7c\x02" + bytes(range(256)) * 6)[:PACKET_SIZE]
    server = ServerHandshake()
    s012 = server.feed(b"\x03" + bytes(c1))
    assert not server.digest
    assert s012[1 + PACKET_SIZE :] == bytes(c1)


def test_tampered_s2_is_not_verified() -> None:
    client = ClientHandshake()
    server = ServerHandshake()
    s012 = bytearray(server.feed(client.start()))
    s012[-1] ^= 0xFF
    client.feed(bytes(s012))
    assert client.done and not client.server_verified


def test_real_ffmpeg_c1_carries_a_valid_digest() -> None:
    data = CAPTURE.read_bytes()
    assert data[0] == 3
    c1 = data[1 : 1 + PACKET_SIZE]
    found = find_digest(c1, FP_KEY_SHORT)
    assert found is not None, "ffmpeg signs C1 with the Flash Player key"
    server = ServerHandshake()
    s012 = server.feed(data[: 1 + PACKET_SIZE])
    assert server.digest
    assert verify_response(s012[1 + PACKET_SIZE :], found[1], FMS_KEY)


def test_bad_version_byte_and_misuse() -> None:
    with pytest.raises(RtmpError, match="version"):
        ServerHandshake().feed(b"\x06" + b"\x00" * PACKET_SIZE)
    with pytest.raises(RtmpError):
        ClientHandshake().feed(b"\x03")
    client = ClientHandshake()
    client.start()
    with pytest.raises(RtmpError, match="version"):
        client.feed(b"\x08" + b"\x00" * (2 * PACKET_SIZE))


def test_byte_at_a_time() -> None:
    client = ClientHandshake()
    server = ServerHandshake()
    out = b""
    for b in client.start():
        out += server.feed(bytes([b]))
    assert len(out) == 1 + 2 * PACKET_SIZE
    c2 = b""
    for b in out:
        c2 += client.feed(bytes([b])) if not client.done else b""
    assert client.done and client.server_verified and len(c2) == PACKET_SIZE
