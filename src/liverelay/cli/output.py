"""How the CLI prints: errors and exit codes, JSON, tables, times and ages."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, NoReturn

import click

from ..timefmt import utc_iso

if TYPE_CHECKING:  # the SDK (httpx) loads only for the commands that call the API
    from rich.console import Console
    from rich.table import Table

    from ..sdk import LiveAPIError

    out: Console


@cache
def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def __getattr__(name: str) -> Console:
    # `out`, the console, is made on first use: rich (~2 MB) loads for the commands that
    # print, not for `liverelay serve`, which imports this module for fail().
    if name == "out":
        return _console()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Every cell folds (a narrow terminal squeezes columns, never crops them); errors
# are kept to a bounded width so one long message does not take the whole table.
MAX_WIDTHS = {"Last error": 40}


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False))


def api_error_text(error: LiveAPIError) -> str:
    rid = f" ({error.request_id})" if error.request_id else ""
    return f"{error.code}: {error.message}{rid}"


@contextmanager
def exit_on_api_error() -> Iterator[None]:
    """Print `error: Code: Message (RequestId)` (or the connection failure) and exit."""
    from ..sdk import LiveAPIError, LiveConnectionError

    try:
        yield
    except LiveAPIError as error:
        fail(api_error_text(error))
    except LiveConnectionError as error:
        fail(str(error))


def table(title: str | None, columns: Iterable[str], rows: Iterable[Iterable[object]]) -> Table:
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        t.add_column(column, overflow="fold", max_width=MAX_WIDTHS.get(column))
    for row in rows:
        # Text, not markup: values like "[Errno 111]" must print as they are.
        t.add_row(*(Text("" if v is None else str(v)) for v in row))
    return t


def iso_time(value: object) -> str:
    """Unix seconds -> RFC 3339 UTC; anything else as given."""
    if isinstance(value, int | float | str):
        try:
            return utc_iso(float(value))
        except (ValueError, OverflowError, OSError):
            pass
    return str(value)


def age(value: object, now: float | None = None) -> str:
    """Unix seconds or an RFC 3339 time -> how long ago, e.g. '1h02m' (as given if unparsable)."""
    try:
        if isinstance(value, int | float):
            since = float(value)
        else:
            since = datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return str(value)
    seconds = max(0, int((time.time() if now is None else now) - since))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 24:
        return f"{hours // 24}d{hours % 24:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
