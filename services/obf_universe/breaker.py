"""Circuit breaker for bus writes (bible §20.1, §15.6): CLOSED → OPEN → HALF_OPEN → CLOSED.

``failure_threshold`` consecutive failures open the breaker; while OPEN callers write files only.
After the current backoff (``base_backoff_s``, doubling on every failed probe up to
``max_backoff_s``) it goes HALF_OPEN and lets exactly one probe through; a successful probe closes
it and resets the backoff, a failed probe re-opens it with the doubled backoff. Time comes in as an
argument (``now``), so the state machine is tested without a clock.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "CLOSED", "OPEN", "HALF_OPEN"


@dataclass
class BreakerStats:
    opened: int = 0
    closed: int = 0
    probes: int = 0
    failures: int = 0
    successes: int = 0


class CircuitBreaker:
    """Thread-safe breaker; ``allow(now)`` before a write, then ``success()`` or ``failure(now)``."""

    def __init__(self, failure_threshold: int = 5, base_backoff_s: float = 1.0, max_backoff_s: float = 60.0):
        if failure_threshold < 1 or base_backoff_s <= 0 or max_backoff_s < base_backoff_s:
            raise ValueError("breaker: threshold >= 1 and 0 < base_backoff_s <= max_backoff_s required")
        self.threshold = failure_threshold
        self.base = base_backoff_s
        self.max = max_backoff_s
        self.state = CLOSED
        self.consecutive = 0
        self.backoff = base_backoff_s
        self.open_until = 0.0
        self._probe_out = False
        self.stats = BreakerStats()
        self._lock = threading.Lock()

    def ready(self, now: float) -> bool:
        """Return True if :meth:`allow` could let a write through now (does not take the probe)."""
        return self.state == CLOSED or (self.state == OPEN and now >= self.open_until) or (
            self.state == HALF_OPEN and not self._probe_out)

    def allow(self, now: float) -> bool:
        """Return True if a bus write may be attempted now (one probe at a time when HALF_OPEN)."""
        with self._lock:
            if self.state == CLOSED:
                return True
            if self.state == OPEN and now >= self.open_until:
                self.state = HALF_OPEN
                self._probe_out = False
            if self.state == HALF_OPEN and not self._probe_out:
                self._probe_out = True
                self.stats.probes += 1
                return True
            return False

    def success(self) -> str | None:
        """Record a successful write; return the transition made (``"closed"``) or None."""
        with self._lock:
            self.stats.successes += 1
            self.consecutive = 0
            if self.state != CLOSED:
                self.state = CLOSED
                self.backoff = self.base
                self._probe_out = False
                self.stats.closed += 1
                return "closed"
            return None

    def failure(self, now: float) -> str | None:
        """Record a failed write; return ``"opened"``/``"reopened"`` on a transition, else None."""
        with self._lock:
            self.stats.failures += 1
            self.consecutive += 1
            if self.state == HALF_OPEN:
                self.backoff = min(self.max, self.backoff * 2.0)
                self.state = OPEN
                self.open_until = now + self.backoff
                self._probe_out = False
                return "reopened"
            if self.state == CLOSED and self.consecutive >= self.threshold:
                self.state = OPEN
                self.backoff = self.base
                self.open_until = now + self.backoff
                self.stats.opened += 1
                return "opened"
            return None

    def snapshot(self) -> dict:
        with self._lock:
            return {"state": self.state, "consecutive_failures": self.consecutive, "backoff_s": self.backoff,
                    "opened": self.stats.opened, "closed": self.stats.closed, "probes": self.stats.probes}
