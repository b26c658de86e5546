"""The harness's viewer and API client, timed by the kernel's arrival stamps.

The harness shares two loaded cores (and, with the attack threads a test runs, one GIL)
with what it watches. A time read by the test after a read returns also counts how long
this process waited to run again: on a starved machine that alone can pass the 1 s API
bound or the 2 s video-gap bound while the node itself answered at once. So:

- each reader is a thread of its own, blocked in recv (never behind another task on an
  event loop, a TLS/signing step or a helper server);
- each recv carries the time the kernel received the newest segment among the bytes it
  returned (SO_TIMESTAMPNS), which is when the node's bytes had arrived, not when this
  process got round to them. When the reader is behind, loopback TCP merges the queued
  segments and the stamp is that of the newest: an upper bound for every byte in the
  read, so a stall of the node can look longer, never shorter.

An API call is timed from just before its connect() (a node that stops accepting shows)
to the stamp of the last byte of its answer. What the client does before (building and
signing the request) and after (waking up, parsing) is left out; one thread switch
between connect() and send() is still in.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass

from bench.httpwire import ChunkedDecoder, HttpWireError, ResponseHead, build_get

from liverelay.media.flv import FlvDecoder, FlvError
from liverelay.media.frame import Frame, FrameKind

# asm-generic (x86_64, aarch64): Python's socket module does not export it. The control
# message carries a struct timespec of CLOCK_REALTIME.
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)
RECV_BYTES = 64 * 1024


def _realtime_minus_monotonic() -> float:
    """CLOCK_REALTIME - CLOCK_MONOTONIC, from the tightest of three readings (a thread
    switch inside one reading would skew it)."""
    best: tuple[float, float] | None = None
    for _ in range(3):
        m0 = time.monotonic()
        real = time.time()
        m1 = time.monotonic()
        if best is None or m1 - m0 < best[0]:
            best = (m1 - m0, real - (m0 + m1) / 2)
    assert best is not None
    return best[1]


def stamping_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        pass  # no kernel stamps here: recv_stamped falls back to the process's own clock
    return sock


def recv_stamped(sock: socket.socket, size: int = RECV_BYTES) -> tuple[bytes, float, bool]:
    """(bytes, when they arrived on time.monotonic()'s scale, whether the kernel stamped them).
    b"" is the end of the stream."""
    data, ancdata, _flags, _addr = sock.recvmsg(size, _CMSG_SPACE)
    now = time.monotonic()
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(payload)
            return data, min(now, sec + nsec / 1e9 - _realtime_minus_monotonic()), True
    return data, now, False


# ---- one API call ------------------------------------------------------------------------


@dataclass
class Exchange:
    status: int
    body: bytes
    started: float  # time.monotonic() just before connect()
    answered: float  # arrival of the answer's last byte, on the same scale
    stamped: bool  # False: the kernel gave no stamp and `answered` is the process's own clock

    @property
    def latency(self) -> float:
        return max(0.0, self.answered - self.started)


def request_bytes(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode("latin-1") + body


def exchange(port: int, request: bytes, *, timeout: float) -> Exchange:
    """Send `request` on a fresh loopback connection and read the answer to its end.
    Raises OSError (TimeoutError included) or HttpWireError."""
    sock = stamping_socket()
    sock.settimeout(timeout)
    try:
        started = time.monotonic()
        deadline = started + timeout
        sock.connect(("127.0.0.1", port))
        sock.sendall(request)
        head = ResponseHead()
        body = bytearray()
        answered, stamped = started, True
        while time.monotonic() < deadline:
            data, at, kernel = recv_stamped(sock)
            if not data:
                break
            answered, stamped = at, stamped and kernel
            body += head.feed(data)
            length = head.headers.get("content-length")
            if head.done and length is not None and len(body) >= int(length):
                break
        else:
            raise TimeoutError(f"no complete answer within {timeout}s")
        if not head.done:
            raise HttpWireError("the connection closed before an answer")
        return Exchange(head.status, bytes(body), started, answered, stamped)
    finally:
        sock.close()


# ---- the watching viewer -----------------------------------------------------------------


class StampedFlvViewer:
    """One HTTP-FLV viewer on a thread of its own; each frame with the kernel's arrival
    stamp of the read that completed it. Until it gets video it retries (the publisher may
    not be up yet, bounded by `ready_s`); from then on it never reconnects, so a cut-off
    shows as `eof` with `status`/`error`."""

    NO_VIDEO_RETRY_S = 3.0
    RETRY_PAUSE_S = 0.3

    def __init__(self, port: int, path: str, *, ready_s: float) -> None:
        self.port = port
        self.path = path
        self.ready_s = ready_s
        self.status: int | None = None
        self.error: str | None = None
        self.frames: list[tuple[float, Frame]] = []
        self.eof = threading.Event()  # the playing connection ended (or never started)
        self.unstamped_reads = 0  # reads the kernel gave no stamp for (shown in reports)
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name="adv-viewer", daemon=True)

    def start(self) -> StampedFlvViewer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked recv
            except OSError:
                pass  # already closed by the node
        self._thread.join(timeout=10)

    def video_times(self) -> list[float]:
        return [t for t, f in list(self.frames) if f.kind == FrameKind.VIDEO and not f.config]

    def _run(self) -> None:
        deadline = time.monotonic() + self.ready_s
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                if self._play_once():
                    return
                self._stop.wait(self.RETRY_PAUSE_S)
            if self.error is None:
                self.error = f"no video within {self.ready_s}s"
        finally:
            self.eof.set()

    def _play_once(self) -> bool:
        """One connection. False: no video came within NO_VIDEO_RETRY_S (try again);
        True: it had video and played until the node, an error or close() ended it."""
        sock = stamping_socket()
        self._sock = sock
        had_video = False
        try:
            sock.settimeout(0.5)  # to notice close(); a quiet stream is judged by its gaps
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(build_get(f"127.0.0.1:{self.port}", self.path))
            head, chunks, flv = ResponseHead(), ChunkedDecoder(), FlvDecoder()
            give_up = time.monotonic() + self.NO_VIDEO_RETRY_S
            while not self._stop.is_set():
                if not had_video and time.monotonic() > give_up:
                    return False
                try:
                    data, at, kernel = recv_stamped(sock)
                except TimeoutError:
                    continue
                if not data:
                    self.error = self.error or "the node closed the connection"
                    return had_video
                self.unstamped_reads += not kernel
                body = head.feed(data)
                if not head.done:
                    continue
                self.status = head.status
                if head.status != 200:
                    self.error = f"HTTP {head.status}"
                    return False
                if head.chunked:
                    body = chunks.feed(body)
                for item in flv.feed(body):
                    if isinstance(item, Frame):
                        self.frames.append((at, item))
                        had_video = had_video or (item.kind == FrameKind.VIDEO and not item.config)
            return had_video
        except (OSError, HttpWireError, FlvError) as exc:
            if not self._stop.is_set():
                self.error = f"{type(exc).__name__}: {exc}"
            return had_video
        finally:
            self._sock = None
            sock.close()
