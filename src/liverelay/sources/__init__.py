"""Origin pullers, picked by URL: `open_source(url)` returns the `pull` function to use.

rtmp://, rtmps://            -> sources.rtmp.pull
http(s)://... .m3u8          -> sources.hls.pull (native; relay.hls_puller = "ffmpeg" -> ffmpeg)
http(s)://... anything else  -> sources.flv.pull (HTTP-FLV)
srt://                       -> sources.ffmpeg.pull_srt

Modules are imported on first use so a missing optional part only affects its scheme.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from ..config import RelaySettings
from .base import FrameSink, SourceError

PullFunction = Callable[..., Awaitable[None]]
"""`async def pull(url: str, sink: FrameSink, *, settings: RelaySettings) -> None`"""

__all__ = ["FrameSink", "PullFunction", "RelaySettings", "SourceError", "open_source", "source_module_for"]


def source_module_for(url: str) -> tuple[str, str]:
    """(module, function) that pulls `url`; SourceError('unsupported') for anything else."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise SourceError("unsupported", f"bad source URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if not parts.hostname:
        raise SourceError("unsupported", f"source URL {url!r} has no host")
    if scheme in ("rtmp", "rtmps"):
        return "rtmp", "pull"
    if scheme == "srt":
        return "ffmpeg", "pull_srt"
    if scheme in ("http", "https"):
        if parts.path.lower().endswith(".m3u8"):
            return "hls", "pull"
        return "flv", "pull"
    raise SourceError("unsupported", f"no source for scheme {scheme!r} in {url!r}")


def open_source(url: str) -> PullFunction:
    """The pull function for `url` (imports its module on first use)."""
    module_name, func_name = source_module_for(url)
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
        func: PullFunction = getattr(module, func_name)
    except (ImportError, AttributeError) as exc:
        raise SourceError("unsupported", f"source {module_name}.{func_name} unavailable: {exc}") from None
    return func
