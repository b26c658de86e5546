"""Clients nobody here wrote, against a real `liverelay serve`: rtmpdump (librtmp), GStreamer
(rtmp2sink, rtmp2src, souphttpsrc + flvdemux) and VLC. Each test checks decoded frames, not
just a connection. The tools come from Debian (`make test` installs them as root: see
scripts/ensure-sysdeps.sh); a test skips only when its tool is missing (fails under CI=true).

Expected: every client gets a playable H.264 stream of the 640x360 sample, which ffmpeg
publishes in real time (or GStreamer, for the publishing test): at least 60 decoded video
frames (two seconds of the 30 fps sample) per client.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import NodeProcess, ffmpeg_publish, require_tool, stop_process

pytestmark = pytest.mark.timeout(120)

APP = "live"
MIN_FRAMES = 60  # two seconds of the 30 fps sample


def wait_stream(node: NodeProcess, stream: str, timeout: float = 20.0) -> None:
    """Until the node serves `stream` (its HTTP-FLV body starts), bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    last = ""
    for _ in range(int(timeout / 0.2) + 1):
        try:
            with urllib.request.urlopen(node.flv_url(APP, stream), timeout=5) as resp:
                if resp.status == 200 and resp.read(13)[:3] == b"FLV":
                    return
        except OSError as exc:
            last = repr(exc)
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    raise AssertionError(f"{stream} not served after {timeout}s ({last})\n{node.log()[-2000:]}")


def decoded_frames(
    ffprobe: str, path_or_url: str, stream: str = "v:0", extra: list[str] | None = None
) -> int:
    """Frames ffprobe decodes from one stream of a file or URL (0 when it has none)."""
    out = subprocess.run(
        [
            ffprobe,
            "-v",
            "error",
            *(extra or []),
            "-count_frames",
            "-select_streams",
            stream,
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            path_or_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    numbers = re.findall(r"\d+", out.stdout)
    return int(numbers[0]) if numbers else 0


def wait_size(path: Path, size: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Until `path` holds `size` bytes (the client is receiving), or the client exits."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.1) + 1):
        if path.exists() and path.stat().st_size >= size:
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            return
        time.sleep(0.1)


@pytest.fixture
def published(node: NodeProcess, ffmpeg: str, sample_flv: Path) -> Iterator[tuple[NodeProcess, str]]:
    """The node with ffmpeg publishing the sample (looped, real time) to live/interop."""
    with ffmpeg_publish(ffmpeg, sample_flv, node.rtmp_url(APP, "interop")):
        wait_stream(node, "interop")
        yield node, "interop"


# ---- rtmpdump (librtmp) ---------------------------------------------------------------


def test_rtmpdump_plays_rtmp(published: tuple[NodeProcess, str], ffprobe: str, tmp_path: Path) -> None:
    rtmpdump = require_tool("rtmpdump", install="apt-get install rtmpdump")
    node, stream = published
    out = tmp_path / "rtmpdump.flv"
    proc = subprocess.Popen(
        [rtmpdump, "--live", "-q", "-r", node.rtmp_url(APP, stream), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_size(out, 400_000, proc)  # ~3 s of the 800 kbit/s sample
    finally:
        stop_process(proc)  # SIGTERM: rtmpdump closes the file cleanly
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    assert out.exists() and out.stat().st_size >= 400_000, f"rtmpdump got too little: {err}"
    assert decoded_frames(ffprobe, str(out)) >= MIN_FRAMES, err
    assert decoded_frames(ffprobe, str(out), "a:0") > 0, err


# ---- GStreamer ------------------------------------------------------------------------


def gst_launch() -> str:
    return require_tool(
        "gst-launch-1.0",
        install="apt-get install gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad "
        "gstreamer1.0-libav",
    )


def gst_play_frames(gst: str, source: list[str], frames: int = 90) -> tuple[int, str]:
    """Run `source ! flvdemux ! h264parse ! avdec_h264 ! fakesink` for `frames` decoded frames;
    (decoded raw-video buffers the sink saw, the output)."""
    pipeline = [*source, "!", "flvdemux", "name=d", "d.video", "!", "queue", "!", "h264parse"]
    pipeline += [
        "!",
        "avdec_h264",
        "!",
        "video/x-raw",
        "!",
        "fakesink",
        f"num-buffers={frames}",
        "silent=false",
    ]
    run = subprocess.run([gst, "-v", *pipeline], capture_output=True, text=True, timeout=60)
    output = run.stdout + run.stderr
    # fakesink -v prints one "chain" line per buffer it received: decoded pictures of 640x360 I420.
    chained = len(re.findall(r"fakesink0:sink\) \(345600 bytes", output))
    assert run.returncode == 0, output[-3000:]
    return chained, output


def test_gstreamer_rtmp2src_plays_rtmp(published: tuple[NodeProcess, str]) -> None:
    gst = gst_launch()
    node, stream = published
    chained, output = gst_play_frames(gst, ["rtmp2src", f"location={node.rtmp_url(APP, stream)}"])
    assert chained >= MIN_FRAMES, output[-3000:]


def test_gstreamer_souphttpsrc_plays_http_flv(published: tuple[NodeProcess, str]) -> None:
    gst = gst_launch()
    node, stream = published
    source = ["souphttpsrc", f"location={node.flv_url(APP, stream)}", "is-live=true"]
    chained, output = gst_play_frames(gst, source)
    assert chained >= MIN_FRAMES, output[-3000:]


def test_gstreamer_rtmp2sink_publishes(node: NodeProcess, sample_flv: Path, ffprobe: str) -> None:
    """GStreamer publishes the sample (remuxed, paced in real time) with rtmp2sink; ffprobe
    decodes it from the node over RTMP and HTTP-FLV while it runs."""
    gst = gst_launch()
    url = node.rtmp_url(APP, "gst")
    pipeline = ["filesrc", f"location={sample_flv}", "!", "flvdemux", "name=d"]
    pipeline += ["d.video", "!", "queue", "!", "h264parse", "!", "identity", "sync=true", "!"]
    pipeline += ["flvmux", "name=m", "streamable=true", "!", "rtmp2sink", f"location={url}"]
    pipeline += ["d.audio", "!", "queue", "!", "aacparse", "!", "identity", "sync=true", "!", "m."]
    proc = subprocess.Popen([gst, "-e", *pipeline], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_stream(node, "gst")
        probe = ["-read_intervals", "%+3"]
        assert decoded_frames(ffprobe, url, "v:0", probe) >= MIN_FRAMES
        assert decoded_frames(ffprobe, url, "a:0", probe) > 0
        assert decoded_frames(ffprobe, node.flv_url(APP, "gst"), "v:0", probe) >= MIN_FRAMES
    finally:
        stop_process(proc)
        if proc.stdout:
            proc.stdout.close()


# ---- VLC ------------------------------------------------------------------------------


@pytest.fixture
def vlc_dir() -> Iterator[Path]:
    """An output directory VLC's unprivileged user can write (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="liverelay-vlc-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def vlc_command(cvlc: str, home: Path) -> list[str]:
    """cvlc refuses to run as root: as root it runs as `nobody` (runuser, util-linux)."""
    if os.geteuid() != 0:
        return [cvlc]
    runuser = require_tool("runuser", install="apt-get install util-linux")
    return [runuser, "-u", "nobody", "--", "env", f"HOME={home}", cvlc]


@pytest.mark.parametrize("protocol", ["rtmp", "http-flv"])
def test_vlc_plays(published: tuple[NodeProcess, str], ffprobe: str, vlc_dir: Path, protocol: str) -> None:
    """VLC plays for 5 s and transcodes what it decoded to MPEG-2 video: the frames in its
    output are pictures VLC's own H.264 decoder produced."""
    cvlc = require_tool("cvlc", install="apt-get install vlc-bin vlc-plugin-base")
    node, stream = published
    url = node.rtmp_url(APP, stream) if protocol == "rtmp" else node.flv_url(APP, stream)
    out = vlc_dir / "vlc.ts"
    sout = f"#transcode{{vcodec=mp2v,vb=800,acodec=none}}:std{{access=file,mux=ts,dst={out}}}"
    args = [*vlc_command(cvlc, vlc_dir), "-q", "--run-time=5", "--play-and-exit", url, "--sout", sout]
    run = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.exists(), f"VLC wrote nothing (rc {run.returncode}): {run.stderr[-2000:]}"
    assert decoded_frames(ffprobe, str(out)) >= MIN_FRAMES, run.stderr[-2000:]
