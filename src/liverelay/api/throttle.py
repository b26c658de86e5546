"""Token buckets: per access key (signed requests), and per client address for requests
that fail authentication (unsigned or wrongly signed: slows key guessing)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        self.rate = rate_per_s
        self.capacity = float(max(burst, 1))
        self.tokens = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, now: float) -> bool:
        self.refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RateLimiter:
    """`allow(key)` spends one token of that key's bucket. Buckets idle long enough to
    be full again are forgotten, so memory stays bounded by the keys active recently."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._last_sweep = clock()

    def allow(self, key: str) -> bool:
        if self.rate <= 0:
            return True  # 0 disables throttling
        now = self._clock()
        self._sweep(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def exhausted(self, key: str) -> bool:
        """True while `key` has no token left (nothing is spent: a peek before the work)."""
        if self.rate <= 0:
            return False
        bucket = self._buckets.get(key)
        if bucket is None:
            return False
        bucket.refill(self._clock())
        return bucket.tokens < 1.0

    def _sweep(self, now: float) -> None:
        refill_s = self.burst / self.rate
        if now - self._last_sweep < max(refill_s, 1.0):
            return
        self._last_sweep = now
        for key in [k for k, b in self._buckets.items() if now - b.stamp >= refill_s]:
            del self._buckets[key]


class LogGate:
    """Per-key rate limit of log lines (a flood of bad requests from one address must not
    become a flood of log lines). `admit(key)` is None when this line is to be dropped, or
    how many lines of that key were dropped since the last one admitted."""

    # Keys with a pending dropped-line count kept at most: past it the counts are forgotten.
    MAX_PENDING = 10_000

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._limiter = RateLimiter(rate_per_s, burst, clock)
        self._dropped: dict[str, int] = {}

    def admit(self, key: str) -> int | None:
        if self._limiter.allow(key):
            return self._dropped.pop(key, 0)
        if key not in self._dropped and len(self._dropped) >= self.MAX_PENDING:
            self._dropped.clear()
        self._dropped[key] = self._dropped.get(key, 0) + 1
        return None
