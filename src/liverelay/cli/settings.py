"""Settings on the command line: the flags serve shares with `config show`, loading them
(one `error: bad configuration: ...` line and exit 2 on a bad value), and `liverelay config`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from ..config import ConfigError, Layers, Settings, build_settings, read_layers, setting_names
from ..sources.base import MASK, redact_text
from . import output
from .app import cli
from .output import fail, print_json, table

F = TypeVar("F", bound=Callable[..., Any])

# Settings whose whole value is a credential (none yet; a future `*_secret` is caught by name too).
_SECRET_WORDS = ("secret", "password", "token")
# Settings that may carry a credential inside a URL (userinfo password, signed query).
_URL_SETTINGS = ("database_url", "webhook.url")


def settings_options(func: F) -> F:
    """The flags that override settings (serve and `config show`), passed on as `flags`."""

    @click.option(
        "--data-dir", type=click.Path(file_okay=False), help="State directory (default .liverelay-data)."
    )
    @click.option(
        "--database-url",
        metavar="URL",
        help="postgresql://... for a cluster (default: SQLite in the data directory).",
    )
    @click.option("--api-listen", metavar="HOST:PORT", help="Management API (default 127.0.0.1:8180).")
    @click.option("--http-listen", metavar="HOST:PORT", help="HTTP-FLV playback (default 127.0.0.1:8080).")
    @click.option("--rtmp-listen", metavar="HOST:PORT", help="RTMP publish/play (default 127.0.0.1:1935).")
    @click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML settings file.")
    @click.option(
        "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)
    )
    @functools.wraps(func)
    def wrapper(
        data_dir: str | None,
        database_url: str | None,
        api_listen: str | None,
        http_listen: str | None,
        rtmp_listen: str | None,
        config_file: str | None,
        log_level: str | None,
        **kwargs: Any,
    ) -> Any:
        flags = {
            "data_dir": data_dir,
            "database_url": database_url,
            "api.listen": api_listen,
            "media.http_listen": http_listen,
            "media.rtmp_listen": rtmp_listen,
            "log_level": log_level.upper() if log_level else None,
        }
        return func(config_file=config_file, flags=flags, **kwargs)

    return cast(F, wrapper)  # click passes the new options by name; func gets config_file and flags


def load_layers_or_exit(config_file: str | None, flags: Mapping[str, object]) -> tuple[Settings, Layers]:
    try:
        layers = read_layers(config_file, overrides=flags)
        return build_settings(layers), layers
    except ConfigError as exc:
        fail(f"bad configuration: {exc}", 2)


def load_or_exit(config_file: str | None, flags: Mapping[str, object]) -> Settings:
    """Settings from flags > env > file > defaults, or one error line and exit 2."""
    return load_layers_or_exit(config_file, flags)[0]


def setting_value(settings: Settings, name: str) -> object:
    section, dot, key = name.partition(".")
    dumped = settings.model_dump(mode="json")
    value = dumped[section][key] if dot else dumped[section]
    return mask(name, value)


def mask(name: str, value: object) -> object:
    """What `config show` may print: credentials masked, the rest as it is."""
    leaf = name.rpartition(".")[2]
    if isinstance(value, str) and value:
        if any(word in leaf for word in _SECRET_WORDS):
            return MASK
        if name in _URL_SETTINGS:
            return redact_text(value)
    return value


def effective_settings(settings: Settings, layers: Layers) -> dict[str, dict[str, object]]:
    """name -> {"value", "source"} for every setting, in declaration order."""
    return {
        name: {"value": setting_value(settings, name), "source": layers.origin(name)}
        for name in setting_names()
    }


@cli.group("config")
def config_group() -> None:
    """The node's settings (flags > environment > TOML file > defaults)."""


@config_group.command("show")
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def config_show(config_file: str | None, flags: Mapping[str, object], as_json: bool) -> None:
    """Print the effective settings and where each came from (default, file, env, flag)."""
    settings, layers = load_layers_or_exit(config_file, flags)
    rows = effective_settings(settings, layers)
    if as_json:
        print_json(rows)
        return
    title = f"settings (file {Path(config_file)})" if config_file else "settings"
    cells = [(name, _show(row["value"]), row["source"]) for name, row in rows.items()]
    output.out.print(table(title, ["Setting", "Value", "From"], cells))


def _show(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    if value == "":
        return '""'
    return str(value)
