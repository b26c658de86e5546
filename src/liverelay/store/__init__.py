"""Validated configuration, persisted durably, announced on a ChangeBus."""

from .bus import ChangeBus, ChangeEvent
from .domains import DomainTable, normalise_host
from .models import (
    AccessKey,
    AlreadyExists,
    DomainRecord,
    NotFound,
    RelayGroup,
    RelayServer,
    RelayV3Config,
    RelayV4Config,
    StoreError,
    StoreUnavailable,
)
from .repository import Repository
from .store import Store, generate_key_pair, new_task_id, open_store

__all__ = [
    "AccessKey",
    "AlreadyExists",
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
    "generate_key_pair",
    "new_task_id",
    "normalise_host",
    "open_store",
]
