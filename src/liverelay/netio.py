"""Read coalescing with SO_RCVLOWAT: fewer, larger reads of a steady stream, bounded in delay.

Each wake-up of a Python event loop costs far more than parsing what one RTMP message
brings (cold caches, ~30 Python calls per read), and a 2 Mbit/s stream arrives as ~60-70
messages a second. Raising a socket's SO_RCVLOWAT to about `window_s` of its measured rate
makes the kernel wake the loop once per that much data instead. A timer bounds the delay
of what stays below the mark (a stream that pauses or slows down, a command, the end of
the stream): once nothing was read for `tick_s`, the mark drops back to one byte, and the
next read raises it again. An EOF or an error wakes the loop whatever the mark.

Some origins send in bursts (nginx-rtmp corks a player's output: ~17 kB every 40-85 ms for
a 2 Mbit/s stream), and a small message (an audio frame) can arrive after the burst that
filled the mark. The tick then fires just before the next burst: two wake-ups (the timer,
then a read of a few hundred bytes) a moment before the burst would have been read anyway,
a third of all wake-ups at a 2 Mbit/s nginx-rtmp origin. With `max_tick_s` above `tick_s`,
such misfires are noticed (the mark is filled within half a window of the tick's read)
and, after BURSTY_MISFIRES of them, the tick follows the origin's rhythm: 1.5 x the mean
gap between the reads the mark triggered, never below `tick_s`, never above `max_tick_s`
(what waits below the mark is read within that). A steady origin, whose ticks are rare
and not followed by a burst, keeps the short tick, and with it the short wait of the last
frames before it pauses.

Used by the RTMP listener for a publisher nobody watches (servers/rtmp.py) and by the RTMP
pull (sources/rtmp.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket

log = logging.getLogger("liverelay.netio")

# The rate is measured over periods of at least this long (and known after the first), so a
# drop in bitrate lowers the mark within about this much time.
RATE_PERIOD_S = 1.0
# The adaptive tick (bursty origins): this times the mean gap between mark-triggered reads
# (an EWMA with weight GAP_WEIGHT per read), within [tick_s, max_tick_s], once the tick
# has fired just before a burst BURSTY_MISFIRES times since start().
TICK_PER_GAP = 1.5
GAP_WEIGHT = 0.25
BURSTY_MISFIRES = 3


class ReadCoalescer:
    """Owns one socket's SO_RCVLOWAT: the measured rate, the mark and the fallback tick.

    The owner calls `start()` when a steady stream begins (again: the rate is measured
    afresh, the mark is one byte until it is known), `on_read()` for every read, `hold()`
    to allow or forbid raising the mark (the rate is measured either way), and `stop()`
    at the end (`closing=True` when the socket is going away: its mark is left alone).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket | None,
        *,
        window_s: float,
        tick_s: float,
        max_tick_s: float | None = None,
        max_bytes: int,
        min_bytes: int,
        label: str,
    ) -> None:
        self._loop = loop
        self._sock = sock if window_s > 0 else None  # None: coalescing off (or refused)
        self._window_s = window_s
        self._min_tick_s = tick_s
        self._max_tick_s = max(tick_s, max_tick_s or tick_s)
        self._tick_s = tick_s  # the tick in use (adapts when max_tick_s > tick_s)
        self._gap = 0.0  # EWMA of the gap between reads the mark triggered (0 = none yet)
        self._marked_at = 0.0  # loop time of the last read the mark triggered (0 = none yet)
        self._tick_read_at = 0.0  # loop time of the last read a tick caused (0 = none since)
        self._misfires = 0  # ticks whose read a burst followed within half a window
        self._max_bytes = max_bytes
        self._min_bytes = min_bytes
        self._label = label
        self.mark = 1  # the socket's SO_RCVLOWAT (1 = the default: every byte wakes us)
        self.rate: float | None = None  # bytes/s over the last period; None = not known yet
        self._active = False  # measuring: between start() and stop()
        self._holding = True  # the owner allows a mark above one byte
        self._since = 0.0  # loop time the current rate period began
        self._bytes = 0  # bytes read in the current rate period
        self._tick: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Measure the rate afresh from now; the mark stays one byte until it is known."""
        if self._sock is None:
            return
        self._active = True
        self._since = self._loop.time()
        self._bytes = 0
        self.rate = None
        self._gap = 0.0  # a new stream: its rhythm is learnt afresh
        self._tick_s = self._min_tick_s
        self._marked_at = 0.0
        self._tick_read_at = 0.0
        self._misfires = 0
        self._release()

    def hold(self, allowed: bool) -> None:
        """Allow (the next read raises the mark) or forbid (one byte now) coalescing."""
        self._holding = allowed
        if not allowed:
            self._release()

    def on_read(self, nbytes: int) -> None:
        if not self._active:
            return
        now = self._loop.time()
        if self._max_tick_s > self._min_tick_s:
            self._follow_rhythm(now)
        self._bytes += nbytes
        elapsed = now - self._since
        if elapsed >= RATE_PERIOD_S:
            self.rate = self._bytes / elapsed
            self._since = now
            self._bytes = 0
        elif self.mark > 1 or self.rate is None:
            self._rearm(now)
            return
        # A new rate, or the mark was dropped by the tick (or hold): set it again.
        if self._holding and self.rate is not None:
            mark = min(self._max_bytes, int(self.rate * self._window_s))
            self._set(mark if mark >= self._min_bytes else 1)
        self._rearm(now)

    def stop(self, *, closing: bool = False) -> None:
        self._active = False
        self.rate = None
        if closing:
            self._sock = None  # the socket is closing: its mark no longer matters
        self._release()

    def _follow_rhythm(self, now: float) -> None:
        if self.mark <= 1:  # a read the tick caused (or before the mark was set)
            if self._tick is None and self._marked_at:
                self._tick_read_at = now
            return
        if self._tick_read_at:
            if now - self._tick_read_at < self._window_s / 2:
                self._misfires += 1  # the tick fired just before this burst
            self._tick_read_at = 0.0
        if self._marked_at:
            gap = now - self._marked_at  # over any tick read in between
            mean = self._gap
            self._gap = mean = gap if mean == 0.0 else mean + GAP_WEIGHT * (gap - mean)
            if self._misfires >= BURSTY_MISFIRES:
                self._tick_s = min(self._max_tick_s, max(self._min_tick_s, TICK_PER_GAP * mean))
        self._marked_at = now

    def _rearm(self, now: float) -> None:
        # Pushed back by every read, so a stream that keeps filling the mark never fires it
        # (a timer that fires is a wake-up of its own).
        tick = self._tick
        if tick is not None:
            tick.cancel()
            self._tick = None
        if self.mark > 1:
            self._tick = self._loop.call_at(now + self._tick_s, self._on_tick)

    def _on_tick(self) -> None:
        # Nothing read for a tick: what sits below the mark is read now; the next read
        # raises the mark again.
        self._tick = None
        self._set(1)

    def _release(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        self._set(1)

    def _set(self, mark: int) -> None:
        sock = self._sock
        if mark == self.mark or sock is None:
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, mark)
        except OSError as exc:  # not fatal: reads just stay uncoalesced
            log.debug("%s: SO_RCVLOWAT %d refused: %s", self._label, mark, exc)
            self._sock = None
            self.mark = 1
            return
        self.mark = mark
