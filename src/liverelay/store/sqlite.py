"""SQLite repository: one connection owned by one dedicated thread.

Every call runs on that thread, so SQLite never sees concurrent use from this
process, and the event loop never blocks on disk. WAL + synchronous=FULL makes a
commit durable (fsynced) before the awaiting coroutine resumes: an acknowledged
write survives kill -9 and power loss. The queries are the shared SQLAlchemy Core
ones (store/sql.py) run on a sync Connection wrapping that one sqlite3 connection.

Group commit: writes queued while the thread is busy are run together, each in its own
SAVEPOINT (a failing one is rolled back alone, as if it had been its own transaction),
inside one BEGIN IMMEDIATE ... COMMIT, so N concurrent writes cost one fsync. None of
them is answered before that COMMIT returns, and a failed COMMIT fails them all. The
answers of a batch reach the event loop in one wake-up, in queue order.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from . import migrate
from .models import StoreError
from .sql import SqlRepository, Tx

T = TypeVar("T")

log = logging.getLogger("liverelay.store")

# Writes run in one transaction at most (group commit): bounds how long the first write of
# a batch waits for the others' statements, and how much one failed COMMIT fails.
MAX_WRITES_PER_COMMIT = 64

JobKind = Literal["raw", "read", "write"]


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


@dataclass(slots=True)
class _Job:
    """One call for the store thread: `raw` runs fn() as is (open/close), `read` and
    `write` run fn(conn) in a transaction; the outcome goes to `future` on `loop`."""

    kind: JobKind
    fn: Callable[..., Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


_STOP = object()  # ends the store thread (queued by close(), after its last job)
_Outcome = tuple[_Job, bool, Any]  # (job, succeeded, value or exception)


def _settle(outcomes: list[_Outcome]) -> None:
    """On the event loop: hand each waiting coroutine its result, in queue order."""
    for job, ok, value in outcomes:
        if job.future.cancelled():
            continue
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


class SqliteRepository(SqlRepository):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._jobs: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._set_write: Callable[[bool], None] = lambda write: None
        self._closed = False
        self.write_commits = 0  # write transactions committed (a group commit counts once)

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

        def closer() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

        try:
            if self._thread is not None:
                await self._call(closer)
        finally:
            self._closed = True
            if self._thread is not None:
                self._jobs.put(_STOP)
                self._thread.join(timeout=10)
                self._thread = None

    async def _call(self, fn: Callable[..., T], kind: JobKind = "raw") -> T:
        if self._closed:
            # As a shut-down executor did: the store's thread is gone.
            raise RuntimeError("the store is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="liverelay-sqlite", daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(kind, fn, loop, future))
        return await future

    # ---- these run on the store thread only ----
    def _serve(self) -> None:
        held: _Job | None = None  # a job taken while gathering a batch that cannot join it
        while True:
            item = held if held is not None else self._jobs.get()
            held = None
            if not isinstance(item, _Job):
                return  # _STOP
            if item.kind != "write":
                self._deliver([self._one(item)])
                continue
            batch = [item]
            while len(batch) < MAX_WRITES_PER_COMMIT:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(more, _Job) or more.kind != "write":
                    if isinstance(more, _Job):
                        held = more  # a read waits for the batch's commit: it sees it
                    else:
                        self._jobs.put(_STOP)  # stop after this batch
                    break
                batch.append(more)
            self._deliver(self._commit(batch))

    def _one(self, job: _Job) -> _Outcome:
        try:
            if job.kind == "raw":
                return job, True, job.fn()
            return job, True, self._run(job.fn, job.kind == "write")
        except Exception as exc:
            return job, False, exc

    def _commit(self, batch: list[_Job]) -> list[_Outcome]:
        """The batch in one transaction, each write in a savepoint; one COMMIT (one fsync)."""
        if len(batch) == 1:
            return [self._one(batch[0])]
        outcomes: list[_Outcome] = []
        try:
            conn = self._connection()
            self._set_write(True)
            with conn.begin():
                # Plain driver SQL: SQLAlchemy's begin_nested() compiles a new statement
                # for each uniquely named savepoint (~4 % of a write's CPU).
                db = self._db()
                for job in batch:
                    db.execute("SAVEPOINT lr_write")
                    try:
                        value = job.fn(conn)
                    except Exception as exc:
                        db.execute("ROLLBACK TO lr_write")
                        db.execute("RELEASE lr_write")
                        outcomes.append((job, False, exc))
                    else:
                        db.execute("RELEASE lr_write")
                        outcomes.append((job, True, value))
        except Exception as exc:
            # Nothing of the batch is durable: every write of it fails.
            log.warning("store: a group commit of %d writes failed: %s", len(batch), exc)
            return [(job, False, exc) for job in batch]
        self.write_commits += 1
        return outcomes

    @staticmethod
    def _deliver(outcomes: list[_Outcome]) -> None:
        """One wake-up of each event loop for the whole batch."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        for loop, mine in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, mine)
            except RuntimeError:  # that loop is closed: nobody awaits these any more
                log.warning("store: %d answers for a closed event loop dropped", len(mine))

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
            value = tx(conn)
        self.write_commits += write
        return value

    async def _read(self, tx: Tx[T]) -> T:
        return await self._call(tx, "read")

    async def _write(self, tx: Tx[T]) -> T:
        return await self._call(tx, "write")
