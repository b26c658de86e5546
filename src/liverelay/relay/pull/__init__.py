"""relay.pull: one stream pulled from an ordered list of origins into the hub, with failover.

Shared by the play-triggered (V3, relay/ondemand.py) and the fixed (V4, relay/scheduled.py)
relays. Interface (stable; V4 builds on it):

    pull = RelayPull(key=StreamKey, kind="play"|"fixed", urls=[...],
                     publication_factory=lambda: hub.publish(key, kind=..., owner=...),
                     settings=RelaySettings, events=RelayEvents | None,
                     # optional:
                     source_policy=SourcePolicy | None,   # default: built from settings
                     viewers=lambda: int,                 # for status()["Viewers"]
                     task_id=str | None,                  # V4 TaskId in status()
                     open_source=sources.open_source)     # URL -> pull function
    task = asyncio.create_task(pull.run())
    await pull.first_media.wait()     # set when the first media frame arrived
    pull.update_urls([...])           # source in use still listed -> untouched; else switch now
    await pull.stop("reason")         # closes the source and the Publication (viewers get EOF)
    pull.status() -> RelayStatusRow   # one DescribeRelayStatus row (schemas/status.py)
    pull.ended: asyncio.Event         # set when run() has returned
    pull.end_reason: str | None       # why it ended ("stopped: ...", "unavailable", ...)

Behaviour:
- Origins are tried in order through FailoverPolicy (next on failure, capped exponential
  backoff after a full failed round, reset on success).
- An attempt fails on: the puller raising SourceError, a clean end of stream, no first
  frame within connect_timeout_s + first_frame_timeout_s, or no frame for
  no_media_timeout_s once up. The source policy (CIDR allow/deny) is checked first.
- The hub Publication is created lazily at the first media frame (so a pull that never
  gets media never makes the stream look present). After a mid-stream failure the
  Publication stays open; the next origin's first frame is preceded by
  Publication.discontinuity() so viewers stay connected. If no origin delivers within
  start_timeout_s, the Publication is closed (viewers get EOF): a "play" pull then ends,
  a "fixed" pull keeps retrying and opens a new Publication when media returns.
- "play" only: run() returns when the first full round fails before any media (the
  waiting viewers get their error at once), or after start_timeout_s without media.
- Fail-back (settings.failback): while up on origin i > 0, every
  failback_probe_interval_s the better origins are probed best first into a staging
  sink; the first one that delivers a video keyframe takes over at that keyframe
  (discontinuity, its sequence headers and metadata, the keyframe), the old source is
  closed. Audio-only origins are never probed back. Each better origin has its own
  probe time: one that dies within the flap window after a fail-back is probed at a
  doubled (capped) interval until it stays up (FailoverPolicy hold-down).
- A publisher or a fixed relay taking over a "play" pull's stream
  (Publication.on_preempted) ends the pull quietly.
- Secrets: status() and every event show source URLs through sources.base.redact_url /
  redact_text; only the puller gets the real URL.
- Cancellation: waits use asyncio.timeout / asyncio.wait, never wait_for (which, on
  3.11, can swallow a cancel that lands as the awaited thing completes).

Parts (one role each):
- supervisor.py: RelayPull - connect, read, fail over (the supervisor loop), State;
- failback.py: Failback - probing better origins and swapping at a keyframe;
- status.py: status_row(pull) - the pull's RelayStatusRow.
"""

from .supervisor import RelayPull

__all__ = ["RelayPull"]
