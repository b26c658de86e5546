"""A misbehaving RTMP origin on a real socket, for the origin-fault tests (ISSUE-13).

`FakeOrigin(mode, frames)` listens on 127.0.0.1 in its own thread and event loop. It
speaks RTMP through the project's sans-IO server session (handshake, connect, play) and
sends media from `frames` (the decoded test sample, looped, timestamps running on), then
misbehaves as `mode` says:

  silent     accepts TCP, reads and never answers (not even the handshake)
  handshake  answers the handshake, then never answers anything (connect hangs)
  garbage    plays for MEDIA_BEFORE_FAULT_S, then sends random bytes and keeps the socket
  oversize   plays for MEDIA_BEFORE_FAULT_S, then announces a 1 MiB data message (the
             client's cap for data messages is 256 KiB) and keeps the socket
  slow       plays at half real time, forever
  flap       plays in real time and closes each connection FLAP_S after it began
  republish  plays for MEDIA_BEFORE_FAULT_S, then its "publisher leaves": StreamEOF +
             UnpublishNotify; REPUBLISH_AFTER_S later StreamBegin + PublishNotify and the
             media again from timestamp 0 (what nginx-rtmp / SRS do), on the same socket
  good       plays in real time, forever

It counts connections and how each ended (`closed_by_peer` = the edge hung up).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from dataclasses import dataclass, field

from tests.adversarial.wire import rtmp_message

from liverelay.media.codecs import make_frame
from liverelay.media.flv import FlvDecoder
from liverelay.media.frame import Frame, FrameKind
from liverelay.media.rtmp import RtmpServerSession
from liverelay.media.rtmp import messages as m
from liverelay.media.rtmp.chunk import frame_chunks
from liverelay.media.rtmp.events import ConnectRequest, PlayRequest

MEDIA_BEFORE_FAULT_S = 1.5
FLAP_S = 3.0
REPUBLISH_AFTER_S = 0.5
MODES = ("silent", "handshake", "garbage", "oversize", "slow", "flap", "republish", "good")
MSG_DATA_AMF0 = 18
CSID_DATA = 5


def sample_frames(path: str) -> list[Frame]:
    """The sample's media frames (sequence headers first, as in the file)."""
    decoder = FlvDecoder()
    with open(path, "rb") as f:
        items = decoder.feed(f.read())
    return [i for i in items if isinstance(i, Frame) and i.kind in (FrameKind.AUDIO, FrameKind.VIDEO)]


@dataclass
class Connection:
    opened: float
    closed: float | None = None
    closed_by_peer: bool = False
    bytes_in: int = 0


@dataclass
class FakeOrigin:
    mode: str
    frames: list[Frame]
    port: int = 0
    connections: list[Connection] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _serving: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(self.mode)

    # ---- life -----------------------------------------------------------------------

    def start(self) -> FakeOrigin:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"fake-origin-{self.mode}", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), loop).result(10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        self._loop = None

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            # Abort the sockets (their handlers then end on their own; cancelling the
            # handler tasks of asyncio.start_server makes asyncio log an error).
            for writer in list(self._writers):
                writer.transport.abort()
            if self._serving:
                await asyncio.wait(self._serving, timeout=5)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()

    def __enter__(self) -> FakeOrigin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def open_connections(self) -> int:
        return sum(1 for c in self.connections if c.closed is None)

    # ---- one connection ---------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(time.monotonic())
        self.connections.append(conn)
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._serving.add(task)
        session = RtmpServerSession()
        media: asyncio.Task[None] | None = None
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    conn.closed_by_peer = True
                    return
                conn.bytes_in += len(data)
                if self.mode == "silent":
                    continue
                if self.mode == "handshake" and session.handshake_done:
                    continue  # everything after the handshake goes unanswered
                events = session.receive_data(data)
                for event in events:
                    if isinstance(event, ConnectRequest) and self.mode != "handshake":
                        session.accept_connect(event)
                    elif isinstance(event, PlayRequest) and media is None:
                        session.start_play(event)
                        writer.write(session.data_to_send())
                        media = asyncio.get_running_loop().create_task(
                            self._media(writer, session.chunk_size, event.stream_id)
                        )
                out = session.data_to_send()
                if out:
                    writer.write(out)
        except (ConnectionError, OSError):
            conn.closed_by_peer = True
        finally:
            conn.closed = time.monotonic()
            if media is not None:
                media.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await media
            session.close()
            writer.transport.abort()
            self._writers.discard(writer)
            self._serving.discard(task)

    async def _media(self, writer: asyncio.StreamWriter, chunk_size: int, stream_id: int) -> None:
        speed = 0.5 if self.mode == "slow" else 1.0
        before_fault = MEDIA_BEFORE_FAULT_S
        fault_at = {
            "garbage": before_fault,
            "oversize": before_fault,
            "flap": FLAP_S,
            "republish": before_fault,
        }
        await self._play(writer, chunk_size, stream_id, speed, fault_at.get(self.mode))
        if self.mode == "republish":
            writer.write(m.user_control(m.UC_STREAM_EOF, stream_id, chunk_size))
            writer.write(m.on_status(stream_id, chunk_size, m.PLAY_UNPUBLISH_NOTIFY, "Stop publishing"))
            await writer.drain()
            await asyncio.sleep(REPUBLISH_AFTER_S)
            writer.write(m.user_control(m.UC_STREAM_BEGIN, stream_id, chunk_size))
            writer.write(m.on_status(stream_id, chunk_size, m.PLAY_PUBLISH_NOTIFY, "Start publishing"))
            await self._play(writer, chunk_size, stream_id, speed, None)

    async def _play(
        self,
        writer: asyncio.StreamWriter,
        chunk_size: int,
        stream_id: int,
        speed: float,
        fault_at: float | None,
    ) -> None:
        """Frames in (scaled) real time from timestamp 0; the fault (if any) at `fault_at`."""
        started = time.monotonic()
        span = (self.frames[-1].timestamp - self.frames[0].timestamp) + 40
        # Bounded: a test lasts well under this many loops of the sample.
        for loop_index in range(1000):
            offset = loop_index * span
            for frame in self.frames:
                if loop_index and frame.config:
                    continue  # sequence headers once, at the start
                ts = frame.timestamp + offset
                due = started + ts / 1000.0 / speed
                if fault_at is not None and due - started >= fault_at:
                    if self.mode != "republish":
                        await self._fault(writer, chunk_size, stream_id, ts)
                    return
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                out = make_frame(frame.kind, ts, frame.payload)
                writer.write(frame_chunks(out, chunk_size, stream_id))
                await writer.drain()

    async def _fault(self, writer: asyncio.StreamWriter, chunk_size: int, stream_id: int, ts: int) -> None:
        if self.mode == "flap":
            writer.transport.abort()
            return
        if self.mode == "garbage":
            writer.write(random.Random(13).randbytes(64 * 1024))
        elif self.mode == "oversize":
            # Only the header and a little of the payload: the client must refuse on the header.
            header = rtmp_message(CSID_DATA, MSG_DATA_AMF0, stream_id, b"\x02", chunk_size, timestamp=ts)
            declared = (1 << 20).to_bytes(3, "big")
            writer.write(header[:4] + declared + header[7:] + b"\x00" * 1000)
        await writer.drain()
        # Keep the socket open: the edge has to decide to drop it.
        await asyncio.sleep(3600)
