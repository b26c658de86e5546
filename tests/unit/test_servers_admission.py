"""servers.peertext.clip and the admission parts that need no node: the per-address
cap, the file budget, rate-limited lines, and EMFILE on accept (a real listening
socket with this process's soft open-file limit lowered for a moment)."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import time

import pytest

from liverelay.servers.admission import (
    AddressCap,
    FileBudget,
    ListenerLimits,
    RateLimitedLog,
    log_accept_errors,
)
from liverelay.servers.peertext import ECHO_LIMIT, clip

log = logging.getLogger("liverelay.test.admission")


def test_clip_keeps_short_text_and_cuts_long_text() -> None:
    assert clip("play.example.com") == "play.example.com"
    assert clip(("1.2.3.4", 5)) == "('1.2.3.4', 5)"
    long = "a" * (1 << 20)
    cut = clip(long)
    assert cut == "a" * ECHO_LIMIT + f"...(+{(1 << 20) - ECHO_LIMIT} chars)"
    assert clip("abcdef", 3) == "abc...(+3 chars)"


def test_rate_limited_log_says_how_many_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=log.name)
    warn = RateLimitedLog(log, interval_s=0.2)
    for i in range(50):
        warn.warning("k", "event %d", i)
    warn.warning("other", "another kind")
    assert [r.getMessage() for r in caplog.records] == ["event 0", "another kind"]
    deadline = time.monotonic() + 5
    while time.monotonic() - warn._last["k"][0] < 0.2:  # wait out the interval itself
        assert time.monotonic() < deadline
        time.sleep(0.02)
    warn.warning("k", "event %d", 50)
    assert caplog.records[-1].getMessage() == "event 50 (49 more since the last such line)"


def test_address_cap_counts_per_address_and_frees_on_release(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="liverelay.servers")
    files = FileBudget(limit=1000)
    cap = AddressCap(ListenerLimits("rtmp", 2), RateLimitedLog(logging.getLogger("liverelay.servers")), files)
    a1, a2 = cap.acquire(("10.0.0.1", 1)), cap.acquire(("10.0.0.1", 2))
    assert a1 == a2 == "10.0.0.1"
    assert cap.acquire(("10.0.0.1", 3)) is None and cap.acquire(("10.0.0.1", 4)) is None
    assert cap.acquire(("10.0.0.2", 1)) == "10.0.0.2"  # another address is not affected
    assert cap.acquire(("127.0.0.1", 1)) == "127.0.0.1"  # loopback counted by default
    assert files.open == 4
    cap.release(a1)
    cap.release(None)  # a refused connection: nothing was counted
    assert cap.count("10.0.0.1") == 1 and files.open == 3
    assert cap.acquire(("10.0.0.1", 5)) == "10.0.0.1"
    lines = [r.getMessage() for r in caplog.records if "max_conns_per_ip" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("rtmp listener: 10.0.0.1 has 2 connections")


def test_loopback_exemption_and_no_cap() -> None:
    files = FileBudget(limit=1000)
    warn = RateLimitedLog(log)
    exempt = AddressCap(ListenerLimits("http", 1, exempt_loopback=True), warn, files)
    assert [exempt.acquire(("127.0.0.1", p)) for p in range(5)] == [""] * 5
    assert [exempt.acquire(("::1", p, 0, 0)) for p in range(5)] == [""] * 5
    assert exempt.acquire(("10.0.0.1", 1)) == "10.0.0.1" and exempt.acquire(("10.0.0.1", 2)) is None
    uncapped = AddressCap(ListenerLimits("api", 0), warn, files)
    assert all(uncapped.acquire(("10.0.0.9", p)) == "" for p in range(300))
    assert files.open == 311
    for _ in range(311):
        exempt.release("")
    assert files.open == 0


def test_file_budget_warns_once_near_the_limit(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="liverelay.servers")
    files = FileBudget(limit=100)
    cap = AddressCap(ListenerLimits("http", 0), RateLimitedLog(log), files)
    for p in range(120):
        cap.acquire(("10.0.0.1", p))
    lines = [r.getMessage() for r in caplog.records if "open-file limit 100" in r.getMessage()]
    assert lines == ["http listener: the listeners hold 90 connections, open-file limit 100: new "
                     "connections will soon fail"]  # fmt: skip


async def test_emfile_on_accept_is_one_rate_limited_line(caplog: pytest.LogCaptureFixture) -> None:
    """The asyncio loop reports EMFILE on accept to the exception handler (uvloop does not:
    the FileBudget covers it)."""
    caplog.set_level(logging.WARNING)
    loop = asyncio.get_running_loop()
    log_accept_errors(loop)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = [socket.socket() for _ in range(10)]  # descriptors taken before the limit drops
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        for c in clients:
            c.setblocking(False)
        fds = {int(x) for x in os.listdir("/proc/self/fd")}
        lowest_free = min(set(range(max(fds) + 2)) - fds)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no new descriptor fits
        for c in clients:
            c.connect_ex(("127.0.0.1", port))
        deadline = time.monotonic() + 10
        while not any("out of file descriptors" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "no log line for EMFILE on accept"
            await asyncio.sleep(0.05)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for c in clients:
            c.close()
        server.close()
        await server.wait_closed()
    lines = [r for r in caplog.records if "out of file descriptors" in r.getMessage()]
    assert len(lines) == 1 and not any(r.exc_info for r in lines)  # one line, no traceback
