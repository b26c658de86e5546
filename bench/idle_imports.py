"""Where a plain node's fixed memory goes, import by import, and the stack's floor.

`python -m bench.idle_imports [--after 6] [--floor] [serve flags...]` runs `liverelay serve`
in this process with an import hook that reads VmRSS before and after each module
executes, and charges each module what its own execution added (its imports' growth
excluded). After `--after` seconds it prints the node's VmRSS, the number of modules and
the top packages by RSS, then stops the node (SIGTERM). Pass the usual serve flags
(`--data-dir DIR`, the listen addresses); run `liverelay db upgrade --data-dir DIR` first
to see a start with a current schema, as at every start but a node's first.

`--floor` also prints the stack floor (`stack_floor`, used by `python -m bench idle` too):
VmRSS of fresh interpreters that import only the third-party stack a node is built on,
step by step, beside the node's own VmRSS. What is above the last step is liverelay's
code and state; what is below it no change of liverelay's own imports can remove.

Our package is byte-compiled first (`compile_package`), as an install does.
"""

from __future__ import annotations

import collections
import importlib.abc
import importlib.machinery
import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 1e6


class _Measured(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, hook: ImportRss) -> None:
        self.inner = inner
        self.hook = hook

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        stack = self.hook.stack
        stack.append([rss_mb(), 0.0])
        try:
            self.inner.exec_module(module)
        finally:
            start, children = stack.pop()
            total = rss_mb() - start
            self.hook.own[module.__name__] += total - children
            if stack:
                stack[-1][1] += total


class ImportRss(importlib.abc.MetaPathFinder):
    """A meta-path finder that wraps every other finder's loader in a measuring one."""

    def __init__(self) -> None:
        self.stack: list[list[float]] = []
        self.own: collections.Counter[str] = collections.Counter()

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Measured(spec.loader, self)
                return spec
        return None

    def by_package(self) -> collections.Counter[str]:
        out: collections.Counter[str] = collections.Counter()
        for name, mb in self.own.items():
            parts = name.split(".")
            out[".".join(parts[:2]) if parts[0] == "liverelay" else parts[0]] += mb
        return out


# The third-party stack of a plain node, cumulative: (label, modules added at this step).
FLOOR_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("interpreter", ()),
    ("+ asyncio, uvloop", ("asyncio", "uvloop")),
    ("+ aiohttp.web", ("aiohttp.web",)),
    ("+ pydantic, pydantic_settings", ("pydantic", "pydantic_settings")),
    ("+ sqlalchemy", ("sqlalchemy",)),
    # Not the stack's core, but third-party and loaded by every plain node too.
    (
        "+ click, prometheus_client, sqlite3 dialect",
        ("click", "prometheus_client", "sqlalchemy.dialects.sqlite"),
    ),
)
# The last step the statement is about ("the stack floor"); the one after it is shown for the split.
STACK_STEP = "+ sqlalchemy"

_PRINT_RSS = "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"


def compile_package(src: Path | None = None) -> None:
    """Byte-compile liverelay (from `src`, else the one this interpreter imports) as an install
    does. Without .pyc files (this machine sets PYTHONDONTWRITEBYTECODE=1, so an editable
    tree never gets them) a node compiles its ~120 modules from source at every start and
    keeps ~0.7 MB more RSS: the compiler's freed memory stays behind, fragmented."""
    if src is not None:
        package = src / "liverelay"
    else:
        spec = importlib.util.find_spec("liverelay")
        if spec is None or spec.origin is None:
            raise RuntimeError("liverelay is not importable from this interpreter")
        package = Path(spec.origin).parent
    cmd = [sys.executable, "-m", "compileall", "-q", str(package)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def floor_rss_mb(modules: Sequence[str]) -> float:
    """VmRSS of a fresh interpreter (this one's executable and environment, as a node gets)
    right after importing `modules`, in MB (10^6 bytes, as everywhere in bench/)."""
    code = "".join(f"import {m}\n" for m in modules) + _PRINT_RSS
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
    )
    return int(out.stdout.split()[-1]) * 1024 / 1e6  # kB -> MB of 10^6 bytes, as procstat.rss_bytes / 1e6


def stack_floor(runs: int = 3) -> list[tuple[str, float]]:
    """(step, median VmRSS MB of `runs` fresh interpreters) for each cumulative FLOOR_STEPS step."""
    rows: list[tuple[str, float]] = []
    modules: list[str] = []
    for label, step in FLOOR_STEPS:
        modules.extend(step)
        rows.append((label, statistics.median(floor_rss_mb(modules) for _ in range(runs))))
    return rows


def floor_lines(floor: Sequence[tuple[str, float]], node_mb: float | None) -> list[str]:
    """The floor as text, each step with what it added, then the node beside it."""
    lines, previous = [], 0.0
    for label, mb in floor:
        lines.append(f"  {label:<46} {mb:6.1f} MB  (+{mb - previous:.1f})")
        previous = mb
    if node_mb is not None:
        stack = dict(floor)[STACK_STEP]
        lines.append(
            f"  {'a plain node (liverelay serve)':<46} {node_mb:6.1f} MB  "
            f"(stack floor {stack:.1f} + {node_mb - stack:.1f}; liverelay's own code and state"
            f" {node_mb - previous:.1f})"
        )
    return lines


def main(argv: list[str]) -> None:
    after = 6.0
    floor: list[tuple[str, float]] = []
    while argv[:1] in (["--after"], ["--floor"]):
        if argv[0] == "--floor":
            floor, argv = stack_floor(), argv[1:]
        else:
            after, argv = float(argv[1]), argv[2:]
    compile_package()
    hook = ImportRss()
    sys.meta_path.insert(0, hook)

    def report() -> None:
        node_mb = rss_mb()
        print(f"VmRSS {node_mb:.1f} MB, {len(sys.modules)} modules; RSS added per package:", file=sys.stderr)
        for name, mb in hook.by_package().most_common(30):
            print(f"  {mb:6.2f} MB  {name}", file=sys.stderr)
        if floor:
            print("the stack floor (fresh interpreters, VmRSS after the imports):", file=sys.stderr)
            print("\n".join(floor_lines(floor, node_mb)), file=sys.stderr)
        os.kill(os.getpid(), signal.SIGTERM)

    timer = threading.Timer(after, report)
    timer.daemon = True
    timer.start()
    sys.argv = ["liverelay", "serve", *argv]
    from liverelay.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main(sys.argv[1:])
