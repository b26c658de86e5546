"""Prometheus metrics of the relays (V3 and V4 share one RelayMetrics on node.metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Time to first frame: from the start of a pull to the first media frame, in seconds.
_TTFF_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0)


class RelayMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.pulls = Gauge(
            "liverelay_relay_pulls", "Relay pulls running, by type (play|fixed)", ["type"], registry=registry
        )
        self.starts = Counter(
            "liverelay_relay_starts", "Relay pulls that delivered their first frame", registry=registry
        )
        self.failures = Counter(
            "liverelay_relay_failures",
            "Origin attempts that failed, by reason",
            ["reason"],
            registry=registry,
        )
        self.failovers = Counter(
            "liverelay_relay_failovers",
            "Switches of a running pull to another origin, by reason (failover|failback|config)",
            ["reason"],
            registry=registry,
        )
        self.time_to_first_frame = Histogram(
            "liverelay_relay_time_to_first_frame_seconds",
            "Start of a pull to its first media frame",
            buckets=_TTFF_BUCKETS,
            registry=registry,
        )
        self.bytes_in = Counter(
            "liverelay_relay_bytes_in", "Media payload bytes received from origins", registry=registry
        )
        self.start_refusals = Counter(
            "liverelay_relay_start_refusals",
            "Play-triggered pulls not started because too many were starting, by cap (vhost|node)",
            ["scope"],
            registry=registry,
        )
        for scope in ("vhost", "node"):
            self.start_refusals.labels(scope)  # export 0 before the first refusal
        for kind in ("play", "fixed"):
            self.pulls.labels(kind)  # export 0 before the first pull
