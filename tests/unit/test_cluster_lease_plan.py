"""The lease decisions (cluster.leases.plan), pure: rows, members and the clock passed in.

A small serial simulator applies each node's plan to a shared table the way the lease
manager's statements do (one node at a time, as under the decision lock), so spread,
take-over, hand-off and drain can be checked over many rounds without a database.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from liverelay.cluster.leases import Lease, Member, Plan, View, plan

TTL = 3000


class Cluster:
    def __init__(self, nodes: list[str], tasks: list[str]) -> None:
        self.nodes = list(nodes)
        self.tasks = list(tasks)
        self.rows: dict[str, Lease] = {}
        self.now = 1_000_000
        self.dead: set[str] = set()
        self.draining: set[str] = set()
        self.up: dict[str, set[str]] = {n: set() for n in nodes}  # pulls with media, per node
        self.pulls: dict[str, set[str]] = {n: set() for n in nodes}

    def members(self) -> list[Member]:
        return [Member(n, n not in self.dead, n in self.draining) for n in self.nodes]

    def view(self, me: str, **kw: object) -> View:
        return View(
            me=me,
            now=self.now,
            open_tasks=frozenset(self.tasks),
            known_tasks=frozenset(self.tasks),
            up=frozenset(self.up[me]),
            leases=dict(self.rows),
            members=self.members(),
            draining=me in self.draining,
            ttl_ms=TTL,
            **kw,  # type: ignore[arg-type]
        )

    def step(self, me: str, **kw: object) -> Plan:
        """One round of `me`: renew, decide, act (the statements' conditions included)."""
        for t, lease in list(self.rows.items()):
            if lease.owner == me and t in self.tasks:
                self.rows[t] = Lease(t, me, self.now + TTL, lease.epoch, lease.handoff_to)
        p = plan(self.view(me, **kw))
        for t in p.release:
            if self.rows.get(t) and self.rows[t].owner == me:
                del self.rows[t]
        for t in p.claim:
            lease = self.rows.get(t)
            if lease is None or lease.owner is None or lease.expires_at < self.now or lease.owner == me:
                epoch = lease.epoch + 1 if lease else 1
                self.rows[t] = Lease(t, me, self.now + TTL, epoch)
        for t in p.accept:
            lease = self.rows[t]
            if lease.handoff_to == me:
                self.rows[t] = Lease(t, me, self.now + TTL, lease.epoch + 1)
        for t, target in p.offer:
            lease = self.rows[t]
            if lease.owner == me:
                self.rows[t] = Lease(t, me, lease.expires_at, lease.epoch, target)
        for t in p.cancel:
            lease = self.rows[t]
            if lease.owner == me:
                self.rows[t] = Lease(t, me, lease.expires_at, lease.epoch, None)
        # The pulls follow the new picture (as after the round's statements).
        final = plan(self.view(me, **kw)).run
        self.pulls[me] = set(final)
        self.up[me] &= final
        return p

    def media(self) -> None:
        """Every running pull gets media."""
        for n in self.nodes:
            self.up[n] = set(self.pulls[n])

    def rounds(self, n: int = 1, order: list[str] | None = None) -> None:
        for _ in range(n):
            for node in order or self.nodes:
                if node not in self.dead:
                    self.step(node)
            self.media()
            self.now += 1000

    def owners(self) -> dict[str, str | None]:
        return {t: (self.rows[t].owner if t in self.rows else None) for t in self.tasks}

    def counts(self, nodes: list[str] | None = None) -> list[int]:
        owners = self.owners()
        return [sum(1 for o in owners.values() if o == n) for n in nodes or self.nodes]


TASKS = [f"t{i:02d}" for i in range(10)]


def one_view(
    me: str, now: int, tasks: list[str], rows: dict[str, Lease], alive: dict[str, bool], **kw: object
) -> View:
    """A View of `me` at `now` with `tasks` open (and known) and the members' liveness."""
    return View(
        me=me,
        now=now,
        open_tasks=frozenset(tasks),
        known_tasks=frozenset(tasks),
        up=frozenset(),
        leases=rows,
        members=[Member(n, ok, False) for n, ok in alive.items()],
        **kw,  # type: ignore[arg-type]
    )


def test_ten_tasks_spread_over_three_nodes_in_one_round_whatever_the_order() -> None:
    for order in itertools.permutations(["a", "b", "c"]):
        cluster = Cluster(["a", "b", "c"], TASKS)
        cluster.rounds(1, order=list(order))
        assert None not in cluster.owners().values(), order
        assert sorted(cluster.counts()) == [3, 3, 4], order
        # Settled: further rounds move nothing and offer nothing.
        before = cluster.owners()
        cluster.rounds(3)
        assert cluster.owners() == before


def test_every_node_runs_exactly_its_own_tasks() -> None:
    cluster = Cluster(["a", "b", "c"], TASKS)
    cluster.rounds(2)
    runs = [cluster.pulls[n] for n in cluster.nodes]
    assert set().union(*runs) == set(TASKS)
    assert sum(len(r) for r in runs) == len(TASKS)


def test_dead_owner_tasks_taken_after_expiry_and_spread_over_survivors() -> None:
    cluster = Cluster(["a", "b", "c"], TASKS)
    cluster.rounds(2)
    victim = max(cluster.nodes, key=lambda n: cluster.counts([n])[0])
    cluster.dead.add(victim)
    # Before the lease expires nobody takes anything, even with its heartbeat gone.
    cluster.rounds(2)
    assert victim in cluster.owners().values()
    cluster.rounds(2)  # rounds of the survivors, a second apart: its leases lapse meanwhile
    survivors = [n for n in cluster.nodes if n != victim]
    assert set(cluster.owners().values()) == set(survivors)
    assert sorted(cluster.counts(survivors)) == [5, 5]


def test_lapsed_owner_is_not_given_tasks_while_its_heartbeat_looks_alive() -> None:
    rows = {"t1": Lease("t1", "x", 900, 1), "t2": Lease("t2", "x", 900, 1)}
    view = one_view("a", 1000, ["t1", "t2"], rows, {"a": True, "b": True, "x": True})
    decided = plan(view)
    claimed_by_b = plan(replace(view, me="b")).claim
    assert sorted(decided.claim + claimed_by_b) == ["t1", "t2"]  # x gets none: it stopped renewing
    assert decided.claim and claimed_by_b


def test_after_reconnect_expired_leases_wait_for_their_owner() -> None:
    rows = {"t1": Lease("t1", "b", 900, 4)}
    view = one_view("a", 5000, ["t1", "t2"], rows, {"a": True, "b": True}, claim_expired=False)
    decided = plan(view)
    assert "t1" not in decided.claim  # b re-confirms first
    assert "t2" in decided.claim  # never owned: free for anyone
    # b, the owner, keeps running t1 and renews it (its renewal needs no expiry check).
    assert "t1" in plan(replace(view, me="b")).run


def test_new_node_gets_its_share_by_make_before_break_handoffs() -> None:
    cluster = Cluster(["a", "b"], TASKS)
    cluster.rounds(2)
    assert sorted(cluster.counts()) == [5, 5]
    cluster.nodes.append("c")
    cluster.up["c"], cluster.pulls["c"] = set(), set()
    moved_at: dict[str, int] = {}
    for _ in range(6):
        before = cluster.owners()
        up_before = {n: set(u) for n, u in cluster.up.items()}
        cluster.rounds(1)
        for t, owner in cluster.owners().items():
            if owner != before[t]:
                moved_at[t] = cluster.now
                # Make-before-break: the new owner's pull had media before it took the lease.
                assert owner == "c" and t in up_before["c"]
    assert sorted(cluster.counts()) == [3, 3, 4]
    assert len(moved_at) == 3


def test_handoff_target_waits_for_media_then_takes_over() -> None:
    rows = {"t1": Lease("t1", "a", 5000, 2, handoff_to="b")}
    base = one_view("b", 1000, ["t1"], rows, {"a": True, "b": True}, target_since={"t1": 1000})
    waiting = plan(base)
    assert waiting.run == {"t1"} and not waiting.accept  # pull started, lease not taken yet
    up = plan(replace(base, up=frozenset(["t1"])))
    assert up.accept == ["t1"]
    late = plan(replace(base, now=1000 + 15000))
    assert late.accept == ["t1"]  # no media for handoff_timeout: nothing flows to break
    # The old owner keeps running it until its renewal finds the lease gone.
    assert plan(replace(base, me="a")).run == {"t1"}


def test_offer_to_a_dead_target_is_withdrawn() -> None:
    rows = {"t1": Lease("t1", "a", 5000, 2, handoff_to="b")}
    view = replace(one_view("a", 1000, ["t1"], rows, {"a": True, "b": False}), up=frozenset(["t1"]))
    assert plan(view).cancel == ["t1"]


def test_drain_hands_everything_to_the_others_and_claims_nothing() -> None:
    cluster = Cluster(["a", "b", "c"], TASKS)
    cluster.rounds(2)
    cluster.draining.add("a")
    held = {t for t, o in cluster.owners().items() if o == "a"}
    for _ in range(5):
        before = cluster.owners()
        up_before = {n: set(u) for n, u in cluster.up.items()}
        cluster.rounds(1)
        for t in held:
            new_owner = cluster.owners()[t]
            if before[t] == "a" and new_owner != "a":
                # Make-before-break: the new owner's pull had media before the lease moved.
                assert new_owner is not None and t in up_before[new_owner]
    assert "a" not in cluster.owners().values()
    assert sorted(cluster.counts(["b", "c"])) == [5, 5]
    # A new task while draining goes elsewhere.
    cluster.tasks.append("t99")
    cluster.rounds(2)
    assert cluster.owners()["t99"] in ("b", "c")


def test_release_closed_windows_and_gc_unknown_rows() -> None:
    rows = {
        "mine_closed": Lease("mine_closed", "a", 5000, 1),
        "ghost": Lease("ghost", "x", 1000 - TTL - 1, 1),
        "young_ghost": Lease("young_ghost", "x", 900, 1),
    }
    view = replace(one_view("a", 1000, [], rows, {"a": True}), known_tasks=frozenset(["mine_closed"]))
    decided = plan(view)
    assert decided.release == ["mine_closed"]
    assert decided.gc == ["ghost"]  # a row just created elsewhere (not yet known here) is kept
    assert decided.run == frozenset()


def test_a_draining_node_takes_no_handoff_and_rebalancing_waits_for_handoffs_in_flight() -> None:
    # a drains: it offered its tasks to b and c; c, which has not yet seen a draining,
    # would rebalance towards a (now holding none) - it waits while hand-offs are in flight.
    rows = {
        "t1": Lease("t1", "a", 5000, 1, handoff_to="b"),
        "t2": Lease("t2", "b", 5000, 1),
        "t3": Lease("t3", "c", 5000, 1),
        "t4": Lease("t4", "c", 5000, 1),
        "t5": Lease("t5", "c", 5000, 1),
    }
    tasks = ["t1", "t2", "t3", "t4", "t5"]
    alive = {"a": True, "b": True, "c": True}
    assert plan(one_view("c", 1000, tasks, rows, alive)).offer == []
    settled = {**rows, "t1": Lease("t1", "b", 5000, 2)}
    assert plan(one_view("c", 1000, tasks, settled, alive)).offer == [("t5", "a")]
    # ... and a, draining, neither starts nor takes that offer.
    offered = {**settled, "t5": Lease("t5", "c", 5000, 1, handoff_to="a")}
    drained = plan(replace(one_view("a", 1000, tasks, offered, alive), draining=True, up=frozenset(["t5"])))
    assert drained.accept == [] and drained.run == frozenset()
