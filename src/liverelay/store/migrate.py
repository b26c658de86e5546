"""Alembic, driven on a connection liverelay holds (no alembic.ini).

`upgrade(conn)` brings a database to the newest revision and is what every node runs at
start; `current(conn)` names the revision a database is at. Both are sync functions on
a `sqlalchemy.Connection`: SQLite calls them on its writer thread, PostgreSQL through
`AsyncConnection.run_sync`. On PostgreSQL an advisory lock makes nodes that start at
the same moment migrate one after the other (the later ones find nothing to do).

Alembic (with Mako and its dialect modules, ~8 MB of a node's memory) is imported only
when the schema needs it: a database already at the newest revision, the usual start,
is recognised with one query against a head read from the revision files.
"""

from __future__ import annotations

import logging
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from .models import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("liverelay.store.migrate")
# Alembic says "Context impl ..." on every run at INFO; our own line below says what changed.
logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The first revision, identical to the schema_version 1 databases of liverelay <= 0.1.
LEGACY_REVISION = "0001"
# Any constant: the key of the advisory lock serialising migrations across nodes.
_PG_MIGRATION_LOCK = 0x6C72_6D67


def _config(conn: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def head() -> str:
    """The newest revision this liverelay knows."""
    from alembic.script import ScriptDirectory

    revision = ScriptDirectory.from_config(_config()).get_current_head()
    if revision is None:
        raise StoreError("no migrations found")
    return revision


_REVISION_LINE = re.compile(r"^(revision|down_revision)\b[^=]*=\s*(?:\"([^\"]*)\"|'([^']*)'|None)", re.M)


@cache
def file_head() -> str | None:
    """The head revision read from the revision files without Alembic: the one revision no
    other revision names as its down_revision; None when that is not one plain revision
    (a merge, a branch, a file it cannot read), so the caller asks Alembic."""
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in sorted(MIGRATIONS_DIR.joinpath("versions").glob("[!_]*.py")):
        found = {m[1]: m[2] or m[3] for m in _REVISION_LINE.finditer(path.read_text())}
        if not found.get("revision") or "down_revision" not in found:
            return None
        revisions.add(found["revision"])
        if found["down_revision"]:
            downs.add(found["down_revision"])
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


def _stamped(conn: Connection) -> str | None:
    """The revision in alembic_version (one plain query); None when there is none."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    return str(rows[0][0]) if len(rows) == 1 else None


def current(conn: Connection) -> str | None:
    """The revision the database is at; None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is None and _legacy_version(conn) is not None:
        return LEGACY_REVISION
    return revision


def _legacy_version(conn: Connection) -> int | None:
    if "schema_version" not in inspect(conn).get_table_names():
        return None
    row = conn.execute(text("SELECT version FROM schema_version")).first()
    return int(row[0]) if row is not None else 0


def upgrade(conn: Connection) -> tuple[str | None, str]:
    """Migrate to the newest revision inside the caller's transaction; (before, after).

    StoreError when the database is at a revision this liverelay does not know (a newer
    liverelay migrated it): a node never runs against a schema it was not written for."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
    newest = file_head()
    if newest is not None and _stamped(conn) == newest:
        return newest, newest  # already current: Alembic is not needed (nor loaded)
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    cfg = _config(conn)
    scripts = ScriptDirectory.from_config(cfg)
    found = MigrationContext.configure(conn).get_current_revision()
    if found is None:
        legacy = _legacy_version(conn)
        if legacy is not None:
            if legacy > 1:
                raise StoreError(f"database schema v{legacy} is newer than this liverelay (v1)")
            # A store made before Alembic: its tables are revision 0001 exactly.
            command.stamp(cfg, LEGACY_REVISION)
            found = LEGACY_REVISION
    if found is not None:
        try:
            scripts.get_revision(found)
        except CommandError as exc:
            raise StoreError(
                f"database schema revision {found} is newer than this liverelay "
                f"(newest known: {scripts.get_current_head()})"
            ) from exc
    command.upgrade(cfg, "head")
    after = MigrationContext.configure(conn).get_current_revision() or ""
    if after != found:
        log.info("database schema migrated from %s to %s", found or "empty", after)
    return found, after


def drift(conn: Connection) -> list[object]:
    """Differences between the migrated database and store/schema.py (empty = in step)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from .schema import metadata

    diffs: list[object] = compare_metadata(MigrationContext.configure(conn), metadata)
    return diffs
