"""HLS fan-out: N players fetching playlist + segments at the live edge, nginx-rtmp vs ours.

Targets (fresh server per run, the sample published in real time):
- `nginx-hls`: nginx-rtmp `hls on` (2 s fragments) written to disk and served by nginx's
  own HTTP server with sendfile;
- `ours-hls`: our classic HLS (MPEG-TS, in memory) at /{app}/{stream}.m3u8;
- `ours-llhls`: our LL-HLS (fMP4 parts) with blocking reloads, like hls.js in low-latency mode.

A classic player reloads the media playlist every target duration and fetches each new
segment (the newest one at start); an LL player asks for the next part with a blocking
playlist reload and fetches the part through the preload hint (blocking too). All players
share one aiohttp client in this process (its CPU is recorded: if it nears 100 % the
client is the limit).

Latency, measured by one probe beside the players: an RTMP viewer records when each video
keyframe reaches the server's viewers (RTMP relays a frame within milliseconds, so this is
"the frame reached the server"), and the probe polls the playlist every 50 ms (LL: a
blocking reload per part). A segment appears after the keyframe that closes it: `cut delay`
= appearance - arrival of that keyframe; `first frame -> fetchable` = cut delay + the
segment's duration (its first frame arrived a segment earlier). For LL-HLS the same per
part, from the node's PROGRAM-DATE-TIME (the wall clock of the receipt of the first frame).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

import aiohttp

from . import procstat
from .fanout import wait_playable
from .loadclient import make_viewer
from .ourapi import node_config
from .peers import LiverelayNode, NginxRtmp
from .report import median, progress, render_sweep, save, summarize_sweep, sweep
from .sample import ensure_sample, start_publisher

APP, STREAM = "live", "bench"
TARGETS = ("nginx-hls", "ours-hls", "ours-llhls")
_EXTINF = re.compile(r"^#EXTINF:([\d.]+)", re.M)
_SEQ = re.compile(r"^#EXT-X-MEDIA-SEQUENCE:(\d+)", re.M)
_TARGET = re.compile(r"^#EXT-X-TARGETDURATION:(\d+)", re.M)
_HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"')
_PART = re.compile(r'#EXT-X-PART:DURATION=([\d.]+),URI="part(\d+)\.(\d+)\.m4s')
_PDT = re.compile(
    r"#EXT-X-PROGRAM-DATE-TIME:(\S+)\n(?:#EXT-X-PART:[^\n]*\n)*?#EXT-X-PART:DURATION=[\d.]+,URI=\"part(\d+)\.0\.m4s"
)


@dataclass
class Counters:
    requests: int = 0
    bytes: int = 0
    errors: int = 0
    segments: int = 0
    last_error: str = ""


@dataclass
class Probe:
    cut_delays: list[float] = field(default_factory=list)
    first_frame: list[float] = field(default_factory=list)


def _segments(text: str) -> tuple[int, list[tuple[float, str]]]:
    seq = int(m.group(1)) if (m := _SEQ.search(text)) else 0
    lines = text.splitlines()
    out: list[tuple[float, str]] = []
    for i, line in enumerate(lines):
        if line.startswith("#EXTINF:") and i + 1 < len(lines):
            out.append((float(line[8:].split(",")[0]), lines[i + 1]))
    return seq, out


async def _fetch(client: aiohttp.ClientSession, url: str, c: Counters) -> str | None:
    try:
        async with client.get(url) as resp:
            body = await resp.read()
            c.requests += 1
            c.bytes += len(body)
            if resp.status != 200:
                c.errors += 1
                c.last_error = f"{resp.status} {url}"
                return None
            return body.decode("latin-1")
    except (TimeoutError, aiohttp.ClientError) as exc:
        c.errors += 1
        c.last_error = f"{type(exc).__name__} {url}"
        return None


async def media_url(client: aiohttp.ClientSession, url: str) -> str:
    """Follow a master playlist (ours: it names this player's session) to the media playlist."""
    c = Counters()
    text = await _fetch(client, url, c)
    if text is None:
        raise RuntimeError(f"{url}: {c.last_error}")
    if "#EXT-X-STREAM-INF" in text:
        uri = next(ln for ln in text.splitlines() if ln and not ln.startswith("#"))
        return urljoin(url, uri)
    return url


async def classic_player(client: aiohttp.ClientSession, url: str, c: Counters, stop: asyncio.Event) -> None:
    media = await media_url(client, url)
    await asyncio.sleep(random.uniform(0, 2.0))  # players do not start in step
    last = -1
    while not stop.is_set():
        text = await _fetch(client, media, c)
        target = 2.0
        if text is not None:
            target = float(m.group(1)) if (m := _TARGET.search(text)) else 2.0
            seq, segs = _segments(text)
            for i, (_, uri) in enumerate(segs):
                msn = seq + i
                if msn <= last or (last < 0 and i != len(segs) - 1):
                    continue
                if await _fetch(client, urljoin(media, uri), c) is not None:
                    c.segments += 1
                last = msn
        with _suppress_timeout():
            await asyncio.wait_for(stop.wait(), target)


def _next_part(media: str, text: str) -> tuple[int, int, str, str] | None:
    """From an LL-HLS media playlist: the preload-hinted part (msn, part), its URL, and the
    blocking reload that returns once it is published; None without a hint."""
    hint = _HINT.search(text)
    if hint is None:
        return None
    m = re.search(r"part(\d+)\.(\d+)\.m4s", hint.group(1))
    assert m is not None
    msn, part = int(m.group(1)), int(m.group(2))
    sep = "&" if "?" in media else "?"
    return msn, part, urljoin(media, hint.group(1)), f"{media}{sep}_HLS_msn={msn}&_HLS_part={part}"


async def ll_player(client: aiohttp.ClientSession, url: str, c: Counters, stop: asyncio.Event) -> None:
    media = await media_url(client, url)
    await asyncio.sleep(random.uniform(0, 0.5))
    text = await _fetch(client, media, c)
    while not stop.is_set() and text is not None:
        nxt = _next_part(media, text)
        if nxt is None:
            return
        _msn, _part, part_url, reload_url = nxt
        got, text = await asyncio.gather(_fetch(client, part_url, c), _fetch(client, reload_url, c))
        if got is not None:
            c.segments += 1
        if text is None:
            await asyncio.sleep(0.5)
            text = await _fetch(client, media, c)


class _suppress_timeout:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> bool:
        return exc_type is not None and issubclass(exc_type, TimeoutError)


async def probe_classic(client: aiohttp.ClientSession, url: str, rtmp_url: str, seconds: float) -> Probe:
    probe = Probe()
    viewer = make_viewer(0, rtmp_url, True)
    await viewer.connect()
    try:
        media = await media_url(client, url)
        c = Counters()
        seen: set[int] = set()
        deadline = time.monotonic() + seconds
        first = True
        while time.monotonic() < deadline:
            text = await _fetch(client, media, c)
            now = time.monotonic()
            if text is not None:
                seq, segs = _segments(text)
                for i, (duration, _) in enumerate(segs):
                    msn = seq + i
                    if msn in seen:
                        continue
                    seen.add(msn)
                    key_at = viewer.stats.last_key_at
                    if not first and key_at is not None and now - key_at < 5:
                        probe.cut_delays.append(now - key_at)
                        probe.first_frame.append(now - key_at + duration)
                first = False
            await asyncio.sleep(0.05)
    finally:
        viewer.close()
    return probe


def _epoch(pdt: str) -> float:
    return datetime.fromisoformat(pdt.replace("Z", "+00:00")).timestamp()


async def probe_ll(client: aiohttp.ClientSession, url: str, seconds: float) -> Probe:
    """Per part: availability (the blocking fetch of the hinted part returns) minus the wall
    clock of its first frame's receipt (PROGRAM-DATE-TIME + the earlier parts' durations)."""
    probe = Probe()
    media = await media_url(client, url)
    c = Counters()
    text = await _fetch(client, media, c)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and text is not None:
        nxt = _next_part(media, text)
        if nxt is None:
            break
        msn, part, part_url, reload_url = nxt
        if await _fetch(client, part_url, c) is None:
            text = await _fetch(client, media, c)
            continue
        available = time.time()
        text = await _fetch(client, reload_url, c)
        if text is None:
            break
        starts = {int(s): _epoch(p) for p, s in _PDT.findall(text)}
        durations = {(int(a), int(b)): float(d) for d, a, b in _PART.findall(text)}
        if msn in starts and (msn, part) in durations:
            first = starts[msn] + sum(durations.get((msn, i), 0.0) for i in range(part))
            probe.first_frame.append(available - first)
            probe.cut_delays.append(available - first - durations[(msn, part)])
    return probe


async def run_one(label: str, n: int, *, window_s: float, warmup_s: float) -> dict[str, Any]:
    sample = ensure_sample()
    if label == "nginx-hls":
        server: NginxRtmp | LiverelayNode = NginxRtmp(hls=True).start()
    else:
        server = LiverelayNode(config=node_config()).start()
    publisher = None
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    connector = aiohttp.TCPConnector(limit=0)
    client = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=20))
    try:
        rtmp = server.rtmp_url(APP, STREAM)
        publisher = start_publisher(sample, rtmp)
        await wait_playable(rtmp)
        if isinstance(server, NginxRtmp):
            url = server.hls_url(STREAM)
        else:
            url = server.hls_url(APP, STREAM, low_latency=label == "ours-llhls")
        deadline = time.monotonic() + 30
        while True:  # nginx writes its first playlist after a fragment; ours answers then too
            try:
                await media_url(client, url)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        idle = procstat.CpuWindow(server.pid)
        idle.start()
        await asyncio.sleep(3.0)
        idle_cpu = idle.stop()
        counters = Counters()
        player = ll_player if label == "ours-llhls" else classic_player
        progress(f"  {label}: starting {n} players")
        tasks = [asyncio.create_task(player(client, url, counters, stop)) for _ in range(n)]
        await asyncio.sleep(warmup_s)
        req0, bytes0, err0 = counters.requests, counters.bytes, counters.errors
        server_cpu = procstat.CpuWindow(server.pid)
        client_cpu = procstat.CpuWindow(os.getpid())
        server_cpu.start()
        client_cpu.start()
        if label == "ours-llhls":
            probe = await probe_ll(client, url, window_s)
        else:
            probe = await probe_classic(client, url, rtmp, window_s)
        cpu = server_cpu.stop()
        ccpu = client_cpu.stop()
        rss = procstat.rss_bytes(server.pid)
        rps = (counters.requests - req0) / cpu.wall_s
        return {
            "target": label,
            "viewers": n,
            "window_s": window_s,
            "idle_cpu_pct": idle_cpu.percent,
            "cpu_pct": cpu.percent,
            "cpu_per_viewer_pct": (cpu.percent - idle_cpu.percent) / n,
            # Per request served: comparable when the one client process cannot keep every
            # player at its rate (then the targets serve different request rates at one N).
            "cpu_per_kreq_pct": (cpu.percent - idle_cpu.percent) * 1000 / max(rps, 1e-9),
            "rss_mb": rss / 1e6,
            "requests_per_s": rps,
            "mbit_per_s": (counters.bytes - bytes0) * 8 / cpu.wall_s / 1e6,
            "errors": counters.errors - err0,
            "last_error": counters.last_error,
            "client_cpu_pct": ccpu.percent,
            "cut_delay_ms": _ms(median(probe.cut_delays)),
            "first_frame_to_fetchable_ms": _ms(median(probe.first_frame)),
            "latency_samples": len(probe.first_frame),
            "loadavg_1m": os.getloadavg()[0],
        }
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
        if publisher is not None:
            publisher.stop()
        server.stop()


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


METRICS = (
    ("cpu_pct", "CPU %"),
    ("cpu_per_viewer_pct", "CPU %/viewer"),
    ("cpu_per_kreq_pct", "CPU % per 1000 req/s"),
    ("rss_mb", "RSS MB"),
    ("requests_per_s", "req/s"),
    ("mbit_per_s", "Mbit/s"),
    ("errors", "errors"),
    ("cut_delay_ms", "cut delay ms"),
    ("first_frame_to_fetchable_ms", "frame->fetchable ms"),
    ("client_cpu_pct", "client CPU %"),
)


async def run(
    viewers: list[int], targets: list[str], *, repeat: int, window_s: float, warmup_s: float
) -> dict[str, Any]:
    async def one(label: str, n: int, _rep: int) -> dict[str, Any]:
        return await run_one(label, n, window_s=window_s, warmup_s=warmup_s)

    runs = await sweep("hls fan-out", viewers, targets, repeat, METRICS, one, unit="players")
    summary = summarize_sweep(runs, viewers, targets, METRICS)
    path = save(
        "hlsfanout",
        {
            "params": {"viewers": viewers, "targets": targets, "repeat": repeat, "window_s": window_s},
            "runs": runs,
            "medians": summary,
        },
    )
    print(render(summary, viewers, targets))
    progress(f"hls fan-out results saved to {path}")
    return summary


def render(summary: dict[str, Any], viewers: list[int], targets: list[str]) -> str:
    return render_sweep(
        "HLS fan-out (medians of repeats)",
        summary,
        viewers,
        targets,
        METRICS,
        count_header="players",
        digits={"cpu_per_viewer_pct": 4, "cpu_per_kreq_pct": 2},
        baseline="nginx-hls",
        compared=("ours-hls",),
        ratio_keys=("cpu_pct", "cpu_per_viewer_pct", "cpu_per_kreq_pct"),
    )
