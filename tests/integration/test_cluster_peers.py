"""Pull the origin once per cluster, and see the cluster: `liverelay serve` nodes on one real PostgreSQL.

Observed from outside: viewers are real HTTP-FLV connections (FlvViewer keeps one
connection and records every frame with its arrival time, so a reconnect cannot pass
unnoticed); the connections an origin serves are counted at the origin itself (its
DescribeClusterNodes answers live on a single SQLite node), all along the test; which
node holds what comes from DescribeClusterNodes and DescribeRelayStatus.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import TEST_AK, TEST_SK, NodeProcess, ffmpeg_publish, run_liverelay, wait_until
from tests.integration.cluster_helpers import (
    CLUSTER_CONFIG,
    FUTURE,
    NodeFactory,
    start_cluster,
    v4_body,
    wait_members,
)
from tests.integration.relay_helpers import FlvViewer, api, register_vhost, rtmp_server, set_v3

# Frames a viewer must receive after an event to count as "still watching" (1 s at 30 fps).
FRAMES_AFTER = 30


def cluster_nodes(node: NodeProcess) -> dict[str, Any]:
    with api(node) as svc:
        result = svc.describe_cluster_nodes({})
    return dict(result.get("Result", result))


def node_id(node: NodeProcess) -> str:
    return str(cluster_nodes(node)["NodeId"])


def held(node: NodeProcess, stream: str) -> dict[str, tuple[str, int]]:
    """node id -> (source, viewers) of every live node holding live/<stream>, as `node` sees them."""
    found: dict[str, tuple[str, int]] = {}
    for item in cluster_nodes(node)["NodeList"]:
        if not item["Alive"]:
            continue
        for s in item["StreamList"]:
            if (s["App"], s["Stream"]) == ("live", stream):
                found[item["NodeId"]] = (s["Source"], s["Viewers"])
    return found


def status_rows(node: NodeProcess, **where: str) -> list[dict[str, Any]]:
    with api(node) as svc:
        result = svc.describe_relay_status(dict(where))
    return list(result.get("Result", result)["RelayStatusList"])


class OriginCount:
    """The most connections the origin served for one stream at any poll (every 50 ms)."""

    def __init__(self, origin: NodeProcess, stream: str) -> None:
        self.origin = origin
        self.stream = stream
        self.max = 0
        self.last = 0
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with api(self.origin) as svc:
            while not self._stop.wait(0.05):
                result = svc.describe_cluster_nodes({})
                [me] = result.get("Result", result)["NodeList"]
                self.last = sum(s["Viewers"] for s in me["StreamList"] if s["Stream"] == self.stream)
                self.max = max(self.max, self.last)
                self.polls += 1

    @contextmanager
    def running(self) -> Iterator[OriginCount]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(10)


async def watch(urls: list[str]) -> list[FlvViewer]:
    viewers = [await FlvViewer(url).start() for url in urls]
    for viewer in viewers:
        await viewer.wait_video(FRAMES_AFTER, 25)
    return viewers


async def still_watching(viewers: list[FlvViewer], since: float, timeout: float) -> None:
    """Every viewer got FRAMES_AFTER video frames that arrived after `since`, on its one connection."""
    deadline = time.monotonic() + timeout
    for viewer in viewers:
        while time.monotonic() < deadline and not viewer.eof.is_set():
            if sum(1 for t, _ in viewer.video() if t > since) >= FRAMES_AFTER:
                break
            await asyncio.sleep(0.1)
        after = sum(1 for t, _ in viewer.video() if t > since)
        assert not viewer.eof.is_set(), f"{viewer.url}: the connection ended ({viewer.error})"
        assert after >= FRAMES_AFTER, f"{viewer.url}: {after} video frames since the event"
        viewer.assert_monotonic()


def test_stream_published_on_a_is_pulled_once_by_each_peer(
    node_factory: NodeFactory, pg_url: str, ffmpeg: str, sample_flv: Path
) -> None:
    """(a) No origin configured anywhere: viewers on B and C play a stream published on A;
    B and C each pull it from A once, whatever their own viewer counts."""
    a, b, c = start_cluster(node_factory, pg_url)
    id_a, id_b, id_c = (node_id(n) for n in (a, b, c))
    with ffmpeg_publish(ffmpeg, sample_flv, a.rtmp_url("live", "pub")):
        wait_until(lambda: held(b, "pub").get(id_a, ("", 0))[0] == "publish", 20, "A to announce the stream")
        wait_until(lambda: held(c, "pub").get(id_a, ("", 0))[0] == "publish", 5, "C to see A's stream")

        async def scenario() -> None:
            viewers = await watch([n.flv_url("live", "pub") for n in (b, b, c, c)])
            try:
                # A serves one connection per peer; B and C hold it from a peer with 2 viewers each.
                expected = {id_a: ("publish", 2), id_b: ("peer", 2), id_c: ("peer", 2)}
                await asyncio.to_thread(
                    wait_until, lambda: held(a, "pub") == expected, 10, f"holders {expected}", 0.2
                )
                for node, own in ((b, id_b), (c, id_c)):
                    rows = await asyncio.to_thread(status_rows, node, Stream="pub")
                    [row] = [r for r in rows if r["NodeId"] == own]
                    assert row["SourceUrl"].startswith(f"rtmp://127.0.0.1:{a.rtmp_port}/live/pub"), row
            finally:
                for viewer in viewers:
                    await viewer.close()

        asyncio.run(scenario())


def fixed_relay_on_one_node(
    nodes: list[NodeProcess], origin: NodeProcess, stream: str
) -> tuple[NodeProcess, str, list[NodeProcess]]:
    """Create an open fixed relay of `stream` from `origin` and wait until one node owns it
    and every node has read that in the owner's heartbeat: (owner, its id, the others)."""
    with api(nodes[1]) as svc:
        svc.create_relay_source_v4(
            v4_body(stream, int(time.time()) - 60, src=origin.rtmp_url("live", stream))
        )
    wait_until(
        lambda: all([s for s, _v in held(n, stream).values()] == ["fixed"] for n in nodes),
        20,
        "one fixed owner, seen by every node",
    )
    [owner_id] = held(nodes[0], stream)
    owner = next(n for n in nodes if node_id(n) == owner_id)
    return owner, owner_id, [n for n in nodes if n is not owner]


def longest_gap_across(viewers: list[FlvViewer], event: float) -> float:
    """The longest wait for video of any viewer from its last frame before `event` on."""
    before = [max(t for t, _ in v.video() if t <= event) for v in viewers]
    return max(v.max_video_gap(t) for v, t in zip(viewers, before, strict=True))


def test_fixed_relay_pulled_once_per_cluster_and_taken_over(
    node_factory: NodeFactory, pg_url: str, ffmpeg: str, sample_flv: Path
) -> None:
    """(b)+(d) A fixed relay from an external origin runs on one node; viewers on the two
    others pull it from that node (the origin sees one connection all along); every
    node's DescribeRelayStatus lists the three nodes' rows, `cluster status` the three
    nodes; kill -9 of the owner: the viewers keep their connections across the takeover."""
    origin = node_factory("origin", config=CLUSTER_CONFIG)
    nodes = start_cluster(node_factory, pg_url)
    wait_members(nodes)  # all three alive first: the lease is claimed once, not rebalanced later
    register_vhost(nodes[0])
    ids = [node_id(n) for n in nodes]
    with ffmpeg_publish(ffmpeg, sample_flv, origin.rtmp_url("live", "ext")):
        wait_until(
            lambda: bool(cluster_nodes(origin)["NodeList"][0]["StreamList"]), 20, "the origin's stream"
        )
        with OriginCount(origin, "ext").running() as count:
            owner, owner_id, others = fixed_relay_on_one_node(nodes, origin, "ext")

            async def scenario() -> None:
                viewers = await watch([n.flv_url("live", "ext") for n in others])
                try:
                    await asyncio.to_thread(seen_everywhere, others[1], owner_id, ids)
                    assert count.max == 1, f"the origin served {count.max} connections at once"
                    owner.kill(signal.SIGKILL)
                    killed = time.monotonic()
                    await still_watching(viewers, killed + 0.5, 40)
                    took = held(others[0], "ext")
                    assert sorted(s for s, _ in took.values()) == ["fixed", "peer"], took
                    # The last frame before the kill is included: the gap spans the takeover.
                    gap = longest_gap_across(viewers, killed)
                    print(f"\nthe viewers' longest video gap across the takeover: {gap:.1f}s")
                finally:
                    for viewer in viewers:
                        await viewer.close()

            asyncio.run(scenario())
        assert count.polls > 20
        assert count.max == 1, f"the origin served {count.max} connections at once"
        assert count.last == 1


def seen_everywhere(node: NodeProcess, owner_id: str, ids: list[str]) -> None:
    """(d) DescribeRelayStatus on `node`: the owner's fixed row and each viewer node's play
    row, each with its NodeId; `liverelay cluster status` lists the three nodes."""

    def rows_by_node() -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for row in status_rows(node, Stream="ext"):
            found.setdefault(row["NodeId"], set()).add(row["Type"])
        return found

    expected = {i: ({"fixed"} if i == owner_id else {"play"}) for i in ids}
    wait_until(lambda: rows_by_node() == expected, 10, f"status rows {expected}", 0.2)
    env = {"ACCESS_KEY_ID": TEST_AK, "ACCESS_KEY_SECRET": TEST_SK, "LIVERELAY_ENDPOINT": node.api_host}
    env["COLUMNS"] = "250"  # rich wraps at 80 columns without a terminal
    shown = run_liverelay(["cluster", "status"], env=env)
    assert shown.returncode == 0, shown.stderr
    for i in ids:
        assert i in shown.stdout, shown.stdout
    assert "3 alive of 3" in shown.stdout, shown.stdout


def test_peer_dies_while_pulled_and_the_other_holder_takes_over(
    node_factory: NodeFactory, pg_url: str, ffmpeg: str, sample_flv: Path
) -> None:
    """(c) A and C pull from the external origin themselves (peer pulls off there); B pulls
    from one of them: kill -9 that one and B switches to the other, viewers attached."""
    origin = node_factory("origin", config=CLUSTER_CONFIG)
    env = {"LIVERELAY_DATABASE_URL": pg_url}
    own_pulls = CLUSTER_CONFIG + "\n[cluster]\npeer_pulls = false\n"
    a = node_factory("a", extra_env=env, config=own_pulls)
    [b] = start_cluster(node_factory, pg_url, names=("b",))
    c = node_factory("c", extra_env=env, config=own_pulls)
    register_vhost(a)
    set_v3(a, [rtmp_server(origin)])
    id_a, id_b, id_c = node_id(a), node_id(b), node_id(c)
    with ffmpeg_publish(ffmpeg, sample_flv, origin.rtmp_url("live", "two")):
        wait_until(
            lambda: bool(cluster_nodes(origin)["NodeList"][0]["StreamList"]), 20, "the origin's stream"
        )

        async def scenario() -> None:
            viewers = await watch([a.flv_url("live", "two"), c.flv_url("live", "two")])
            try:
                await asyncio.to_thread(
                    wait_until,
                    lambda: (
                        {k: s for k, (s, _v) in held(b, "two").items()} == {id_a: "origin", id_c: "origin"}
                    ),
                    10,
                    "A and C to hold the stream from the origin",
                    0.2,
                )
                [on_b] = await watch([b.flv_url("live", "two")])
                viewers.append(on_b)
                [row] = [r for r in status_rows(b, Stream="two") if r["NodeId"] == id_b]
                ports = {a.rtmp_port: (a, c), c.rtmp_port: (c, a)}
                port = int(row["SourceUrl"].split(":")[2].split("/")[0])
                source, other = ports[port]
                source.kill(signal.SIGKILL)
                killed = time.monotonic()
                await still_watching([on_b], killed + 0.5, 20)
                wait_until(
                    lambda: any(
                        r["NodeId"] == id_b
                        and r["SourceUrl"].startswith(f"rtmp://127.0.0.1:{other.rtmp_port}/")
                        for r in status_rows(b, Stream="two")
                    ),
                    5,
                    "B's pull on the other holder",
                )
            finally:
                for viewer in viewers:
                    await viewer.close()

        asyncio.run(scenario())


def test_single_node_lists_itself_and_sets_node_id(node_factory: NodeFactory) -> None:
    """SQLite, no cluster: DescribeClusterNodes is this node alone, and its relay rows carry its NodeId."""
    single = node_factory("single")
    register_vhost(single)
    with api(single) as svc:
        svc.create_relay_source_v4(v4_body("later", FUTURE))
    answer = cluster_nodes(single)
    [me] = answer["NodeList"]
    assert me["NodeId"] == answer["NodeId"] and me["Alive"] and not me["Draining"]
    assert me["RtmpUrl"] == f"rtmp://127.0.0.1:{single.rtmp_port}"
    assert me["ApiUrl"] == f"http://127.0.0.1:{single.api_port}"
    [row] = status_rows(single)
    assert (row["Stream"], row["NodeId"]) == ("later", me["NodeId"])


def test_drain_of_the_owner_leaves_peer_viewers_without_a_gap(
    node_factory: NodeFactory, pg_url: str, ffmpeg: str, sample_flv: Path
) -> None:
    """Drain is make-before-break for viewers on other nodes too: a fixed relay's owner is
    drained while the two other nodes' viewers pull it from the owner; the new owner is up
    before the old one lets go, the viewers switch to it on their one connection, and the
    longest video gap stays far below a takeover's (which waits out the lease TTL)."""
    origin = node_factory("origin", config=CLUSTER_CONFIG)
    nodes = start_cluster(node_factory, pg_url)
    wait_members(nodes)
    register_vhost(nodes[0])
    with ffmpeg_publish(ffmpeg, sample_flv, origin.rtmp_url("live", "dr")):
        wait_until(
            lambda: bool(cluster_nodes(origin)["NodeList"][0]["StreamList"]), 20, "the origin's stream"
        )
        owner, owner_id, others = fixed_relay_on_one_node(nodes, origin, "dr")

        async def scenario() -> None:
            viewers = await watch([n.flv_url("live", "dr") for n in others])
            try:
                with api(owner) as svc:
                    svc.drain_node({})
                drained = time.monotonic()

                def moved() -> bool:
                    holders = held(others[0], "dr")
                    sources = sorted(s for s, _ in holders.values())
                    return owner_id not in holders and sources == ["fixed", "peer"]

                await asyncio.to_thread(wait_until, moved, 30, "the relay to move off the drained node", 0.2)
                await still_watching(viewers, time.monotonic(), 20)
                gap = longest_gap_across(viewers, drained)
                print(f"\nthe viewers' longest video gap across the drain: {gap:.2f}s")
                # Measured 0.3-0.9 s here (frames come in 50 ms flushes; the switch splices at
                # the new owner's GOP, which it has cached). A takeover's gap is ~4 s (the lease
                # TTL plus a pull start): under one GOP (2 s) means the new owner was up first.
                assert gap < 2.0, f"a viewer waited {gap:.2f}s for video during the drain"
            finally:
                for viewer in viewers:
                    await viewer.close()

        asyncio.run(scenario())
