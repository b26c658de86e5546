"""Which origin to try next, and when: pure decisions, no IO, no clock.

Shared by the play-triggered (V3) and the fixed (V4) relays through relay.pull.RelayPull.
Time is always passed in (monotonic seconds), so the rules are unit-testable as plain
arithmetic.

Rules:
- origins are tried in list order, starting at index 0 (list order is priority);
- a failure moves to the next index at once;
- when every origin of a round has failed, the next round starts only after a capped
  exponential backoff (initial, 2x initial, 4x ... up to max);
- a success (the source delivered media) ends the failed round and resets the backoff;
- fail-back: while up on index i > 0, indexes 0..i-1 are the better candidates, each
  probed every `failback_interval_s`;
- fail-back hold-down: an origin that fails within `flap_window_s` of being switched
  back to has its own probe interval doubled (capped at `failback_interval_max_s`), so
  an origin that keeps dying is not switched back to at every probe; its interval is
  reset once it has stayed up for `flap_window_s` after a fail-back.
"""

from __future__ import annotations

from ..backoff import backoff_delay


class FailoverPolicy:
    def __init__(
        self,
        n_sources: int,
        *,
        backoff_initial_s: float,
        backoff_max_s: float,
        failback_interval_s: float = 10.0,
        flap_window_s: float | None = None,
        failback_interval_max_s: float | None = None,
    ) -> None:
        if n_sources < 1:
            raise ValueError("a relay needs at least one source")
        self.n_sources = n_sources
        self.backoff_initial_s = max(0.0, backoff_initial_s)
        self.backoff_max_s = max(self.backoff_initial_s, backoff_max_s)
        # Fail-back probing and its hold-down (see the module docstring).
        self.failback_interval_s = max(0.0, failback_interval_s)
        self.flap_window_s = 3 * self.failback_interval_s if flap_window_s is None else flap_window_s
        self.failback_interval_max_s = max(
            self.failback_interval_s,
            32 * self.failback_interval_s if failback_interval_max_s is None else failback_interval_max_s,
        )
        # Per origin index: how many times in a row it flapped after a fail-back (the
        # probe interval doubles per flap), and the earliest time it may be probed again.
        self._flaps: dict[int, int] = {}
        self._probe_not_before: dict[int, float] = {}
        # The origin last switched back to, and when (None once it proved stable or failed).
        self._failback: tuple[int, float] | None = None
        self.index = 0
        # Failures since the last success within the current round (0..n_sources-1).
        self._failed_in_round = 0
        # Full rounds failed in a row since the last success (drives the backoff).
        self.failed_rounds = 0
        # Earliest monotonic time the next attempt may start.
        self.not_before = 0.0

    def on_failure(self, now: float) -> float:
        """Record that the source at `index` failed; return the time the next attempt may start.

        Moves `index` to the next source; after a full round of failures the next round
        starts at index 0 again, delayed by the backoff.
        """
        self._note_failback_failure(self.index, now)
        self._failed_in_round += 1
        self.index = (self.index + 1) % self.n_sources
        if self._failed_in_round >= self.n_sources:
            self._failed_in_round = 0
            self.failed_rounds += 1
            self.index = 0
            self.not_before = now + self.backoff_delay(self.failed_rounds)
        else:
            self.not_before = now
        return self.not_before

    def backoff_delay(self, failed_rounds: int) -> float:
        """Delay after `failed_rounds` full rounds failed in a row (1 -> initial)."""
        if failed_rounds < 1:
            return 0.0
        # No jitter: the round schedule is documented (docs/relay.md) and pinned by tests.
        return backoff_delay(failed_rounds - 1, base=self.backoff_initial_s, cap=self.backoff_max_s)

    def on_success(self) -> None:
        """The source at `index` delivers media: the failed round and the backoff are over."""
        self._failed_in_round = 0
        self.failed_rounds = 0
        self.not_before = 0.0

    def switch_to(self, index: int, *, failback_at: float | None = None) -> None:
        """The source at `index` took over (fail-back or config change) and delivers media.

        `failback_at` (monotonic now) marks a fail-back: a failure of this source within
        flap_window_s from then doubles its probe interval.
        """
        if not 0 <= index < self.n_sources:
            raise IndexError(index)
        self.index = index
        self.on_success()
        self._failback = (index, failback_at) if failback_at is not None else None

    def failback_candidates(self) -> list[int]:
        """Better (higher-priority) sources than the one in use, best first."""
        return list(range(self.index))

    # ---- fail-back probing and hold-down ------------------------------------------------

    def probe_interval(self, index: int) -> float:
        """How long after a probe of (or a flap on) `index` it is probed again."""
        flaps = self._flaps.get(index, 0)
        # Bounded exponent: 2**60 * anything is already past any cap.
        return min(self.failback_interval_max_s, self.failback_interval_s * (2.0 ** min(flaps, 60)))

    def on_up(self, now: float) -> None:
        """The source in use (re)started delivering: the better ones are probed from one
        interval from now, and no earlier than their hold-down allows."""
        for index in range(self.index):
            self._probe_not_before[index] = max(
                self._probe_not_before.get(index, 0.0), now + self.probe_interval(index)
            )

    def due_probes(self, now: float) -> list[int]:
        """Better sources whose probe is due at `now`, best first."""
        return [i for i in range(self.index) if self._probe_not_before.get(i, 0.0) <= now]

    def next_probe_at(self) -> float:
        """When the next better source becomes due (inf when there is none)."""
        return min((self._probe_not_before.get(i, 0.0) for i in range(self.index)), default=float("inf"))

    def on_probe(self, index: int, now: float) -> None:
        """A probe of `index` starts now: the next one not before its interval has passed."""
        self._probe_not_before[index] = now + self.probe_interval(index)

    def check_stable(self, now: float) -> None:
        """Call while up: a fail-back target that stayed up flap_window_s is forgiven."""
        if self._failback is None:
            return
        index, since = self._failback
        if now - since >= self.flap_window_s:
            self._flaps.pop(index, None)
            self._failback = None

    def hold_down(self, index: int, now: float) -> None:
        """`index` failed in a way a fail-back probe cannot see (too slow: a probe only
        waits for a keyframe): its probes back off as after a flap (interval doubled)."""
        self._flaps[index] = self._flaps.get(index, 0) + 1
        self._probe_not_before[index] = now + self.probe_interval(index)

    def _note_failback_failure(self, index: int, now: float) -> None:
        failback, self._failback = self._failback, None
        if failback is None or failback[0] != index:
            return
        if now - failback[1] < self.flap_window_s:
            self._flaps[index] = self._flaps.get(index, 0) + 1
            self._probe_not_before[index] = now + self.probe_interval(index)
        else:
            self._flaps.pop(index, None)

    @property
    def round_exhausted(self) -> bool:
        """True once every source has failed at least once since the last success."""
        return self.failed_rounds > 0

    def replace_sources(self, n_sources: int, index: int | None) -> None:
        """The source list changed: keep using `index` (the old source's new position) or restart at 0."""
        if n_sources < 1:
            raise ValueError("a relay needs at least one source")
        self.n_sources = n_sources
        # Indexes are renumbered: per-origin probe state no longer applies.
        self._flaps.clear()
        self._probe_not_before.clear()
        self._failback = None
        if index is None:
            self.index = 0
            self._failed_in_round = 0
            self.not_before = 0.0
        else:
            if not 0 <= index < n_sources:
                raise IndexError(index)
            self.index = index
            self._failed_in_round = min(self._failed_in_round, n_sources - 1)
