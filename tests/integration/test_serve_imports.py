"""What a plain `liverelay serve` loads: the fixed memory of a node is mostly its imports.

Everything below is loaded only when used (ISSUE-13, "Memory: fixed RSS"): Alembic (and
Mako) only when the schema needs a migration, the PostgreSQL pieces (asyncpg, SQLAlchemy's
asyncio layer and ORM, its PostgreSQL dialect) only on PostgreSQL, rich only for the CLI
commands that print tables, the SDK (httpx) and the client commands only for the commands
that call the API, the cluster's parts (membership, leases, the change feed) only on
PostgreSQL, each origin puller (sources/: RTMP, HTTP-FLV, the native HLS puller with m3u8
and cryptography, ffmpeg for SRT) only when a relay first pulls with it. What is left is
the third-party stack and liverelay's own serve path: bench/README.md ("Fixed RSS: what is
left and the stack floor") has the measured floor and what going below it would take.
The list is read from the node's own `-X importtime` output (PYTHONPROFILEIMPORTTIME).
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.conftest import NodeProcess, start_node

from liverelay.store import migrate

NOT_AT_START = (
    "alembic",
    "mako",
    "asyncpg",
    "sqlalchemy.orm",
    "sqlalchemy.ext.asyncio",
    "sqlalchemy.dialects.postgresql",
    "rich",
    "liverelay.sdk",
    "httpx",
    "liverelay.cli.client",
    "liverelay.cluster.db",
    "liverelay.cluster.leases",
    "liverelay.cluster.membership",
    "liverelay.cluster.metrics",
    "liverelay.cluster.rounds",
    "liverelay.store.feed",
    "liverelay.store.admin",
    "liverelay.sources.rtmp",
    "liverelay.sources.flv",
    "liverelay.sources.hls",
    "liverelay.sources.hls_playlist",
    "liverelay.sources.ffmpeg",
    "m3u8",
    "cryptography",
)


def imported_modules(node: NodeProcess) -> set[str]:
    modules = set()
    for line in node.log().splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                modules.add(name)
    return modules


def serve_once(data_dir: Path) -> set[str]:
    node = start_node(data_dir, extra_env={"PYTHONPROFILEIMPORTTIME": "1"})
    node.kill(signal.SIGTERM)
    modules = imported_modules(node)
    assert "liverelay.servers.rtmp" in modules, "the node's import trace was not captured"
    return modules


def test_plain_serve_does_not_load_what_it_does_not_use(tmp_path: Path) -> None:
    first = serve_once(tmp_path / "node")  # a new data dir: the schema is created
    assert "alembic" in first, "creating the schema is Alembic's job"
    second = serve_once(tmp_path / "node")  # the schema is current now
    loaded = sorted(m for m in second if m.split(".")[0] in {n.split(".")[0] for n in NOT_AT_START})
    unwanted = [m for m in loaded if any(m == n or m.startswith(n + ".") for n in NOT_AT_START)]
    assert unwanted == [], f"a plain serve imported {unwanted}"


def test_head_read_from_the_revision_files_is_alembics() -> None:
    """The start-up check reads the newest revision without Alembic; it must agree with it."""
    assert migrate.file_head() == migrate.head()
