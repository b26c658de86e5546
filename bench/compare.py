"""Medians of several fan-out result files, each target's CPU as a ratio to nginx-rtmp's
from the same file (same run, same client).

`python -m bench.compare LABEL=FILE[,FILE...] [LABEL=...]` (e.g. old=... new=...), for
A/B pairs run alternately on a shared machine. Besides the bench's own numbers it prints
user and system CPU apart (our user time is the Python; the system time is mostly the
sends) and the per-viewer CPU scaled to the stream's full rate (`norm`): on a loaded
machine the real-time publisher may fall behind, and a server sending 0.85x the bytes
costs less for it, so ratios are taken on the scaled numbers.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from typing import Any

FULL_RATE_BPS = 273_000  # the sample's average byte rate (2.18 Mbit/s)


def per_viewer_norm(run: dict[str, Any]) -> float:
    rate = run.get("rate_median_bps") or FULL_RATE_BPS
    return float(run["cpu_per_viewer_pct"]) * FULL_RATE_BPS / rate


def summarise(label: str, files: list[str]) -> None:
    rows: dict[tuple[int, str], list[dict[str, float]]] = defaultdict(list)
    for path in files:
        with open(path) as f:
            runs = [r for r in json.load(f)["runs"] if "failed" not in r]
        nginx = {r["viewers"]: per_viewer_norm(r) for r in runs if r["target"] == "nginx-rtmp"}
        for r in runs:
            base = nginx.get(r["viewers"])
            rows[(r["viewers"], r["target"])].append(
                {
                    "cpu": r["cpu_pct"],
                    "user": r["cpu_user_pct"],
                    "sys": r["cpu_sys_pct"],
                    "per_viewer": r["cpu_per_viewer_pct"],
                    "norm": per_viewer_norm(r),
                    "ratio": per_viewer_norm(r) / base if base else float("nan"),
                    "rss_kb": r["rss_per_viewer_kb"],
                    "rss_mb": r["rss_mb"],
                    "idle_rss_mb": r["idle_rss_mb"],
                    "rate": r["rate_median_bps"] / FULL_RATE_BPS,
                    "full": r["full_rate"],
                }
            )
    print(f"## {label} ({len(files)} runs)")
    columns = (
        "viewers | target | CPU % | user | sys | %/viewer | norm %/viewer | / nginx | kB/viewer"
        " | RSS MB | idle RSS MB | rate | full rate"
    )
    print(f"| {columns} |")
    print("|---" * (columns.count("|") + 1) + "|")
    for (viewers, target), vals in sorted(rows.items()):
        med = {k: statistics.median(v[k] for v in vals) for k in vals[0]}
        print(
            f"| {viewers} | {target} | {med['cpu']:.1f} | {med['user']:.1f} | {med['sys']:.1f} | "
            f"{med['per_viewer']:.4f} | {med['norm']:.4f} | {med['ratio']:.2f}x | {med['rss_kb']:.1f} | "
            f"{med['rss_mb']:.1f} | {med['idle_rss_mb']:.1f} | {med['rate']:.2f} | "
            f"{med['full']:.0f}/{viewers} |"
        )


def main() -> None:
    for arg in sys.argv[1:]:
        label, _, files = arg.partition("=")
        summarise(label, files.split(","))


if __name__ == "__main__":
    main()
