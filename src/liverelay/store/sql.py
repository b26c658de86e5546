"""The Repository on SQLAlchemy Core: every query once, for SQLite and PostgreSQL.

Each operation is a plain function on a sync `sqlalchemy.Connection` inside one
transaction. SqliteRepository (store/sqlite.py) runs it on its writer thread;
PostgresRepository (store/postgres.py) runs it through `AsyncConnection.run_sync` on
asyncpg. A write that changes something calls `self._announce(conn, entity, op, key)`
inside its transaction: a no-op on SQLite (one node, the Store publishes locally), the
change number + NOTIFY on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from sqlalchemy import Row, bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from .bus import Entity, Op
from .models import (
    AccessKey,
    AlreadyExists,
    AuthKeyEntry,
    DomainRecord,
    NotFound,
    RelayGroup,
    RelayServer,
    RelayV3Config,
    RelayV4Config,
    UrlAuthConfig,
)
from .schema import access_keys, domains, relay_v3, relay_v4, url_auth

T = TypeVar("T")
Tx = Callable[[Connection], T]


def groups_to_json(groups: tuple[RelayGroup, ...]) -> str:
    data = [
        {
            "name": g.name,
            "servers": [{"protocol": s.protocol, "domain": s.domain, "params": s.params} for s in g.servers],
        }
        for g in groups
    ]
    return json.dumps(data, separators=(",", ":"))


def groups_from_json(text: str) -> tuple[RelayGroup, ...]:
    return tuple(
        RelayGroup(
            name=g["name"],
            servers=tuple(RelayServer(s["protocol"], s["domain"], dict(s["params"])) for s in g["servers"]),
        )
        for g in json.loads(text)
    )


def key_row(row: Row[Any]) -> AccessKey:
    return AccessKey(row.ak, row.sk, row.created, bool(row.enabled))


def domain_row(row: Row[Any]) -> DomainRecord:
    return DomainRecord(row.domain, row.type, row.vhost, row.region, row.status, row.created)


def v3_row(row: Row[Any]) -> RelayV3Config:
    return RelayV3Config(row.vhost, row.app, groups_from_json(row.groups_json), row.created, row.updated)


def v4_row(row: Row[Any]) -> RelayV4Config:
    return RelayV4Config(
        vhost=row.vhost,
        app=row.app,
        stream=row.stream,
        domain=row.domain,
        src_addrs=tuple(json.loads(row.src_addrs_json)),
        start_time=row.start_time,
        end_time=row.end_time,
        task_id=row.task_id,
        created=row.created,
        updated=row.updated,
    )


# Statements built once (bind parameters filled per call): building and caching a
# statement costs more than running it on SQLite, and get_key runs on every API request.
_GET_KEY = select(access_keys).where(access_keys.c.ak == bindparam("k_ak"))
_DEL_KEY = delete(access_keys).where(access_keys.c.ak == bindparam("k_ak"))
_GET_DOMAIN = select(domains).where(domains.c.domain == bindparam("k_domain"))
_DEL_DOMAIN = delete(domains).where(domains.c.domain == bindparam("k_domain"))
_UPDATE_DOMAIN = update(domains).where(domains.c.domain == bindparam("k_domain"))
# Read-modify-write inside one transaction: FOR UPDATE holds the row against other nodes
# until COMMIT (SQLite renders no clause: its BEGIN IMMEDIATE already excludes writers).
_LOCK_DOMAIN = _GET_DOMAIN.with_for_update()
_V3_WHERE = (relay_v3.c.vhost == bindparam("k_vhost")) & (relay_v3.c.app == bindparam("k_app"))
_GET_V3 = select(relay_v3).where(_V3_WHERE)
_DEL_V3 = delete(relay_v3).where(_V3_WHERE)
_LOCK_V3 = _GET_V3.with_for_update()
_UPDATE_V3 = update(relay_v3).where(_V3_WHERE)
_V4_WHERE = (
    (relay_v4.c.vhost == bindparam("k_vhost"))
    & (relay_v4.c.app == bindparam("k_app"))
    & (relay_v4.c.stream == bindparam("k_stream"))
)
_GET_V4 = select(relay_v4).where(_V4_WHERE)
_DEL_V4 = delete(relay_v4).where(_V4_WHERE)
_UPDATE_V4 = update(relay_v4).where(_V4_WHERE)


class _Upserts(dict[str, Any]):
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET replace = excluded, per dialect name,
    built on first use: the PostgreSQL dialect module (~2 MB) loads only on PostgreSQL."""

    def __init__(self, table: Any, keys: list[str], replace: list[str], *, returning: bool = False) -> None:
        super().__init__()
        self.table, self.conflict_keys, self.replace = table, keys, replace
        self.returning = returning

    def __missing__(self, dialect: str) -> Any:
        if dialect == "sqlite":
            from sqlalchemy.dialects import sqlite

            stmt: Any = sqlite.insert(self.table)
        elif dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            stmt = postgresql.insert(self.table)
        else:
            raise KeyError(dialect)
        built = stmt.on_conflict_do_update(
            index_elements=self.conflict_keys, set_={c: stmt.excluded[c] for c in self.replace}
        )
        if self.returning:
            built = built.returning(*self.table.c)
        self[dialect] = built
        return built


_UPSERT_KEY = _Upserts(access_keys, ["ak"], ["sk", "created", "enabled"])
# RETURNING the stored row: no second SELECT per V3 write (SQLite >= 3.35, PostgreSQL).
_UPSERT_V3 = _Upserts(relay_v3, ["vhost", "app"], ["groups_json", "updated"], returning=True)
_URL_AUTH_KEY = ["vhost", "app", "scene"]
_UPSERT_URL_AUTH = _Upserts(url_auth, _URL_AUTH_KEY, ["enabled", "valid_duration", "keys_json", "updated"])
_URL_AUTH_WHERE = (
    (url_auth.c.vhost == bindparam("k_vhost"))
    & (url_auth.c.app == bindparam("k_app"))
    & (url_auth.c.scene == bindparam("k_scene"))
)
_GET_URL_AUTH = select(url_auth).where(_URL_AUTH_WHERE)
_DEL_URL_AUTH = delete(url_auth).where(_URL_AUTH_WHERE)


def _url_auth_key(vhost: str, app: str, scene: str) -> dict[str, str]:
    return {"k_vhost": vhost, "k_app": app, "k_scene": scene}


def auth_keys_to_json(keys: tuple[AuthKeyEntry, ...]) -> str:
    return json.dumps(
        [{"secret_key": k.secret_key, "algorithm": k.algorithm} for k in keys], separators=(",", ":")
    )


def url_auth_row(row: Row[Any]) -> UrlAuthConfig:
    keys = tuple(AuthKeyEntry(k["secret_key"], k["algorithm"]) for k in json.loads(row.keys_json))
    return UrlAuthConfig(
        row.vhost, row.app, row.scene, bool(row.enabled), row.valid_duration, keys, row.created, row.updated
    )


def _v3_key(vhost: str, app: str) -> dict[str, str]:
    return {"k_vhost": vhost, "k_app": app}


def _v4_key(vhost: str, app: str, stream: str) -> dict[str, str]:
    return {"k_vhost": vhost, "k_app": app, "k_stream": stream}


@dataclass(frozen=True)
class Contents:
    """Every configuration row of a store (db copy)."""

    keys: list[AccessKey]
    domains: list[DomainRecord]
    relay_v3: list[RelayV3Config]
    relay_v4: list[RelayV4Config]  # in creation order
    url_auth: list[UrlAuthConfig] = field(default_factory=list)


class SqlRepository:
    """The queries. Subclasses provide `_read(tx)` / `_write(tx)` (one transaction each,
    a write committed durably before it returns) and may override `_announce`."""

    async def _read(self, tx: Tx[T]) -> T:
        raise NotImplementedError

    async def _write(self, tx: Tx[T]) -> T:
        raise NotImplementedError

    def _announce(self, conn: Connection, entity: Entity, op: Op, key: object) -> None:
        """Called inside a write's transaction for each change it makes."""

    # ---- access keys ----
    async def get_key(self, ak: str) -> AccessKey | None:
        return await self._read(lambda c: fetch_key(c, ak))

    async def list_keys(self) -> list[AccessKey]:
        stmt = select(access_keys).order_by(access_keys.c.created, access_keys.c.ak)
        return await self._read(lambda c: [key_row(r) for r in c.execute(stmt)])

    async def put_key(self, key: AccessKey) -> bool:
        def tx(conn: Connection) -> bool:
            existed = fetch_key(conn, key.ak) is not None
            values = {"ak": key.ak, "sk": key.sk, "created": key.created, "enabled": int(key.enabled)}
            conn.execute(_UPSERT_KEY[conn.dialect.name], values)
            self._announce(conn, "key", "updated" if existed else "added", key.ak)
            return not existed

        return await self._write(tx)

    async def delete_key(self, ak: str) -> bool:
        return await self._delete("key", ak, _DEL_KEY, {"k_ak": ak})

    # ---- domains ----
    async def list_domains(self) -> list[DomainRecord]:
        stmt = select(domains).order_by(domains.c.created, domains.c.domain)
        return await self._read(lambda c: [domain_row(r) for r in c.execute(stmt)])

    async def insert_domains(self, records: list[DomainRecord]) -> None:
        def tx(conn: Connection) -> None:
            for r in records:
                try:  # the first failure aborts the whole transaction: all or nothing
                    values = {
                        "domain": r.domain,
                        "type": r.type,
                        "vhost": r.vhost,
                        "region": r.region,
                        "status": r.status,
                        "created": r.created,
                    }
                    conn.execute(insert(domains), values)
                except IntegrityError as exc:
                    raise AlreadyExists(f"domain {r.domain} already exists") from exc
                self._announce(conn, "domain", "added", r.domain)

        await self._write(tx)

    async def update_domain(self, record: DomainRecord) -> bool:
        def tx(conn: Connection) -> bool:
            values = {
                "type": record.type,
                "vhost": record.vhost,
                "region": record.region,
                "status": record.status,
            }
            if conn.execute(_UPDATE_DOMAIN, {"k_domain": record.domain, **values}).rowcount == 0:
                return False
            self._announce(conn, "domain", "updated", record.domain)
            return True

        return await self._write(tx)

    async def change_domain(
        self, domain: str, *, vhost: str | None, status: int | None
    ) -> tuple[DomainRecord | None, DomainRecord | None]:
        """Set the given fields of a domain in one locked read-modify-write: (before,
        after); (None, None) when absent; after == before when nothing changed."""

        def tx(conn: Connection) -> tuple[DomainRecord | None, DomainRecord | None]:
            row = conn.execute(_LOCK_DOMAIN, {"k_domain": domain}).first()
            if row is None:
                return None, None
            current = domain_row(row)
            record = replace(
                current,
                vhost=current.vhost if vhost is None else vhost,
                status=current.status if status is None else status,
            )
            if record != current:
                values = {"k_domain": domain, "vhost": record.vhost, "status": record.status}
                conn.execute(_UPDATE_DOMAIN, values)
                self._announce(conn, "domain", "updated", domain)
            return current, record

        return await self._write(tx)

    async def delete_domain(self, domain: str) -> bool:
        return await self._delete("domain", domain, _DEL_DOMAIN, {"k_domain": domain})

    # ---- V3 ----
    async def get_relay_v3(self, vhost: str, app: str) -> RelayV3Config | None:
        return await self._read(lambda c: fetch_v3(c, vhost, app))

    async def list_relay_v3(self, vhost: str | None = None) -> list[RelayV3Config]:
        stmt = select(relay_v3)
        if vhost is None:
            stmt = stmt.order_by(relay_v3.c.vhost, relay_v3.c.app)
        else:
            stmt = stmt.where(relay_v3.c.vhost == vhost).order_by(relay_v3.c.app)
        return await self._read(lambda c: [v3_row(r) for r in c.execute(stmt)])

    async def put_relay_v3(self, config: RelayV3Config) -> tuple[RelayV3Config, bool]:
        """Insert or replace the groups (keeping `created`); the stored config and whether it was new."""

        def tx(conn: Connection) -> tuple[RelayV3Config, bool]:
            existed = fetch_v3(conn, config.vhost, config.app) is not None
            groups = groups_to_json(config.groups)
            values = {
                "vhost": config.vhost,
                "app": config.app,
                "groups_json": groups,
                "created": config.created,
                "updated": config.updated,
            }
            stored = v3_row(conn.execute(_UPSERT_V3[conn.dialect.name], values).one())
            self._announce(conn, "relay_v3", "updated" if existed else "added", stored.key)
            return stored, not existed

        return await self._write(tx)

    async def remove_relay_v3_group(
        self, vhost: str, app: str, group: str, updated: int
    ) -> tuple[Op | None, RelayV3Config | None]:
        """Remove one group in one locked read-modify-write: ("updated", stored) while
        groups remain, ("deleted", None) when it was the last, (None, None) when there
        was no such config or group."""

        def tx(conn: Connection) -> tuple[Op | None, RelayV3Config | None]:
            key = _v3_key(vhost, app)
            row = conn.execute(_LOCK_V3, key).first()
            current = v3_row(row) if row is not None else None
            if current is None or all(g.name != group for g in current.groups):
                return None, None
            remaining = tuple(g for g in current.groups if g.name != group)
            if not remaining:
                conn.execute(_DEL_V3, key)
                self._announce(conn, "relay_v3", "deleted", (vhost, app))
                return "deleted", None
            conn.execute(_UPDATE_V3, {**key, "groups_json": groups_to_json(remaining), "updated": updated})
            self._announce(conn, "relay_v3", "updated", (vhost, app))
            return "updated", fetch_v3(conn, vhost, app)

        return await self._write(tx)

    async def delete_relay_v3(self, vhost: str, app: str) -> bool:
        return await self._delete("relay_v3", (vhost, app), _DEL_V3, _v3_key(vhost, app))

    # ---- V4 ----
    async def get_relay_v4(self, vhost: str, app: str, stream: str) -> RelayV4Config | None:
        return await self._read(lambda c: fetch_v4(c, vhost, app, stream))

    async def list_relay_v4(
        self, vhost: str | None = None, *, offset: int = 0, limit: int | None = None
    ) -> tuple[list[RelayV4Config], int]:
        count = select(func.count()).select_from(relay_v4)
        page = select(relay_v4).order_by(relay_v4.c.id).offset(offset).limit(limit)
        if vhost is not None:
            count = count.where(relay_v4.c.vhost == vhost)
            page = page.where(relay_v4.c.vhost == vhost)

        def query(conn: Connection) -> tuple[list[RelayV4Config], int]:
            total = int(conn.execute(count).scalar_one())
            return [v4_row(r) for r in conn.execute(page)], total

        return await self._read(query)

    async def insert_relay_v4(self, config: RelayV4Config) -> None:
        def tx(conn: Connection) -> None:
            try:
                values = {
                    "task_id": config.task_id,
                    "vhost": config.vhost,
                    "app": config.app,
                    "stream": config.stream,
                    "domain": config.domain,
                    "src_addrs_json": json.dumps(list(config.src_addrs)),
                    "start_time": config.start_time,
                    "end_time": config.end_time,
                    "created": config.created,
                    "updated": config.updated,
                }
                conn.execute(insert(relay_v4), values)
            except IntegrityError as exc:
                raise AlreadyExists(f"fixed relay {'/'.join(config.key)} already exists") from exc
            self._announce(conn, "relay_v4", "added", config.key)

        await self._write(tx)

    async def update_relay_v4(self, config: RelayV4Config) -> RelayV4Config:
        """Replace addresses and schedule (task_id, domain and created stay); NotFound when absent.
        One UPDATE of every changed column: concurrent updates leave one whole write, never a mix."""

        def tx(conn: Connection) -> RelayV4Config:
            values = {
                "src_addrs_json": json.dumps(list(config.src_addrs)),
                "start_time": config.start_time,
                "end_time": config.end_time,
                "updated": config.updated,
            }
            if conn.execute(_UPDATE_V4, {**_v4_key(*config.key), **values}).rowcount == 0:
                raise NotFound(f"fixed relay {'/'.join(config.key)} does not exist")
            stored = fetch_v4(conn, *config.key)
            assert stored is not None  # updated just above, in this transaction (row locked)
            self._announce(conn, "relay_v4", "updated", config.key)
            return stored

        return await self._write(tx)

    async def delete_relay_v4(self, vhost: str, app: str, stream: str) -> bool:
        return await self._delete("relay_v4", (vhost, app, stream), _DEL_V4, _v4_key(vhost, app, stream))

    # ---- URL authentication ----
    async def list_url_auth(self, vhost: str | None = None) -> list[UrlAuthConfig]:
        stmt = select(url_auth).order_by(url_auth.c.vhost, url_auth.c.app, url_auth.c.scene)
        if vhost is not None:
            stmt = stmt.where(url_auth.c.vhost == vhost)
        return await self._read(lambda c: [url_auth_row(r) for r in c.execute(stmt)])

    async def put_url_auth(self, config: UrlAuthConfig) -> tuple[UrlAuthConfig, bool]:
        """Insert or replace everything but `created`; the stored config and whether it was new."""

        def tx(conn: Connection) -> tuple[UrlAuthConfig, bool]:
            existed = fetch_url_auth(conn, *config.key) is not None
            values = {
                "vhost": config.vhost,
                "app": config.app,
                "scene": config.scene,
                "enabled": int(config.enabled),
                "valid_duration": config.valid_duration,
                "keys_json": auth_keys_to_json(config.keys),
                "created": config.created,
                "updated": config.updated,
            }
            conn.execute(_UPSERT_URL_AUTH[conn.dialect.name], values)
            stored = fetch_url_auth(conn, *config.key)
            assert stored is not None  # written just above, in this transaction
            self._announce(conn, "url_auth", "updated" if existed else "added", stored.key)
            return stored, not existed

        return await self._write(tx)

    async def delete_url_auth(self, vhost: str, app: str, scene: str) -> bool:
        key = (vhost, app, scene)
        return await self._delete("url_auth", key, _DEL_URL_AUTH, _url_auth_key(*key))

    # ---- whole contents (db copy) ----
    async def export_all(self) -> Contents:
        def query(conn: Connection) -> Contents:
            return Contents(
                keys=[key_row(r) for r in conn.execute(select(access_keys).order_by(access_keys.c.ak))],
                domains=[domain_row(r) for r in conn.execute(select(domains).order_by(domains.c.domain))],
                relay_v3=[v3_row(r) for r in conn.execute(select(relay_v3).order_by(relay_v3.c.vhost))],
                relay_v4=[v4_row(r) for r in conn.execute(select(relay_v4).order_by(relay_v4.c.id))],
                url_auth=[url_auth_row(r) for r in conn.execute(select(url_auth))],
            )

        return await self._read(query)

    async def import_all(self, contents: Contents) -> None:
        """Insert every row in one transaction, each announced as added; AlreadyExists
        (nothing written) when any key, domain, relay or task id is already there."""

        def tx(conn: Connection) -> None:
            rows: list[tuple[Any, dict[str, Any], Entity, object]] = []
            for k in contents.keys:
                values = {"ak": k.ak, "sk": k.sk, "created": k.created, "enabled": int(k.enabled)}
                rows.append((access_keys, values, "key", k.ak))
            for d in contents.domains:
                values = {
                    "domain": d.domain,
                    "type": d.type,
                    "vhost": d.vhost,
                    "region": d.region,
                    "status": d.status,
                    "created": d.created,
                }
                rows.append((domains, values, "domain", d.domain))
            for c3 in contents.relay_v3:
                values = {
                    "vhost": c3.vhost,
                    "app": c3.app,
                    "groups_json": groups_to_json(c3.groups),
                    "created": c3.created,
                    "updated": c3.updated,
                }
                rows.append((relay_v3, values, "relay_v3", c3.key))
            for c4 in contents.relay_v4:
                values = {
                    "task_id": c4.task_id,
                    "vhost": c4.vhost,
                    "app": c4.app,
                    "stream": c4.stream,
                    "domain": c4.domain,
                    "src_addrs_json": json.dumps(list(c4.src_addrs)),
                    "start_time": c4.start_time,
                    "end_time": c4.end_time,
                    "created": c4.created,
                    "updated": c4.updated,
                }
                rows.append((relay_v4, values, "relay_v4", c4.key))
            for ua in contents.url_auth:
                values = {
                    "vhost": ua.vhost,
                    "app": ua.app,
                    "scene": ua.scene,
                    "enabled": int(ua.enabled),
                    "valid_duration": ua.valid_duration,
                    "keys_json": auth_keys_to_json(ua.keys),
                    "created": ua.created,
                    "updated": ua.updated,
                }
                rows.append((url_auth, values, "url_auth", ua.key))
            for table, values, entity, key in rows:
                try:
                    conn.execute(insert(table).values(**values))
                except IntegrityError as exc:
                    raise AlreadyExists(f"{entity} {key!r} already exists in the destination") from exc
                self._announce(conn, entity, "added", key)

        await self._write(tx)

    async def _delete(self, entity: Entity, key: object, stmt: Any, params: dict[str, str]) -> bool:
        def tx(conn: Connection) -> bool:
            if conn.execute(stmt, params).rowcount == 0:
                return False
            self._announce(conn, entity, "deleted", key)
            return True

        return await self._write(tx)


def fetch_key(conn: Connection, ak: str) -> AccessKey | None:
    row = conn.execute(_GET_KEY, {"k_ak": ak}).first()
    return key_row(row) if row is not None else None


def fetch_domain(conn: Connection, domain: str) -> DomainRecord | None:
    row = conn.execute(_GET_DOMAIN, {"k_domain": domain}).first()
    return domain_row(row) if row is not None else None


def fetch_v3(conn: Connection, vhost: str, app: str) -> RelayV3Config | None:
    row = conn.execute(_GET_V3, _v3_key(vhost, app)).first()
    return v3_row(row) if row is not None else None


def fetch_v4(conn: Connection, vhost: str, app: str, stream: str) -> RelayV4Config | None:
    row = conn.execute(_GET_V4, _v4_key(vhost, app, stream)).first()
    return v4_row(row) if row is not None else None


def fetch_entity(conn: Connection, entity: Entity, key: object) -> object | None:
    """The record of a ChangeEvent's (entity, key); None when it does not exist."""
    if entity == "domain":
        assert isinstance(key, str)
        return fetch_domain(conn, key)
    if entity == "key":
        assert isinstance(key, str)
        return fetch_key(conn, key)
    assert isinstance(key, tuple)
    if entity == "url_auth":
        return fetch_url_auth(conn, key[0], key[1], key[2])
    if entity == "relay_v3":
        return fetch_v3(conn, key[0], key[1])
    return fetch_v4(conn, key[0], key[1], key[2])


def fetch_url_auth(conn: Connection, vhost: str, app: str, scene: str) -> UrlAuthConfig | None:
    row = conn.execute(_GET_URL_AUTH, _url_auth_key(vhost, app, scene)).first()
    return url_auth_row(row) if row is not None else None
