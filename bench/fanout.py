"""Fan-out: CPU and RSS of one server process at N viewers, nginx-rtmp vs ours.

Per run (fresh server each time): start the server, publish the sample in real
time, wait until it plays, measure idle CPU/RSS, connect N viewers (1 in 10
parsed), warm up, then measure a window: server CPU (% of one core), RSS, viewer
byte rates, media/wall ratio of the parsed ones. The load client's own CPU is
recorded too: if it nears 100 % the client, not the server, is the limit.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import procstat
from .loadclient import Viewer, ViewerPool, make_viewer
from .ourapi import node_config
from .peers import LiverelayNode, NginxRtmp
from .report import progress, render_sweep, save, summarize_sweep, sweep
from .sample import ensure_sample, sample_bitrate_bps, start_publisher

APP, STREAM = "live", "bench"


@dataclass(frozen=True)
class Target:
    label: str
    server: str  # "nginx" | "ours"
    protocol: str  # "rtmp" | "flv"


TARGETS = {
    "nginx-rtmp": Target("nginx-rtmp", "nginx", "rtmp"),
    "ours-rtmp": Target("ours-rtmp", "ours", "rtmp"),
    "ours-flv": Target("ours-flv", "ours", "flv"),
}


def start_server(target: Target) -> NginxRtmp | LiverelayNode:
    if target.server == "nginx":
        return NginxRtmp().start()
    return LiverelayNode(config=node_config()).start()


def play_url(server: NginxRtmp | LiverelayNode, protocol: str) -> str:
    if protocol == "flv":
        assert isinstance(server, LiverelayNode), "nginx-rtmp (Debian module) has no HTTP-FLV"
        return server.flv_url(APP, STREAM)
    return server.rtmp_url(APP, STREAM)


async def poll_keyframe(v: Viewer, timeout: float, poll_s: float) -> None:
    """Return once the connected viewer `v` has its first video keyframe, or is closed, or
    `timeout` s have passed (its stats say which)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / poll_s) + 1):
        if v.stats.first_video_key_at is not None or v.closed.is_set() or time.monotonic() > deadline:
            return
        await asyncio.sleep(poll_s)


async def keyframe_at(
    url: str, timeout: float, *, poll_s: float, retry_s: float
) -> tuple[float | None, str | None]:
    """Play `url` with a parsed viewer, again `retry_s` after each one that ends without a
    video keyframe, until one arrives or `timeout` s have passed: (the monotonic time it
    arrived, None), or (None, the last viewer's error). Each viewer is polled every `poll_s`."""
    deadline = time.monotonic() + timeout
    last_error = None
    for _ in range(int(timeout / retry_s) + 1):
        v = make_viewer(0, url, True)
        await v.connect()
        await poll_keyframe(v, max(0.0, deadline - time.monotonic()), poll_s)
        key_at = v.stats.first_video_key_at
        last_error = v.stats.error
        v.close()
        if key_at is not None:
            return key_at, None
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(retry_s)
    return None, last_error


async def wait_playable(url: str, timeout: float = 15.0) -> float:
    """Retry a parsed viewer until it sees a video keyframe; returns the seconds that took."""
    t0 = time.monotonic()
    key_at, last_error = await keyframe_at(url, timeout, poll_s=0.05, retry_s=0.25)
    if key_at is None:
        raise TimeoutError(f"{url} not playable after {timeout}s ({last_error})")
    return time.monotonic() - t0


async def sample_rss_max(pid: int, seconds: float, every: float = 1.0) -> tuple[int, int]:
    """Sleep `seconds` while sampling RSS; returns (max, last)."""
    peak = last = 0
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / every) + 2):
        last = procstat.rss_bytes(pid)
        peak = max(peak, last)
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await asyncio.sleep(min(every, left))
    return peak, last


async def run_one(
    target: Target,
    n: int,
    *,
    sample: Path,
    window_s: float,
    warmup_s: float,
    idle_s: float = 5.0,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    server = start_server(target)
    publisher = None
    pool: ViewerPool | None = None
    profiler = None
    try:
        publisher = start_publisher(sample, server.rtmp_url(APP, STREAM))
        url = play_url(server, target.protocol)
        await wait_playable(url)
        await asyncio.sleep(1.0)
        idle_cpu = procstat.CpuWindow(server.pid)
        idle_cpu.start()
        await asyncio.sleep(idle_s)
        idle = idle_cpu.stop()
        idle_rss = procstat.rss_bytes(server.pid)

        pool = ViewerPool(url, n)
        t_ramp = time.monotonic()
        await pool.start(progress=lambda k: progress(f"  {target.label}: {k}/{n} viewers connecting"))
        ramp_s = time.monotonic() - t_ramp
        await asyncio.sleep(warmup_s)

        if profile_to is not None:
            from .profile import start_pyspy

            profiler = start_pyspy(server.pid, window_s, profile_to)
        pool.mark()
        server_cpu = procstat.CpuWindow(server.pid)
        client_cpu = procstat.CpuWindow(os.getpid())
        server_cpu.start()
        client_cpu.start()
        rss_peak, rss_end = await sample_rss_max(server.pid, window_s)
        cpu = server_cpu.stop()
        ccpu = client_cpu.stop()
        summary = pool.summary(sample_bitrate_bps(sample))
        if publisher.proc.poll() is not None:
            summary["publisher_exited"] = publisher.proc.returncode
        cpu_per_viewer = (cpu.percent - idle.percent) / n if n else None
        rss_per_viewer = (rss_end - idle_rss) / n if n else None
        return {
            "target": target.label,
            "viewers": n,
            "window_s": window_s,
            "ramp_s": ramp_s,
            "idle_cpu_pct": idle.percent,
            "idle_rss_mb": idle_rss / 1e6,
            "cpu_pct": cpu.percent,
            "cpu_user_pct": cpu.user_percent,
            "cpu_sys_pct": cpu.sys_percent,
            "rss_mb": rss_end / 1e6,
            "rss_peak_mb": rss_peak / 1e6,
            "cpu_per_viewer_pct": cpu_per_viewer,
            "rss_per_viewer_kb": None if rss_per_viewer is None else rss_per_viewer / 1e3,
            "client_cpu_pct": ccpu.percent,
            "loadavg_1m": os.getloadavg()[0],
            **summary,
        }
    finally:
        if profiler is not None:
            profiler.stop()
        if pool is not None:
            await pool.close()
        if publisher is not None:
            publisher.stop()
        server.stop()


METRICS = (
    ("cpu_pct", "CPU %"),
    ("rss_mb", "RSS MB"),
    ("cpu_per_viewer_pct", "CPU %/viewer"),
    ("rss_per_viewer_kb", "RSS kB/viewer"),
    ("full_rate", "full-rate viewers"),
    ("media_wall_min", "media/wall min"),
    ("media_wall_median", "media/wall med"),
    ("client_cpu_pct", "client CPU %"),
)


async def run(
    viewers: list[int],
    targets: list[str],
    *,
    repeat: int,
    window_s: float,
    warmup_s: float,
    profile: bool = False,
) -> dict[str, Any]:
    sample = ensure_sample()

    async def one(label: str, n: int, rep: int) -> dict[str, Any]:
        prof = None
        if profile and rep == 0 and TARGETS[label].server == "ours":
            prof = Path(__file__).resolve().parent / "results" / f"pyspy-{label}-{n}.txt"
        return await run_one(
            TARGETS[label], n, sample=sample, window_s=window_s, warmup_s=warmup_s, profile_to=prof
        )

    runs = await sweep("fanout", viewers, targets, repeat, METRICS, one)
    summary = summarize(runs, viewers, targets)
    path = save(
        "fanout",
        {
            "params": {
                "viewers": viewers,
                "targets": targets,
                "repeat": repeat,
                "window_s": window_s,
                "warmup_s": warmup_s,
            },
            "runs": runs,
            "medians": summary,
        },
    )
    print(render(summary, viewers, targets))
    progress(f"fanout results saved to {path}")
    return summary


def summarize(runs: list[dict[str, Any]], viewers: list[int], targets: list[str]) -> dict[str, Any]:
    out = summarize_sweep(runs, viewers, targets, METRICS)
    for label in targets:
        slope = marginal(out, label, viewers)
        if slope is not None:
            out[f"{label}@marginal"] = {"cpu_pct_per_viewer": slope[0], "rss_kb_per_viewer": slope[1]}
    return out


def render(summary: dict[str, Any], viewers: list[int], targets: list[str]) -> str:
    text = render_sweep(
        "fan-out (medians of repeats)",
        summary,
        viewers,
        targets,
        METRICS,
        digits={"cpu_per_viewer_pct": 4, "media_wall_min": 3, "media_wall_median": 3},
        baseline="nginx-rtmp",
        compared=targets,
        ratio_keys=("cpu_pct", "rss_mb", "cpu_per_viewer_pct", "rss_per_viewer_kb"),
    )
    lines = []
    for label in targets:
        slope = marginal(summary, label, viewers)
        if slope is not None:
            lines.append(
                f"{label}: marginal cost per viewer ({min(viewers)}->{max(viewers)}): "
                f"{slope[0]:.4f} % CPU, {slope[1]:.1f} kB RSS"
            )
    return text + ("\n" + "\n".join(lines) if lines else "")


def marginal(summary: dict[str, Any], label: str, viewers: list[int]) -> tuple[float, float] | None:
    """(CPU %, RSS kB) per added viewer between the smallest and the largest N: no idle
    baseline needed, so it is steadier than the per-viewer column at small N."""
    lo, hi = min(viewers), max(viewers)
    a, b = summary.get(f"{label}@{lo}"), summary.get(f"{label}@{hi}")
    if hi == lo or not a or not b or None in (a["cpu_pct"], b["cpu_pct"], a["rss_mb"], b["rss_mb"]):
        return None
    return (b["cpu_pct"] - a["cpu_pct"]) / (hi - lo), (b["rss_mb"] - a["rss_mb"]) * 1e3 / (hi - lo)
