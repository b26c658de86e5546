"""The admin listener: POST /?Action=X&Version=2023-01-01 with a signed JSON body.

Pipeline: per-address failed-auth throttle -> method -> Action/Version -> body (size cap)
-> signature (a failure spends one of the address's tokens) -> per-key throttle
-> action lookup -> JSON binding -> handler -> envelope. Every answer, success or
error, is the JSON envelope of spec A.4; errors never use HTTP 200.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..cluster.types import NodeDirectory
from ..config import Settings
from ..store import Store, StoreUnavailable
from ..streamctl import EmptyHub, StreamControl
from . import errors
from .actions import ACTIONS, API_VERSION, GET_ACTIONS
from .auth import authenticate
from .console import add_console_routes
from .context import ActionContext, Result
from .envelope import error_body, metadata, new_request_id, success_body
from .errors import ApiError
from .protocols import ClusterControl, RelayStatusSource
from .throttle import LogGate, RateLimiter

log = logging.getLogger("liverelay.api")

API_HANDLER_KEY: web.AppKey[ApiHandler] = web.AppKey("api_handler")

_READ_CHUNK = 64 * 1024
# Error log lines per client address: a few at once, then one a second (with the count
# of the lines dropped in between).
_ERROR_LOG_RATE_PER_S = 1.0
_ERROR_LOG_BURST = 5


@dataclass
class _Caller:
    """Who sent the request being handled: the client address, and the access key once
    the signature checked out (None before that or when it did not)."""

    remote: str
    access_key: str | None = None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook: a key given twice is refused, never silently resolved (the
    signer, a proxy and this server could each read a different value)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Bytes -> dict, or InvalidParam.BindError. An empty body counts as {}."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.bind_error("the body is not UTF-8") from None
    if not text.strip():
        return {}
    try:
        value = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as exc:
        raise errors.bind_error(f"the key {str(exc)[:64]!r} appears twice in one object") from None
    except (ValueError, RecursionError):
        raise errors.bind_error("the body is not JSON") from None
    if not isinstance(value, dict):
        raise errors.bind_error("the body must be a JSON object")
    return value


def query_parameters(request: web.Request) -> dict[str, Any]:
    """A GET action's parameters: the query string less Action and Version. A name given
    twice is refused (the signer and we could each read another value)."""
    params: dict[str, Any] = {}
    for name, value in request.query.items():
        if name in ("Action", "Version"):
            continue
        if name in params:
            raise errors.invalid_param(f"the query parameter {name[:64]!r} is given more than once")
        params[name] = value
    return params


async def read_body(request: web.Request, limit: int) -> bytes:
    length = request.content_length
    if length is not None:
        if length > limit:
            raise errors.body_too_large(limit)
        if length == 0:
            return b""
        try:  # one read of the announced length (the common case: no chunk loop)
            return await request.content.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            return exc.partial  # the client stopped short: its signature cannot match
    data = bytearray()
    while True:
        chunk = await request.content.read(_READ_CHUNK)
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise errors.body_too_large(limit)


class ApiHandler:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        relays: RelayStatusSource | None = None,
        stream_control: StreamControl | None = None,
        cluster: ClusterControl | None = None,
        directory: NodeDirectory | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.relays = relays
        self.cluster = cluster
        self.directory = directory
        self.limiter = RateLimiter(settings.api.rate_limit_per_s, settings.api.rate_burst)
        # The node's stream control; an API served without media (tests) lists no streams.
        self.stream_control = stream_control or StreamControl(EmptyHub())
        # Requests that fail authentication, per client address: once an address has spent
        # its budget, its requests are refused before any signature check until it refills,
        # so keys cannot be guessed at line rate; other addresses are not affected.
        self.unauth_limiter = RateLimiter(settings.api.unauth_rate_per_ip, settings.api.unauth_burst_per_ip)
        self.error_log_gate = LogGate(_ERROR_LOG_RATE_PER_S, _ERROR_LOG_BURST)
        self.context = ActionContext(settings, store, relays, self.stream_control, cluster, directory)

    async def handle(self, request: web.Request) -> web.Response:
        api = self.settings.api
        action = request.query.get("Action", "")
        version = request.query.get("Version", "")
        meta = metadata(new_request_id(), action, version, api.region, api.service)
        caller = _Caller(request.remote or "")
        try:
            result = await self._dispatch(request, action, version, caller)
        except ApiError as exc:
            self._log_error(meta["RequestId"], action, exc, caller)
            return self._respond(exc.status, error_body(meta, exc), exc)
        except StoreUnavailable as exc:
            log.warning("%s %s -> 503: %s", meta["RequestId"], action, exc)
            unavailable = errors.service_unavailable()
            return self._respond(unavailable.status, error_body(meta, unavailable), unavailable)
        except Exception:
            log.exception("%s %s failed", meta["RequestId"], action)
            internal = errors.internal_error()
            return self._respond(internal.status, error_body(meta, internal), internal)
        return self._respond(200, success_body(meta, result), None)

    def _log_error(self, request_id: str, action: str, exc: ApiError, caller: _Caller) -> None:
        """One line per error of a signed client (its key is throttled already); errors of
        requests that did not authenticate are rate-limited per address, so a flood of
        them is a handful of lines that count what they left out."""
        more = ""
        if caller.access_key is None:
            dropped = self.error_log_gate.admit(caller.remote)
            if dropped is None:
                return
            if dropped:
                more = f" ({dropped} more error lines from {caller.remote} dropped)"
        log.info(
            "%s %s from %s -> %d %s: %s%s",
            request_id,
            action,
            caller.remote,
            exc.status,
            exc.code,
            exc.message,
            more,
        )

    @staticmethod
    def _respond(status: int, body: dict[str, Any], error: ApiError | None) -> web.Response:
        headers = {"Retry-After": "1"} if error is not None and error.status == 429 else None
        # default=str: a status row with an odd value (datetime, enum) must not turn the
        # answer into aiohttp's plain-text 500.
        text = json.dumps(body, default=str)
        return web.Response(text=text, status=status, headers=headers, content_type="application/json")

    async def _dispatch(self, request: web.Request, action: str, version: str, caller: _Caller) -> Result:
        api = self.settings.api
        remote = caller.remote
        if self.unauth_limiter.exhausted(remote):
            raise errors.address_flow_limit_exceeded()
        # GET only for the actions Volcengine documents as GET: their parameters travel
        # in the (signed) query string instead of a JSON body.
        if request.method != "POST" and not (request.method == "GET" and action in GET_ACTIONS):
            raise errors.method_not_allowed(request.method)
        for name in ("Action", "Version"):
            # Given twice, the gateway, the signer and we might each read another one.
            if len(request.query.getall(name, [])) > 1:
                raise errors.invalid_param(f"the query parameter {name} is given more than once")
        if not action:
            raise errors.missing_parameter("Action")
        if not version:
            raise errors.missing_parameter("Version")
        body = await read_body(request, api.max_body_bytes)
        try:
            ak = await authenticate(
                method=request.method,
                path=request.path,
                query=list(request.query.items()),
                headers=request.headers,
                body=body,
                lookup_key=self.store.get_key,
                region=api.region,
                service=api.service,
                max_skew_s=api.max_skew_s,
            )
        except ApiError:
            self.unauth_limiter.allow(remote)  # spends one token of this address
            raise
        caller.access_key = ak
        if not self.limiter.allow(ak):
            raise errors.flow_limit_exceeded()
        handler = ACTIONS.get(action)
        if handler is None or version != API_VERSION or request.path != "/":
            raise errors.invalid_action_or_version(action, version)
        payload = query_parameters(request) if request.method == "GET" else parse_json_object(body)
        return await handler(self.context, payload)


def create_api_app(
    settings: Settings,
    store: Store,
    relays: RelayStatusSource | None = None,
    stream_control: StreamControl | None = None,
    cluster: ClusterControl | None = None,
    directory: NodeDirectory | None = None,
) -> web.Application:
    """The admin API over `store` (and the console); without `relays` DescribeRelayStatus
    lists nothing, without `stream_control` the stream actions list no streams."""
    limit = settings.api.max_body_bytes
    # aiohttp's own cap only guards request.read(); we stream with our own cap, but keep
    # it consistent in case a middleware reads the body.
    app = web.Application(client_max_size=max(limit + 1, 1024))
    handler = ApiHandler(settings, store, relays, stream_control, cluster, directory)
    app[API_HANDLER_KEY] = handler
    add_console_routes(app, settings)
    app.router.add_route("*", "/{tail:.*}", handler.handle)
    return app


__all__ = ["API_HANDLER_KEY", "ApiHandler", "create_api_app", "parse_json_object"]
