"""HLS start: how long a new player waits for its first segment, nginx-rtmp vs ours.

`python -m bench.hlsstart [--runs 6]`. A player asks for the playlist (ours: the master,
then the media playlist it names) and downloads the newest segment listed: `playlist` is
the time from its first request to a media playlist with a segment, `segment` the time to
that segment's last byte. Cases, each on a fresh server with the sample published in real
time:
- `nginx-hls`: nginx-rtmp `hls on` muxes every published stream all the time (2 s
  fragments on disk, served by nginx): the playlist is there before anyone asks;
- `ours warm`: our classic HLS while another player watches (the stream's muxer runs);
- `ours cold`: the first HLS player of a published stream. Its request starts the muxer,
  which answers once `hls_min_segments` (2) segments exist, the first one starting on the
  GOP cache's keyframe: one to two GOPs of wait, the price of muxing only what is watched.
  Between cold runs the node's short linger (1 s) stops the muxer again.
Runs start at phases spread over the 2 s GOP (an RTMP viewer on the same server tracks
keyframe arrivals), the same phases in every case.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any
from urllib.parse import urljoin

import aiohttp

from .hlsfanout import Counters, _fetch, _segments, media_url
from .ourapi import node_config
from .peers import LiverelayNode, NginxRtmp, metric
from .report import fmt, median, progress, save, span, table
from .sample import ensure_sample, start_publisher
from .ttff import GOP_S, start_probe, wait_phase

APP, STREAM = "live", "bench"
# Sessions and muxers end fast, so that every cold run starts without a muxer.
SHORT_LINGER = "hls_linger_s = 1.0\nhls_session_timeout_s = 1.0\n"


async def first_segment(client: aiohttp.ClientSession, url: str) -> tuple[float, float]:
    """(seconds to a media playlist listing a segment, seconds to that segment's last byte)."""
    c = Counters()
    t0 = time.monotonic()
    deadline = t0 + 20
    while True:
        media = await media_url(client, url)
        text = await _fetch(client, media, c)
        if text is not None and _segments(text)[1]:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: no segment listed within 20 s ({c.last_error})")
        await asyncio.sleep(0.05)  # nginx: its first fragment is not written yet
    t_playlist = time.monotonic() - t0
    uri = _segments(text)[1][-1][1]
    if await _fetch(client, urljoin(media, uri), c) is None:
        raise RuntimeError(f"{uri}: {c.last_error}")
    return t_playlist, time.monotonic() - t0


async def muxers(client: aiohttp.ClientSession, node: LiverelayNode) -> int:
    async with client.get(f"http://127.0.0.1:{node.http_port}/metrics") as resp:
        return int(metric(await resp.text(), "liverelay_hls_muxers"))


async def until_no_muxer(client: aiohttp.ClientSession, node: LiverelayNode, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while await muxers(client, node):
        if time.monotonic() > deadline:
            raise TimeoutError("the HLS muxer did not stop after its linger")
        await asyncio.sleep(0.2)


async def run_case(label: str, runs: int) -> dict[str, Any]:
    sample = ensure_sample()
    server: NginxRtmp | LiverelayNode
    if label == "nginx-hls":
        server = NginxRtmp(hls=True).start()
    else:
        server = LiverelayNode(config=node_config(extra=SHORT_LINGER)).start()
    publisher = None
    probe = None
    keeper: asyncio.Task[None] | None = None
    client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        rtmp = server.rtmp_url(APP, STREAM)
        publisher = start_publisher(sample, rtmp)
        probe = await start_probe(rtmp)
        url = server.hls_url(STREAM) if isinstance(server, NginxRtmp) else server.hls_url(APP, STREAM)
        if label == "ours warm":
            await first_segment(client, url)  # the muxer is up

            async def keep_watching() -> None:
                media = await media_url(client, url)
                while True:
                    await _fetch(client, media, Counters())
                    await asyncio.sleep(0.5)

            keeper = asyncio.create_task(keep_watching())
        else:
            await asyncio.sleep(2 * GOP_S)  # nginx: its playlist exists; ours: a full GOP cache
        results = []
        for i in range(runs):
            if label == "ours cold" and isinstance(server, LiverelayNode):
                await until_no_muxer(client, server)
            await wait_phase(probe, GOP_S * i / runs)
            t_playlist, t_segment = await first_segment(client, url)
            results.append({"playlist_ms": t_playlist * 1000, "segment_ms": t_segment * 1000})
    finally:
        if probe is not None:
            probe.close()
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        await client.close()
        if publisher is not None:
            publisher.stop()
        server.stop()
    segment = [r["segment_ms"] for r in results]
    out = {
        "case": label,
        "runs": results,
        "playlist_median_ms": median(r["playlist_ms"] for r in results),
        "segment_median_ms": median(segment),
        "segment_span_ms": span(segment),
    }
    sp = out["segment_span_ms"]
    progress(
        f"  {label}: first segment after {fmt(out['segment_median_ms'], 0)} ms median"
        f" ({fmt(sp[0], 0) if sp else '-'}-{fmt(sp[1], 0) if sp else '-'})"
    )
    return out


async def run(runs: int) -> dict[str, Any]:
    cases = []
    for label in ("nginx-hls", "ours warm", "ours cold"):
        progress(f"hls start: {label}, {runs} runs")
        cases.append(await run_case(label, runs))
    return {"runs": runs, "cases": cases}


def render(result: dict[str, Any]) -> str:
    rows = []
    for case in result["cases"]:
        sp = case["segment_span_ms"]
        rows.append(
            [
                case["case"],
                fmt(case["playlist_median_ms"], 0),
                fmt(case["segment_median_ms"], 0),
                f"{fmt(sp[0], 0)}-{fmt(sp[1], 0)}" if sp else "-",
            ]
        )
    return table(["case", "playlist ms (median)", "first segment ms (median)", "first segment range"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6, help="runs per case, phases spread over the GOP")
    args = parser.parse_args()
    result = asyncio.run(run(args.runs))
    print(render(result))
    path = save("hlsstart", result)
    progress(f"hls start results saved to {path}")


if __name__ == "__main__":
    main()
