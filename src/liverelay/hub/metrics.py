"""Hub metrics, read from the hub's own counters at scrape time (nothing on the hot path)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client import Metric

    from .hub import Hub

KNOWN_PROTOCOLS = ("rtmp", "http-flv", "hls")


class HubCollector(Collector):
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        hub = self._hub
        streams = hub.streams()
        yield GaugeMetricFamily(
            "liverelay_streams", "Streams that have a source", value=sum(1 for s in streams if s.has_source)
        )
        viewers = GaugeMetricFamily("liverelay_viewers", "Connected viewers", labels=["protocol"])
        counts = hub.viewers_by_protocol()
        for protocol in sorted(set(KNOWN_PROTOCOLS) | set(counts)):
            viewers.add_metric([protocol], counts.get(protocol, 0))
        yield viewers
        yield CounterMetricFamily(
            "liverelay_bytes_in", "Media bytes received from sources", value=hub.bytes_in_total
        )
        yield CounterMetricFamily(
            "liverelay_bytes_out", "Media bytes sent to viewers", value=hub.bytes_out_total
        )
        yield CounterMetricFamily(
            "liverelay_viewer_skips",
            "Times a slow viewer skipped to the next keyframe",
            value=hub.viewer_skips,
        )
        yield CounterMetricFamily(
            "liverelay_viewer_drops", "Viewers disconnected for being too slow", value=hub.viewer_drops
        )
        # Leak checks (the soak, bench/soak.py): live asyncio tasks of the node's loop. collect()
        # runs in the /metrics handler, on that loop; elsewhere (a registry read off-loop) it is omitted.
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:
            return
        yield GaugeMetricFamily(
            "liverelay_asyncio_tasks", "Live asyncio tasks of the node's event loop", value=tasks
        )
