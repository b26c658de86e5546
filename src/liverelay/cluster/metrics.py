"""Cluster metrics on the node's registry: membership, leases and the change feed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client import Metric

    from ..store.feed import ChangeFeed


class ClusterMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.heartbeat_failures = Counter(
            "liverelay_cluster_heartbeat_failures",
            "Heartbeat rounds that could not reach the database",
            registry=registry,
        )
        self.nodes_alive = Gauge(
            "liverelay_cluster_nodes_alive",
            "Nodes with a recent heartbeat (this one included)",
            registry=registry,
        )
        self.leases_owned = Gauge(
            "liverelay_cluster_leases_owned", "Fixed-relay leases this node holds", registry=registry
        )
        self.leases_unconfirmed = Gauge(
            "liverelay_cluster_leases_unconfirmed",
            "Leases this node holds but could not renew (database unreachable): a duplicate pull is possible",
            registry=registry,
        )
        self.leases_unconfirmed_since = Gauge(
            "liverelay_cluster_leases_unconfirmed_since_seconds",
            "Unix time of the first renewal that could not reach the database (0 = leases confirmed)",
            registry=registry,
        )
        self.lease_renewals = Counter(
            "liverelay_cluster_lease_renewals", "Lease renewals that reached the database", registry=registry
        )
        self.lease_losses = Counter(
            "liverelay_cluster_lease_losses",
            "Leases found taken by another node at renewal (the pull stopped at once)",
            registry=registry,
        )
        self.lease_claims = Counter(
            "liverelay_cluster_lease_claims",
            "Free (never or no longer owned) leases claimed",
            registry=registry,
        )
        self.lease_takeovers = Counter(
            "liverelay_cluster_lease_takeovers",
            "Leases claimed after another node's expired (its owner died or lost the database)",
            registry=registry,
        )
        self.handoffs = Counter(
            "liverelay_cluster_handoffs",
            "Make-before-break hand-offs, by direction (out: offered by this node, in: taken over by it)",
            ["direction"],
            registry=registry,
        )
        self.lease_round_failures = Counter(
            "liverelay_cluster_lease_round_failures",
            "Lease rounds that could not reach the database",
            registry=registry,
        )
        for direction in ("out", "in"):
            self.handoffs.labels(direction)  # export 0 before the first hand-off


class FeedCollector(Collector):
    """The change feed's own counters (store/feed.py), read at scrape time."""

    def __init__(self, feed: ChangeFeed) -> None:
        self._feed = feed

    def collect(self) -> Iterator[Metric]:
        feed = self._feed
        counters = feed.counters
        yield CounterMetricFamily(
            "liverelay_store_feed_resyncs",
            "Full resyncs of the change feed (gaps, reconnects)",
            value=counters.resyncs,
        )
        yield CounterMetricFamily(
            "liverelay_store_feed_notifications",
            "Other nodes' changes applied one by one",
            value=counters.notifications,
        )
        yield CounterMetricFamily(
            "liverelay_store_feed_reconnects",
            "Change feed connections re-established after a loss",
            value=counters.reconnects,
        )
        yield GaugeMetricFamily(
            "liverelay_store_feed_connected",
            "1 while the change feed listens and is in step",
            value=int(feed.connected),
        )
        yield GaugeMetricFamily(
            "liverelay_store_change_seq", "Last change number applied", value=feed.last_seq
        )
