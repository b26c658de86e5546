"""Membership: this node's row in `nodes`, its heartbeat, and every node's row read back.

At start the node writes its row (id, addresses as peers reach them, started_at); every
`cluster.heartbeat_s` it writes heartbeat_at (the DATABASE clock, so nodes with skewed
clocks agree on who is alive) with the NodeSnapshot of its SnapshotSource, then reads
every row back. `nodes()` answers from that last read (no query per call): a node is
`alive` when its heartbeat is within `cluster.node_timeout_s` of the database's clock at
the read. A clean shutdown marks the row dead at once (heartbeat moved past the timeout)
so the other nodes do not wait the timeout out; rows silent for `cluster.prune_after_s`
are deleted by whichever node heartbeats.

The database being unreachable never stops the node: the round is logged once per
outage (and counted), the last read is kept (its rows age: `alive` is recomputed against
the database clock estimated from the last read plus the local monotonic time since),
and the next round tries again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..config import ClusterSettings, ConfigError
from ..relay.loops import new_node_id, valid_node_id
from ..schemas.status import RelayStatusRow
from ..store.schema import nodes
from .db import DB_NOW_MS, ClusterDb, ClusterDbUnavailable
from .metrics import ClusterMetrics
from .rounds import Rounds
from .types import HeldStream, NodeRecord, NodeSnapshot, SnapshotSource

log = logging.getLogger("liverelay.cluster.membership")

NODE_ID_FILE = "node_id"


@dataclass(frozen=True, slots=True)
class NodeAddress:
    """How the other nodes and operators reach this node."""

    node_id: str
    api_url: str  # http(s)://host:port
    rtmp_url: str  # rtmp://host:port
    http_url: str  # http://host:port


def load_node_id(settings: ClusterSettings, data_dir: Path) -> str:
    """`cluster.node_id`, else the id kept in data_dir/node_id (made and written on first use):
    a restarted node keeps its id, so it finds its own leases and row again."""
    if settings.node_id:
        node_id = settings.node_id
        where = "cluster.node_id"
    else:
        path = data_dir / NODE_ID_FILE
        where = str(path)
        try:
            node_id = path.read_text().strip()
        except FileNotFoundError:
            node_id = new_node_id()
            path.write_text(node_id + "\n")
    if not valid_node_id(node_id):
        raise ConfigError(f"{where}: node id {node_id[:64]!r} must be 1-32 letters, digits, '_' or '-'")
    return node_id


class EmptySnapshot:
    """A SnapshotSource with nothing to say (until the node passes its own)."""

    def snapshot(self) -> NodeSnapshot:
        return NodeSnapshot()


def encode_snapshot(snapshot: NodeSnapshot) -> tuple[str, str]:
    """(streams_json, status_json) of a `nodes` row."""
    streams = json.dumps([dataclasses.asdict(s) for s in snapshot.streams], separators=(",", ":"))
    status = json.dumps([row.wire() for row in snapshot.status], separators=(",", ":"))
    return streams, status


def decode_streams(text: str) -> list[HeldStream]:
    out: list[HeldStream] = []
    for item in json.loads(text or "[]"):
        out.append(
            HeldStream(
                vhost=str(item["vhost"]),
                app=str(item["app"]),
                stream=str(item["stream"]),
                source=item["source"],
                viewers=int(item.get("viewers", 0)),
            )
        )
    return out


def decode_status(text: str) -> list[RelayStatusRow]:
    return [RelayStatusRow.model_validate(item) for item in json.loads(text or "[]")]


def decode_stats(text: str) -> dict[str, int]:
    return {str(k): int(v) for k, v in json.loads(text or "{}").items()}


class Membership:
    """This node in `nodes`; implements NodeDirectory (cluster/types.py)."""

    def __init__(
        self,
        db: ClusterDb,
        node_id: str,
        settings: ClusterSettings,
        *,
        snapshots: SnapshotSource | None = None,
        stats: Callable[[], dict[str, int]] | None = None,
        metrics: ClusterMetrics | None = None,
    ) -> None:
        self.db = db
        self._node_id = node_id
        # How the others reach this node: known once the listeners are bound (start()).
        self.me = NodeAddress(node_id, "", "", "")
        self.settings = settings
        self.snapshots: SnapshotSource = snapshots or EmptySnapshot()
        # Extra counters for the row's stats_json (the lease manager's owned count ...).
        self.stats = stats
        self.metrics = metrics
        self.draining = False
        self.connected = False  # the last round reached the database
        self._records: list[NodeRecord] = []
        self._started_at = 0
        # The database clock at the last successful read and the local monotonic time then.
        self._db_ms = 0
        self._mono = time.monotonic()
        self._rounds = Rounds("liverelay-membership", self._heartbeat, lambda: settings.heartbeat_s)
        self._outage_since: float | None = None
        self._id_clash_logged = False
        self._closed = False

    # ---- NodeDirectory ----
    @property
    def node_id(self) -> str:
        return self._node_id

    def nodes(self) -> list[NodeRecord]:
        """Every known node as of the last round, this one included; `alive` judged now."""
        now = self.db_now_ms()
        timeout_ms = int(self.settings.node_timeout_s * 1000)
        return [
            dataclasses.replace(
                r,
                alive=(not self._closed) if r.node_id == self.node_id else now - r.heartbeat_at <= timeout_ms,
            )
            for r in self._records
        ]

    def db_now_ms(self) -> int:
        """The database clock now, estimated from the last read (local monotonic time since)."""
        return self._db_ms + int((time.monotonic() - self._mono) * 1000)

    # ---- lifecycle ----
    async def start(self, me: NodeAddress) -> None:
        """Write this node's row, read every row, and heartbeat from then on. A database
        that does not answer now (the store was opened a moment ago, so this is a blip or
        a loaded machine) does not stop the node: the heartbeat rounds register it."""
        self.me = me
        try:
            await self.db.run(self._register)
            await self.db.run(self._round)
        except ClusterDbUnavailable as exc:
            self._failed(exc)
        else:
            self.connected = True
        self._rounds.start(wait_first=True)
        log.info(
            "cluster: node %s registered (api %s, rtmp %s); %d node(s) known, %d alive",
            self.node_id,
            self.me.api_url,
            self.me.rtmp_url,
            len(self._records),
            sum(1 for r in self.nodes() if r.alive),
        )

    def set_draining(self, draining: bool) -> None:
        """Mark the row draining (or not) now, without waiting for the next heartbeat."""
        self.draining = draining
        self._rounds.wake()

    async def close(self) -> None:
        """Stop heartbeating and mark this node gone (best effort: the database may be down)."""
        await self._rounds.close()
        self._closed = True
        try:
            await self.db.run(self._mark_gone)
        except ClusterDbUnavailable as exc:
            log.warning("cluster: could not mark node %s gone (database unreachable: %s)", self.node_id, exc)

    # ---- the rounds ----
    async def _heartbeat(self) -> None:
        try:
            if not self._started_at:  # not registered yet (the database failed at start)
                await self.db.run(self._register)
            await self.db.run(self._round)
        except ClusterDbUnavailable as exc:
            self._failed(exc)
        except Exception:
            # A bug here must not end the heartbeat for good (the node would look dead).
            log.exception("cluster: heartbeat round failed")
            self._failed(None)
        else:
            if self._outage_since is not None:
                log.warning(
                    "cluster: heartbeat reaches the database again (after %.1fs)",
                    time.monotonic() - self._outage_since,
                )
                self._outage_since = None
            self.connected = True

    def _failed(self, exc: ClusterDbUnavailable | None) -> None:
        self.connected = False
        if self.metrics is not None:
            self.metrics.heartbeat_failures.inc()
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            if exc is not None:
                log.warning(
                    "cluster: heartbeat cannot reach the database (%s); retrying every %.1fs",
                    exc,
                    self.settings.heartbeat_s,
                )

    def _row_values(self) -> dict[str, Any]:
        snapshot = self.snapshots.snapshot()
        streams_json, status_json = encode_snapshot(snapshot)
        stats = {"viewers": snapshot.viewers, "streams": len(snapshot.streams)}
        if self.stats is not None:
            stats.update(self.stats())
        return {
            "api_url": self.me.api_url,
            "rtmp_url": self.me.rtmp_url,
            "http_url": self.me.http_url,
            "heartbeat_at": DB_NOW_MS,
            "draining": int(self.draining),
            "streams_json": streams_json,
            "status_json": status_json,
            "stats_json": json.dumps(stats, separators=(",", ":")),
        }

    async def _register(self, conn: AsyncConnection) -> None:
        values = self._row_values()
        stmt = insert(nodes).values(node_id=self.node_id, started_at=DB_NOW_MS, **values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[nodes.c.node_id], set_={"started_at": DB_NOW_MS, **values}
        )
        await conn.execute(stmt.returning(nodes.c.started_at))
        result = await conn.execute(select(nodes.c.started_at).where(nodes.c.node_id == self.node_id))
        self._started_at = int(result.scalar_one())

    async def _round(self, conn: AsyncConnection) -> None:
        values = self._row_values()
        stmt = insert(nodes).values(node_id=self.node_id, started_at=self._started_at or DB_NOW_MS, **values)
        # A row pruned meanwhile (silent past prune_after_s, e.g. a long partition) is written anew.
        await conn.execute(stmt.on_conflict_do_update(index_elements=[nodes.c.node_id], set_=values))
        now = int((await conn.execute(select(DB_NOW_MS))).scalar_one())
        prune_ms = int(self.settings.prune_after_s * 1000)
        await conn.execute(
            delete(nodes).where(nodes.c.heartbeat_at < now - prune_ms, nodes.c.node_id != self.node_id)
        )
        rows = (await conn.execute(select(nodes).order_by(nodes.c.node_id))).all()
        self._db_ms, self._mono = now, time.monotonic()
        timeout_ms = int(self.settings.node_timeout_s * 1000)
        records: list[NodeRecord] = []
        for row in rows:
            try:
                records.append(
                    NodeRecord(
                        node_id=row.node_id,
                        api_url=row.api_url,
                        rtmp_url=row.rtmp_url,
                        http_url=row.http_url,
                        started_at=int(row.started_at),
                        heartbeat_at=int(row.heartbeat_at),
                        draining=bool(row.draining),
                        streams=decode_streams(row.streams_json),
                        status=decode_status(row.status_json),
                        stats=decode_stats(row.stats_json),
                        alive=now - int(row.heartbeat_at) <= timeout_ms,
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                # One node's malformed row (another version?) must not hide the others.
                log.warning("cluster: unreadable row of node %.64r skipped: %s", row.node_id, exc)
            if (
                row.node_id == self.node_id
                and int(row.started_at) != self._started_at
                and not self._id_clash_logged
            ):
                self._id_clash_logged = True
                log.error(
                    "cluster: another process heartbeats as node %s (started_at %s, ours %s): "
                    "give every node its own cluster.node_id / data_dir",
                    self.node_id,
                    row.started_at,
                    self._started_at,
                )
        self._records = records
        if self.metrics is not None:
            self.metrics.nodes_alive.set(sum(1 for r in records if r.alive))

    async def _mark_gone(self, conn: AsyncConnection) -> None:
        timeout_ms = int(self.settings.node_timeout_s * 1000)
        gone = DB_NOW_MS - (timeout_ms + 1)
        await conn.execute(update(nodes).where(nodes.c.node_id == self.node_id).values(heartbeat_at=gone))
