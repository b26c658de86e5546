"""backoff.backoff_delay: capped exponential, optional jitter, the one copy."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from liverelay.backoff import backoff_delay


def test_deterministic_sequence_doubles_and_caps() -> None:
    assert [backoff_delay(n, base=1.0, cap=5.0) for n in range(6)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert backoff_delay(-1, base=1.0, cap=5.0) == 0.0
    assert backoff_delay(10**9, base=0.5, cap=30.0) == 30.0  # no overflow on a huge attempt
    assert backoff_delay(3, base=0.0, cap=5.0, jitter=0.5) == 0.0


def test_jitter_draws_from_the_upper_part_of_the_interval() -> None:
    seen: list[tuple[float, float]] = []

    def rand(lo: float, hi: float) -> float:
        seen.append((lo, hi))
        return lo

    assert backoff_delay(2, base=0.5, cap=10.0, jitter=0.5, rand=rand) == 1.0
    assert seen == [(1.0, 2.0)]


@given(
    attempt=st.integers(0, 200),
    base=st.floats(0.001, 10),
    cap=st.floats(0.001, 100),
    jitter=st.floats(0, 1),
)
def test_bounds(attempt: int, base: float, cap: float, jitter: float) -> None:
    ceiling = min(cap, base * 2.0 ** min(attempt, 60))
    delay = backoff_delay(attempt, base=base, cap=cap, jitter=jitter)
    assert ceiling * (1 - jitter) - 1e-9 <= delay <= ceiling + 1e-9
    assert 0.0 <= delay <= cap + 1e-9
