"""Fuzz the sessions: arbitrary, truncated and mutated real captures raise nothing but RtmpError."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liverelay.media.rtmp import (
    MediaReceived,
    PlayRequest,
    PublishRequest,
    RtmpClientSession,
    RtmpError,
    RtmpLimits,
    RtmpServerSession,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rtmp"
PUBLISH = (FIXTURES / "ffmpeg_publish_c2s.bin").read_bytes()
PLAY = (FIXTURES / "ffmpeg_play_s2c.bin").read_bytes()
NGINX_PLAY = (FIXTURES / "nginx_play_s2c.bin").read_bytes()
HANDSHAKE = 1 + 2 * 1536
MAX_MESSAGE = 64 * 1024


def drive_server(data: bytes, split: int) -> int:
    """Feed a server session like the listener would; return the number of media frames."""
    server = RtmpServerSession(
        limits=RtmpLimits(message_bytes=MAX_MESSAGE, chunk_streams=16), connect_handler=lambda req: None
    )
    frames = 0
    try:
        for i in range(0, len(data), split):
            for ev in server.receive_data(data[i : i + split]):
                if isinstance(ev, PublishRequest):
                    server.accept_publish(ev)
                elif isinstance(ev, PlayRequest):
                    server.start_play(ev)
                elif isinstance(ev, MediaReceived):
                    frames += 1
            server.data_to_send()
    except RtmpError as exc:
        assert not exc.internal, exc.reason
    return frames


def drive_client(data: bytes, split: int) -> None:
    client = RtmpClientSession(
        app="live", tc_url="rtmp://h/live", play="cap", limits=RtmpLimits(message_bytes=MAX_MESSAGE)
    )
    client.initiate()
    try:
        for i in range(0, len(data), split):
            client.receive_data(data[i : i + split])
            client.data_to_send()
    except RtmpError as exc:
        assert not exc.internal, exc.reason


def test_unmodified_capture_yields_media() -> None:
    # The fuzz tests below would pass vacuously if the capture produced nothing.
    assert drive_server(PUBLISH, 4096) > 60


_mutations = st.lists(
    st.tuples(st.integers(0, len(PUBLISH) - 1), st.integers(0, 255)), min_size=1, max_size=8
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations, st.integers(1, 5000), st.integers(HANDSHAKE, len(PUBLISH)))
def test_server_mutated_truncated_publish_capture(mutations: list, split: int, cut: int) -> None:
    data = bytearray(PUBLISH[:cut])
    for pos, value in mutations:
        if pos < len(data):
            data[pos] = value
    drive_server(bytes(data), split)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.integers(1, 700))
def test_server_garbage_after_handshake(garbage: bytes, split: int) -> None:
    drive_server(PUBLISH[:HANDSHAKE] + garbage, split)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4000))
def test_server_garbage_from_first_byte(garbage: bytes) -> None:
    drive_server(garbage, 1024)


_play_mutations = st.lists(
    st.tuples(st.integers(0, len(PLAY) - 1), st.integers(0, 255)), min_size=1, max_size=8
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_play_mutations, st.integers(1, 5000), st.integers(0, len(PLAY)))
def test_client_mutated_truncated_play_capture(mutations: list, split: int, cut: int) -> None:
    data = bytearray(PLAY[:cut])
    for pos, value in mutations:
        if pos < len(data):
            data[pos] = value
    drive_client(bytes(data), split)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 700))
def test_client_garbage_after_handshake(garbage: bytes, split: int) -> None:
    drive_client(PLAY[:HANDSHAKE] + garbage, split)


_nginx_mutations = st.lists(
    st.tuples(st.integers(0, len(NGINX_PLAY) - 1), st.integers(0, 255)), min_size=1, max_size=8
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_nginx_mutations, st.integers(1, 5000), st.integers(0, len(NGINX_PLAY)))
def test_client_mutated_truncated_nginx_capture(mutations: list, split: int, cut: int) -> None:
    data = bytearray(NGINX_PLAY[:cut])
    for pos, value in mutations:
        if pos < len(data):
            data[pos] = value
    drive_client(bytes(data), split)
