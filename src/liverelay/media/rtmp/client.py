"""The client side of an RTMP connection (sans-IO): our puller or a test publisher.

Every byte to send, from C0+C1 on, is queued and leaves through `data_to_send()`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..frame import Frame, FrameKind
from . import messages as m
from .base import SessionBase, stream_id_of
from .chunk import CSID_DATA, MSG_AMF0_DATA, encode_message, frame_chunks
from .errors import RtmpError
from .events import (
    CommandFailed,
    Connected,
    ConnectFailed,
    Event,
    MediaReceived,
    StatusEvent,
    StreamBegin,
    StreamCreated,
    StreamEof,
)
from .handshake import ClientHandshake
from .limits import MemoryBudget, RtmpLimits


class RtmpClientSession(SessionBase):
    """Our side of a connection to an origin: connect, createStream, then play or publish.

    With `play=` or `publish=` set, the session drives itself: after the handshake it
    queues C2 and connect together, createStream right after connect's _result and
    play/publish right after createStream's _result (as few round trips as possible).
    The origin is a media source: its messages are bounded as a publisher's are.
    """

    def __init__(
        self,
        *,
        app: str,
        tc_url: str,
        play: str | None = None,
        publish: str | None = None,
        chunk_size: int = 4096,
        limits: RtmpLimits | None = None,
        budget: MemoryBudget | None = None,
        digest: bool = True,
        flash_ver: str = "LNX 9,0,124,2",
        buffer_ms: int = 1000,
        rand: Callable[[int], bytes] = os.urandom,
    ) -> None:
        super().__init__(chunk_size=chunk_size, limits=limits, budget=budget)
        self._set_stage(connected=True, publishing=True)
        self.handshake = ClientHandshake(digest=digest, rand=rand)
        self.app = app
        self.tc_url = tc_url
        self.play_name = play
        self.publish_name = publish
        self.flash_ver = flash_ver
        self.buffer_ms = buffer_ms
        self._txn = 1.0
        self._pending: dict[float, str] = {}
        self.connected = False
        self.stream_id = 0
        self.state = "handshake"  # handshake, connecting, creating, starting, playing/publishing, ended

    def initiate(self) -> None:
        """Queue C0 + C1: the first bytes on the wire."""
        self._out.append(self.handshake.start())

    def receive_data(self, data: bytes) -> list[Event]:
        if self.closed:
            raise RtmpError("session closed")
        events: list[Event] = []
        if not self.handshake.done:
            c2 = self.handshake.feed(data)
            if not self.handshake.done:
                return events
            self._out.append(c2)
            self._announce_chunk_size()
            self.connect()
            self.state = "connecting"
            data = self.handshake.leftover
            if not data:
                return events
        self._feed_chunks(data, events)
        return events

    # ------------------------------------------------------------ commands out (queued)

    def _call(self, name: str, *args: Any, stream_id: int = 0) -> None:
        self._txn += 1
        self._pending[self._txn] = name
        self._out.append(m.command(name, self._txn, *args, stream_id=stream_id, chunk_size=self.chunk_size))

    def connect(self) -> None:
        self._pending[1.0] = "connect"
        params = {
            "app": self.app,
            "type": "nonprivate",
            "flashVer": self.flash_ver,
            "tcUrl": self.tc_url,
            "fpad": False,
            "capabilities": 15.0,
            "audioCodecs": 4071.0,
            "videoCodecs": 252.0,
            "videoFunction": 1.0,
        }
        self._out.append(m.command("connect", 1.0, params, chunk_size=self.chunk_size))

    def create_stream(self) -> None:
        self.state = "creating"
        self._call("createStream", None)

    def play(self, stream_id: int, name: str, start: float = -2.0) -> None:
        self.state = "starting"
        self.stream_id = stream_id
        self._txn += 1
        # play has no _result: its answer is onStatus on the stream.
        cs = self.chunk_size
        self._out.append(m.command("play", self._txn, None, name, start, stream_id=stream_id, chunk_size=cs))
        self._out.append(m.user_control(m.UC_SET_BUFFER_LENGTH, stream_id, cs, extra=self.buffer_ms))

    def publish(self, stream_id: int, name: str, publish_type: str = "live") -> None:
        self.state = "starting"
        self.stream_id = stream_id
        self._txn += 1
        self._out.append(
            m.command(
                "publish",
                self._txn,
                None,
                name,
                publish_type,
                stream_id=stream_id,
                chunk_size=self.chunk_size,
            )
        )

    def delete_stream(self, stream_id: int) -> None:
        self._txn += 1
        self._out.append(
            m.command("deleteStream", self._txn, None, float(stream_id), chunk_size=self.chunk_size)
        )

    def send_frame(self, frame: Frame) -> None:
        """Queue a frame to publish; metadata goes out as @setDataFrame onMetaData."""
        if frame.kind == FrameKind.DATA:
            payload = m.SET_DATA_FRAME + frame.payload
            data = encode_message(
                CSID_DATA, MSG_AMF0_DATA, frame.timestamp, self.stream_id, payload, self.chunk_size
            )
        else:
            data = frame_chunks(frame, self.chunk_size, self.stream_id)
        self._out.append(data)

    # ------------------------------------------------------------ input

    def _on_peer_bandwidth(self, size: int) -> None:
        # Answer with our window so the peer knows when to expect acknowledgements.
        self._out.append(m.window_ack_size(size, self.chunk_size))

    def _on_user_control(self, event: int, value: int, events: list[Event]) -> None:
        if event == m.UC_STREAM_BEGIN:
            events.append(StreamBegin(value))
        elif event == m.UC_STREAM_EOF:
            events.append(StreamEof(value))

    def _on_media(self, stream_id: int, frame: Frame, events: list[Event]) -> None:
        events.append(MediaReceived(stream_id, frame))

    def _on_command(
        self, stream_id: int, name: str, txn: float, args: list[Any], events: list[Event]
    ) -> None:
        if name in ("_result", "_error"):
            purpose = self._pending.pop(txn, "")
            info = args[1] if len(args) > 1 else None
            if purpose == "connect":
                info_dict = info if isinstance(info, dict) else {}
                if name == "_result":
                    self.connected = True
                    events.append(Connected(info_dict))
                    if self.play_name is not None or self.publish_name is not None:
                        self.create_stream()
                else:
                    self.state = "ended"
                    events.append(ConnectFailed(info_dict))
            elif purpose == "createStream":
                sid = stream_id_of(info)
                if name == "_result" and sid is not None:
                    events.append(StreamCreated(sid))
                    if self.play_name is not None:
                        self.play(sid, self.play_name)
                    elif self.publish_name is not None:
                        self.publish(sid, self.publish_name)
                else:
                    events.append(CommandFailed("createStream", info))
            elif name == "_error":
                events.append(CommandFailed(purpose or "unknown", info))
        elif name == "onStatus":
            info = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
            code = str(info.get("code", ""))
            level = str(info.get("level", ""))
            if code in (m.PLAY_START, m.PUBLISH_START):
                self.state = "playing" if code == m.PLAY_START else "publishing"
            events.append(StatusEvent(stream_id, level, code, str(info.get("description", ""))))
        elif name == "ping":
            pass
        # onBWDone, onFCPublish, |RtmpSampleAccess...: nothing to do.
