"""Records the store keeps. Plain frozen dataclasses: they cross the thread boundary
between the SQLite writer and the event loop, and travel on the ChangeBus."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AccessKey:
    ak: str
    sk: str
    created: int  # unix seconds
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class DomainRecord:
    domain: str  # lower-case host name
    type: str  # "push" | "pull-flv"
    vhost: str
    region: str
    status: int  # 0 normal (the only state a self-hosted node uses today)
    created: int


@dataclass(frozen=True, slots=True)
class RelayServer:
    """One origin of a play-triggered (V3) group."""

    protocol: str  # "rtmp" | "flv"
    domain: str  # host[:port]
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RelayGroup:
    name: str
    servers: tuple[RelayServer, ...]


@dataclass(frozen=True, slots=True)
class RelayV3Config:
    """Play-triggered relay config for (vhost, app); app "" = the vhost-wide default."""

    vhost: str
    app: str
    groups: tuple[RelayGroup, ...]
    created: int
    updated: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.vhost, self.app)


@dataclass(frozen=True, slots=True)
class RelayV4Config:
    """Fixed relay of one stream; both times None = permanent."""

    vhost: str
    app: str
    stream: str
    domain: str  # as given when it was created (echoed by ListRelaySourceV4)
    src_addrs: tuple[str, ...]
    start_time: int | None
    end_time: int | None
    task_id: str
    created: int
    updated: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.vhost, self.app, self.stream)


@dataclass(frozen=True, slots=True)
class AuthKeyEntry:
    """One URL-signing key of an auth config (UpdateAuthKey's AuthDetailList entry)."""

    secret_key: str
    algorithm: str  # "md5" (the service's) | "hmac_sha256" (our extension)


@dataclass(frozen=True, slots=True)
class UrlAuthConfig:
    """URL authentication of one (vhost, app, scene); app "" = every app of the vhost.
    The first key signs generated URLs; every key (the backup during a rotation) verifies."""

    vhost: str
    app: str
    scene: str  # "push" | "pull"
    enabled: bool  # PushPullEnable
    valid_duration: int  # seconds: the default lifetime of generated URLs
    keys: tuple[AuthKeyEntry, ...]
    created: int
    updated: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.vhost, self.app, self.scene)


class StoreError(Exception):
    """Base of the store's own failures (not SQLite's)."""


class AlreadyExists(StoreError):
    pass


class NotFound(StoreError):
    pass


class StoreUnavailable(StoreError):
    """The database cannot be reached (PostgreSQL down or unreachable): nothing was
    written; the API answers 503 ServiceUnavailable, the caller may retry later."""
