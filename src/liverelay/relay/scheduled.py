"""Fixed relays (V4): one task per (vhost, app, stream), pulling on a schedule or forever.

A task runs its pull whether or not anyone watches, between StartTime and EndTime
(both None = permanent). Window edges are loop timers (call_later), never polling,
so a task starts and ends within milliseconds of its edge. The pull itself - origin
order, backoff, fail-back, the hub publication - is relay.pull.RelayPull, shared with
the play-triggered (V3) relays.

Config comes from the store: every record at start() (so a restarted node resumes
every task whose window is open), then every committed change on store.bus.

In a cluster (PostgreSQL) every node keeps every task's schedule, but an open task's pull
runs only where the FixedRelayGate allows it: on the node holding the task's lease
(cluster/leases.py), and on a hand-off's target while it takes over. Open tasks that do
not run here are left out of this node's status rows (their owner lists them), and a
task's lifecycle events come from the node running it (task_scheduled, which has no
owner yet, is not sent in a cluster). Without a gate (SQLite, one node) every open task runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..backoff import backoff_delay
from ..config import RelaySettings
from ..hub.keys import SourceKind, StreamKey
from ..hub.stream import Publication
from ..schemas.status import RelayState, RelayStatusRow, RelayType
from ..sources.base import redact_url
from ..store.bus import ChangeEvent
from ..store.models import RelayV4Config
from ..tasks import cancel_and_wait
from .events import RelayEvents
from .policy import SourcePolicy
from .protocols import RelayConfigSource, RelayHub
from .pull import RelayPull

log = logging.getLogger("liverelay.relay.scheduled")

Phase = Literal["before", "open", "over"]

# Pause before restarting a pull that ended on its own (doubles while it gets no media).
_RESTART_MIN_S = 1.0
_RESTART_MAX_S = 30.0
# Longest single timer: far edges are re-checked against the wall clock this often.
_MAX_TIMER_S = 300.0


# ---------------------------------------------------------------------------
# Window arithmetic (pure: wall-clock Unix seconds are passed in)
# ---------------------------------------------------------------------------


def window_phase(start_time: int | None, end_time: int | None, now: float) -> Phase:
    """Where `now` lies relative to the window; no times at all = permanent = always open."""
    if start_time is None and end_time is None:
        return "open"
    if start_time is not None and now < start_time:
        return "before"
    if end_time is not None and now >= end_time:
        return "over"
    return "open"


def next_edge(start_time: int | None, end_time: int | None, now: float) -> tuple[Phase, float | None]:
    """The current phase and the seconds until the next edge (None when nothing is ahead)."""
    phase = window_phase(start_time, end_time, now)
    if phase == "before":
        assert start_time is not None
        return phase, start_time - now
    if phase == "open" and end_time is not None:
        return phase, end_time - now
    return phase, None


@dataclass(frozen=True, slots=True)
class FixedRelaySpec:
    """What a task needs from a RelayV4Config (kept separate so tests can build one)."""

    task_id: str
    vhost: str
    domain: str
    app: str
    stream: str
    src_addrs: tuple[str, ...]
    start_time: int | None
    end_time: int | None

    @classmethod
    def from_config(cls, config: RelayV4Config) -> FixedRelaySpec:
        return cls(
            task_id=config.task_id,
            vhost=config.vhost,
            domain=config.domain,
            app=config.app,
            stream=config.stream,
            src_addrs=tuple(config.src_addrs),
            start_time=config.start_time,
            end_time=config.end_time,
        )

    @property
    def stream_key(self) -> StreamKey:
        return StreamKey(self.vhost, self.app, self.stream)

    @property
    def window(self) -> tuple[int | None, int | None]:
        return (self.start_time, self.end_time)


class FixedRelayGate(Protocol):
    """Which open tasks this node may pull (cluster.leases.LeaseManager; None = all of them)."""

    def may_run(self, task_id: str) -> bool: ...

    def wake(self) -> None:
        """A window opened or closed, or a task came or went: reconsider ownership soon."""
        ...

    def status_fields(self, task_id: str) -> dict[str, object]:
        """Extra status fields (wire names) of a task running here: its lease."""
        ...


class ScheduledPull(Protocol):
    """What a task needs from its pull (relay.pull.RelayPull; unit tests use a fake)."""

    first_media: asyncio.Event
    end_reason: str | None

    async def run(self) -> None: ...
    async def stop(self, reason: str) -> None: ...
    def update_urls(self, urls: list[str]) -> None: ...
    def status(self) -> RelayStatusRow: ...


# What the task asks its pull for; kept as a small seam so unit tests can run the
# schedule with a fake pull and the real one is used everywhere else.
PullFactory = Callable[["FixedTask"], ScheduledPull]


class FixedTask:
    """The schedule of one fixed relay and the pull it runs while its window is open."""

    def __init__(
        self,
        spec: FixedRelaySpec,
        *,
        pull_factory: PullFactory,
        emit: Callable[..., None],
        clock: Callable[[], float] = time.time,
        predecessors: tuple[asyncio.Task[None], ...] = (),
        gate: FixedRelayGate | None = None,
    ) -> None:
        self.spec = spec
        self._gate = gate
        # Cluster only: this node started the pull in the current window (its events are ours).
        self._ran_in_window = False
        self._pull_factory = pull_factory
        self._emit = emit
        self._clock = clock
        self.pull: ScheduledPull | None = None
        self._runner: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._phase: Phase | None = None  # None until the first schedule()
        self._closed = False
        # Stops of replaced pulls still in progress: a new pull of the same stream waits
        # for them, otherwise the hub would still see the old publication (StreamBusy).
        self._stopping: set[asyncio.Task[None]] = set()
        # Closes of a deleted task of the same stream (delete + create in quick succession).
        self._predecessors = predecessors
        # A pull that ended on its own (it should not) is restarted after a pause that
        # doubles per restart without media (capped); its last row is kept for status().
        self._restarts_without_media = 0
        self._last_pull_row: RelayStatusRow | None = None

    # -- schedule ---------------------------------------------------------------

    @property
    def phase(self) -> Phase | None:
        return self._phase

    @property
    def runs_here(self) -> bool:
        """The pull of this task (window open) is this node's to run."""
        return self._gate is None or self._gate.may_run(self.spec.task_id)

    def schedule(self) -> None:
        """Bring the pull in line with the window at this instant and arm the next edge."""
        if self._closed:
            return
        self._cancel_timer()
        phase, delay = next_edge(self.spec.start_time, self.spec.end_time, self._clock())
        previous = self._phase
        self._phase = phase
        if phase != previous and self._gate is not None:
            self._gate.wake()
        if phase == "open":
            if not self.runs_here:
                if self.pull is not None:
                    self._stop_pull("lease held by another node")
                    self._ran_in_window = False  # its new owner speaks for the task now
            elif self.pull is None:
                announce = previous != "open" if self._gate is None else not self._ran_in_window
                self._start_pull(announce=announce)
        else:
            if self.pull is not None:
                self._stop_pull("window ended" if phase == "over" else "rescheduled")
            if phase == "before" and previous != "before" and self._gate is None:
                self._emit("task_scheduled", self, StartTime=self.spec.start_time, EndTime=self.spec.end_time)
            if phase == "over" and previous != "over" and self._owns_events():
                reason = "window over" if previous == "open" else "window already over"
                self._emit("task_ended", self, Reason=reason)
            self._ran_in_window = False
        if delay is not None:
            # A few ms late rather than early: an early wake-up would find the same phase.
            # Far edges are re-checked every _MAX_TIMER_S: loop timers run on the monotonic
            # clock, the window on the wall clock, and the two drift apart when the wall
            # clock is stepped (NTP, VM resume).
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(min(max(0.0, delay) + 0.005, _MAX_TIMER_S), self.schedule)

    def update(self, spec: FixedRelaySpec) -> None:
        """New source list and/or window, applied at once."""
        old = self.spec
        self.spec = spec
        still_open = window_phase(spec.start_time, spec.end_time, self._clock()) == "open"
        if self.pull is not None and still_open and spec.src_addrs != old.src_addrs:
            # RelayPull keeps the origin in use when it is still listed, else switches.
            self.pull.update_urls(list(spec.src_addrs))
        if spec.window != old.window or self.pull is None:
            self.schedule()

    async def close(self, reason: str = "deleted") -> None:
        """Stop for good (config deleted or node shutting down)."""
        was_ended = self._phase == "over" or self._closed
        self._closed = True
        self._cancel_timer()
        if self.pull is not None:
            self._stop_pull(reason)
        if not was_ended and self._owns_events():
            self._emit("task_ended", self, Reason=reason)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    def _owns_events(self) -> bool:
        """One node speaks for a task: the only one, or in a cluster the one that ran it."""
        return self._gate is None or self._ran_in_window

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- the pull -----------------------------------------------------------------

    def _start_pull(self, *, announce: bool) -> None:
        pull = self._pull_factory(self)
        self.pull = pull
        self._ran_in_window = True
        pending = tuple(self._stopping) + tuple(t for t in self._predecessors if not t.done())
        self._runner = asyncio.get_running_loop().create_task(
            self._run_pull(pull, pending), name=f"fixed-relay-{self.spec.task_id}"
        )
        if announce:  # the window opened (not a restart of a pull that ended early)
            self._emit("task_started", self)

    async def _run_pull(self, pull: ScheduledPull, pending: tuple[asyncio.Task[None], ...]) -> None:
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        try:
            await pull.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("fixed relay %s: pull crashed", self.spec.task_id)
        finally:
            if self.pull is pull and not self._closed:
                # A fixed pull only returns when stopped; if it ever ends on its own while
                # the window is open, a fresh one starts after a growing pause.
                self._remember_ended(pull)
                self.pull = None
                self._runner = None
                if self._phase == "open":
                    if pull.first_media.is_set():
                        self._restarts_without_media = 0
                    delay = backoff_delay(
                        self._restarts_without_media, base=_RESTART_MIN_S, cap=_RESTART_MAX_S
                    )
                    self._restarts_without_media += 1
                    log.warning(
                        "fixed relay %s: pull ended on its own (%s); restarting in %.0fs",
                        self.spec.task_id,
                        pull.end_reason,
                        delay,
                    )
                    self._cancel_timer()
                    self._timer = asyncio.get_running_loop().call_later(delay, self.schedule)

    def _remember_ended(self, pull: ScheduledPull) -> None:
        try:
            row = pull.status()
        except Exception:
            log.exception("fixed relay %s: status of the ended pull failed", self.spec.task_id)
            row = RelayStatusRow()
        # What stays true of an ended pull; its state, rate and viewers do not.
        self._last_pull_row = row.model_copy(
            update={"last_error": row.last_error or pull.end_reason or "", "up_since": None, "bitrate": 0}
        )

    def _stop_pull(self, reason: str) -> None:
        pull, runner = self.pull, self._runner
        self.pull = None
        self._runner = None
        if pull is None:
            return
        stopper = asyncio.get_running_loop().create_task(self._stop(pull, runner, reason))
        self._stopping.add(stopper)
        stopper.add_done_callback(self._stopping.discard)

    @staticmethod
    async def _stop(pull: ScheduledPull, runner: asyncio.Task[None] | None, reason: str) -> None:
        try:
            async with asyncio.timeout(5.0):
                await pull.stop(reason)
        except Exception:
            log.exception("stopping fixed relay pull failed")
        if runner is not None and not runner.done():
            await cancel_and_wait(runner, "the fixed relay pull runner", logger=log)

    # -- status ---------------------------------------------------------------------

    @property
    def state(self) -> RelayState:
        if self._phase == "over" or self._closed:
            return RelayState.ENDED
        if self._phase == "before":
            return RelayState.SCHEDULED
        if self.pull is None:
            return RelayState.RETRYING
        pull_state = self.pull.status().state
        if pull_state in (RelayState.STARTING, RelayState.UP, RelayState.RETRYING):
            return pull_state
        if pull_state == RelayState.FAILING_OVER:  # lost its origin, trying the others
            return RelayState.RETRYING
        return RelayState.STARTING

    def status(self, viewers: int = 0) -> RelayStatusRow:
        """The task's row: its pull's counters (or the last pull's), its own schedule fields."""
        spec = self.spec
        pull_row = self.pull.status() if self.pull is not None else self._last_pull_row
        row = RelayStatusRow(
            type=RelayType.FIXED,
            vhost=spec.vhost,
            app=spec.app,
            stream=spec.stream,
            state=self.state,
            source_url=pull_row.source_url if pull_row is not None else "",
            source_index=pull_row.source_index if pull_row is not None else None,
            attempts=pull_row.attempts if pull_row is not None else 0,
            last_error=pull_row.last_error if pull_row is not None else "",
            up_since=pull_row.up_since if pull_row is not None else None,
            bytes=pull_row.bytes if pull_row is not None else 0,
            bitrate=pull_row.bitrate if pull_row is not None else 0,
            frames=pull_row.frames if pull_row is not None else 0,
            viewers=viewers,
            switches=pull_row.switches if pull_row is not None else 0,
            task_id=spec.task_id,
            domain=spec.domain,
            start_time=spec.start_time,
            end_time=spec.end_time,
            next_start=spec.start_time if self._phase == "before" else None,
            # Status is for showing: secrets masked (ListRelaySourceV4 returns the config as set).
            src_addrs=[redact_url(url) for url in spec.src_addrs],
        )
        if self._gate is not None and self._phase == "open":
            row = row.model_copy(update=self._gate.status_fields(spec.task_id))
        return row


class FixedRelayScheduler:
    """All fixed-relay tasks of a node, kept in step with the store."""

    def __init__(
        self,
        hub: RelayHub,
        store: RelayConfigSource,
        settings: RelaySettings,
        events: RelayEvents | None,
        *,
        pull_factory: PullFactory | None = None,
        source_policy: SourcePolicy | None = None,
        gate: FixedRelayGate | None = None,
    ) -> None:
        self.hub = hub
        self.gate = gate
        self.store = store
        self.settings = settings
        self.events = events
        self._pull_factory: PullFactory = pull_factory or self._make_pull
        # The same CIDR allow/deny rules as the play-triggered relays: RelayManager passes
        # its instance; standalone (tests) we build our own from the same settings.
        self.source_policy = source_policy if source_policy is not None else SourcePolicy(settings)
        self.tasks: dict[tuple[str, str, str], FixedTask] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        store = self.store
        # Subscribe first so a change committed while we load is not lost (applying a
        # record twice is harmless: the second one is an update with nothing new).
        self._unsubscribe = store.bus.subscribe(self._on_change)
        configs, _total = await store.list_relay_v4()
        for config in configs:
            self._apply(config)
        log.info("fixed relays: %d task(s) loaded", len(configs))

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks = list(self.tasks.values())
        self.tasks.clear()
        # Every task is closed even when one fails (a task left open may leave an ffmpeg
        # source running); each failure is logged with its task.
        results = await asyncio.gather(*(t.close("node stopping") for t in tasks), return_exceptions=True)
        for task, result in zip(tasks, results, strict=True):
            if isinstance(result, BaseException):
                log.error("fixed relay %s: close failed", task.spec.task_id, exc_info=result)
        if self._closing:
            for result in await asyncio.gather(*self._closing, return_exceptions=True):
                if isinstance(result, BaseException):
                    log.error("fixed relay: closing a deleted task failed", exc_info=result)

    def status(self) -> list[RelayStatusRow]:
        return [
            task.status(viewers=self._viewers(task.spec.stream_key))
            for task in self.tasks.values()
            if task.phase != "open" or task.runs_here
        ]

    # -- what the lease manager reads (cluster.leases.LeasedTasks) ----------------------

    def open_tasks(self) -> dict[str, bool]:
        """Task id -> its pull here has media, for every task whose window is open."""
        out: dict[str, bool] = {}
        for task in self.tasks.values():
            if task.phase == "open":
                pull = task.pull
                out[task.spec.task_id] = pull is not None and pull.first_media.is_set()
        return out

    def known_tasks(self) -> frozenset[str]:
        return frozenset(task.spec.task_id for task in self.tasks.values())

    def reconsider(self) -> None:
        """Start or stop open tasks' pulls to match the gate (ownership changed)."""
        for task in list(self.tasks.values()):
            if task.phase == "open" and (task.pull is not None) != task.runs_here:
                task.schedule()

    # -- config changes -------------------------------------------------------------

    def _on_change(self, event: ChangeEvent) -> None:
        if event.entity != "relay_v4":
            return
        if event.op == "deleted" or event.value is None:
            vhost, app, stream = event.key  # relay_v4 keys: (vhost, app, stream)
            self._remove((vhost, app, stream))
        else:
            self._apply(event.value)

    def _apply(self, config: RelayV4Config) -> None:
        spec = FixedRelaySpec.from_config(config)
        key = (spec.vhost, spec.app, spec.stream)
        task = self.tasks.get(key)
        if task is not None and task.spec.task_id == spec.task_id:
            task.update(spec)
            return
        if task is not None:  # same stream, new config identity: replace
            self._remove(key)
        # A re-created stream must not start before a deleted one has released it.
        task = FixedTask(
            spec,
            pull_factory=self._pull_factory,
            emit=self._emit,
            predecessors=tuple(self._closing),
            gate=self.gate,
        )
        self.tasks[key] = task
        task.schedule()

    def _remove(self, key: tuple[str, str, str]) -> None:
        task = self.tasks.pop(key, None)
        if task is None:
            return
        closer = asyncio.get_running_loop().create_task(task.close("deleted"))
        self._closing.add(closer)
        closer.add_done_callback(self._closing.discard)
        if self.gate is not None:
            self.gate.wake()  # its lease is released by the next round

    # -- the seams to the hub, the pull and the events --------------------------------

    def _make_pull(self, task: FixedTask) -> RelayPull:
        hub = self.hub
        key = task.spec.stream_key
        owner = f"fixed-relay:{task.spec.task_id}"

        def publication_factory() -> Publication:
            return hub.publish(key, kind=SourceKind.RELAY_FIXED, owner=owner)

        return RelayPull(
            key=key,
            kind="fixed",
            urls=list(task.spec.src_addrs),
            publication_factory=publication_factory,
            settings=self.settings,
            events=self.events,
            source_policy=self.source_policy,
            viewers=lambda: self._viewers(key),
            task_id=task.spec.task_id,
        )

    def _viewers(self, key: StreamKey) -> int:
        stream = self.hub.get(key)
        return int(stream.viewer_count) if stream is not None else 0

    def _emit(self, event: str, task: FixedTask, **fields: Any) -> None:
        spec = task.spec
        if self.events is None:
            log.info("fixed relay %s %s/%s: %s %s", spec.task_id, spec.app, spec.stream, event, fields)
            return
        try:
            self.events.emit(
                event,
                kind="fixed",
                vhost=spec.vhost,
                app=spec.app,
                stream=spec.stream,
                TaskId=spec.task_id,
                Domain=spec.domain,
                **fields,
            )
        except Exception:
            # The schedule goes on (an event is not worth a stuck window), but the fault is seen.
            log.exception("fixed relay %s: emitting %s failed", spec.task_id, event)
