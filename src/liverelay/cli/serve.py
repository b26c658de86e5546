"""`liverelay serve`: run a node until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

import click

from ..config import ConfigError, Settings
from ..netaddr import format_hostport
from .app import cli
from .output import fail
from .settings import load_or_exit, settings_options

if TYPE_CHECKING:
    from ..node import Node


def setup_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        fail(f"bad configuration: unknown log level {level!r}", 2)
    logging.basicConfig(
        level=numeric,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def started_banner(node: Node, ak: str | None) -> str:
    """Where each listener is and a first call to try."""
    lines = ["liverelay node is up"]
    for listener in node.listeners:
        lines.append(f"  {listener.name:<5} {listener.url}")
    api = next((lst for lst in node.listeners if lst.name == "api"), None)
    if api is not None:
        endpoint = format_hostport(api.host, api.port)
        lines.append(f"try:  liverelay domain list --endpoint {endpoint}")
        lines.append(
            f'SDK:  LiveService("{endpoint}", os.environ["ACCESS_KEY_ID"], '
            f'os.environ["ACCESS_KEY_SECRET"], scheme="http")'
        )
        if not ak:
            lines.append(
                "note: no ACCESS_KEY_ID/ACCESS_KEY_SECRET set; create a key with `liverelay keys create`"
            )
    return "\n".join(lines)


async def ensure_env_key(settings: Settings, ak: str, sk: str) -> None:
    """Put the environment's key pair in the store before the API starts answering."""
    from ..store import open_store

    store = await open_store(settings)
    try:
        await store.ensure_key(ak, sk)
    finally:
        await store.close()


def release_startup_memory() -> None:
    """Give the OS back the heap that start-up used and freed (imports, the schema check,
    building the parts): glibc keeps it otherwise; 1.5 MB of a node's RSS measured.

    What is alive by now (modules, classes, settings, the node's parts) lives as long as
    the node, so it is moved out of the cyclic collector's generations (`gc.freeze`):
    each full collection walked those ~120,000 objects again, about 7 % of the CPU of
    a node pulling 50 HLS relays.

    Tried and left out, each under 0.2 MB of a plain node's VmRSS (bench/README.md, "Fixed
    RSS: what is left and the stack floor"): mallopt M_ARENA_MAX 1 or 2 (the node's six
    threads: the loop, the SQLite thread, libuv's four resolver workers, allocate little of
    their own) and a lower M_TRIM_THRESHOLD (the trim below already returns the free heap)."""
    gc.collect()
    gc.freeze()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError) as exc:  # not glibc: nothing to trim this way
        logging.getLogger("liverelay.cli").debug("malloc_trim unavailable: %s", exc)


async def serve_node(settings: Settings, ak: str | None, sk: str | None) -> None:
    from ..node import run_node

    if ak and sk:
        await ensure_env_key(settings, ak, sk)

    def on_started(node: Node) -> None:
        click.echo(started_banner(node, ak))
        sys.stdout.flush()
        release_startup_memory()

    await run_node(settings, on_started=on_started)


@cli.command()
@settings_options
def serve(config_file: str | None, flags: Mapping[str, object]) -> None:
    """Run a node until SIGTERM/SIGINT. Settings: flags > env > TOML > defaults."""
    settings = load_or_exit(config_file, flags)
    setup_logging(settings.log_level)
    from ..node import install_event_loop

    install_event_loop()
    ak, sk = os.environ.get("ACCESS_KEY_ID"), os.environ.get("ACCESS_KEY_SECRET")
    if bool(ak) != bool(sk):
        logging.getLogger("liverelay.cli").warning(
            "only one of ACCESS_KEY_ID / ACCESS_KEY_SECRET is set: no key pair added to the store"
        )
    try:
        asyncio.run(serve_node(settings, ak, sk))
    except (ConfigError, NotImplementedError) as exc:
        fail(f"bad configuration: {exc}", 2)
    except OSError as exc:
        fail(f"cannot start the node: {exc}")
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        pass
