"""The status row of one RelayPull (schemas.status.RelayStatusRow, play/fixed shape)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ...schemas.status import RelayState, RelayStatusRow
from ...sources.base import redact_url
from ..events import rfc3339

if TYPE_CHECKING:
    from .supervisor import RelayPull

log = logging.getLogger("liverelay.relay.pull")


def status_row(pull: RelayPull) -> RelayStatusRow:
    """Every field of a V3 row is set (RelayStatusRow.wire() dumps the set fields)."""
    viewers = 0
    if pull.viewers is not None:
        try:
            viewers = int(pull.viewers())
        except Exception:
            # A status read must not fail on the viewer count; the fault is still seen.
            log.exception("relay %s: counting viewers failed", pull.key)
    state = pull.state
    if pull.lingering and state == RelayState.UP:
        state = RelayState.LINGERING
    key = pull.key
    return RelayStatusRow(
        type=pull.kind,
        vhost=key.vhost,
        app=key.app,
        stream=key.name,
        state=state,
        source_url=redact_url(pull.source_url),
        source_index=pull.source_index,
        attempts=pull.attempts,
        last_error=pull.last_error,
        up_since=rfc3339(pull.up_since_wall),
        bytes=pull.bytes,
        bitrate=int(pull.bitrate),
        frames=pull.frames,
        viewers=viewers,
        switches=pull.switches,
        task_id=pull.task_id,
    )
