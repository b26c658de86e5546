"""Cluster membership, fixed-relay leases and drain: `liverelay serve` nodes on one real PostgreSQL.

Membership is read where it is written (the `nodes` table, through psql); leases are
observed from outside (DescribeRelayStatus of each node, /metrics, an origin's own count
of its viewers).
"""

from __future__ import annotations

import signal

import pytest
from tests.integration.cluster_helpers import NodeFactory, start_cluster, wait_until
from tests.pgserver import PostgresServer


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
