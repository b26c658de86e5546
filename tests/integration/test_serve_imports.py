"""What a plain `liverelay serve` loads: the fixed memory of a node is mostly its imports.

Everything below is loaded only when used (ISSUE-13, "Memory: fixed RSS"): Alembic (and
Mako) only when the schema needs a migration, the PostgreSQL pieces (asyncpg, SQLAlchemy's
asyncio layer and ORM, its PostgreSQL dialect) only on PostgreSQL, rich only for the CLI
commands that print tables, the SDK (httpx) only for the commands that call the API.
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
