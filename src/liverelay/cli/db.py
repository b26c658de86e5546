"""`liverelay db`: the store's schema revision, and moving a single node's data into a cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from .app import cli
from .keys import store_options
from .output import fail, print_json
from .settings import load_or_exit

T = TypeVar("T")


def run_admin(work: Coroutine[Any, Any, T]) -> T:
    """Run one store.admin call; store errors exit 1, a URL this build cannot open exits 2."""
    from ..store import AlreadyExists, StoreError

    try:
        return asyncio.run(work)
    except NotImplementedError as exc:
        fail(f"bad configuration: {exc}", 2)
    except AlreadyExists as exc:
        fail(f"nothing copied: {exc}")
    except (StoreError, OSError) as exc:
        fail(f"store error: {exc}")


@cli.group()
def db() -> None:
    """Database schema (Alembic revisions) and `db copy` from SQLite into PostgreSQL."""


@db.command("upgrade")
@store_options
def db_upgrade(
    data_dir: str | None, database_url: str | None, config_file: str | None, as_json: bool
) -> None:
    """Apply every migration this build has (serve does this at start too)."""
    from ..store import admin

    s = load_or_exit(config_file, {"data_dir": data_dir, "database_url": database_url})
    s.data_dir.mkdir(parents=True, exist_ok=True)
    before, after = run_admin(admin.db_upgrade(s.database_url, s.data_dir))
    if as_json:
        print_json({"Before": before, "After": after})
    else:
        click.echo(f"{before or 'empty'} -> {after}")


@db.command("current")
@store_options
def db_current(
    data_dir: str | None, database_url: str | None, config_file: str | None, as_json: bool
) -> None:
    """The store's revision and the newest this build knows (reads only)."""
    from ..store import admin

    s = load_or_exit(config_file, {"data_dir": data_dir, "database_url": database_url})
    current, head = run_admin(admin.db_current(s.database_url, s.data_dir))
    if as_json:
        print_json({"Current": current, "Newest": head})
    else:
        click.echo(f"{current or 'empty'} (newest {head})")


@db.command("copy")
@click.option(
    "--from", "source", required=True, metavar="URL", help="sqlite:///path/liverelay.db (or any store URL)."
)
@click.option(
    "--to", "target", required=True, metavar="URL", help="postgresql://... (must hold no data yet)."
)
@store_options
def db_copy(
    source: str,
    target: str,
    data_dir: str | None,
    database_url: str | None,
    config_file: str | None,
    as_json: bool,
) -> None:
    """Copy keys, domains and relays from one store into another, all or nothing."""
    from ..store import admin

    s = load_or_exit(config_file, {"data_dir": data_dir})
    report = run_admin(admin.db_copy(source, target, s.data_dir))
    if as_json:
        print_json(
            {
                "Keys": report.keys,
                "Domains": report.domains,
                "RelayV3": report.relay_v3,
                "RelayV4": report.relay_v4,
            }
        )
    else:
        click.echo(
            f"copied {report.keys} keys, {report.domains} domains, "
            f"{report.relay_v3} V3 configs, {report.relay_v4} V4 relays"
        )
