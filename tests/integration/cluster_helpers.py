"""Shared pieces of the cluster tests (three `liverelay serve` nodes on one real PostgreSQL).

Used by test_cluster_store.py (configuration across nodes) and test_cluster_leases.py
(membership, fixed-relay leases, drain).
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from tests.conftest import TEST_AK, TEST_SK, NodeProcess, stop_process, wait_until
from tests.integration.relay_helpers import EDGE_CONFIG, api

from liverelay.api.testing import SignedClient
from liverelay.sdk import LiveService

NodeFactory = Callable[..., NodeProcess]
PULL_DOMAIN = "pull.vh.test"
# The API's per-key limit (10/s) would throttle the polling below.
CLUSTER_CONFIG = EDGE_CONFIG + "\n[api]\nrate_limit_per_s = 100000.0\nrate_burst = 100000\n"
# Fixed relays whose window opens tomorrow: every node schedules them (a status row with
# the written times) and none pulls, so the rows show what each node's data plane holds.
FUTURE = int(time.time()) + 86_400


def start_cluster(
    node_factory: NodeFactory, url: str, names: tuple[str, ...] = ("a", "b", "c")
) -> list[NodeProcess]:
    env = {"LIVERELAY_DATABASE_URL": url}
    return [node_factory(name, extra_env=env, config=CLUSTER_CONFIG) for name in names]


def fixed_rows(node: NodeProcess, svc: LiveService | None = None) -> dict[str, dict[str, Any]]:
    """The node's own fixed-relay status rows by stream (what its scheduler runs; in a
    cluster DescribeRelayStatus also lists the other nodes' rows, each with its NodeId)."""
    if svc is None:
        with api(node) as own:
            return fixed_rows(node, own)
    result = svc.describe_relay_status({"Type": "fixed"})
    rows = result.get("Result", result).get("RelayStatusList", [])
    own_id = answering_node_id(node, svc)
    return {r["Stream"]: r for r in rows if r.get("NodeId", own_id) == own_id}


_NODE_IDS: dict[Path, str] = {}


def answering_node_id(node: NodeProcess, svc: LiveService) -> str:
    """The node's NodeId (DescribeClusterNodes, asked once per node)."""
    if node.data_dir not in _NODE_IDS:
        result = svc.describe_cluster_nodes({})
        _NODE_IDS[node.data_dir] = str(result.get("Result", result)["NodeId"])
    return _NODE_IDS[node.data_dir]


def wait_write_accepted(node: NodeProcess, body: dict[str, Any], timeout: float = 30) -> None:
    """CreateRelaySourceV4 `body` on `node`, again and again until it is accepted (the
    database back after an outage: the API answers 503 until then)."""
    with SignedClient(node.api_host, TEST_AK, TEST_SK) as client:
        wait_until(
            lambda: client.post("CreateRelaySourceV4", body).status_code == 200,
            timeout,
            f"a write on {node.api_host} once PostgreSQL is back",
            interval=0.5,
        )


def v4_body(stream: str, start: int, *, src: str = "rtmp://127.0.0.1:1/live/x") -> dict[str, Any]:
    return {
        "Domain": PULL_DOMAIN,
        "App": "live",
        "Stream": stream,
        "SrcAddrS": [src],
        "StartTime": start,
        "EndTime": start + 3600,
    }


def listed_v4(svc: LiveService) -> dict[str, dict[str, Any]]:
    result = svc.list_relay_source_v4({"Domain": PULL_DOMAIN, "Page": 1, "Size": 500})
    return {item["Stream"]: item for item in result.get("Result", result).get("List", [])}


# ---- fixed relays over a cluster, watched from the origin ----


@contextlib.contextmanager
def publish_streams(ffmpeg: str, sample: Path, origin: NodeProcess, names: list[str]) -> Iterator[None]:
    """One ffmpeg publishing `sample` (copied, real time, looped) as every `names` stream of
    the origin's app "live": many live streams for the cost of one demuxer."""
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(sample)]
    for name in names:
        args += ["-map", "0", "-c", "copy", "-f", "flv", origin.rtmp_url("live", name)]
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield
    finally:
        stop_process(proc)


class OriginWatch:
    """Samples, every `interval` s, how many viewers (relay pulls) each origin stream has:
    the highest count seen, and the lowest once it had one."""

    def __init__(self, origin: NodeProcess, interval: float = 0.05) -> None:
        self.origin = origin
        self.interval = interval
        self.max: dict[str, int] = {}
        self.min_after_up: dict[str, int] = {}
        self.samples = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> OriginWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def counts(self, svc: LiveService) -> dict[str, int]:
        result = svc.describe_live_stream_info_by_page({"PageNum": 1, "PageSize": 100})
        infos = result.get("Result", result)["StreamInfoList"]
        return {i["Stream"]: int(i["OnlineUser"]) for i in infos}

    def _run(self) -> None:
        with api(self.origin) as svc:
            while not self._stop.is_set():
                try:
                    counts = self.counts(svc)
                except Exception as exc:  # reported by the test (a sample missed is not a pass)
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    counts = {}
                for stream, n in counts.items():
                    self.max[stream] = max(self.max.get(stream, 0), n)
                    if n >= 1 or stream in self.min_after_up:
                        self.min_after_up[stream] = min(self.min_after_up.get(stream, n), n)
                self.samples += 1
                self._stop.wait(self.interval)


def fixed_up(nodes: list[NodeProcess]) -> dict[str, list[int]]:
    """Stream -> indexes of the nodes whose fixed relay of it is up."""
    out: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for stream, row in fixed_rows(node).items():
            if row["State"] == "up":
                out.setdefault(stream, []).append(i)
    return out


def metric(node: NodeProcess, name: str) -> float:
    """One sample of the node's /metrics (0 when absent)."""
    text = httpx.get(f"http://127.0.0.1:{node.http_port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_members(nodes: list[NodeProcess], timeout: float = 10) -> None:
    """Until every node sees all of them alive (so the first claims spread at once)."""
    wait_until(
        lambda: all(metric(n, "liverelay_cluster_nodes_alive") == len(nodes) for n in nodes),
        timeout,
        f"{len(nodes)} nodes to see each other",
        interval=0.2,
    )


class FlvWatcher:
    """One HTTP-FLV viewer in a thread: bytes received, and whether (and why) it ended."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.bytes = 0
        self.status: int | None = None
        self.ended: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FlvWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            with httpx.stream("GET", self.url, timeout=httpx.Timeout(10.0, read=5.0)) as resp:
                self.status = resp.status_code
                for chunk in resp.iter_bytes():
                    self.bytes += len(chunk)
                    if self._stop.is_set():
                        return
            self.ended = "eof"
        except httpx.HTTPError as exc:
            self.ended = f"{type(exc).__name__}: {exc}"

    def grows(self, within: float = 5.0) -> bool:
        """More bytes arrive within `within` seconds (and the viewer is still connected)."""
        before = self.bytes
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and self.ended is None:
            if self.bytes > before:
                return True
            time.sleep(0.05)
        return False
