"""Store: the repository plus change notifications and the in-memory domain table.

Callers use these methods, never the repository directly, so that every committed
write is announced on the bus exactly once, after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import string
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Settings
from .bus import ChangeBus, ChangeEvent, Entity, Op
from .domains import DomainTable, normalise_host
from .models import (
    AccessKey,
    DomainRecord,
    NotFound,
    RelayGroup,
    RelayV3Config,
    RelayV4Config,
    UrlAuthConfig,
)
from .postgres import PostgresRepository, is_postgres_url
from .repository import Repository
from .sqlite import SqliteRepository

if TYPE_CHECKING:  # asyncpg and the change feed load only for a PostgreSQL store
    from .feed import ChangeFeed

_KEY_ALPHABET = string.ascii_letters + string.digits
# An access key read from the database is reused for this long (every signed request looks
# its key up). This node's own key changes drop it at once (bus); a change another process
# makes to the SQLite file (`liverelay keys delete` while serving) is seen within this time.
KEY_CACHE_S = 1.0
KEY_CACHE_MAX = 1024  # keys held at most (past it the cache starts over)


def _now() -> int:
    return int(time.time())


def new_task_id() -> str:
    """Decimal digits: milliseconds since the epoch + 6 random digits (unique per node in practice)."""
    return f"{time.time_ns() // 1_000_000}{secrets.randbelow(10**6):06d}"


def generate_key_pair() -> tuple[str, str]:
    ak = "AKLT" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(40))
    sk = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(48))
    return ak, sk


class Store:
    def __init__(
        self,
        repo: Repository,
        domains: Iterable[DomainRecord] = (),
        *,
        bus: ChangeBus | None = None,
        feed: ChangeFeed | None = None,
    ) -> None:
        self.repo = repo
        self.bus = bus or ChangeBus()
        self.domain_table = DomainTable(domains)
        self.bus.subscribe(self.domain_table.on_change)
        # PostgreSQL only: other nodes' changes arrive on self.bus through the feed.
        self.feed = feed
        # Read-modify-write sequences (V3 group removal, ensure_key) run one at a time.
        self._lock = asyncio.Lock()
        # SQLite runs every transaction on one thread, in order: a single-transaction
        # read-modify-write (put_relay_v3, put_url_auth) needs no lock there, and
        # concurrent writes can then share one commit (store/sqlite.py).
        self._serial = isinstance(repo, SqliteRepository)
        # ak -> (key, monotonic expiry); _key_epoch counts key changes, so a lookup that
        # raced with a change does not cache what it read before it.
        self._keys: dict[str, tuple[AccessKey, float]] = {}
        self._key_epoch = 0
        self.bus.subscribe(self._on_key_change)

    async def close(self) -> None:
        try:
            if self.feed is not None:
                await self.feed.close()
        finally:
            await self.repo.close()

    def _publish(self, entity: Entity, op: Op, key: object, value: object) -> None:
        event = ChangeEvent(entity, op, key, value)
        if self.feed is None or self.feed.admit_local(event):
            self.bus.publish(event)

    def _on_key_change(self, event: ChangeEvent) -> None:
        if event.entity == "key":
            self._key_epoch += 1
            self._keys.pop(str(event.key), None)

    def _rmw_lock(self) -> asyncio.Lock | contextlib.nullcontext[None]:
        return contextlib.nullcontext() if self._serial else self._lock

    # ---- access keys ----
    async def get_key(self, ak: str) -> AccessKey | None:
        """The key (from memory while fresh: no database round trip per signed request)."""
        now = time.monotonic()
        cached = self._keys.get(ak)
        if cached is not None and cached[1] > now:
            return cached[0]
        epoch = self._key_epoch
        key = await self.repo.get_key(ak)
        if key is None:
            self._keys.pop(ak, None)  # unknown keys are not remembered (the caller throttles them)
        elif epoch == self._key_epoch:
            if len(self._keys) >= KEY_CACHE_MAX:
                self._keys.clear()
            self._keys[ak] = (key, now + KEY_CACHE_S)
        return key

    async def list_keys(self) -> list[AccessKey]:
        return await self.repo.list_keys()

    async def create_key(self) -> AccessKey:
        ak, sk = generate_key_pair()
        key = AccessKey(ak, sk, _now(), True)
        await self.repo.put_key(key)
        self._publish("key", "added", ak, key)
        return key

    async def ensure_key(self, ak: str, sk: str) -> AccessKey:
        """Make (ak, sk) a valid enabled key; a no-op when it already is."""
        async with self._lock:
            existing = await self.repo.get_key(ak)
            if existing is not None and existing.sk == sk and existing.enabled:
                return existing
            key = AccessKey(ak, sk, existing.created if existing else _now(), True)
            new = await self.repo.put_key(key)
            self._publish("key", "added" if new else "updated", ak, key)
            return key

    async def delete_key(self, ak: str) -> bool:
        deleted = await self.repo.delete_key(ak)
        if deleted:
            self._publish("key", "deleted", ak, None)
        return deleted

    # ---- domains ----
    async def list_domains(self) -> list[DomainRecord]:
        """In (created, domain) order. On SQLite the domain table is the database's picture
        (every domain write of this one node goes through here and updates it after its
        commit), so no query; on PostgreSQL other nodes' writes reach the table only
        through the change feed, so the database is asked."""
        if self._serial:
            return sorted(self.domain_table.records(), key=lambda r: (r.created, r.domain))
        return await self.repo.list_domains()

    async def add_domains(self, vhost: str, domains: Iterable[tuple[str, str, str]]) -> list[DomainRecord]:
        """Add (domain, type, region) entries to `vhost`, all or nothing (AlreadyExists)."""
        now = _now()
        records = [DomainRecord(normalise_host(d), t, vhost, r, 0, now) for d, t, r in domains]
        await self.repo.insert_domains(records)
        for r in records:
            self._publish("domain", "added", r.domain, r)
        return records

    async def update_domain(
        self, domain: str, *, vhost: str | None = None, status: int | None = None
    ) -> DomainRecord:
        """Move a domain to another vhost and/or change its status; NotFound when absent."""
        name = normalise_host(domain)
        current, record = await self.repo.change_domain(name, vhost=vhost, status=status)
        if current is None or record is None:
            raise NotFound(f"domain {name} does not exist")
        if record != current:
            self._publish("domain", "updated", name, record)
        return record

    async def delete_domain(self, domain: str) -> bool:
        name = normalise_host(domain)
        deleted = await self.repo.delete_domain(name)
        if deleted:
            self._publish("domain", "deleted", name, None)
        return deleted

    # ---- play-triggered relays (V3) ----
    async def get_relay_v3(self, vhost: str, app: str) -> RelayV3Config | None:
        return await self.repo.get_relay_v3(vhost, app)

    async def list_relay_v3(self, vhost: str | None = None) -> list[RelayV3Config]:
        return await self.repo.list_relay_v3(vhost)

    async def put_relay_v3(self, vhost: str, app: str, groups: Iterable[RelayGroup]) -> RelayV3Config:
        """Replace every group of (vhost, app)."""
        now = _now()
        async with self._rmw_lock():
            stored, new = await self.repo.put_relay_v3(RelayV3Config(vhost, app, tuple(groups), now, now))
        self._publish("relay_v3", "added" if new else "updated", stored.key, stored)
        return stored

    async def delete_relay_v3(self, vhost: str, app: str, group: str | None = None) -> bool:
        """Delete the config, or only its group `group` (the config goes when no group is left)."""
        if group:
            op, stored = await self.repo.remove_relay_v3_group(vhost, app, group, _now())
            if op is not None:
                self._publish("relay_v3", op, (vhost, app), stored)
            return op is not None
        deleted = await self.repo.delete_relay_v3(vhost, app)
        if deleted:
            self._publish("relay_v3", "deleted", (vhost, app), None)
        return deleted

    # ---- fixed relays (V4) ----
    async def get_relay_v4(self, vhost: str, app: str, stream: str) -> RelayV4Config | None:
        return await self.repo.get_relay_v4(vhost, app, stream)

    async def list_relay_v4(
        self, vhost: str | None = None, *, offset: int = 0, limit: int | None = None
    ) -> tuple[list[RelayV4Config], int]:
        return await self.repo.list_relay_v4(vhost, offset=offset, limit=limit)

    async def create_relay_v4(
        self,
        vhost: str,
        app: str,
        stream: str,
        *,
        domain: str,
        src_addrs: Iterable[str],
        start_time: int | None,
        end_time: int | None,
    ) -> RelayV4Config:
        """AlreadyExists when (vhost, app, stream) has a fixed relay."""
        now = _now()
        config = RelayV4Config(
            vhost, app, stream, domain, tuple(src_addrs), start_time, end_time, new_task_id(), now, now
        )
        await self.repo.insert_relay_v4(config)
        self._publish("relay_v4", "added", config.key, config)
        return config

    async def update_relay_v4(
        self,
        vhost: str,
        app: str,
        stream: str,
        *,
        src_addrs: Iterable[str],
        start_time: int | None,
        end_time: int | None,
    ) -> RelayV4Config:
        """NotFound when (vhost, app, stream) has no fixed relay."""
        now = _now()
        probe = RelayV4Config(vhost, app, stream, "", tuple(src_addrs), start_time, end_time, "", now, now)
        stored = await self.repo.update_relay_v4(probe)
        self._publish("relay_v4", "updated", stored.key, stored)
        return stored

    async def delete_relay_v4(self, vhost: str, app: str, stream: str) -> bool:
        deleted = await self.repo.delete_relay_v4(vhost, app, stream)
        if deleted:
            self._publish("relay_v4", "deleted", (vhost, app, stream), None)
        return deleted

    # ---- URL authentication ----
    async def list_url_auth(self, vhost: str | None = None) -> list[UrlAuthConfig]:
        return await self.repo.list_url_auth(vhost)

    async def put_url_auth(self, config: UrlAuthConfig) -> UrlAuthConfig:
        """Replace the config of (vhost, app, scene) whole (UpdateAuthKey is a full update)."""
        now = _now()
        async with self._rmw_lock():
            stored, new = await self.repo.put_url_auth(replace(config, created=now, updated=now))
        self._publish("url_auth", "added" if new else "updated", stored.key, stored)
        return stored

    async def delete_url_auth(self, vhost: str, app: str, scene: str) -> bool:
        deleted = await self.repo.delete_url_auth(vhost, app, scene)
        if deleted:
            self._publish("url_auth", "deleted", (vhost, app, scene), None)
        return deleted


async def open_store(settings: Settings) -> Store:
    """Open (creating/migrating) the store named by `settings.database_url`: empty or
    sqlite:///PATH = SQLite (the data dir's liverelay.db when empty); postgresql://... =
    PostgreSQL, with the change feed of the other nodes' writes running."""
    url = settings.database_url
    if url and is_postgres_url(url):
        return await _open_postgres(settings)
    if url and not url.startswith("sqlite:///"):
        # NotImplementedError: the CLI reports it as a configuration error (exit 2).
        raise NotImplementedError(f"database_url {url!r}: expected empty, sqlite:///PATH or postgresql://...")
    path = Path(url.removeprefix("sqlite:///")) if url else settings.sqlite_path
    repo = SqliteRepository(path)
    try:
        await repo.open()
        domains = await repo.list_domains()
    except BaseException:
        await repo.close()
        raise
    return Store(repo, domains)


async def _open_postgres(settings: Settings) -> Store:
    from .feed import ChangeFeed

    repo = PostgresRepository(
        settings.database_url, pool_size=settings.database_pool_size, timeout_s=settings.database_timeout_s
    )
    bus = ChangeBus()
    feed = ChangeFeed(repo, bus, keepalive_s=settings.database_keepalive_s)
    try:
        await repo.open()
        await feed.start()
    except BaseException:
        await feed.close()
        await repo.close()
        raise
    domains = [
        v for (entity, _), v in feed.picture.items() if entity == "domain" and isinstance(v, DomainRecord)
    ]
    return Store(repo, domains, bus=bus, feed=feed)


__all__ = ["NotFound", "Store", "generate_key_pair", "new_task_id", "open_store"]
