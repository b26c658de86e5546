"""HLS (.m3u8) and SRT sources through an ffmpeg subprocess that remuxes to FLV on a pipe.

ffmpeg does the demuxing (HLS playlists, MPEG-TS over SRT) and `-c copy -f flv`
gives us FLV tag bodies, which are exactly our Frame payloads; the FLV is read
with media.flv.FlvDecoder like any other FLV source. No transcoding happens.

Supervision: ffmpeg runs in its own process group so that cancelling the pull
(task stopped, source switched, node shutting down) ends it and anything it
spawned: SIGTERM, then SIGKILL after a short grace, then reap - no zombies.
The last lines of its stderr are kept and become the error message when it
fails, because "exit status 1" alone tells an operator nothing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import shutil
import signal
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import aiohttp
from yarl import URL

from ..config import RelaySettings
from ..media.flv import FlvDecoder, FlvError
from ..media.frame import Frame
from ..tasks import cancel_and_wait
from .base import FrameSink, SourceError, redact_url
from .flv import pinned_connector

log = logging.getLogger("liverelay.sources.ffmpeg")

STDERR_TAIL_LINES = 20
_READ_CHUNK = 64 * 1024
# Grace between SIGTERM and SIGKILL: ffmpeg normally exits within a few ms of SIGTERM.
_TERM_GRACE_S = 1.0
# SRT query parameters that become ffmpeg options (passed as options, not kept in the
# URL, so values such as "#!::r=live/x,m=request" need no URL escaping for ffmpeg).
# Query name -> libsrt option. "streamid" is spelled srt_streamid because ffmpeg's own
# -streamid is an output option and would be rejected before -i.
_SRT_OPTION_PARAMS = {
    "streamid": "-srt_streamid",
    "srt_streamid": "-srt_streamid",
    "passphrase": "-passphrase",
    "pbkeylen": "-pbkeylen",
    "latency": "-latency",
}


def is_hls_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and parts.path.lower().endswith(".m3u8")


def is_srt_url(url: str) -> bool:
    return urlsplit(url).scheme.lower() == "srt"


def handles(url: str) -> bool:
    """True for the URLs this module can pull (HLS via relay.hls_puller = "ffmpeg", and SRT)."""
    return is_hls_url(url) or is_srt_url(url)


def find_ffmpeg(ffmpeg_path: str) -> str | None:
    """Absolute path of the ffmpeg binary, or None when it is not installed."""
    if os.sep in ffmpeg_path:
        return ffmpeg_path if os.access(ffmpeg_path, os.X_OK) and os.path.isfile(ffmpeg_path) else None
    return shutil.which(ffmpeg_path)


def _srt_input(url: str, settings: RelaySettings) -> tuple[list[str], str]:
    """Input options and the cleaned URL for an srt:// source (always caller mode)."""
    parts = urlsplit(url)
    if not parts.hostname or parts.port is None:
        raise SourceError("protocol", f"srt URL needs host and port: {redact_url(url)}")
    options: list[str] = []
    kept: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        lname = name.lower()
        if lname in _SRT_OPTION_PARAMS:
            options += [_SRT_OPTION_PARAMS[lname], value]
        elif lname == "mode":
            continue  # a relay always calls the origin; a listener URL makes no sense here
        else:
            kept.append((name, value))
    kept.append(("mode", "caller"))
    # connect_timeout is in milliseconds; timeout (socket I/O) in microseconds.
    options += ["-connect_timeout", str(int(settings.connect_timeout_s * 1000))]
    options += ["-timeout", str(int(settings.no_media_timeout_s * 1_000_000))]
    clean = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept), ""))
    return options, clean


def build_ffmpeg_args(ffmpeg_bin: str, url: str, settings: RelaySettings) -> list[str]:
    """The full ffmpeg command line that remuxes `url` to FLV on stdout."""
    args = [ffmpeg_bin, "-hide_banner", "-nostdin", "-loglevel", "warning"]
    # Low-latency input: do not buffer for reordering, and probe only as long as it takes
    # to see both codecs of a typical live stream (the defaults wait up to 5 s).
    args += ["-fflags", "+nobuffer", "-probesize", "1000000", "-analyzeduration", "2000000"]
    if is_hls_url(url):
        # HLS arrives a whole segment at a time. Read it at the native rate (-re) so frames
        # flow evenly instead of in segment-sized bursts with segment-long silences (which
        # a no-media watchdog would take for a dead origin), starting one segment behind
        # the live edge so the next segment is published before the current one is played
        # out (observed with 2 s segments: at -1 playout stalls ~1 s per segment, at -2 not).
        # Give up on a playlist that stops growing, and bound every HTTP read.
        # ffmpeg may open only HTTP(S) (and AES-128 decryption of it): no file:, data:,
        # or other local protocols from a playlist (see check_hls_playlist for hosts).
        args += ["-protocol_whitelist", HLS_PROTOCOLS]
        args += [
            "-re",
            "-live_start_index",
            "-2",
            "-m3u8_hold_counters",
            "10",
            "-rw_timeout",
            str(int(max(settings.connect_timeout_s, settings.no_media_timeout_s) * 1_000_000)),
        ]
        input_url = url
    elif is_srt_url(url):
        srt_options, input_url = _srt_input(url, settings)
        args += srt_options
    else:
        raise SourceError("unsupported", f"ffmpeg source handles .m3u8 and srt:// only: {redact_url(url)}")
    args += ["-i", input_url]
    # Audio and video only (no data/subtitle streams FLV cannot carry); no file-size
    # back-patching because stdout is a pipe.
    args += ["-map", "0:v?", "-map", "0:a?", "-c", "copy"]
    args += ["-flvflags", "no_duration_filesize", "-f", "flv", "pipe:1"]
    return args


class StderrTail:
    """The last N lines ffmpeg wrote to stderr (it reports failures there, not in its exit code)."""

    def __init__(self, max_lines: int = STDERR_TAIL_LINES) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=max_lines)

    async def collect(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over the reader's 64 KiB limit (it was discarded)
                self.lines.append("(overlong stderr line dropped)")
                continue
            if not line:
                return
            text = line.decode("utf-8", errors="replace").rstrip()
            if text:
                self.lines.append(text)

    def text(self) -> str:
        return "\n".join(self.lines)

    def last(self) -> str:
        return self.lines[-1] if self.lines else ""


class FfmpegProcess:
    """One supervised ffmpeg: started in its own process group, always reaped by stop()."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr_tail = StderrTail()
        self._stderr_task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> asyncio.StreamReader:
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # own process group: killpg reaches everything it spawns
            )
        except OSError as exc:
            raise SourceError("unsupported", f"cannot run ffmpeg ({self.args[0]}): {exc}") from exc
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._stderr_task = asyncio.create_task(self.stderr_tail.collect(self.proc.stderr))
        return self.proc.stdout

    def _signal_group(self, sig: int) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:  # pragma: no cover - group leader gone and pid reused
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    async def wait_exit(self) -> int:
        """Wait for ffmpeg to exit on its own and for its stderr to be fully read."""
        assert self.proc is not None
        rc = await self.proc.wait()
        if self._stderr_task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await asyncio.shield(self._stderr_task)
        return rc

    async def stop(self) -> None:
        """SIGTERM the group, SIGKILL after a grace, reap. Safe to call more than once."""
        if self.proc is None:
            return
        try:
            if self.proc.returncode is None:
                self._signal_group(signal.SIGTERM)
                try:
                    async with asyncio.timeout(_TERM_GRACE_S):
                        await self.proc.wait()
                except TimeoutError:
                    self._signal_group(signal.SIGKILL)
                    async with asyncio.timeout(5.0):
                        await self.proc.wait()
        except asyncio.CancelledError:
            # Cancelled while stopping: do not leave the process behind.
            self._signal_group(signal.SIGKILL)
            raise
        finally:
            # Children of ffmpeg (none expected) die with the group even when ffmpeg exited first.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            if self._stderr_task is not None and not self._stderr_task.done():
                await cancel_and_wait(self._stderr_task, "the ffmpeg stderr reader", logger=log)


# ---- HLS playlists stay on the checked origin -----------------------------------------
#
# ffmpeg follows redirects and fetches whatever a playlist names, from any host, with its
# own DNS lookups: the source policy would only have seen the configured URL. Until the
# native HLS puller lands, the playlist is fetched here first, through a connection pinned
# to the checked addresses: a redirect or any URI in it (variants, renditions, segments,
# keys, init sections, parts) that leads to another scheme, host or port is refused as
# 'policy'; the variant playlists of a master are checked the same way (the first
# MAX_HLS_VARIANTS). ffmpeg then gets the URL the redirects (same origin only) led to.
# Not covered (the native puller closes these): a hostile origin can serve ffmpeg a
# different playlist than it served this check, later reloads are not checked, and
# ffmpeg resolves the origin's name itself.

HLS_PROTOCOLS = "http,https,tls,tcp,crypto"
MAX_PLAYLIST_BYTES = 1 << 20
MAX_HLS_REDIRECTS = 3
MAX_HLS_VARIANTS = 8
_URI_ATTRIBUTE = re.compile(r'URI="([^"]*)"')


def _origin_of(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


def playlist_uris(base: str, text: str) -> tuple[list[str], list[str]]:
    """(every URI the playlist names, resolved against `base`; those that are playlists)."""
    uris: list[str] = []
    playlists: list[str] = []
    master = "#EXT-X-STREAM-INF" in text
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            for match in _URI_ATTRIBUTE.finditer(line):
                uri = urljoin(base, match.group(1))
                uris.append(uri)
                if master and line.startswith(("#EXT-X-MEDIA:", "#EXT-X-I-FRAME-STREAM-INF:")):
                    playlists.append(uri)
            continue
        uri = urljoin(base, line)
        uris.append(uri)
        if master:
            playlists.append(uri)
    return uris, playlists


def check_playlist_hosts(base: str, text: str, origin: tuple[str, str, int]) -> list[str]:
    """SourceError('policy') for a URI off `origin`; else the playlists a master names."""
    uris, playlists = playlist_uris(base, text)
    for uri in uris:
        if _origin_of(uri) != origin:
            raise SourceError(
                "policy",
                f"HLS playlist {redact_url(base)} names {redact_url(uri)[:300]}: "
                "not the checked origin (scheme, host and port must match)",
            )
    return playlists


async def _fetch_playlist(
    session: aiohttp.ClientSession, url: str, origin: tuple[str, str, int]
) -> tuple[str, str | None]:
    """(the URL after same-origin redirects, the playlist text or None when not a 200)."""
    for _ in range(MAX_HLS_REDIRECTS + 1):
        async with session.get(URL(url, encoded=True), allow_redirects=False) as response:
            location = response.headers.get("Location")
            if response.status in (301, 302, 303, 307, 308) and location:
                target = urljoin(url, location)
                if _origin_of(target) != origin:
                    raise SourceError(
                        "policy",
                        f"HLS playlist {redact_url(url)} redirects to {redact_url(target)[:300]}: "
                        "not the checked origin",
                    )
                url = target
                continue
            if response.status != 200:
                return url, None  # ffmpeg reports the failure in its own words
            body = await response.content.read(MAX_PLAYLIST_BYTES + 1)
            if len(body) > MAX_PLAYLIST_BYTES:
                raise SourceError(
                    "protocol", f"HLS playlist {redact_url(url)} over {MAX_PLAYLIST_BYTES} bytes"
                )
            return url, body.decode("utf-8", errors="replace")
    raise SourceError(
        "http_status", f"HLS playlist {redact_url(url)}: more than {MAX_HLS_REDIRECTS} redirects"
    )


async def check_hls_playlist(url: str, settings: RelaySettings) -> str:
    """Fetch and check the playlist (see above); the URL to give ffmpeg.

    An origin that cannot be reached is left to ffmpeg, which fails with its own message.
    """
    origin = _origin_of(url)
    if origin is None:
        raise SourceError("unsupported", f"not an HLS URL: {redact_url(url)}")
    timeout = aiohttp.ClientTimeout(total=settings.connect_timeout_s + settings.no_media_timeout_s)
    try:
        connector = await pinned_connector(url, settings)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            final, text = await _fetch_playlist(session, url, origin)
            if text is None:
                return final
            for variant in check_playlist_hosts(final, text, origin)[:MAX_HLS_VARIANTS]:
                variant_final, variant_text = await _fetch_playlist(session, variant, origin)
                if variant_text is not None:
                    check_playlist_hosts(variant_final, variant_text, origin)
            return final
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.info("HLS playlist %s not checked (%s): ffmpeg reports the failure", redact_url(url), exc)
        return url


def _exit_error(rc: int, tail: StderrTail) -> SourceError:
    detail = tail.text() or "(no output on stderr)"
    return SourceError("process_exit", f"ffmpeg exited with status {rc}: {detail}")


async def pull(url: str, sink: FrameSink, *, settings: RelaySettings) -> None:
    """Remux `url` (HLS or SRT) through ffmpeg and deliver its frames to `sink`.

    Returns when ffmpeg ends cleanly (the origin ended the stream); raises
    SourceError when ffmpeg is missing, exits with an error, or goes silent, and
    SourceError('policy') when an HLS playlist leads away from the checked origin.
    """
    ffmpeg_bin = find_ffmpeg(settings.ffmpeg_path)
    if ffmpeg_bin is None:
        raise SourceError(
            "unsupported",
            f"ffmpeg not found ({settings.ffmpeg_path!r}); install ffmpeg or set relay.ffmpeg_path "
            "to pull HLS and SRT sources",
        )
    if is_hls_url(url):
        url = await check_hls_playlist(url, settings)
    args = build_ffmpeg_args(ffmpeg_bin, url, settings)
    process = FfmpegProcess(args)
    stdout = await process.start()
    log.debug("ffmpeg pid %s pulling %s", process.pid, redact_url(url))
    try:
        await _pump(stdout, sink, process, settings)
    finally:
        await process.stop()


async def _pump(
    stdout: asyncio.StreamReader, sink: FrameSink, process: FfmpegProcess, settings: RelaySettings
) -> None:
    decoder = FlvDecoder()
    # ffmpeg has to connect and probe the input before it writes the first byte, so the
    # first read may take connect + probe time; after that, silence means a dead origin.
    first_timeout = settings.connect_timeout_s + settings.first_frame_timeout_s
    got_frame = False
    while True:
        timeout = settings.no_media_timeout_s if got_frame else first_timeout
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that races with a completed read, and the pull would outlive its task.
            async with asyncio.timeout(timeout):
                chunk = await stdout.read(_READ_CHUNK)
        except TimeoutError:
            what = "no media" if got_frame else "no first frame"
            tail = process.stderr_tail.text()
            message = f"ffmpeg: {what} for {timeout:.1f}s" + (f": {tail}" if tail else "")
            raise SourceError("timeout", message) from None
        if not chunk:
            break
        try:
            frames = _decode(decoder, chunk)
        except FlvError as exc:
            raise SourceError("protocol", f"ffmpeg produced bad FLV: {exc}") from exc
        for frame in frames:
            got_frame = True
            sink.on_frame(frame)
    try:
        async with asyncio.timeout(5.0):
            rc = await process.wait_exit()
    except TimeoutError:
        raise SourceError("process_exit", "ffmpeg closed its output but did not exit") from None
    if rc != 0:
        raise _exit_error(rc, process.stderr_tail)
    if not got_frame:
        raise SourceError("eof", "ffmpeg ended without media: " + (process.stderr_tail.text() or "no output"))


def _decode(decoder: FlvDecoder, chunk: bytes) -> list[Frame]:
    """Frames from the next piece of ffmpeg's FLV output (the FLV file header is skipped)."""
    return [item for item in decoder.feed(chunk) if isinstance(item, Frame)]


# Named per scheme (sources.source_module_for names pull_srt for SRT); both are the same pull.
pull_hls = pull
pull_srt = pull
