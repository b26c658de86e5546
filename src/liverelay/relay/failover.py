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
- fail-back: while up on index i > 0, indexes 0..i-1 are the better candidates.
"""

from __future__ import annotations


class FailoverPolicy:
    def __init__(self, n_sources: int, *, backoff_initial_s: float, backoff_max_s: float) -> None:
        if n_sources < 1:
            raise ValueError("a relay needs at least one source")
        self.n_sources = n_sources
        self.backoff_initial_s = max(0.0, backoff_initial_s)
        self.backoff_max_s = max(self.backoff_initial_s, backoff_max_s)
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
        # Bounded exponent: 2**60 * anything is already past any cap.
        return min(self.backoff_max_s, self.backoff_initial_s * (2.0 ** min(failed_rounds - 1, 60)))

    def on_success(self) -> None:
        """The source at `index` delivers media: the failed round and the backoff are over."""
        self._failed_in_round = 0
        self.failed_rounds = 0
        self.not_before = 0.0

    def switch_to(self, index: int) -> None:
        """The source at `index` took over (fail-back or config change) and delivers media."""
        if not 0 <= index < self.n_sources:
            raise IndexError(index)
        self.index = index
        self.on_success()

    def failback_candidates(self) -> list[int]:
        """Better (higher-priority) sources than the one in use, best first."""
        return list(range(self.index))

    @property
    def round_exhausted(self) -> bool:
        """True once every source has failed at least once since the last success."""
        return self.failed_rounds > 0

    def replace_sources(self, n_sources: int, index: int | None) -> None:
        """The source list changed: keep using `index` (the old source's new position) or restart at 0."""
        if n_sources < 1:
            raise ValueError("a relay needs at least one source")
        self.n_sources = n_sources
        if index is None:
            self.index = 0
            self._failed_in_round = 0
            self.not_before = 0.0
        else:
            if not 0 <= index < n_sources:
                raise IndexError(index)
            self.index = index
            self._failed_in_round = min(self._failed_in_round, n_sources - 1)
