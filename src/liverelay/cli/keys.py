"""`liverelay keys`: access keys, on the local node's store directly (you need one before the API
will talk to you)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..store import StoreError
from .app import cli
from .output import fail, iso_time, out, print_json, table
from .settings import load_or_exit

if TYPE_CHECKING:
    from ..store import Store
    from ..store.models import AccessKey

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def store_options(func: F) -> F:
    func = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)
    func = click.option(
        "--config", "config_file", type=click.Path(dir_okay=False), help="TOML settings file."
    )(func)
    func = click.option(
        "--data-dir", type=click.Path(file_okay=False), help="State directory, as for serve."
    )(func)
    func = click.option("--database-url", metavar="URL", help="As for serve (default: SQLite).")(func)
    return func


def run_on_store(
    data_dir: str | None,
    config_file: str | None,
    work: Callable[[Store], Awaitable[T]],
    database_url: str | None = None,
) -> T:
    settings = load_or_exit(config_file, {"data_dir": data_dir, "database_url": database_url})

    async def runner() -> T:
        from ..store import open_store

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = await open_store(settings)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(runner())
    except NotImplementedError as exc:  # e.g. a database_url this build cannot open
        fail(f"bad configuration: {exc}", 2)
    except (OSError, StoreError) as exc:
        fail(f"cannot open the store ({settings.database_url or settings.data_dir}): {exc}")


def key_fields(key: AccessKey) -> dict[str, object]:
    """A stored key as printable fields (the secret is never listed)."""
    return {
        "AccessKeyId": key.ak,
        "Enabled": key.enabled,
        "CreateTime": iso_time(key.created) if key.created else "",
    }


@cli.group()
def keys() -> None:
    """Access keys of the local node's store (operate on --data-dir directly)."""


@keys.command("create")
@store_options
def keys_create(
    data_dir: str | None, database_url: str | None, config_file: str | None, as_json: bool
) -> None:
    """Create a key pair; the secret is shown only this once."""
    key = run_on_store(data_dir, config_file, lambda store: store.create_key(), database_url)
    ak, sk = key.ak, key.sk
    if as_json:
        print_json({"AccessKeyId": ak, "SecretAccessKey": sk})
        return
    click.echo(f"AccessKeyId:     {ak}")
    click.echo(f"SecretAccessKey: {sk}")
    click.echo("The secret is not shown again. To use it:")
    click.echo(f"  export ACCESS_KEY_ID={ak} ACCESS_KEY_SECRET={sk}")


@keys.command("list")
@store_options
def keys_list(data_dir: str | None, database_url: str | None, config_file: str | None, as_json: bool) -> None:
    """List access key ids."""
    rows = [
        key_fields(k)
        for k in run_on_store(data_dir, config_file, lambda store: store.list_keys(), database_url)
    ]
    if as_json:
        print_json(rows)
        return
    out.print(table(None, ["AccessKeyId", "Enabled", "Created"], [r.values() for r in rows]))


@keys.command("delete")
@click.argument("ak")
@store_options
def keys_delete(
    ak: str, data_dir: str | None, database_url: str | None, config_file: str | None, as_json: bool
) -> None:
    """Delete the key AK."""
    deleted = bool(run_on_store(data_dir, config_file, lambda store: store.delete_key(ak), database_url))
    if as_json:
        print_json({"AccessKeyId": ak, "Deleted": deleted})
    if not deleted:
        fail(f"no such key: {ak}")
    if not as_json:
        click.echo(f"deleted {ak}")
