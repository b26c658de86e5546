"""Validated configuration, persisted durably, announced on a ChangeBus."""

from .bus import ChangeBus, ChangeEvent
from .domains import DomainTable, normalise_host
from .models import (
    AccessKey,
    AlreadyExists,
    AuthKeyEntry,
    DomainRecord,
    NotFound,
    RelayGroup,
    RelayServer,
    RelayV3Config,
    RelayV4Config,
    StoreError,
    StoreUnavailable,
    UrlAuthConfig,
)
from .repository import Repository
from .store import Store, generate_key_pair, new_task_id, open_store

__all__ = [
    "AccessKey",
    "AlreadyExists",
    "AuthKeyEntry",
    "ChangeBus",
    "ChangeEvent",
    "DomainRecord",
    "DomainTable",
    "NotFound",
    "RelayGroup",
    "RelayServer",
    "RelayV3Config",
    "RelayV4Config",
    "Repository",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "UrlAuthConfig",
    "generate_key_pair",
    "new_task_id",
    "normalise_host",
    "open_store",
]
