"""The GOP cache: what a new viewer gets at once so its player can start decoding.

With video: every frame (audio too) since the last video keyframe. Past the byte
or duration bound the cache is emptied and stays empty until the next keyframe
(a GOP without its keyframe is useless). Audio-only streams keep a short window.
Codec headers and metadata are kept by the Stream, not here.
"""

from __future__ import annotations

from collections import deque

from ..media.frame import Frame, FrameKind

AUDIO_ONLY_WINDOW_MS = 1000


class GopCache:
    def __init__(self, *, max_bytes: int, max_ms: int, enabled: bool = True) -> None:
        self.max_bytes = max_bytes
        self.max_ms = max_ms
        self.enabled = enabled
        self._frames: deque[Frame] = deque()
        self._bytes = 0
        self._keyed = False  # the cache starts at a video keyframe

    def add(self, frame: Frame, has_video: bool) -> None:
        """Add an outgoing (already rebased) media frame; config/data frames are not cached."""
        if not self.enabled:
            return
        frames = self._frames
        if frame.kind == FrameKind.VIDEO and frame.keyframe:
            frames.clear()
            frames.append(frame)
            self._bytes = len(frame.payload)
            self._keyed = True
            return
        if has_video:
            if not self._keyed:
                if frames:
                    self.clear()
                return
            frames.append(frame)
            self._bytes += len(frame.payload)
            if self._bytes > self.max_bytes or frame.timestamp - frames[0].timestamp > self.max_ms:
                self.clear()
            return
        # Audio only: a sliding window.
        frames.append(frame)
        self._bytes += len(frame.payload)
        while frames and (
            self._bytes > self.max_bytes or frame.timestamp - frames[0].timestamp > AUDIO_ONLY_WINDOW_MS
        ):
            self._bytes -= len(frames.popleft().payload)

    def clear(self) -> None:
        self._frames.clear()
        self._bytes = 0
        self._keyed = False

    @property
    def keyed(self) -> bool:
        return self._keyed

    @property
    def nbytes(self) -> int:
        return self._bytes

    def snapshot(self) -> list[Frame]:
        return list(self._frames)

    def __len__(self) -> int:
        return len(self._frames)
