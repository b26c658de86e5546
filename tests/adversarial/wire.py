"""Attack primitives on raw sockets: what a hostile peer sends, byte for byte.

Written from the protocols (RTMP chunk stream and handshake, HTTP/1.1), not from the
node's code, so the tests hold whatever the fixes look like. Every socket comes from
`AttackSockets`, which binds it to an attacker loopback address (127.0.0.2 and up: the
viewer and the API client stay on 127.0.0.1, so a per-address cap must not hit them),
bounds every wait, and closes everything on exit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from liverelay.media import amf0

NODE_HOST = "127.0.0.1"
HANDSHAKE_SIZE = 1536
# RTMP message types and chunk stream ids used here (RTMP spec 5.4 and 7.1).
MSG_SET_CHUNK_SIZE = 1
MSG_VIDEO = 9
MSG_AMF0_COMMAND = 20
CSID_CONTROL = 2
CSID_COMMAND = 3
CSID_MEDIA = 4
# The largest message length the 24-bit length field can carry.
MAX_MESSAGE_FIELD = 0xFFFFFF


def attacker_address(index: int) -> str:
    """A loopback source address other than 127.0.0.1: 127.0.0.2 .. 127.0.0.251."""
    return f"127.0.0.{2 + index % 250}"


@dataclass
class AttackConn:
    """One attack connection and what the node did to it."""

    sock: socket.socket
    label: str
    opened_at: float = field(default_factory=time.monotonic)
    closed_by_node_at: float | None = None  # EOF or reset seen from the node
    received: int = 0  # bytes the node sent after the test's own handshake reads

    @property
    def open(self) -> bool:
        return self.closed_by_node_at is None


class AttackSockets:
    """Every attack connection of a test; `close()` ends them all (use as a context manager)."""

    def __init__(self) -> None:
        self.conns: list[AttackConn] = []

    def __enter__(self) -> AttackSockets:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, port: int, label: str, *, source: str, timeout: float = 5.0) -> AttackConn:
        sock = socket.create_connection((NODE_HOST, port), timeout=timeout, source_address=(source, 0))
        conn = AttackConn(sock, label)
        self.conns.append(conn)
        return conn

    def open_many(self, port: int, label: str, count: int, *, first_source: int = 0) -> list[AttackConn]:
        """`count` connections spread over attacker addresses (`first_source` picks the first)."""
        return [self.open(port, label, source=attacker_address(first_source + i)) for i in range(count)]

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.sock.close()

    def still_open(self, label: str | None = None) -> list[AttackConn]:
        return [c for c in self.conns if c.open and (label is None or c.label == label)]

    def poll(self, timeout: float) -> None:
        """Read whatever the node sent (discarded, counted) and note connections it closed."""
        live = [c for c in self.conns if c.open and c.sock.fileno() >= 0]
        if not live:
            return
        readable, _, _ = select.select([c.sock for c in live], [], [], timeout)
        now = time.monotonic()
        ready = set(readable)
        for conn in live:
            if conn.sock not in ready:
                continue
            try:
                data = conn.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except OSError:
                conn.closed_by_node_at = now
                continue
            if data:
                conn.received += len(data)
            else:
                conn.closed_by_node_at = now

    def wait_closed_by_node(
        self,
        deadline_s: float,
        *,
        label: str | None = None,
        tick: Callable[[], None] | None = None,
        tick_every_s: float = 1.0,
    ) -> None:
        """Until the node has closed every connection (of `label`) or `deadline_s` passed.
        `tick` runs about every `tick_every_s` meanwhile (e.g. to trickle bytes)."""
        end = time.monotonic() + deadline_s
        next_tick = time.monotonic() + tick_every_s
        while self.still_open(label) and time.monotonic() < end:
            self.poll(0.1)
            if tick is not None and time.monotonic() >= next_tick:
                tick()
                next_tick = time.monotonic() + tick_every_s

    def summary(self) -> str:
        """Per label: how many the node closed, and how fast."""
        lines = []
        for label in dict.fromkeys(c.label for c in self.conns):
            group = [c for c in self.conns if c.label == label]
            closed = [c.closed_by_node_at - c.opened_at for c in group if c.closed_by_node_at is not None]
            slowest = f", slowest after {max(closed):.1f}s" if closed else ""
            lines.append(f"{label}: {len(closed)}/{len(group)} closed by the node{slowest}")
        return "\n".join(lines)


def send_quietly(conn: AttackConn, data: bytes) -> bool:
    """Send `data`; False (and the connection noted as closed) when the node closed it."""
    try:
        conn.sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        conn.closed_by_node_at = conn.closed_by_node_at or time.monotonic()
        return False
    except OSError as exc:
        if exc.errno in (errno.EPIPE, errno.ECONNRESET):
            conn.closed_by_node_at = conn.closed_by_node_at or time.monotonic()
            return False
        raise
    return True


def send_in_blocks(conn: AttackConn, data: bytes | memoryview, block: int = 64 * 1024) -> int:
    """Send `data` block by block until the node closes; returns the bytes sent."""
    view = memoryview(data)
    sent = 0
    while sent < len(view):
        if not send_quietly(conn, bytes(view[sent : sent + block])):
            break
        sent += min(block, len(view) - sent)
    return sent


# ---- RTMP --------------------------------------------------------------------------------


def rtmp_handshake(conn: AttackConn, timeout: float = 5.0) -> None:
    """The plain (version 3, zero-version C1) handshake: C0+C1, read S0+S1+S2, send C2."""
    c1 = struct.pack(">II", 0, 0) + os.urandom(HANDSHAKE_SIZE - 8)
    conn.sock.sendall(b"\x03" + c1)
    want = 1 + 2 * HANDSHAKE_SIZE
    got = bytearray()
    conn.sock.settimeout(timeout)
    while len(got) < want:
        data = conn.sock.recv(want - len(got))
        if not data:
            raise AssertionError(f"{conn.label}: the node closed during the handshake")
        got += data
    s1 = bytes(got[1 : 1 + HANDSHAKE_SIZE])
    conn.sock.sendall(s1)  # C2 echoes S1


def rtmp_message(
    csid: int, type_id: int, stream_id: int, payload: bytes, chunk_size: int, timestamp: int = 0
) -> bytes:
    """One message as chunks: a type 0 header, then type 3 continuation headers."""
    if len(payload) > MAX_MESSAGE_FIELD:
        raise ValueError("an RTMP message carries at most 16 MiB - 1")
    header = bytes((csid,)) + timestamp.to_bytes(3, "big") + len(payload).to_bytes(3, "big")
    header += bytes((type_id,)) + struct.pack("<I", stream_id)
    continuation = bytes((0xC0 | csid,))
    parts = [header, payload[:chunk_size]]
    for offset in range(chunk_size, len(payload), chunk_size):
        parts += [continuation, payload[offset : offset + chunk_size]]
    return b"".join(parts)


def set_chunk_size(size: int, current: int = 128) -> bytes:
    return rtmp_message(CSID_CONTROL, MSG_SET_CHUNK_SIZE, 0, struct.pack(">I", size), current)


def command(name: str, txn: float, *args: object, stream_id: int = 0, chunk_size: int = 128) -> bytes:
    payload = amf0.encode(name, txn, *args)
    return rtmp_message(CSID_COMMAND, MSG_AMF0_COMMAND, stream_id, payload, chunk_size)


def connect_command(
    port: int, *, app: str = "live", tc_url: str | None = None, chunk_size: int = 128
) -> bytes:
    tc = tc_url if tc_url is not None else f"rtmp://{NODE_HOST}:{port}/{app}"
    params = {"app": app, "tcUrl": tc, "flashVer": "FMLE/3.0 (compatible; adv)", "type": "nonprivate"}
    return command("connect", 1.0, params, chunk_size=chunk_size)


def amf0_bomb(total_bytes: int, name: str = "connect") -> bytes:
    """A command `name` of about `total_bytes` made of tiny nested values: a strict array of
    65,536 strict arrays of nulls (each value one byte on the wire, an object in memory)."""
    outer = 65_536
    inner_len = max(1, total_bytes // outer - 5)
    inner = b"\x0a" + struct.pack(">I", inner_len) + b"\x05" * inner_len
    return amf0.encode(name, 1.0) + b"\x0a" + struct.pack(">I", outer) + inner * outer


def partial_message_in_one_byte_chunks(declared: int, payload_bytes: int, *, stream_id: int) -> bytes:
    """Set Chunk Size 1, then a video message that declares `declared` bytes and carries only
    `payload_bytes` of them, one byte per chunk (two bytes on the wire per payload byte)."""
    head = bytes((CSID_MEDIA,)) + b"\x00\x00\x00" + declared.to_bytes(3, "big")
    head += bytes((MSG_VIDEO,)) + struct.pack("<I", stream_id) + b"\x17"
    return set_chunk_size(1) + head + bytes((0xC0 | CSID_MEDIA, 0x00)) * (payload_bytes - 1)


@contextlib.contextmanager
def raw_http(port: int, *, source: str = NODE_HOST, timeout: float = 5.0) -> Iterator[socket.socket]:
    """A plain TCP connection for hand-written HTTP requests (closed on exit)."""
    sock = socket.create_connection((NODE_HOST, port), timeout=timeout, source_address=(source, 0))
    try:
        yield sock
    finally:
        sock.close()


def http_status(sock: socket.socket, request: bytes, *, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send a hand-written request; the status code and everything read until EOF or the
    end of the headers plus a short body (bounded by `timeout` and 64 KiB)."""
    sock.settimeout(timeout)
    sock.sendall(request)
    data = bytearray()
    end = time.monotonic() + timeout
    while len(data) < 65536 and time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data:
            head, _, body = bytes(data).partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                None,
            )
            if length is not None and len(body) >= length:
                break
    status_line = bytes(data).split(b"\r\n", 1)[0]
    parts = status_line.split()
    status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
    return status, bytes(data)
