"""Builds and runs one node: store, domain table, hub, listeners, relay managers.

Every part gets the Node and takes what it needs from it; parts never import
each other's internals (see docs/architecture.md for who owns what).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from .config import Settings
from .netaddr import format_host, parse_hostport
from .servers.admission import ListenerLimits, log_accept_errors, raise_file_limit, serve_guarded

if TYPE_CHECKING:
    from .urlauth import UrlAuthVerifier

log = logging.getLogger("liverelay.node")


@dataclass
class Listener:
    name: str
    host: str
    port: int
    url: str


@dataclass
class Node:
    settings: Settings
    listeners: list[Listener] = field(default_factory=list)

    # Filled by start(); typed loosely here so each part stays importable alone.
    store: object | None = None
    domains: object | None = None  # store.domains.DomainTable: vhost_for(host) -> str | None
    hub: object | None = None  # hub.Hub
    relays: object | None = None  # relay.manager.RelayManager
    metrics: object | None = None  # prometheus_client.CollectorRegistry
    urlauth: UrlAuthVerifier | None = None  # URL authentication at publish/play admission (None: off)

    _runners: list[web.AppRunner] = field(default_factory=list)
    _servers: list[asyncio.base_events.Server] = field(default_factory=list)
    _closers: list[object] = field(default_factory=list)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        from prometheus_client import CollectorRegistry

        from .api.app import create_api_app
        from .hub import Hub
        from .relay.manager import RelayManager
        from .servers.http import create_http_app
        from .servers.rtmp import RtmpServer
        from .store import open_store
        from .urlauth import UrlAuthVerifier
        from .urlauth.verifier import exposure_warning

        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = CollectorRegistry()
        self.store = await open_store(s)
        self.domains = self.store.domain_table  # type: ignore[attr-defined]
        rtmp_host = parse_hostport(s.media.rtmp_listen)[0]
        self.urlauth = await UrlAuthVerifier.from_store(
            self.store,  # type: ignore[arg-type]
            open_publish=s.media.open_publish,
            rtmp_host=rtmp_host,
        )
        warning = exposure_warning(rtmp_host, s.media.open_publish)
        if warning:
            log.warning("%s", warning)
        self.hub = Hub(s.media, metrics=self.metrics)
        self.relays = RelayManager(self)
        await self.relays.start()  # type: ignore[attr-defined]

        raise_file_limit()
        log_accept_errors(asyncio.get_running_loop())

        host, port = parse_hostport(s.api.listen)
        port = await self._serve_app(create_api_app(self), host, port, _api_limits(s))
        self.listeners.append(Listener("api", host, port, f"http://{format_host(host)}:{port}/"))

        host, port = parse_hostport(s.media.http_listen)
        port = await self._serve_app(create_http_app(self), host, port, _media_limits(s, "http"))
        self.listeners.append(
            Listener("http", host, port, f"http://{format_host(host)}:{port}/{{app}}/{{stream}}.flv")
        )

        host, port = parse_hostport(s.media.rtmp_listen)
        rtmp = RtmpServer(self, _media_limits(s, "rtmp"))
        port = await rtmp.start(host, port)
        self._closers.append(rtmp)
        self.listeners.append(
            Listener("rtmp", host, port, f"rtmp://{format_host(host)}:{port}/{{app}}/{{stream}}")
        )

    async def _serve_app(self, app: web.Application, host: str, port: int, limits: ListenerLimits) -> int:
        runner, server = await serve_guarded(app, host, port, limits)
        self._runners.append(runner)
        self._servers.append(server)
        sockets = server.sockets
        return sockets[0].getsockname()[1] if sockets else port

    def listener(self, name: str) -> Listener:
        return next(lst for lst in self.listeners if lst.name == name)

    async def close(self) -> None:
        """Stop accepting, end viewers and publishers, stop pulls, close the store."""
        for closer in self._closers:
            with contextlib.suppress(Exception):
                await closer.close()  # type: ignore[attr-defined]
        if self.relays is not None:
            with contextlib.suppress(Exception):
                await self.relays.close()  # type: ignore[attr-defined]
        if self.hub is not None:
            with contextlib.suppress(Exception):
                await self.hub.close()  # type: ignore[attr-defined]
        for server in self._servers:
            server.close()  # stop accepting; the runners end the open connections
        for runner in reversed(self._runners):
            with contextlib.suppress(Exception):
                await runner.cleanup()
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self.store.close()  # type: ignore[attr-defined]
        self._stopped.set()


def _api_limits(s: Settings) -> ListenerLimits:
    a = s.api
    return ListenerLimits(
        "api", a.max_conns_per_ip, a.conn_cap_exempt_loopback, a.header_timeout_s, a.idle_timeout_s
    )


def _media_limits(s: Settings, name: str) -> ListenerLimits:
    """The HTTP media listener's and the RTMP listener's limits (the media section)."""
    m = s.media
    return ListenerLimits(
        name, m.max_conns_per_ip, m.conn_cap_exempt_loopback, m.http_header_timeout_s, m.http_idle_timeout_s
    )


async def run_node(settings: Settings, *, on_started: object = None) -> None:
    """Run until SIGTERM/SIGINT; `on_started(node)` is called once listeners are up."""
    node = Node(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
        if callable(on_started):
            on_started(node)
        await stop.wait()
        log.info("shutting down")
    finally:
        await node.close()


def install_event_loop() -> None:
    """uvloop where available: it roughly halves the per-viewer cost of socket writes."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a hard dependency on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
