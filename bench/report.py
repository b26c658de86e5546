"""Medians over repeats, plain-text tables, and JSON results under bench/results/."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def span(values: Iterable[float | None]) -> tuple[float, float] | None:
    vals = [v for v in values if v is not None]
    return (min(vals), max(vals)) if vals else None


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


# One column of a sweep table: (the key in a run's result, the column header).
Metric = tuple[str, str]


async def sweep(
    what: str,
    viewers: Sequence[int],
    targets: Sequence[str],
    repeat: int,
    metrics: Sequence[Metric],
    run_one: Callable[[str, int, int], Awaitable[dict[str, Any]]],
    *,
    unit: str = "viewers",
) -> list[dict[str, Any]]:
    """Every (repeat, N, target) once, in that order: `run_one(target, n, repeat)` -> its
    result, tagged with the repeat. A run that raises is kept as {"failed": ...}: one
    failed run is a result, not the end of the sweep."""
    runs: list[dict[str, Any]] = []
    total = len(viewers) * len(targets) * repeat
    k = 0
    for rep in range(repeat):
        for n in viewers:
            for label in targets:
                k += 1
                progress(f"{what} run {k}/{total}: {label} x {n} {unit} (repeat {rep + 1}/{repeat})")
                try:
                    res = await run_one(label, n, rep)
                except Exception as exc:
                    res = {"target": label, "viewers": n, "failed": repr(exc)}
                res["repeat"] = rep
                runs.append(res)
                progress(
                    "  -> "
                    + ", ".join(f"{name}={fmt(res.get(key), 3)}" for key, name in metrics)
                    + (f" FAILED {res['failed']}" if "failed" in res else "")
                )
    return runs


def summarize_sweep(
    runs: Sequence[Mapping[str, Any]],
    viewers: Sequence[int],
    targets: Sequence[str],
    metrics: Sequence[Metric],
) -> dict[str, Any]:
    """Per "target@N": the median of each metric over the runs that did not fail, and how
    many did not (a failed run is kept in the results but would skew a median)."""
    out: dict[str, Any] = {}
    for n in viewers:
        for label in targets:
            ok = [r for r in runs if r["target"] == label and r["viewers"] == n and "failed" not in r]
            out[f"{label}@{n}"] = {
                **{key: median(r.get(key) for r in ok) for key, _ in metrics},
                "runs_ok": len(ok),
            }
    return out


def render_sweep(
    title: str,
    summary: Mapping[str, Any],
    viewers: Sequence[int],
    targets: Sequence[str],
    metrics: Sequence[Metric],
    *,
    count_header: str = "viewers",
    digits: Mapping[str, int] | None = None,
    baseline: str | None = None,
    baseline_name: str = "nginx",
    compared: Sequence[str] = (),
    ratio_keys: Sequence[str] = (),
) -> str:
    """A fan-out sweep as one table: a row per (N, target) of the medians, then, where the
    baseline ran, a row per compared target of ours/baseline for the ratio_keys columns."""
    places = digits or {}
    headers = [count_header, "server", *[name for _, name in metrics], "runs"]
    rows: list[list[str]] = []
    for n in viewers:
        for label in targets:
            m = summary[f"{label}@{n}"]
            rows.append(
                [str(n), label, *[fmt(m[key], places.get(key, 1)) for key, _ in metrics], str(m["runs_ok"])]
            )
        if baseline is None or baseline not in targets:
            continue
        base = summary[f"{baseline}@{n}"]
        for label in compared:
            if label not in targets or label == baseline:
                continue
            m = summary[f"{label}@{n}"]
            cells = [fmt(ratio(m[key], base[key]), 2) if key in ratio_keys else "" for key, _ in metrics]
            rows.append([str(n), f"{label}/{baseline_name}", *cells, ""])
    return f"{title}\n" + table(headers, rows)


def machine_note() -> dict[str, Any]:
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def save(kind: str, payload: dict[str, Any], directory: Path = RESULTS_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = directory / f"{kind}-{stamp}.json"
    payload = {"kind": kind, "utc": stamp, "machine": machine_note(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
