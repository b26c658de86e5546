"""The `liverelay` command: run a node (`serve`), show its settings (`config`), manage local
keys, and drive the API (`domain`, `relay`, `status`, `auth`, `url`).

One module per command group; each attaches its group to the root `cli` (app.py) when
imported here. API commands go through liverelay.sdk like any remote client, so the CLI
works against any node it can reach. `keys` works on the local store directly: keys are
what you need before the API will talk to you.
"""

from __future__ import annotations

from . import auth, domain, keys, relay, serve, settings, status
from .app import cli, main
from .output import age
from .relay import parse_time
from .status import status_rows, status_table

__all__ = [
    "age",
    "auth",
    "cli",
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
]
