"""PostgreSQL repository: the shared queries (store/sql.py) on asyncpg, plus NOTIFY.

Every write transaction that changes something takes the next change number
(`UPDATE changes SET seq = seq + 1 ... RETURNING seq`, the row lock orders the numbers
as the commits) and sends `NOTIFY liverelay_changes` with
`{"seq", "origin", "entity", "op", "key"}` in the same transaction: PostgreSQL delivers
the notification if and only if the transaction commits. store/feed.py listens.

A write is acknowledged only after COMMIT returned (synchronous_commit as the server
sets it; PostgreSQL's default `on` flushes the WAL first). When the database cannot be
reached, reads and writes raise StoreUnavailable (the API answers 503
ServiceUnavailable); nothing is queued for later.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from . import migrate
from .bus import Entity, Op
from .models import StoreUnavailable
from .schema import changes
from .sql import SqlRepository, Tx, fetch_entity

if TYPE_CHECKING:  # SQLAlchemy's asyncio layer pulls in its ORM (~6 MB): loaded when used
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("liverelay.store.postgres")

T = TypeVar("T")

CHANNEL = "liverelay_changes"
# pg_notify refuses payloads of 8000 bytes or more; past this the key is left out and
# every listener resyncs instead (keys are API-validated names, far below it in practice).
MAX_PAYLOAD_BYTES = 7000


def asyncpg_dsn(url: str) -> str:
    """postgresql://... or postgresql+asyncpg://... -> the form asyncpg.connect takes."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.startswith("postgres") else url


def sqlalchemy_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"postgresql+asyncpg://{rest}" if scheme in ("postgresql", "postgres") else url


def is_postgres_url(url: str) -> bool:
    return url.split("://", 1)[0] in ("postgresql", "postgres", "postgresql+asyncpg")


def is_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached (down, restarting, network), as opposed to a bad query."""
    if isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


Committed = Callable[[int, Entity, object], None]
_ANNOUNCED = "liverelay.announced"


class PostgresRepository(SqlRepository):
    def __init__(self, url: str, *, pool_size: int = 5, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        # This process's writes carry it, so the feed skips their notifications (the
        # Store has already published them locally).
        self.origin = uuid.uuid4().hex
        # Called after COMMIT with each change's number (the feed orders local events with it).
        self.on_committed: Committed | None = None
        from sqlalchemy.ext.asyncio import create_async_engine

        self._engine: AsyncEngine = create_async_engine(
            sqlalchemy_url(url),
            pool_size=pool_size,
            max_overflow=0,
            pool_pre_ping=True,  # a connection broken by a restart is replaced, not used
            pool_timeout=timeout_s,
            connect_args={"timeout": timeout_s, "command_timeout": timeout_s},
        )

    async def open(self) -> None:
        """Migrate to the newest revision (other nodes starting at once wait on a lock)."""

        await self._run(migrate.upgrade, write=True)

    async def close(self) -> None:
        await self._engine.dispose()

    async def _run(self, tx: Tx[T], *, write: bool) -> T:
        try:
            async with self._engine.begin() as conn:
                return await conn.run_sync(tx)
        except Exception as exc:
            if is_unavailable(exc):
                what = "write" if write else "read"
                raise StoreUnavailable(f"database unavailable, {what} not done: {exc}") from exc
            raise

    async def _read(self, tx: Tx[T]) -> T:
        return await self._run(tx, write=False)

    async def _write(self, tx: Tx[T]) -> T:
        announced: list[tuple[int, Entity, object]] = []

        def with_changes(conn: Connection) -> T:
            # Per connection, not per repository: concurrent writes run on different connections.
            conn.info[_ANNOUNCED] = announced
            try:
                return tx(conn)
            finally:
                del conn.info[_ANNOUNCED]

        result = await self._run(with_changes, write=True)
        if self.on_committed is not None:
            for seq, entity, key in announced:
                self.on_committed(seq, entity, key)
        return result

    def _announce(self, conn: Connection, entity: Entity, op: Op, key: object) -> None:
        stmt = update(changes).where(changes.c.id == 1).values(seq=changes.c.seq + 1).returning(changes.c.seq)
        seq = int(conn.execute(stmt).scalar_one())
        payload = json.dumps(
            {"seq": seq, "origin": self.origin, "entity": entity, "op": op, "key": key},
            separators=(",", ":"),
        )
        if len(payload.encode()) > MAX_PAYLOAD_BYTES:
            payload = json.dumps({"seq": seq, "origin": self.origin, "entity": "*", "op": op, "key": None})
        conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})
        conn.info[_ANNOUNCED].append((seq, entity, key))

    async def fetch_current(self, entity: Entity, key: object) -> object | None:
        """The record of (entity, key) as committed now; None when it does not exist."""
        return await self._read(lambda c: fetch_entity(c, entity, key))

    async def change_seq(self) -> int:
        return await self._read(
            lambda c: int(c.execute(select(changes.c.seq).where(changes.c.id == 1)).scalar_one())
        )

    @property
    def engine(self) -> AsyncEngine:
        return self._engine
