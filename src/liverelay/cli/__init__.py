"""The `liverelay` command: run a node (`serve`), show its settings (`config`), manage local
keys, and drive the API (`domain`, `relay`, `status`, `stream`, `auth`, `url`).

One module per command group; each attaches its group to the root `cli` (app.py) when
imported here. API commands go through liverelay.sdk like any remote client, so the CLI
works against any node it can reach. `keys` works on the local store directly: keys are
what you need before the API will talk to you.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from .app import cli, main

if TYPE_CHECKING:
    from . import auth, db, domain, keys, relay, serve, settings, status, stream
    from .output import age
    from .relay import parse_time
    from .status import status_rows, status_table

# Command modules load when their command runs (app.LazyGroup); so do these names, each
# through its own typed loader (PEP 562 module __getattr__, no lookup by name).
_COMMAND_MODULES = frozenset(
    ("auth", "db", "domain", "keys", "relay", "serve", "settings", "status", "stream")
)


def _age() -> object:
    from .output import age

    return age


def _parse_time() -> object:
    from .relay import parse_time

    return parse_time


def _status_rows() -> object:
    from .status import status_rows

    return status_rows


def _status_table() -> object:
    from .status import status_table

    return status_table


_LAZY_NAMES: dict[str, Callable[[], object]] = {
    "age": _age,
    "parse_time": _parse_time,
    "status_rows": _status_rows,
    "status_table": _status_table,
}


def __getattr__(name: str) -> object:
    load = _LAZY_NAMES.get(name)
    if load is not None:
        return load()
    if name in _COMMAND_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "age",
    "auth",
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
