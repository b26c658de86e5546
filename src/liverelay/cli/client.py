"""What every API command shares: the client options and an ApiContext around a LiveService."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from ..sdk import LiveService
from ..sdk.actions import ACTIONS
from .output import exit_on_api_error, fail, print_json

DEFAULT_ENDPOINT = "127.0.0.1:8180"
F = TypeVar("F", bound=Callable[..., Any])


def client_options(func: F) -> F:
    """--endpoint/--scheme/--ak/--sk/--json/--timeout for every command that calls the API."""
    options = [
        click.option(
            "--endpoint",
            envvar="LIVERELAY_ENDPOINT",
            default=DEFAULT_ENDPOINT,
            show_default=True,
            help="API address HOST:PORT (env LIVERELAY_ENDPOINT).",
        ),
        click.option("--scheme", type=click.Choice(["http", "https"]), default="http", show_default=True),
        click.option("--ak", envvar="ACCESS_KEY_ID", help="Access key id (env ACCESS_KEY_ID)."),
        click.option("--sk", envvar="ACCESS_KEY_SECRET", help="Access key secret (env ACCESS_KEY_SECRET)."),
        click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per request."),
        click.option("--json", "as_json", is_flag=True, help="Print the raw JSON response."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


class ApiContext:
    """What a client command needs: a LiveService and how to print."""

    def __init__(
        self, endpoint: str, scheme: str, ak: str | None, sk: str | None, timeout: float, as_json: bool
    ) -> None:
        if not ak or not sk:
            fail("no credentials: set ACCESS_KEY_ID and ACCESS_KEY_SECRET or pass --ak/--sk", 2)
        self.as_json = as_json
        if "://" in endpoint:  # a pasted URL such as http://127.0.0.1:8180/
            parts = urlsplit(endpoint)
            scheme, endpoint = parts.scheme or scheme, parts.netloc
        if scheme not in ("http", "https") or not endpoint:
            fail(f"--endpoint wants HOST:PORT (or http[s]://HOST:PORT), got {endpoint!r}", 2)
        self.service = LiveService(endpoint, ak, sk, scheme, timeout=timeout)

    def call(self, method: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run the SDK method `method` (a name in sdk.actions' table); print
        `error: Code: Message (RequestId)` and exit on failure."""
        with exit_on_api_error():
            return self.service.call(ACTIONS[method], dict(body or {}))

    def report(self, response: Mapping[str, Any], message: str) -> None:
        """The raw response with --json, else the one-line (or few-line) human summary."""
        if self.as_json:
            print_json(response)
        else:
            click.echo(message)


def api_command(func: Callable[..., None]) -> Callable[..., None]:
    """Turn the client options into an ApiContext passed as the first argument."""

    @client_options
    @functools.wraps(func)
    def wrapper(
        endpoint: str,
        scheme: str,
        ak: str | None,
        sk: str | None,
        timeout: float,
        as_json: bool,
        **kwargs: Any,
    ) -> None:
        api = ApiContext(endpoint, scheme, ak, sk, timeout, as_json)
        try:
            func(api, **kwargs)
        finally:
            api.service.close()

    return wrapper
