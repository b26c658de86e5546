"""Fixtures shared by the in-process relay tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from liverelay.config import MediaSettings
from liverelay.hub import Hub
from liverelay.media.flv import FlvDecoder
from liverelay.media.frame import Frame


@pytest.fixture(scope="module")
def sample_frames(sample_flv: Path) -> list[Frame]:
    frames = [f for f in FlvDecoder().feed(sample_flv.read_bytes()) if isinstance(f, Frame)]
    return frames[: len(frames) // 2]  # 5 s is plenty, and loops sooner


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    h = Hub(MediaSettings())
    yield h
    await h.close()
