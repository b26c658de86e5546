"""The root `liverelay` command group; the command modules attach their groups to it."""

from __future__ import annotations

import importlib

import click

from .. import __version__

# Command -> the modules that attach it (and its subcommands) to `cli`, imported on first
# use: `liverelay serve` then never loads the SDK's HTTP client (httpx) the API commands
# need (about 4 MB of a node's resident memory).
LAZY_COMMANDS: dict[str, tuple[str, ...]] = {
    "auth": ("auth",),
    "cluster": ("cluster",),
    "config": ("settings",),
    "db": ("db",),
    "domain": ("domain",),
    "keys": ("keys",),
    "node": ("node",),
    "relay": ("relay", "status"),
    "serve": ("serve",),
    "status": ("relay", "status"),
    "stream": ("stream",),
    "url": ("auth",),
}


class LazyGroup(click.Group):
    """A click group whose subcommands' modules are imported when the subcommand is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for module in LAZY_COMMANDS.get(cmd_name, ()):
            importlib.import_module(f"{__package__}.{module}")
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.version_option(__version__, prog_name="liverelay")
def cli() -> None:
    """liverelay: a live-streaming relay node with origin pull and a Volcengine-compatible API."""


def main() -> None:
    cli(prog_name="liverelay")
