"""py-spy sampling of our node under load, and a text summary of the hot spots.

py-spy is a bench-only tool (`.venv/bin/pip install py-spy`), not a project dependency.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from .peers import ManagedProcess


class PySpy:
    def __init__(self, proc: ManagedProcess, out: Path, duration_s: float) -> None:
        self.proc = proc
        self.out = out
        self.duration_s = duration_s

    def stop(self) -> None:
        """Wait for the recording to finish (it stops itself after the window), then summarise."""
        try:
            self.proc.proc.wait(timeout=self.duration_s + 20)
        except subprocess.TimeoutExpired:
            pass
        self.proc.stop()
        if self.out.exists():
            summary = self.out.with_suffix(".top.txt")
            summary.write_text(summarize_collapsed(self.out.read_text()))


def pyspy_bin() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def start_pyspy(pid: int, duration_s: float, out: Path) -> PySpy | None:
    exe = pyspy_bin()
    if exe is None:
        print("py-spy not installed: `.venv/bin/pip install py-spy` (skipping the profile)")
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    args = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(duration_s)),
        "--rate",
        "100",
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(out),
    ]
    return PySpy(ManagedProcess.spawn("py-spy", args, log_path=out.with_suffix(".log")), out, duration_s)


def summarize_collapsed(text: str, top: int = 25) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed ('raw') stacks."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        self_counts[frames[-1]] += count
        for f in set(frames):
            incl_counts[f] += count
    if not total:
        return "no samples\n"
    lines = [f"{total} samples", "", "top self:"]
    lines += [f"{100 * c / total:6.1f}%  {f}" for f, c in self_counts.most_common(top)]
    lines += ["", "top inclusive:"]
    lines += [f"{100 * c / total:6.1f}%  {f}" for f, c in incl_counts.most_common(top)]
    return "\n".join(lines) + "\n"
