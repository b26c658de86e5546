"""Origin republish: how long after the origin's own viewer does the edge's viewer get media
again when the publisher at the origin dies and comes back?

One nginx-rtmp origin, ffmpeg publishing the sample to it. Two edges pull it: nginx-rtmp
(`pull rtmp://127.0.0.1:ORIGIN/live;`) and our node (V3 play-triggered, one origin). One
parsed RTMP viewer plays the origin directly and one plays each edge, all in this process
with the same client. Per run: the publisher is SIGKILLed, both viewers' media stops, the
publisher is started again, and for each viewer the arrival of its first video frame after
the restart is recorded. Reported per edge: the delay edge viewer - origin viewer (median,
min, max over the runs) and whether the edge viewer kept its connection.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

from liverelay.media.frame import Frame, FrameKind

from .fanout import wait_playable
from .ourapi import make_v3_edge, node_config
from .peers import LiverelayNode, ManagedProcess, NginxRtmp
from .report import fmt, median, progress, save, span, table
from .rtmpviewer import RtmpViewer
from .sample import ensure_sample, start_publisher

APP, STREAM = "live", "bench"
QUIET_S = 0.4  # no frame on any viewer for this long = the publisher is gone everywhere
WAIT_S = 15.0  # bound on each wait (media stops / returns)


class ArrivalViewer(RtmpViewer):
    """A parsed RTMP viewer that keeps the arrival time of every coded video frame."""

    def __init__(self, url: str) -> None:
        super().__init__(0, url, parsed=True)
        self.video_at: list[float] = []
        self.connects = 0

    def on_connected(self, transport: asyncio.Transport) -> None:
        super().on_connected(transport)
        self.connects += 1

    def emit(self, frames: list[Frame]) -> None:
        super().emit(frames)
        now = time.monotonic()
        self.video_at.extend(now for f in frames if f.kind == FrameKind.VIDEO and not f.config)

    def last_video(self) -> float:
        return self.video_at[-1] if self.video_at else 0.0

    def first_video_after(self, t: float) -> float | None:
        return next((a for a in self.video_at if a > t), None)


async def _until(pred: Any, timeout: float, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / step) + 1):
        if pred():
            return True
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(step)
    return bool(pred())


async def _keep_watching(v: ArrivalViewer) -> None:
    """Reconnect the viewer when the server closes it (players do), bounded."""
    for _ in range(1000):
        await v.closed.wait()
        if v._closing:
            return
        await asyncio.sleep(0.05)
        await v.connect()


async def run(runs: int = 5) -> dict[str, Any]:
    sample = ensure_sample()
    origin = NginxRtmp(name="origin").start()
    nginx_edge = NginxRtmp(pulls=[f"rtmp://127.0.0.1:{origin.rtmp_port}/{APP}"], name="nginx-edge").start()
    ours = LiverelayNode(config=node_config(), name="ours-edge").start()
    pub: ManagedProcess | None = start_publisher(sample, origin.rtmp_url(APP, STREAM))
    viewers: dict[str, ArrivalViewer] = {}
    keepers: list[asyncio.Task[None]] = []
    try:
        await make_v3_edge(ours, [f"127.0.0.1:{origin.rtmp_port}"])
        await wait_playable(origin.rtmp_url(APP, STREAM))
        urls = {
            "origin": origin.rtmp_url(APP, STREAM),
            "nginx-edge": nginx_edge.rtmp_url(APP, STREAM),
            "ours-edge": ours.rtmp_url(APP, STREAM),
        }
        for name, url in urls.items():
            v = ArrivalViewer(url)
            await v.connect()
            viewers[name] = v
            keepers.append(asyncio.get_running_loop().create_task(_keep_watching(v)))
        if not await _until(lambda: all(v.video_at for v in viewers.values()), WAIT_S):
            raise RuntimeError(
                f"not every viewer plays: {[(n, len(v.video_at)) for n, v in viewers.items()]}"
            )
        results: list[dict[str, Any]] = []
        for i in range(runs):
            await asyncio.sleep(2.5)  # some steady playback before each kill
            assert pub is not None
            pub.kill(signal.SIGKILL)
            pub = None

            def quiet() -> bool:
                now = time.monotonic()
                return all(now - v.last_video() >= QUIET_S for v in viewers.values())

            await _until(quiet, WAIT_S)
            connects = {n: v.connects for n, v in viewers.items()}
            restart = time.monotonic()
            pub = start_publisher(sample, origin.rtmp_url(APP, STREAM))
            await _until(lambda t=restart: all(v.first_video_after(t) for v in viewers.values()), WAIT_S)
            first = {n: v.first_video_after(restart) for n, v in viewers.items()}
            row: dict[str, Any] = {
                "run": i,
                "first_after_restart_s": {n: None if t is None else t - restart for n, t in first.items()},
            }
            base = first["origin"]
            for name in ("nginx-edge", "ours-edge"):
                t = first[name]
                row[f"{name}_delay_ms"] = None if t is None or base is None else 1000 * (t - base)
                row[f"{name}_reconnects"] = viewers[name].connects - connects[name]
            results.append(row)
            progress(
                f"republish run {i + 1}/{runs}: nginx edge {fmt(row['nginx-edge_delay_ms'])} ms, "
                f"ours {fmt(row['ours-edge_delay_ms'])} ms after the origin's viewer"
            )
    finally:
        for task in keepers:
            task.cancel()
        for v in viewers.values():
            v.close()
        if pub is not None:
            pub.stop()
        ours.stop()
        nginx_edge.stop()
        origin.stop()
    out: dict[str, Any] = {"runs": results}
    for name in ("nginx-edge", "ours-edge"):
        delays = [r[f"{name}_delay_ms"] for r in results]
        out[name] = {
            "median_delay_ms": median(delays),
            "span_ms": span(delays),
            "missed": sum(1 for d in delays if d is None),
            "reconnects": sum(r[f"{name}_reconnects"] for r in results),
        }
    out["table"] = render(out)
    save("republish", out)
    return out


def render(out: dict[str, Any]) -> str:
    rows = []
    for name in ("nginx-edge", "ours-edge"):
        r = out[name]
        lo_hi = r["span_ms"]
        rows.append(
            [
                name,
                fmt(r["median_delay_ms"]),
                "-" if lo_hi is None else f"{fmt(lo_hi[0])}..{fmt(lo_hi[1])}",
                r["missed"],
                r["reconnects"],
            ]
        )
    headers = ["edge", "median delay after origin viewer (ms)", "min..max", "missed", "viewer reconnects"]
    return table(headers, rows)


if __name__ == "__main__":
    print(asyncio.run(run())["table"])
