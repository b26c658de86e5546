"""The cluster's own connections to PostgreSQL (membership heartbeats and lease rounds).

A small pool of its own, separate from the API's (store/postgres.py): a burst of API
requests waiting for connections must never delay a lease renewal past its TTL, and
each statement here is bounded by a timeout well under the TTL, so a stalled database
shows up as a failed round, not as a round that hangs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import BigInteger, literal_column
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..store.postgres import is_unavailable, sqlalchemy_url

T = TypeVar("T")

# The database's clock in Unix milliseconds: every node compares heartbeats and lease
# expiries on this one clock, never on its own.
DB_NOW_MS = literal_column("(extract(epoch from clock_timestamp()) * 1000)::bigint", type_=BigInteger)


class ClusterDbUnavailable(Exception):
    """The database could not be reached (or did not answer in time) for a cluster round."""


class ClusterDb:
    def __init__(self, url: str, *, timeout_s: float, pool_size: int = 2) -> None:
        self.timeout_s = timeout_s
        self._engine: AsyncEngine = create_async_engine(
            sqlalchemy_url(url),
            pool_size=pool_size,
            max_overflow=0,
            pool_pre_ping=True,  # a connection broken by a database restart is replaced, not used
            pool_timeout=timeout_s,
            connect_args={"timeout": timeout_s, "command_timeout": timeout_s},
        )

    async def run(self, tx: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`tx` in one transaction; unreachable database -> ClusterDbUnavailable."""
        try:
            async with self._engine.begin() as conn:
                return await tx(conn)
        except Exception as exc:
            if is_unavailable(exc):
                raise ClusterDbUnavailable(str(exc) or type(exc).__name__) from exc
            raise

    async def close(self) -> None:
        await self._engine.dispose()
