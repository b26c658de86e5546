"""The two seams inside the hub, each the narrow set of calls one side makes on the other.

Hub -> Stream -> Subscriber is a tree: a Stream is told things by its owner (the Hub)
through its public methods and tells its owner only what `StreamOwner` lists; a
Subscriber tells its host (the Stream) only what `SubscriberHost` lists. Counters
live with whoever counts: a Subscriber its bytes and skips, a Stream its frames and
viewers' totals, the Hub the totals of streams that are gone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..media.frame import Frame

if TYPE_CHECKING:
    from .stream import Stream
    from .subscriber import Subscriber


class StreamOwner(Protocol):
    """What a Stream needs from the registry that owns it (the Hub)."""

    def viewer_joined(self, sub: Subscriber) -> None:
        """A viewer joined one of the owner's streams (per-protocol counts)."""

    def viewer_left(self, sub: Subscriber) -> None:
        """A viewer left one of the owner's streams."""

    def stream_idle(self, stream: Stream) -> None:
        """The stream has neither a source nor readers: the owner may forget it."""


class SubscriberHost(Protocol):
    """What a Subscriber needs from the stream it reads."""

    @property
    def has_video(self) -> bool:
        """The stream has carried video (audio then waits for video to wake a writer)."""

    @property
    def has_audio(self) -> bool:
        """The stream has carried audio (a writer's container header announces it)."""

    def resume_prefix(self, keyframe: Frame) -> list[Frame]:
        """Codec headers to send before `keyframe`, where a skipping viewer resumes."""

    def subscriber_dropped(self, sub: Subscriber) -> None:
        """The subscriber was ended for being too slow: count it and let it go."""

    def remove_subscriber(self, sub: Subscriber) -> None:
        """The subscriber's sink is done: stop fanning out to it."""

    def leave_step(self, sub: Subscriber) -> None:
        """The subscriber's sink left push mode: fan out to its own queue again."""
