"""RelayPull: one stream pulled from an ordered list of origins into the hub, with failover.

Shared by the play-triggered (V3, relay/ondemand.py) and the fixed (V4, relay/scheduled.py)
relays. Interface (stable; V4 builds on it):

    pull = RelayPull(key=StreamKey, kind="play"|"fixed", urls=[...],
                     publication_factory=lambda: hub.publish(key, kind=..., owner=...),
                     settings=RelaySettings, events=RelayEvents | None,
                     # optional:
                     source_policy=SourcePolicy | None,   # default: built from settings
                     viewers=lambda: int,                 # for status()["Viewers"]
                     task_id=str | None,                  # V4 TaskId in status()
                     open_source=sources.open_source)     # URL -> pull function
    task = asyncio.create_task(pull.run())
    await pull.first_media.wait()     # set when the first media frame arrived
    pull.update_urls([...])           # source in use still listed -> untouched; else switch now
    await pull.stop("reason")         # closes the source and the Publication (viewers get EOF)
    pull.status() -> dict             # one DescribeRelayStatus row (PascalCase)
    pull.ended: asyncio.Event         # set when run() has returned
    pull.end_reason: str | None       # why it ended ("stopped: ...", "unavailable", ...)

Behaviour:
- Origins are tried in order through FailoverPolicy (next on failure, capped exponential
  backoff after a full failed round, reset on success).
- An attempt fails on: the puller raising SourceError, a clean end of stream, no first
  frame within connect_timeout_s + first_frame_timeout_s, or no frame for
  no_media_timeout_s once up. The source policy (CIDR allow/deny) is checked first.
- The hub Publication is created lazily at the first media frame (so a pull that never
  gets media never makes the stream look present). After a mid-stream failure the
  Publication stays open; the next origin's first frame is preceded by
  Publication.discontinuity() so viewers stay connected. If no origin delivers within
  start_timeout_s, the Publication is closed (viewers get EOF): a "play" pull then ends,
  a "fixed" pull keeps retrying and opens a new Publication when media returns.
- "play" only: run() returns when the first full round fails before any media (the
  waiting viewers get their error at once), or after start_timeout_s without media.
- Fail-back (settings.failback): while up on origin i > 0, every
  failback_probe_interval_s the better origins are probed best first into a staging
  sink; the first one that delivers a video keyframe takes over at that keyframe
  (discontinuity, its sequence headers and metadata, the keyframe), the old source is
  closed. Audio-only origins are never probed back. Each better origin has its own
  probe time: one that dies within the flap window after a fail-back is probed at a
  doubled (capped) interval until it stays up (FailoverPolicy hold-down).
- A publisher or a fixed relay taking over a "play" pull's stream
  (Publication.on_preempted) ends the pull quietly.
- Secrets: status() and every event show source URLs through sources.base.redact_url /
  redact_text; only the puller gets the real URL.
- Cancellation: waits use asyncio.timeout / asyncio.wait, never wait_for (which, on
  3.11, can swallow a cancel that lands as the awaited thing completes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from ..config import RelaySettings
from ..media.frame import Frame, FrameKind
from ..sources import PullFunction, SourceError
from ..sources import open_source as default_open_source
from ..sources.base import redact_text, redact_url
from .events import RelayEvents, rfc3339
from .failover import FailoverPolicy
from .policy import SourcePolicy

log = logging.getLogger("liverelay.relay.pull")

# Upper bound of one supervisor sleep: bitrate sampling and deadline checks stay fresh.
_MAX_TICK_S = 1.0


class _EndPull(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Attempt:
    """One connection to one origin; its sink is the puller's FrameSink."""

    def __init__(self, pull: RelayPull, index: int, url: str, *, staging: bool) -> None:
        self.pull = pull
        self.index = index
        self.url = url
        self.staging = staging
        self.task: asyncio.Task[None] | None = None
        self.started = time.monotonic()
        self.first_frame_at: float | None = None
        self.last_frame_at: float | None = None
        # Why the relay dropped this attempt itself (config change, stop) - not an origin failure.
        self.abandoned: str | None = None
        # Staging (fail-back probe): latest sequence headers and metadata before the keyframe.
        self.staged: dict[tuple[int, bool], Frame] = {}
        # Set when the relay itself failed the attempt (e.g. the hub refused the stream).
        self.error: SourceError | None = None

    def on_frame(self, frame: Frame) -> None:
        self.pull._on_frame(self, frame)

    def cancel(self, why: str | None = None) -> None:
        if why is not None and self.abandoned is None:
            self.abandoned = why
        if self.task is not None and not self.task.done():
            self.task.cancel()


class RelayPull:
    def __init__(
        self,
        *,
        key: Any,
        kind: str,
        urls: list[str],
        publication_factory: Callable[[], Any],
        settings: RelaySettings,
        events: RelayEvents | None = None,
        source_policy: SourcePolicy | None = None,
        viewers: Callable[[], int] | None = None,
        task_id: str | None = None,
        open_source: Callable[[str], PullFunction] = default_open_source,
    ) -> None:
        if kind not in ("play", "fixed"):
            raise ValueError(f"kind must be 'play' or 'fixed', not {kind!r}")
        if not urls:
            raise ValueError("a relay needs at least one source URL")
        self.key = key
        self.kind = kind
        self.urls = list(urls)
        self.publication_factory = publication_factory
        self.settings = settings
        self.events = events or RelayEvents()
        self.source_policy = source_policy if source_policy is not None else SourcePolicy(settings)
        self.viewers = viewers
        self.task_id = task_id
        self.open_source = open_source

        self.policy = FailoverPolicy(
            len(self.urls),
            backoff_initial_s=settings.backoff_initial_s,
            backoff_max_s=settings.backoff_max_s,
            failback_interval_s=settings.failback_probe_interval_s,
        )
        self.first_media = asyncio.Event()
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.state = "starting"
        # Set by the V3 manager while the pull waits out its linger (shown in status()).
        self.lingering = False

        self._publication: Any = None
        self._preempted = False
        self._active: _Attempt | None = None
        self._probe: _Attempt | None = None
        self._need_discontinuity = False
        self._switch_reason = "failover"
        # The origin that was up before the current switch (FromUrl in "switched").
        self._previous_url: str | None = None
        self._ever_up = False
        self._down_since: float | None = None
        self._stop_reason: str | None = None
        self._running = False
        self._wake = asyncio.Event()
        self._run_started = time.monotonic()

        # Counters for status().
        self.attempts = 0
        self.switches = 0
        self.frames = 0
        self.bytes = 0
        self.last_error: str | None = None
        self._up_since_wall: float | None = None
        self._rate_bytes = 0
        self._rate_time = time.monotonic()
        self.bitrate = 0.0

    # ---- public API ---------------------------------------------------------------

    @property
    def source_index(self) -> int:
        return self._active.index if self._active is not None else self.policy.index

    @property
    def source_url(self) -> str:
        index = self.source_index
        return self.urls[index] if index < len(self.urls) else ""

    def update_urls(self, urls: list[str]) -> None:
        """New origin list: the source in use stays if still listed; otherwise switch now."""
        urls = list(urls)
        if not urls or urls == self.urls:
            return
        active = self._active
        current = active.url if active is not None else None
        self.urls = urls
        self._cancel_probe("config")
        if current is not None and current in urls:
            index = urls.index(current)
            assert active is not None
            active.index = index
            self.policy.replace_sources(len(urls), index)
            if active.first_frame_at is not None:
                # Untouched means untouched: the (renumbered) better origins are probed
                # from one interval from now, not at once.
                self.policy.on_up(time.monotonic())
        else:
            self.policy.replace_sources(len(urls), None)
            if active is not None:
                self._switch_reason = "config"
                active.cancel("config")
        self._wake.set()

    async def stop(self, reason: str) -> None:
        """End the pull: close the source and the Publication (viewers get EOF)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._wake.set()
        if self._running:
            # asyncio.timeout, not wait_for: on 3.11 wait_for returns normally when the
            # caller is cancelled just as `ended` is set, and the caller's cancel is lost.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self.ended.wait()
        elif not self.ended.is_set():
            self._finish(f"stopped: {reason}")

    def status(self) -> dict[str, Any]:
        key = self.key
        viewers = 0
        if self.viewers is not None:
            with contextlib.suppress(Exception):
                viewers = int(self.viewers())
        state = self.state
        if self.lingering and state == "up":
            state = "lingering"
        return {
            "Type": self.kind,
            "Vhost": getattr(key, "vhost", ""),
            "App": getattr(key, "app", ""),
            "Stream": getattr(key, "name", ""),
            "State": state,
            "SourceUrl": redact_url(self.source_url),
            "SourceIndex": self.source_index,
            "Attempts": self.attempts,
            "LastError": self.last_error,
            "UpSince": rfc3339(self._up_since_wall),
            "Bytes": self.bytes,
            "Bitrate": int(self.bitrate),
            "Frames": self.frames,
            "Viewers": viewers,
            "Switches": self.switches,
            "TaskId": self.task_id,
        }

    async def run(self) -> None:
        """Pull until stop(), cancellation, preemption, or (play only) no origin works."""
        if self.ended.is_set():
            return
        self._running = True
        self._run_started = time.monotonic()
        self.events.pull_started(self.kind)
        reason = "stopped"
        try:
            await self._loop()
        except _EndPull as end:
            reason = end.reason
        except asyncio.CancelledError:
            reason = f"stopped: {self._stop_reason or 'cancelled'}"
            raise
        finally:
            await self._close_attempts()
            self.events.pull_ended(self.kind)
            self._finish(reason)

    # ---- the supervisor -----------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            self._check_stop()
            now = time.monotonic()
            self._check_hold(now)
            if self.policy.not_before > now:
                self.state = "retrying"
                await self._sleep(min(self.policy.not_before, self._hold_deadline()) - now)
                continue
            attempt = self._start_attempt(self.policy.index, staging=False)
            self._active = attempt
            await self._supervise(attempt)

    def _check_stop(self) -> None:
        if self._preempted:
            raise _EndPull("preempted")
        if self._stop_reason is not None:
            raise _EndPull(f"stopped: {self._stop_reason}")

    def _hold_deadline(self) -> float:
        """When waiting for media must give up (inf when nothing waits)."""
        if not self._ever_up and self.kind == "play":
            return self._run_started + self.settings.start_timeout_s
        if self._down_since is not None and self._publication is not None:
            return self._down_since + self.settings.start_timeout_s
        return float("inf")

    def _check_hold(self, now: float) -> None:
        if now < self._hold_deadline():
            return
        if not self._ever_up:
            raise _EndPull("start_timeout")
        # Viewers have been held without media for start_timeout_s: let them go.
        self._close_publication("origins unavailable")
        if self.kind == "play":
            raise _EndPull("origins_unavailable")
        self._need_discontinuity = False

    async def _sleep(self, seconds: float) -> None:
        # The caller cleared _wake before its checks, so no wake-up is lost in between.
        # asyncio.timeout, not wait_for: wait_for (3.11) swallows a cancel of run() that
        # lands as _wake is set, and the pull would keep running after its task was cancelled.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, min(seconds, _MAX_TICK_S))):
                await self._wake.wait()

    async def _supervise(self, attempt: _Attempt) -> None:
        """Watch the active attempt (which fail-back may replace) until it fails."""
        s = self.settings
        while True:
            self._wake.clear()
            self._check_stop()
            active = self._active
            assert active is not None
            now = time.monotonic()
            self._sample_bitrate(now)
            if active.task is not None and active.task.done():
                self._attempt_failed(active, self._outcome(active), now)
                return
            if active.first_frame_at is None:
                deadline = active.started + s.connect_timeout_s + s.first_frame_timeout_s
                if now >= deadline:
                    self._attempt_failed(active, SourceError("timeout", "no media from origin"), now)
                    return
            else:
                assert active.last_frame_at is not None
                deadline = active.last_frame_at + s.no_media_timeout_s
                if now >= deadline:
                    msg = f"no media for {s.no_media_timeout_s:g}s"
                    self._attempt_failed(active, SourceError("timeout", msg), now)
                    return
            self._check_hold(now)
            deadline = min(deadline, self._hold_deadline(), self._manage_failback(now))
            await self._sleep(deadline - now)

    def _outcome(self, attempt: _Attempt) -> SourceError:
        assert attempt.task is not None
        if attempt.error is not None:
            return attempt.error
        if attempt.task.cancelled():
            return SourceError("eof", f"attempt {attempt.abandoned or 'cancelled'}")
        exc = attempt.task.exception()
        if exc is None:
            return SourceError("eof", "origin ended the stream")
        if isinstance(exc, SourceError):
            return exc
        return SourceError("protocol", f"{type(exc).__name__}: {exc}")

    def _attempt_failed(self, attempt: _Attempt, error: SourceError, now: float) -> None:
        attempt.cancel()
        self._active = None
        self._cancel_probe("failover")
        if attempt.first_frame_at is not None:
            self.state = "failing_over"
            self._previous_url = attempt.url
            self._up_since_wall = None
            if self._down_since is None:
                self._down_since = now
            if self._publication is not None:
                self._need_discontinuity = True
        if attempt.abandoned is not None:
            # The relay dropped it itself (config change): not the origin's fault.
            return
        self.last_error = redact_text(str(error))
        self.events.emit(
            "origin_failed",
            **self._ids(),
            SourceUrl=attempt.url,
            SourceIndex=attempt.index,
            Reason=error.reason,
            Error=error.message,
        )
        self.policy.on_failure(now)
        if self.kind == "play" and not self._ever_up and self.policy.round_exhausted:
            raise _EndPull("unavailable")
        if self.policy.not_before > now:
            self.state = "retrying"
        elif self._publication is not None:
            self.state = "failing_over"
        else:
            self.state = "starting"

    def _start_attempt(self, index: int, *, staging: bool) -> _Attempt:
        url = self.urls[index]
        attempt = _Attempt(self, index, url, staging=staging)
        attempt.task = asyncio.get_running_loop().create_task(
            self._pull_one(attempt), name=f"relay-pull {redact_url(url)}"
        )
        attempt.task.add_done_callback(lambda _t: self._wake.set())
        if not staging:
            self.attempts += 1
        return attempt

    async def _pull_one(self, attempt: _Attempt) -> None:
        s = self.settings
        await self.source_policy.check_url(attempt.url, timeout_s=s.connect_timeout_s)
        pull = self.open_source(attempt.url)
        await pull(attempt.url, attempt, settings=s)

    # ---- frames -------------------------------------------------------------------

    def _on_frame(self, attempt: _Attempt, frame: Frame) -> None:
        if attempt is not self._active and attempt is not self._probe:
            return  # a cancelled attempt still draining
        now = time.monotonic()
        size = len(frame.payload)
        self._rate_bytes += size
        self.events.bytes_in(size)
        first = attempt.first_frame_at is None
        if first:
            attempt.first_frame_at = now
        attempt.last_frame_at = now
        if attempt.staging:
            self._on_probe_frame(attempt, frame)
            return
        if first and not self._on_source_up(attempt, now):
            return
        if self._publication is None:
            # (V4 teammate) the hub refused this attempt (StreamBusy) and it is being
            # cancelled; frames already in flight must not reach _write (None.write).
            return
        self._write(frame)

    def _on_source_up(self, attempt: _Attempt, now: float) -> bool:
        """The active attempt delivered its first frame: it is the source now."""
        if self._publication is None:
            try:
                self._publication = self.publication_factory()
            except Exception as exc:
                # Typically hub.StreamBusy: a publisher owns the stream. A "play" pull is
                # not needed any more; a "fixed" one retries with backoff.
                attempt.error = SourceError("busy", f"the hub refused the stream: {exc}")
                attempt.cancel()
                if self.kind == "play":
                    self._preempted = True
                self._wake.set()
                return False
            with contextlib.suppress(AttributeError, TypeError):
                self._publication.on_preempted = self._on_preempted
            self._need_discontinuity = False
        elif self._need_discontinuity:
            self._publication.discontinuity()
            self._need_discontinuity = False
        self.policy.on_success()
        self.state = "up"
        self._down_since = None
        self._up_since_wall = time.time()
        self.policy.on_up(now)
        if not self._ever_up:
            self._ever_up = True
            self.events.emit(
                "relay_started",
                **self._ids(),
                SourceUrl=attempt.url,
                SourceIndex=attempt.index,
                TimeToFirstFrameMs=round((now - self._run_started) * 1000),
            )
        else:
            self.switches += 1
            self.events.emit(
                "switched",
                **self._ids(),
                FromUrl=self._previous_url,
                ToUrl=attempt.url,
                SourceIndex=attempt.index,
                Reason=self._switch_reason,
            )
        self._switch_reason = "failover"
        self.first_media.set()
        # The supervisor sleeps on the pre-media deadline (up to _MAX_TICK_S): wake it so
        # it re-plans for an up source (no-media watchdog, the fail-back probe times).
        self._wake.set()
        return True

    def _write(self, frame: Frame) -> None:
        self.frames += 1
        self.bytes += len(frame.payload)
        try:
            self._publication.write(frame)
        except Exception as exc:
            log.warning("relay %s: publication refused a frame (%s); stopping", self.key, exc)
            if self._stop_reason is None:
                self._stop_reason = f"publication error: {exc}"
            self._wake.set()

    def _on_preempted(self, *_args: object) -> None:
        """A local publisher took the stream over: end quietly, the Publication is not ours."""
        self._preempted = True
        self._publication = None
        self._wake.set()

    # ---- fail-back ----------------------------------------------------------------

    def _manage_failback(self, now: float) -> float:
        """Start/retire probes of better origins; return when to look again."""
        active = self._active
        if not self.settings.failback or active is None or active.first_frame_at is None or active.index == 0:
            self._cancel_probe("not needed")
            return float("inf")
        policy = self.policy
        policy.check_stable(now)
        probe = self._probe
        if probe is not None:
            probe_deadline = probe.started + self._probe_budget()
            if probe.task is not None and probe.task.done():
                self._probe = None
            elif now >= probe_deadline:
                self._cancel_probe("probe timeout")
            else:
                return probe_deadline
        # Each better origin has its own probe time: an origin that flapped right after a
        # fail-back waits out its (doubled) hold-down while the others are still probed.
        due = [i for i in policy.due_probes(now) if i < len(self.urls)]
        if not due:
            return policy.next_probe_at()
        index = due[0]
        policy.on_probe(index, now)
        self._probe = self._start_attempt(index, staging=True)
        return now + self._probe_budget()

    def _probe_budget(self) -> float:
        # Connect, first frame, then up to a GOP-ish wait for the keyframe to swap at.
        s = self.settings
        return s.connect_timeout_s + s.first_frame_timeout_s + s.no_media_timeout_s

    def _on_probe_frame(self, probe: _Attempt, frame: Frame) -> None:
        if frame.config or frame.kind == FrameKind.DATA:
            probe.staged[(int(frame.kind), frame.config)] = frame
            return
        if not (frame.kind == FrameKind.VIDEO and frame.keyframe):
            return  # nothing before the first keyframe is useful to viewers
        # Swap at this keyframe: viewers continue from the better origin.
        old = self._active
        self._probe = None
        probe.staging = False
        self._active = probe
        now = time.monotonic()
        self.policy.switch_to(probe.index, failback_at=now)
        if old is not None:
            old.cancel("failback")
        if self._publication is not None:
            self._publication.discontinuity()
            for staged in sorted(probe.staged.values(), key=lambda f: f.kind != FrameKind.DATA):
                self._write(staged)
        probe.staged = {}
        self.switches += 1
        self._up_since_wall = time.time()
        self.policy.on_up(now)
        self.state = "up"
        self.events.emit(
            "switched",
            **self._ids(),
            FromUrl=old.url if old is not None else None,
            ToUrl=probe.url,
            SourceIndex=probe.index,
            Reason="failback",
        )
        self._write(frame)
        self._wake.set()

    def _cancel_probe(self, why: str) -> None:
        if self._probe is not None:
            self._probe.cancel(why)
            self._probe = None

    # ---- bookkeeping --------------------------------------------------------------

    def _sample_bitrate(self, now: float) -> None:
        elapsed = now - self._rate_time
        if elapsed >= 1.0:
            self.bitrate = self._rate_bytes * 8 / elapsed
            self._rate_bytes = 0
            self._rate_time = now

    def _ids(self) -> dict[str, Any]:
        key = self.key
        ids: dict[str, Any] = {
            "kind": self.kind,
            "vhost": getattr(key, "vhost", ""),
            "app": getattr(key, "app", ""),
            "stream": getattr(key, "name", ""),
        }
        if self.task_id is not None:
            ids["TaskId"] = self.task_id
        return ids

    def _close_publication(self, reason: str) -> None:
        publication, self._publication = self._publication, None
        if publication is not None and not self._preempted:
            try:
                publication.close(reason)
            except Exception:
                log.exception("relay %s: closing the publication failed", self.key)

    async def _close_attempts(self) -> None:
        attempts = [a for a in (self._active, self._probe) if a is not None]
        self._active = None
        self._probe = None
        for attempt in attempts:
            attempt.cancel("stopped")
        tasks = {a.task for a in attempts if a.task is not None}
        if not tasks:
            return
        # asyncio.wait never raises the attempts' own CancelledError/exceptions but does
        # propagate a cancel of run() itself (suppressing CancelledError around the await,
        # as before, also swallowed that one: run() returned normally after task.cancel()).
        done, _pending = await asyncio.wait(tasks, timeout=2.0)
        for task in done:
            if not task.cancelled():
                task.exception()  # retrieved: no "exception was never retrieved" noise

    def _finish(self, reason: str) -> None:
        if self.ended.is_set():
            return
        self._rate_bytes = 0
        self._close_publication(reason)
        self.state = "ended"
        self.end_reason = reason
        self.bitrate = 0.0
        self._up_since_wall = None
        self.events.emit("stopped", **self._ids(), Reason=reason)
        self.ended.set()
