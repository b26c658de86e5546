"""The admin listener: POST /?Action=X&Version=2023-01-01 with a signed JSON body.

Pipeline: method -> Action/Version -> body (size cap) -> signature -> per-key throttle
-> action lookup -> JSON binding -> handler -> envelope. Every answer, success or
error, is the JSON envelope of spec A.4; errors never use HTTP 200.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from ..config import Settings
from ..store import Store, StoreUnavailable
from . import errors
from .actions import ACTIONS, API_VERSION
from .auth import authenticate
from .context import ActionContext, Result
from .envelope import error_body, metadata, new_request_id, success_body
from .errors import ApiError
from .throttle import RateLimiter

log = logging.getLogger("liverelay.api")

API_HANDLER_KEY: web.AppKey[ApiHandler] = web.AppKey("api_handler")

_READ_CHUNK = 64 * 1024


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


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise errors.body_too_large(limit)
    data = bytearray()
    while True:
        chunk = await request.content.read(_READ_CHUNK)
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise errors.body_too_large(limit)


class ApiHandler:
    def __init__(self, node: Any) -> None:
        self.node = node
        settings: Settings = node.settings
        self.settings = settings
        self.limiter = RateLimiter(settings.api.rate_limit_per_s, settings.api.rate_burst)

    @property
    def store(self) -> Store:
        return self.node.store  # type: ignore[no-any-return]

    async def handle(self, request: web.Request) -> web.Response:
        api = self.settings.api
        action = request.query.get("Action", "")
        version = request.query.get("Version", "")
        meta = metadata(new_request_id(), action, version, api.region, api.service)
        try:
            result = await self._dispatch(request, action, version)
        except ApiError as exc:
            log.info("%s %s -> %d %s: %s", meta["RequestId"], action, exc.status, exc.code, exc.message)
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

    @staticmethod
    def _respond(status: int, body: dict[str, Any], error: ApiError | None) -> web.Response:
        headers = {"Retry-After": "1"} if error is not None and error.status == 429 else None
        # default=str: a status row with an odd value (datetime, enum) must not turn the
        # answer into aiohttp's plain-text 500.
        text = json.dumps(body, default=str)
        return web.Response(text=text, status=status, headers=headers, content_type="application/json")

    async def _dispatch(self, request: web.Request, action: str, version: str) -> Result:
        api = self.settings.api
        if request.method != "POST":
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
        if not self.limiter.allow(ak):
            raise errors.flow_limit_exceeded()
        handler = ACTIONS.get(action)
        if handler is None or version != API_VERSION or request.path != "/":
            raise errors.invalid_action_or_version(action, version)
        payload = parse_json_object(body)
        context = ActionContext(self.settings, self.store, getattr(self.node, "relays", None))
        return await handler(context, payload)


def create_api_app(node: Any) -> web.Application:
    """`node` needs `.settings` and `.store`; `.relays` is optional (DescribeRelayStatus)."""
    limit = node.settings.api.max_body_bytes
    # aiohttp's own cap only guards request.read(); we stream with our own cap, but keep
    # it consistent in case a middleware reads the body.
    app = web.Application(client_max_size=max(limit + 1, 1024))
    handler = ApiHandler(node)
    app[API_HANDLER_KEY] = handler
    app.router.add_route("*", "/{tail:.*}", handler.handle)
    return app


__all__ = ["API_HANDLER_KEY", "ApiHandler", "create_api_app", "parse_json_object"]
