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
from tests.conftest import TEST_AK, TEST_SK, NodeProcess, run_liverelay, wait_until
from tests.integration.cluster_helpers import (
    CLUSTER_CONFIG,
    FUTURE,
    PULL_DOMAIN,
    FlvWatcher,
    NodeFactory,
    OriginWatch,
    fixed_rows,
    fixed_up,
    metric,
    publish_streams,
    start_cluster,
    v4_body,
    wait_members,
    wait_write_accepted,
)
from tests.integration.relay_helpers import api, register_vhost, rtmp_server, set_v3
from tests.pgserver import PostgresServer

from liverelay.api.testing import BackgroundApi, SignedClient, api_settings
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
    node_factory: NodeFactory, pg_url: str, ffmpeg: str, sample_flv: Path, request: pytest.FixtureRequest
) -> None:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    origin = node_factory("origin", config=CLUSTER_CONFIG)
    names = [f"s{i}" for i in range(10)]
    nodes = start_cluster(node_factory, pg_url)
    wait_members(nodes)
    # Membership, read where it is written: one row per node, its addresses, fresh heartbeats.
    ids = [(n.data_dir / "node_id").read_text().strip() for n in nodes]
    rows = _node_rows(server, pg_url)
    assert set(rows) == set(ids)
    assert [rows[i][2] for i in ids] == [f"rtmp://127.0.0.1:{n.rtmp_port}" for n in nodes]
    assert all(age < 2000 for age, _, _ in rows.values()), rows
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
    # kill -9 leaves the row to age past the liveness bound (node_timeout_s, 3 s: the test may
    # get here sooner after the kill, so wait for it, bounded); a clean stop marks it gone at once.
    victim_id = ids[victim]
    wait_until(lambda: _node_rows(server, pg_url)[victim_id][0] > 3000, 10, "the killed node's row to age")
    survivors[0].kill(signal.SIGTERM)
    assert _node_rows(server, pg_url)[ids[nodes.index(survivors[0])]][0] > 3000
    assert _node_rows(server, pg_url)[ids[nodes.index(survivors[1])]][0] < 2000
    assert watch.samples > 50 and not watch.errors, watch.errors[:3]
    assert all(n <= 1 for n in watch.max.values()), f"two pulls of one relay at the origin: {watch.max}"


def test_drain_moves_every_fixed_relay_make_before_break(
    node_factory: NodeFactory, pg_url: str, ffmpeg: str, sample_flv: Path
) -> None:
    origin = node_factory("origin", config=CLUSTER_CONFIG)
    names = [f"d{i}" for i in range(6)]
    nodes = start_cluster(node_factory, pg_url)
    wait_members(nodes)
    register_vhost(nodes[0])
    with publish_streams(ffmpeg, sample_flv, origin, names), OriginWatch(origin) as watch:
        wait_until(lambda: set(names) <= set(watch.max), 20, "the origin to have every stream", interval=0.2)
        with api(nodes[2]) as svc:
            for name in names:
                body = v4_body(name, 0, src=origin.rtmp_url("live", name))
                del body["StartTime"], body["EndTime"]  # permanent
                svc.create_relay_source_v4(body)
        wait_until(
            lambda: set(fixed_up(nodes)) == set(names) and all(len(v) == 1 for v in fixed_up(nodes).values()),
            30,
            "every relay up on exactly one node",
            interval=0.2,
        )
        counts = _spread(fixed_up(nodes), 3)
        drained = counts.index(max(counts))
        moving = sorted(s for s, held in fixed_up(nodes).items() if held == [drained])
        env = {"ACCESS_KEY_ID": TEST_AK, "ACCESS_KEY_SECRET": TEST_SK}
        started = time.monotonic()
        done = run_liverelay(
            [
                "node",
                "drain",
                "--endpoint",
                nodes[drained].api_host,
                "--drain-timeout",
                "30",
                "--interval",
                "0.2",
            ],
            env=env,
        )
        took = time.monotonic() - started
        assert done.returncode == 0, done.stdout + done.stderr
        assert "safe to stop" in done.stdout and "fixed relay(s) left" in done.stdout, done.stdout
        print(f"\ndrain of {len(moving)} fixed relays took {took:.2f}s")
        assert drained not in {i for held in fixed_up(nodes).values() for i in held}
        wait_until(
            lambda: set(fixed_up(nodes)) == set(names) and all(len(v) == 1 for v in fixed_up(nodes).values()),
            10,
            "every relay up on exactly one of the other nodes",
            interval=0.2,
        )
        others = [n for i, n in enumerate(nodes) if i != drained]
        rest = _spread(fixed_up(others), 2)
        assert max(rest) - min(rest) <= 1, rest
        # A draining node takes nothing: a new relay goes to the others.
        with api(nodes[0]) as svc:
            body = v4_body("late", 0, src=origin.rtmp_url("live", names[0]))
            del body["StartTime"], body["EndTime"]
            svc.create_relay_source_v4(body)
        wait_until(lambda: "late" in fixed_up(nodes), 15, "the late relay up", interval=0.2)
        assert fixed_up(nodes)["late"] != [drained]
        assert metric(nodes[drained], 'liverelay_cluster_handoffs_total{direction="out"}') >= len(moving)
    assert not watch.errors, watch.errors[:3]
    # Make-before-break, seen at the origin: a moved relay never had zero pulls once up.
    assert all(watch.min_after_up[s] >= 1 for s in moving), {s: watch.min_after_up[s] for s in moving}


def _lease_owners(server: PostgresServer, url: str) -> dict[str, str]:
    database = url.rsplit("/", 1)[1]
    out = server.psql("SELECT task_id, coalesce(owner, '') FROM leases", database)
    return dict(line.split("|") for line in out.splitlines() if line)


def _lease_state(server: PostgresServer, url: str, task_id: str) -> tuple[str, bool]:
    """(owner, unexpired on the database clock) of one lease."""
    database = url.rsplit("/", 1)[1]
    out = server.psql(
        "SELECT coalesce(owner, ''), expires_at > (extract(epoch from clock_timestamp()) * 1000)::bigint"
        f" FROM leases WHERE task_id = '{task_id}'",
        database,
    ).strip()
    if not out:
        return ("", False)
    owner, fresh = out.split("|")
    return (owner, fresh == "t")


def test_database_outage_keeps_viewers_and_settles_one_owner(
    node_factory: NodeFactory, pg_url: str, ffmpeg: str, sample_flv: Path, request: pytest.FixtureRequest
) -> None:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    origin = node_factory("origin", config=CLUSTER_CONFIG)
    nodes = start_cluster(node_factory, pg_url, names=("a", "c"))
    a, c = nodes
    wait_members(nodes)
    register_vhost(a)
    set_v3(a, [rtmp_server(origin)], app="live")
    with publish_streams(ffmpeg, sample_flv, origin, ["f", "p"]), OriginWatch(origin) as watch:
        wait_until(lambda: {"f", "p"} <= set(watch.max), 20, "the origin to have both streams", interval=0.2)
        acknowledged = []
        with api(c) as svc:
            body = v4_body("f", 0, src=origin.rtmp_url("live", "f"))
            del body["StartTime"], body["EndTime"]
            acknowledged.append(svc.create_relay_source_v4(body)["Result"]["TaskId"])
            for i in range(3):
                acknowledged.append(
                    svc.create_relay_source_v4(v4_body(f"later{i}", FUTURE))["Result"]["TaskId"]
                )
        wait_until(lambda: list(fixed_up(nodes).get("f", [])) != [], 20, "the fixed relay up", interval=0.2)
        [owner] = fixed_up(nodes)["f"]
        player = nodes[1 - owner]  # a play-triggered relay on the other node
        with (
            FlvWatcher(nodes[owner].flv_url("live", "f")) as fixed_viewer,
            FlvWatcher(player.flv_url("live", "p")) as play_viewer,
        ):
            assert fixed_viewer.grows(10) and play_viewer.grows(10), (fixed_viewer.ended, play_viewer.ended)
            server.stop()
            stopped = time.monotonic()
            try:
                with SignedClient(a.api_host, TEST_AK, TEST_SK) as client:
                    resp = client.post("CreateRelaySourceV4", v4_body("during", FUTURE))
                assert resp.status_code == 503, resp.text
                assert resp.json()["ResponseMetadata"]["Error"]["Code"] == "ServiceUnavailable"
                # The owner shows its lease as unconfirmed (/metrics: the API itself needs the
                # database for its signature check), so a duplicate pull would be visible.
                wait_until(
                    lambda: metric(nodes[owner], "liverelay_cluster_leases_unconfirmed") == 1,
                    10,
                    "the unconfirmed lease in /metrics",
                )
                assert metric(nodes[owner], "liverelay_cluster_leases_unconfirmed_since_seconds") > 0
                while time.monotonic() - stopped < 10:
                    assert fixed_viewer.grows(5) and play_viewer.grows(5), (
                        fixed_viewer.ended,
                        play_viewer.ended,
                    )
            finally:
                server.start()
            back = time.monotonic()
            owner_id = (nodes[owner].data_dir / "node_id").read_text().strip()
            # The owner re-confirms its lease (renewed on the database clock) within a round of
            # the database being back; nobody else took it meanwhile.
            wait_until(
                lambda: _lease_state(server, pg_url, acknowledged[0]) == (owner_id, True), 15, "renewal"
            )
            settled = time.monotonic() - back
            print(f"\nPostgreSQL down 10 s: the owner's lease renewed {settled:.2f}s after the restart")
            assert settled < 6.0  # one TTL (3 s) and a round, with room for this machine's noise
            wait_write_accepted(a, v4_body("after", FUTURE))
            wait_until(lambda: "after" in fixed_rows(c), 10, "the write after the outage on C")
            # One owner, the same as before, confirmed within a TTL (plus a round) of reconnecting.
            assert "LeaseUnconfirmedSince" not in fixed_rows(nodes[owner])["f"]
            assert metric(nodes[owner], "liverelay_cluster_leases_unconfirmed") == 0
            assert fixed_up(nodes)["f"] == [owner]
            owners = _lease_owners(server, pg_url)
            assert owners == {acknowledged[0]: owners[acknowledged[0]]} and owners[acknowledged[0]], owners
            assert fixed_viewer.grows(5) and play_viewer.grows(5)
            assert fixed_viewer.ended is None and play_viewer.ended is None
        with api(c) as svc:
            listed = {
                item["TaskId"]
                for item in svc.list_relay_source_v4({"Domain": PULL_DOMAIN, "Page": 1, "Size": 100})[
                    "Result"
                ]["List"]
            }
        assert set(acknowledged) <= listed
    assert all(n <= 1 for n in watch.max.values()), watch.max


def test_drain_node_outside_a_cluster_is_unsupported(tmp_path: Path) -> None:
    """SQLite: one node, nothing to drain to; the CLI shows the API's error and exits 1."""
    with BackgroundApi(api_settings(tmp_path), keys=[(TEST_AK, TEST_SK)]) as server:
        with SignedClient(server.host, TEST_AK, TEST_SK) as client:
            for body in ({}, {"Cancel": True}):
                resp = client.post("DrainNode", body)
                assert resp.status_code == 400, resp.text
                assert resp.json()["ResponseMetadata"]["Error"]["Code"] == "UnsupportedOperation"
            bad = client.post("DrainNode", {"Cancel": "soon"})
            assert (
                bad.status_code == 400 and "InvalidParam" in bad.json()["ResponseMetadata"]["Error"]["Code"]
            )
        env = {"ACCESS_KEY_ID": TEST_AK, "ACCESS_KEY_SECRET": TEST_SK}
        done = run_liverelay(["node", "drain", "--endpoint", server.host], env=env)
        assert done.returncode == 1 and "UnsupportedOperation" in done.stderr, done
