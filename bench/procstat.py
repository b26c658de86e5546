"""CPU and memory of a server process, read from /proc (Linux only).

CPU is the time the process's threads ran over a measured window (the scheduler's own
count in /proc/PID/task/TID/schedstat, in nanoseconds), as a percentage of one core, so a
single-threaded server tops out at 100. The user/sys split comes from the clock ticks of
/proc/PID/stat (10 ms each: 0.05 % of a core over a 20 s window, so it is coarse where the
total is not; a tick-only total rounded an edge's 0.7 % to 0.6-0.9 %). RSS is VmRSS. For servers that spawn
helpers (our node's ffmpeg-backed relays) the whole process tree can be summed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuTimes:
    user_s: float
    sys_s: float
    at: float  # time.monotonic() when read
    run_s: float = -1.0  # on-CPU time of the threads (schedstat); -1 = not available

    @property
    def total_s(self) -> float:
        return self.run_s if self.run_s >= 0 else self.user_s + self.sys_s


@dataclass(frozen=True)
class CpuUsage:
    """CPU use between two readings, as % of one core."""

    percent: float
    user_percent: float
    sys_percent: float
    wall_s: float


def parse_stat(text: str) -> tuple[int, int, int]:
    """(ppid, utime_ticks, stime_ticks) from the text of /proc/PID/stat.

    The command name (field 2) is in parentheses and may hold spaces or ')' itself,
    so the fields are counted from the last ')'.
    """
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    return int(rest[1]), int(rest[11]), int(rest[12])


def run_seconds(pid: int) -> float:
    """On-CPU time of the live threads of `pid` (schedstat field 1, ns), or -1 without it."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return -1.0
    for tid in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended while we looked
    return total / 1e9


def cpu_times(pid: int) -> CpuTimes:
    _, utime, stime = parse_stat(Path(f"/proc/{pid}/stat").read_text())
    return CpuTimes(utime / CLK_TCK, stime / CLK_TCK, time.monotonic(), run_seconds(pid))


def tree_pids(pid: int) -> list[int]:
    """`pid` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ppid, _, _ = parse_stat(Path(entry.path, "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo and len(found) < 10_000:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def tree_cpu_times(pid: int) -> CpuTimes:
    """Summed CPU of the live tree (ticks of children that already exited are lost)."""
    user = sys_ = run = 0.0
    for p in tree_pids(pid):
        try:
            t = cpu_times(p)
        except (OSError, ValueError):
            continue
        user += t.user_s
        sys_ += t.sys_s
        run += t.total_s
    return CpuTimes(user, sys_, time.monotonic(), run)


def usage_between(before: CpuTimes, after: CpuTimes) -> CpuUsage:
    wall = max(after.at - before.at, 1e-9)
    user = 100.0 * (after.user_s - before.user_s) / wall
    sys_ = 100.0 * (after.sys_s - before.sys_s) / wall
    return CpuUsage(100.0 * (after.total_s - before.total_s) / wall, user, sys_, wall)


def rss_bytes(pid: int) -> int:
    """VmRSS of one process in bytes (0 when the process has none, e.g. a zombie)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def tree_rss_bytes(pid: int) -> int:
    total = 0
    for p in tree_pids(pid):
        try:
            total += rss_bytes(p)
        except (OSError, ValueError):
            continue
    return total


class CpuWindow:
    """CPU of one process (or its tree) over a window: start(), then stop() -> CpuUsage."""

    def __init__(self, pid: int, *, tree: bool = False) -> None:
        self.pid = pid
        self._read = tree_cpu_times if tree else cpu_times
        self._start: CpuTimes | None = None

    def start(self) -> None:
        self._start = self._read(self.pid)

    def stop(self) -> CpuUsage:
        if self._start is None:
            raise RuntimeError("CpuWindow.stop() before start()")
        return usage_between(self._start, self._read(self.pid))
