"""Rate-limited logging: a message at most once per interval per key, with a count of the rest."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable


class RateLog:
    """Log at most once per ``interval_s`` per key; the next line says how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.log = logger
        self.interval = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def _emit(self, level: int, key: str, msg: str, args: tuple) -> bool:
        now = self._clock()
        with self._lock:
            if now - self._last.get(key, -1e18) < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            n = self._suppressed.pop(key, 0)
            self._last[key] = now
        self.log.log(level, msg + (f" (+{n} similar suppressed)" if n else ""), *args)
        return True

    def warning(self, key: str, msg: str, *args: Any) -> bool:
        """Log ``msg % args`` at WARNING unless ``key`` was logged within the interval."""
        return self._emit(logging.WARNING, key, msg, args)

    def error(self, key: str, msg: str, *args: Any) -> bool:
        """Log ``msg % args`` at ERROR unless ``key`` was logged within the interval."""
        return self._emit(logging.ERROR, key, msg, args)

    def info(self, key: str, msg: str, *args: Any) -> bool:
        """Log ``msg % args`` at INFO unless ``key`` was logged within the interval."""
        return self._emit(logging.INFO, key, msg, args)

    def suppressed(self, key: str) -> int:
        """Return how many messages of ``key`` are waiting to be reported as suppressed."""
        with self._lock:
            return self._suppressed.get(key, 0)
