"""What every source (puller) shares: the sink it writes to and the error it raises."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Protocol

from ..media.frame import Frame

SOURCE_ERROR_REASONS = (
    "connect",
    "timeout",
    "protocol",
    "eof",
    "http_status",
    "process_exit",
    "policy",
    "unsupported",
)


class FrameSink(Protocol):
    def on_frame(self, frame: Frame) -> None: ...

    def on_frames(self, frames: list[Frame]) -> None:
        """The frames of one read, in order (the RTMP pull): like on_frame for each, and
        handed over: the list and its frames are the sink's (kept by the source no more)."""
        ...

    def on_unpublished(self) -> bool:
        """The origin says its publisher left but keeps the connection open (RTMP
        UnpublishNotify). True: keep the connection and wait for the republish (the frames
        that follow start a new timeline); False: end the pull as a clean end of stream."""
        ...


class SourceError(Exception):
    """A source failed; `reason` is one of SOURCE_ERROR_REASONS (a metrics label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


# ---- relay-loop marker -------------------------------------------------------------
#
# The relay chain (node ids, this node last) that a play-triggered pull sends to its
# origin (relay/loops.py decides; the pullers only send it). A context variable because
# the pull functions' signature is shared with every source: RelayPull's tasks are
# created inside `relay_chain(...)` and inherit it; a pull outside one sends no marker.
RELAY_VIA_PARAM = "lr_via"  # in an RTMP play name's query
RELAY_VIA_HEADER = "Liverelay-Via"  # on an HTTP-FLV request
_relay_via: ContextVar[tuple[str, ...]] = ContextVar("liverelay_relay_via", default=())


@contextlib.contextmanager
def relay_chain(chain: tuple[str, ...]) -> Iterator[None]:
    """Pulls (tasks) started inside this block mark their requests with `chain`."""
    token = _relay_via.set(chain)
    try:
        yield
    finally:
        _relay_via.reset(token)


def current_relay_via() -> str:
    """The marker value for a request made now ('' = not a relay chain: send none)."""
    return ".".join(_relay_via.get())


# ---- secrets in source URLs --------------------------------------------------------
#
# Origin URLs carry credentials: SRT passphrases, userinfo passwords and signed-URL
# query tokens (auth_key, txSecret, volcSecret, token, sign ...). Everything that
# *shows* a source URL (status rows, webhook bodies, log lines, LastError messages)
# goes through redact_url / redact_text; only the puller itself sees the real URL.

# A query parameter whose (lower-cased) name contains one of these is a secret.
_SECRET_NAME_PARTS = ("pass", "pwd", "token", "key", "secret", "auth", "sign", "credential")
# ... except these, which contain a part above but carry no secret.
_NOT_SECRET_NAMES = frozenset({"pbkeylen", "keyframe", "keyint"})
MASK = "***"

# name=value inside a query string (after '?' or '&'); the value ends at the next
# separator, whitespace or quote so that a URL embedded in a message is handled too.
_QUERY_PARAM = re.compile(r"(?<=[?&;])(?P<name>[^=&;#?\s'\"]+)=(?P<value>[^&;#\s'\"]*)")
# scheme://user:password@ (the password is masked, the user name kept).
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/@:\s'\"]*):(?P<password>[^/\s'\"]*)@")


def is_secret_param(name: str) -> bool:
    """True when a query parameter called `name` carries a credential."""
    lname = name.lower()
    if lname in _NOT_SECRET_NAMES:
        return False
    return any(part in lname for part in _SECRET_NAME_PARTS)


def _mask_param(match: re.Match[str]) -> str:
    if match["value"] and is_secret_param(match["name"]):
        return f"{match['name']}={MASK}"
    return match[0]


def redact_text(text: str) -> str:
    """`text` with every URL secret in it masked: userinfo passwords and secret query values.

    Works on free text (error messages that quote a URL) as well as on a bare URL; never
    raises; everything else is left byte for byte as it was.
    """
    if not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _QUERY_PARAM.sub(_mask_param, text)


def redact_url(url: str) -> str:
    """The source URL as it may be shown (status, events, logs): secrets masked."""
    return redact_text(url)
