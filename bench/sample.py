"""The benchmark samples (generated once, cached) and the real-time ffmpeg publisher."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .peers import ManagedProcess

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SAMPLE_SECONDS = 20  # ten 2 s GOPs; the publisher loops it


def ffmpeg_bin() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise RuntimeError("ffmpeg is not installed (apt-get install ffmpeg)")
    return path


@dataclass(frozen=True)
class SampleSpec:
    """How a sample is encoded: H.264 with fixed GOPs and no B-frames, AAC, as FLV."""

    name: str  # file name in the results directory
    size: str
    rate: int
    gop: int  # frames per GOP (keyframe interval, no scene-cut keyframes)
    video_bitrate: str
    audio_bitrate: str
    seconds: int = SAMPLE_SECONDS
    cbr: bool = False  # maxrate = bufsize = video_bitrate (the anchors' CBR-ish stream)
    zerolatency: bool = False

    def ffmpeg_args(self, out: Path) -> list[str]:
        args = [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-y"]
        args += ["-f", "lavfi", "-i", f"testsrc2=size={self.size}:rate={self.rate}"]
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(self.seconds)]
        args += ["-c:v", "libx264", "-preset", "veryfast"]
        if self.zerolatency:
            args += ["-tune", "zerolatency"]
        args += ["-g", str(self.gop), "-keyint_min", str(self.gop), "-sc_threshold", "0", "-bf", "0"]
        args += ["-b:v", self.video_bitrate]
        if self.cbr:
            args += ["-maxrate", self.video_bitrate, "-bufsize", self.video_bitrate]
        args += ["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", self.audio_bitrate]
        if self.cbr:
            args += ["-ac", "2"]
        return [*args, "-f", "flv", str(out)]


def anchor_spec(seconds: int = SAMPLE_SECONDS) -> SampleSpec:
    """1280x720@30 H.264 (2 s GOP, no B-frames, 2 Mbps CBR-ish) + AAC 128k: the same
    settings as the measured nginx-rtmp anchors."""
    return SampleSpec(
        f"sample-720p30-{seconds}s.flv",
        "1280x720",
        30,
        60,
        "2M",
        "128k",
        seconds=seconds,
        cbr=True,
        zerolatency=True,
    )


def encode_sample(spec: SampleSpec, directory: Path = RESULTS_DIR) -> Path:
    """The sample `spec` describes, made once in `directory` and reused."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / spec.name
    if out.exists() and out.stat().st_size > 0:
        return out
    tmp = out.with_suffix(".tmp.flv")
    subprocess.run(spec.ffmpeg_args(tmp), check=True, timeout=600)
    tmp.rename(out)
    return out


def ensure_sample(directory: Path = RESULTS_DIR, *, seconds: int = SAMPLE_SECONDS) -> Path:
    """The anchors' 720p30 sample (anchor_spec), made once and reused."""
    return encode_sample(anchor_spec(seconds), directory)


def sample_bitrate_bps(sample: Path, seconds: int = SAMPLE_SECONDS) -> float:
    """Average bytes per second of the sample (container included): the full viewer rate."""
    return sample.stat().st_size / seconds


def loop_sample(
    sample: Path, out: list[str], *, name: str = "publisher", log_path: Path | None = None
) -> ManagedProcess:
    """`ffmpeg -re -stream_loop -1 -i sample -c copy OUT...`: the sample in real time, forever."""
    args = [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1"]
    return ManagedProcess.spawn(name, [*args, "-i", str(sample), "-c", "copy", *out], log_path=log_path)


def start_publisher(sample: Path, url: str, *, name: str = "publisher") -> ManagedProcess:
    """`ffmpeg -re -stream_loop -1 -i sample -c copy -f flv URL`, as in the anchors."""
    return loop_sample(sample, ["-f", "flv", url], name=name)
