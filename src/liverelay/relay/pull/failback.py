"""Fail-back: while up on origin i > 0, probe the better origins and swap at a keyframe.

Every failback_probe_interval_s the better origins are probed best first into a staging
sink (Attempt(staging=True)); the first one that delivers a video keyframe takes over at
that keyframe (RelayPull.take_over: discontinuity, its sequence headers and metadata, the
keyframe) and the old source is closed. Audio-only origins are never probed back. Each
better origin has its own probe time and hold-down (FailoverPolicy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...media.frame import Frame, FrameKind

if TYPE_CHECKING:
    from .supervisor import Attempt, RelayPull


class Failback:
    """The fail-back probe of one RelayPull (at most one probe at a time)."""

    def __init__(self, pull: RelayPull) -> None:
        self.pull = pull
        self.probe: Attempt | None = None

    def manage(self, now: float) -> float:
        """Start/retire probes of better origins; return when to look again."""
        pull = self.pull
        active = pull.active
        if not pull.settings.failback or active is None or active.first_frame_at is None or active.index == 0:
            self.cancel("not needed")
            return float("inf")
        policy = pull.policy
        policy.check_stable(now)
        probe = self.probe
        if probe is not None:
            probe_deadline = probe.started + self.budget()
            if probe.task is not None and probe.task.done():
                self.probe = None
            elif now >= probe_deadline:
                self.cancel("probe timeout")
            else:
                return probe_deadline
        # Each better origin has its own probe time: an origin that flapped right after a
        # fail-back waits out its (doubled) hold-down while the others are still probed.
        due = [i for i in policy.due_probes(now) if i < len(pull.urls)]
        if not due:
            return policy.next_probe_at()
        index = due[0]
        policy.on_probe(index, now)
        self.probe = pull.start_attempt(index, staging=True)
        return now + self.budget()

    def budget(self) -> float:
        """How long one probe may take: connect, first frame, then a GOP-ish wait for the keyframe."""
        s = self.pull.settings
        return s.connect_timeout_s + s.first_frame_timeout_s + s.no_media_timeout_s

    def on_probe_frame(self, probe: Attempt, frame: Frame) -> None:
        """A frame of the probe: stage headers and metadata; swap at the first video keyframe."""
        if frame.config or frame.kind == FrameKind.DATA:
            probe.staged[(int(frame.kind), frame.config)] = frame
            return
        if not (frame.kind == FrameKind.VIDEO and frame.keyframe):
            return  # nothing before the first keyframe is useful to viewers
        self.probe = None
        staged = sorted(probe.staged.values(), key=lambda f: f.kind != FrameKind.DATA)
        probe.staged = {}
        self.pull.take_over(probe, staged, frame)

    def cancel(self, why: str) -> None:
        if self.probe is not None:
            self.probe.cancel(why)
            self.probe = None
