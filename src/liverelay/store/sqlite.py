"""SQLite repository: one connection owned by one dedicated thread.

Every call runs on that thread, so SQLite never sees concurrent use from this
process, and the event loop never blocks on disk. WAL + synchronous=FULL makes a
commit durable (fsynced) before the awaiting coroutine resumes: an acknowledged
write survives kill -9 and power loss. The queries are the shared SQLAlchemy Core
ones (store/sql.py) run on a sync Connection wrapping that one sqlite3 connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from . import migrate
from .models import StoreError
from .sql import SqlRepository, Tx

T = TypeVar("T")


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: the driver issues no BEGIN of its own; ours (below) is explicit.
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")  # a CLI process may write keys concurrently
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"cannot enable WAL on {path} (journal_mode={mode})")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def sqlite_engine(path: Path) -> tuple[Engine, Callable[[bool], None]]:
    """An engine on one sqlite3 connection (WAL, synchronous=FULL) whose transactions
    start with BEGIN IMMEDIATE for writes (the write lock up front: no upgrade deadlock
    with a CLI process); reads run without BEGIN, in the driver's autocommit, as the
    stdlib store did (the closing COMMIT is then a no-op). The second value picks which."""
    raw = _connect(path)
    engine = create_engine("sqlite://", creator=lambda: raw, poolclass=StaticPool)
    mode = {"write": True}

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        if mode["write"]:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def set_write(write: bool) -> None:
        mode["write"] = write

    return engine, set_write


class SqliteRepository(SqlRepository):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liverelay-sqlite")
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._set_write: Callable[[bool], None] = lambda write: None
        self._closed = False

    async def open(self) -> None:
        def opener() -> None:
            self._engine, self._set_write = sqlite_engine(self.path)
            self._conn = self._engine.connect()
            self._set_write(True)
            with self._conn.begin():
                migrate.upgrade(self._conn)

        await self._call(opener)

    async def close(self) -> None:
        """Idempotent: waits for queued work, closes the connection, ends the thread."""
        if self._closed:
            return
        self._closed = True

        def closer() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

        try:
            await self._call(closer)
        finally:
            self._executor.shutdown(wait=True)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ---- these run on the writer thread only ----
    def _connection(self) -> Connection:
        if self._conn is None:
            raise StoreError("store is closed")
        return self._conn

    def _db(self) -> sqlite3.Connection:
        """The sqlite3 connection itself (PRAGMA checks)."""
        dbapi = self._connection().connection.dbapi_connection
        assert isinstance(dbapi, sqlite3.Connection)
        return dbapi

    def _run(self, tx: Tx[T], write: bool) -> T:
        """One transaction; a write is committed (and fsynced) before this returns."""
        conn = self._connection()
        self._set_write(write)
        with conn.begin():
            return tx(conn)

    async def _read(self, tx: Tx[T]) -> T:
        return await self._call(self._run, tx, False)

    async def _write(self, tx: Tx[T]) -> T:
        return await self._call(self._run, tx, True)
