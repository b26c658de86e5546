"""Endurance soak: one node under viewers with churn, fixed and play-triggered relays, a
flapping origin and API load; then everything goes away and the node must be back to
its baseline (open fds, asyncio tasks) with bounded RSS growth.

`python -m bench.soak [--minutes 10]` (`make soak ARGS='--minutes N'`). A progress line
every few seconds; the results as JSON in bench/results/ and a summary at the end.
tests/integration/test_soak_short.py runs a one-minute version that fails on a leak.

What runs (defaults; SoakParams):
- the node publishes `pub/main` (ffmpeg from a small looped sample): `viewers` viewers,
  half RTMP and half HTTP-FLV (a tenth HLS when the node serves /{app}/{stream}.m3u8);
  every `churn_s` a tenth leave and a tenth join;
- `fixed` native fixed relays (V4) from a stable nginx-rtmp origin, plus HLS ones (a
  playlist ffmpeg writes, served by the soak over HTTP) and SRT ones (ffmpeg in SRT
  listener mode), each into `fixed/...`;
- play-triggered relays (V3) of app `live` from two nginx-rtmp origins, the first of
  which is killed and restarted every `flap_s` (its publishers too): viewer drops on those
  streams within a fault window are counted as injected, not as errors;
- API writes (create + delete of a future fixed relay) and reads (list/status) at fixed rates.
Fixed-relay availability is sampled from DescribeRelayStatus every `status_every_s`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from liverelay.sdk import AsyncLiveService
from liverelay.sdk.errors import LiveError, ThrottledError

from . import procstat
from .loadclient import FlvViewer, Viewer
from .ourapi import BENCH_PULL_DOMAIN, BENCH_VHOST, configure_v3, create_bench_domain, node_config, service
from .peers import LiverelayNode, ManagedProcess, NginxRtmp, free_port, kill_all
from .report import progress, save
from .rtmpviewer import RtmpViewer
from .sample import SampleSpec, encode_sample, loop_sample

FIXED_APP, PUB_APP, V3_APP = "fixed", "pub", "live"


@dataclass
class SoakParams:
    minutes: float = 10.0
    viewers: int = 1000
    fixed: int = 50  # native (RTMP) fixed relays
    hls_fixed: int = 2
    srt_fixed: int = 2
    v3_streams: int = 2
    v3_viewers: int = 10  # per play-triggered stream
    churn_s: float = 60.0
    churn_fraction: float = 0.1
    flap_s: float = 60.0
    fault_grace_s: float = 15.0  # after an origin restart, drops still count as injected
    api_writes_per_s: float = 20.0
    api_reads_per_s: float = 50.0
    warmup_s: float = 120.0
    progress_s: float = 5.0
    status_every_s: float = 2.0
    relay_start_grace_s: float = 30.0  # a fixed relay's window opens this long after its create
    settle_timeout_s: float = 90.0
    linger_s: float = 5.0
    hls_fraction: float = 0.1  # of viewers, when the node serves HLS


@dataclass
class Counters:
    viewer_errors: list[str] = field(default_factory=list)  # not injected
    injected_drops: int = 0
    viewer_joins: int = 0
    viewer_leaves: int = 0
    api_ok: int = 0
    api_writes: int = 0
    api_reads: int = 0
    api_throttled: int = 0
    api_errors: list[str] = field(default_factory=list)
    api_behind: int = 0  # requests skipped because too many were in flight (the client, not the node)
    api_latency_ms: list[float] = field(default_factory=list)
    api_error_kinds: dict[str, int] = field(default_factory=dict)  # "write ReadTimeout..: Action" -> n
    fixed_samples: int = 0
    fixed_up: int = 0
    fixed_by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [up, samples]
    flaps: int = 0
    helper_restarts: int = 0


# 426x240@25 H.264 (2 s GOP, ~300 kbit/s) + AAC, 20 s, looped by publishers: the soak is
# about connections and lifetimes, so the media is kept cheap for a shared 2-core machine.
SOAK_SAMPLE = SampleSpec("sample-soak-240p.flv", "426x240", 25, 50, "300k", "64k")


@dataclass
class Helper:
    """A long-running ffmpeg (publisher, HLS writer, SRT listener) restarted when it exits."""

    name: str
    out: list[str]
    process: ManagedProcess | None = None
    paused: bool = False  # its origin is down (a flap): not restarted meanwhile


class HlsViewer:
    """Polls a live playlist once a second and fetches each new segment (no decoding)."""

    protocol = "hls"

    def __init__(self, url: str) -> None:
        self.url = url
        self.error: str | None = None
        self.segments = 0
        self.task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def run(self, http: Any, max_s: float) -> None:
        import aiohttp

        seen: set[str] = set()
        base = self.url.rsplit("/", 1)[0]
        try:
            for _ in range(int(max_s) + 1):
                async with http.get(self.url) as resp:
                    if resp.status != 200:
                        self.error = f"playlist http {resp.status}"
                        return
                    text = await resp.text()
                for line in text.splitlines():
                    if line and not line.startswith("#") and line not in seen:
                        seen.add(line)
                        async with http.get(line if "://" in line else f"{base}/{line}") as seg:
                            if seg.status != 200:
                                self.error = f"segment http {seg.status}"
                                return
                            await seg.read()
                            self.segments += 1
                if len(seen) > 1000:
                    seen.clear()
                await asyncio.sleep(1.0)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.error = f"hls: {exc!r}"
        finally:
            self.closed.set()

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()


AnyViewer = Viewer | HlsViewer


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def scrape_tasks(http_port: int) -> int | None:
    """The node's `liverelay_asyncio_tasks` gauge (a fresh connection, closed after)."""
    req = urllib.request.Request(f"http://127.0.0.1:{http_port}/metrics", headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith("liverelay_asyncio_tasks "):
                    return int(float(line.split()[1]))
    except OSError as exc:  # a node too busy to answer in time: this sample has no task count
        progress(f"soak: /metrics scrape failed: {exc!r}")
    return None


class Soak:
    def __init__(self, p: SoakParams) -> None:
        self.p = p
        self.c = Counters()
        self.workdir = Path(tempfile.mkdtemp(prefix="soak-"))
        self.sample = encode_sample(SOAK_SAMPLE)
        self.viewers: dict[str, list[AnyViewer]] = {"main": [], "v3": []}
        self.faults: list[tuple[float, float]] = []  # (kill at, restarted at + grace)
        self.helpers: list[Helper] = []
        self.rss: list[tuple[float, float]] = []  # (s since start, MB)
        self.samples: list[dict[str, Any]] = []
        self.hls = False
        self.t0 = time.monotonic()
        self.fixed_created: dict[str, float] = {}  # stream -> create time
        self.stop = asyncio.Event()
        self.http: Any = None
        self._cpu_prev: procstat.CpuTimes | None = None

    # ---- set-up ---------------------------------------------------------------------

    def start_helper(self, h: Helper) -> None:
        h.process = loop_sample(self.sample, h.out, name=h.name, log_path=self.workdir / f"{h.name}.log")

    async def supervise_helpers(self) -> None:
        while not self.stop.is_set():
            for h in self.helpers:
                if not h.paused and h.process is not None and not h.process.alive():
                    self.c.helper_restarts += 1
                    self.start_helper(h)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 1.0)

    async def serve_hls_dir(self, directory: Path) -> tuple[Any, int]:
        from aiohttp import web

        app = web.Application()
        app.router.add_static("/", directory)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner, port

    def in_fault(self, at: float) -> bool:
        # An open fault (origin still down) ends at +inf.
        return any(a - 1.0 <= at <= b for a, b in self.faults)

    # ---- viewers --------------------------------------------------------------------

    def new_viewer(self, group: str, url: str) -> AnyViewer:
        if url.endswith(".m3u8"):
            hv = HlsViewer(url)
            hv.task = asyncio.create_task(hv.run(self.http, self.p.minutes * 60 + 600))
            return hv
        v: Viewer = (
            RtmpViewer(0, url, parsed=False) if url.startswith("rtmp://") else FlvViewer(0, url, parsed=False)
        )
        asyncio.create_task(v.connect())  # noqa: RUF006 - the viewer holds its own state; watched below
        return v

    def main_url(self, i: int) -> str:
        if self.hls and i % round(1 / self.p.hls_fraction) == 0:
            return self.node.hls_url(PUB_APP, "main")
        return self.node.rtmp_url(PUB_APP, "main") if i % 2 else self.node.flv_url(PUB_APP, "main")

    def v3_url(self, i: int) -> str:
        stream = f"v3s{i % self.p.v3_streams}"
        return self.node.rtmp_url(V3_APP, stream) if i % 2 else self.node.flv_url(V3_APP, stream)

    def check_viewers(self) -> None:
        """Record each viewer that ended on its own (an error unless injected) and replace it."""
        now = time.monotonic()
        for group, pool in self.viewers.items():
            for idx, v in enumerate(pool):
                if isinstance(v, HlsViewer):
                    if not v.closed.is_set():
                        continue
                    reason, url = v.error or "hls viewer stopped", v.url
                else:
                    if not v.closed.is_set():
                        continue
                    reason, url = v.stats.error or "closed", v.url
                if group == "v3" and self.in_fault(now):
                    self.c.injected_drops += 1
                else:
                    self.c.viewer_errors.append(f"{now - self.t0:.0f}s {group} {url}: {reason}")
                pool[idx] = self.new_viewer(group, url)

    def churn(self) -> None:
        pool = self.viewers["main"]
        k = max(1, int(len(pool) * self.p.churn_fraction))
        for idx in random.sample(range(len(pool)), k):
            pool[idx].close()
            self.c.viewer_leaves += 1
            pool[idx] = self.new_viewer("main", self.main_url(random.randrange(1 << 20)))
            self.c.viewer_joins += 1

    # ---- API load, fixed-relay status, flapping ---------------------------------------

    async def api_load(self, api: AsyncLiveService, per_s: float, write: bool) -> None:
        inflight: set[asyncio.Task[None]] = set()
        n = 0
        start = time.monotonic()
        while not self.stop.is_set():
            n += 1
            if len(inflight) >= 50:
                self.c.api_behind += 1
            else:
                t = asyncio.create_task(self.api_one(api, n, write))
                inflight.add(t)
                t.add_done_callback(inflight.discard)
            delay = start + n / per_s - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
        if inflight:
            await asyncio.wait(inflight, timeout=15)

    async def api_one(self, api: AsyncLiveService, n: int, write: bool) -> None:
        began = time.monotonic()
        try:
            if write:
                stream = f"w{n}"
                start = int(time.time()) + 86400
                body = {"Domain": BENCH_PULL_DOMAIN, "App": "scratch", "Stream": stream}
                await api.create_relay_source_v4(
                    {
                        **body,
                        "SrcAddrS": [self.origin_a.rtmp_url("live", "src")],
                        "StartTime": start,
                        "EndTime": start + 600,
                    }
                )
                await api.delete_relay_source_v4(body)
                self.c.api_ok += 2
                self.c.api_writes += 2
            else:
                if n % 2:
                    await api.list_relay_source_v4({"Domain": BENCH_PULL_DOMAIN, "Page": 1, "Size": 20})
                else:
                    await api.describe_relay_status({"Type": "play"})
                self.c.api_ok += 1
                self.c.api_reads += 1
            if len(self.c.api_latency_ms) < 200_000:
                self.c.api_latency_ms.append(1000.0 * (time.monotonic() - began) / (2 if write else 1))
        except ThrottledError:
            self.c.api_throttled += 1
        except LiveError as exc:
            kind = f"{'write' if write else 'read'} {type(exc).__name__}: {str(exc).split(':')[0]}"
            self.c.api_error_kinds[kind] = self.c.api_error_kinds.get(kind, 0) + 1
            if len(self.c.api_errors) < 10_000:
                self.c.api_errors.append(f"{time.monotonic() - self.t0:.0f}s {exc!r}"[:300])

    async def fixed_status(self, api: AsyncLiveService) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            try:
                envelope = await api.describe_relay_status({"Type": "fixed"})
            except LiveError as exc:
                self.c.api_errors.append(f"{now - self.t0:.0f}s status {exc!r}"[:300])
            else:
                rows = (envelope.get("Result") or {}).get("RelayStatusList") or []
                state = {r.get("Stream"): r.get("State") for r in rows if r.get("App") == FIXED_APP}
                for stream, created in self.fixed_created.items():
                    if now - created < self.p.relay_start_grace_s:
                        continue
                    up = int(state.get(stream) == "up")
                    kind = stream.rstrip("0123456789")
                    self.c.fixed_samples += 1
                    self.c.fixed_up += up
                    pair = self.c.fixed_by_kind.setdefault(kind, [0, 0])
                    pair[0] += up
                    pair[1] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.p.status_every_s)

    async def flapper(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.p.flap_s)
            if self.stop.is_set():
                return
            killed = time.monotonic()
            self.faults.append((killed, float("inf")))
            for h in self.helpers:
                if h.name.startswith("pub-b-"):
                    h.paused = True
            assert self.origin_b.process is not None
            self.origin_b.process.kill()
            await asyncio.sleep(2.0)  # down long enough for the node's pulls to notice
            await asyncio.to_thread(self.origin_b.start)
            for h in self.helpers:
                if h.name.startswith("pub-b-"):
                    if h.process is not None:
                        h.process.stop()
                    self.start_helper(h)
                    h.paused = False
            self.faults[-1] = (killed, time.monotonic() + self.p.fault_grace_s)
            self.c.flaps += 1

    # ---- the run --------------------------------------------------------------------

    def measure(self) -> tuple[float, int, int | None]:
        pid = self.node.pid
        return procstat.rss_bytes(pid) / 1e6, open_fds(pid), scrape_tasks(self.node.http_port)

    async def run(self) -> dict[str, Any]:
        import aiohttp

        p = self.p
        self.origin_a = NginxRtmp(name="origin-stable").start()
        self.origin_b = NginxRtmp(name="origin-flappy").start()
        extra = (
            f"[relay]\nlinger_s = {p.linger_s}\nmax_starting_pulls_per_vhost = 0\nmax_starting_pulls = 0\n"
        )
        cfg = node_config(extra=extra).replace(
            "rate_limit_per_s = 1000.0\nrate_burst = 1000", "rate_limit_per_s = 500.0\nrate_burst = 500"
        )
        self.node = LiverelayNode(config=cfg, name="soak-node").start()
        hls_dir = self.workdir / "hls"
        hls_dir.mkdir()
        hls_runner, hls_port = await self.serve_hls_dir(hls_dir)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
        api = service(self.node)
        tasks: list[asyncio.Task[None]] = []
        result: dict[str, Any] = {"params": asdict(p)}
        try:
            await create_bench_domain(api)
            await api.aclose()
            await asyncio.sleep(2.0)
            rss0, fds0, tasks0 = await asyncio.to_thread(self.measure)
            result["baseline"] = {"rss_mb": rss0, "fds": fds0, "tasks": tasks0}
            progress(f"soak: node pid {self.node.pid} baseline RSS {rss0:.1f} MB, fds {fds0}, tasks {tasks0}")

            # Publishers and origin-side helpers.
            self.helpers.append(Helper("pub-main", ["-f", "flv", self.node.rtmp_url(PUB_APP, "main")]))
            self.helpers.append(Helper("pub-a-src", ["-f", "flv", self.origin_a.rtmp_url("live", "src")]))
            for s in range(p.v3_streams):
                self.helpers.append(
                    Helper(f"pub-a-v3s{s}", ["-f", "flv", self.origin_a.rtmp_url("live", f"v3s{s}")])
                )
                self.helpers.append(
                    Helper(f"pub-b-v3s{s}", ["-f", "flv", self.origin_b.rtmp_url("live", f"v3s{s}")])
                )
            if p.hls_fixed:
                hls_out = [
                    "-f",
                    "hls",
                    "-hls_time",
                    "2",
                    "-hls_list_size",
                    "6",
                    "-hls_flags",
                    "delete_segments",
                ]
                self.helpers.append(Helper("hls-writer", [*hls_out, str(hls_dir / "src.m3u8")]))
            srt_ports = [free_port() for _ in range(p.srt_fixed)]
            for i, port in enumerate(srt_ports):
                self.helpers.append(
                    Helper(f"srt-{i}", ["-f", "mpegts", f"srt://127.0.0.1:{port}?mode=listener"])
                )
            for h in self.helpers:
                self.start_helper(h)
            tasks.append(asyncio.create_task(self.supervise_helpers()))
            await asyncio.sleep(3.0)

            api = service(self.node)
            await configure_v3(
                api,
                [f"127.0.0.1:{self.origin_b.rtmp_port}", f"127.0.0.1:{self.origin_a.rtmp_port}"],
                app=V3_APP,
            )
            srcs: list[tuple[str, str]] = [
                (f"rtmp{i}", self.origin_a.rtmp_url("live", "src")) for i in range(p.fixed)
            ]
            srcs += [(f"hls{i}", f"http://127.0.0.1:{hls_port}/src.m3u8") for i in range(p.hls_fixed)]
            srcs += [(f"srt{i}", f"srt://127.0.0.1:{port}") for i, port in enumerate(srt_ports)]
            for stream, src in srcs:
                await api.create_relay_source_v4(
                    {"Domain": BENCH_PULL_DOMAIN, "App": FIXED_APP, "Stream": stream, "SrcAddrS": [src]}
                )
                self.fixed_created[stream] = time.monotonic()

            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.http.get(self.node.hls_url(PUB_APP, "main")) as resp:
                    self.hls = resp.status == 200 and "#EXTM3U" in await resp.text()
            result["hls_viewers"] = self.hls
            self.viewers["main"] = [self.new_viewer("main", self.main_url(i)) for i in range(p.viewers)]
            self.viewers["v3"] = [
                self.new_viewer("v3", self.v3_url(i)) for i in range(p.v3_streams * p.v3_viewers)
            ]
            self.c.viewer_joins += p.viewers
            progress(
                f"soak: {p.viewers} viewers (HLS {'yes' if self.hls else 'not served'}), "
                f"{len(srcs)} fixed relays"
            )

            tasks.append(asyncio.create_task(self.api_load(service(self.node), p.api_writes_per_s / 2, True)))
            tasks.append(asyncio.create_task(self.api_load(service(self.node), p.api_reads_per_s, False)))
            tasks.append(asyncio.create_task(self.fixed_status(api)))
            tasks.append(asyncio.create_task(self.flapper()))

            end = time.monotonic() + p.minutes * 60
            next_churn = time.monotonic() + p.churn_s
            tasks.append(asyncio.create_task(self.sampler()))
            for _ in range(int(p.minutes * 60 / 0.5) + 10):
                now = time.monotonic()
                if now >= end:
                    break
                self.check_viewers()
                if now >= next_churn:
                    self.churn()
                    next_churn += p.churn_s
                await asyncio.sleep(0.5)
            self.check_viewers()

            # Tear-down: every viewer and relay goes; the node must return to its baseline.
            self.stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for pool in self.viewers.values():
                for v in pool:
                    v.close()
            for stream in self.fixed_created:
                await api.delete_relay_source_v4(
                    {"Domain": BENCH_PULL_DOMAIN, "App": FIXED_APP, "Stream": stream}
                )
            await api.delete_relay_source_v3({"Vhost": BENCH_VHOST, "App": V3_APP})
            await api.aclose()
            for h in self.helpers:
                h.paused = True
                if h.process is not None:
                    h.process.stop()
            result["settle"] = await self.settle(fds0, tasks0)
        finally:
            self.stop.set()
            for t in tasks:
                t.cancel()
            await self.http.close()
            await hls_runner.cleanup()
            for h in self.helpers:
                if h.process is not None:
                    h.process.stop()
            node_log = self.node.log_tail(40)
            self.node.stop()
            self.origin_a.stop()
            self.origin_b.stop()
            shutil.rmtree(self.workdir, ignore_errors=True)
        result.update(self.summary(rss0))
        result["node_log_tail"] = node_log
        return result

    async def sampler(self) -> None:
        """A progress line (and an RSS/fd/task sample) every `progress_s`, in its own task: a
        busy node may take seconds to answer /metrics, and the viewers must not wait for it."""
        while not self.stop.is_set():
            began = time.monotonic()
            await self.tick(began)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.stop.wait(), max(0.1, self.p.progress_s - (time.monotonic() - began))
                )

    async def tick(self, now: float) -> None:
        rss, fds, ntasks = await asyncio.to_thread(self.measure)  # off the viewers' loop
        cpu_now = procstat.cpu_times(self.node.pid)
        cpu = None if self._cpu_prev is None else procstat.usage_between(self._cpu_prev, cpu_now).percent
        self._cpu_prev = cpu_now
        load1 = os.getloadavg()[0]
        t = now - self.t0
        self.rss.append((t, rss))
        main = self.viewers["main"]
        live = sum(
            1 for v in main if (v.transport is not None if isinstance(v, Viewer) else not v.closed.is_set())
        )
        fixed = f"{self.c.fixed_up}/{self.c.fixed_samples}"
        self.samples.append(
            {
                "t": round(t, 1),
                "rss_mb": round(rss, 2),
                "fds": fds,
                "tasks": ntasks,
                "viewers": live,
                "node_cpu_pct": None if cpu is None else round(cpu, 1),
                "load1": round(load1, 2),
                "api_ok": self.c.api_ok,
                "api_errors": len(self.c.api_errors),
            }
        )
        progress(
            f"soak {t:6.0f}s viewers {live}/{len(main)} errors {len(self.c.viewer_errors)} "
            f"(injected {self.c.injected_drops}) api ok {self.c.api_ok} err {len(self.c.api_errors)} "
            f"throttled {self.c.api_throttled} fixed up {fixed} flaps {self.c.flaps} "
            f"RSS {rss:.1f} MB fds {fds} tasks {ntasks} node CPU {cpu or 0:.0f}% load {load1:.1f}"
        )

    async def settle(self, fds0: int, tasks0: int | None) -> dict[str, Any]:
        """Wait (bounded) for fds and tasks to come back to the baseline; the closest reading."""
        deadline = time.monotonic() + self.p.settle_timeout_s
        best: tuple[int, int] = (1 << 30, 1 << 30)
        for _ in range(int(self.p.settle_timeout_s) + 2):
            _, fds, ntasks = await asyncio.to_thread(self.measure)
            leak = (fds - fds0, (ntasks or 0) - (tasks0 or 0))
            if sum(max(x, 0) for x in leak) <= sum(max(x, 0) for x in best):
                best = leak
            if (leak[0] <= 0 and leak[1] <= 0) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        progress(
            f"soak: after tear-down fds {fds0 + best[0]} (baseline {fds0}), "
            f"tasks {(tasks0 or 0) + best[1]} (baseline {tasks0})"
        )
        return {
            "fds_leaked": max(best[0], 0),
            "tasks_leaked": max(best[1], 0),
            "fds_delta": best[0],
            "tasks_delta": best[1],
        }

    def summary(self, rss0: float) -> dict[str, Any]:
        after = [mb for t, mb in self.rss if t >= self.p.warmup_s]
        n = max(1, len(after) // 10)
        warm = statistics.median(after[:n]) if after else None
        last = statistics.median(after[-n:]) if after else None
        growth = None if not warm or last is None else 100.0 * (last - warm) / warm
        lat = sorted(self.c.api_latency_ms)
        avail = None if not self.c.fixed_samples else 100.0 * self.c.fixed_up / self.c.fixed_samples
        return {
            "rss_mb_warm": warm,
            "rss_mb_end": last,
            "rss_mb_max": max((mb for _, mb in self.rss), default=None),
            "rss_growth_pct": growth,
            "rss_series": [(round(t), round(mb, 1)) for t, mb in self.rss[:: max(1, len(self.rss) // 40)]],
            "viewer_errors": len(self.c.viewer_errors),
            "viewer_error_examples": self.c.viewer_errors[:10],
            "injected_drops": self.c.injected_drops,
            "viewer_joins": self.c.viewer_joins,
            "viewer_leaves": self.c.viewer_leaves,
            "api_ok": self.c.api_ok,
            "api_throttled": self.c.api_throttled,
            "api_errors": len(self.c.api_errors),
            "api_error_examples": self.c.api_errors[:10],
            "api_error_kinds": self.c.api_error_kinds,
            "api_client_behind": self.c.api_behind,
            "api_writes_per_s": self.c.api_writes / (self.p.minutes * 60),
            "api_reads_per_s": self.c.api_reads / (self.p.minutes * 60),
            "api_p50_ms": statistics.median(lat) if lat else None,
            "api_p99_ms": lat[int(0.99 * (len(lat) - 1))] if lat else None,
            "fixed_availability_pct": avail,
            "fixed_by_kind": {k: 100.0 * up / max(n_, 1) for k, (up, n_) in self.c.fixed_by_kind.items()},
            "flaps": self.c.flaps,
            "helper_restarts": self.c.helper_restarts,
            "samples": self.samples,
        }


def verdict(r: dict[str, Any], *, rss_growth_max_pct: float = 5.0) -> dict[str, bool]:
    settle = r.get("settle") or {}
    growth = r.get("rss_growth_pct")
    avail = r.get("fixed_availability_pct")
    return {
        "rss_growth": growth is not None and growth < rss_growth_max_pct,
        "no_fd_leak": settle.get("fds_leaked") == 0,
        "no_task_leak": settle.get("tasks_leaked") == 0,
        "no_viewer_errors": r.get("viewer_errors") == 0,
        "no_api_errors": r.get("api_errors") == 0,
        "fixed_availability": avail is not None and avail >= 99.9,
    }


async def run(p: SoakParams) -> dict[str, Any]:
    result = await Soak(p).run()
    result["goals"] = verdict(result)
    return result


def parse_args(argv: list[str] | None = None) -> SoakParams:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description="liverelay endurance soak")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--viewers", type=int, default=1000)
    ap.add_argument("--fixed", type=int, default=50, help="native fixed relays")
    ap.add_argument("--churn-s", type=float, default=60.0)
    ap.add_argument("--flap-s", type=float, default=60.0)
    ap.add_argument("--warmup-s", type=float, help="default: 2 minutes, or a fifth of a shorter run")
    a = ap.parse_args(argv)
    warm = a.warmup_s if a.warmup_s is not None else min(120.0, a.minutes * 60 / 5)
    return SoakParams(
        minutes=a.minutes, viewers=a.viewers, fixed=a.fixed, churn_s=a.churn_s, flap_s=a.flap_s, warmup_s=warm
    )


def main(argv: list[str] | None = None) -> int:
    params = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        result = asyncio.run(run(params))
    finally:
        kill_all()
    path = save("soak", result)
    brief = {k: v for k, v in result.items() if k not in ("samples", "node_log_tail", "rss_series")}
    print(json.dumps(brief, indent=1, default=str))
    progress(f"soak results saved to {path}; goals: {result['goals']}")
    return 0 if all(result["goals"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
