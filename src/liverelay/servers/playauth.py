"""URL authentication at the HTTP media listener's request admission (HTTP-FLV, HLS).

One aiohttp middleware in front of every route whose path names an `{app}` and a
`{stream}` and ends in .flv (the URL a player opens with the signature): the node's
UrlAuthVerifier decides, a refusal is a 403 and one (rate-limited) log line naming the
reason. HLS checks its own URLs (servers/hls.py `HlsHttp`: the signed playlist opens a
session whose token its segments must carry; see docs/auth.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..hub import StreamKey
from .admission import RateLimitedLog
from .peertext import clip
from .protocols import ListenerDeps
from .vhost import resolve_vhost

log = logging.getLogger("liverelay.http")
_warn = RateLimitedLog(log)

PLAY_SUFFIXES = (".flv",)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def play_auth_middleware(deps: ListenerDeps, remote_of: Callable[[web.Request], str]) -> Middleware:
    """`remote_of(request)`: the listener's "address:port" of the peer, for the log line."""

    @web.middleware
    async def play_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        verifier = deps.urlauth
        info = request.match_info
        app, stream = info.get("app"), info.get("stream")
        if (
            verifier is None
            or app is None
            or stream is None
            or request.method == "OPTIONS"
            or not request.path.endswith(PLAY_SUFFIXES)
        ):
            return await handler(request)
        try:
            host = request.url.host
        except ValueError:
            return await handler(request)  # the handler answers a bad Host header itself
        vhost = resolve_vhost(deps, host)
        if vhost is None:
            return await handler(request)  # unknown domain: the handler's 404
        refusal = verifier.check_play(vhost, app, stream, request.rel_url.raw_query_string)
        if refusal is None:
            return await handler(request)
        remote = remote_of(request)
        _warn.warning(
            f"auth-play-{refusal.reason}-{remote.rpartition(':')[0]}",
            "http play %s from %s refused: %s",
            clip(StreamKey(vhost, app, stream)),
            remote,
            refusal.reason,
        )
        return web.Response(status=403, text="forbidden\n", headers={"Access-Control-Allow-Origin": "*"})

    return play_auth
