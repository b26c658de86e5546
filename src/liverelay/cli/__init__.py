"""The `liverelay` command: run a node (`serve`), show its settings (`config`), manage local
keys, and drive the API (`domain`, `relay`, `status`, `stream`).

One module per command group; each attaches its group to the root `cli` (app.py) when
imported here. API commands go through liverelay.sdk like any remote client, so the CLI
works against any node it can reach. `keys` works on the local store directly: keys are
what you need before the API will talk to you.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .app import cli, main

if TYPE_CHECKING:
    from . import db, domain, keys, relay, serve, settings, status, stream
    from .output import age
    from .relay import parse_time
    from .status import status_rows, status_table

# Command modules load when their command runs (app.LazyGroup); these names too.
_LAZY = {
    "age": "output",
    "parse_time": "relay",
    "status_rows": "status",
    "status_table": "status",
    **{name: name for name in ("db", "domain", "keys", "relay", "serve", "settings", "status", "stream")},
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    loaded = importlib.import_module(f"{__name__}.{module}")
    return loaded if module == name else getattr(loaded, name)


__all__ = [
    "age",
    "cli",
    "db",
    "domain",
    "keys",
    "main",
    "parse_time",
    "relay",
    "serve",
    "settings",
    "status",
    "status_rows",
    "status_table",
    "stream",
]
