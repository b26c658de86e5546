"""RelayEvents: the one object that fans a relay event out to metrics, webhooks and logs.

Both relay kinds (V3 play-triggered, V4 fixed) report through it, so every event has
the same shape everywhere. Webhook body (JSON, PascalCase like the API):

    {"Event": "relay_started", "Time": "2026-11-26T09:00:00Z", "Type": "play",
     "Vhost": "...", "App": "...", "Stream": "...", ...event fields}

Events and their extra fields:
    relay_started   SourceUrl, SourceIndex, TimeToFirstFrameMs
    origin_failed   SourceUrl, SourceIndex, Reason, Error
    switched        FromUrl, ToUrl, SourceIndex, Reason (failover|failback|config)
    stopped         Reason
    task_scheduled / task_started / task_ended   (V4) TaskId, ...
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import UTC, datetime
from typing import Any

from ..sources.base import redact_text
from ..timefmt import utc_iso
from .metrics import RelayMetrics
from .webhooks import WebhookSender

log = logging.getLogger("liverelay.relay")

RECENT_EVENTS = 1000  # events kept for DescribeRelayEvents (docs/limits.md)


def rfc3339(ts: float | None) -> str | None:
    """Unix seconds -> '2026-11-26T09:00:00Z' (None stays None)."""
    if ts is None:
        return None
    return utc_iso(ts)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list | tuple):
        return [redact_text(v) if isinstance(v, str) else v for v in value]
    return value


class RelayEvents:
    def __init__(self, metrics: RelayMetrics | None = None, webhooks: WebhookSender | None = None) -> None:
        self.metrics = metrics
        self.webhooks = webhooks
        # The last events (webhook bodies), newest last: DescribeRelayEvents and the
        # console's failover history read them.
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)

    def emit(self, event: str, *, kind: str, vhost: str, app: str, stream: str, **fields: Any) -> None:
        """Count, log and queue one event. Never raises into the data plane.

        Every text field (SourceUrl, FromUrl, ToUrl, Error ...) is redacted here, the one
        place all relay events pass through, so neither the log line nor the webhook body
        carries an origin's passphrase, password or signed-URL token.
        """
        fields = {name: _redacted(value) for name, value in fields.items()}
        try:
            self._count(event, fields)
        except Exception:  # a metrics bug must not stop a relay
            log.exception("relay metrics for %s failed", event)
        level = logging.WARNING if event == "origin_failed" else logging.INFO
        log.log(
            level,
            "%s %s %s/%s/%s %s",
            event,
            kind,
            vhost,
            app,
            stream,
            " ".join(f"{k}={v}" for k, v in fields.items()),
        )
        body: dict[str, Any] = {
            "Event": event,
            "Time": rfc3339(datetime.now(UTC).timestamp()),
            "Type": kind,
            "Vhost": vhost,
            "App": app,
            "Stream": stream,
        }
        body.update(fields)
        self.recent.append(body)
        if self.webhooks is not None:
            self.webhooks.send(body)

    def _count(self, event: str, fields: dict[str, Any]) -> None:
        m = self.metrics
        if m is None:
            return
        if event == "relay_started":
            m.starts.inc()
            ttff_ms = fields.get("TimeToFirstFrameMs")
            if ttff_ms is not None:
                m.time_to_first_frame.observe(ttff_ms / 1000.0)
        elif event == "origin_failed":
            m.failures.labels(str(fields.get("Reason", "unknown"))).inc()
        elif event == "switched":
            m.failovers.labels(str(fields.get("Reason", "failover"))).inc()

    # Direct metric hooks used by the pull runner (not events: no log line, no webhook).
    def pull_started(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.pulls.labels(kind).inc()

    def pull_ended(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.pulls.labels(kind).dec()

    def start_refused(self, scope: str) -> None:
        """A play-triggered pull was not started: the starting cap of `scope` (vhost|node) is full."""
        if self.metrics is not None:
            self.metrics.start_refusals.labels(scope).inc()

    def bytes_in(self, n: int) -> None:
        if self.metrics is not None and n > 0:
            self.metrics.bytes_in.inc(n)
