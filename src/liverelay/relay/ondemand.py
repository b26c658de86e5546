"""Play-triggered relays (V3): a viewer asking for a missing stream starts one pull.

- The hub awaits `play_trigger(key, query)` when a viewer asks for a stream with no source.
  The config for (vhost, app), else the vhost-wide one (app ""), gives the ordered origin
  list (group by group, server by server). No config -> False at once.
- One pull per stream: `self.pulls` is the only registry and an entry is created
  synchronously (no await between lookup and insert), so viewers arriving together, or
  while the pull starts, all await the same RelayPull.
- The trigger returns True once media flows, False when every origin failed in the first
  round or start_timeout_s passed (the viewer gets its 404 / StreamNotFound at once).
- The last viewer leaving starts the linger (linger_s); a viewer arriving during it keeps
  the pull. Config changes (store.bus) apply at once to running pulls.
- A stream owned by a fixed (V4) relay whose window is open is never pulled here, even
  while that relay is between origins or retrying (two pulls of one stream would fight
  over it): the viewer waits for the fixed relay's media, at most start_timeout_s (and
  the hub's play timeout), and gets not-found if none comes. `fixed_owner` (set by
  RelayManager) says which streams those are.
- Starting caps (Issue 8 item 5): at most settings.max_starting_pulls_per_vhost pulls of a
  vhost and settings.max_starting_pulls of the node may be starting at once (no media
  yet). A viewer whose stream would need one more gets False at once (not-found, no
  wait for start_timeout_s), counted in liverelay_relay_start_refusals_total{scope} and
  logged at most once per REFUSAL_LOG_INTERVAL_S. Viewers joining a running pull are
  never refused.
- Loops: every pull carries the relay chain (node ids); a marked request that would
  pull again here is refused at once (relay/loops.py).
- Cluster peers (set by the node when it has a cluster directory, cluster/peers.py): the
  live peers holding the stream from a primary source come first in the candidate list,
  then the configured origins; a stream a peer holds is played here without a V3 config.
  A pull with peers re-reads its candidates at every attempt (a peer that dies or a new
  holder after a fixed relay's takeover) and holds its viewers for `peers.wait_s` without
  media before giving up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode

from ..config import RelaySettings
from ..hub import Publication, SourceKind, Stream, StreamKey
from ..netaddr import ORIGIN_SCHEMES, V3_PROTOCOL_SCHEMES, with_default_port
from ..schemas.status import RelayState, RelayStatusRow
from ..sources import PullFunction
from ..sources import open_source as default_open_source
from ..sources.base import relay_chain
from ..store.bus import ChangeEvent
from ..store.models import RelayV3Config
from ..tasks import cancel_and_wait
from .events import RelayEvents
from .loops import LoopGuard, new_node_id, strip_mark
from .policy import SourcePolicy
from .protocols import RelayHub
from .pull import RelayPull

log = logging.getLogger("liverelay.relay.ondemand")

# While a viewer waits for a fixed relay's media, the hub stream is checked this often
# (the hub has no "source appeared" callback; the wait is bounded by start_timeout_s).
FIXED_WAIT_POLL_S = 0.05
# A flood of refused plays (many missing names at once) logs one line per interval.
REFUSAL_LOG_INTERVAL_S = 10.0


class PeerCandidates(Protocol):
    """The cluster's holders of a stream (cluster.peers.PeerSources)."""

    @property
    def wait_s(self) -> float: ...

    def urls(self, key: StreamKey, query: str) -> list[str]:
        """Pull URLs of the live peers holding `key` from a primary source, best first."""
        ...


def merge_query(viewer_query: str, params: dict[str, str]) -> str:
    """The viewer's query with the config's RelaySourceParams appended (config wins on a clash).

    The config wins so a viewer cannot override origin-pull parameters such as an
    origin auth key; everything is re-encoded (spaces as %20, reserved chars escaped).
    """
    pairs = [
        (k, v) for k, v in parse_qsl(viewer_query.lstrip("?"), keep_blank_values=True) if k not in params
    ]
    pairs.extend((str(k), str(v)) for k, v in params.items())
    return urlencode(pairs, quote_via=quote)


def build_origin_url(protocol: str, domain: str, app: str, stream: str, query: str) -> str | None:
    """One origin URL for a V3 server entry; None for a protocol this node cannot pull."""
    protocol = protocol.lower()
    app_q = quote(app, safe="")
    stream_q = quote(stream, safe="")
    scheme = V3_PROTOCOL_SCHEMES.get(protocol)
    port = ORIGIN_SCHEMES.get(scheme or "")
    if scheme is None or port is None:
        return None
    url = f"{scheme}://{with_default_port(domain, port)}/{app_q}/{stream_q}"
    if protocol == "flv":
        url += ".flv"
    return f"{url}?{query}" if query else url


def build_origin_urls(config: RelayV3Config, app: str, stream: str, viewer_query: str = "") -> list[str]:
    """The ordered origin list: group by group, server by server."""
    urls: list[str] = []
    for group in config.groups:
        for server in group.servers:
            query = merge_query(viewer_query, dict(server.params))
            url = build_origin_url(server.protocol, server.domain, app, stream, query)
            if url is not None and url not in urls:
                urls.append(url)
    return urls


class _PlayPull:
    """A running V3 pull and what the manager tracks around it (linger, viewers)."""

    def __init__(self, owner: OnDemandRelays, key: StreamKey, query: str, pull: RelayPull) -> None:
        self.owner = owner
        self.key = key
        self.query = query
        self.pull = pull
        self.task: asyncio.Task[None] | None = None
        self.stream: Stream | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._linger: asyncio.TimerHandle | None = None
        # Every peer URL this pull was given (to tell a peer source from an origin).
        self.peer_urls: set[str] = set()

    def attach(self, stream: Stream) -> None:
        """The pull got its hub Publication: follow the stream's viewer count."""
        self.detach()
        self.stream = stream
        self._remove_listener = stream.add_viewer_listener(self.on_viewers)
        self.on_viewers(stream.viewer_count)

    def detach(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        self.cancel_linger()

    def viewers(self) -> int:
        stream = self.stream or self.owner.hub.get(self.key)
        return int(stream.viewer_count) if stream is not None else 0

    def on_viewers(self, count: int) -> None:
        if count > 0:
            self.cancel_linger()
        elif self._linger is None and not self.pull.ended.is_set():
            linger_s = self.owner.settings.linger_s
            self.pull.lingering = True
            self._linger = asyncio.get_running_loop().call_later(linger_s, self._linger_over)

    def cancel_linger(self) -> None:
        self.pull.lingering = False
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None

    def _linger_over(self) -> None:
        self._linger = None
        if self.viewers() == 0:
            self.owner._spawn(self.pull.stop("no viewers"))


class OnDemandRelays:
    def __init__(
        self,
        hub: RelayHub,
        settings: RelaySettings,
        events: RelayEvents,
        source_policy: SourcePolicy,
        *,
        open_source: Callable[[str], PullFunction] = default_open_source,
    ) -> None:
        self.hub = hub
        self.settings = settings
        self.events = events
        self.source_policy = source_policy
        self.open_source = open_source
        self.configs: dict[tuple[str, str], RelayV3Config] = {}
        self.pulls: dict[StreamKey, _PlayPull] = {}
        self._background: set[asyncio.Task[Any]] = set()
        # Set by RelayManager: the fixed (V4) task that owns `key` right now, or None.
        self.fixed_owner: Callable[[StreamKey], object | None] = lambda _key: None
        # Set by the node in a cluster with peer pulls on: who else holds a stream.
        self.peers: PeerCandidates | None = None
        # Pulls started but without media yet, per vhost (the starting caps count these).
        self._starting: dict[str, set[_PlayPull]] = {}
        self._refused_since_log = 0
        self._refusal_logged_at = float("-inf")
        self.loop_guard = LoopGuard(settings.node_id or new_node_id(), settings.max_hops)

    # ---- configuration ------------------------------------------------------------

    def load(self, configs: Iterable[RelayV3Config]) -> None:
        for config in configs:
            self.configs[(config.vhost, config.app)] = config

    def config_for(self, key: StreamKey) -> RelayV3Config | None:
        return self.configs.get((key.vhost, key.app)) or self.configs.get((key.vhost, ""))

    def on_change(self, event: ChangeEvent) -> None:
        """store.bus callback: keep configs current and apply them to running pulls."""
        if event.entity != "relay_v3":
            return
        vhost, app = tuple(event.key)
        if event.op == "deleted" or event.value is None:
            self.configs.pop((vhost, app), None)
        else:
            self.configs[(vhost, app)] = event.value
        for key, entry in list(self.pulls.items()):
            if key.vhost != vhost or (app and key.app != app):
                continue
            urls = self._candidates(entry)
            if not urls:
                log.info("relay %s: its config is gone, stopping", key)
                self._spawn(entry.pull.stop("config deleted"))
            else:
                entry.pull.update_urls(urls)

    # ---- the hub's play trigger ---------------------------------------------------

    async def play_trigger(self, key: StreamKey, query: str) -> bool:
        if self.fixed_owner(key) is not None:
            return await self._wait_fixed(key)
        entry = self.pulls.get(key)
        if entry is None or entry.pull.ended.is_set():
            plain = strip_mark(query)
            peer_urls = self._peer_urls(key, plain)
            if self.config_for(key) is None and not peer_urls:
                return False
            if self._loop_refused(key, query, starting=True):
                return False
            via = self.loop_guard.chain(query)  # the pullers send it on (relay/loops.py)
            query = plain
            urls = self._merge(peer_urls, self._origin_urls(key, query))
            if not urls:
                return False
            if not self._may_start(key):
                return False
            with relay_chain(via):  # the pull's tasks, created in _start, inherit it
                entry = self._start(key, query, urls, peer_urls)
        elif self._loop_refused(key, query, starting=False):
            return False
        entry.cancel_linger()
        return await self._wait_ready(entry.pull)

    # ---- candidates: cluster peers first, then the configured origins ---------------

    def _peer_urls(self, key: StreamKey, query: str) -> list[str]:
        peers = self.peers
        if peers is None:
            return []
        try:
            return peers.urls(key, query)
        except Exception:
            # No peers this time (the origins still work); the fault is seen.
            log.exception("relay %s: reading the cluster's holders failed", key)
            return []

    def _origin_urls(self, key: StreamKey, query: str) -> list[str]:
        config = self.config_for(key)
        return build_origin_urls(config, key.app, key.name, query) if config is not None else []

    @staticmethod
    def _merge(first: list[str], then: list[str]) -> list[str]:
        return first + [url for url in then if url not in first]

    def _candidates(self, entry: _PlayPull) -> list[str]:
        """A running pull's candidate list now (RelayPull re-reads it at every attempt).

        A pull up on a configured origin keeps it and is given no peers (fail-back would
        move it to one): two nodes up on the origin would otherwise each switch to the
        other at once and feed each other nothing. It gets peers again once it lost its
        origin."""
        origin_urls = self._origin_urls(entry.key, entry.query)
        pull = entry.pull
        if pull.state is RelayState.UP and pull.source_url not in entry.peer_urls:
            return origin_urls
        peer_urls = self._peer_urls(entry.key, entry.query)
        entry.peer_urls.update(peer_urls)
        return self._merge(peer_urls, origin_urls)

    def from_peer(self, key: StreamKey) -> bool:
        """True when the play pull of `key` has a cluster peer as its source now."""
        entry = self.pulls.get(key)
        return entry is not None and entry.pull.source_url in entry.peer_urls

    def _loop_refused(self, key: StreamKey, query: str, *, starting: bool) -> bool:
        """True (logged, rate-limited) when a relay-marked request must not be answered by a pull."""
        refusal = self.loop_guard.refusal(query, starting=starting)
        if refusal is not None:
            self.loop_guard.log_refusal(key, refusal)
        return refusal is not None

    async def _wait_ready(self, pull: RelayPull) -> bool:
        if pull.first_media.is_set():
            return not pull.ended.is_set()
        waiters = [
            asyncio.ensure_future(pull.first_media.wait()),
            asyncio.ensure_future(pull.ended.wait()),
        ]
        try:
            await asyncio.wait(
                waiters, timeout=self.settings.start_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        return pull.first_media.is_set() and not pull.ended.is_set()

    async def _wait_fixed(self, key: StreamKey) -> bool:
        """A fixed relay owns `key`: True once the stream has a source, False when the
        fixed relay stops owning it or start_timeout_s passes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.start_timeout_s
        while True:
            stream = self.hub.get(key)
            if stream is not None and stream.has_source:
                return True
            if self.fixed_owner(key) is None or loop.time() >= deadline:
                return False
            await asyncio.sleep(min(FIXED_WAIT_POLL_S, max(0.0, deadline - loop.time())))

    def _start(self, key: StreamKey, query: str, urls: list[str], peer_urls: Iterable[str] = ()) -> _PlayPull:
        hub = self.hub
        holder: list[_PlayPull] = []
        peers = self.peers
        # A pull that starts from peers keeps its viewers through a holder's death for
        # peers.wait_s (a fixed relay's new owner needs lease TTL + start to come up).
        peer_urls = list(peer_urls)
        hold_s = None
        if peers is not None and peer_urls:
            hold_s = max(self.settings.start_timeout_s, peers.wait_s)

        def publication_factory() -> Publication:
            pub = hub.publish(key, kind=SourceKind.RELAY_PLAY, owner="relay-v3")
            holder[0].attach(pub.stream)
            return pub

        pull = RelayPull(
            key=key,
            kind="play",
            urls=urls,
            publication_factory=publication_factory,
            settings=self.settings,
            events=self.events,
            source_policy=self.source_policy,
            viewers=lambda: holder[0].viewers(),
            open_source=self.open_source,
            candidates=(lambda: self._candidates(holder[0])) if peers is not None else None,
            hold_timeout_s=hold_s,
        )
        entry = _PlayPull(self, key, query, pull)
        entry.peer_urls.update(peer_urls)
        holder.append(entry)
        self.pulls[key] = entry
        self._starting.setdefault(key.vhost, set()).add(entry)
        entry.task = asyncio.get_running_loop().create_task(pull.run(), name=f"relay-v3 {key}")
        entry.task.add_done_callback(lambda _t: self._ended(entry))
        return entry

    def _ended(self, entry: _PlayPull) -> None:
        entry.detach()
        self._starting.get(entry.key.vhost, set()).discard(entry)
        if self.pulls.get(entry.key) is entry:
            del self.pulls[entry.key]

    # ---- starting caps -------------------------------------------------------------

    def starting_count(self, vhost: str | None = None) -> int:
        """Pulls started without media yet: of `vhost`, or of the node (None)."""
        if vhost is not None:
            return len(self._prune(vhost))
        return sum(len(self._prune(v)) for v in list(self._starting))

    def _prune(self, vhost: str) -> set[_PlayPull]:
        # A pull leaves the starting set at its first media frame (or when it ends): checked
        # here, lazily, so no task per pull is needed. The sets stay within the caps.
        entries = self._starting.get(vhost)
        if entries is None:
            return set()
        entries -= {e for e in entries if e.pull.first_media.is_set() or e.pull.ended.is_set()}
        if not entries:
            del self._starting[vhost]
        return entries

    def _may_start(self, key: StreamKey) -> bool:
        """False (and counted, logged) when a starting cap is full."""
        s = self.settings
        scope = None
        if (
            s.max_starting_pulls_per_vhost > 0
            and self.starting_count(key.vhost) >= s.max_starting_pulls_per_vhost
        ):
            scope = "vhost"
        elif s.max_starting_pulls > 0 and self.starting_count() >= s.max_starting_pulls:
            scope = "node"
        if scope is None:
            return True
        self.events.start_refused(scope)
        self._refused_since_log += 1
        now = time.monotonic()
        if now - self._refusal_logged_at >= REFUSAL_LOG_INTERVAL_S:
            log.warning(
                "relay %s: not started, too many pulls starting (%s cap: %d per vhost, %d per node);"
                " %d play(s) refused since the last such line",
                key,
                scope,
                s.max_starting_pulls_per_vhost,
                s.max_starting_pulls,
                self._refused_since_log,
            )
            self._refusal_logged_at = now
            self._refused_since_log = 0
        return False

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- visibility and shutdown --------------------------------------------------

    def status(self) -> list[RelayStatusRow]:
        return [entry.pull.status() for entry in self.pulls.values()]

    async def close(self) -> None:
        entries = list(self.pulls.values())
        await asyncio.gather(*(e.pull.stop("node stopping") for e in entries), return_exceptions=True)
        for entry in entries:
            if entry.task is not None and not entry.task.done():
                await cancel_and_wait(entry.task, f"the play relay pull of {entry.key}", logger=log)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
