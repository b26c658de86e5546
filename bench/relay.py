"""Fixed relays (V4): node CPU and RSS per running relay, and time to first playable frame.

One nginx-rtmp origin publishes the 2 Mbps sample; our node gets K permanent fixed
relays of it (CreateRelaySourceV4 through the project's SDK, native RTMP source),
each into its own stream. Measured: node CPU (% of one core, process tree) and RSS
over a window with K relays running, minus the idle node; and, for the first few
relays, the time from CreateRelaySourceV4's response to a viewer's first keyframe.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from . import procstat
from .fanout import sample_rss_max
from .loadclient import make_viewer
from .ourapi import create_bench_domain, create_v4, node_config, service
from .peers import LiverelayNode, NginxRtmp
from .report import fmt, median, progress, save, span, table
from .sample import ensure_sample, start_publisher
from .ttff import GOP_S, start_probe, wait_phase

APP, STREAM = "live", "bench"


async def until_playable(url: str, since: float, timeout: float = 10.0) -> float | None:
    """Play `url` again and again until a video keyframe arrives; ms from `since` to it."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.05) + 1):
        v = make_viewer(0, url, True)
        await v.connect()
        for _ in range(int(timeout / 0.005) + 1):
            if v.stats.first_video_key_at is not None or v.closed.is_set() or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.005)
        key_at = v.stats.first_video_key_at
        v.close()
        if key_at is not None:
            return 1000.0 * (key_at - since)
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.05)
    return None


async def wait_hls(url: str, timeout: float = 30.0) -> None:
    """Until the origin's playlist lists a few segments (nginx-rtmp writes them as it goes)."""
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        for _ in range(int(timeout / 0.25) + 1):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as resp:
                    if resp.status == 200 and (await resp.text()).count("#EXTINF") >= 2:
                        return
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
    raise TimeoutError(f"{url} has no playlist after {timeout}s")


async def run_one(
    k: int, *, window_s: float, measure_first: int, source: str = "rtmp", idle_s: float = 3.0
) -> dict[str, Any]:
    """K fixed relays whose source is the origin over RTMP (native) or HLS (ffmpeg-backed)."""
    sample = ensure_sample()
    origin = NginxRtmp(name="origin", hls=source == "hls").start()
    pub = start_publisher(sample, origin.rtmp_url(APP, STREAM))
    node = LiverelayNode(config=node_config(), name="ours-relays").start()
    api = service(node)
    probe = None
    try:
        # Creates start at phases spread over the origin's GOP (as in the TTFF runs).
        probe = await start_probe(origin.rtmp_url(APP, STREAM))
        await create_bench_domain(api)
        await asyncio.sleep(1.0)
        idle_cpu = procstat.CpuWindow(node.pid, tree=True)
        idle_cpu.start()
        await asyncio.sleep(idle_s)
        idle = idle_cpu.stop()
        idle_rss = procstat.tree_rss_bytes(node.pid)

        if source == "hls":
            await wait_hls(origin.hls_url(STREAM))
        src = [origin.hls_url(STREAM) if source == "hls" else origin.rtmp_url(APP, STREAM)]
        start_timeout = 30.0 if source == "hls" else 10.0
        playable_ms: list[float | None] = []
        for i in range(k):
            if i < measure_first:
                await wait_phase(probe, GOP_S * i / measure_first)
            await create_v4(api, f"r{i}", src)
            t_resp = time.monotonic()
            if i < measure_first:
                playable_ms.append(await until_playable(node.rtmp_url(APP, f"r{i}"), t_resp, start_timeout))
        # Every relay must be delivering before the window (bounded: one probe each).
        not_playing = 0
        for i in range(k):
            if await until_playable(node.rtmp_url(APP, f"r{i}"), time.monotonic(), start_timeout) is None:
                not_playing += 1
        await asyncio.sleep(2.0)
        cpu_w = procstat.CpuWindow(node.pid, tree=True)
        cpu_w.start()
        rss_peak, _ = await sample_rss_max(node.pid, window_s)
        cpu = cpu_w.stop()
        rss = procstat.tree_rss_bytes(node.pid)
        out = {
            "source": source,
            "relays": k,
            "window_s": window_s,
            "idle_cpu_pct": idle.percent,
            "idle_rss_mb": idle_rss / 1e6,
            "cpu_pct": cpu.percent,
            "rss_mb": rss / 1e6,
            "rss_peak_mb": rss_peak / 1e6,
            "cpu_per_relay_pct": (cpu.percent - idle.percent) / k,
            "rss_per_relay_kb": (rss - idle_rss) / k / 1e3,
            "not_playing": not_playing,
            "playable_ms": playable_ms,
            "origin_probe_keyframes": probe.stats.keyframes,
            "playable_median_ms": median(playable_ms),
            "playable_span_ms": span(playable_ms),
        }
    finally:
        if probe is not None:
            probe.close()
        await api.aclose()
        node.stop()
        pub.stop()
        origin.stop()
    progress(
        f"  {k} {source} relays: CPU {fmt(out['cpu_pct'])} % ({fmt(out['cpu_per_relay_pct'], 3)} %/relay), "
        f"RSS {fmt(out['rss_mb'])} MB ({fmt(out['rss_per_relay_kb'])} kB/relay), create->playable median "
        f"{fmt(out['playable_median_ms'], 0)} ms, not playing {not_playing}"
    )
    return out


async def run(
    counts: list[int], *, window_s: float = 20.0, measure_first: int = 10, hls_counts: list[int] | None = None
) -> dict[str, Any]:
    results = []
    plan = [("rtmp", k) for k in counts] + [("hls", k) for k in hls_counts or []]
    for source, k in plan:
        progress(
            f"relay: {k} fixed relays ({'native RTMP' if source == 'rtmp' else 'ffmpeg-backed HLS'} source)"
        )
        try:
            results.append(
                await run_one(k, window_s=window_s, measure_first=min(measure_first, k), source=source)
            )
        except Exception as exc:
            progress(f"  {k} {source} relays FAILED: {exc!r}")
            results.append({"source": source, "relays": k, "failed": repr(exc)})
    print(render(results))
    path = save("relay", {"params": {"counts": counts, "window_s": window_s}, "runs": results})
    progress(f"relay results saved to {path}")
    return {
        f"{r['source']}x{r['relays']}": {k: v for k, v in r.items() if k != "playable_ms"} for r in results
    }


def render(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        if "failed" in r:
            rows.append([r["source"], str(r["relays"]), "failed", "", "", "", "", ""])
            continue
        sp = r["playable_span_ms"]
        rows.append(
            [
                r["source"],
                str(r["relays"]),
                fmt(r["cpu_pct"]),
                fmt(r["cpu_per_relay_pct"], 3),
                fmt(r["rss_mb"]),
                fmt(r["rss_per_relay_kb"]),
                fmt(r["playable_median_ms"], 0),
                f"{fmt(sp[0], 0)}-{fmt(sp[1], 0)}" if sp else "-",
            ]
        )
    return "fixed relays (V4, 2.2 Mbit/s each; CPU/RSS of the node's process tree)\n" + table(
        [
            "source",
            "relays",
            "node CPU %",
            "CPU %/relay",
            "RSS MB",
            "RSS kB/relay",
            "create->playable ms",
            "min-max",
        ],
        rows,
    )
