"""The server side of an RTMP connection (sans-IO): a publisher or a player.

Every answer is queued and leaves through `data_to_send()` (see base.py); the owner
calls `close()` when the connection ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .. import amf0
from ..frame import Frame
from . import messages as m
from .base import DEFAULT_WINDOW_ACK_SIZE, SessionBase, num, stream_id_of
from .chunk import frame_chunks
from .errors import RtmpError
from .events import ConnectRequest, Event, MediaReceived, PlayRequest, PublishRequest, StreamDeleted
from .handshake import ServerHandshake
from .limits import MemoryBudget, RtmpLimits

MAX_STREAMS = 16  # createStream calls per connection


class RtmpServerSession(SessionBase):
    """One accepted connection: a publisher or a player.

    Limits tighten by stage: before connect only a small command may arrive; once
    connected, commands up to `RtmpLimits.command_bytes`; only once a publish is requested
    may the connection hold large (media) messages.
    """

    def __init__(
        self,
        *,
        chunk_size: int = 4096,
        limits: RtmpLimits | None = None,
        budget: MemoryBudget | None = None,
        window_ack_size: int = DEFAULT_WINDOW_ACK_SIZE,
        rand: Callable[[int], bytes] = os.urandom,
        connect_handler: Callable[[ConnectRequest], str | None] | None = None,
    ) -> None:
        super().__init__(chunk_size=chunk_size, limits=limits, budget=budget)
        self.handshake = ServerHandshake(rand)
        # Returns None to accept a connect or the reason to reject it. Without a handler the
        # owner calls accept_connect/reject_connect itself (then connect must not be pipelined).
        # Dropped by close(): the handler is usually a method of the owner, which holds us.
        self.connect_handler = connect_handler
        self.window_ack_size = window_ack_size
        self.connected = False
        self.app = ""
        self.tc_url = ""
        self.object_encoding = 0.0
        self._next_stream_id = 1
        self.streams: set[int] = set()
        self.publishing: set[int] = set()  # stream ids with a publish request not refused
        self.playing: set[int] = set()

    @property
    def handshake_done(self) -> bool:
        return self.handshake.done

    def close(self) -> None:
        self.connect_handler = None
        super().close()

    def receive_data(self, data: bytes) -> list[Event]:
        if self.closed:
            raise RtmpError("session closed")
        events: list[Event] = []
        if not self.handshake.done:
            self._out.append(self.handshake.feed(data))
            if not self.handshake.done:
                return events
            data = self.handshake.leftover
            if not data:
                return events
        self._feed_chunks(data, events)
        return events

    def _update_stage(self) -> None:
        self._set_stage(connected=self.connected, publishing=bool(self.publishing))

    # ------------------------------------------------------------ commands in

    def _on_command(
        self, stream_id: int, name: str, txn: float, args: list[Any], events: list[Event]
    ) -> None:
        if name == "connect":
            if self.connected:
                raise RtmpError("second connect on one connection")
            params = args[0] if args and isinstance(args[0], dict) else {}
            app = params.get("app")
            tc_url = params.get("tcUrl")
            self.app = app if isinstance(app, str) else ""
            self.tc_url = tc_url if isinstance(tc_url, str) else ""
            self.object_encoding = num(params.get("objectEncoding"), 0.0)
            request = ConnectRequest(txn, self.app, self.tc_url, dict(params))
            events.append(request)
            if self.connect_handler is not None:
                # Decided here, not by the caller after receive_data returns: a client may
                # pipeline createStream behind connect, and its _result must follow connect's.
                refusal = self.connect_handler(request)
                if refusal is None:
                    self.accept_connect(request)
                else:
                    self.reject_connect(request, refusal)
            return
        if not self.connected:
            raise RtmpError(f"command {name!r} before connect")
        if name == "createStream":
            if len(self.streams) >= MAX_STREAMS:
                self._out.append(self._error(txn, "too many streams"))
                return
            sid = self._next_stream_id
            self._next_stream_id += 1
            self.streams.add(sid)
            self._out.append(m.command("_result", txn, None, float(sid), chunk_size=self.chunk_size))
        elif name == "publish":
            pub_name = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
            pub_type = args[2] if len(args) > 2 and isinstance(args[2], str) else "live"
            # Media may follow in the same read, before the owner accepts: let it through
            # (the owner handles events in order and drops frames it has no place for).
            self.publishing.add(stream_id)
            self._update_stage()
            events.append(PublishRequest(stream_id, txn, pub_name, pub_type))
        elif name == "play":
            play_name = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
            start = num(args[2], -2.0) if len(args) > 2 else -2.0
            duration = num(args[3], -1.0) if len(args) > 3 else -1.0
            reset = bool(args[4]) if len(args) > 4 and isinstance(args[4], bool) else True
            events.append(PlayRequest(stream_id, txn, play_name, start, duration, reset))
        elif name in ("deleteStream", "closeStream"):
            sid = stream_id
            if name == "deleteStream" and len(args) > 1:
                sid = stream_id_of(args[1]) or 0
                self.streams.discard(sid)
            self.publishing.discard(sid)
            self.playing.discard(sid)
            self._update_stage()
            events.append(StreamDeleted(sid, name))
        elif name in ("releaseStream", "FCPublish", "FCUnpublish", "_checkbw"):
            if txn:
                self._out.append(m.command("_result", txn, None, amf0.UNDEFINED, chunk_size=self.chunk_size))
        elif name == "getStreamLength":
            if txn:
                self._out.append(m.command("_result", txn, None, 0.0, chunk_size=self.chunk_size))
        elif name in ("receiveAudio", "receiveVideo", "pause", "seek", "_result", "_error", "onBWDone"):
            pass
        elif txn:
            self._out.append(self._error(txn, f"unknown command {name}"))

    def _error(self, txn: float, description: str) -> bytes:
        info = m.status_info(m.CALL_FAILED, description)
        return m.command("_error", txn, None, info, chunk_size=self.chunk_size)

    def _on_media(self, stream_id: int, frame: Frame, events: list[Event]) -> None:
        if stream_id in self.publishing:
            events.append(MediaReceived(stream_id, frame))

    # ------------------------------------------------------------ answers (queued)

    def accept_connect(self, request: ConnectRequest, *, peer_bandwidth: int | None = None) -> None:
        """Window/bandwidth/chunk size announcements and the connect _result."""
        self.connected = True
        self._update_stage()
        window = self.window_ack_size
        self._out.append(m.window_ack_size(window, self.chunk_size))
        self._out.append(m.set_peer_bandwidth(peer_bandwidth or window, m.BANDWIDTH_DYNAMIC, self.chunk_size))
        self._announce_chunk_size()
        props = {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0}
        info = m.status_info(m.CONNECT_SUCCESS, "Connection succeeded.", objectEncoding=self.object_encoding)
        self._out.append(m.command("_result", request.txn, props, info, chunk_size=self.chunk_size))

    def reject_connect(self, request: ConnectRequest, description: str) -> None:
        """The connect _error; the session is closed for input (flush, then hang up)."""
        info = m.status_info(m.CONNECT_REJECTED, description)
        self._out.append(m.command("_error", request.txn, None, info, chunk_size=self.chunk_size))
        self.closed = True

    def accept_publish(self, request: PublishRequest) -> None:
        self.publishing.add(request.stream_id)
        self._update_stage()
        self._out.append(m.user_control(m.UC_STREAM_BEGIN, request.stream_id, self.chunk_size))
        self._out.append(
            m.on_status(
                request.stream_id, self.chunk_size, m.PUBLISH_START, f"{request.name} is now published."
            )
        )

    def reject_publish(
        self, request: PublishRequest, description: str, code: str = m.PUBLISH_BAD_NAME
    ) -> None:
        self.publishing.discard(request.stream_id)
        self._update_stage()
        self._out.append(m.on_status(request.stream_id, self.chunk_size, code, description))

    def end_publish(self, stream_id: int, description: str = "") -> None:
        self.publishing.discard(stream_id)
        self._update_stage()
        self._out.append(m.on_status(stream_id, self.chunk_size, m.UNPUBLISH_SUCCESS, description))

    def start_play(self, request: PlayRequest) -> None:
        """StreamBegin, Play.Reset, Play.Start and |RtmpSampleAccess."""
        sid = request.stream_id
        self.playing.add(sid)
        cs = self.chunk_size
        self._out.append(m.user_control(m.UC_STREAM_BEGIN, sid, cs))
        self._out.append(m.on_status(sid, cs, m.PLAY_RESET, f"Playing and resetting {request.name}."))
        self._out.append(m.on_status(sid, cs, m.PLAY_START, f"Started playing {request.name}."))
        self._out.append(m.data_message(sid, cs, "|RtmpSampleAccess", True, True))

    def play_not_found(
        self, request: PlayRequest, description: str = "", code: str = m.PLAY_STREAM_NOT_FOUND
    ) -> None:
        """Play refused: StreamNotFound by default (code=PLAY_FAILED when not allowed)."""
        description = description or "No such stream"
        self._out.append(m.on_status(request.stream_id, self.chunk_size, code, description))

    def end_play(self, stream_id: int, description: str = "") -> None:
        """StreamEOF then Play.UnpublishNotify: the publisher is gone."""
        self.playing.discard(stream_id)
        self._out.append(m.user_control(m.UC_STREAM_EOF, stream_id, self.chunk_size))
        self._out.append(
            m.on_status(stream_id, self.chunk_size, m.PLAY_UNPUBLISH_NOTIFY, description or "Stream ended")
        )

    def send_frame(self, frame: Frame, stream_id: int) -> None:
        """Queue a frame's chunks (viewers' writers use chunk.frame_chunks directly instead,
        sharing one serialisation between viewers)."""
        self._out.append(frame_chunks(frame, self.chunk_size, stream_id))
