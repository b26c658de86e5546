"""The benchmark sample (generated once, cached) and the real-time ffmpeg publisher."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .peers import ManagedProcess

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SAMPLE_SECONDS = 20  # ten 2 s GOPs; the publisher loops it


def ffmpeg_bin() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise RuntimeError("ffmpeg is not installed (apt-get install ffmpeg)")
    return path


def ensure_sample(directory: Path = RESULTS_DIR, *, seconds: int = SAMPLE_SECONDS) -> Path:
    """1280x720@30 H.264 (2 s GOP, no B-frames, 2 Mbps CBR-ish) + AAC 128k, as FLV.

    The same settings as the measured nginx-rtmp anchors; made once and reused.
    """
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"sample-720p30-{seconds}s.flv"
    if out.exists() and out.stat().st_size > 0:
        return out
    tmp = out.with_suffix(".tmp.flv")
    subprocess.run(
        [
            ffmpeg_bin(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-bf",
            "0",
            "-b:v",
            "2M",
            "-maxrate",
            "2M",
            "-bufsize",
            "2M",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-ac",
            "2",
            "-f",
            "flv",
            str(tmp),
        ],
        check=True,
        timeout=600,
    )
    tmp.rename(out)
    return out


def sample_bitrate_bps(sample: Path, seconds: int = SAMPLE_SECONDS) -> float:
    """Average bytes per second of the sample (container included): the full viewer rate."""
    return sample.stat().st_size / seconds


def start_publisher(sample: Path, url: str, *, name: str = "publisher") -> ManagedProcess:
    """`ffmpeg -re -stream_loop -1 -i sample -c copy -f flv URL`, as in the anchors."""
    args = [
        ffmpeg_bin(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-stream_loop",
        "-1",
        "-i",
        str(sample),
        "-c",
        "copy",
        "-f",
        "flv",
        url,
    ]
    return ManagedProcess.spawn(name, args)
