"""The harness's own check: timed by the kernel's arrival stamps (stamped.py), it still
sees a node that stops. A node frozen (SIGSTOP) for longer than both bounds fails the
video-gap and the API-latency check of the attack guard; a quiet window passes."""

from __future__ import annotations

import os
import signal
import time

import pytest
from tests.adversarial.harness import MAX_API_LATENCY_S, MAX_MEDIA_GAP_S, Harness

pytestmark = [pytest.mark.adversarial, pytest.mark.timeout(90)]

FREEZE_S = MAX_MEDIA_GAP_S + 0.5


def test_a_frozen_node_fails_the_guard_and_the_measurements_are_kernel_stamped(harness: Harness) -> None:
    with pytest.raises(AssertionError) as failed, harness.attack_guard("node frozen", max_log_lines=50):
        os.kill(harness.pid, signal.SIGSTOP)
        try:
            time.sleep(FREEZE_S)  # the "attack" here is the wait itself
        finally:
            os.kill(harness.pid, signal.SIGCONT)
    message = str(failed.value)
    assert "the viewer got no video for" in message, message
    assert f"API calls took over {MAX_API_LATENCY_S}s" in message, message
    answered = [c for c in list(harness.monitor.calls) if c.ok]
    assert answered and all(c.stamped for c in answered), "API answers without a kernel stamp"
    assert harness.monitor.viewer.unstamped_reads == 0, "viewer reads without a kernel stamp"
