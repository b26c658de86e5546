"""Idle: CPU, wake-ups and RSS of a server with one publisher and no viewer, nginx-rtmp vs ours.

Both servers run at the same time, each with its own ffmpeg publisher of the 2 Mbit/s
sample, so every measured window covers both under the same machine load. Per server:
RSS right after start (nothing connected: the fixed cost), then, with the publisher,
`samples` windows of `window_s` each: CPU (% of one core), the main thread's context
switches per second (each is a wake-up of the event loop: a read, a timer), and RSS.
Medians of the windows are reported, with the ratio ours / nginx-rtmp from this run.
`baseline_src` adds a third server: our node run from another tree's src/ (e.g. the
commit before a change, unpacked with `git archive`), for before/after in the same run.
The stack floor (bench.idle_imports.stack_floor: fresh interpreters importing only the
third-party stack) is measured in the same run and printed after the table.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import procstat
from .fanout import wait_playable
from .idle_imports import STACK_STEP, compile_package, floor_lines, stack_floor
from .ourapi import node_config
from .peers import LiverelayNode, ManagedProcess, NginxRtmp, python_path
from .report import fmt, median, progress, ratio, save, table
from .sample import ensure_sample, start_publisher

APP, STREAM = "live", "bench"


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of the process's main thread so far."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
            total += int(line.split()[1])
    return total


async def settled_rss(pid: int, seconds: float = 3.0) -> int:
    """RSS after `seconds` of nothing happening (start-up work done)."""
    await asyncio.sleep(seconds)
    return procstat.rss_bytes(pid)


def start_node(name: str, src: Path | None = None) -> LiverelayNode:
    """Our node on a data dir whose schema is current, as at every start but a node's very
    first (`liverelay db upgrade` made it), its package byte-compiled as an install does;
    with `src`, run from that tree's src/ (PYTHONPATH, inherited by both children)."""
    compile_package(src)
    workdir = Path(tempfile.mkdtemp(prefix="bench-node-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVERELAY_")}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    upgrade = [sys.executable, "-m", "liverelay", "db", "upgrade", "--data-dir", str(workdir / "data")]
    subprocess.run(upgrade, env=env, check=True, capture_output=True, timeout=120)
    with python_path(src):
        return LiverelayNode(config=node_config(), name=name, workdir=workdir).start()


async def run(
    *, samples: int = 5, window_s: float = 10.0, baseline_src: Path | None = None
) -> dict[str, Any]:
    sample = ensure_sample()
    servers: dict[str, NginxRtmp | LiverelayNode] = {}
    publishers: list[ManagedProcess] = []
    load_start = os.getloadavg()
    floor = stack_floor()
    try:
        servers["nginx-rtmp"] = NginxRtmp().start()
        servers["ours"] = start_node("liverelay")
        if baseline_src is not None:
            servers["ours-baseline"] = start_node("liverelay-baseline", baseline_src)
        fixed = {label: await settled_rss(s.pid) for label, s in servers.items()}
        for label, s in servers.items():
            publishers.append(start_publisher(sample, s.rtmp_url(APP, STREAM), name=f"publisher-{label}"))
        for s in servers.values():
            await wait_playable(s.rtmp_url(APP, STREAM))
        await asyncio.sleep(2.0)  # the probe viewer has left; what remains is the publisher
        rows: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "wakeups": [], "rss": []} for k in servers}
        for i in range(samples):
            windows = {k: procstat.CpuWindow(s.pid) for k, s in servers.items()}
            switches = {k: context_switches(s.pid) for k, s in servers.items()}
            for w in windows.values():
                w.start()
            await asyncio.sleep(window_s)
            for k, s in servers.items():
                usage = windows[k].stop()
                rows[k]["cpu"].append(usage.percent)
                rows[k]["wakeups"].append((context_switches(s.pid) - switches[k]) / usage.wall_s)
                rows[k]["rss"].append(procstat.rss_bytes(s.pid) / 1e6)
            progress(
                f"idle window {i + 1}/{samples}: "
                + ", ".join(f"{k} {rows[k]['cpu'][-1]:.2f}%" for k in servers)
                + f" (load {os.getloadavg()[0]:.2f})"
            )
        for p in publishers:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited during the run")
    finally:
        for p in publishers:
            p.stop()
        for s in servers.values():
            s.stop()
    result: dict[str, Any] = {
        "baseline_src": str(baseline_src) if baseline_src else None,
        "samples": samples,
        "window_s": window_s,
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "stack_floor_mb": dict(floor),
    }
    for k, r in rows.items():
        result[k] = {
            "fixed_rss_mb": fixed[k] / 1e6,
            "cpu_pct_median": median(r["cpu"]),
            "cpu_pct": r["cpu"],
            "wakeups_per_s_median": median(r["wakeups"]),
            "rss_mb_median": median(r["rss"]),
        }
    ours, theirs = result["ours"], result["nginx-rtmp"]
    result["ratio_cpu"] = ratio(ours["cpu_pct_median"], theirs["cpu_pct_median"])
    result["ratio_fixed_rss"] = ratio(ours["fixed_rss_mb"], theirs["fixed_rss_mb"])
    result["ratio_stack_floor"] = ratio(result["stack_floor_mb"][STACK_STEP], theirs["fixed_rss_mb"])
    if baseline_src is not None:
        base = result["ours-baseline"]
        result["ratio_baseline_cpu"] = ratio(base["cpu_pct_median"], theirs["cpu_pct_median"])
        result["ratio_baseline_fixed_rss"] = ratio(base["fixed_rss_mb"], theirs["fixed_rss_mb"])
    print(
        table(
            ["server", "CPU % (median)", "CPU % per window", "wake-ups/s", "RSS MB at start", "RSS MB pub."],
            [
                [
                    k,
                    fmt(result[k]["cpu_pct_median"], 2),
                    " ".join(fmt(c, 2) for c in result[k]["cpu_pct"]),
                    fmt(result[k]["wakeups_per_s_median"], 0),
                    fmt(result[k]["fixed_rss_mb"]),
                    fmt(result[k]["rss_mb_median"]),
                ]
                for k in servers
            ],
        )
    )
    print("the stack floor (fresh interpreters, VmRSS after the imports), same run:")
    print("\n".join(floor_lines(floor, ours["fixed_rss_mb"])))
    progress(
        f"ours/nginx: CPU {fmt(result['ratio_cpu'], 1)}x, fixed RSS {fmt(result['ratio_fixed_rss'], 1)}x"
        f" (stack floor alone {fmt(result['ratio_stack_floor'], 1)}x);"
        f" load average {load_start[0]:.2f} -> {result['loadavg_end'][0]:.2f}"
    )
    if baseline_src is not None:
        progress(
            f"baseline/nginx: CPU {fmt(result['ratio_baseline_cpu'], 1)}x,"
            f" fixed RSS {fmt(result['ratio_baseline_fixed_rss'], 1)}x"
        )
    progress(f"saved {save('idle', result)}")
    return result
