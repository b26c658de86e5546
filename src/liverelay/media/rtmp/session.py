"""RTMP session state machines (sans-IO): the server side and the client side.

`receive_data(bytes) -> list[Event]`; automatic answers (handshake packets, pings,
acknowledgements, createStream results) queue up and come out of `data_to_send()`;
methods that act on a request return the bytes to send. RtmpError is the only
exception that escapes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

from .. import amf0
from ..codecs import make_frame
from ..frame import Frame, FrameKind
from . import messages as m
from .chunk import (
    CSID_DATA,
    MSG_ABORT,
    MSG_ACK,
    MSG_AGGREGATE,
    MSG_AMF0_COMMAND,
    MSG_AMF0_DATA,
    MSG_AMF3_COMMAND,
    MSG_AMF3_DATA,
    MSG_AUDIO,
    MSG_SET_CHUNK_SIZE,
    MSG_SET_PEER_BANDWIDTH,
    MSG_USER_CONTROL,
    MSG_VIDEO,
    MSG_WINDOW_ACK_SIZE,
    ChunkReader,
    Message,
    encode_message,
    frame_chunks,
)
from .errors import RtmpError
from .events import (
    CommandFailed,
    Connected,
    ConnectFailed,
    ConnectRequest,
    Event,
    MediaReceived,
    PeerChunkSize,
    PlayRequest,
    PublishRequest,
    StatusEvent,
    StreamBegin,
    StreamCreated,
    StreamDeleted,
    StreamEof,
)
from .handshake import ClientHandshake, ServerHandshake

DEFAULT_WINDOW_ACK_SIZE = 2_500_000
MAX_STREAMS = 16  # createStream calls per connection

_AGG_HEADER = struct.Struct(">B3s3sB3s")


def _num(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def _stream_id(value: Any) -> int | None:
    """A message stream id from an AMF0 number, or None when it cannot be one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 0 <= value <= 0xFFFFFFFF or value != value:  # NaN fails every comparison
        return None
    return int(value)


class _Session:
    """What both sides share: handshake, chunk reader, acks, pings, media decoding."""

    def __init__(self, *, chunk_size: int, max_message_bytes: int, max_chunk_streams: int) -> None:
        if not 128 <= chunk_size <= 0xFFFFFF:
            raise ValueError("chunk size must be in 128..16777215")
        self.target_chunk_size = chunk_size
        self.chunk_size = 128  # what we write with until we announce target_chunk_size
        self.reader = ChunkReader(max_message_bytes=max_message_bytes, max_chunk_streams=max_chunk_streams)
        self._out: list[bytes] = []
        self.bytes_received = 0
        self._last_ack = 0
        self.peer_window = 0  # the peer asked for an Ack every this many bytes (0 = never)
        self.closed = False

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def _announce_chunk_size(self) -> bytes:
        data = m.set_chunk_size(self.target_chunk_size, self.chunk_size)
        self.chunk_size = self.target_chunk_size
        return data

    def _feed_chunks(self, data: bytes, events: list[Event]) -> None:
        self.bytes_received += len(data)
        try:
            msgs = self.reader.feed(data)
        except RtmpError:
            raise
        except Exception as exc:  # a bug here must still only end this connection
            raise RtmpError(f"chunk parse failure: {exc!r}", internal=True) from exc
        for msg in msgs:
            if self.closed:
                break  # e.g. connect rejected: whatever the peer pipelined after it is moot
            try:
                self._dispatch(msg, events)
            except RtmpError:
                raise
            except Exception as exc:
                raise RtmpError(f"message {msg.type_id} handling failed: {exc!r}", internal=True) from exc
        if self.peer_window and self.bytes_received - self._last_ack >= self.peer_window:
            self._last_ack = self.bytes_received
            self._out.append(m.acknowledgement(self.bytes_received, self.chunk_size))

    def _dispatch(self, msg: Message, events: list[Event]) -> None:
        t = msg.type_id
        if t in (MSG_AUDIO, MSG_VIDEO):
            self._on_media(msg.stream_id, make_frame(t, msg.timestamp, msg.payload), events)
        elif t in (MSG_AMF0_COMMAND, MSG_AMF3_COMMAND):
            name, txn, args = m.parse_command(msg.payload, amf3=t == MSG_AMF3_COMMAND)
            self._on_command(msg.stream_id, name, txn, args, events)
        elif t in (MSG_AMF0_DATA, MSG_AMF3_DATA):
            payload = msg.payload[1:] if t == MSG_AMF3_DATA else msg.payload
            body = m.metadata_body(payload)
            if body is not None:
                self._on_media(msg.stream_id, Frame(FrameKind.DATA, msg.timestamp, body), events)
        elif t == MSG_USER_CONTROL:
            event, value = m.parse_user_control(msg.payload)
            if event == m.UC_PING_REQUEST:
                self._out.append(m.user_control(m.UC_PING_RESPONSE, value, self.chunk_size))
            else:
                self._on_user_control(event, value, events)
        elif t == MSG_WINDOW_ACK_SIZE:
            self.peer_window = m.parse_u32(msg.payload, "Window Acknowledgement Size")
        elif t == MSG_SET_PEER_BANDWIDTH:
            self._on_peer_bandwidth(m.parse_u32(msg.payload, "Set Peer Bandwidth"))
        elif t == MSG_SET_CHUNK_SIZE:
            events.append(PeerChunkSize(self.reader.chunk_size))
        elif t == MSG_AGGREGATE:
            self._on_aggregate(msg, events)
        elif t in (MSG_ACK, MSG_ABORT):
            pass
        # Shared objects and unknown types are ignored: they carry nothing we relay.

    def _on_aggregate(self, msg: Message, events: list[Event]) -> None:
        """Aggregate = FLV-tag-like sub-messages; their timestamps are relative to the first."""
        data = msg.payload
        pos = 0
        base: int | None = None
        while pos + 11 <= len(data):
            t, size_b, ts_b, ts_ext, _ = _AGG_HEADER.unpack_from(data, pos)
            size = int.from_bytes(size_b, "big")
            ts = int.from_bytes(ts_b, "big") | (ts_ext << 24)
            body = data[pos + 11 : pos + 11 + size]
            if len(body) < size:
                raise RtmpError("truncated aggregate message")
            if base is None:
                base = ts
            sub_ts = (msg.timestamp + ts - base) & 0xFFFFFFFF
            if t in (MSG_AUDIO, MSG_VIDEO):
                self._on_media(msg.stream_id, make_frame(t, sub_ts, body), events)
            elif t == MSG_AMF0_DATA:
                meta = m.metadata_body(body)
                if meta is not None:
                    self._on_media(msg.stream_id, Frame(FrameKind.DATA, sub_ts, meta), events)
            pos += 11 + size + 4  # + back pointer

    # Hooks for the two sides.
    def _on_media(self, stream_id: int, frame: Frame, events: list[Event]) -> None:
        raise NotImplementedError

    def _on_command(
        self, stream_id: int, name: str, txn: float, args: list[Any], events: list[Event]
    ) -> None:
        raise NotImplementedError

    def _on_user_control(self, event: int, value: int, events: list[Event]) -> None:
        pass

    def _on_peer_bandwidth(self, size: int) -> None:
        pass


class RtmpServerSession(_Session):
    """One accepted connection: a publisher or a player."""

    def __init__(
        self,
        *,
        chunk_size: int = 4096,
        max_message_bytes: int = 16 << 20,
        max_chunk_streams: int = 64,
        window_ack_size: int = DEFAULT_WINDOW_ACK_SIZE,
        rand: Callable[[int], bytes] = os.urandom,
        connect_handler: Callable[[ConnectRequest], str | None] | None = None,
    ) -> None:
        super().__init__(
            chunk_size=chunk_size, max_message_bytes=max_message_bytes, max_chunk_streams=max_chunk_streams
        )
        self.handshake = ServerHandshake(rand)
        # Returns None to accept a connect or the reason to reject it. Without a handler the
        # owner calls accept_connect/reject_connect itself (then connect must not be pipelined).
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
            self.object_encoding = _num(params.get("objectEncoding"), 0.0)
            request = ConnectRequest(txn, self.app, self.tc_url, dict(params))
            events.append(request)
            if self.connect_handler is not None:
                # Decided here, not by the caller after receive_data returns: a client may
                # pipeline createStream behind connect, and its _result must follow connect's.
                refusal = self.connect_handler(request)
                if refusal is None:
                    self._out.append(self.accept_connect(request))
                else:
                    self._out.append(self.reject_connect(request, refusal))
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
            events.append(PublishRequest(stream_id, txn, pub_name, pub_type))
        elif name == "play":
            play_name = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
            start = _num(args[2], -2.0) if len(args) > 2 else -2.0
            duration = _num(args[3], -1.0) if len(args) > 3 else -1.0
            reset = bool(args[4]) if len(args) > 4 and isinstance(args[4], bool) else True
            events.append(PlayRequest(stream_id, txn, play_name, start, duration, reset))
        elif name in ("deleteStream", "closeStream"):
            sid = stream_id
            if name == "deleteStream" and len(args) > 1:
                sid = _stream_id(args[1]) or 0
                self.streams.discard(sid)
            self.publishing.discard(sid)
            self.playing.discard(sid)
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

    # ------------------------------------------------------------ answers

    def accept_connect(self, request: ConnectRequest, *, peer_bandwidth: int | None = None) -> bytes:
        """Window/bandwidth/chunk size announcements and the connect _result, in one write."""
        self.connected = True
        window = self.window_ack_size
        parts = [
            m.window_ack_size(window, self.chunk_size),
            m.set_peer_bandwidth(peer_bandwidth or window, m.BANDWIDTH_DYNAMIC, self.chunk_size),
            self._announce_chunk_size(),
        ]
        props = {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0}
        info = m.status_info(m.CONNECT_SUCCESS, "Connection succeeded.", objectEncoding=self.object_encoding)
        parts.append(m.command("_result", request.txn, props, info, chunk_size=self.chunk_size))
        return b"".join(parts)

    def reject_connect(self, request: ConnectRequest, description: str) -> bytes:
        info = m.status_info(m.CONNECT_REJECTED, description)
        self.closed = True
        return m.command("_error", request.txn, None, info, chunk_size=self.chunk_size)

    def accept_publish(self, request: PublishRequest) -> bytes:
        self.publishing.add(request.stream_id)
        return b"".join(
            (
                m.user_control(m.UC_STREAM_BEGIN, request.stream_id, self.chunk_size),
                m.on_status(
                    request.stream_id, self.chunk_size, m.PUBLISH_START, f"{request.name} is now published."
                ),
            )
        )

    def reject_publish(
        self, request: PublishRequest, description: str, code: str = m.PUBLISH_BAD_NAME
    ) -> bytes:
        self.publishing.discard(request.stream_id)
        return m.on_status(request.stream_id, self.chunk_size, code, description)

    def end_publish(self, stream_id: int, description: str = "") -> bytes:
        self.publishing.discard(stream_id)
        return m.on_status(stream_id, self.chunk_size, m.UNPUBLISH_SUCCESS, description)

    def start_play(self, request: PlayRequest) -> bytes:
        """StreamBegin, Play.Reset, Play.Start and |RtmpSampleAccess in one write."""
        sid = request.stream_id
        self.playing.add(sid)
        cs = self.chunk_size
        return b"".join(
            (
                m.user_control(m.UC_STREAM_BEGIN, sid, cs),
                m.on_status(sid, cs, m.PLAY_RESET, f"Playing and resetting {request.name}."),
                m.on_status(sid, cs, m.PLAY_START, f"Started playing {request.name}."),
                m.data_message(sid, cs, "|RtmpSampleAccess", True, True),
            )
        )

    def play_not_found(self, request: PlayRequest, description: str = "") -> bytes:
        return m.on_status(
            request.stream_id, self.chunk_size, m.PLAY_STREAM_NOT_FOUND, description or "No such stream"
        )

    def end_play(self, stream_id: int, description: str = "") -> bytes:
        """StreamEOF then Play.UnpublishNotify: the publisher is gone."""
        self.playing.discard(stream_id)
        return b"".join(
            (
                m.user_control(m.UC_STREAM_EOF, stream_id, self.chunk_size),
                m.on_status(
                    stream_id, self.chunk_size, m.PLAY_UNPUBLISH_NOTIFY, description or "Stream ended"
                ),
            )
        )

    def frame_bytes(self, frame: Frame, stream_id: int) -> bytes:
        """Chunk bytes of a frame for this connection (shared via frame.cache)."""
        return frame_chunks(frame, self.chunk_size, stream_id)


class RtmpClientSession(_Session):
    """Our side of a connection to an origin: connect, createStream, then play or publish.

    With `play=` or `publish=` set, the session drives itself: after the handshake it
    sends C2 and connect in one write, createStream right after connect's _result and
    play/publish right after createStream's _result (as few round trips as possible).
    """

    def __init__(
        self,
        *,
        app: str,
        tc_url: str,
        play: str | None = None,
        publish: str | None = None,
        chunk_size: int = 4096,
        max_message_bytes: int = 16 << 20,
        max_chunk_streams: int = 64,
        digest: bool = True,
        flash_ver: str = "LNX 9,0,124,2",
        buffer_ms: int = 1000,
        rand: Callable[[int], bytes] = os.urandom,
    ) -> None:
        super().__init__(
            chunk_size=chunk_size, max_message_bytes=max_message_bytes, max_chunk_streams=max_chunk_streams
        )
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

    def initiate(self) -> bytes:
        """C0 + C1: the first bytes on the wire."""
        return self.handshake.start()

    def receive_data(self, data: bytes) -> list[Event]:
        if self.closed:
            raise RtmpError("session closed")
        events: list[Event] = []
        if not self.handshake.done:
            c2 = self.handshake.feed(data)
            if not self.handshake.done:
                return events
            self._out.append(c2)
            self._out.append(self._announce_chunk_size())
            self._out.append(self.connect())
            self.state = "connecting"
            data = self.handshake.leftover
            if not data:
                return events
        self._feed_chunks(data, events)
        return events

    def _call(self, name: str, *args: Any, stream_id: int = 0) -> bytes:
        self._txn += 1
        self._pending[self._txn] = name
        return m.command(name, self._txn, *args, stream_id=stream_id, chunk_size=self.chunk_size)

    def connect(self) -> bytes:
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
        return m.command("connect", 1.0, params, chunk_size=self.chunk_size)

    def create_stream(self) -> bytes:
        self.state = "creating"
        return self._call("createStream", None)

    def play(self, stream_id: int, name: str, start: float = -2.0) -> bytes:
        self.state = "starting"
        self.stream_id = stream_id
        self._txn += 1
        # play has no _result: its answer is onStatus on the stream.
        cmd = m.command("play", self._txn, None, name, start, stream_id=stream_id, chunk_size=self.chunk_size)
        return cmd + m.user_control(m.UC_SET_BUFFER_LENGTH, stream_id, self.chunk_size, extra=self.buffer_ms)

    def publish(self, stream_id: int, name: str, publish_type: str = "live") -> bytes:
        self.state = "starting"
        self.stream_id = stream_id
        self._txn += 1
        return m.command(
            "publish", self._txn, None, name, publish_type, stream_id=stream_id, chunk_size=self.chunk_size
        )

    def delete_stream(self, stream_id: int) -> bytes:
        self._txn += 1
        return m.command("deleteStream", self._txn, None, float(stream_id), chunk_size=self.chunk_size)

    def frame_bytes(self, frame: Frame) -> bytes:
        """A frame to publish; metadata goes out as @setDataFrame onMetaData."""
        if frame.kind == FrameKind.DATA:
            payload = m.SET_DATA_FRAME + frame.payload
            return encode_message(
                CSID_DATA, MSG_AMF0_DATA, frame.timestamp, self.stream_id, payload, self.chunk_size
            )
        return frame_chunks(frame, self.chunk_size, self.stream_id)

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
                        self._out.append(self.create_stream())
                else:
                    self.state = "ended"
                    events.append(ConnectFailed(info_dict))
            elif purpose == "createStream":
                sid = _stream_id(info)
                if name == "_result" and sid is not None:
                    events.append(StreamCreated(sid))
                    if self.play_name is not None:
                        self._out.append(self.play(sid, self.play_name))
                    elif self.publish_name is not None:
                        self._out.append(self.publish(sid, self.publish_name))
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
