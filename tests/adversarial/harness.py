"""A real node under attack, watched from outside.

`Harness` runs `liverelay serve` as a subprocess (tests.conftest.start_node), publishes a
looped sample into it with ffmpeg, and starts a `Monitor` in its own thread and event loop:

- a real HTTP-FLV viewer of that stream (tests.adversarial.stamped.StampedFlvViewer) that
  records when each frame arrived;
- a signed API client that calls ListRelaySourceV4 over a fresh connection every
  API_POLL_INTERVAL_S and records each call's latency and answer;
- a sampler of the node's RSS and open file count from /proc/PID.

The viewer and the API client run on threads of their own and time the node by the
kernel's arrival stamps (tests/adversarial/stamped.py says why): what they measure is the
node, not how long this process, sharing loaded cores with the attack, took to run.

`Harness.attack_guard(...)` wraps an attack. From its start to the end of a short quiet
period after the attack (whose connections the test closes inside the block) it checks:
the node is alive, the viewer never waits more than MAX_MEDIA_GAP_S for video, every API
call answers within MAX_API_LATENCY_S, RSS stays under MAX_RSS_BYTES, the open file count
returns to its baseline (within FD_SLACK) once the attack is over, and the node's log
gained a bounded number of lines, none of them huge and no traceback. A failure prints
every measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import json
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from bench.httpwire import HttpWireError
from tests.adversarial.stamped import StampedFlvViewer, exchange, request_bytes
from tests.conftest import TEST_AK, TEST_SK, NodeProcess, ffmpeg_publish, start_node
from tests.integration.relay_helpers import api as api_service

from liverelay.api.signing import sign_request
from liverelay.sdk import LiveService

T = TypeVar("T")

# What a node under attack must keep doing (ISSUE-8, Acceptance).
MAX_MEDIA_GAP_S = 2.0
MAX_API_LATENCY_S = 1.0
MAX_RSS_BYTES = 150 * 1024 * 1024
# Open files may differ from the baseline by this much once an attack is over: the API
# client's own short connections, a viewer reconnecting, the kernel's lazy closes.
FD_SLACK = 10
# Bounds of the measurement itself.
SAMPLE_INTERVAL_S = 0.1
API_POLL_INTERVAL_S = 0.25
API_CLIENT_TIMEOUT_S = 15.0  # long enough to measure a frozen node, not to hang a test
VIEWER_READY_S = 20.0
AFTER_ATTACK_S = 2.0
FD_SETTLE_S = 10.0
MAX_LOG_LINE_CHARS = 4096

API_VERSION = "2023-01-01"
VHOST = "vh.adv"
PULL_DOMAIN = "pull.adv.test"
APP = "live"
WATCH_STREAM = "watch"

# Strict vhost mode (as a public node would run): only registered domains are served.
# 127.0.0.1 is registered as a domain of VHOST so that loopback URLs resolve. Relay
# timeouts are short so that failing pulls show within seconds. The API's per-key rate
# limit is raised: the API client polls while a test configures and inspects the node
# with the same key, and throttling is not what these tests are about.
ADV_CONFIG = """
[api]
rate_limit_per_s = 100.0
rate_burst = 100

[media]
default_vhost = ""

[relay]
connect_timeout_s = 2.0
first_frame_timeout_s = 3.0
start_timeout_s = 5.0
no_media_timeout_s = 2.0
linger_s = 2.0
backoff_initial_s = 0.3
backoff_max_s = 1.0
failback_probe_interval_s = 1.0
"""


# ---- the node from outside -------------------------------------------------------------------


def proc_rss(pid: int) -> int:
    """Resident set size in bytes (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def proc_fds(pid: int) -> int:
    """Open file descriptors (0 once the process is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return 0


def proc_nofile(pid: int) -> tuple[int, int]:
    """(soft, hard) open-file limit of the process, as /proc/PID/limits shows it."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                unlimited = 1 << 62
                return (
                    unlimited if soft == "unlimited" else int(soft),
                    unlimited if hard == "unlimited" else int(hard),
                )
    raise AssertionError(f"no 'Max open files' in /proc/{pid}/limits")


def log_lines_since(node: NodeProcess, offset: int) -> list[str]:
    """Lines the node logged since byte `offset` of its log."""
    try:
        with node.log_path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return []
    return data.decode(errors="replace").splitlines()


def log_size(node: NodeProcess) -> int:
    try:
        return node.log_path.stat().st_size
    except FileNotFoundError:
        return 0


def register_domains(node: NodeProcess) -> None:
    """VHOST with a pull domain and 127.0.0.1 (so loopback URLs resolve in strict mode)."""
    with api_service(node) as svc:
        svc.create_domain_v2(
            {
                "Vhost": VHOST,
                "Domains": [
                    {"DomainName": PULL_DOMAIN, "Type": "pull-flv", "Region": "cn"},
                    {"DomainName": "127.0.0.1", "Type": "pull-flv", "Region": "cn"},
                ],
            }
        )


def set_v3_origins(node: NodeProcess, servers: list[dict[str, Any]]) -> None:
    """A play-triggered (V3) relay config for VHOST/APP with these origin servers."""
    body = {"Vhost": VHOST, "App": APP, "GroupDetails": [{"Group": "g1", "Servers": servers}]}
    with api_service(node) as svc:
        svc.update_relay_source_v3(body)


def origin_server(protocol: str, port: int) -> dict[str, Any]:
    """A V3 server entry for a loopback origin; `protocol` is "rtmp" or "flv"."""
    return {"RelaySourceProtocol": protocol, "RelaySourceDomain": f"127.0.0.1:{port}"}


def relay_rows(node: NodeProcess, relay_type: str) -> list[dict[str, Any]]:
    """DescribeRelayStatus rows of one type ("play" or "fixed")."""
    with api_service(node) as svc:
        result = svc.describe_relay_status({"Type": relay_type})
    rows: list[dict[str, Any]] = result.get("Result", result).get("RelayStatusList", [])
    return [r for r in rows if r.get("Type") == relay_type]


def signed_headers(node: NodeProcess, query: list[tuple[str, str]], body: bytes) -> dict[str, str]:
    return sign_request(
        method="POST",
        host=node.api_host,
        path="/",
        query=query,
        body=body,
        access_key=TEST_AK,
        secret_key=TEST_SK,
    )


def signed_call(
    node: NodeProcess, query: list[tuple[str, str]], body: bytes, *, timeout: float = 5.0
) -> tuple[int, bytes]:
    """One signed POST with exactly this query (duplicates kept) and raw body: (status, body)."""
    headers = signed_headers(node, query, body)
    conn = http.client.HTTPConnection("127.0.0.1", node.api_port, timeout=timeout)
    try:
        conn.request("POST", "/?" + urlencode(query), body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def action_query(action: str) -> list[tuple[str, str]]:
    return [("Action", action), ("Version", API_VERSION)]


# ---- measurements --------------------------------------------------------------------------


@dataclass
class ApiCall:
    started: float
    latency: float | None = None  # None while in flight
    status: int | None = None
    error: str | None = None
    stamped: bool = False  # the answer's arrival is the kernel's stamp (see stamped.py)

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200


@dataclass
class Sample:
    at: float
    rss: int
    fds: int


class Monitor:
    """Viewer and API client on threads of their own, the /proc sampler on an event loop
    of its own (a thread), so that an attack run by the test, blocking or not, never
    delays the measurements."""

    def __init__(self, node: NodeProcess, viewer_path: str) -> None:
        self.node = node
        self.pid = node.proc.pid
        self.viewer = StampedFlvViewer(node.http_port, viewer_path, ready_s=VIEWER_READY_S)
        self.calls: list[ApiCall] = []
        self.samples: list[Sample] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="adv-monitor", daemon=True)
        self._api_thread = threading.Thread(target=self._poll_api, name="adv-api", daemon=True)
        self._stop: asyncio.Event | None = None
        self._halt = threading.Event()
        self._started = threading.Event()

    def start(self) -> Monitor:
        self._thread.start()
        assert self._started.wait(10), "the monitor thread did not start"
        self.viewer.start()
        self._api_thread.start()
        self.wait_ready()
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        sampler = asyncio.create_task(self._sample())
        self._started.set()
        await self._stop.wait()
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)

    def stop(self) -> None:
        self._halt.set()
        self.viewer.close()
        if self._api_thread.is_alive():
            self._api_thread.join(timeout=API_CLIENT_TIMEOUT_S + 5)
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=15)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the monitor's loop (e.g. a helper server) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _poll_api(self) -> None:
        body = json.dumps({"Domain": PULL_DOMAIN, "Page": 1, "Size": 10}).encode()
        query = action_query("ListRelaySourceV4")
        target = f"/?{urlencode(query)}"
        while not self._halt.is_set():
            # Signed before the clock starts: the client's own cost is not the node's.
            request = request_bytes("POST", target, signed_headers(self.node, query, body), body)
            call = ApiCall(time.monotonic())
            self.calls.append(call)
            # A fresh connection per call: a node that stops accepting must show here.
            try:
                answer = exchange(self.node.api_port, request, timeout=API_CLIENT_TIMEOUT_S)
            except (OSError, HttpWireError) as exc:
                call.error = f"{type(exc).__name__}: {exc}"
                call.latency = time.monotonic() - call.started
            else:
                call.started, call.stamped = answer.started, answer.stamped
                call.status = answer.status
                if answer.status != 200:
                    call.error = answer.body[:200].decode(errors="replace")
                call.latency = answer.latency
            self._halt.wait(API_POLL_INTERVAL_S)

    async def _sample(self) -> None:
        while True:
            self.samples.append(Sample(time.monotonic(), proc_rss(self.pid), proc_fds(self.pid)))
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    def wait_ready(self) -> None:
        """Until the viewer has video and one API call succeeded (bounded)."""
        deadline = time.monotonic() + VIEWER_READY_S
        while time.monotonic() < deadline:
            if len(self.video_times()) >= 10 and any(c.ok for c in list(self.calls)):
                return
            time.sleep(0.1)
        viewer = self.viewer
        raise AssertionError(
            f"the harness never got going: {len(self.video_times())} video frames "
            f"(status {viewer.status}, {viewer.error}), "
            f"API calls {[(c.status, c.error) for c in self.calls[-3:]]}\n"
            f"node log tail:\n{self.node.log()[-3000:]}"
        )

    def video_times(self) -> list[float]:
        return self.viewer.video_times()

    def current_fds(self) -> int:
        return proc_fds(self.pid)

    def settle_calls(self, until: float) -> None:
        """Until every API call started by `until` has its answer (bounded by the client's
        timeout): a call is judged by its measured latency, not by how far this process
        got with reading an answer that had already arrived."""
        deadline = time.monotonic() + API_CLIENT_TIMEOUT_S + 1
        while time.monotonic() < deadline:
            if all(c.latency is not None for c in list(self.calls) if c.started <= until):
                return
            time.sleep(0.02)


# ---- the guard -----------------------------------------------------------------------------


@dataclass
class Guard:
    """One attack's window and limits; `notes` collects what the test wants in the report."""

    what: str
    started: float
    baseline_fds: int
    baseline_rss: int
    log_offset: int
    max_log_lines: int
    max_rss: int
    attack_ended: float | None = None
    ended: float | None = None
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)


def _max_gap(times: list[float], start: float, end: float) -> tuple[float, float]:
    """The longest wait for video within [start, end] (edges count): (gap, where it began)."""
    points = [start, *[t for t in times if start < t <= end], end]
    gaps = [(b - a, a) for a, b in itertools.pairwise(points)]
    return max(gaps, default=(0.0, start))


class Harness:
    """A node with a publisher, a viewer, an API client and a sampler; see the module doc."""

    def __init__(self, node: NodeProcess, monitor: Monitor) -> None:
        self.node = node
        self.monitor = monitor

    @property
    def pid(self) -> int:
        return self.node.proc.pid

    @classmethod
    def start(
        cls,
        stack: contextlib.ExitStack,
        data_dir: Path,
        ffmpeg: str,
        sample: Path,
        *,
        config: str = ADV_CONFIG,
        env: dict[str, str] | None = None,
        before_start: Callable[[], contextlib.AbstractContextManager[None]] | None = None,
    ) -> Harness:
        """Node + publisher + monitor; `stack` stops them all. `before_start` wraps only the
        node's start (e.g. to start it under a different rlimit)."""
        with before_start() if before_start is not None else contextlib.nullcontext():
            node = start_node(data_dir, config=config, extra_env=env)
        stack.callback(node.kill, signal.SIGTERM)
        register_domains(node)
        stack.enter_context(ffmpeg_publish(ffmpeg, sample, node.rtmp_url(APP, WATCH_STREAM)))
        monitor = Monitor(node, f"/{APP}/{WATCH_STREAM}.flv")
        stack.callback(monitor.stop)
        monitor.start()
        return cls(node, monitor)

    def api(self) -> LiveService:
        return api_service(self.node)

    def log_tail(self, offset: int) -> list[str]:
        return log_lines_since(self.node, offset)

    @contextlib.contextmanager
    def attack_guard(
        self,
        what: str,
        *,
        max_log_lines: int,
        max_rss: int = MAX_RSS_BYTES,
        after_s: float = AFTER_ATTACK_S,
        fd_settle_s: float = FD_SETTLE_S,
    ) -> Iterator[Guard]:
        """Run an attack inside; the test closes its attack connections before leaving the
        block. Raises AssertionError with every measurement when the node did not hold."""
        now = time.monotonic()
        guard = Guard(
            what=what,
            started=now,
            baseline_fds=self.monitor.current_fds(),
            baseline_rss=proc_rss(self.pid),
            log_offset=log_size(self.node),
            max_log_lines=max_log_lines,
            max_rss=max_rss,
        )
        try:
            yield guard
        except BaseException as exc:
            guard.ended = guard.attack_ended = time.monotonic()
            self.monitor.settle_calls(guard.ended)
            problems = self.problems(guard, finished=False)
            if problems:
                exc.add_note("the node did not hold either:\n  - " + "\n  - ".join(problems))
            exc.add_note(self.report(guard))
            raise
        guard.attack_ended = time.monotonic()
        # After the attack: media and API must go on, and open files must come back.
        quiet_until = guard.attack_ended + after_s
        settle_until = guard.attack_ended + fd_settle_s
        while time.monotonic() < settle_until and self.node.proc.poll() is None:
            if (
                time.monotonic() >= quiet_until
                and self.monitor.current_fds() <= guard.baseline_fds + FD_SLACK
            ):
                break
            time.sleep(0.1)
        guard.ended = time.monotonic()
        self.monitor.settle_calls(guard.ended)
        problems = self.problems(guard)
        if problems:
            raise AssertionError(
                f"{what}: the node did not hold:\n  - " + "\n  - ".join(problems) + "\n" + self.report(guard)
            )

    def _window(self, guard: Guard) -> tuple[float, float]:
        return guard.started, guard.ended or time.monotonic()

    def problems(self, guard: Guard, *, finished: bool = True) -> list[str]:
        """What went wrong in the window; `finished` False (the attack itself failed) leaves
        out what only the quiet period after the attack can show."""
        start, end = self._window(guard)
        out: list[str] = []
        code = self.node.proc.poll()
        if code is not None:
            out.append(f"the node exited with status {code}")
        viewer = self.monitor.viewer
        if viewer.eof.is_set():
            out.append(f"the viewer was cut off ({viewer.status}, {viewer.error})")
        gap, gap_at = _max_gap(self.monitor.video_times(), start, end)
        if gap > MAX_MEDIA_GAP_S:
            out.append(f"the viewer got no video for {gap:.1f}s (from +{gap_at - start:.1f}s)")
        calls = [c for c in list(self.monitor.calls) if start <= c.started <= end]
        now = time.monotonic()
        slow = [
            c for c in calls if (c.latency if c.latency is not None else now - c.started) > MAX_API_LATENCY_S
        ]
        failed = [c for c in calls if c.latency is not None and not c.ok]
        if slow:
            worst = max((c.latency if c.latency is not None else now - c.started) for c in slow)
            out.append(
                f"{len(slow)}/{len(calls)} API calls took over {MAX_API_LATENCY_S}s (worst {worst:.1f}s)"
            )
        if failed:
            out.append(
                f"{len(failed)}/{len(calls)} API calls failed, first: {failed[0].status} {failed[0].error}"
            )
        after = [
            c for c in calls if guard.attack_ended is not None and c.started >= guard.attack_ended and c.ok
        ]
        if finished and not after and not slow and not failed:
            out.append("no API call completed after the attack")
        samples = [s for s in list(self.monitor.samples) if start <= s.at <= end]
        peak = max((s.rss for s in samples), default=0)
        if peak > guard.max_rss:
            out.append(f"RSS reached {peak / 2**20:.0f} MB (limit {guard.max_rss / 2**20:.0f} MB)")
        final_fds = self.monitor.current_fds()
        if finished and code is None and final_fds > guard.baseline_fds + FD_SLACK:
            out.append(
                f"open files did not return to baseline: {final_fds} now, {guard.baseline_fds} before "
                f"(slack {FD_SLACK})"
            )
        lines = self.log_tail(guard.log_offset)
        if len(lines) > guard.max_log_lines:
            out.append(f"the node logged {len(lines)} lines for this attack (at most {guard.max_log_lines})")
        long_lines = [ln for ln in lines if len(ln) > MAX_LOG_LINE_CHARS]
        if long_lines:
            longest = max(map(len, long_lines))
            out.append(f"{len(long_lines)} log lines over {MAX_LOG_LINE_CHARS} chars (longest {longest})")
        if any("Traceback" in ln for ln in lines):
            out.append("a traceback in the node's log")
        return out

    def report(self, guard: Guard) -> str:
        """Every measurement of the attack window, for the failure message."""
        start, end = self._window(guard)
        samples = [s for s in list(self.monitor.samples) if start <= s.at <= end]
        calls = [c for c in list(self.monitor.calls) if start <= c.started <= end]
        latencies = [c.latency for c in calls if c.latency is not None]
        times = self.monitor.video_times()
        gap, gap_at = _max_gap(times, start, end)
        lines = self.log_tail(guard.log_offset)
        peak_fds = max((s.fds for s in samples), default=0)
        peak_rss = max((s.rss for s in samples), default=0)
        attack_s = (guard.attack_ended or end) - start
        out = [
            f"--- measurements: {guard.what} (attack {attack_s:.1f}s, window {end - start:.1f}s) ---",
            f"node pid {self.pid}, exit status {self.node.proc.poll()}",
            f"viewer: {sum(1 for t in times if start <= t <= end)} video frames in the window, "
            f"longest wait {gap:.2f}s from +{gap_at - start:.1f}s, "
            f"{self.monitor.viewer.unstamped_reads} reads without a kernel stamp",
            f"API: {len(calls)} calls ({sum(1 for c in calls if c.stamped)} kernel-stamped), "
            f"{sum(1 for c in calls if not c.ok and c.latency is not None)} failed, "
            + (
                f"latency median {statistics.median(latencies):.3f}s max {max(latencies):.3f}s"
                if latencies
                else "no call completed"
            )
            + "".join(
                f", one in flight for {time.monotonic() - c.started:.1f}s" for c in calls if c.latency is None
            ),
            f"RSS: {guard.baseline_rss / 2**20:.0f} MB before, peak {peak_rss / 2**20:.0f} MB, "
            f"now {proc_rss(self.pid) / 2**20:.0f} MB",
            f"open files: {guard.baseline_fds} before, peak {peak_fds}, now {self.monitor.current_fds()}",
            f"log: {len(lines)} new lines, "
            f"{sum(len(ln) for ln in lines)} chars, traceback: {any('Traceback' in ln for ln in lines)}",
        ]
        shown = lines if len(lines) <= 12 else [*lines[:6], f"... {len(lines) - 12} more ...", *lines[-6:]]
        out += [f"  | {ln[:300]}{'...' if len(ln) > 300 else ''}" for ln in shown]
        out += guard.notes
        return "\n".join(out)
