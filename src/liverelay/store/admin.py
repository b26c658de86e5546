"""What `liverelay db ...` does, one function per command (the CLI only parses and prints).

- `db_upgrade(url, data_dir)`: migrate the database to the newest revision (every node
  also does this at start); returns (revision before, revision after).
- `db_current(url, data_dir)`: (revision the database is at or None, newest known).
- `db_copy(src, dst, data_dir)`: every key, domain and relay of one store into another
  (typically a single node's SQLite into the cluster's PostgreSQL), in one transaction,
  all or nothing; on PostgreSQL each row is announced, so running nodes apply it at once.

URLs as `database_url`: "" = SQLite in `data_dir`, sqlite:///PATH, postgresql://...
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import migrate
from .models import StoreError
from .postgres import PostgresRepository, is_postgres_url
from .sqlite import SqliteRepository


@dataclass(frozen=True)
class CopyReport:
    keys: int
    domains: int
    relay_v3: int
    relay_v4: int


def sqlite_path(url: str, data_dir: Path) -> Path:
    if not url:
        return data_dir / "liverelay.db"
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    raise NotImplementedError(f"database URL {url!r}: expected empty, sqlite:///PATH or postgresql://...")


async def _open(url: str, data_dir: Path) -> SqliteRepository | PostgresRepository:
    """A repository on `url`, migrated to the newest revision (no change feed)."""
    repo: SqliteRepository | PostgresRepository
    repo = PostgresRepository(url) if is_postgres_url(url) else SqliteRepository(sqlite_path(url, data_dir))
    try:
        await repo.open()
    except BaseException:
        await repo.close()
        raise
    return repo


async def db_upgrade(url: str, data_dir: Path) -> tuple[str | None, str]:
    before = (await db_current(url, data_dir))[0]
    repo = await _open(url, data_dir)
    await repo.close()
    return before, migrate.head()


async def db_current(url: str, data_dir: Path) -> tuple[str | None, str]:
    """Reads only: an absent SQLite file or an empty database is revision None."""
    if is_postgres_url(url):
        repo = PostgresRepository(url)
        try:
            async with repo.engine.connect() as conn:
                found = await conn.run_sync(migrate.current)
        finally:
            await repo.close()
        return found, migrate.head()
    path = sqlite_path(url, data_dir)
    if not path.exists():
        return None, migrate.head()
    from .sqlite import sqlite_engine

    engine, _ = sqlite_engine(path)
    try:
        with engine.connect() as conn:
            found = migrate.current(conn)
    finally:
        engine.dispose()
    return found, migrate.head()


async def db_copy(src: str, dst: str, data_dir: Path) -> CopyReport:
    """Copy everything from `src` into `dst` (both migrated first); AlreadyExists, with
    nothing written, when the destination already holds any of it."""
    if src == dst:
        raise StoreError("source and destination are the same database")
    source = await _open(src, data_dir)
    try:
        contents = await source.export_all()
    finally:
        await source.close()
    destination = await _open(dst, data_dir)
    try:
        await destination.import_all(contents)
    finally:
        await destination.close()
    return CopyReport(
        len(contents.keys), len(contents.domains), len(contents.relay_v3), len(contents.relay_v4)
    )
