"""Fixed relays (V4): node CPU and RSS per running relay, and time to first playable frame.

One origin publishes the 2 Mbps sample; our node gets K permanent fixed
relays of it (CreateRelaySourceV4 through the project's SDK, native RTMP source),
each into its own stream. Measured: node CPU (% of one core, process tree) and RSS
over a window with K relays running, minus the idle node; and, for the first few
relays, the time from CreateRelaySourceV4's response to a viewer's first keyframe and
to the relay's DescribeRelayStatus row showing State "up".

The origin is nginx-rtmp (no GOP cache: create -> playable includes the wait for its
next keyframe) or a second node of ours (`origin="ours"`, GOP cache: create -> playable
is the config-to-data-plane latency itself).

`python -m bench.relay --edge [--viewers 10] [--repeat 5] [--window 15] [--base SRC]`: one
relayed stream side by side with nginx-rtmp. An nginx-rtmp origin gets the 2 Mbps sample; two
edges run at the same time and pull it, an nginx-rtmp edge (`pull rtmp://ORIGIN/live;`) and our
node (V3, play-triggered, one origin), each with the same number of RTMP viewers from the
same client. Measured per window, over the same seconds for both: each edge's CPU (% of
one core, user and system apart) and the ratio ours / nginx-rtmp; medians over the windows.
`--base SRC` adds a third edge: our node run from another source tree (e.g. `git archive
main src | tar -x -C /tmp/edge-base` and `--base /tmp/edge-base/src`), pulling the same
origin with the same viewers, so before and after are measured in the same windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from liverelay.sdk import AsyncLiveService

from . import procstat
from .fanout import keyframe_at, sample_rss_max
from .loadclient import make_viewer
from .ourapi import create_bench_domain, create_v4, make_v3_edge, node_config, service
from .peers import LiverelayNode, NginxRtmp, python_path
from .report import fmt, median, progress, save, span, table
from .sample import ensure_sample, start_publisher
from .ttff import GOP_S, start_probe, wait_phase

FULL_RATE_BPS = 273_000  # the sample's average byte rate (as bench.compare)

APP, STREAM = "live", "bench"


async def until_playable(url: str, since: float, timeout: float = 10.0) -> float | None:
    """Play `url` again and again until a video keyframe arrives; ms from `since` to it."""
    key_at, _error = await keyframe_at(url, timeout, poll_s=0.005, retry_s=0.05)
    return None if key_at is None else 1000.0 * (key_at - since)


async def until_up(api: AsyncLiveService, stream: str, since: float, timeout: float = 10.0) -> float | None:
    """Poll DescribeRelayStatus every ~20 ms until `stream`'s fixed relay is "up"; ms from `since`."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.02) + 1):
        envelope = await api.describe_relay_status({"Type": "fixed", "Stream": stream})
        rows = (envelope.get("Result") or {}).get("RelayStatusList") or []
        if any(row.get("State") == "up" for row in rows):
            return 1000.0 * (time.monotonic() - since)
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
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
    k: int,
    *,
    window_s: float,
    measure_first: int,
    source: str = "rtmp",
    origin_kind: str = "nginx",
    idle_s: float = 3.0,
    node_extra: str = "",
) -> dict[str, Any]:
    """K fixed relays whose source is the origin over RTMP or HLS (native, or ffmpeg per node_extra)."""
    if origin_kind == "ours" and source == "hls":
        raise ValueError("an HLS source needs the nginx-rtmp origin (it writes the playlist)")
    sample = ensure_sample()
    origin: NginxRtmp | LiverelayNode
    if origin_kind == "ours":
        origin = LiverelayNode(config=node_config(), name="ours-origin").start()
    else:
        origin = NginxRtmp(name="origin", hls=source == "hls").start()
    pub = start_publisher(sample, origin.rtmp_url(APP, STREAM))
    node = LiverelayNode(config=node_config(extra=node_extra), name="ours-relays").start()
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
        up_ms: list[float | None] = []
        for i in range(k):
            if i < measure_first:
                await wait_phase(probe, GOP_S * i / measure_first)
            await create_v4(api, f"r{i}", src)
            t_resp = time.monotonic()
            if i < measure_first:
                playable, up = await asyncio.gather(
                    until_playable(node.rtmp_url(APP, f"r{i}"), t_resp, start_timeout),
                    until_up(api, f"r{i}", t_resp, start_timeout),
                )
                playable_ms.append(playable)
                up_ms.append(up)
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
            "origin": origin_kind,
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
            "up_ms": up_ms,
            "up_median_ms": median(up_ms),
            "up_span_ms": span(up_ms),
        }
    finally:
        if probe is not None:
            probe.close()
        await api.aclose()
        node.stop()
        pub.stop()
        origin.stop()
    progress(
        f"  {k} {source} relays ({origin_kind} origin): CPU {fmt(out['cpu_pct'])} % "
        f"({fmt(out['cpu_per_relay_pct'], 3)} %/relay), "
        f"RSS {fmt(out['rss_mb'])} MB ({fmt(out['rss_per_relay_kb'])} kB/relay), create->playable median "
        f"{fmt(out['playable_median_ms'], 0)} ms, create->up median {fmt(out['up_median_ms'], 0)} ms, "
        f"not playing {not_playing}"
    )
    return out


async def run(
    counts: list[int],
    *,
    window_s: float = 20.0,
    measure_first: int = 10,
    hls_counts: list[int] | None = None,
    origin: str = "nginx",
) -> dict[str, Any]:
    results = []
    plan = [("rtmp", k) for k in counts] + [("hls", k) for k in hls_counts or []]
    for source, k in plan:
        progress(
            f"relay: {k} fixed relays ({'native RTMP' if source == 'rtmp' else 'HLS'} source, "
            f"{origin} origin)"
        )
        try:
            results.append(
                await run_one(
                    k,
                    window_s=window_s,
                    measure_first=min(measure_first, k),
                    source=source,
                    origin_kind=origin,
                )
            )
        except Exception as exc:
            progress(f"  {k} {source} relays FAILED: {exc!r}")
            results.append({"source": source, "origin": origin, "relays": k, "failed": repr(exc)})
    print(render(results))
    path = save(
        "relay", {"params": {"counts": counts, "window_s": window_s, "origin": origin}, "runs": results}
    )
    progress(f"relay results saved to {path}")
    return {
        f"{r['source']}x{r['relays']}" + ("" if origin == "nginx" else f"/{origin} origin"): {
            k: v for k, v in r.items() if k not in ("playable_ms", "up_ms")
        }
        for r in results
    }


def render(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        if "failed" in r:
            rows.append([r["source"], r.get("origin", "nginx"), str(r["relays"]), "failed"] + [""] * 7)
            continue
        sp, up = r["playable_span_ms"], r["up_span_ms"]
        rows.append(
            [
                r["source"],
                r.get("origin", "nginx"),
                str(r["relays"]),
                fmt(r["cpu_pct"]),
                fmt(r["cpu_per_relay_pct"], 3),
                fmt(r["rss_mb"]),
                fmt(r["rss_per_relay_kb"]),
                fmt(r["playable_median_ms"], 0),
                f"{fmt(sp[0], 0)}-{fmt(sp[1], 0)}" if sp else "-",
                fmt(r["up_median_ms"], 0),
                f"{fmt(up[0], 0)}-{fmt(up[1], 0)}" if up else "-",
            ]
        )
    return "fixed relays (V4, 2.2 Mbit/s each; CPU/RSS of the node's process tree)\n" + table(
        [
            "source",
            "origin",
            "relays",
            "node CPU %",
            "CPU %/relay",
            "RSS MB",
            "RSS kB/relay",
            "create->playable ms",
            "min-max",
            "create->up ms",
            "min-max",
        ],
        rows,
    )


def start_node_from(src: str | None, name: str) -> LiverelayNode:
    """Our node, from this tree or (src) from another tree's `src` directory."""
    with python_path(src):
        return LiverelayNode(config=node_config(), name=name).start()


async def run_edge(
    viewers: int = 10,
    *,
    repeat: int = 5,
    window_s: float = 15.0,
    profile: bool = False,
    base_src: str | None = None,
) -> dict[str, Any]:
    """One stream relayed by an nginx-rtmp edge and by our edge, side by side (module doc)."""
    sample = ensure_sample()
    origin = NginxRtmp(name="origin").start()
    pub = start_publisher(sample, origin.rtmp_url(APP, STREAM))
    nginx_edge = NginxRtmp(pulls=[f"rtmp://127.0.0.1:{origin.rtmp_port}/{APP}"], name="nginx-edge").start()
    ours = LiverelayNode(config=node_config(), name="ours-edge").start()
    base = start_node_from(base_src, "base-edge") if base_src else None
    nodes = [("ours", ours)] + ([("base", base)] if base is not None else [])
    edges: list[tuple[str, NginxRtmp | LiverelayNode]] = [("nginx-rtmp", nginx_edge), *nodes]
    names = [name for name, _ in edges]
    watchers = []
    windows: list[dict[str, Any]] = []
    try:
        for _, node in nodes:
            await make_v3_edge(node, [f"127.0.0.1:{origin.rtmp_port}"])
        probe = await start_probe(origin.rtmp_url(APP, STREAM))  # the origin plays
        probe.close()
        idle = {}
        for name, edge in edges:
            w = procstat.CpuWindow(edge.pid)
            w.start()
            await asyncio.sleep(2.0)
            idle[name] = w.stop().percent
        for name, edge in edges:
            url = edge.rtmp_url(APP, STREAM)
            group = [make_viewer(i, url, i == 0) for i in range(viewers)]
            for v in group:
                await v.connect()
            watchers.append((name, edge, group))
        await asyncio.sleep(4.0)  # both pulls up, viewers past their join burst
        if profile:  # py-spy over our edge for one window first (not a measured window)
            from .profile import start_pyspy

            spy_out = Path(__file__).resolve().parent / "results" / "pyspy-edge.txt"
            profiler = start_pyspy(ours.pid, window_s, spy_out)
            if profiler is not None:
                await asyncio.sleep(window_s)
                profiler.stop()
                progress(f"  profile: {spy_out.with_suffix('.top.txt')}")
        for n in range(repeat):
            cpu = {name: procstat.CpuWindow(edge.pid) for name, edge, _ in watchers}
            for w in cpu.values():
                w.start()
            t0 = time.monotonic()
            for _, _, group in watchers:
                for v in group:
                    v.stats.mark(t0)
            load = Path("/proc/loadavg").read_text().split()[0]
            await asyncio.sleep(window_s)
            now = time.monotonic()
            row: dict[str, Any] = {"window": n, "load1": float(load)}
            for name, _, group in watchers:
                usage = cpu[name].stop()
                rates = [v.stats.byte_rate_since_mark(now) for v in group]
                row[name] = {
                    "cpu_pct": usage.percent,
                    "user_pct": usage.user_percent,
                    "sys_pct": usage.sys_percent,
                    "rate_median_bps": median(rates),
                    "full_rate": sum(r >= 0.9 * FULL_RATE_BPS for r in rates),
                    "errors": sum(v.stats.error is not None for v in group),
                }
            nginx_cpu = max(row["nginx-rtmp"]["cpu_pct"], 0.05)
            row["ratio"] = row["ours"]["cpu_pct"] / nginx_cpu
            extra = ""
            if base is not None:
                row["ratio_base"] = row["base"]["cpu_pct"] / nginx_cpu
                extra = f", base {fmt(row['base']['cpu_pct'], 3)} % (ratio {fmt(row['ratio_base'], 2)})"
            windows.append(row)
            progress(
                f"  edge window {n + 1}/{repeat} (load {load}): nginx-rtmp "
                f"{fmt(row['nginx-rtmp']['cpu_pct'], 3)} %, ours {fmt(row['ours']['cpu_pct'], 3)} % "
                f"(ratio {fmt(row['ratio'], 2)}){extra}, full rate "
                + " and ".join(f"{row[name]['full_rate']}/{viewers}" for name in names)
            )
    finally:
        for _, _, group in watchers:
            for v in group:
                v.close()
        for _, node in nodes:
            node.stop()
        nginx_edge.stop()
        pub.stop()
        origin.stop()
    out: dict[str, Any] = {
        "viewers": viewers,
        "window_s": window_s,
        "base_src": base_src,
        "idle_cpu_pct": idle,
        "windows": windows,
        "median": {
            name: {k: median([w[name][k] for w in windows]) for k in ("cpu_pct", "user_pct", "sys_pct")}
            for name in names
        },
        "ratio_median": median([w["ratio"] for w in windows]),
        "load1_median": median([w["load1"] for w in windows]),
    }
    if base is not None:
        out["ratio_base_median"] = median([w["ratio_base"] for w in windows])
    med = out["median"]
    print(
        table(
            ["edge", "CPU %", "user % (ticks)", "sys % (ticks)", "idle before viewers %"],
            [
                [
                    name,
                    fmt(med[name]["cpu_pct"], 3),
                    fmt(med[name]["user_pct"]),
                    fmt(med[name]["sys_pct"]),
                    fmt(idle[name], 3),
                ]
                for name in names
            ],
        )
    )
    base_note = f", base / nginx-rtmp = {fmt(out['ratio_base_median'], 2)}" if base is not None else ""
    progress(
        f"edge: ours / nginx-rtmp = {fmt(out['ratio_median'], 2)}{base_note} (median of {len(windows)} "
        f"windows, load1 median {fmt(out['load1_median'])})"
    )
    params = {"viewers": viewers, "repeat": repeat, "window_s": window_s, "base_src": base_src}
    path = save("edge", {"params": params, **out})
    progress(f"edge results saved to {path}")
    return out


if __name__ == "__main__":
    import argparse

    from .peers import kill_all

    parser = argparse.ArgumentParser(prog="python -m bench.relay")
    parser.add_argument("--edge", action="store_true", help="one relayed stream, ours vs nginx-rtmp")
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--profile", action="store_true", help="py-spy our edge for one window first")
    parser.add_argument("--base", metavar="SRC", help="also run our node from this src dir (before/after)")
    args = parser.parse_args()
    if not args.edge:
        parser.error("use `python -m bench relay` for the fixed-relay runs; --edge here")
    try:
        asyncio.run(
            run_edge(
                args.viewers,
                repeat=args.repeat,
                window_s=args.window,
                profile=args.profile,
                base_src=args.base,
            )
        )
    finally:
        kill_all()
