"""RTMP handshake, server and client side: simple (echo) and digest ("complex", Flash 9+).

Digest handshake: a 32-byte HMAC-SHA256 digest hides in the 1536-byte C1/S1 at an
offset derived from four bytes of the packet (scheme 0: bytes 8..11, scheme 1: bytes
772..775). The client signs C1 with the Flash Player key, the server signs S1 with the
Flash Media Server key, and S2/C2 end with an HMAC keyed by the peer's digest. Clients
such as ffmpeg (when playing) verify S2, so a server must answer a digest C1 in kind.
A C1 with a zero version field or no valid digest gets the simple handshake.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable

from .errors import RtmpError

RTMP_VERSION = 3
PACKET_SIZE = 1536
DIGEST_SIZE = 32

_KEY_TAIL = bytes.fromhex("f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")
FMS_KEY = b"Genuine Adobe Flash Media Server 001" + _KEY_TAIL  # 68 bytes; first 36 sign S1
FP_KEY = b"Genuine Adobe Flash Player 001" + _KEY_TAIL  # 62 bytes; first 30 sign C1
FMS_KEY_SHORT = FMS_KEY[:36]
FP_KEY_SHORT = FP_KEY[:30]

# Version fields: what we claim in S1/C1 when doing the digest handshake.
SERVER_VERSION = bytes((0x04, 0x05, 0x00, 0x01))
CLIENT_VERSION = bytes((0x09, 0x00, 0x7C, 0x02))

RandomSource = Callable[[int], bytes]


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def digest_offset(packet: bytes | bytearray, scheme: int) -> int:
    """Where the digest sits in a C1/S1 for scheme 0 or 1."""
    base = 8 if scheme == 0 else 772
    return sum(packet[base : base + 4]) % 728 + base + 4


def _digest_at(packet: bytes, offset: int, key: bytes) -> bytes:
    return _hmac(key, packet[:offset] + packet[offset + DIGEST_SIZE :])


def find_digest(packet: bytes, key: bytes) -> tuple[int, bytes] | None:
    """Return (scheme, digest) if `packet` carries a valid digest under `key`."""
    for scheme in (0, 1):
        off = digest_offset(packet, scheme)
        found = packet[off : off + DIGEST_SIZE]
        if hmac.compare_digest(_digest_at(packet, off, key), found):
            return scheme, found
    return None


def make_signed_packet(version: bytes, key: bytes, scheme: int, rand: RandomSource) -> tuple[bytes, bytes]:
    """A C1/S1 with time 0, `version` and a digest under `key`; returns (packet, digest)."""
    body = bytearray(b"\x00\x00\x00\x00" + version + rand(PACKET_SIZE - 8))
    off = digest_offset(body, scheme)
    digest = _digest_at(bytes(body), off, key)
    body[off : off + DIGEST_SIZE] = digest
    return bytes(body), digest


def make_response(peer_digest: bytes, key: bytes, rand: RandomSource) -> bytes:
    """S2/C2 for the digest handshake: random bytes ending in HMAC(HMAC(key, peer_digest), rest)."""
    body = rand(PACKET_SIZE - DIGEST_SIZE)
    return body + _hmac(_hmac(key, peer_digest), body)


def verify_response(packet: bytes, own_digest: bytes, key: bytes) -> bool:
    signature = _hmac(_hmac(key, own_digest), packet[: PACKET_SIZE - DIGEST_SIZE])
    return hmac.compare_digest(signature, packet[PACKET_SIZE - DIGEST_SIZE :])


class ServerHandshake:
    """Feed bytes until `done`; `feed` returns bytes to send, `leftover` holds what follows C2."""

    def __init__(self, rand: RandomSource = os.urandom) -> None:
        self._buf = bytearray()
        self._rand = rand
        self.state = "c0c1"
        self.done = False
        self.digest = False  # True when the client did the digest handshake
        self.leftover = b""

    def feed(self, data: bytes) -> bytes:
        if self.done:
            raise RtmpError("handshake already finished")
        self._buf += data
        out = b""
        if self.state == "c0c1" and len(self._buf) >= 1 + PACKET_SIZE:
            if self._buf[0] != RTMP_VERSION:
                # 6 = RTMPE (encrypted); anything else is not RTMP at all.
                raise RtmpError(f"unsupported RTMP version byte {self._buf[0]}")
            c1 = bytes(self._buf[1 : 1 + PACKET_SIZE])
            del self._buf[: 1 + PACKET_SIZE]
            out = b"\x03" + self._answer(c1)
            self.state = "c2"
        if self.state == "c2" and len(self._buf) >= PACKET_SIZE:
            # C2 is not checked: real clients disagree on it and it proves nothing here.
            self.leftover = bytes(self._buf[PACKET_SIZE:])
            self._buf.clear()
            self.state = "done"
            self.done = True
        return out

    def _answer(self, c1: bytes) -> bytes:
        found = find_digest(c1, FP_KEY_SHORT) if c1[4:8] != b"\x00\x00\x00\x00" else None
        if found is None:
            s1 = b"\x00" * 8 + self._rand(PACKET_SIZE - 8)
            return s1 + c1
        scheme, client_digest = found
        self.digest = True
        s1, _ = make_signed_packet(SERVER_VERSION, FMS_KEY_SHORT, scheme, self._rand)
        return s1 + make_response(client_digest, FMS_KEY, self._rand)


class ClientHandshake:
    """`start()` gives C0+C1; feed S0+S1+S2 until `done`; `feed` returns C2."""

    def __init__(self, *, digest: bool = True, rand: RandomSource = os.urandom) -> None:
        self._buf = bytearray()
        self._rand = rand
        self.use_digest = digest
        self._c1 = b""
        self._c1_digest = b""
        self.done = False
        self.server_verified = False  # S2 carried a valid signature over our digest
        self.leftover = b""

    def start(self) -> bytes:
        if self.use_digest:
            self._c1, self._c1_digest = make_signed_packet(CLIENT_VERSION, FP_KEY_SHORT, 0, self._rand)
        else:
            self._c1 = b"\x00" * 8 + self._rand(PACKET_SIZE - 8)
        return b"\x03" + self._c1

    def feed(self, data: bytes) -> bytes:
        if self.done:
            raise RtmpError("handshake already finished")
        if not self._c1:
            raise RtmpError("handshake not started")
        self._buf += data
        if len(self._buf) < 1 + 2 * PACKET_SIZE:
            return b""
        if self._buf[0] != RTMP_VERSION:
            raise RtmpError(f"server answered RTMP version {self._buf[0]}")
        s1 = bytes(self._buf[1 : 1 + PACKET_SIZE])
        s2 = bytes(self._buf[1 + PACKET_SIZE : 1 + 2 * PACKET_SIZE])
        self.leftover = bytes(self._buf[1 + 2 * PACKET_SIZE :])
        self._buf.clear()
        self.done = True
        if self.use_digest and s1[4:8] != b"\x00\x00\x00\x00":
            found = find_digest(s1, FMS_KEY_SHORT)
            if found is not None:
                self.server_verified = verify_response(s2, self._c1_digest, FMS_KEY)
                return make_response(found[1], FP_KEY, self._rand)
        # Simple handshake (or a server that signs nothing): C2 echoes S1.
        return s1
