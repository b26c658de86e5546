"""Who may hold a connection on a listener, and for how long before it must say something.

Shared by the three listeners (RTMP, the HTTP media listener, the API listener):

- `AddressCap`: at most `per_address` concurrent connections from one IP address on a
  listener (loopback counted too unless exempted); the excess is closed at accept.
- `RateLimitedLog`: one log line per key per interval, with the count of what it held
  back, for events an attacker can repeat at will (caps, file limit, timeouts).
- `FileBudget`: the connections all listeners hold against the open-file limit; one
  rate-limited line once they pass 90 % of it. This is how a node on uvloop learns it
  is running out: libuv handles EMFILE on accept itself (it accepts and closes the
  connection with a reserved descriptor) and reports nothing.
- `raise_file_limit()`: soft RLIMIT_NOFILE up to the hard limit at start.
- `log_accept_errors(loop)`: an EMFILE/ENFILE on accept becomes one rate-limited line
  (the asyncio loop reports it; uvloop does not, see FileBudget).
- `GuardedRequestHandler` / `serve_guarded(...)`: the aiohttp listeners' protocol with a
  request-head deadline (aiohttp has no header timeout of its own) and the address cap.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import resource
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from .peertext import clip

log = logging.getLogger("liverelay.servers")

# Logged again at most this often per key (cap reached, file limit, timeouts).
LOG_INTERVAL_S = 10.0


class RateLimitedLog:
    """`warning(key, msg, *args)`: logs the first event of a key, then at most once per
    `interval_s`, saying how many were held back in between."""

    def __init__(self, logger: logging.Logger, interval_s: float = LOG_INTERVAL_S) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        last, held = self._last.get(key, (-self.interval_s, 0))
        if now - last < self.interval_s:
            self._last[key] = (last, held + 1)
            return
        if len(self._last) > 1024:  # keys are few (one per listener and event); stay bounded
            self._last.clear()
        self._last[key] = (now, 0)
        suffix = f" ({held} more since the last such line)" if held else ""
        self.logger.warning(msg + suffix, *args)


class FileBudget:
    """Connections held by every listener of the process, against the soft open-file
    limit (read at start, after raise_file_limit)."""

    # Warn past this share of the limit: the rest is for the store, logs and relay pulls.
    WARN_SHARE = 0.9

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit if limit is not None else resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.open = 0
        self.warn = RateLimitedLog(log)

    def opened(self, listener: str) -> None:
        self.open += 1
        if self.limit != resource.RLIM_INFINITY and self.open >= self.limit * self.WARN_SHARE:
            self.warn.warning(
                "file-limit",
                "%s listener: the listeners hold %d connections, open-file limit %d: new "
                "connections will soon fail",
                listener,
                self.open,
                self.limit,
            )

    def closed(self) -> None:
        self.open = max(0, self.open - 1)


# The process's budget: every listener's AddressCap counts against it.
FILES = FileBudget()


@dataclass(frozen=True)
class ListenerLimits:
    """The limits of one listener (from its settings section)."""

    name: str  # "rtmp", "http", "api": in log lines
    max_conns_per_ip: int  # 0 = no cap
    exempt_loopback: bool = False
    header_timeout_s: float = 10.0  # HTTP: the first request head must arrive within this
    idle_timeout_s: float = 15.0  # HTTP keep-alive idle (aiohttp keepalive_timeout)


class AddressCap:
    """Concurrent connections per IP address on one listener."""

    def __init__(self, limits: ListenerLimits, warn: RateLimitedLog, files: FileBudget | None = None) -> None:
        self.limits = limits
        self.warn = warn
        self.files = files or FILES
        self._count: dict[str, int] = {}

    def acquire(self, peer: object) -> str | None:
        """The key to release() later ("" when the address is not counted), or None when
        the connection must be refused (nothing to release then)."""
        address = peer[0] if isinstance(peer, tuple) and peer else str(peer)
        address = str(address)
        cap = self.limits.max_conns_per_ip
        if cap <= 0 or (self.limits.exempt_loopback and _is_loopback(address)):
            self.files.opened(self.limits.name)
            return ""  # not counted per address
        n = self._count.get(address, 0)
        if n >= cap:
            self.warn.warning(
                f"cap:{self.limits.name}",
                "%s listener: %s has %d connections (max_conns_per_ip): refusing more",
                self.limits.name,
                clip(address, 64),
                n,
            )
            return None
        self._count[address] = n + 1
        self.files.opened(self.limits.name)
        return address

    def release(self, address: str | None) -> None:
        if address is None:
            return  # refused at accept: never counted
        self.files.closed()
        if not address:
            return
        n = self._count.get(address, 0) - 1
        if n > 0:
            self._count[address] = n
        else:
            self._count.pop(address, None)

    def count(self, address: str) -> int:
        return self._count.get(address, 0)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def raise_file_limit() -> tuple[int, int, int]:
    """Soft RLIMIT_NOFILE -> hard. Returns (soft before, soft now, hard); logged."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = soft
    if hard == resource.RLIM_INFINITY or soft < hard:
        # An infinite hard limit cannot be a soft limit on Linux: take the kernel's cap.
        target = hard if hard != resource.RLIM_INFINITY else _nr_open(soft)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            new = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    FILES.limit = new
    log.info("open-file limit: soft %d (was %d), hard %d", new, soft, hard)
    return soft, new, hard


def _nr_open(default: int) -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return default


_ACCEPT_WARN = RateLimitedLog(log)


def log_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Turn the loop's accept failures for lack of file descriptors into one rate-limited
    line (asyncio/uvloop retry the accept themselves); everything else goes on to the
    handler that was there before."""
    previous = loop.get_exception_handler()

    def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            _ACCEPT_WARN.warning(
                "accept-emfile",
                "accept failed: out of file descriptors (%s, limit %d): new connections wait",
                errno.errorcode.get(exc.errno or 0, "?"),
                resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            )
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    loop.set_exception_handler(handler)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol plus the address cap and a request-head deadline.

    aiohttp closes a connection idle between requests after `keepalive_timeout` (the
    listener's idle timeout, also armed at connect in aiohttp >= 3.10), but has no
    deadline of its own for the first request head. This one closes a connection whose
    first request head has not arrived `header_timeout_s` after connect (nothing sent,
    half a request line, headers trickled a byte at a time).
    """

    def __init__(self, manager: web.Server, guard: HttpGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.guard = guard
        self.address: str | None = None  # the AddressCap key once admitted
        self.request_seen = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.address = self.guard.cap.acquire(transport.get_extra_info("peername"))
        if self.address is None:
            # aiohttp types the transport as BaseTransport; a TCP listener's is a Transport.
            cast(asyncio.Transport, transport).abort()
            return
        timeout = self.guard.limits.header_timeout_s
        if timeout > 0:
            self._deadline = asyncio.get_running_loop().call_later(timeout, self._head_deadline, transport)

    def _head_deadline(self, transport: asyncio.BaseTransport) -> None:
        self._deadline = None
        if not self.request_seen and not transport.is_closing():
            self.guard.warn.warning(
                f"head:{self.guard.limits.name}",
                "%s listener: %s sent no complete request head within %.1fs: closed",
                self.guard.limits.name,
                clip(transport.get_extra_info("peername"), 64),
                self.guard.limits.header_timeout_s,
            )
            cast(asyncio.Transport, transport).abort()  # a TCP transport (see connection_made)

    def mark_request(self) -> None:
        self.request_seen = True
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.guard.cap.release(self.address)
        self.address = None
        super().connection_lost(exc)


class HttpGuard:
    """The protocol factory of one aiohttp listener: `GuardedRequestHandler`s sharing one
    address cap. `middleware` must be on the application: it tells the handler that a
    request head arrived (aiohttp parsed it and routes it)."""

    def __init__(self, runner: web.AppRunner, limits: ListenerLimits) -> None:
        self.runner = runner
        self.limits = limits
        self.warn = RateLimitedLog(log)
        self.cap = AddressCap(limits, self.warn)

    def __call__(self) -> GuardedRequestHandler:
        server = self.runner.server
        assert server is not None, "runner.setup() first"
        return GuardedRequestHandler(
            server,
            self,
            loop=asyncio.get_running_loop(),
            keepalive_timeout=self.limits.idle_timeout_s,
            access_log=None,
        )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# An app may put a protocol factory in front of the guard's (it hands unknown requests to it).
PROTOCOL_WRAPPER_KEY: web.AppKey[Callable[[HttpGuard], Callable[[], asyncio.Protocol]]] = web.AppKey(
    "liverelay_protocol_wrapper"
)


@web.middleware
async def mark_request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """First in the chain: a complete request head arrived on this connection."""
    proto = request.protocol
    if isinstance(proto, GuardedRequestHandler):
        proto.mark_request()
    return await handler(request)


async def serve_guarded(
    app: web.Application,
    host: str,
    port: int,
    limits: ListenerLimits,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, asyncio.base_events.Server]:
    """Run `app` on host:port behind an `HttpGuard` (over TLS when `ssl_context` is given);
    returns the runner (cleanup() stops it) and the listening server (close() stops accepting)."""
    app.middlewares.insert(0, mark_request_middleware)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    guard = HttpGuard(runner, limits)
    wrap = app.get(PROTOCOL_WRAPPER_KEY)  # the HLS fast path of the media listener
    server = await asyncio.get_running_loop().create_server(
        wrap(guard) if wrap is not None and ssl_context is None else guard,
        host,
        port,
        reuse_address=True,
        ssl=ssl_context,
    )
    return runner, server
