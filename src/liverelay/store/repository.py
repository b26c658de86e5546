"""The persistence interface: SqliteRepository and PostgresRepository implement it
(store/sql.py holds the queries of both); every write is durable when it returns."""

from __future__ import annotations

from typing import Protocol

from .bus import Op
from .models import AccessKey, DomainRecord, RelayV3Config, RelayV4Config, UrlAuthConfig


class Repository(Protocol):
    async def close(self) -> None: ...

    # access keys
    async def get_key(self, ak: str) -> AccessKey | None: ...
    async def list_keys(self) -> list[AccessKey]: ...
    async def put_key(self, key: AccessKey) -> bool:
        """Insert or replace; True when the key was new."""
        ...

    async def delete_key(self, ak: str) -> bool: ...

    # domains
    async def list_domains(self) -> list[DomainRecord]: ...
    async def insert_domains(self, records: list[DomainRecord]) -> None:
        """All or nothing; AlreadyExists when any domain is taken."""
        ...

    async def update_domain(self, record: DomainRecord) -> bool:
        """Set vhost/type/region/status of an existing domain; False when it does not exist."""
        ...

    async def change_domain(
        self, domain: str, *, vhost: str | None, status: int | None
    ) -> tuple[DomainRecord | None, DomainRecord | None]:
        """Set the given fields in one locked read-modify-write: (before, after); (None, None)
        when absent. Atomic against other nodes writing the same database."""
        ...

    async def delete_domain(self, domain: str) -> bool: ...

    # play-triggered relays (V3)
    async def get_relay_v3(self, vhost: str, app: str) -> RelayV3Config | None: ...
    async def list_relay_v3(self, vhost: str | None = None) -> list[RelayV3Config]: ...
    async def put_relay_v3(self, config: RelayV3Config) -> tuple[RelayV3Config, bool]:
        """Insert or replace the groups (keeping `created`); the stored config and whether it was new."""
        ...

    async def remove_relay_v3_group(
        self, vhost: str, app: str, group: str, updated: int
    ) -> tuple[Op | None, RelayV3Config | None]:
        """Remove one group atomically: ("updated", stored), ("deleted", None) when it was
        the last, (None, None) when there was no such config or group."""
        ...

    async def delete_relay_v3(self, vhost: str, app: str) -> bool: ...

    # fixed relays (V4)
    async def get_relay_v4(self, vhost: str, app: str, stream: str) -> RelayV4Config | None: ...
    async def list_relay_v4(
        self, vhost: str | None = None, *, offset: int = 0, limit: int | None = None
    ) -> tuple[list[RelayV4Config], int]:
        """A page in creation order plus the total count."""
        ...

    async def insert_relay_v4(self, config: RelayV4Config) -> None:
        """AlreadyExists when (vhost, app, stream) is taken."""
        ...

    async def update_relay_v4(self, config: RelayV4Config) -> RelayV4Config:
        """Replace addresses and schedule, keep task_id/domain/created; NotFound when absent."""
        ...

    async def delete_relay_v4(self, vhost: str, app: str, stream: str) -> bool: ...

    # URL authentication
    async def list_url_auth(self, vhost: str | None = None) -> list[UrlAuthConfig]: ...
    async def put_url_auth(self, config: UrlAuthConfig) -> tuple[UrlAuthConfig, bool]:
        """Insert or replace (keeping `created`); the stored config and whether it was new."""
        ...

    async def delete_url_auth(self, vhost: str, app: str, scene: str) -> bool: ...
