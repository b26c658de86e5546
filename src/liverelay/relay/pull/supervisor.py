"""RelayPull, the supervisor: connect to one origin after another, read, fail over.

The contract and behaviour are described in relay/pull/__init__.py; fail-back lives in
failback.py, the status row in status.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from ...config import RelaySettings
from ...hub import Publication, StreamBusy, StreamKey
from ...media.frame import Frame, FrameKind
from ...schemas.status import RelayState, RelayStatusRow, RelayType
from ...sources import PullFunction, SourceError
from ...sources import open_source as default_open_source
from ...sources.base import redact_text, redact_url
from ...tasks import cancel_all_and_wait
from ...wakegrid import next_tick
from ..events import RelayEvents
from ..failover import FailoverPolicy
from ..policy import SourcePolicy
from .failback import Failback
from .status import status_row

log = logging.getLogger("liverelay.relay.pull")

# Upper bound of one supervisor sleep: bitrate sampling and deadline checks stay fresh.
_MAX_TICK_S = 1.0
# A single origin that ended the stream cleanly after delivering media for at least this
# long is reconnected at once (no backoff); a shorter life takes the backoff, so an origin
# that sends a frame and hangs up cannot make a reconnect loop.
_CLEAN_END_MIN_UP_S = 1.0
# A media timestamp this far below the highest one seen starts a new timeline (the origin
# restarted its clock without telling): the slow-origin window restarts with it.
_TS_JUMP_BACK_MS = 5000
_MEDIA_KINDS = (FrameKind.AUDIO, FrameKind.VIDEO)
_DATA = FrameKind.DATA


class _EndPull(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Attempt:
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
        # The origin's publisher left and this connection waits for it (one origin only):
        # the next frame starts a new timeline (a discontinuity for the hub).
        self.republish_pending = False
        # Slow-origin check: (monotonic time, highest media timestamp) at the window start,
        # and the highest media timestamp seen (ms, origin's clock).
        self.rate_mark: tuple[float, int] | None = None
        self.max_ts: int | None = None

    def on_frame(self, frame: Frame) -> None:
        self.pull._on_frame(self, frame)

    def on_frames(self, frames: list[Frame]) -> None:
        self.pull._on_frames(self, frames)

    def on_unpublished(self) -> bool:
        return self.pull._on_unpublished(self)

    def cancel(self, why: str | None = None) -> None:
        if why is not None and self.abandoned is None:
            self.abandoned = why
        if self.task is not None and not self.task.done():
            self.task.cancel()


class RelayPull:
    def __init__(
        self,
        *,
        key: StreamKey,
        kind: str,
        urls: list[str],
        publication_factory: Callable[[], Publication],
        settings: RelaySettings,
        events: RelayEvents | None = None,
        source_policy: SourcePolicy | None = None,
        viewers: Callable[[], int] | None = None,
        task_id: str | None = None,
        open_source: Callable[[str], PullFunction] = default_open_source,
        candidates: Callable[[], list[str]] | None = None,
        hold_timeout_s: float | None = None,
    ) -> None:
        if kind not in ("play", "fixed"):
            raise ValueError(f"kind must be 'play' or 'fixed', not {kind!r}")
        if not urls:
            raise ValueError("a relay needs at least one source URL")
        self.key = key
        self.kind = RelayType(kind)
        self.urls = list(urls)
        self.publication_factory = publication_factory
        self.settings = settings
        self.events = events or RelayEvents()
        self.source_policy = source_policy if source_policy is not None else SourcePolicy(settings)
        self.viewers = viewers
        self.task_id = task_id
        self.open_source = open_source
        # Re-read before every attempt and at every supervisor tick (a play pull from cluster
        # peers: who holds the stream changes); an empty answer keeps the current list.
        self.candidates = candidates
        # How long viewers are held without media once the pull was up (default
        # start_timeout_s; longer for a peer pull waiting out a fixed relay's takeover).
        self.hold_timeout_s = settings.start_timeout_s if hold_timeout_s is None else hold_timeout_s

        self.policy = FailoverPolicy(
            len(self.urls),
            backoff_initial_s=settings.backoff_initial_s,
            backoff_max_s=settings.backoff_max_s,
            failback_interval_s=settings.failback_probe_interval_s,
        )
        self.first_media = asyncio.Event()
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.state: RelayState = RelayState.STARTING
        # Set by the V3 manager while the pull waits out its linger (shown in status()).
        self.lingering = False

        self._publication: Publication | None = None
        self._preempted = False
        self._active: Attempt | None = None
        self.failback = Failback(self)
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
        # Bytes received and not yet added to the relay metrics (added once per tick).
        self._metric_bytes = 0

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
        self.failback.cancel("config")
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

    def status(self) -> RelayStatusRow:
        """One DescribeRelayStatus row (built in status.py)."""
        return status_row(self)

    @property
    def up_since_wall(self) -> float | None:
        """Wall-clock time the source in use came up (None while not up)."""
        return self._up_since_wall

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
            self._refresh_candidates()
            now = time.monotonic()
            self._check_hold(now)
            if self.policy.not_before > now:
                self.state = RelayState.RETRYING
                await self._sleep(min(self.policy.not_before, self._hold_deadline()) - now)
                continue
            attempt = self.start_attempt(self.policy.index, staging=False)
            self._active = attempt
            await self._supervise(attempt)

    def _refresh_candidates(self) -> None:
        if self.candidates is None:
            return
        try:
            urls = self.candidates()
        except Exception:
            # The list stays as it was; the fault is seen (a bug, not a network error).
            log.exception("relay %s: re-reading the source candidates failed", self.key)
            return
        self.update_urls(urls)

    def _check_stop(self) -> None:
        if self._preempted:
            raise _EndPull("preempted")
        if self._stop_reason is not None:
            raise _EndPull(f"stopped: {self._stop_reason}")

    def _hold_deadline(self) -> float:
        """When waiting for media must give up (inf when nothing waits)."""
        if not self._ever_up and self.kind == RelayType.PLAY:
            return self._run_started + self.settings.start_timeout_s
        if self._down_since is not None and self._publication is not None:
            return self._down_since + self.hold_timeout_s
        return float("inf")

    def _check_hold(self, now: float) -> None:
        if now < self._hold_deadline():
            return
        if not self._ever_up:
            raise _EndPull("start_timeout")
        # Viewers have been held without media for start_timeout_s: let them go.
        self._close_publication("origins unavailable")
        if self.kind == RelayType.PLAY:
            raise _EndPull("origins_unavailable")
        self._need_discontinuity = False

    async def _sleep(self, seconds: float) -> None:
        # The caller cleared _wake before its checks, so no wake-up is lost in between.
        # asyncio.timeout, not wait_for: wait_for (3.11) swallows a cancel of run() that
        # lands as _wake is set, and the pull would keep running after its task was cancelled.
        # The bound is the next tick of the node's 1 s grid (wakegrid), not a second from now:
        # every relay's checks and the node's pollers then wake in one loop turn.
        now = asyncio.get_running_loop().time()
        when = min(now + max(0.0, seconds), next_tick(now, _MAX_TICK_S))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(when):
                await self._wake.wait()

    async def _supervise(self, attempt: Attempt) -> None:
        """Watch the active attempt (which fail-back may replace) until it fails."""
        s = self.settings
        while True:
            self._wake.clear()
            self._check_stop()
            self._refresh_candidates()
            active = self._active
            if active is None:
                return  # the candidates changed and dropped the source in use: next attempt now

            now = time.monotonic()
            self._sample_bitrate(now)
            if active.task is not None and active.task.done():
                self._attempt_failed(active, self._outcome(active), now, clean=self._ended_cleanly(active))
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
                slow = self._check_slow(active, now)
                if isinstance(slow, SourceError):
                    self._attempt_failed(active, slow, now)
                    self.policy.hold_down(active.index, now)
                    return
                deadline = min(deadline, slow)
            self._check_hold(now)
            deadline = min(deadline, self._hold_deadline(), self.failback.manage(now))
            await self._sleep(deadline - now)

    def _check_slow(self, attempt: Attempt, now: float) -> SourceError | float:
        """The slow-origin rule: over each window of `slow_origin_s`, the origin must deliver
        at least `slow_origin_ratio` seconds of media per second, or it counts as failed
        (viewers would otherwise stall forever on an origin that is up but too slow).
        Returns the error, or when the current window ends (inf when the rule is off)."""
        s = self.settings
        mark = attempt.rate_mark
        if s.slow_origin_s <= 0 or mark is None or attempt.max_ts is None:
            return float("inf")
        since, ts0 = mark
        elapsed = now - since
        if elapsed < s.slow_origin_s:
            return since + s.slow_origin_s
        ratio = (attempt.max_ts - ts0) / 1000.0 / elapsed
        if ratio < s.slow_origin_ratio:
            return SourceError(
                "timeout",
                f"too slow: {ratio:.2f}s of media per second over {elapsed:.1f}s "
                f"(below relay.slow_origin_ratio {s.slow_origin_ratio:g})",
            )
        attempt.rate_mark = (now, attempt.max_ts)
        return now + s.slow_origin_s

    @staticmethod
    def _ended_cleanly(attempt: Attempt) -> bool:
        """The origin ended the stream (or dropped the connection) after media, no error."""
        task = attempt.task
        return (
            task is not None
            and attempt.error is None
            and attempt.abandoned is None
            and not task.cancelled()
            and task.exception() is None
            and attempt.first_frame_at is not None
        )

    def _outcome(self, attempt: Attempt) -> SourceError:
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

    def _attempt_failed(
        self, attempt: Attempt, error: SourceError, now: float, *, clean: bool = False
    ) -> None:
        attempt.cancel()
        self._active = None
        self.failback.cancel("failover")
        if attempt.first_frame_at is not None:
            self.state = RelayState.FAILING_OVER
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
        if clean and len(self.urls) == 1 and self._up_long_enough(attempt):
            # The one origin ended the stream cleanly (its publisher left and it hung up, or
            # it restarted): reconnect at once, no backoff - the publisher may be back already.
            self.state = RelayState.FAILING_OVER
            return
        self.policy.on_failure(now)
        if self.kind == RelayType.PLAY and not self._ever_up and self.policy.round_exhausted:
            raise _EndPull("unavailable")
        if self.policy.not_before > now:
            self.state = RelayState.RETRYING
        elif self._publication is not None:
            self.state = RelayState.FAILING_OVER
        else:
            self.state = RelayState.STARTING

    @staticmethod
    def _up_long_enough(attempt: Attempt) -> bool:
        first, last = attempt.first_frame_at, attempt.last_frame_at
        return first is not None and last is not None and last - first >= _CLEAN_END_MIN_UP_S

    def start_attempt(self, index: int, *, staging: bool) -> Attempt:
        url = self.urls[index]
        attempt = Attempt(self, index, url, staging=staging)
        attempt.task = asyncio.get_running_loop().create_task(
            self._pull_one(attempt), name=f"relay-pull {redact_url(url)}"
        )
        attempt.task.add_done_callback(lambda _t: self._wake.set())
        if not staging:
            self.attempts += 1
        return attempt

    async def _pull_one(self, attempt: Attempt) -> None:
        s = self.settings
        await self.source_policy.check_url(attempt.url, timeout_s=s.connect_timeout_s)
        pull = self.open_source(attempt.url)
        await pull(attempt.url, attempt, settings=s)

    # ---- frames -------------------------------------------------------------------

    def _on_frames(self, attempt: Attempt, frames: list[Frame]) -> None:
        """The frames of one read (the RTMP pull): while the attempt is up and writing,
        the bookkeeping (clock, byte counters, the highest timestamp) is done once per
        run and the run goes to the hub in one call; anything else goes frame by frame."""
        top = attempt.max_ts
        publication = self._publication
        if (
            attempt is not self._active
            or attempt.staging
            or attempt.first_frame_at is None
            or attempt.republish_pending
            or top is None
            or publication is None
        ):
            for frame in frames:
                self._on_frame(attempt, frame)
            return
        now = time.monotonic()
        attempt.last_frame_at = now
        size = 0
        for frame in frames:
            size += len(frame.payload)
            if frame.kind is not _DATA:
                ts = frame.timestamp
                if ts < top - _TS_JUMP_BACK_MS:
                    top = ts
                    attempt.rate_mark = (now, ts)
                elif ts > top:
                    top = ts
        attempt.max_ts = top
        self._rate_bytes += size
        self._metric_bytes += size
        self.frames += len(frames)
        self.bytes += size
        try:
            publication.write_run(frames)
        except Exception as exc:
            self._publication_failed(exc)

    def _on_frame(self, attempt: Attempt, frame: Frame) -> None:
        if attempt is not self._active and attempt is not self.failback.probe:
            return  # a cancelled attempt still draining
        now = time.monotonic()
        size = len(frame.payload)
        self._rate_bytes += size
        self._metric_bytes += size
        first = attempt.first_frame_at is None
        if first:
            attempt.first_frame_at = now
        attempt.last_frame_at = now
        if frame.kind in _MEDIA_KINDS:
            ts = frame.timestamp
            top = attempt.max_ts
            if top is None or ts < top - _TS_JUMP_BACK_MS:
                attempt.max_ts = ts
                attempt.rate_mark = (now, ts)
            elif ts > top:
                attempt.max_ts = ts
        if attempt.staging:
            self.failback.on_probe_frame(attempt, frame)
            return
        if first and not self._on_source_up(attempt, now):
            return
        if self._publication is None:
            # (V4 teammate) the hub refused this attempt (StreamBusy) and it is being
            # cancelled; frames already in flight must not reach _write (None.write).
            return
        if attempt.republish_pending:
            # The origin's publisher is back on the same connection: a new timeline.
            attempt.republish_pending = False
            log.info("relay %s: the origin's publisher is back (%s)", self.key, redact_url(attempt.url))
            self._publication.discontinuity()
        self._write(frame)

    def _on_unpublished(self, attempt: Attempt) -> bool:
        """The origin's publisher left, the connection stays: with one origin, wait on it
        for the republish (the no-media timeout still bounds the wait); with several, end
        the attempt so the relay fails over as usual."""
        if attempt is not self._active or attempt.staging or len(self.urls) > 1:
            return False
        if not attempt.republish_pending:
            attempt.republish_pending = True
            # The new publisher's clock starts afresh: so does the slow-origin window.
            attempt.rate_mark = None
            attempt.max_ts = None
            log.info(
                "relay %s: the origin's publisher left; waiting up to %gs for it on the same connection (%s)",
                self.key,
                self.settings.no_media_timeout_s,
                redact_url(attempt.url),
            )
        return True

    def _on_source_up(self, attempt: Attempt, now: float) -> bool:
        """The active attempt delivered its first frame: it is the source now."""
        if self._publication is None:
            try:
                publication = self.publication_factory()
            except StreamBusy as exc:
                # A publisher (or another relay) owns the stream. A "play" pull is not
                # needed any more; a "fixed" one retries with backoff.
                attempt.error = SourceError("busy", f"the hub refused the stream: {exc}")
                attempt.cancel()
                if self.kind == RelayType.PLAY:
                    self._preempted = True
                self._wake.set()
                return False
            except Exception as exc:
                # A bug (hub or factory), not a busy stream: say so loudly, with context,
                # and count it as "internal" so it cannot pass for an endless busy loop.
                log.exception("relay %s (%s): the publication factory failed", self.key, self.kind)
                attempt.error = SourceError("internal", f"{type(exc).__name__}: {exc}")
                attempt.cancel()
                self._wake.set()
                return False
            publication.on_preempted = self._on_preempted
            self._publication = publication
            self._need_discontinuity = False
        elif self._need_discontinuity:
            self._publication.discontinuity()
            self._need_discontinuity = False
        self.policy.on_success()
        self.state = RelayState.UP
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
        publication = self._publication
        if publication is None:
            return  # the hub refused the stream or it was preempted: nobody to write to
        self.frames += 1
        self.bytes += len(frame.payload)
        try:
            publication.write(frame)
        except Exception as exc:
            self._publication_failed(exc)

    def _publication_failed(self, exc: Exception) -> None:
        log.warning("relay %s: publication refused a frame (%s); stopping", self.key, exc)
        if self._stop_reason is None:
            self._stop_reason = f"publication error: {exc}"
        self._wake.set()

    def _on_preempted(self, *_args: object) -> None:
        """A local publisher took the stream over: end quietly, the Publication is not ours."""
        self._preempted = True
        self._publication = None
        self._wake.set()

    # ---- fail-back (decisions in failback.py; the swap itself is the supervisor's) ----

    @property
    def active(self) -> Attempt | None:
        """The attempt whose frames reach viewers (None between attempts)."""
        return self._active

    def take_over(self, probe: Attempt, staged: list[Frame], keyframe: Frame) -> None:
        """A fail-back probe delivered a keyframe: it becomes the source at that keyframe."""
        old = self._active
        probe.staging = False
        self._active = probe
        now = time.monotonic()
        self.policy.switch_to(probe.index, failback_at=now)
        if old is not None:
            old.cancel("failback")
        if self._publication is not None:
            self._publication.discontinuity()
            for frame in staged:
                self._write(frame)
        self.switches += 1
        self._up_since_wall = time.time()
        self.policy.on_up(now)
        self.state = RelayState.UP
        self.events.emit(
            "switched",
            **self._ids(),
            FromUrl=old.url if old is not None else None,
            ToUrl=probe.url,
            SourceIndex=probe.index,
            Reason="failback",
        )
        self._write(keyframe)
        self._wake.set()

    # ---- bookkeeping --------------------------------------------------------------

    def _sample_bitrate(self, now: float) -> None:
        self._flush_metric_bytes()
        elapsed = now - self._rate_time
        if elapsed >= 1.0:
            self.bitrate = self._rate_bytes * 8 / elapsed
            self._rate_bytes = 0
            self._rate_time = now

    def _flush_metric_bytes(self) -> None:
        """Add the bytes received since the last tick to the relay metrics (a counter with
        a lock: once per supervisor tick, at most _MAX_TICK_S apart, not once per frame)."""
        pending = self._metric_bytes
        if pending:
            self._metric_bytes = 0
            self.events.bytes_in(pending)

    def _ids(self) -> dict[str, Any]:
        key = self.key
        ids: dict[str, Any] = {"kind": self.kind, "vhost": key.vhost, "app": key.app, "stream": key.name}
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
        attempts = [a for a in (self._active, self.failback.probe) if a is not None]
        self._active = None
        self.failback.probe = None
        # Each attempt is cancelled once (no Attempt.cancel as well: a second cancel would
        # cut the attempt's own close short, an ffmpeg's SIGTERM grace to a SIGKILL) and
        # given 2 s to close. A cancel of run() itself propagates (suppressing
        # CancelledError around the await, as once, also swallowed that one: run() returned
        # normally after task.cancel()). An origin's own error at the end was handled (or is
        # moot once stopped) and is not logged; any other fault is.
        await cancel_all_and_wait(
            {
                a.task: f"relay {self.key}: the pull attempt on {redact_url(a.url)}"
                for a in attempts
                if a.task is not None
            },
            logger=log,
            timeout=2.0,
            expected=(SourceError,),
        )

    def _finish(self, reason: str) -> None:
        if self.ended.is_set():
            return
        self._rate_bytes = 0
        self._flush_metric_bytes()
        self._close_publication(reason)
        self.state = RelayState.ENDED
        self.end_reason = reason
        self.bitrate = 0.0
        self._up_since_wall = None
        self.events.emit("stopped", **self._ids(), Reason=reason)
        self.ended.set()
