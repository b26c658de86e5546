"""In-process change notifications, published after a write has committed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger("liverelay.store.bus")

Entity = Literal["domain", "relay_v3", "relay_v4", "key", "url_auth"]
Op = Literal["added", "updated", "deleted"]


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    entity: Entity
    op: Op
    # domain: the domain name; relay_v3: (vhost, app); relay_v4: (vhost, app, stream); key: the AK;
    # url_auth: (vhost, app, scene).
    key: Any
    value: Any  # the new record, None on delete


ChangeCallback = Callable[[ChangeEvent], None]


class ChangeBus:
    """Synchronous fan-out. A failing subscriber is logged and skipped: the write it
    reports has already committed, so nothing a subscriber does may undo or block it."""

    def __init__(self) -> None:
        self._subscribers: list[ChangeCallback] = []

    def subscribe(self, callback: ChangeCallback) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, event: ChangeEvent) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("change subscriber %r failed on %s %s", callback, event.entity, event.op)
