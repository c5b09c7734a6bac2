"""Time behind one object: wall time, monotonic time and waits that a stop event interrupts.

Services take a :class:`Clock` in ``run(cfg, bus, clock, stop)`` so a test can drive their loops with
a :class:`ManualClock` instead of waiting on wall time.
"""
from __future__ import annotations

import threading
import time


class Clock:
    """Interface: ``time()`` (epoch s), ``monotonic()`` and ``wait(stop, timeout) -> stopped``."""

    def time(self) -> float:
        raise NotImplementedError

    def monotonic(self) -> float:
        raise NotImplementedError

    def time_ns(self) -> int:
        """Epoch nanoseconds (default: from :meth:`time`)."""
        return int(self.time() * 1e9)

    def wait(self, stop: threading.Event, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds or until ``stop`` is set; return whether it is set."""
        raise NotImplementedError


class SystemClock(Clock):
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def time_ns(self) -> int:
        return time.time_ns()

    def wait(self, stop: threading.Event, timeout: float) -> bool:
        return stop.wait(max(0.0, timeout))


class ManualClock(Clock):
    """A clock that only moves when told to: ``wait`` advances it by ``timeout`` at once."""

    def __init__(self, start: float = 1_700_000_000.0):
        self._t = float(start)
        self._m = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._t

    def monotonic(self) -> float:
        with self._lock:
            return self._m

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += seconds
            self._m += seconds

    def wait(self, stop: threading.Event, timeout: float) -> bool:
        if stop.is_set():
            return True
        self.advance(max(0.0, timeout))
        return stop.is_set()
