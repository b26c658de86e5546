"""Every node's view of the other nodes' writes: LISTEN, apply in order, resync on a gap.

One asyncpg connection LISTENs on `liverelay_changes` (store/postgres.py sends one
NOTIFY per change, in the writing transaction). Notifications arrive in commit order
with consecutive change numbers. For each one made by another node the feed reads the
row as it is now and publishes a ChangeEvent on the node's ChangeBus, so the relay
managers and the DomainTable apply it exactly as a local write. The feed keeps the
node's picture of the configuration (what the bus has announced) to resync against:

- a number that skips ahead (a missed notification), a notification too large to
  carry its key, or a reconnect (PostgreSQL restarted, network cut) -> read every
  table in one REPEATABLE READ snapshot with the change number it reflects, and publish
  what differs from the picture (added / updated / deleted);
- every `keepalive_s` with no notification, the listener reads the change number: a
  dead connection is found within that bound, and a number past the last one seen in
  two checks in a row means a notification was lost -> resync.

A lost connection is retried with backoff (liverelay.backoff) until close(); the data
plane keeps running on the picture it has meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass

import asyncpg
from sqlalchemy import select
from sqlalchemy.engine import Connection

from ..backoff import backoff_delay
from ..tasks import cancel_and_wait
from .bus import ChangeBus, ChangeEvent, Entity
from .models import StoreError
from .postgres import CHANNEL, PostgresRepository, asyncpg_dsn, is_unavailable
from .schema import access_keys, changes, domains, relay_v3, relay_v4, url_auth
from .sql import domain_row, key_row, url_auth_row, v3_row, v4_row

log = logging.getLogger("liverelay.store.feed")

Key = tuple[Entity, object]
Picture = dict[Key, object]

RECONNECT_BASE_S = 0.2
RECONNECT_CAP_S = 5.0
_LOST = object()  # queued by the termination listener: the connection is gone


def _event_key(entity: Entity, key: object) -> Key:
    """Relay keys travel as JSON lists; the bus uses tuples."""
    return (entity, tuple(key) if isinstance(key, list) else key)


def _read_all(conn: Connection) -> tuple[int, Picture]:
    seq = int(conn.execute(select(changes.c.seq).where(changes.c.id == 1)).scalar_one())
    picture: Picture = {}
    for row in conn.execute(select(domains)):
        record = domain_row(row)
        picture[("domain", record.domain)] = record
    for row in conn.execute(select(relay_v3)):
        v3 = v3_row(row)
        picture[("relay_v3", v3.key)] = v3
    for row in conn.execute(select(relay_v4)):
        v4 = v4_row(row)
        picture[("relay_v4", v4.key)] = v4
    for row in conn.execute(select(access_keys)):
        key = key_row(row)
        picture[("key", key.ak)] = key
    for row in conn.execute(select(url_auth)):
        auth = url_auth_row(row)
        picture[("url_auth", auth.key)] = auth
    return seq, picture


@dataclass
class FeedCounters:
    notifications: int = 0  # other nodes' changes applied one by one
    resyncs: int = 0  # full resyncs (gaps, reconnects, oversized notifications)
    reconnects: int = 0  # listener connections re-established after a loss


class ChangeFeed:
    def __init__(self, repo: PostgresRepository, bus: ChangeBus, *, keepalive_s: float = 2.0) -> None:
        self.repo = repo
        self.bus = bus
        self.keepalive_s = keepalive_s
        self.counters = FeedCounters()
        self.connected = False  # listening and in step with the database
        self.last_seq = 0
        self.picture: Picture = {}
        # Change number behind what the bus last said about a key, from a remote change or
        # a resync; and the number of this node's own latest write per key.
        self._applied: dict[Key, int] = {}
        self._local: dict[Key, int] = {}
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._suspect: int | None = None
        repo.on_committed = self._committed
        self._unsubscribe = bus.subscribe(self._on_bus)

    # ---- lifecycle ----
    async def start(self) -> None:
        """Connect, LISTEN, take the first picture (nothing published), then follow."""
        await self._connect()
        await self._resync(publish=False)
        self.connected = True
        self._task = asyncio.create_task(self._follow(), name="liverelay-change-feed")

    async def close(self) -> None:
        self._unsubscribe()
        await cancel_and_wait(self._task, "the change feed follower", logger=log)
        self._task = None
        await self._disconnect()

    # ---- the gate for local events (Store._publish) ----
    def _committed(self, seq: int, entity: Entity, key: object) -> None:
        self._local[(entity, key)] = seq

    def admit_local(self, event: ChangeEvent) -> bool:
        """False when the bus already carries a newer state of this key (another node's
        later write, applied while this node's own write was returning): publishing the
        older local value now would move the node backwards."""
        k: Key = (event.entity, event.key)
        return self._applied.get(k, 0) <= self._local.get(k, 0)

    def _on_bus(self, event: ChangeEvent) -> None:
        k: Key = (event.entity, event.key)
        if event.op == "deleted":
            self.picture.pop(k, None)
        else:
            self.picture[k] = event.value

    # ---- connection ----
    async def _connect(self) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(self.repo.url), timeout=self.repo.timeout_s)
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._on_terminated)
        self._conn = conn
        self._suspect = None

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        self.connected = False
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), self.repo.timeout_s)
        # Whatever was queued belongs to the old connection: the resync after the next
        # connect covers it.
        while not self._queue.empty():
            self._queue.get_nowait()

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        self._queue.put_nowait(payload)

    def _on_terminated(self, conn: object) -> None:
        if conn is self._conn:  # not a late word from a connection already replaced
            self._queue.put_nowait(_LOST)

    # ---- following ----
    async def _follow(self) -> None:
        attempt = 0
        while True:
            try:
                if self._conn is None:
                    await self._connect()
                    self.counters.reconnects += 1
                    await self._resync(publish=True)
                    self.connected = True  # listening and in step again
                    log.warning("database connection back: resynced at change %d", self.last_seq)
                    attempt = 0
                await self._pump()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not (is_unavailable(exc) or isinstance(exc, asyncpg.PostgresError | StoreError)):
                    log.exception("change feed failed; reconnecting")
                elif self._conn is not None or attempt == 0:
                    log.warning("database connection lost (%s); reconnecting with backoff", exc)
                await self._disconnect()
                await asyncio.sleep(
                    backoff_delay(attempt, base=RECONNECT_BASE_S, cap=RECONNECT_CAP_S, jitter=0.5)
                )
                attempt += 1

    async def _pump(self) -> None:
        """Handle notifications until the connection is lost (raises)."""
        while True:
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow the
                # cancellation of close() when an item arrives at the same moment.
                async with asyncio.timeout(self.keepalive_s):
                    item = await self._queue.get()
            except TimeoutError:
                await self._keepalive()
                continue
            if item is _LOST:
                raise ConnectionError("listener connection terminated")
            assert isinstance(item, str)
            await self._handle(item)

    async def _keepalive(self) -> None:
        conn = self._conn
        if conn is None:
            raise ConnectionError("no listener connection")
        seq = int(await conn.fetchval("SELECT seq FROM changes WHERE id = 1", timeout=self.repo.timeout_s))
        if seq <= self.last_seq:
            self._suspect = None
        elif self._suspect is not None and self._suspect <= seq:
            log.warning("change %d committed but never notified (last seen %d): resync", seq, self.last_seq)
            await self._resync(publish=True)
        else:
            self._suspect = seq  # may still be on its way: look again next time

    async def _handle(self, payload: str) -> None:
        try:
            note = json.loads(payload)
            seq = int(note["seq"])
        except (ValueError, KeyError, TypeError):
            log.warning("malformed change notification %.200r: resync", payload)
            await self._resync(publish=True)
            return
        if seq <= self.last_seq:
            return  # already covered by a resync
        if seq != self.last_seq + 1:
            log.warning("change %d after %d: %d missed, resync", seq, self.last_seq, seq - self.last_seq - 1)
            await self._resync(publish=True)
            return
        if note.get("origin") == self.repo.origin:
            self.last_seq = seq  # this node's own write: the Store published it already
            return
        entity = note.get("entity")
        if entity not in ("domain", "relay_v3", "relay_v4", "key"):
            await self._resync(publish=True)
            return
        k = _event_key(entity, note.get("key"))
        value = await self.repo.fetch_current(k[0], k[1])
        self.last_seq = seq
        self.counters.notifications += 1
        self._apply(k, value, seq)

    def _apply(self, k: Key, value: object | None, seq: int) -> None:
        """Publish the key's state as read for change `seq` if it differs from what the bus
        last said; unless this node committed a later write of the key meanwhile (the
        read may predate it, and the Store has published that write already)."""
        if self._local.get(k, 0) > seq:
            return
        before = self.picture.get(k)
        self._applied[k] = seq
        if value == before:
            return
        op = "deleted" if value is None else ("added" if before is None else "updated")
        self.bus.publish(ChangeEvent(k[0], op, k[1], value))  # type: ignore[arg-type]

    async def _resync(self, *, publish: bool) -> None:
        async with self.repo.engine.connect() as conn:
            snap = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with snap.begin():
                seq, picture = await snap.run_sync(_read_all)
        self.counters.resyncs += publish
        self._suspect = None
        if not publish:
            self.picture = picture
            self.last_seq = seq
            return
        for k in [k for k in self.picture if k not in picture]:
            self._apply(k, None, seq)
        for k, value in picture.items():
            self._apply(k, value, seq)
        self.last_seq = seq
