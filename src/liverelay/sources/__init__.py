"""Origin pullers, picked by URL: `open_source(url)` returns the `pull` function to use.

rtmp://, rtmps://            -> sources.rtmp.pull
http(s)://... .m3u8          -> sources.hls.pull (native; relay.hls_puller = "ffmpeg" -> ffmpeg)
http(s)://... anything else  -> sources.flv.pull (HTTP-FLV)
srt://                       -> sources.ffmpeg.pull_srt

Modules are imported on first use (the HLS puller brings cryptography, the HTTP ones aiohttp)
so a missing optional part only affects its scheme. `source_module_for(url)` names the
(module, function) pair; `_LOADERS` maps each pair to a typed loader (no lookup by name).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from ..config import RelaySettings
from .base import FrameSink, SourceError

PullFunction = Callable[..., Awaitable[None]]
"""`async def pull(url: str, sink: FrameSink, *, settings: RelaySettings) -> None`"""

__all__ = ["FrameSink", "PullFunction", "RelaySettings", "SourceError", "open_source", "source_module_for"]


def _rtmp() -> PullFunction:
    from .rtmp import pull

    return pull


def _flv() -> PullFunction:
    from .flv import pull

    return pull


def _hls() -> PullFunction:
    from .hls import pull

    return pull


def _ffmpeg_srt() -> PullFunction:
    from .ffmpeg import pull_srt

    return pull_srt


# (module, function) as source_module_for names it -> the loader of that pull function.
_LOADERS: dict[tuple[str, str], Callable[[], PullFunction]] = {
    ("rtmp", "pull"): _rtmp,
    ("flv", "pull"): _flv,
    ("hls", "pull"): _hls,
    ("ffmpeg", "pull_srt"): _ffmpeg_srt,
}


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
        return _LOADERS[module_name, func_name]()
    except ImportError as exc:
        raise SourceError("unsupported", f"source {module_name}.{func_name} unavailable: {exc}") from None
