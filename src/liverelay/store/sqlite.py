"""SQLite repository: one connection owned by one dedicated thread.

Every call runs on that thread, so SQLite never sees concurrent use from this
process, and the event loop never blocks on disk. WAL + synchronous=FULL makes a
commit durable (fsynced) before the awaiting coroutine resumes: an acknowledged
write survives kill -9 and power loss.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .models import (
    AccessKey,
    AlreadyExists,
    DomainRecord,
    NotFound,
    RelayGroup,
    RelayServer,
    RelayV3Config,
    RelayV4Config,
    StoreError,
)

T = TypeVar("T")

# Ordered migrations: index + 1 is the schema version they lead to. Never edit a
# released entry; append a new one.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE access_keys (
            ak TEXT PRIMARY KEY,
            sk TEXT NOT NULL,
            created INTEGER NOT NULL,
            enabled INTEGER NOT NULL DEFAULT 1
        )""",
        """CREATE TABLE domains (
            domain TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            vhost TEXT NOT NULL,
            region TEXT NOT NULL,
            status INTEGER NOT NULL DEFAULT 0,
            created INTEGER NOT NULL
        )""",
        "CREATE INDEX domains_vhost ON domains (vhost)",
        """CREATE TABLE relay_v3 (
            vhost TEXT NOT NULL,
            app TEXT NOT NULL,
            groups_json TEXT NOT NULL,
            created INTEGER NOT NULL,
            updated INTEGER NOT NULL,
            PRIMARY KEY (vhost, app)
        )""",
        """CREATE TABLE relay_v4 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            task_id TEXT NOT NULL UNIQUE,
            vhost TEXT NOT NULL,
            app TEXT NOT NULL,
            stream TEXT NOT NULL,
            domain TEXT NOT NULL,
            src_addrs_json TEXT NOT NULL,
            start_time INTEGER,
            end_time INTEGER,
            created INTEGER NOT NULL,
            updated INTEGER NOT NULL,
            UNIQUE (vhost, app, stream)
        )""",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a commit is explicit.
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 5000")  # a CLI process may write keys concurrently
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"cannot enable WAL on {path} (journal_mode={mode})")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION; returns the version found before."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        found = row[0] if row else 0
        if found > SCHEMA_VERSION:
            raise StoreError(f"database schema v{found} is newer than this liverelay (v{SCHEMA_VERSION})")
        for statements in MIGRATIONS[found:]:
            for sql in statements:
                conn.execute(sql)
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        else:
            conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


_V3_KEY = "vhost = ? AND app = ?"
_V4_KEY = "vhost = ? AND app = ? AND stream = ?"


def _server_to_dict(server: RelayServer) -> dict[str, Any]:
    return {"protocol": server.protocol, "domain": server.domain, "params": server.params}


def _groups_to_json(groups: tuple[RelayGroup, ...]) -> str:
    data = [{"name": g.name, "servers": [_server_to_dict(s) for s in g.servers]} for g in groups]
    return json.dumps(data, separators=(",", ":"))


def _groups_from_json(text: str) -> tuple[RelayGroup, ...]:
    return tuple(
        RelayGroup(
            name=g["name"],
            servers=tuple(RelayServer(s["protocol"], s["domain"], dict(s["params"])) for s in g["servers"]),
        )
        for g in json.loads(text)
    )


def _key_row(row: sqlite3.Row) -> AccessKey:
    return AccessKey(row["ak"], row["sk"], row["created"], bool(row["enabled"]))


def _domain_row(row: sqlite3.Row) -> DomainRecord:
    return DomainRecord(
        row["domain"], row["type"], row["vhost"], row["region"], row["status"], row["created"]
    )


def _v3_row(row: sqlite3.Row) -> RelayV3Config:
    groups = _groups_from_json(row["groups_json"])
    return RelayV3Config(row["vhost"], row["app"], groups, row["created"], row["updated"])


def _v4_row(row: sqlite3.Row) -> RelayV4Config:
    return RelayV4Config(
        vhost=row["vhost"],
        app=row["app"],
        stream=row["stream"],
        domain=row["domain"],
        src_addrs=tuple(json.loads(row["src_addrs_json"])),
        start_time=row["start_time"],
        end_time=row["end_time"],
        task_id=row["task_id"],
        created=row["created"],
        updated=row["updated"],
    )


class SqliteRepository:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liverelay-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    async def open(self) -> None:
        def opener() -> None:
            self._conn = _connect(self.path)
            migrate(self._conn)

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

        try:
            await self._call(closer)
        finally:
            self._executor.shutdown(wait=True)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ---- these run on the writer thread only ----
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("store is closed")
        return self._conn

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """One transaction, committed (and fsynced) before returning."""
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return result

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self._db().execute(sql, params).fetchall()

    async def _delete(self, sql: str, params: tuple[Any, ...]) -> bool:
        return await self._call(self._write, lambda c: c.execute(sql, params).rowcount > 0)

    # ---- access keys ----
    async def get_key(self, ak: str) -> AccessKey | None:
        rows = await self._call(self._read, "SELECT * FROM access_keys WHERE ak = ?", (ak,))
        return _key_row(rows[0]) if rows else None

    async def list_keys(self) -> list[AccessKey]:
        rows = await self._call(self._read, "SELECT * FROM access_keys ORDER BY created, ak")
        return [_key_row(r) for r in rows]

    async def put_key(self, key: AccessKey) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            existed = conn.execute("SELECT 1 FROM access_keys WHERE ak = ?", (key.ak,)).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO access_keys (ak, sk, created, enabled) VALUES (?, ?, ?, ?)",
                (key.ak, key.sk, key.created, int(key.enabled)),
            )
            return existed is None

        return await self._call(self._write, tx)

    async def delete_key(self, ak: str) -> bool:
        return await self._delete("DELETE FROM access_keys WHERE ak = ?", (ak,))

    # ---- domains ----
    async def list_domains(self) -> list[DomainRecord]:
        rows = await self._call(self._read, "SELECT * FROM domains ORDER BY created, domain")
        return [_domain_row(r) for r in rows]

    async def insert_domains(self, records: list[DomainRecord]) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            for r in records:
                try:
                    conn.execute(
                        "INSERT INTO domains (domain, type, vhost, region, status, created)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (r.domain, r.type, r.vhost, r.region, r.status, r.created),
                    )
                except sqlite3.IntegrityError as exc:
                    raise AlreadyExists(f"domain {r.domain} already exists") from exc

        await self._call(self._write, tx)

    async def update_domain(self, record: DomainRecord) -> bool:
        sql = "UPDATE domains SET type = ?, vhost = ?, region = ?, status = ? WHERE domain = ?"
        params = (record.type, record.vhost, record.region, record.status, record.domain)
        return await self._call(self._write, lambda c: c.execute(sql, params).rowcount > 0)

    async def delete_domain(self, domain: str) -> bool:
        return await self._delete("DELETE FROM domains WHERE domain = ?", (domain,))

    # ---- V3 ----
    async def get_relay_v3(self, vhost: str, app: str) -> RelayV3Config | None:
        rows = await self._call(self._read, f"SELECT * FROM relay_v3 WHERE {_V3_KEY}", (vhost, app))
        return _v3_row(rows[0]) if rows else None

    async def list_relay_v3(self, vhost: str | None = None) -> list[RelayV3Config]:
        if vhost is None:
            rows = await self._call(self._read, "SELECT * FROM relay_v3 ORDER BY vhost, app")
        else:
            sql = "SELECT * FROM relay_v3 WHERE vhost = ? ORDER BY app"
            rows = await self._call(self._read, sql, (vhost,))
        return [_v3_row(r) for r in rows]

    async def put_relay_v3(self, config: RelayV3Config) -> tuple[RelayV3Config, bool]:
        """Insert or replace the groups (keeping `created`); the stored config and whether it was new."""

        def tx(conn: sqlite3.Connection) -> tuple[RelayV3Config, bool]:
            key = (config.vhost, config.app)
            existed = conn.execute(f"SELECT 1 FROM relay_v3 WHERE {_V3_KEY}", key).fetchone()
            conn.execute(
                "INSERT INTO relay_v3 (vhost, app, groups_json, created, updated) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (vhost, app) DO UPDATE SET groups_json = excluded.groups_json,"
                " updated = excluded.updated",
                (*key, _groups_to_json(config.groups), config.created, config.updated),
            )
            row = conn.execute(f"SELECT * FROM relay_v3 WHERE {_V3_KEY}", key).fetchone()
            return _v3_row(row), existed is None

        return await self._call(self._write, tx)

    async def delete_relay_v3(self, vhost: str, app: str) -> bool:
        return await self._delete(f"DELETE FROM relay_v3 WHERE {_V3_KEY}", (vhost, app))

    # ---- V4 ----
    async def get_relay_v4(self, vhost: str, app: str, stream: str) -> RelayV4Config | None:
        rows = await self._call(self._read, f"SELECT * FROM relay_v4 WHERE {_V4_KEY}", (vhost, app, stream))
        return _v4_row(rows[0]) if rows else None

    async def list_relay_v4(
        self, vhost: str | None = None, *, offset: int = 0, limit: int | None = None
    ) -> tuple[list[RelayV4Config], int]:
        where, params = ("WHERE vhost = ?", (vhost,)) if vhost is not None else ("", ())
        lim = -1 if limit is None else limit

        def query() -> tuple[list[sqlite3.Row], int]:
            conn = self._db()
            total = conn.execute(f"SELECT COUNT(*) FROM relay_v4 {where}", params).fetchone()[0]
            rows = conn.execute(
                f"SELECT * FROM relay_v4 {where} ORDER BY id LIMIT ? OFFSET ?", (*params, lim, offset)
            ).fetchall()
            return rows, total

        rows, total = await self._call(query)
        return [_v4_row(r) for r in rows], total

    async def insert_relay_v4(self, config: RelayV4Config) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO relay_v4 (task_id, vhost, app, stream, domain, src_addrs_json, start_time,"
                    " end_time, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        config.task_id,
                        config.vhost,
                        config.app,
                        config.stream,
                        config.domain,
                        json.dumps(list(config.src_addrs)),
                        config.start_time,
                        config.end_time,
                        config.created,
                        config.updated,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"fixed relay {'/'.join(config.key)} already exists") from exc

        await self._call(self._write, tx)

    async def update_relay_v4(self, config: RelayV4Config) -> RelayV4Config:
        """Replace addresses and schedule (task_id, domain and created stay); NotFound when absent."""

        def tx(conn: sqlite3.Connection) -> RelayV4Config:
            key = config.key
            addrs = json.dumps(list(config.src_addrs))
            cur = conn.execute(
                "UPDATE relay_v4 SET src_addrs_json = ?, start_time = ?, end_time = ?, updated = ?"
                f" WHERE {_V4_KEY}",
                (addrs, config.start_time, config.end_time, config.updated, *key),
            )
            if cur.rowcount == 0:
                raise NotFound(f"fixed relay {'/'.join(key)} does not exist")
            return _v4_row(conn.execute(f"SELECT * FROM relay_v4 WHERE {_V4_KEY}", key).fetchone())

        return await self._call(self._write, tx)

    async def delete_relay_v4(self, vhost: str, app: str, stream: str) -> bool:
        return await self._delete(f"DELETE FROM relay_v4 WHERE {_V4_KEY}", (vhost, app, stream))
