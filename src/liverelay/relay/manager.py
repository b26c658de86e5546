"""RelayManager: the node's relays (V3 play-triggered and V4 fixed) behind one object.

It owns what both kinds share: RelayMetrics on the node's registry, the webhook sender, the
RelayEvents fan-out and the source policy. It sets hub.play_trigger for V3, follows
store.bus, and runs the V4 FixedRelayScheduler from relay/scheduled.py.

Faults are seen, not swallowed: status() returns the V3 rows and, when the V4 part
fails, an `error` (shown as DescribeRelayStatus `Error`); close() logs a failing
scheduler close and still stops the V3 pulls and the webhook sender.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from ..config import Settings
from ..hub import StreamKey
from ..schemas.status import RelayStatusReport
from .events import RelayEvents
from .metrics import RelayMetrics
from .ondemand import OnDemandRelays
from .policy import SourcePolicy
from .protocols import RelayConfigSource, RelayHub
from .scheduled import FixedRelayGate, FixedRelayScheduler, FixedTask
from .webhooks import WebhookSender

log = logging.getLogger("liverelay.relay.manager")


class RelayManager:
    def __init__(
        self,
        settings: Settings,
        hub: RelayHub,
        store: RelayConfigSource,
        metrics: CollectorRegistry | None = None,
        fixed_gate: FixedRelayGate | None = None,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.store = store
        self.metrics = RelayMetrics(metrics)
        self.webhooks = WebhookSender(settings.webhook)
        self.events = RelayEvents(self.metrics, self.webhooks)
        self.source_policy = SourcePolicy(settings.relay)
        self.ondemand = OnDemandRelays(hub, settings.relay, self.events, self.source_policy)
        # V3 never pulls a stream a fixed relay owns (see relay/ondemand.py).
        self.ondemand.fixed_owner = self.fixed_owner
        self.scheduler: FixedRelayScheduler | None = None
        # A cluster's lease manager: which open fixed relays run on this node (None: all).
        self.fixed_gate = fixed_gate
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        self.webhooks.start()
        store = self.store
        # Subscribe before loading so a change committed meanwhile is not lost.
        self._unsubscribe = store.bus.subscribe(self.ondemand.on_change)
        self.ondemand.load(await store.list_relay_v3())
        self.hub.play_trigger = self.ondemand.play_trigger
        self.scheduler = FixedRelayScheduler(
            self.hub,
            store,
            self.settings.relay,
            self.events,
            source_policy=self.source_policy,
            gate=self.fixed_gate,
        )
        await self.scheduler.start()

    def fixed_owner(self, key: StreamKey) -> FixedTask | None:
        """The V4 task that owns `key` now (its window is open and it runs on this node, whatever
        its pull is doing). In a cluster, a task another node holds the lease of is not ours:
        a play here may pull the stream (from that node, as a peer)."""
        scheduler = self.scheduler
        if scheduler is None:
            return None
        task = scheduler.tasks.get((key.vhost, key.app, key.name))
        if task is None or task.phase != "open" or not task.runs_here:
            return None
        return task

    def status(self) -> RelayStatusReport:
        """One row per running V3 pull plus the V4 tasks' rows (DescribeRelayStatus).

        A failing part does not hide the others: its rows are missing and `error` says
        which part failed (the log has the traceback).
        """
        report = RelayStatusReport(rows=self.ondemand.status())
        if self.scheduler is not None:
            try:
                report.rows.extend(self.scheduler.status())
            except Exception as exc:
                log.exception("fixed relay status failed")
                report.error = f"fixed relay status unavailable: {type(exc).__name__}"
        return report

    async def close(self) -> None:
        hub = self.hub
        if hub.play_trigger == self.ondemand.play_trigger:
            hub.play_trigger = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        # Each part is closed even when an earlier one fails: a part left open may leave
        # an ffmpeg source running after the node exits.
        if self.scheduler is not None:
            try:
                await self.scheduler.close()
            except Exception:
                log.exception("closing the fixed relays failed")
        try:
            await self.ondemand.close()
        except Exception:
            log.exception("closing the play-triggered relays failed")
        await self.webhooks.close()
