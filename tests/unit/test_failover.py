"""FailoverPolicy: origin order, capped exponential backoff, reset on success, fail-back candidates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liverelay.relay.failover import FailoverPolicy


def make(n: int, initial: float = 1.0, cap: float = 8.0) -> FailoverPolicy:
    return FailoverPolicy(n, backoff_initial_s=initial, backoff_max_s=cap)


def test_starts_at_first_and_walks_the_list_in_order() -> None:
    p = make(3)
    assert p.index == 0
    assert p.on_failure(100.0) == 100.0  # next origin at once
    assert p.index == 1
    assert p.on_failure(101.0) == 101.0
    assert p.index == 2
    assert not p.round_exhausted


def test_full_failed_round_waits_then_restarts_at_first() -> None:
    p = make(3, initial=1.0)
    for t in (0.0, 0.1, 0.2):
        p.on_failure(t)
    assert p.round_exhausted
    assert p.index == 0
    assert p.not_before == pytest.approx(1.2)


def test_backoff_doubles_per_round_and_is_capped() -> None:
    p = make(2, initial=1.0, cap=5.0)
    delays = []
    now = 0.0
    for _ in range(6):
        p.on_failure(now)
        now = p.on_failure(now)  # second origin fails: round over
        delays.append(p.backoff_delay(p.failed_rounds))
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_success_resets_backoff_and_round() -> None:
    p = make(2, initial=1.0, cap=30.0)
    for _ in range(3):
        p.on_failure(0.0)
        p.on_failure(0.0)
    assert p.failed_rounds == 3
    p.on_failure(10.0)  # index 0 fails, index 1 works
    p.on_success()
    assert p.index == 1
    assert p.failed_rounds == 0
    assert p.not_before == 0.0
    assert not p.round_exhausted
    # A fresh failure after success: next origin at once, no backoff.
    assert p.on_failure(20.0) == 20.0
    assert p.index == 0


def test_round_counts_from_where_a_mid_stream_failure_started() -> None:
    """Up on the last origin, it fails: every origin gets one try before backing off."""
    p = make(3)
    p.switch_to(2)
    tried = []
    for t in range(3):
        p.on_failure(float(t))
        tried.append(p.index)
    assert tried == [0, 1, 0]
    assert p.round_exhausted
    assert p.not_before == pytest.approx(2.0 + 1.0)


def test_single_origin_backs_off_after_every_failure() -> None:
    p = make(1, initial=0.5, cap=2.0)
    assert p.on_failure(0.0) == 0.5
    assert p.on_failure(1.0) == 2.0
    assert p.on_failure(3.0) == 5.0


def test_failback_candidates_are_the_better_origins_best_first() -> None:
    p = make(4)
    assert p.failback_candidates() == []
    p.switch_to(3)
    assert p.failback_candidates() == [0, 1, 2]
    with pytest.raises(IndexError):
        p.switch_to(4)


def test_replace_sources_keeps_or_restarts() -> None:
    p = make(3)
    p.switch_to(2)
    p.replace_sources(5, 4)
    assert (p.n_sources, p.index) == (5, 4)
    p.replace_sources(2, None)
    assert (p.n_sources, p.index, p.not_before) == (2, 0, 0.0)
    with pytest.raises(ValueError):
        p.replace_sources(0, None)


def test_needs_a_source() -> None:
    with pytest.raises(ValueError):
        make(0)


@given(
    n=st.integers(1, 10),
    initial=st.floats(0.0, 10.0),
    cap=st.floats(0.0, 100.0),
    events=st.lists(st.sampled_from(["fail", "ok"]), max_size=200),
)
def test_invariants_hold_for_any_event_sequence(
    n: int, initial: float, cap: float, events: list[str]
) -> None:
    p = make(n, initial, cap)
    now = 0.0
    fails_since_ok = 0
    for ev in events:
        now += 0.5
        if ev == "fail":
            fails_since_ok += 1
            start = p.on_failure(now)
            assert start >= now
            assert start - now <= max(initial, cap) + 1e-9
            # No backoff before every origin has had its try.
            if fails_since_ok < n:
                assert start == now
        else:
            p.on_success()
            fails_since_ok = 0
            assert p.not_before == 0.0
        assert 0 <= p.index < n


# ---- fail-back hold-down (flapping origin) ---------------------------------------------


def flappy(interval: float = 10.0, window: float = 30.0, cap: float = 80.0) -> FailoverPolicy:
    """Two origins; up on the backup (index 1), so origin 0 is the fail-back candidate."""
    p = FailoverPolicy(
        2,
        backoff_initial_s=1.0,
        backoff_max_s=8.0,
        failback_interval_s=interval,
        flap_window_s=window,
        failback_interval_max_s=cap,
    )
    p.switch_to(1)
    p.on_up(0.0)
    return p


def fail_back_then_die(p: FailoverPolicy, at: float, dies_after: float) -> float:
    """Probe and switch back to origin 0 at `at`, which dies `dies_after` s later; the
    pull is up on origin 1 again right away. Returns the time origin 0 is due again."""
    assert p.due_probes(at) == [0]
    p.on_probe(0, at)
    p.switch_to(0, failback_at=at)
    p.on_failure(at + dies_after)  # moves on to origin 1
    assert p.index == 1
    p.on_up(at + dies_after)
    return p.next_probe_at()


def test_probe_is_due_one_interval_after_coming_up() -> None:
    p = flappy()
    assert p.due_probes(9.9) == [] and p.next_probe_at() == 10.0
    assert p.due_probes(10.0) == [0]
    p.on_probe(0, 10.0)  # the probe found nothing: next one an interval later
    assert p.due_probes(19.9) == [] and p.next_probe_at() == 20.0


def test_an_origin_that_dies_soon_after_fail_back_is_probed_ever_less_often() -> None:
    p = flappy(interval=10.0, window=30.0, cap=80.0)
    t = 10.0
    gaps = []
    for _ in range(6):
        due = fail_back_then_die(p, t, dies_after=2.0)
        gaps.append(due - (t + 2.0))
        t = due
    # Doubled per flap (20, 40, 80) and capped at 80: not switched back every 10 s.
    assert gaps == [20.0, 40.0, 80.0, 80.0, 80.0, 80.0]
    assert p.probe_interval(0) == 80.0


def test_hold_down_resets_once_the_origin_stays_healthy() -> None:
    p = flappy(interval=10.0, window=30.0)
    due = fail_back_then_die(p, 10.0, dies_after=1.0)
    due = fail_back_then_die(p, due, dies_after=1.0)
    assert p.probe_interval(0) == 40.0
    # This time origin 0 stays up: once it has lasted the flap window it is forgiven.
    p.on_probe(0, due)
    p.switch_to(0, failback_at=due)
    p.check_stable(due + 29.0)
    assert p.probe_interval(0) == 40.0
    p.check_stable(due + 30.0)
    assert p.probe_interval(0) == 10.0
    # A failure long after the fail-back is an ordinary failure: no hold-down.
    p.on_failure(due + 500.0)
    p.on_up(due + 500.0)
    assert p.next_probe_at() == due + 510.0


def test_a_late_failure_is_not_a_flap_even_without_check_stable() -> None:
    p = flappy(interval=10.0, window=30.0)
    due = fail_back_then_die(p, 10.0, dies_after=31.0)
    assert due == 10.0 + 31.0 + 10.0
    assert p.probe_interval(0) == 10.0


def test_hold_down_is_per_origin_and_cleared_by_a_new_source_list() -> None:
    p = FailoverPolicy(3, backoff_initial_s=1.0, backoff_max_s=8.0, failback_interval_s=10.0)
    p.switch_to(2)
    p.on_up(0.0)
    assert p.due_probes(10.0) == [0, 1]
    p.on_probe(0, 10.0)
    p.switch_to(0, failback_at=10.0)
    p.on_failure(11.0)  # origin 0 flapped -> index 1
    assert p.index == 1
    p.on_failure(11.5)  # and 1 failed too (an ordinary failure: it was not failed back to)
    p.on_up(12.0)  # up on 2
    assert p.index == 2
    assert p.probe_interval(0) == 20.0 and p.probe_interval(1) == 10.0
    assert p.due_probes(22.0) == [1]  # origin 1 is probed, origin 0 still held down
    assert p.due_probes(31.9) == [1] and p.due_probes(32.0) == [0, 1]  # 12 + 2 x 10
    p.replace_sources(3, 2)
    assert p.probe_interval(0) == 10.0


def test_a_too_slow_origin_is_held_down_like_a_flap() -> None:
    # Origin 0 failed as too slow (its probe would only wait for a keyframe and take over
    # again): its probes back off, doubling per hold-down; the other origins are untouched.
    p = FailoverPolicy(
        3, backoff_initial_s=1.0, backoff_max_s=8.0, failback_interval_s=10.0, failback_interval_max_s=80.0
    )
    p.on_failure(100.0)  # origin 0 failed (too slow): on to origin 1
    p.hold_down(0, 100.0)
    p.on_up(100.0)
    assert p.probe_interval(0) == 20.0
    assert p.due_probes(119.9) == [] and p.due_probes(120.0) == [0]
    p.switch_to(0, failback_at=120.0)
    p.on_failure(130.0)  # too slow again, 10 s after the fail-back: a flap, and held down
    p.hold_down(0, 130.0)
    assert p.probe_interval(0) == 80.0  # two more doublings (the flap and the hold-down)
    assert p.probe_interval(1) == 10.0
