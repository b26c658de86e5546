"""What the media listeners (RTMP, HTTP) need from the rest of the node.

The composition root (node.py) builds a ListenerDeps and hands it to every listener:
the hub as MediaHub (the three calls a listener makes), the domain table as
DomainLookup (one call), the ForbidStream list as PublishGate (one call), the settings
and the metrics registry /metrics exposes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry

from ..config import Settings
from ..hub.keys import SourceKind, StreamKey
from ..hub.stream import Publication, Stream
from ..hub.subscriber import Subscriber
from ..urlauth import UrlAuthVerifier


class MediaHub(Protocol):
    """What a listener calls on the hub: publish, play, and look a stream up (HEAD)."""

    def publish(self, key: StreamKey, *, kind: SourceKind, owner: str = "") -> Publication: ...

    async def play(
        self,
        key: StreamKey,
        *,
        protocol: str,
        remote: str = "",
        query: str = "",
        timeout: float = 10.0,
    ) -> Subscriber | None: ...

    def get(self, key: StreamKey) -> Stream | None: ...


class PublishGate(Protocol):
    """Which streams may not be published now (streamctl.StreamControl: ForbidStream)."""

    def is_forbidden(self, key: StreamKey) -> bool: ...


class DomainLookup(Protocol):
    """The domain table as a listener sees it: a Host (or tcUrl host) to its vhost."""

    def vhost_for(self, host: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ListenerDeps:
    """Everything a media listener is handed; built once by the composition root."""

    settings: Settings
    hub: MediaHub
    # None: no domain table (tests without a store); every host lands in the default vhost.
    domains: DomainLookup | None = None
    # None: /metrics answers with an empty body.
    metrics: CollectorRegistry | None = None
    # None: no stream is forbidden (a node without stream control, in tests).
    stream_control: PublishGate | None = None
    # None: URL authentication is off (publish and play need no signature).
    urlauth: UrlAuthVerifier | None = None
