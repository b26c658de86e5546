"""In-memory domain -> vhost lookup for the media servers (hot path: no I/O)."""

from __future__ import annotations

from collections.abc import Iterable

from .bus import ChangeEvent
from .models import DomainRecord

STATUS_NORMAL = 0
STATUS_DISABLED = 2


def normalise_host(host: str) -> str:
    """'Live.Example.com:1935' -> 'live.example.com'; '[::1]:80' -> '::1'; trailing dot dropped."""
    host = host.strip()
    if host.startswith("["):
        end = host.find("]")
        host = host[1:end] if end > 0 else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".").lower()


class DomainTable:
    def __init__(self, records: Iterable[DomainRecord] = ()) -> None:
        self._by_domain: dict[str, DomainRecord] = {r.domain: r for r in records}

    def on_change(self, event: ChangeEvent) -> None:
        if event.entity != "domain":
            return
        if event.op == "deleted":
            self._by_domain.pop(event.key, None)
        else:
            self._by_domain[event.key] = event.value

    def vhost_for(self, host: str) -> str | None:
        """The vhost serving `host`; None when unknown or not in normal state (disabled)."""
        record = self._by_domain.get(normalise_host(host))
        return record.vhost if record is not None and record.status == STATUS_NORMAL else None

    def get(self, domain: str) -> DomainRecord | None:
        return self._by_domain.get(normalise_host(domain))

    def records(self) -> list[DomainRecord]:
        return list(self._by_domain.values())

    def domains_of(self, vhost: str) -> list[DomainRecord]:
        return sorted((r for r in self._by_domain.values() if r.vhost == vhost), key=lambda r: r.domain)

    def has_vhost(self, vhost: str) -> bool:
        return any(r.vhost == vhost for r in self._by_domain.values())

    def __len__(self) -> int:
        return len(self._by_domain)
