"""bench.procstat against real processes, and the py-spy stack summariser with a byte fixture."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from bench import procstat
from bench.profile import summarize_collapsed


def test_parse_stat_survives_parentheses_and_spaces_in_the_name() -> None:
    fields = ["S", "42"] + ["0"] * 9 + ["150", "25"] + ["0"] * 10
    text = "1234 (evil ) (name) " + " ".join(fields)
    assert procstat.parse_stat(text) == (42, 150, 25)


@pytest.fixture
def spinner() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<20: pass"]
    )
    yield proc
    proc.kill()
    proc.wait(timeout=5)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(30_000_000); time.sleep(20)"])
    yield proc
    proc.kill()
    proc.wait(timeout=5)


def test_cpu_window_tells_busy_from_idle(
    spinner: subprocess.Popen[bytes], sleeper: subprocess.Popen[bytes]
) -> None:
    time.sleep(0.3)  # let the sleeper finish starting up
    busy, idle = procstat.CpuWindow(spinner.pid), procstat.CpuWindow(sleeper.pid)
    busy.start()
    idle.start()
    time.sleep(1.0)
    b, i = busy.stop(), idle.stop()
    # A spinning loop gets whatever share of a core a loaded 2-core box leaves it (seen
    # down to ~20% with ten runnable processes), a sleeper next to nothing: the window
    # must tell them apart by an order of magnitude either way.
    assert b.percent > 10, b
    assert i.percent < 2, i
    assert b.percent > 10 * max(i.percent, 0.5), (b, i)
    assert b.user_percent > b.sys_percent


def test_rss_sees_a_30_mb_buffer(sleeper: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 5
    rss = 0
    while time.monotonic() < deadline:
        rss = procstat.rss_bytes(sleeper.pid)
        if rss > 30_000_000:
            break
        time.sleep(0.05)
    assert 30_000_000 < rss < 200_000_000
    assert procstat.tree_rss_bytes(sleeper.pid) >= rss


def test_tree_includes_children() -> None:
    code = "import subprocess, sys, time; p = subprocess.Popen(['sleep', '20']); time.sleep(20)"
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 5
        pids: list[int] = []
        while time.monotonic() < deadline:
            pids = procstat.tree_pids(parent.pid)
            if len(pids) >= 2:
                break
            time.sleep(0.05)
        assert pids[0] == parent.pid and len(pids) == 2
    finally:
        for pid in procstat.tree_pids(parent.pid)[1:]:
            subprocess.run(["kill", "-9", str(pid)], check=False)
        parent.kill()
        parent.wait(timeout=5)


def test_summarize_collapsed_counts_self_and_inclusive_time() -> None:
    raw = (
        "run (asyncio);_run_once (base_events.py:1);write (hub.py:10) 30\n"
        "run (asyncio);_run_once (base_events.py:1);feed (flv.py:5) 10\n"
        "run (asyncio);select (selectors.py:2) 60\n"
        "garbage line\n"
    )
    text = summarize_collapsed(raw)
    assert text.startswith("100 samples")
    self_part, incl_part = text.split("top inclusive:")
    assert "60.0%  select (selectors.py:2)" in self_part
    assert "30.0%  write (hub.py:10)" in self_part
    assert "40.0%  _run_once (base_events.py:1)" in incl_part
    assert "100.0%  run (asyncio)" in incl_part
    assert summarize_collapsed("") == "no samples\n"
