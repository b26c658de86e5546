"""Faults in the relays are seen (Issue 9 section 8): logged with context, classified,
and visible in DescribeRelayStatus; in-process with scripted origins and the real hub."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from tests.conftest import poll_until
from tests.integration.relay_runner_helpers import KEY, Origins, fast_settings, finish, make_pull

from liverelay.api.actions.status import describe_relay_status
from liverelay.api.context import ActionContext
from liverelay.config import Settings
from liverelay.hub import Hub, Publication, SourceKind
from liverelay.media.frame import Frame
from liverelay.relay.events import RelayEvents
from liverelay.relay.manager import RelayManager
from liverelay.relay.metrics import RelayMetrics
from liverelay.relay.pull import RelayPull
from liverelay.relay.scheduled import FixedRelayScheduler, FixedRelaySpec, FixedTask
from liverelay.schemas.status import RelayState, RelayStatusRow

pytestmark = pytest.mark.timeout(60)


def failures(registry: CollectorRegistry, reason: str) -> float:
    value = registry.get_sample_value("liverelay_relay_failures_total", {"reason": reason})
    return value or 0.0


async def test_a_failing_publication_factory_is_an_internal_error_not_busy(
    hub: Hub, sample_frames: list[Frame], caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    origins = Origins(sample_frames, 1)

    def broken_factory() -> Publication:
        raise RuntimeError("hub bug")

    pull = RelayPull(
        key=KEY,
        kind="fixed",
        urls=origins.urls,
        publication_factory=broken_factory,
        settings=fast_settings(),
        events=RelayEvents(RelayMetrics(registry)),
        open_source=origins.open_source,
    )
    caplog.set_level(logging.ERROR, logger="liverelay.relay.pull")
    task = asyncio.create_task(pull.run())
    await poll_until(lambda: failures(registry, "internal") >= 1, 10, "an internal failure")
    assert failures(registry, "busy") == 0
    row = pull.status().wire()
    assert row["State"] != "up" and row["LastError"].startswith("internal: RuntimeError: hub bug")
    logged = [r for r in caplog.records if "publication factory failed" in r.getMessage()]
    assert logged and logged[0].exc_info is not None and "vh/live/s" in logged[0].getMessage()
    await finish(pull, task)


async def test_a_busy_stream_is_still_busy(hub: Hub, sample_frames: list[Frame]) -> None:
    registry = CollectorRegistry()
    publisher = hub.publish(KEY, kind=SourceKind.PUBLISHER, owner="someone")
    origins = Origins(sample_frames, 1)
    pull = make_pull(hub, origins, fast_settings(), kind="fixed", events=RelayEvents(RelayMetrics(registry)))
    task = asyncio.create_task(pull.run())
    await poll_until(lambda: failures(registry, "busy") >= 1, 10, "a busy failure")
    assert failures(registry, "internal") == 0
    await finish(pull, task)
    publisher.close("test over")


class BrokenScheduler(FixedRelayScheduler):
    """A real scheduler whose status and close fail (the faults under test)."""

    def status(self) -> list[RelayStatusRow]:
        raise RuntimeError("scheduler status bug")

    async def close(self) -> None:
        raise RuntimeError("scheduler close bug")


def manager_for(hub: Hub, registry: CollectorRegistry) -> RelayManager:
    settings = Settings()
    manager = RelayManager(settings, hub, None, registry)  # type: ignore[arg-type]  # never started: no store
    manager.scheduler = BrokenScheduler(
        hub,
        None,  # type: ignore[arg-type]
        settings.relay,
        manager.events,
        pull_factory=lambda task: None,  # type: ignore[arg-type,return-value]
    )
    return manager


async def test_status_with_a_failing_fixed_part_is_partial_and_says_so(
    hub: Hub, sample_frames: list[Frame], caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    manager = manager_for(hub, registry)
    origins = Origins(sample_frames, 1)
    manager.ondemand.open_source = origins.open_source
    entry = manager.ondemand._start(KEY, "", origins.urls)
    await asyncio.wait_for(entry.pull.first_media.wait(), 10)
    ctx = ActionContext(settings=Settings(), store=None, relays=manager)  # type: ignore[arg-type]
    result = await describe_relay_status(ctx, {})
    assert result is not None
    assert result["Error"] == "fixed relay status unavailable: RuntimeError"
    [row] = result["RelayStatusList"]
    assert (row["Type"], row["Stream"]) == ("play", "s") and row["State"] in ("up", "lingering")
    assert any("fixed relay status failed" in r.getMessage() for r in caplog.records)
    # Shutdown: the failing scheduler close is logged and the V3 pull is still stopped.
    caplog.clear()
    await manager.close()
    assert any("closing the fixed relays failed" in r.getMessage() for r in caplog.records)
    assert entry.pull.ended.is_set() and not manager.ondemand.pulls
    assert b'liverelay_relay_pulls{type="play"} 0.0' in generate_latest(registry)


class RaisingEvents(RelayEvents):
    def emit(self, event: str, *, kind: str, vhost: str, app: str, stream: str, **fields: Any) -> None:
        raise RuntimeError("webhook bug")


async def test_a_failing_event_emit_is_logged_and_the_schedule_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings()
    hub = Hub(settings.media)
    scheduler = FixedRelayScheduler(hub, None, settings.relay, RaisingEvents())  # type: ignore[arg-type]
    spec = FixedRelaySpec(
        "t1", "vh", "pull.example.com", "live", "s", ("rtmp://a/live/s",), 4_000_000_000, None
    )
    task = FixedTask(spec, pull_factory=scheduler._make_pull, emit=scheduler._emit)
    task.schedule()  # window in the future: emits task_scheduled
    assert task.state == RelayState.SCHEDULED
    assert any(
        "fixed relay t1: emitting task_scheduled failed" in r.getMessage() and r.exc_info
        for r in caplog.records
    )
    await task.close()
