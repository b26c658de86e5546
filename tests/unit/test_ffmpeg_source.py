"""sources.ffmpeg: command lines for HLS/SRT, secret redaction, and supervision of a real ffmpeg."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import free_port

from liverelay.config import RelaySettings
from liverelay.media.frame import Frame
from liverelay.sources import open_source
from liverelay.sources.base import SourceError
from liverelay.sources.ffmpeg import (
    STDERR_TAIL_LINES,
    FfmpegProcess,
    StderrTail,
    build_ffmpeg_args,
    handles,
    pull,
    redact_url,
)
from liverelay.sources.hls import pull as hls_pull


def _settings(**overrides: object) -> RelaySettings:
    s = RelaySettings(connect_timeout_s=1.0, first_frame_timeout_s=1.0, no_media_timeout_s=2.0)
    for k, v in overrides.items():
        setattr(s, k, v)
    return s


def _option(args: list[str], name: str) -> str:
    """Value following `name` among ffmpeg's input options (before -i)."""
    head = args[: args.index("-i")]
    assert name in head, f"{name} missing from {head}"
    return head[head.index(name) + 1]


class _Collect:
    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def on_frame(self, frame: Frame) -> None:
        self.frames.append(frame)


# -- command lines ---------------------------------------------------------------------


def test_hls_args_start_at_live_edge_and_remux_to_flv_on_stdout() -> None:
    url = "http://127.0.0.1:8000/live/s.m3u8?token=abc"
    args = build_ffmpeg_args("/usr/bin/ffmpeg", url, _settings())
    assert args[0] == "/usr/bin/ffmpeg"
    assert _option(args, "-live_start_index") == "-2"
    assert "-re" in args[: args.index("-i")]  # paced at the native rate, not segment bursts
    assert args[args.index("-i") + 1] == url  # HLS URLs go to ffmpeg untouched (query included)
    tail = args[args.index("-i") + 2 :]
    assert tail[tail.index("-c") + 1] == "copy"
    assert tail[tail.index("-f") + 1] == "flv"
    assert tail[-1] == "pipe:1"
    assert "-nostdin" in args  # ffmpeg must not read commands from our stdin
    # rw_timeout is in microseconds and bounds every HTTP read.
    assert int(_option(args, "-rw_timeout")) == 2_000_000


def test_srt_args_move_streamid_and_passphrase_to_options_and_force_caller() -> None:
    url = "srt://10.1.2.3:9000?streamid=%23%21%3A%3Ar%3Dlive%2Fs%2Cm%3Drequest&passphrase=verysecret123&mode=listener&latency=200000"
    args = build_ffmpeg_args("ffmpeg", url, _settings(connect_timeout_s=2.5))
    assert _option(args, "-srt_streamid") == "#!::r=live/s,m=request"
    assert _option(args, "-passphrase") == "verysecret123"
    assert _option(args, "-latency") == "200000"
    assert _option(args, "-connect_timeout") == "2500"  # milliseconds for libsrt
    input_url = args[args.index("-i") + 1]
    assert input_url == "srt://10.1.2.3:9000?mode=caller"
    assert "verysecret123" not in input_url


def test_srt_keeps_unknown_query_parameters() -> None:
    args = build_ffmpeg_args("ffmpeg", "srt://h.example:1234?pkt_size=1316", _settings())
    assert args[args.index("-i") + 1] == "srt://h.example:1234?pkt_size=1316&mode=caller"


def test_srt_without_port_is_refused() -> None:
    with pytest.raises(SourceError) as err:
        build_ffmpeg_args("ffmpeg", "srt://h.example?streamid=x", _settings())
    assert err.value.reason == "protocol"


def test_other_urls_are_not_for_ffmpeg() -> None:
    assert handles("https://cdn.example/a/b.m3u8")
    assert handles("srt://1.2.3.4:5000")
    assert not handles("http://cdn.example/a/b.flv")
    assert not handles("rtmp://cdn.example/a/b")
    with pytest.raises(SourceError) as err:
        build_ffmpeg_args("ffmpeg", "http://cdn.example/a/b.flv", _settings())
    assert err.value.reason == "unsupported"


def test_open_source_dispatches_hls_and_srt_here() -> None:
    # HLS goes to the native puller now (ISSUE-10), which hands over to this module's pull
    # only with relay.hls_puller = "ffmpeg"; SRT still comes here directly.
    assert open_source("http://h.example/live/x.m3u8") is hls_pull
    assert open_source("srt://127.0.0.1:9000?streamid=a") is pull


def test_redact_url_masks_passphrase_and_password() -> None:
    red = redact_url("srt://u:pw@h.example:1?passphrase=topsecret1&streamid=a")
    assert "topsecret1" not in red and "pw@" not in red
    assert "streamid=a" in red


@given(st.text(min_size=0, max_size=60))
def test_redact_url_never_raises(raw: str) -> None:
    assert isinstance(redact_url(raw), str)


@given(
    streamid=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
    passphrase=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=10, max_size=40),
)
def test_srt_options_roundtrip_any_printable_values(streamid: str, passphrase: str) -> None:
    from urllib.parse import urlencode

    url = "srt://127.0.0.1:9000?" + urlencode({"streamid": streamid, "passphrase": passphrase})
    args = build_ffmpeg_args("ffmpeg", url, _settings())
    assert _option(args, "-srt_streamid") == streamid
    assert _option(args, "-passphrase") == passphrase


# -- supervision with a real ffmpeg ---------------------------------------------------------


async def test_missing_ffmpeg_fails_only_this_source(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as err:
        settings = _settings(ffmpeg_path=str(tmp_path / "nope"))
        await pull("srt://127.0.0.1:9?streamid=x", _Collect(), settings=settings)
    assert err.value.reason == "unsupported"
    assert "ffmpeg not found" in err.value.message


async def test_failing_ffmpeg_reports_its_stderr_tail(ffmpeg: str) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(SourceError) as err:
        settings = _settings(ffmpeg_path=ffmpeg)
        url = f"http://127.0.0.1:{port}/live/x.m3u8"
        await asyncio.wait_for(pull(url, _Collect(), settings=settings), 15)
    assert err.value.reason == "process_exit"
    assert "Connection refused" in err.value.message
    assert "exited with status" in err.value.message


async def test_srt_caller_to_nobody_fails_with_ffmpeg_message(ffmpeg: str) -> None:
    port = free_port()
    with pytest.raises(SourceError) as err:
        await asyncio.wait_for(
            pull(f"srt://127.0.0.1:{port}?streamid=s", _Collect(), settings=_settings(ffmpeg_path=ffmpeg)), 15
        )
    assert err.value.reason in ("process_exit", "timeout")
    assert f"127.0.0.1:{port}" in err.value.message


async def test_stderr_tail_keeps_only_the_last_lines() -> None:
    reader = asyncio.StreamReader()
    for i in range(STDERR_TAIL_LINES * 3):
        reader.feed_data(f"line {i}\n".encode())
    reader.feed_data(b"x" * 100_000 + b"\n")  # past the reader's line limit
    reader.feed_data(b"\xff\xfe not utf-8 \n\n")
    reader.feed_eof()
    tail = StderrTail()
    await tail.collect(reader)
    assert len(tail.lines) == STDERR_TAIL_LINES
    assert tail.lines[0] == f"line {STDERR_TAIL_LINES * 2 + 2}"
    assert tail.lines[-2] == "(overlong stderr line dropped)"
    assert tail.last().endswith("not utf-8")


def _children_named(name: str) -> set[int]:
    """Live (non-zombie) child processes of this test process with that command name."""
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        state, ppid = fields[0], int(fields[1])
        if ppid == me and comm == name:
            found.add(int(entry) if state != "Z" else -int(entry))
    return found


async def test_stop_kills_and_reaps_a_running_ffmpeg(ffmpeg: str) -> None:
    # An ffmpeg that would run for a minute: real-time silence into the null muxer.
    silence = ["-re", "-f", "lavfi", "-i", "anullsrc", "-t", "60"]
    proc = FfmpegProcess([ffmpeg, "-hide_banner", "-nostdin", *silence, "-f", "null", "-"])
    await proc.start()
    assert proc.pid in _children_named("ffmpeg")
    await asyncio.wait_for(proc.stop(), 5)
    assert proc.proc is not None and proc.proc.returncode is not None
    assert not any(abs(p) == proc.pid for p in _children_named("ffmpeg"))  # gone, not a zombie
    await proc.stop()  # idempotent


async def test_cancelling_a_pull_ends_its_ffmpeg(ffmpeg: str, tmp_path: Path) -> None:
    # An SRT caller to nobody keeps connecting for its connect timeout: long enough to cancel.
    before = _children_named("ffmpeg")
    port = free_port()
    settings = _settings(ffmpeg_path=ffmpeg, connect_timeout_s=8.0, first_frame_timeout_s=8.0)
    task = asyncio.create_task(pull(f"srt://127.0.0.1:{port}?streamid=s", _Collect(), settings=settings))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if _children_named("ffmpeg") - before:
            break
    started = _children_named("ffmpeg") - before
    assert started, "ffmpeg did not start"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert not {abs(p) for p in _children_named("ffmpeg")} & {abs(p) for p in started}
