"""Native HLS puller vs the ffmpeg HLS source: node CPU and RSS per fixed relay.

The same run as `bench relay` (bench.relay.run_one) with HLS sources: an nginx-rtmp
origin writes HLS (2 s fragments) of the 2.2 Mbit/s sample; our node gets K fixed
relays of its playlist, once with relay.hls_puller = "native" (sources/hls.py, no child
process) and once with "ffmpeg" (one ffmpeg per relay). CPU and RSS are of the node's
process tree, so ffmpeg's share is counted; per relay = (with K relays - idle) / K.
Target (ISSUE-10): native <= 3 MB RSS and <= 0.3 % CPU per relay.

`baseline_src` (`--baseline-src DIR/src`) adds a "native-baseline" row per count: the
native puller of another tree (e.g. a `git archive` of main), run in the same sitting,
so a change is measured against what it replaces under the same load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .peers import python_path
from .relay import run_one
from .report import fmt, progress, save, table

PULLERS = ("native", "ffmpeg")
TARGET_RSS_KB = 3000.0
TARGET_CPU_PCT = 0.3


BASELINE = "native-baseline"


async def run(
    counts: list[int],
    *,
    window_s: float = 20.0,
    pullers: tuple[str, ...] = PULLERS,
    baseline_src: Path | None = None,
) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    if baseline_src is not None:
        pullers = (pullers[0], BASELINE, *pullers[1:])
    for k in counts:
        for puller in pullers:
            kind = "native" if puller == BASELINE else puller
            where = f" (from {baseline_src})" if puller == BASELINE else ""
            progress(f"hlspull: {k} fixed relays from an HLS origin, relay.hls_puller = {kind}{where}")
            try:
                with python_path(baseline_src if puller == BASELINE else None):
                    out = await run_one(
                        k,
                        window_s=window_s,
                        measure_first=min(5, k),
                        source="hls",
                        node_extra=f'[relay]\nhls_puller = "{kind}"\n',
                    )
            except Exception as exc:
                progress(f"  {k} relays ({puller}) FAILED: {exc!r}")
                out = {"relays": k, "failed": repr(exc)}
            results.append({"puller": puller, **out})
    print(render(results))
    params = {"counts": counts, "window_s": window_s, "baseline_src": str(baseline_src or "")}
    path = save("hlspull", {"params": params, "runs": results})
    progress(f"hlspull results saved to {path}")
    return {
        f"{r['puller']}x{r['relays']}": {k: v for k, v in r.items() if k not in ("playable_ms", "up_ms")}
        for r in results
    }


def render(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        if "failed" in r:
            rows.append([r["puller"], str(r["relays"]), "failed", "", "", "", "", "", ""])
            continue
        native = r["puller"] in ("native", BASELINE)
        rows.append(
            [
                r["puller"],
                str(r["relays"]),
                fmt(r["cpu_pct"]),
                fmt(r["cpu_per_relay_pct"], 3),
                fmt(r["rss_mb"]),
                fmt(r["rss_per_relay_kb"]),
                str(r["not_playing"]),
                fmt(r["playable_median_ms"], 0),
                ("yes" if within_target(r) else "NO") if native else "-",
            ]
        )
    return (
        "HLS sources of fixed relays: native puller vs ffmpeg (CPU/RSS of the node's process tree)\n"
        + table(
            [
                "puller",
                "relays",
                "node CPU %",
                "CPU %/relay",
                "RSS MB",
                "RSS kB/relay",
                "not playing",
                "create->playable ms",
                "target met",
            ],
            rows,
        )
    )


def within_target(r: dict[str, Any]) -> bool:
    return bool(r["cpu_per_relay_pct"] <= TARGET_CPU_PCT and r["rss_per_relay_kb"] <= TARGET_RSS_KB)
