"""What the relays need from the rest of the node, each the narrow set of calls made.

The composition root (node.py) hands RelayManager, OnDemandRelays and
FixedRelayScheduler these instead of the whole node; tests hand small fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..hub.hub import PlayTrigger
from ..hub.keys import SourceKind, StreamKey
from ..hub.stream import Publication, Stream
from ..store.bus import ChangeEvent
from ..store.models import RelayV3Config, RelayV4Config


class RelayHub(Protocol):
    """What a relay calls on the hub: publish the pulled media, read a stream's viewers,
    and (V3) be asked to start a pull when a viewer finds no source."""

    play_trigger: PlayTrigger | None

    def publish(self, key: StreamKey, *, kind: SourceKind, owner: str = "") -> Publication: ...

    def get(self, key: StreamKey) -> Stream | None: ...


class ChangeFeed(Protocol):
    """Committed configuration changes, delivered synchronously."""

    def subscribe(self, callback: Callable[[ChangeEvent], None]) -> Callable[[], None]: ...


class RelayConfigSource(Protocol):
    """What the relays read from the store: the V3/V4 configs and their changes."""

    @property
    def bus(self) -> ChangeFeed: ...

    async def list_relay_v3(self, vhost: str | None = None) -> list[RelayV3Config]: ...

    async def list_relay_v4(
        self, vhost: str | None = None, *, offset: int = 0, limit: int | None = None
    ) -> tuple[list[RelayV4Config], int]: ...
