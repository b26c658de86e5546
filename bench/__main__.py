"""python -m bench fanout|hlsfanout|ttff|failover|relay|hlspull|cluster|takeover|republish|idle|all
                   [--quick] [--viewers 100,500] [--repeat 3] [--window 20]

Every server, publisher and profiler this starts is stopped on the way out,
including on Ctrl-C (bench.peers.kill_all in the finally below).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from .peers import kill_all
from .report import progress


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description="liverelay vs nginx-rtmp benchmarks")
    p.add_argument(
        "what",
        choices=[
            "fanout",
            "hlsfanout",
            "ttff",
            "failover",
            "relay",
            "hlspull",
            "republish",
            "cluster",
            "idle",
            "takeover",
            "all",
        ],
    )
    p.add_argument("--quick", action="store_true", help="small sweep, short windows, few runs")
    p.add_argument("--viewers", help="fan-out sweep, e.g. 100,500,1000")
    p.add_argument("--targets", help="fan-out targets: nginx-rtmp,ours-rtmp,ours-flv")
    p.add_argument("--repeat", type=int, help="repeats per fan-out point (medians are quoted)")
    p.add_argument("--window", type=float, help="measured window, seconds")
    p.add_argument("--warmup", type=float, help="warm-up after the viewers joined, seconds")
    p.add_argument("--runs", type=int, help="TTFF runs per case")
    p.add_argument("--relays", help="relay counts, e.g. 10,50")
    p.add_argument("--hls", action="store_true", help="relay: also ffmpeg-backed HLS sources")
    p.add_argument(
        "--origin",
        choices=["nginx", "ours"],
        default="nginx",
        help="relay: the relays' origin, nginx-rtmp (no GOP cache) or a second node of ours",
    )
    p.add_argument("--profile", action="store_true", help="py-spy our node during the first fan-out repeat")
    p.add_argument(
        "--baseline-src", type=Path, help="idle, hlspull: also run our node from this src/ (before/after)"
    )
    return p.parse_args(argv)


def _ints(text: str | None, default: list[int]) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()] if text else default


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    quick = args.quick
    window = args.window or (8.0 if quick else 20.0)
    if args.what in ("fanout", "all"):
        from . import fanout

        results["fanout"] = await fanout.run(
            _ints(args.viewers, [50, 200] if quick else [100, 500, 1000]),
            (args.targets or "nginx-rtmp,ours-rtmp,ours-flv").split(","),
            repeat=args.repeat or (1 if quick else 3),
            window_s=window,
            warmup_s=args.warmup if args.warmup is not None else (3.0 if quick else 5.0),
            profile=args.profile,
        )
    if args.what in ("hlsfanout", "all"):
        from . import hlsfanout

        results["hlsfanout"] = await hlsfanout.run(
            _ints(args.viewers, [50, 200] if quick else [100, 500, 1000]),
            (args.targets or ",".join(hlsfanout.TARGETS)).split(","),
            repeat=args.repeat or 1,
            window_s=window,
            warmup_s=args.warmup if args.warmup is not None else (4.0 if quick else 6.0),
        )
    if args.what in ("ttff", "all"):
        from . import ttff

        results["ttff"] = await ttff.run(runs=args.runs or (3 if quick else 10))
    if args.what in ("failover", "all"):
        from . import failover

        results["failover"] = await failover.run(quick=quick)
    if args.what in ("republish", "all"):
        from . import republish

        results["republish"] = await republish.run(runs=args.runs or (3 if quick else 10))
    if args.what in ("relay", "all"):
        from . import relay

        counts = _ints(args.relays, [5] if quick else [10, 50])
        results["relay"] = await relay.run(
            counts, window_s=window, hls_counts=([min(counts)] if args.hls else None), origin=args.origin
        )
    if args.what in ("hlspull", "all"):
        from . import hlspull

        results["hlspull"] = await hlspull.run(
            _ints(args.relays, [5] if quick else [10, 50]), window_s=window, baseline_src=args.baseline_src
        )
    if args.what in ("idle", "all"):
        from . import idle

        samples = args.runs or (3 if quick else 5)
        results["idle"] = await idle.run(
            samples=samples, window_s=args.window or 10.0, baseline_src=args.baseline_src
        )
    if args.what in ("cluster", "all"):
        from . import cluster

        results["cluster"] = await cluster.run(changes=50 if quick else 200, writes=100 if quick else 400)
    if args.what in ("takeover", "all"):
        from . import takeover

        results["takeover"] = await takeover.run(_ints(args.relays, [10] if quick else [30, 100]))
    print(summary(results))
    return results


def summary(results: dict[str, Any]) -> str:
    """One closing table: the headline numbers of every benchmark that ran, ours vs nginx-rtmp."""
    from .report import fmt, table

    rows: list[list[str]] = []
    for key, m in (results.get("fanout") or {}).items():
        label, _, n = key.partition("@")
        if label == "nginx-rtmp" or n == "marginal":
            continue
        base = results["fanout"].get(f"nginx-rtmp@{n}") or {}
        rows.append(
            [
                f"fan-out {n} viewers: {label} vs nginx-rtmp",
                _versus("CPU", m["cpu_pct"], base.get("cpu_pct"), "%"),
                _versus("RSS", m["rss_mb"], base.get("rss_mb"), " MB"),
                f"full rate {fmt(m['full_rate'], 0)}/{n}, media/wall min {fmt(m['media_wall_min'], 3)}",
            ]
        )
    rep = results.get("republish") or {}
    if rep:
        o, t = rep["ours-edge"]["median_delay_ms"], rep["nginx-edge"]["median_delay_ms"]
        rows.append(
            [
                "republish: edge viewer after origin viewer, ours vs nginx",
                f"{fmt(o, 0)} vs {fmt(t, 0)} ms",
                "",
                "",
            ]
        )
    ttff = results.get("ttff") or {}
    for ours, theirs in (
        ("ours edge/ours origin cold", "nginx edge/nginx origin cold"),
        ("ours edge/ours origin warm", "nginx edge/nginx origin warm"),
        ("ours edge/nginx origin cold", "nginx origin direct"),
    ):
        if ours in ttff and theirs in ttff and ours != "edge_added_ms":
            o, t = ttff[ours]["ttff_median_ms"], ttff[theirs]["ttff_median_ms"]
            rows.append([f"TTFF {ours} vs {theirs}", f"{fmt(o, 0)} vs {fmt(t, 0)} ms", "", ""])
    for case, d in (ttff.get("edge_added_ms") or {}).items():
        rows.append(
            [
                f"edge added vs nginx origin direct: {case}",
                f"keyframe {fmt(d['keyframe'], 0)} ms",
                f"first audio {fmt(d['audio'], 0)} ms",
                "",
            ]
        )
    fo = results.get("failover") or {}
    for edge, d in (fo.get("dead_first") or {}).items():
        rows.append(
            [
                f"failover [dead, alive], {edge} edge",
                f"played {d['played']}",
                f"TTFF {fmt(d['ttff_median_ms'], 0)} ms",
                "",
            ]
        )
    for case, k in (fo.get("kill_in_use") or {}).items():
        rows.append(
            [
                f"origin killed, {case}",
                f"recovered {k['recovered']}",
                f"gap {fmt(k['gap_median_ms'], 0)} ms",
                f"reconnects {k['reconnects_total']}",
            ]
        )
    relay_cases = [(f"fixed relays {c}", r) for c, r in (results.get("relay") or {}).items()]
    relay_cases += [(f"HLS source {c}", r) for c, r in (results.get("hlspull") or {}).items()]
    for label, r in relay_cases:
        if "failed" in r:
            rows.append([label, "failed", "", ""])
            continue
        rows.append(
            [
                label,
                f"CPU {fmt(r['cpu_per_relay_pct'], 3)} %/relay",
                f"RSS {fmt(r['rss_per_relay_kb'])} kB/relay",
                f"create->playable {fmt(r['playable_median_ms'], 0)} ms",
            ]
        )
    cl = results.get("cluster") or {}
    if "propagation" in cl:
        p = cl["propagation"]
        rows.append(
            [
                f"cluster: {p['changes']} changes across 3 nodes",
                f"propagation p50 {fmt(p['p50_ms'])} ms",
                f"p99 {fmt(p['p99_ms'])} ms",
                f"writes/s SQLite {fmt(cl['sqlite_writes_per_s'])}"
                f" vs PostgreSQL {fmt(cl['postgresql_writes_per_s'])}",
            ]
        )
    for count, t in (results.get("takeover") or {}).items():
        if "failed" in t or not isinstance(t, dict):
            continue
        rows.append(
            [
                f"takeover after kill -9: {count} relays over 3 nodes ({t['moved']} moved)",
                f"p50 {fmt(t['p50_s'], 2)} s",
                f"p99 {fmt(t['p99_s'], 2)} s",
                f"max {fmt(t['max_s'], 2)} s",
            ]
        )
    return "\nsummary (medians)\n" + table(["what", "", "", ""], rows) if rows else ""


def _versus(what: str, ours: float | None, theirs: float | None, unit: str) -> str:
    from .report import fmt, ratio

    return f"{what} {fmt(ours)}{unit} vs {fmt(theirs)}{unit} ({fmt(ratio(ours, theirs), 2)}x)"


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally below: children are stopped


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    try:
        runner(main(args))
    except KeyboardInterrupt:
        progress("interrupted: stopping every process we started")
        return 130
    finally:
        kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(run())
