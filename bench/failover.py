"""Failover: what a viewer of the edge sees when an origin is down or dies.

1. Origins [dead, alive] (dead = a refused port): does the stream play at all?
   Our edge tries the list in order; nginx-rtmp's pull does not fail over.
2. Origins [A, B], both alive with the same stream; the edge pulls A; A is killed
   (SIGKILL). Per viewer: the gap (last frame before -> first frame after) and how
   many times it had to reconnect (viewers here reconnect on their own, like players).
Both edges pull the same nginx-rtmp origins; viewers use the same RTMP client.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .loadclient import ViewerPool
from .ourapi import make_v3_edge, node_config, wait_no_play_pulls
from .peers import LiverelayNode, NginxRtmp, free_port
from .report import fmt, median, progress, save, table
from .sample import ensure_sample, start_publisher
from .ttff import first_keyframe

APP, STREAM = "live", "bench"
GAP_LOG_S = 0.2  # at 30 fps + audio a healthy stream never pauses this long


COLD_LINGER_S = 0.5  # our edge drops an unwatched pull this fast: every [dead, alive] run is cold


async def start_our_edge(origins: list[int]) -> LiverelayNode:
    edge = LiverelayNode(config=node_config(linger_s=COLD_LINGER_S), name="ours-edge").start()
    await make_v3_edge(edge, [f"127.0.0.1:{p}" for p in origins])
    return edge


def start_nginx_edge(origins: list[int]) -> NginxRtmp:
    return NginxRtmp(pulls=[f"rtmp://127.0.0.1:{p}/{APP}" for p in origins], name="nginx-edge").start()


async def dead_first(kind: str, runs: int) -> dict[str, Any]:
    """Origins [refused, alive]: TTFF or the error, per run."""
    sample = ensure_sample()
    origin = NginxRtmp(name="origin").start()
    pub = start_publisher(sample, origin.rtmp_url(APP, STREAM))
    dead = free_port()
    edge: NginxRtmp | LiverelayNode | None = None
    try:
        from .fanout import wait_playable

        await wait_playable(origin.rtmp_url(APP, STREAM))
        edge = (
            await start_our_edge([dead, origin.rtmp_port])
            if kind == "ours"
            else start_nginx_edge([dead, origin.rtmp_port])
        )
        results = []
        for _ in range(runs):
            t0 = time.monotonic()
            res = await first_keyframe(edge.rtmp_url(APP, STREAM), timeout=8.0)
            res["elapsed_ms"] = 1000 * (time.monotonic() - t0)
            results.append(res)
            await asyncio.sleep(0.5 + COLD_LINGER_S)
            if isinstance(edge, LiverelayNode):
                res["next_run_cold"] = await wait_no_play_pulls(edge)
    finally:
        if edge is not None:
            edge.stop()
        pub.stop()
        origin.stop()
    played = [r for r in results if r["ttff_ms"] is not None]
    out = {
        "edge": kind,
        "runs": results,
        "played": len(played),
        "ttff_median_ms": median(r["ttff_ms"] for r in played),
        "errors": sorted({str(r["error"]) for r in results if r["ttff_ms"] is None}),
        "closed_by_server_median_ms": median(
            r["closed_by_server_ms"] for r in results if r["ttff_ms"] is None
        ),
    }
    progress(
        f"  [dead, alive] {kind}: played {len(played)}/{runs}, TTFF median {fmt(out['ttff_median_ms'], 0)} ms"
        + (f", errors {out['errors']}" if out["errors"] else "")
    )
    return out


async def kill_in_use(
    kind: str, viewers: int, observe_s: float, origin_kind: str = "nginx"
) -> dict[str, Any]:
    """Origins [A, B] alive; kill A while viewers watch the edge.

    origin_kind "ours" (our edge only) shows how much of the gap is the wait for the
    next keyframe from B: our origin answers a new pull from its GOP cache.
    """
    sample = ensure_sample()
    a: NginxRtmp | LiverelayNode
    b: NginxRtmp | LiverelayNode
    if origin_kind == "ours":
        a = LiverelayNode(config=node_config(), name="origin-a").start()
        b = LiverelayNode(config=node_config(), name="origin-b").start()
    else:
        a = NginxRtmp(name="origin-a").start()
        b = NginxRtmp(name="origin-b").start()
    pubs = [
        start_publisher(sample, a.rtmp_url(APP, STREAM), name="pub-a"),
        start_publisher(sample, b.rtmp_url(APP, STREAM), name="pub-b"),
    ]
    edge: NginxRtmp | LiverelayNode | None = None
    pool: ViewerPool | None = None
    try:
        from .fanout import wait_playable

        await wait_playable(a.rtmp_url(APP, STREAM))
        await wait_playable(b.rtmp_url(APP, STREAM))
        edge = (
            await start_our_edge([a.rtmp_port, b.rtmp_port])
            if kind == "ours"
            else start_nginx_edge([a.rtmp_port, b.rtmp_port])
        )
        url = edge.rtmp_url(APP, STREAM)
        await wait_playable(url)
        pool = ViewerPool(
            url, viewers, parse_every=1, reconnect=True, reconnect_delay_s=0.2, max_reconnects=50
        )
        for v in pool.viewers:
            v.gap_log_s = GAP_LOG_S
        await pool.start()
        for _ in range(200):  # every viewer has media (bounded: 10 s)
            if all(v.stats.keyframes for v in pool.viewers):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)
        kill_at = time.monotonic()
        for v in pool.viewers:
            v.stats.watch_from = kill_at
        assert a.process is not None
        a.process.kill()  # SIGKILL: the origin vanishes without a goodbye
        await asyncio.sleep(observe_s)
        end = time.monotonic()
        per_viewer = []
        for v in pool.viewers:
            st = v.stats
            stalled = None if st.last_frame_at is None else end - st.last_frame_at
            # Recovered = frames flow again at the end; the gap is then the longest pause
            # ending after the kill (last frame before -> first frame after).
            recovered = stalled is not None and stalled < GAP_LOG_S and st.last_frame_at > kill_at
            gap = st.max_gap_watched if recovered else None
            per_viewer.append(
                {
                    "gap_ms": None if gap is None else 1000 * gap,
                    "recovered": recovered,
                    "reconnects": st.reconnects,
                    "disconnects_after_kill": sum(1 for c in st.closes if c >= kill_at),
                    "stalled_for_ms": None if stalled is None else 1000 * stalled,
                }
            )
    finally:
        if pool is not None:
            await pool.close()
        if edge is not None:
            edge.stop()
        for p in pubs:
            p.stop()
        a.stop()
        b.stop()
    gaps_ms = [p["gap_ms"] for p in per_viewer if p["gap_ms"] is not None]
    out = {
        "edge": kind,
        "origins": origin_kind,
        "viewers": viewers,
        "observe_s": observe_s,
        "recovered": sum(1 for p in per_viewer if p["recovered"]),
        "gap_median_ms": median(gaps_ms),
        "gap_max_ms": max(gaps_ms) if gaps_ms else None,
        "reconnects_total": sum(p["reconnects"] for p in per_viewer),
        "disconnects_total": sum(p["disconnects_after_kill"] for p in per_viewer),
        "per_viewer": per_viewer,
    }
    progress(
        f"  kill origin in use, {kind} edge over {origin_kind} origins: "
        f"recovered {out['recovered']}/{viewers}, gap median "
        f"{fmt(out['gap_median_ms'], 0)} ms, reconnects {out['reconnects_total']}, "
        f"disconnects {out['disconnects_total']}"
    )
    return out


async def run(quick: bool = False) -> dict[str, Any]:
    runs = 2 if quick else 3
    viewers = 5
    observe_s = 6.0 if quick else 10.0
    progress("failover: origins [dead, alive]")
    dead = [await dead_first(kind, runs) for kind in ("nginx", "ours")]
    progress("failover: origin in use killed")
    killed = [
        await kill_in_use(kind, viewers, observe_s, origins)
        for kind, origins in (("nginx", "nginx"), ("ours", "nginx"), ("ours", "ours"))
    ]
    print(render(dead, killed))
    path = save("failover", {"dead_first": dead, "kill_in_use": killed})
    progress(f"failover results saved to {path}")
    return {
        "dead_first": {d["edge"]: {k: d[k] for k in ("played", "ttff_median_ms", "errors")} for d in dead},
        "kill_in_use": {
            f"{k['edge']} edge/{k['origins']} origins": {
                x: k[x] for x in ("recovered", "gap_median_ms", "gap_max_ms", "reconnects_total")
            }
            for k in killed
        },
    }


def render(dead: list[dict[str, Any]], killed: list[dict[str, Any]]) -> str:
    rows1 = [
        [
            d["edge"],
            f"{d['played']}/{len(d['runs'])}",
            fmt(d["ttff_median_ms"], 0),
            "; ".join(d["errors"])[:60] or "-",
            fmt(d["closed_by_server_median_ms"], 0),
        ]
        for d in dead
    ]
    rows2 = [
        [
            f"{k['edge']} edge/{k['origins']} origins",
            f"{k['recovered']}/{k['viewers']}",
            fmt(k["gap_median_ms"], 0),
            fmt(k["gap_max_ms"], 0),
            str(k["reconnects_total"]),
            str(k["disconnects_total"]),
        ]
        for k in killed
    ]
    return (
        "origins [refused, alive]\n"
        + table(["edge", "played", "TTFF median ms", "errors", "closed after ms"], rows1)
        + "\n\norigin in use killed (SIGKILL), viewers reconnect on their own\n"
        + table(
            ["edge", "viewers recovered", "gap median ms", "gap max ms", "reconnects", "disconnects"], rows2
        )
    )
