"""What a peer sent, made safe to echo in a reply or a log line: one helper for every server.

A peer controls tcUrl, app and stream names, Host headers and paths, and may make them a
megabyte long; a reply or a log line carries at most `limit` characters of it, with the
number of characters cut said. Callers that need control characters escaped format
the result with !r, as they did the raw value.
"""

from __future__ import annotations

# Enough for any real host, app or stream name (and a signed query string's start).
ECHO_LIMIT = 200


def clip(value: object, limit: int = ECHO_LIMIT) -> str:
    """`value` as text, cut to `limit` characters: 'abc', 'abcd...(+N chars)'."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...(+{len(text) - limit} chars)"
