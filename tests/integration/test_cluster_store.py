"""Three `liverelay serve` nodes on one real PostgreSQL: one configuration for all.

Writes through any node's API reach every node's data plane (NOTIFY -> change feed ->
ChangeBus -> relay managers), observed from outside: fixed relays (V4) appear in the
other nodes' DescribeRelayStatus with the written schedule, a play-triggered config
(V3) written on B makes a play on C relay. Also: concurrent updates of one row, and
`db copy` of a single SQLite node into the cluster.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench.cluster import percentile, propagation
from tests.conftest import TEST_AK, TEST_SK, NodeProcess, ffmpeg_publish, free_port, run_liverelay, wait_until
from tests.integration.cluster_helpers import (
    FUTURE,
    PULL_DOMAIN,
    NodeFactory,
    fixed_rows,
    listed_v4,
    start_cluster,
    v4_body,
    wait_write_accepted,
)
from tests.integration.relay_helpers import (
    EDGE_VHOST,
    api,
    ffprobe_video,
    register_vhost,
    rtmp_server,
    set_v3,
)
from tests.pgserver import PostgresServer

from liverelay.api.testing import SignedClient
from liverelay.config import Settings
from liverelay.sdk import AsyncLiveService
from liverelay.store import AlreadyExists, open_store
from liverelay.store.admin import db_copy


async def _new_key(url: str) -> tuple[str, str]:
    store = await open_store(Settings(database_url=url))
    try:
        key = await store.create_key()
        return key.ak, key.sk
    finally:
        await store.close()


def test_three_nodes_share_keys_domains_and_relays(
    node_factory: NodeFactory, pg_url: str, ffmpeg: str, ffprobe: str, sample_flv: Path
) -> None:
    a, b, c = start_cluster(node_factory, pg_url)
    register_vhost(a)  # domain written on A
    for node in (b, c):
        with api(node) as svc:
            listed = svc.list_domain_detail({"PageNum": 1, "PageSize": 100})
            domains = listed.get("Result", listed)["DomainList"]
            assert [d["Domain"] for d in domains] == [PULL_DOMAIN]

    # A key added to the cluster's store (as `liverelay keys create` does) signs on every node.
    ak, sk = asyncio.run(_new_key(pg_url))
    for node in (a, b, c):
        with SignedClient(node.api_host, ak, sk) as client:
            client.ok("ListDomainDetail", {"PageNum": 1, "PageSize": 10})

    # V3 and V4 written on A are listed by B and C (and the V4 one scheduled there).
    set_v3(a, [rtmp_server(free_port())], app="fromA")
    with api(a) as svc:
        svc.create_relay_source_v4(v4_body("fixed0", FUTURE))
    for node in (b, c):
        with api(node) as svc:
            v3 = svc.describe_relay_source_v3({"Vhost": EDGE_VHOST, "App": "fromA"})
            assert [g["App"] for g in v3.get("Result", v3)["RelaySourceConfigList"]] == ["fromA"]
            assert "fixed0" in listed_v4(svc)
        wait_until(lambda n=node: "fixed0" in fixed_rows(n), 5, f"fixed0 scheduled on {node.api_host}")

    # V4 written on B (which needs A's domain in its domain table already) is listed and
    # scheduled by A and C.
    with api(b) as svc:
        task = svc.create_relay_source_v4(v4_body("fixed1", FUTURE))
    task_id = task.get("Result", task)["TaskId"]
    for node in (a, c):
        with api(node) as svc:
            assert listed_v4(svc)["fixed1"]["TaskId"] == task_id
        wait_until(lambda n=node: "fixed1" in fixed_rows(n), 5, f"fixed1 scheduled on {node.api_host}")
        assert fixed_rows(node)["fixed1"]["StartTime"] == FUTURE

    # V3 written on B: a play on C pulls from the origin.
    origin = node_factory("origin")
    set_v3(b, [rtmp_server(origin)])
    with api(c) as svc:
        groups = svc.describe_relay_source_v3({"Vhost": EDGE_VHOST, "App": "live"})
        assert groups.get("Result", groups)["RelaySourceConfigList"][0]["App"] == "live"
    with ffmpeg_publish(ffmpeg, sample_flv, origin.rtmp_url("live", "s")):
        wait_until(lambda: _has_stream(origin), 20, "the origin to have the stream", interval=0.2)
        info = ffprobe_video(ffprobe, c.flv_url("live", "s"))
        assert (info["codec_name"], info["width"], info["height"]) == ("h264", 640, 360), info


def _has_stream(node: NodeProcess) -> bool:
    try:
        with httpx.stream("GET", node.flv_url("live", "s"), timeout=2) as resp:
            return resp.status_code == 200
    except httpx.HTTPError:
        return False


def test_propagation_latency_p50_p99(node_factory: NodeFactory, pg_url: str) -> None:
    """200 changes written round-robin through 3 nodes; each one timed until every other
    node's scheduler shows it (bench/cluster.py's measurement)."""
    nodes = start_cluster(node_factory, pg_url)
    register_vhost(nodes[0])

    async def measure() -> list[float]:
        apis = [AsyncLiveService(n.api_host, TEST_AK, TEST_SK, scheme="http", timeout=10.0) for n in nodes]
        try:
            return await propagation(apis, 200, domain=PULL_DOMAIN)
        finally:
            for svc in apis:
                await svc.aclose()

    samples = asyncio.run(measure())
    assert len(samples) == 400
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    print(
        f"\npropagation of 200 changes across 3 nodes ({len(samples)} node samples, write ack -> "
        f"other node's scheduler): p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {max(samples) * 1000:.1f} ms, mean {statistics.mean(samples) * 1000:.1f} ms"
    )
    assert p99 < 1.0  # the goal; includes the polling client's own round trips


def test_concurrent_updates_of_one_fixed_relay_leave_one_whole_write(
    node_factory: NodeFactory, pg_url: str
) -> None:
    nodes = start_cluster(node_factory, pg_url)
    a, b, _ = nodes
    register_vhost(a)
    with api(a) as svc:
        svc.create_relay_source_v4(v4_body("race", FUTURE))
    clients = {"a": api(a), "b": api(b)}
    checker = [api(n) for n in nodes]
    try:
        for i in range(100):
            writes = {
                name: v4_body("race", FUTURE + 1000 * i + offset, src=f"rtmp://127.0.0.1:1/{name}/{i}")
                for name, offset in (("a", 0), ("b", 500))
            }
            barrier = threading.Barrier(2, timeout=10)
            failures: list[BaseException] = []

            def write(
                name: str,
                writes: dict[str, dict[str, Any]] = writes,
                barrier: threading.Barrier = barrier,
                failures: list[BaseException] = failures,
            ) -> None:
                try:
                    barrier.wait()
                    clients[name].update_relay_source_v4(writes[name])
                except BaseException as exc:  # reported below, with the round
                    failures.append(exc)

            threads = [threading.Thread(target=write, args=(name,)) for name in writes]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert not failures, f"round {i}: {failures}"
            stored = listed_v4(checker[2])["race"]
            got = (stored["SrcAddrS"], stored["StartTime"], stored["EndTime"])
            candidates = [(w["SrcAddrS"], w["StartTime"], w["EndTime"]) for w in writes.values()]
            assert got in candidates, f"round {i}: stored {got} is not one of {candidates}"
            for node, svc in zip(nodes, checker, strict=True):
                wait_until(
                    lambda node=node, svc=svc, start=got[1]: (
                        fixed_rows(node, svc)["race"]["StartTime"] == start
                    ),
                    5,
                    f"round {i}: {node.api_host} to converge on StartTime {got[1]}",
                    interval=0.01,
                )
                assert listed_v4(svc)["race"]["SrcAddrS"] == got[0]
    finally:
        for svc in [*clients.values(), *checker]:
            svc.close()


def test_db_copy_of_a_sqlite_node_into_a_cluster(
    node_factory: NodeFactory, pg_url: str, tmp_path: Path
) -> None:
    single = node_factory("single")
    register_vhost(single)
    set_v3(single, [rtmp_server(free_port())])
    with api(single) as svc:
        task = svc.create_relay_source_v4(v4_body("copied", FUTURE))
    task_id = task.get("Result", task)["TaskId"]
    ak, sk = asyncio.run(_new_key(f"sqlite:///{single.data_dir / 'liverelay.db'}"))
    single.kill()

    source = f"sqlite:///{single.data_dir / 'liverelay.db'}"
    # Through the CLI, as an operator would: `liverelay db copy --from ... --to ...`.
    copied = run_liverelay(
        ["db", "copy", "--from", source, "--to", pg_url, "--data-dir", str(tmp_path), "--json"]
    )
    assert copied.returncode == 0, copied.stderr
    report = json.loads(copied.stdout)
    assert (report["Domains"], report["RelayV3"], report["RelayV4"]) == (1, 1, 1)
    assert report["Keys"] == 2  # the node's ensured test key and the one made above
    current = run_liverelay(["db", "current", "--database-url", pg_url, "--json"])
    assert current.returncode == 0, current.stderr
    revision = json.loads(current.stdout)
    assert revision["Current"] == revision["Newest"] is not None

    [member] = start_cluster(node_factory, pg_url, names=("member",))
    with SignedClient(member.api_host, ak, sk) as client:
        listed = client.ok("ListRelaySourceV4", {"Domain": PULL_DOMAIN, "Page": 1, "Size": 10})
        assert [(i["Stream"], i["TaskId"]) for i in listed["List"]] == [("copied", task_id)]
        v3 = client.ok("DescribeRelaySourceV3", {"Vhost": EDGE_VHOST})["RelaySourceConfigList"]
        assert v3[0]["GroupDetails"][0]["Servers"][0]["RelaySourceDomain"].startswith("127.0.0.1:")
    wait_until(lambda: "copied" in fixed_rows(member), 5, "the copied fixed relay scheduled")
    # A second copy would duplicate everything: refused, nothing written.
    with pytest.raises(AlreadyExists):
        asyncio.run(db_copy(source, pg_url, tmp_path))
    again = run_liverelay(["db", "copy", "--from", source, "--to", pg_url, "--data-dir", str(tmp_path)])
    assert again.returncode == 1 and "nothing copied" in again.stderr, again


def test_database_outage_503_then_resync(
    node_factory: NodeFactory, pg_url: str, request: pytest.FixtureRequest
) -> None:
    """PostgreSQL stopped: API writes answer 503 ServiceUnavailable and the nodes keep
    running; restarted: writes work again and reach the other node, with nothing lost."""
    server: PostgresServer = request.getfixturevalue("postgres_server")
    a, c = start_cluster(node_factory, pg_url, names=("a", "c"))
    register_vhost(a)
    with api(a) as svc:
        svc.create_relay_source_v4(v4_body("before", FUTURE))
    wait_until(lambda: "before" in fixed_rows(c), 5, "the first fixed relay on C")
    server.stop()
    try:
        with SignedClient(a.api_host, TEST_AK, TEST_SK) as client:
            resp = client.post("CreateRelaySourceV4", v4_body("during", FUTURE))
        assert resp.status_code == 503, resp.text
        assert resp.json()["ResponseMetadata"]["Error"]["Code"] == "ServiceUnavailable"
        assert a.proc.poll() is None and c.proc.poll() is None
        # The media side answers without the database.
        assert httpx.get(f"http://127.0.0.1:{c.http_port}/healthz", timeout=5).status_code == 200
    finally:
        server.start()
    wait_write_accepted(a, v4_body("after", FUTURE))
    wait_until(lambda: {"before", "after"} <= set(fixed_rows(c)), 10, "the write after the outage on C")
    with api(c) as svc:
        assert set(listed_v4(svc)) == {"before", "after"}


def test_missed_notification_is_found_and_resynced(
    node_factory: NodeFactory, pg_url: str, request: pytest.FixtureRequest
) -> None:
    """A change committed without its NOTIFY (as if the notification were lost): the
    node's keepalive sees the change number move and resyncs fully."""
    server: PostgresServer = request.getfixturevalue("postgres_server")
    [b] = start_cluster(node_factory, pg_url, names=("b",))
    register_vhost(b)
    with api(b) as svc:
        svc.create_relay_source_v4(v4_body("quiet", FUTURE))
    wait_until(lambda: "quiet" in fixed_rows(b), 5, "the fixed relay on B")
    database = pg_url.rsplit("/", 1)[1]
    server.psql(
        f"BEGIN; UPDATE relay_v4 SET start_time = {FUTURE + 77} WHERE stream = 'quiet';"
        " UPDATE changes SET seq = seq + 1 WHERE id = 1; COMMIT;",
        database,
    )
    wait_until(
        lambda: fixed_rows(b)["quiet"]["StartTime"] == FUTURE + 77, 15, "B to resync the silent change"
    )
