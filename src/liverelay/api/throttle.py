"""Per-access-key token buckets."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        self.rate = rate_per_s
        self.capacity = float(max(burst, 1))
        self.tokens = self.capacity
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
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

    def _sweep(self, now: float) -> None:
        refill_s = self.burst / self.rate
        if now - self._last_sweep < max(refill_s, 1.0):
            return
        self._last_sweep = now
        for key in [k for k, b in self._buckets.items() if now - b.stamp >= refill_s]:
            del self._buckets[key]
