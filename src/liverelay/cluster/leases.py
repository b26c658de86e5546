"""Fixed-relay leases: every open V4 task is pulled by exactly one live node.

A `leases` row (store/schema.py) names the task's owner, the expiry on the DATABASE clock
and an epoch (a fencing number, +1 on every change of owner). Each node runs rounds:

1. renew: `UPDATE leases SET expires_at = now + ttl WHERE owner = me AND task_id IN (open
   tasks)` and read every row back, in one short transaction, every `lease_ttl_s / 3`. A
   task this node ran and no longer owns (another node took it) stops at once.
2. decide (`plan`, pure): which free tasks to claim, which leases to release (window
   closed, task deleted), which hand-offs to offer, accept or withdraw.
3. act, when step 2 found something to do: under a transaction-scoped advisory lock, so
   the nodes' decisions are serialised and each one sees the others' claims, the rows are
   read again, the plan made again and its conditional statements run:
   claim `... WHERE owner IS NULL OR expires_at < now OR owner = me`, accept a hand-off
   `... WHERE handoff_to = me`, offer `... SET handoff_to = X WHERE owner = me`.

Spread: free tasks go, one at a time in task-id order, to the eligible node holding the
fewest (ties broken by a hash of node and task), so every node computes the same
assignment and counts differ by at most one. Eligible = alive (heartbeat), not draining,
and holding no expired lease (a node whose leases lapse is dead or cut off from the
database, even before its heartbeat times out). A node more than one above the least
loaded hands tasks to it.

Hand-off (rebalancing and drain), make-before-break: the owner sets handoff_to = target;
the target starts its pull; once that pull has media (or after `handoff_timeout_s`
without: nothing flows to break) it takes the lease (owner = target, epoch + 1,
handoff_to NULL); the old owner's next renewal finds the lease gone and stops its pull.

Database outage: a node that cannot reach the database keeps running what it holds
(marked unconfirmed since T in its status rows and metrics); after reconnecting, owners
re-confirm at once (renewal needs only owner = me), while claims of expired leases wait
one TTL after the node's (re)connection, so the owners win and ownership settles with
one owner per task within one TTL. A partition where one node alone loses the database
can give a duplicate pull (the others take its tasks after the TTL while it keeps
pulling, unconfirmed) until it reconnects and finds its leases taken.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..config import ClusterSettings
from ..store.schema import leases
from ..timefmt import utc_iso
from .db import DB_NOW_MS, ClusterDb, ClusterDbUnavailable
from .metrics import ClusterMetrics
from .rounds import Rounds
from .types import NodeDirectory

log = logging.getLogger("liverelay.cluster.leases")

# pg_advisory_xact_lock key of the lease decisions ("lrlease" as an integer).
_DECIDE_LOCK = 0x6C726C65617365
# Shortest pause between rounds (a wake-up storm must not become a query storm).
_MIN_ROUND_GAP_S = 0.02
# Rounds while a hand-off this node takes is waiting for its pull's media.
_HANDOFF_POLL_S = 0.1


# ---------------------------------------------------------------------------
# The decision (pure: the rows, the members and the clock are passed in)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lease:
    task_id: str
    owner: str | None
    expires_at: int  # database clock, Unix ms
    epoch: int
    handoff_to: str | None = None


@dataclass(frozen=True, slots=True)
class Member:
    node_id: str
    alive: bool
    draining: bool


@dataclass(frozen=True, slots=True)
class View:
    """What one node knows at one instant; `plan` decides from this alone."""

    me: str
    now: int  # database clock, Unix ms
    open_tasks: frozenset[str]  # tasks whose window is open (on this node's configuration)
    known_tasks: frozenset[str]  # every task this node's configuration has
    up: frozenset[str]  # tasks whose pull on this node has media
    leases: Mapping[str, Lease]
    members: Sequence[Member]
    draining: bool = False
    claim_expired: bool = True  # False for one TTL after (re)connecting: owners re-confirm first
    target_since: Mapping[str, int] = field(default_factory=dict)  # hand-offs to me: first seen (db ms)
    stale_free: frozenset[str] = frozenset()  # free for a TTL already: anyone eligible claims them
    ttl_ms: int = 3000
    handoff_timeout_ms: int = 15000
    max_handoffs: int = 8


@dataclass(slots=True)
class Plan:
    claim: list[str] = field(default_factory=list)
    accept: list[str] = field(default_factory=list)  # hand-offs to me whose pull is up
    offer: list[tuple[str, str]] = field(default_factory=list)  # (task, target)
    cancel: list[str] = field(default_factory=list)  # my offers to targets no longer eligible
    release: list[str] = field(default_factory=list)  # mine, window closed or task deleted
    gc: list[str] = field(default_factory=list)  # rows of unknown tasks, long expired
    run: frozenset[str] = frozenset()  # tasks this node pulls: owned and open, plus hand-offs to it

    @property
    def writes(self) -> bool:
        return bool(self.claim or self.accept or self.offer or self.cancel or self.release or self.gc)


def _rank(node_id: str, task_id: str) -> bytes:
    return hashlib.blake2b(f"{node_id}\0{task_id}".encode(), digest_size=8).digest()


def _pick(counts: Mapping[str, int], task_id: str, exclude: str | None = None) -> str | None:
    candidates = [n for n in counts if n != exclude]
    if not candidates:
        return None
    return min(candidates, key=lambda n: (counts[n], _rank(n, task_id)))


def plan(view: View) -> Plan:
    me, now = view.me, view.now
    rows = view.leases
    mine = {t for t, lease in rows.items() if lease.owner == me}
    result = Plan()
    result.release = sorted(mine - view.open_tasks)
    owned = mine & view.open_tasks

    # Who may take tasks: alive, not draining, and renewing (no lapsed lease).
    lapsed = {
        lease.owner for lease in rows.values() if lease.owner and lease.owner != me and lease.expires_at < now
    }
    eligible = {m.node_id for m in view.members if m.alive and not m.draining} - lapsed
    eligible.discard(me)
    if not view.draining:
        eligible.add(me)

    # Effective holder of each open task: a hand-off target counts for its new owner.
    counts = dict.fromkeys(eligible, 0)
    free: list[str] = []
    for task in sorted(view.open_tasks):
        lease = rows.get(task)
        if lease is None or lease.owner is None:
            free.append(task)
            continue
        if lease.owner != me and lease.expires_at < now:
            if lease.handoff_to != me and view.claim_expired:
                free.append(task)
            continue
        holder = lease.handoff_to or lease.owner
        if holder in counts:
            counts[holder] += 1

    for task in free:
        target = _pick(counts, task)
        if target is None:
            break
        counts[target] += 1
        if target == me:
            result.claim.append(task)
    if me in eligible:
        for task in sorted(view.stale_free & set(free)):
            if task not in result.claim:
                result.claim.append(task)

    # Hand-offs to me: take the lease once my pull has media (or waited long enough). A
    # draining node takes none (an owner that has not yet seen it draining offered it).
    targets: set[str] = set()
    for task, lease in rows.items():
        if lease.handoff_to != me or lease.owner == me or task not in view.open_tasks or view.draining:
            continue
        targets.add(task)
        first_seen = view.target_since.get(task, now)
        if task in view.up or now - first_seen >= view.handoff_timeout_ms:
            result.accept.append(task)

    # My offers: withdraw those whose target can no longer take them; offer more when
    # draining (everything) or above the least loaded node by two or more.
    in_flight = 0
    for task in sorted(owned):
        target = rows[task].handoff_to
        if target is None:
            continue
        if target in eligible and target != me:
            in_flight += 1
        else:
            result.cancel.append(task)
            if target != me and me in counts:  # it was counted for no one: back to me
                counts[me] += 1
    slots = view.max_handoffs - in_flight
    offerable = sorted(
        (t for t in owned if rows[t].handoff_to is None or t in result.cancel),
        key=lambda t: (t not in view.up, t),  # hand off running pulls first: make-before-break
    )
    if view.draining:
        for task in offerable:
            if slots <= 0:
                break
            target = _pick(counts, task, exclude=me)
            if target is None:
                break
            result.offer.append((task, target))
            counts[target] += 1
            slots -= 1
    elif not free and me in counts and not any(lease.handoff_to for lease in rows.values()):
        # Rebalancing waits until no hand-off is in flight anywhere: counts are settling
        # (a drain, another node's rebalancing), and acting on them now would churn.
        for task in reversed(offerable):
            if slots <= 0:
                break
            others = {n: c for n, c in counts.items() if n != me}
            if not others:
                break
            low = min(others, key=lambda n: (others[n], n))
            if counts[me] - counts[low] < 2:
                break
            result.offer.append((task, low))
            counts[me] -= 1
            counts[low] += 1
            slots -= 1
    offered = {t for t, _ in result.offer}
    result.cancel = [t for t in result.cancel if t not in offered]

    # Rows of tasks this node does not know, expired for a TTL: deleted tasks of dead owners.
    result.gc = sorted(
        t
        for t, lease in rows.items()
        if t not in view.known_tasks and lease.owner != me and lease.expires_at < now - view.ttl_ms
    )
    result.run = frozenset(owned | targets)
    return result


# ---------------------------------------------------------------------------
# The node's lease manager (IO: rounds against PostgreSQL)
# ---------------------------------------------------------------------------


class LeasedTasks(Protocol):
    """What the lease manager reads of the fixed-relay scheduler and tells it
    (relay.scheduled.FixedRelayScheduler)."""

    def open_tasks(self) -> Mapping[str, bool]:
        """Task id -> its pull here has media, for every task whose window is open."""
        ...

    def known_tasks(self) -> frozenset[str]: ...

    def reconsider(self) -> None:
        """Start / stop pulls to match may_run()."""
        ...


@dataclass(slots=True)
class DrainStatus:
    node_id: str
    draining: bool
    owned: int  # leases this node still holds
    handing_off: int  # of which offered to another node
    targets: int  # live, non-draining nodes that can take them


class LeaseManager:
    """This node's side of the leases; the FixedRelayScheduler's gate (`may_run`)."""

    def __init__(
        self,
        db: ClusterDb,
        directory: NodeDirectory,
        settings: ClusterSettings,
        *,
        metrics: ClusterMetrics | None = None,
        set_draining: Callable[[bool], None] | None = None,
    ) -> None:
        self.db = db
        self.directory = directory
        self.settings = settings
        self.metrics = metrics
        self._set_draining = set_draining
        self.tasks: LeasedTasks | None = None  # attached by the scheduler
        self.draining = False
        self.run: frozenset[str] = frozenset()
        self.owned: dict[str, Lease] = {}
        self._rows: dict[str, Lease] = {}
        self._db_ms = 0
        self._mono = time.monotonic()
        self._ttl_ms = int(settings.lease_ttl_s * 1000)
        self._claim_expired_after = float("inf")  # monotonic; set when the loop starts
        self._unconfirmed_since: float | None = None  # wall clock of the first failed renewal
        self._target_since: dict[str, int] = {}
        self._free_since: dict[str, int] = {}
        self._rounds = Rounds("liverelay-leases", self._step, self._next_delay, min_gap_s=_MIN_ROUND_GAP_S)

    # ---- the scheduler's gate ----
    def attach(self, tasks: LeasedTasks) -> None:
        self.tasks = tasks

    def may_run(self, task_id: str) -> bool:
        return task_id in self.run

    def wake(self) -> None:
        """A window opened or closed, a task came or went: decide now rather than next round."""
        self._rounds.wake()

    def status_fields(self, task_id: str) -> dict[str, object]:
        """Extra DescribeRelayStatus fields of a task running here (wire names)."""
        fields: dict[str, object] = {}
        lease = self._rows.get(task_id)
        if lease is not None:
            fields["LeaseEpoch"] = lease.epoch
            if lease.owner != self.directory.node_id:
                fields["LeaseHandoffFrom"] = lease.owner or ""
            elif lease.handoff_to:
                fields["LeaseHandoffTo"] = lease.handoff_to
        if self._unconfirmed_since is not None:
            # The lease could not be renewed: another node may be pulling this task too.
            fields["LeaseUnconfirmedSince"] = utc_iso(self._unconfirmed_since)
        return fields

    # ---- drain ----
    async def drain(self, draining: bool = True) -> DrainStatus:
        if draining != self.draining:
            self.draining = draining
            log.warning(
                "cluster: node %s %s",
                self.directory.node_id,
                "draining" if draining else "no longer draining",
            )
            if self._set_draining is not None:
                self._set_draining(draining)
            self.wake()
        return self.drain_status()

    def drain_status(self) -> DrainStatus:
        me = self.directory.node_id
        targets = sum(1 for n in self.directory.nodes() if n.alive and not n.draining and n.node_id != me)
        handing = sum(1 for lease in self.owned.values() if lease.handoff_to)
        return DrainStatus(me, self.draining, len(self.owned), handing, targets)

    def stats(self) -> dict[str, int]:
        """For the node's heartbeat row (stats_json)."""
        return {"fixed_owned": len(self.owned), "draining": int(self.draining)}

    # ---- lifecycle ----
    async def start(self) -> None:
        # Right after (re)connecting, owners re-confirm first: expired leases wait one TTL.
        self._claim_expired_after = time.monotonic() + self.settings.lease_ttl_s
        self._rounds.start()

    async def close(self) -> None:
        """Stop the rounds (the pulls are stopped by the scheduler's own close)."""
        await self._rounds.close()

    async def release_all(self) -> None:
        """At a clean stop, after the pulls stopped: free this node's leases so the others take
        them at once instead of after the TTL (best effort: the database may be down)."""
        me = self.directory.node_id

        async def tx(conn: AsyncConnection) -> None:
            await conn.execute(
                update(leases).where(leases.c.owner == me).values(owner=None, expires_at=0, handoff_to=None)
            )
            await conn.execute(update(leases).where(leases.c.handoff_to == me).values(handoff_to=None))

        try:
            await self.db.run(tx)
        except ClusterDbUnavailable as exc:
            log.warning("cluster: leases of %s not released (database unreachable: %s); they expire", me, exc)
        self.owned.clear()
        self.run = frozenset()

    # ---- rounds ----
    def _db_now(self) -> int:
        return self._db_ms + int((time.monotonic() - self._mono) * 1000)

    def _next_delay(self) -> float:
        delay = self.settings.lease_ttl_s / 3
        me = self.directory.node_id
        now = self._db_now()
        for lease in self._rows.values():
            if lease.handoff_to is not None and me in (lease.handoff_to, lease.owner):
                # A hand-off in flight: the target takes the lease as soon as its pull is up,
                # and the old owner stops as soon as it sees that (the overlap stays short).
                delay = min(delay, _HANDOFF_POLL_S)
            elif lease.owner not in (None, me) and lease.expires_at >= now:
                # A lease that will lapse before the next round (its owner stopped renewing):
                # be there when it does, so a dead node's tasks move within TTL + a few ms.
                delay = min(delay, (lease.expires_at - now) / 1000 + _MIN_ROUND_GAP_S)
        return max(_MIN_ROUND_GAP_S, delay)

    async def _step(self) -> None:
        try:
            await self._round()
        except Exception:
            log.exception("cluster: lease round failed")

    def _view(self, rows: dict[str, Lease], now: int) -> View:
        tasks = self.tasks
        open_map = dict(tasks.open_tasks()) if tasks is not None else {}
        known = tasks.known_tasks() if tasks is not None else frozenset()
        me = self.directory.node_id
        members = [Member(n.node_id, n.alive, n.draining) for n in self.directory.nodes()]
        for task, lease in rows.items():
            if lease.handoff_to == me and lease.owner != me:
                self._target_since.setdefault(task, now)
        for task in list(self._target_since):
            row = rows.get(task)
            if row is None or row.handoff_to != me:
                del self._target_since[task]
        free_now = {t for t in open_map if _is_free(rows.get(t), me, now)}
        for task in free_now:
            self._free_since.setdefault(task, now)
        for task in list(self._free_since):
            if task not in free_now:
                del self._free_since[task]
        claim_expired = time.monotonic() >= self._claim_expired_after
        stale = frozenset(
            t for t, since in self._free_since.items() if now - since >= self._ttl_ms and claim_expired
        )
        return View(
            me=me,
            now=now,
            open_tasks=frozenset(open_map),
            known_tasks=known,
            up=frozenset(t for t, up in open_map.items() if up),
            leases=rows,
            members=members,
            draining=self.draining,
            claim_expired=claim_expired,
            target_since=dict(self._target_since),
            stale_free=stale,
            ttl_ms=self._ttl_ms,
            handoff_timeout_ms=int(self.settings.handoff_timeout_s * 1000),
            max_handoffs=self.settings.max_handoffs,
        )

    async def _round(self) -> None:
        me = self.directory.node_id
        tasks = self.tasks
        open_ids = list(tasks.open_tasks()) if tasks is not None else []
        ttl = self._ttl_ms

        async def renew(conn: AsyncConnection) -> tuple[dict[str, Lease], int, int]:
            renewed = 0
            if open_ids:
                result = await conn.execute(
                    update(leases)
                    .where(leases.c.owner == me, leases.c.task_id.in_(open_ids))
                    .values(expires_at=DB_NOW_MS + ttl)
                    .returning(leases.c.task_id)
                )
                renewed = len(result.all())
            rows, now = await _read(conn)
            return rows, now, renewed

        try:
            rows, now, renewed = await self.db.run(renew)
        except ClusterDbUnavailable as exc:
            self._unreachable(exc)
            return
        self._reachable()
        if self.metrics is not None:
            self.metrics.lease_renewals.inc(renewed)
        self._absorb(rows, now)
        decided = plan(self._view(rows, now))
        if decided.writes:
            try:
                rows, now = await self.db.run(self._decide)
            except ClusterDbUnavailable as exc:
                self._unreachable(exc)  # nothing of it committed: the picture read above stands
            else:
                # Only what committed becomes this node's picture.
                self._absorb(rows, now)
                decided = plan(self._view(rows, now))
        self._apply(decided)

    async def _decide(self, conn: AsyncConnection) -> tuple[dict[str, Lease], int]:
        """Under the decision lock: read again, plan again, run the plan's statements; the
        rows as they are then."""
        me = self.directory.node_id
        ttl = self._ttl_ms
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DECIDE_LOCK})
        rows, now = await _read(conn)
        decided = plan(self._view(rows, now))
        expiry = DB_NOW_MS + ttl
        for task in decided.release:
            await conn.execute(delete(leases).where(leases.c.task_id == task, leases.c.owner == me))
        for task in decided.gc:
            await conn.execute(
                delete(leases).where(leases.c.task_id == task, leases.c.expires_at < DB_NOW_MS - ttl)
            )
        for task in decided.claim:
            previous = rows.get(task)
            stmt = insert(leases).values(task_id=task, owner=me, expires_at=expiry, epoch=1, handoff_to=None)
            stmt = stmt.on_conflict_do_update(
                index_elements=[leases.c.task_id],
                set_={"owner": me, "expires_at": expiry, "epoch": leases.c.epoch + 1, "handoff_to": None},
                where=(leases.c.owner.is_(None)) | (leases.c.expires_at < DB_NOW_MS) | (leases.c.owner == me),
            )
            if (await conn.execute(stmt.returning(leases.c.epoch))).first() is None:
                continue  # another node's claim came first
            lost_by = previous.owner if previous is not None and previous.owner != me else None
            if lost_by is not None:
                log.warning("cluster: took over fixed relay %s from %s (its lease expired)", task, lost_by)
            if self.metrics is not None:
                self.metrics.lease_claims.inc()
                if lost_by is not None:
                    self.metrics.lease_takeovers.inc()
        for task in decided.accept:
            result = await conn.execute(
                update(leases)
                .where(leases.c.task_id == task, leases.c.handoff_to == me)
                .values(owner=me, epoch=leases.c.epoch + 1, handoff_to=None, expires_at=expiry)
                .returning(leases.c.epoch)
            )
            if result.first() is not None:
                log.info("cluster: took fixed relay %s over by hand-off from %s", task, rows[task].owner)
                if self.metrics is not None:
                    self.metrics.handoffs.labels("in").inc()
        for task, target in decided.offer:
            result = await conn.execute(
                update(leases)
                .where(leases.c.task_id == task, leases.c.owner == me)
                .values(handoff_to=target)
                .returning(leases.c.epoch)
            )
            if result.first() is not None:
                log.info("cluster: handing fixed relay %s to %s", task, target)
                if self.metrics is not None:
                    self.metrics.handoffs.labels("out").inc()
        for task in decided.cancel:
            await conn.execute(
                update(leases).where(leases.c.task_id == task, leases.c.owner == me).values(handoff_to=None)
            )
        return await _read(conn)

    def _absorb(self, rows: dict[str, Lease], now: int) -> None:
        """Take a fresh read as this node's picture; stop what it lost at once."""
        me = self.directory.node_id
        self._rows = rows
        self._db_ms, self._mono = now, time.monotonic()
        owned = {t: lease for t, lease in rows.items() if lease.owner == me}
        lost = set(self.owned) - set(owned)
        open_map = self.tasks.open_tasks() if self.tasks is not None else {}
        really_lost = [
            t for t in lost if t in open_map and rows.get(t) is not None and rows[t].owner is not None
        ]
        if really_lost:
            if self.metrics is not None:
                self.metrics.lease_losses.inc(len(really_lost))
            for task in sorted(really_lost):
                log.info(
                    "cluster: lease of fixed relay %s now held by %s: stopping its pull",
                    task,
                    rows[task].owner,
                )
        self.owned = owned
        if self.metrics is not None:
            self.metrics.leases_owned.set(len(owned))

    def _apply(self, decided: Plan) -> None:
        if decided.run != self.run:
            self.run = decided.run
            if self.tasks is not None:
                self.tasks.reconsider()

    def _unreachable(self, exc: ClusterDbUnavailable) -> None:
        if self.metrics is not None:
            self.metrics.lease_round_failures.inc()
        if self._unconfirmed_since is None:
            self._unconfirmed_since = time.time()
            if self.metrics is not None:
                self.metrics.leases_unconfirmed.set(len(self.owned))
                self.metrics.leases_unconfirmed_since.set(self._unconfirmed_since)
            log.warning(
                "cluster: leases cannot be renewed (database unreachable: %s); keeping %d fixed relay(s) "
                "running unconfirmed",
                exc,
                len(self.owned),
            )

    def _reachable(self) -> None:
        if self._unconfirmed_since is None:
            return
        log.warning(
            "cluster: database reachable again after %.1fs: re-confirming leases; expired ones "
            "are claimed after one TTL",
            time.time() - self._unconfirmed_since,
        )
        self._unconfirmed_since = None
        self._claim_expired_after = time.monotonic() + self.settings.lease_ttl_s
        if self.metrics is not None:
            self.metrics.leases_unconfirmed.set(0)
            self.metrics.leases_unconfirmed_since.set(0)


def _is_free(lease: Lease | None, me: str, now: int) -> bool:
    return lease is None or lease.owner is None or (lease.owner != me and lease.expires_at < now)


async def _read(conn: AsyncConnection) -> tuple[dict[str, Lease], int]:
    now = int((await conn.execute(select(DB_NOW_MS))).scalar_one())
    result = await conn.execute(select(leases))
    rows = {
        r.task_id: Lease(r.task_id, r.owner, int(r.expires_at), int(r.epoch), r.handoff_to)
        for r in result.all()
    }
    return rows, now
