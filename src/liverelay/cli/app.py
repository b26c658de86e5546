"""The root `liverelay` command group; the command modules attach their groups to it."""

from __future__ import annotations

import click

from .. import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="liverelay")
def cli() -> None:
    """liverelay: a live-streaming relay node with origin pull and a Volcengine-compatible API."""


def main() -> None:
    cli(prog_name="liverelay")
