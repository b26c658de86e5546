"""python -m bench fanout|ttff|failover|relay|all [--quick] [--viewers 100,500] [--repeat 3] [--window 20]

Every server, publisher and profiler this starts is stopped on the way out,
including on Ctrl-C (bench.peers.kill_all in the finally below).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from .peers import kill_all
from .report import progress


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description="liverelay vs nginx-rtmp benchmarks")
    p.add_argument("what", choices=["fanout", "ttff", "failover", "relay", "all"])
    p.add_argument("--quick", action="store_true", help="small sweep, short windows, few runs")
    p.add_argument("--viewers", help="fan-out sweep, e.g. 100,500,1000")
    p.add_argument("--targets", help="fan-out targets: nginx-rtmp,ours-rtmp,ours-flv")
    p.add_argument("--repeat", type=int, help="repeats per fan-out point (medians are quoted)")
    p.add_argument("--window", type=float, help="measured window, seconds")
    p.add_argument("--warmup", type=float, help="warm-up after the viewers joined, seconds")
    p.add_argument("--runs", type=int, help="TTFF runs per case")
    p.add_argument("--relays", help="relay counts, e.g. 10,50")
    p.add_argument("--hls", action="store_true", help="relay: also ffmpeg-backed HLS sources")
    p.add_argument("--profile", action="store_true", help="py-spy our node during the first fan-out repeat")
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
    if args.what in ("ttff", "all"):
        from . import ttff

        results["ttff"] = await ttff.run(runs=args.runs or (3 if quick else 10))
    if args.what in ("failover", "all"):
        from . import failover

        results["failover"] = await failover.run(quick=quick)
    if args.what in ("relay", "all"):
        from . import relay

        counts = _ints(args.relays, [5] if quick else [10, 50])
        results["relay"] = await relay.run(
            counts, window_s=window, hls_counts=([min(counts)] if args.hls else None)
        )
    return results


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
