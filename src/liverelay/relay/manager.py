"""RelayManager: the node's relays (V3 play-triggered and V4 fixed) behind one object.

It owns what both kinds share: RelayMetrics on node.metrics, the webhook sender, the
RelayEvents fan-out and the source policy. It sets hub.play_trigger for V3, follows
store.bus, and runs the V4 FixedRelayScheduler from relay/scheduled.py (imported lazily
so the manager works while that part is missing or broken).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from .events import RelayEvents
from .metrics import RelayMetrics
from .ondemand import OnDemandRelays
from .policy import SourcePolicy
from .webhooks import WebhookSender

log = logging.getLogger("liverelay.relay.manager")


class RelayManager:
    def __init__(self, node: Any) -> None:
        self.node = node
        settings = node.settings
        self.metrics = RelayMetrics(node.metrics)
        self.webhooks = WebhookSender(settings.webhook)
        self.events = RelayEvents(self.metrics, self.webhooks)
        self.source_policy = SourcePolicy(settings.relay)
        self.ondemand = OnDemandRelays(node.hub, settings.relay, self.events, self.source_policy)
        # V3 never pulls a stream a fixed relay owns (see relay/ondemand.py).
        self.ondemand.fixed_owner = self.fixed_owner
        self.scheduler: Any = None
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        self.webhooks.start()
        store = self.node.store
        # Subscribe before loading so a change committed meanwhile is not lost.
        self._unsubscribe = store.bus.subscribe(self.ondemand.on_change)
        self.ondemand.load(await store.list_relay_v3())
        self.node.hub.play_trigger = self.ondemand.play_trigger
        try:
            from .scheduled import FixedRelayScheduler
        except ImportError as exc:
            log.warning("fixed (V4) relays unavailable: %s", exc)
        else:
            self.scheduler = FixedRelayScheduler(self.node, self.events)
            await self.scheduler.start()

    def fixed_owner(self, key: Any) -> Any:
        """The V4 task that owns `key` now (its window is open, whatever its pull is doing)."""
        scheduler = self.scheduler
        if scheduler is None:
            return None
        task = scheduler.tasks.get((key.vhost, key.app, key.name))
        if task is None or task.phase != "open":
            return None
        return task

    def status(self) -> list[dict[str, Any]]:
        """One row per running V3 pull plus the V4 tasks' rows (DescribeRelayStatus)."""
        rows = self.ondemand.status()
        if self.scheduler is not None:
            try:
                rows.extend(self.scheduler.status())
            except Exception:
                log.exception("fixed relay status failed")
        return rows

    async def close(self) -> None:
        hub = self.node.hub
        if hub is not None and getattr(hub, "play_trigger", None) == self.ondemand.play_trigger:
            hub.play_trigger = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.scheduler is not None:
            with contextlib.suppress(Exception):
                await self.scheduler.close()
        await self.ondemand.close()
        await self.webhooks.close()
