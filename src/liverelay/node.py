"""The composition root: builds and runs one node (store, domain table, hub, relays, listeners).

The parts are built here, in one place, and each is handed only the narrow Protocol it
calls (servers/protocols.py, relay/protocols.py, api/protocols.py), never the Node
itself; see docs/architecture.md ("The composition root and the seams") for which part depends on which.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from .config import ConfigError, Settings
from .netaddr import format_host, format_hostport, parse_hostport
from .servers.admission import ListenerLimits, log_accept_errors, raise_file_limit, serve_guarded

if TYPE_CHECKING:  # the parts are imported in start(): `liverelay --help` stays quick
    from prometheus_client import CollectorRegistry

    from .cluster.db import ClusterDb
    from .cluster.leases import LeaseManager
    from .cluster.membership import Membership
    from .cluster.types import NodeDirectory
    from .hub import Hub
    from .relay.manager import RelayManager
    from .servers.rtmp import RtmpServer
    from .store import Store
    from .streamctl import StreamControl
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

    # Built by start(), in dependency order; None before start() (and after a failed one).
    store: Store | None = None
    hub: Hub | None = None
    relays: RelayManager | None = None
    metrics: CollectorRegistry | None = None
    rtmp: RtmpServer | None = None
    stream_control: StreamControl | None = None  # forbid list, ended streams, kill
    urlauth: UrlAuthVerifier | None = None  # URL authentication at publish/play admission
    # PostgreSQL only (None on SQLite): this node's row in `nodes` and its heartbeat.
    membership: Membership | None = None
    leases: LeaseManager | None = None  # which fixed relays (V4) run here
    cluster_db: ClusterDb | None = None

    _runners: list[web.AppRunner] = field(default_factory=list)
    _servers: list[asyncio.base_events.Server] = field(default_factory=list)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        from prometheus_client import CollectorRegistry

        from .api.app import create_api_app
        from .cluster.peers import PeerSources
        from .cluster.snapshot import LocalDirectory, NodeSnapshotSource
        from .hub import Hub
        from .relay.manager import RelayManager
        from .servers.http import create_http_app
        from .servers.protocols import ListenerDeps
        from .servers.rtmp import RtmpServer
        from .store import open_store
        from .store.postgres import PostgresRepository
        from .streamctl import StreamControl
        from .urlauth import UrlAuthVerifier
        from .urlauth.verifier import exposure_warning

        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = metrics = CollectorRegistry()
        self.store = store = await open_store(s)
        rtmp_host = parse_hostport(s.media.rtmp_listen)[0]
        self.urlauth = urlauth = await UrlAuthVerifier.from_store(
            store, open_publish=s.media.open_publish, rtmp_host=rtmp_host
        )
        warning = exposure_warning(rtmp_host, s.media.open_publish)
        if warning:
            log.warning("%s", warning)
        if isinstance(store.repo, PostgresRepository):  # SQLite: one node, no cluster
            self._cluster_parts(store.repo.url)
        self.hub = hub = Hub(s.media, metrics=metrics)
        self.relays = relays = RelayManager(s, hub, store, metrics, fixed_gate=self.leases)
        await relays.start()
        if self.leases is not None and relays.scheduler is not None:
            self.leases.attach(relays.scheduler)
        self.stream_control = control = StreamControl(
            hub, history=s.api.closed_stream_history, max_forbidden=s.api.max_forbidden_streams
        )
        control.start()
        media = ListenerDeps(s, hub, store.domain_table, metrics, control, urlauth)

        raise_file_limit()
        log_accept_errors(asyncio.get_running_loop())

        host, port = parse_hostport(s.api.listen)
        tls = _tls_context(s.api.tls_cert, s.api.tls_key)
        snapshots = NodeSnapshotSource(hub, relays, relays.ondemand)
        directory = LocalDirectory(s.cluster.node_id or relays.ondemand.loop_guard.node_id, snapshots)
        nodes: NodeDirectory = directory
        if self.membership is not None:  # a cluster: the heartbeat says what this node holds
            self.membership.snapshots = snapshots
            nodes = self.membership
            if s.cluster.peer_pulls:
                relays.ondemand.peers = PeerSources(
                    self.membership, store.domain_table, wait_s=s.cluster.peer_wait_s
                )
        api_app = create_api_app(s, store, relays, control, self.leases, nodes)
        port = await self._serve_app(api_app, host, port, _api_limits(s), ssl_context=tls)
        scheme = "https" if tls is not None else "http"
        self.listeners.append(Listener("api", host, port, f"{scheme}://{format_host(host)}:{port}/"))

        host, port = parse_hostport(s.media.http_listen)
        port = await self._serve_app(create_http_app(media), host, port, _media_limits(s, "http"))
        self.listeners.append(
            Listener("http", host, port, f"http://{format_host(host)}:{port}/{{app}}/{{stream}}.flv")
        )

        host, port = parse_hostport(s.media.rtmp_listen)
        self.rtmp = rtmp = RtmpServer(media, _media_limits(s, "rtmp"))
        port = await rtmp.start(host, port)
        self.listeners.append(
            Listener("rtmp", host, port, f"rtmp://{format_host(host)}:{port}/{{app}}/{{stream}}")
        )
        control.listeners.update({lst.name: lst.url for lst in self.listeners})
        directory.api_url = self._advertised("api", "{scheme}://{host}")
        directory.rtmp_url = self._advertised("rtmp", "rtmp://{host}")
        directory.http_url = self._advertised("http", "http://{host}")
        if self.membership is not None:
            await self._join_cluster(self.membership)

    def _cluster_parts(self, url: str) -> None:
        """Membership and the lease manager (a PostgreSQL store only: SQLite is one node).
        Built before the relays (the scheduler asks the lease manager which fixed relays
        to run), started once the listeners are bound (the row carries their addresses)."""
        from .cluster.db import ClusterDb
        from .cluster.leases import LeaseManager
        from .cluster.membership import Membership, load_node_id
        from .cluster.metrics import ClusterMetrics, FeedCollector

        s = self.settings
        c = s.cluster
        metrics = ClusterMetrics(self.metrics)
        if self.store is not None and self.store.feed is not None and self.metrics is not None:
            self.metrics.register(FeedCollector(self.store.feed))
        # Statements under the lease TTL: a stalled database is a failed round, not a hung one.
        self.cluster_db = db = ClusterDb(
            url, timeout_s=min(s.database_timeout_s, max(1.0, c.lease_ttl_s / 2))
        )
        # The snapshot (streams held, status rows: cluster/snapshot.py) is set once the relays exist.
        self.membership = membership = Membership(db, load_node_id(c, s.data_dir), c, metrics=metrics)
        self.leases = leases = LeaseManager(
            db, membership, c, metrics=metrics, set_draining=membership.set_draining
        )
        membership.stats = leases.stats

    async def _join_cluster(self, membership: Membership) -> None:
        from .cluster.membership import NodeAddress

        me = NodeAddress(
            node_id=membership.node_id,
            api_url=self._advertised("api", "{scheme}://{host}"),
            rtmp_url=self._advertised("rtmp", "rtmp://{host}"),
            http_url=self._advertised("http", "http://{host}"),
        )
        await membership.start(me)
        if self.leases is not None:
            await self.leases.start()

    def _advertised(self, name: str, pattern: str) -> str:
        """A listener's base URL as other nodes reach it: cluster.advertise_host, else its bind host
        (a wildcard bind advertises this machine's name)."""
        lst = self.listener(name)
        host = self.settings.cluster.advertise_host or lst.host
        if host in ("", "0.0.0.0", "::"):
            host = socket.getfqdn()
        scheme = lst.url.split("://", 1)[0]
        return pattern.format(scheme=scheme, host=format_hostport(host, lst.port))

    async def _serve_app(
        self,
        app: web.Application,
        host: str,
        port: int,
        limits: ListenerLimits,
        ssl_context: ssl.SSLContext | None = None,
    ) -> int:
        runner, server = await serve_guarded(app, host, port, limits, ssl_context=ssl_context)
        self._runners.append(runner)
        self._servers.append(server)
        sockets = server.sockets
        return sockets[0].getsockname()[1] if sockets else port

    def listener(self, name: str) -> Listener:
        return next(lst for lst in self.listeners if lst.name == name)

    async def close(self) -> None:
        """Stop accepting, end viewers and publishers, stop pulls, close the store.

        Each part is closed even when an earlier one fails (a relay left open may leave an
        ffmpeg source running; a store not closed keeps its connection and writer thread),
        and each failure is logged with the part it came from."""
        if self.rtmp is not None:
            await _close_part("the RTMP listener", self.rtmp.close())
        if self.stream_control is not None:
            await _close_part("the stream control", self.stream_control.close())
        if self.leases is not None:
            await _close_part("the lease rounds", self.leases.close())
        if self.relays is not None:
            await _close_part("the relays", self.relays.close())
        if self.leases is not None:  # after the pulls stopped: the others take them at once
            await _close_part("the lease release", self.leases.release_all())
        if self.hub is not None:
            await _close_part("the hub", self.hub.close())
        for server in self._servers:
            server.close()  # stop accepting; the runners end the open connections
        for runner in reversed(self._runners):
            await _close_part(f"the HTTP listener {_runner_name(runner)}", runner.cleanup())
        if self.membership is not None:
            await _close_part("the cluster membership", self.membership.close())
        if self.cluster_db is not None:
            await _close_part("the cluster's database pool", self.cluster_db.close())
        if self.store is not None:
            await _close_part("the store", self.store.close())
        self._stopped.set()


async def _close_part(part: str, closing: Awaitable[None]) -> None:
    """Await one part's close; a failure is logged with the part's name and shutdown goes on."""
    try:
        await closing
    except Exception:
        log.exception("shutdown: closing %s failed; closing the other parts", part)


def _runner_name(runner: web.AppRunner) -> str:
    return ", ".join(str(address) for address in runner.addresses) or "(not bound)"


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


def _tls_context(cert: str, key: str) -> ssl.SSLContext | None:
    """`api.tls_cert` + `api.tls_key` -> a server TLS context; neither -> plain HTTP."""
    if not cert and not key:
        return None
    if not (cert and key):
        raise ConfigError("api.tls_cert and api.tls_key must be set together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"api.tls_cert/api.tls_key: cannot load {cert!r} / {key!r}: {exc}") from exc
    return context


async def run_node(settings: Settings, *, on_started: Callable[[Node], object] | None = None) -> None:
    """Run until SIGTERM/SIGINT; `on_started(node)` is called once listeners are up."""
    node = Node(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
        if on_started is not None:
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
