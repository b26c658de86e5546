"""Cluster membership, fixed-relay leases and drain: `liverelay serve` nodes on one real PostgreSQL.

Membership is read where it is written (the `nodes` table, through psql); leases are
observed from outside (DescribeRelayStatus of each node, /metrics, an origin's own count
of its viewers).
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from tests.conftest import NodeProcess
from tests.integration.cluster_helpers import (
    CLUSTER_CONFIG,
    NodeFactory,
    OriginWatch,
    fixed_up,
    publish_streams,
    start_cluster,
    v4_body,
    wait_members,
    wait_until,
)
from tests.integration.relay_helpers import api, register_vhost
from tests.pgserver import PostgresServer

from liverelay.media.flv import FlvDecoder
from liverelay.media.frame import Frame, FrameKind


def _node_rows(server: PostgresServer, url: str) -> dict[str, tuple[int, int, str]]:
    """node_id -> (ms since its heartbeat on the database clock, draining, rtmp_url)."""
    database = url.rsplit("/", 1)[1]
    out = server.psql(
        "SELECT node_id, (extract(epoch from clock_timestamp()) * 1000)::bigint - heartbeat_at,"
        " draining, rtmp_url FROM nodes",
        database,
    )
    rows: dict[str, tuple[int, int, str]] = {}
    for line in out.splitlines():
        node_id, age, draining, rtmp_url = line.split("|")
        rows[node_id] = (int(age), int(draining), rtmp_url)
    return rows


def test_membership_heartbeats_and_marks_gone(
    node_factory: NodeFactory, pg_url: str, request: pytest.FixtureRequest
) -> None:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    a, b = start_cluster(node_factory, pg_url, names=("a", "b"))
    ids = {n.api_port: (n.data_dir / "node_id").read_text().strip() for n in (a, b)}
    assert len(set(ids.values())) == 2
    rows = _node_rows(server, pg_url)
    assert set(rows) == set(ids.values())
    assert rows[ids[a.api_port]][2] == f"rtmp://127.0.0.1:{a.rtmp_port}"
    # Heartbeats go on (each row younger than two heartbeats, several times over).
    for _ in range(3):
        wait_until(
            lambda: all(age < 2000 for age, _, _ in _node_rows(server, pg_url).values()), 5, "heartbeats"
        )
    # A clean stop marks the row dead at once; kill -9 leaves it to age.
    a.kill(signal.SIGTERM)
    assert _node_rows(server, pg_url)[ids[a.api_port]][0] > 3000
    b.kill(signal.SIGKILL)
    wait_until(lambda: _node_rows(server, pg_url)[ids[b.api_port]][0] > 3000, 10, "B's row to age")


def _video_arrives(url: str, timeout: float = 2.0) -> bool:
    """An HTTP-FLV play of `url` answers 200 and delivers a video frame within `timeout`."""
    decoder = FlvDecoder()
    deadline = time.monotonic() + timeout
    try:
        with httpx.stream("GET", url, timeout=timeout) as resp:
            if resp.status_code != 200:
                return False
            for chunk in resp.iter_bytes():
                for item in decoder.feed(chunk):
                    if isinstance(item, Frame) and item.kind == FrameKind.VIDEO and not item.config:
                        return True
                if time.monotonic() > deadline:
                    return False
    except httpx.HTTPError:
        return False
    return False


def _playable_after(stream: str, nodes: list[NodeProcess], since: float, bound: float) -> float | None:
    """Seconds from `since` until one of `nodes` plays `stream` (None past `bound`)."""
    while time.monotonic() - since < bound:
        for node in nodes:
            if _video_arrives(node.flv_url("live", stream), timeout=1.0):
                return time.monotonic() - since
        time.sleep(0.05)
    return None


def _spread(owners: dict[str, list[int]], n: int) -> list[int]:
    return [sum(1 for held in owners.values() if held == [i]) for i in range(n)]


def test_ten_fixed_relays_spread_then_kill_9_moves_them_within_5s(
    node_factory: NodeFactory, pg_url: str, ffmpeg: str, sample_flv: Path
) -> None:
    origin = node_factory("origin", config=CLUSTER_CONFIG)
    names = [f"s{i}" for i in range(10)]
    nodes = start_cluster(node_factory, pg_url)
    wait_members(nodes)
    register_vhost(nodes[0])
    with publish_streams(ffmpeg, sample_flv, origin, names), OriginWatch(origin) as watch:
        wait_until(lambda: set(names) <= set(watch.max), 20, "the origin to have every stream", interval=0.2)
        # One window opening on every node at the same instant: the claims race, and spread.
        start = int(time.time()) + 2
        with api(nodes[1]) as svc:
            for name in names:
                svc.create_relay_source_v4(v4_body(name, start, src=origin.rtmp_url("live", name)))
        wait_until(
            lambda: (
                sorted(fixed_up(nodes).items())
                == sorted((n, v) for n, v in fixed_up(nodes).items() if len(v) == 1)
                and set(fixed_up(nodes)) == set(names)
            ),
            30,
            "every relay up on exactly one node",
            interval=0.2,
        )
        owners = fixed_up(nodes)
        counts = _spread(owners, 3)
        print(f"\nten fixed relays over three nodes: {counts}")
        assert max(counts) - min(counts) <= 1, owners

        victim = counts.index(max(counts))
        moved = sorted(s for s, held in owners.items() if held == [victim])
        survivors = [n for i, n in enumerate(nodes) if i != victim]
        nodes[victim].kill(signal.SIGKILL)
        killed = time.monotonic()
        # One prober per moved relay, all at once: the time each one plays again, wherever.
        with ThreadPoolExecutor(len(moved)) as pool:
            found = pool.map(lambda stream: _playable_after(stream, survivors, killed, bound=15.0), moved)
            playable = {stream: t for stream, t in zip(moved, found, strict=True) if t is not None}
        times = sorted(playable.values())
        print(
            f"kill -9 of the node owning {len(moved)}: playable on a survivor after "
            + ", ".join(f"{t:.2f}s" for t in times)
        )
        assert set(playable) == set(moved), f"not playable within 15 s: {sorted(set(moved) - set(playable))}"
        assert max(times) < 5.0, playable
        wait_until(
            lambda: set(fixed_up(survivors)) == set(names), 10, "every relay up on a survivor", interval=0.2
        )
        final = fixed_up(survivors)
        assert all(len(held) == 1 for held in final.values()), final
        survivor_counts = _spread(final, 2)
        assert max(survivor_counts) - min(survivor_counts) <= 1, final
    assert watch.samples > 50 and not watch.errors, watch.errors[:3]
    assert all(n <= 1 for n in watch.max.values()), f"two pulls of one relay at the origin: {watch.max}"
