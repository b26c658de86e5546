"""Where a plain node's fixed memory goes, import by import.

`python -m bench.idle_imports [--after 6] [serve flags...]` runs `liverelay serve` in this
process with an import hook that reads VmRSS before and after each module executes, and
charges each module what its own execution added (its imports' growth excluded). After
`--after` seconds it prints the node's VmRSS, the number of modules and the top packages
by RSS, then stops the node (SIGTERM). Pass the usual serve flags (`--data-dir DIR`, the
listen addresses); run it twice on one data dir to see a start with a current schema.
"""

from __future__ import annotations

import collections
import importlib.abc
import importlib.machinery
import os
import signal
import sys
import threading
from collections.abc import Sequence
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


def main(argv: list[str]) -> None:
    after = 6.0
    if argv[:1] == ["--after"]:
        after, argv = float(argv[1]), argv[2:]
    hook = ImportRss()
    sys.meta_path.insert(0, hook)

    def report() -> None:
        print(f"VmRSS {rss_mb():.1f} MB, {len(sys.modules)} modules; RSS added per package:", file=sys.stderr)
        for name, mb in hook.by_package().most_common(30):
            print(f"  {mb:6.2f} MB  {name}", file=sys.stderr)
        os.kill(os.getpid(), signal.SIGTERM)

    timer = threading.Timer(after, report)
    timer.daemon = True
    timer.start()
    sys.argv = ["liverelay", "serve", *argv]
    from liverelay.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main(sys.argv[1:])
