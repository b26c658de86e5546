"""Server and client sessions talking to each other in memory, and replays of real captures."""

from __future__ import annotations

from pathlib import Path

import pytest

from liverelay.media import amf0
from liverelay.media.codecs import make_frame
from liverelay.media.frame import Frame, FrameKind
from liverelay.media.rtmp import (
    ChunkReader,
    Connected,
    ConnectFailed,
    ConnectRequest,
    MediaReceived,
    PlayRequest,
    PublishRequest,
    RtmpClientSession,
    RtmpError,
    RtmpServerSession,
    StatusEvent,
    StreamCreated,
    StreamDeleted,
    StreamEof,
    encode_message,
)
from liverelay.media.rtmp import messages as m

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rtmp"


def pump(client: RtmpClientSession, server: RtmpServerSession, first: bytes) -> tuple[list, list]:
    """Shuttle bytes until both sides are quiet; the server side answers requests like the listener."""
    client_events: list = []
    server_events: list = []
    to_server = first
    for _ in range(50):
        if not to_server:
            break
        evs = server.receive_data(to_server)
        server_events += evs
        for ev in evs:
            if isinstance(ev, PublishRequest):
                server.accept_publish(ev)
            elif isinstance(ev, PlayRequest):
                server.start_play(ev)
        to_client = server.data_to_send()
        to_server = b""
        if to_client:
            client_events += client.receive_data(to_client)
            to_server = client.data_to_send()
    return client_events, server_events


def hello(client: RtmpClientSession) -> bytes:
    """C0 + C1: what the client queues first."""
    client.initiate()
    return client.data_to_send()


def test_client_plays_from_server_and_gets_frames() -> None:
    client = RtmpClientSession(app="live", tc_url="rtmp://example.com/live", play="cam?token=1")
    server = RtmpServerSession(chunk_size=4096, connect_handler=lambda req: None)
    cev, sev = pump(client, server, hello(client))
    assert server.handshake.digest, "our client does the digest handshake"
    assert client.handshake.server_verified
    (conn,) = [e for e in sev if isinstance(e, ConnectRequest)]
    assert (conn.app, conn.tc_url) == ("live", "rtmp://example.com/live")
    (play,) = [e for e in sev if isinstance(e, PlayRequest)]
    assert play.name == "cam?token=1" and play.stream_id == 1
    assert any(isinstance(e, Connected) for e in cev)
    assert any(isinstance(e, StreamCreated) and e.stream_id == 1 for e in cev)
    codes = [e.code for e in cev if isinstance(e, StatusEvent)]
    assert codes == [m.PLAY_RESET, m.PLAY_START]
    assert client.reader.chunk_size == 4096 and server.reader.chunk_size == 4096
    # Media: metadata, sequence header, keyframe; the metadata keeps its AMF0 body.
    meta = Frame(FrameKind.DATA, 0, amf0.encode("onMetaData", amf0.EcmaArray(width=640.0)))
    frames = [
        meta,
        make_frame(9, 0, b"\x17\x00\x00\x00\x00cfg"),
        make_frame(9, 40, b"\x17\x01" + bytes(9000)),
    ]
    for f in frames:
        server.send_frame(f, 1)
    server.end_play(1)
    evs = client.receive_data(server.data_to_send())
    got = [e.frame for e in evs if isinstance(e, MediaReceived)]
    assert [(f.kind, f.timestamp, f.payload) for f in got] == [
        (f.kind, f.timestamp, f.payload) for f in frames
    ]
    assert got[1].config and got[2].keyframe
    assert any(isinstance(e, StreamEof) for e in evs)
    assert [e.code for e in evs if isinstance(e, StatusEvent)] == [m.PLAY_UNPUBLISH_NOTIFY]


def test_client_publishes_to_server_with_setdataframe_stripped() -> None:
    client = RtmpClientSession(app="live", tc_url="rtmp://h/live", publish="s1")
    server = RtmpServerSession(connect_handler=lambda req: None)
    cev, sev = pump(client, server, hello(client))
    assert [e.name for e in sev if isinstance(e, PublishRequest)] == ["s1"]
    assert [e.code for e in cev if isinstance(e, StatusEvent)] == [m.PUBLISH_START]
    body = amf0.encode("onMetaData", {"duration": 0.0})
    client.send_frame(Frame(FrameKind.DATA, 0, body))
    client.send_frame(make_frame(8, 10, b"\xaf\x00\x12\x10"))
    evs = server.receive_data(client.data_to_send())
    frames = [e.frame for e in evs if isinstance(e, MediaReceived)]
    assert frames[0].kind == FrameKind.DATA and frames[0].payload == body
    assert frames[1].kind == FrameKind.AUDIO and frames[1].config
    client.delete_stream(1)
    evs = server.receive_data(client.data_to_send())
    assert [type(e) for e in evs] == [StreamDeleted]


def test_reject_connect_is_an_error_result() -> None:
    client = RtmpClientSession(app="live", tc_url="rtmp://unknown/live", play="x")
    server = RtmpServerSession()
    server.receive_data(hello(client))
    evs = server.receive_data(client.receive_data(server.data_to_send()) or client.data_to_send())
    (req,) = [e for e in evs if isinstance(e, ConnectRequest)]
    server.reject_connect(req, "Unknown domain")
    cev = client.receive_data(server.data_to_send())
    (failed,) = [e for e in cev if isinstance(e, ConnectFailed)]
    assert failed.info["code"] == m.CONNECT_REJECTED
    assert server.closed


def test_commands_before_connect_are_refused() -> None:
    server = RtmpServerSession()
    client = RtmpClientSession(app="a", tc_url="rtmp://h/a")
    server.receive_data(hello(client))
    client.receive_data(server.data_to_send())
    client.data_to_send()  # C2 + connect: dropped, we send createStream instead
    server.receive_data(b"\x00" * 1536)  # C2
    with pytest.raises(RtmpError, match="before connect"):
        server.receive_data(m.command("createStream", 2.0, None, chunk_size=128))


def test_ping_is_answered_and_acks_are_sent() -> None:
    client = RtmpClientSession(app="live", tc_url="rtmp://h/live", play="s")
    server = RtmpServerSession(connect_handler=lambda req: None, window_ack_size=2_500_000)
    pump(client, server, hello(client))
    client.receive_data(m.user_control(m.UC_PING_REQUEST, 4242, 4096))
    reply = client.data_to_send()
    r = ChunkReader()
    (msg,) = r.feed(reply)
    assert m.parse_user_control(msg.payload) == (m.UC_PING_RESPONSE, 4242)
    # The server announced a window of 2.5 MB: the client acknowledges after that much.
    big = make_frame(9, 0, b"\x27\x01" + bytes(1_000_000))
    for _ in range(3):
        server.send_frame(big, 1)
        client.receive_data(server.data_to_send())
    acks = [x for x in r.feed(client.data_to_send()) if x.type_id == 3]
    assert len(acks) == 1 and m.parse_u32(acks[0].payload, "ack") == client.bytes_received


def test_aggregate_message_is_split() -> None:
    client = RtmpClientSession(app="live", tc_url="rtmp://h/live", play="s")
    server = RtmpServerSession(connect_handler=lambda req: None)
    pump(client, server, hello(client))

    def tag(t: int, ts: int, body: bytes) -> bytes:
        return (
            bytes([t])
            + len(body).to_bytes(3, "big")
            + ts.to_bytes(3, "big")
            + b"\x00\x00\x00\x00"
            + body
            + (11 + len(body)).to_bytes(4, "big")
        )

    agg = tag(8, 100, b"\xaf\x01aa") + tag(9, 140, b"\x27\x01bb")
    evs = client.receive_data(encode_message(6, 22, 5000, 1, agg, 4096))
    frames = [e.frame for e in evs if isinstance(e, MediaReceived)]
    assert [(f.kind, f.timestamp) for f in frames] == [(FrameKind.AUDIO, 5000), (FrameKind.VIDEO, 5040)]


def _replay_server(data: bytes, split: int = 4096) -> list:
    server = RtmpServerSession(chunk_size=4096, connect_handler=lambda req: None)
    events: list = []
    for i in range(0, len(data), split):
        evs = server.receive_data(data[i : i + split])
        for ev in evs:
            if isinstance(ev, PublishRequest):
                server.accept_publish(ev)
        events += evs
    return events


def test_replay_ffmpeg_publish_capture() -> None:
    events = _replay_server((FIXTURES / "ffmpeg_publish_c2s.bin").read_bytes(), split=1000)
    (conn,) = [e for e in events if isinstance(e, ConnectRequest)]
    assert conn.app == "live" and conn.tc_url.endswith("/live")
    (pub,) = [e for e in events if isinstance(e, PublishRequest)]
    assert pub.name == "cap"
    frames = [e.frame for e in events if isinstance(e, MediaReceived)]
    kinds = [f.kind for f in frames]
    assert kinds[0] == FrameKind.DATA and frames[0].payload.startswith(b"\x02\x00\x0aonMetaData")
    # AVC NALU packets only (ffmpeg ends with an end-of-sequence packet, type 2).
    video = [f for f in frames if f.kind == FrameKind.VIDEO and f.payload[1] == 1]
    audio = [f for f in frames if f.kind == FrameKind.AUDIO and not f.config]
    assert len(video) == 30  # 2 s at 15 fps
    assert video[0].keyframe and sum(f.keyframe for f in video) == 2  # GOP of 15
    assert 40 <= len(audio) <= 45  # 2 s of AAC at 22.05 kHz = 43 frames
    assert any(isinstance(e, StreamDeleted) for e in events)


def _replay_client(data: bytes, split: int) -> list:
    """Feed what a server sent into a client playing live/cap, `split` bytes at a time."""
    client = RtmpClientSession(app="live", tc_url="rtmp://127.0.0.1/live", play="cap")
    client.initiate()
    events: list = []
    for i in range(0, len(data), split):
        events += client.receive_data(data[i : i + split])
    return events


def test_replay_server_output_into_client() -> None:
    events = _replay_client((FIXTURES / "ffmpeg_play_s2c.bin").read_bytes(), split=777)
    assert any(isinstance(e, Connected) for e in events)
    frames = [e.frame for e in events if isinstance(e, MediaReceived)]
    first_video = next(f for f in frames if f.kind == FrameKind.VIDEO)
    assert first_video.config
    assert next(f for f in frames if f.kind == FrameKind.VIDEO and not f.config).keyframe
    assert sum(1 for f in frames if f.kind == FrameKind.VIDEO) >= 20


def test_replay_nginx_rtmp_output_into_client() -> None:
    # nginx-rtmp compresses headers (fmt 1-3) unlike our fmt-0-only writer: a foreign dialect.
    events = _replay_client((FIXTURES / "nginx_play_s2c.bin").read_bytes(), split=1000)
    assert any(isinstance(e, Connected) for e in events)
    assert m.PLAY_START in [e.code for e in events if isinstance(e, StatusEvent)]
    frames = [e.frame for e in events if isinstance(e, MediaReceived)]
    video = [f for f in frames if f.kind == FrameKind.VIDEO]
    assert video[0].config and video[1].keyframe
    ts = [f.timestamp for f in video]
    assert ts == sorted(ts) and ts[-1] - ts[1] > 500
    assert sum(1 for f in frames if f.kind == FrameKind.AUDIO) > 10
