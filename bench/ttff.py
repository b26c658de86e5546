"""Time to first video keyframe (viewer connect -> first coded keyframe), play-triggered.

Cases, all with the same RTMP client (plus our edge once more with HTTP-FLV viewers):
  (a) our edge over our origin      vs  nginx-rtmp edge over nginx-rtmp origin
  (b) our edge over nginx-rtmp origin  vs  nginx-rtmp origin played directly
each edge cold (the play starts the pull) and warm (a keeper viewer holds the pull up).
Runs start at phases spread over the 2 s GOP: a probe viewer on the origin tracks
keyframe arrivals and run i starts i/runs of a GOP after one. Run i of every case has
the same phase, so per-run differences to "nginx origin direct" give the edge's added
latency without the wait for the next keyframe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .fanout import poll_keyframe, wait_playable
from .loadclient import Viewer, make_viewer
from .ourapi import make_v3_edge, node_config, running_play_pulls, service
from .peers import LiverelayNode, NginxRtmp
from .report import fmt, median, progress, save, span, table
from .sample import ensure_sample, start_publisher

APP, STREAM = "live", "bench"
GOP_S = 2.0
LINGER_S = 0.5  # our edge drops an unwatched pull this fast, so the next run is cold again
COLD_PAUSE_S = 2.0


async def first_keyframe(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """One parsed viewer: seconds from connect to first coded keyframe (and first audio)."""
    v = make_viewer(0, url, True)
    try:
        await v.connect()
        await poll_keyframe(v, timeout, 0.005)
        closed = v.stats.closed_at if v.closed.is_set() else None
        return {
            "ttff_ms": _ms(v.stats.ttff_s),
            "audio_ms": _ms(v.stats.first_audio_s),
            "error": v.stats.error,
            "closed_by_server_ms": None if closed is None else _ms(closed - v.stats.started_at),
        }
    finally:
        v.close()


def _ms(s: float | None) -> float | None:
    return None if s is None else 1000.0 * s


async def wait_phase(probe: Viewer, phase_s: float, timeout: float = 10.0) -> None:
    """Sleep until `phase_s` after the origin's latest keyframe (mod one GOP)."""
    deadline = time.monotonic() + timeout
    while probe.stats.keyframes < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if probe.stats.last_key_at is None:
        raise TimeoutError("the origin probe sees no keyframes")
    since = time.monotonic() - probe.stats.last_key_at
    await asyncio.sleep((phase_s - since) % GOP_S)


async def start_probe(url: str) -> Viewer:
    await wait_playable(url)
    probe = make_viewer(0, url, True)
    await probe.connect()
    return probe


Setup = Callable[[], Awaitable[str]]  # prepares one run, returns the URL to play
Teardown = Callable[[], Awaitable[None]]


async def run_case(
    label: str, probe: Viewer, runs: int, setup: Setup, teardown: Teardown | None = None
) -> dict[str, Any]:
    results = []
    for i in range(runs):
        url = await setup()
        await wait_phase(probe, GOP_S * i / runs)
        res = await first_keyframe(url)
        results.append(res)
        if teardown is not None:
            await teardown()
    ttffs = [r["ttff_ms"] for r in results]
    out = {
        "case": label,
        "runs": results,
        "ttff_median_ms": median(ttffs),
        "ttff_span_ms": span(ttffs),
        "audio_median_ms": median(r["audio_ms"] for r in results),
        "failed": sum(1 for t in ttffs if t is None),
    }
    sp = out["ttff_span_ms"]
    progress(
        f"  {label}: median {fmt(out['ttff_median_ms'], 0)} ms"
        f" ({fmt(sp[0], 0) if sp else '-'}-{fmt(sp[1], 0) if sp else '-'}), failed {out['failed']}"
    )
    return out


async def run(runs: int = 10) -> dict[str, Any]:
    sample = ensure_sample()
    cases: list[dict[str, Any]] = []
    nginx_origin = NginxRtmp(name="nginx-origin")
    ours_origin = LiverelayNode(config=node_config(), name="ours-origin")
    ours_edge_o = LiverelayNode(config=node_config(linger_s=LINGER_S), name="ours-edge-ours")
    ours_edge_n = LiverelayNode(config=node_config(linger_s=LINGER_S), name="ours-edge-nginx")
    started: list[Any] = []
    probes: list[Viewer] = []
    keepers: list[Viewer] = []
    try:
        for peer in (nginx_origin, ours_origin, ours_edge_o, ours_edge_n):
            peer.start()
            started.append(peer)
        pubs = [
            start_publisher(sample, nginx_origin.rtmp_url(APP, STREAM), name="pub-nginx"),
            start_publisher(sample, ours_origin.rtmp_url(APP, STREAM), name="pub-ours"),
        ]
        started.extend(pubs)
        for edge, origin in ((ours_edge_o, ours_origin), (ours_edge_n, nginx_origin)):
            await make_v3_edge(edge, [f"127.0.0.1:{origin.rtmp_port}"])
        nginx_probe = await start_probe(nginx_origin.rtmp_url(APP, STREAM))
        ours_probe = await start_probe(ours_origin.rtmp_url(APP, STREAM))
        probes += [nginx_probe, ours_probe]

        async def const(url: str) -> str:
            return url

        async def until_cold(edge: LiverelayNode) -> None:
            """After the linger, the edge must have no pull left: the next run is really cold."""
            await asyncio.sleep(COLD_PAUSE_S)
            api = service(edge)
            try:
                for _ in range(50):
                    if await running_play_pulls(api) == 0:
                        return
                    await asyncio.sleep(0.2)
            finally:
                await api.aclose()
            raise RuntimeError(f"{edge.name} still pulls {COLD_PAUSE_S + 10}s after the last viewer left")

        progress("ttff: origins played directly")
        url = nginx_origin.rtmp_url(APP, STREAM)
        cases.append(await run_case("nginx origin direct", nginx_probe, runs, lambda: const(url)))
        url_o = ours_origin.rtmp_url(APP, STREAM)
        cases.append(await run_case("ours origin direct", ours_probe, runs, lambda: const(url_o)))

        progress("ttff: nginx-rtmp edge over nginx-rtmp origin (cold = fresh edge process per run)")
        edge_box: list[NginxRtmp] = []

        async def fresh_nginx_edge() -> str:
            edge = NginxRtmp(pulls=[f"rtmp://127.0.0.1:{nginx_origin.rtmp_port}/{APP}"], name="nginx-edge")
            edge.start()
            edge_box.append(edge)
            return edge.rtmp_url(APP, STREAM)

        async def stop_nginx_edge() -> None:
            while edge_box:
                edge_box.pop().stop()

        cases.append(
            await run_case(
                "nginx edge/nginx origin cold", nginx_probe, runs, fresh_nginx_edge, stop_nginx_edge
            )
        )
        warm_url = await fresh_nginx_edge()
        keepers.append(await start_probe(warm_url))
        cases.append(
            await run_case("nginx edge/nginx origin warm", nginx_probe, runs, lambda: const(warm_url))
        )
        keepers.pop().close()
        await stop_nginx_edge()

        for edge, origin_label, probe in (
            (ours_edge_o, "ours origin", ours_probe),
            (ours_edge_n, "nginx origin", nginx_probe),
        ):
            progress(f"ttff: our edge over {origin_label}")
            eurl = edge.rtmp_url(APP, STREAM)
            cases.append(
                await run_case(
                    f"ours edge/{origin_label} cold",
                    probe,
                    runs,
                    lambda u=eurl: const(u),
                    lambda e=edge: until_cold(e),
                )
            )
            keepers.append(await start_probe(eurl))
            cases.append(
                await run_case(f"ours edge/{origin_label} warm", probe, runs, lambda u=eurl: const(u))
            )
            keepers.pop().close()

        progress("ttff: our edge over nginx origin, HTTP-FLV viewers")
        furl = ours_edge_n.flv_url(APP, STREAM)
        await until_cold(ours_edge_n)
        cases.append(
            await run_case(
                "ours edge/nginx origin cold, HTTP-FLV",
                nginx_probe,
                runs,
                lambda: const(furl),
                lambda: until_cold(ours_edge_n),
            )
        )
        keepers.append(await start_probe(furl))
        cases.append(
            await run_case("ours edge/nginx origin warm, HTTP-FLV", nginx_probe, runs, lambda: const(furl))
        )
        keepers.pop().close()
    finally:
        for v in probes + keepers:
            v.close()
        for peer in reversed(started):
            peer.stop()
    print(render(cases))
    path = save(
        "ttff",
        {"params": {"runs": runs, "linger_s": LINGER_S}, "cases": cases, "edge_added_ms": edge_added(cases)},
    )
    progress(f"ttff results saved to {path}")
    out: dict[str, Any] = {
        c["case"]: {k: c[k] for k in ("ttff_median_ms", "ttff_span_ms", "audio_median_ms", "failed")}
        for c in cases
    }
    out["edge_added_ms"] = {case: {"keyframe": k, "audio": a} for case, (k, a) in edge_added(cases).items()}
    return out


def render(cases: list[dict[str, Any]]) -> str:
    rows = []
    for c in cases:
        sp = c["ttff_span_ms"]
        rows.append(
            [
                c["case"],
                fmt(c["ttff_median_ms"], 0),
                f"{fmt(sp[0], 0)}-{fmt(sp[1], 0)}" if sp else "-",
                fmt(c["audio_median_ms"], 0),
                str(c["failed"]),
            ]
        )
    by = {c["case"]: c["ttff_median_ms"] for c in cases}
    extra = []
    for ours, theirs in (
        ("ours edge/ours origin cold", "nginx edge/nginx origin cold"),
        ("ours edge/ours origin warm", "nginx edge/nginx origin warm"),
    ):
        if by.get(ours) is not None and by.get(theirs):
            extra.append(
                f"{ours} vs {theirs}: {by[ours]:.0f} vs {by[theirs]:.0f} ms ({by[ours] / by[theirs]:.3f}x)"
            )
    added = edge_added(cases)
    for case, (d_key, d_audio) in added.items():
        extra.append(
            f"edge added, {case} - nginx origin direct (paired by GOP phase): "
            f"keyframe {fmt_signed(d_key)} ms, first audio {fmt_signed(d_audio)} ms"
        )
    return (
        "time to first video keyframe, ms (medians, min-max)\n"
        + table(["case", "TTFF median", "min-max", "first audio", "failed"], rows)
        + "\n"
        + "\n".join(extra)
    )


def fmt_signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.0f}"


def edge_added(cases: list[dict[str, Any]]) -> dict[str, tuple[float | None, float | None]]:
    """Median of per-run differences to 'nginx origin direct': run i of every case starts at
    the same GOP phase, so the difference removes the wait for the next keyframe."""
    by = {c["case"]: c["runs"] for c in cases}
    direct = by.get("nginx origin direct")
    out: dict[str, tuple[float | None, float | None]] = {}
    if not direct:
        return out
    for case in (
        "ours edge/nginx origin cold",
        "ours edge/nginx origin cold, HTTP-FLV",
        "nginx edge/nginx origin cold",
    ):
        runs = by.get(case)
        if not runs:
            continue
        pairs = list(zip(runs, direct, strict=False))
        key = median(
            a["ttff_ms"] - b["ttff_ms"]
            for a, b in pairs
            if a["ttff_ms"] is not None and b["ttff_ms"] is not None
        )
        audio = median(
            a["audio_ms"] - b["audio_ms"]
            for a, b in pairs
            if a["audio_ms"] is not None and b["audio_ms"] is not None
        )
        out[case] = (key, audio)
    return out
