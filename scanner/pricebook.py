"""The scanner's price book: latest accepted price per symbol, with the bad-tick and staleness rules."""
from __future__ import annotations

import logging
import math
from typing import Callable

log = logging.getLogger("scanner")

MAX_JUMP = 0.5


class PriceBook:
    """Latest accepted price per symbol with the bad-tick and staleness rules of this module."""

    def __init__(self, symbols: tuple[str, ...], stale_s: float, clock: Callable[[], float]):
        self.symbols = symbols
        self.index = {s: i for i, s in enumerate(symbols)}
        self.stale_s = stale_s
        self.clock = clock
        self.price: list[float | None] = [None] * len(symbols)
        self.at: list[float] = [-math.inf] * len(symbols)
        self.ref: list[float | None] = [None] * len(symbols)   # price at the previous scan
        self.rejected = 0
        self._last_log: dict[str, float] = {}

    def _reject(self, sym: str, why: str, source: str) -> None:
        self.rejected += 1
        now = self.clock()
        if now - self._last_log.get(sym, -1e18) >= 10.0:
            self._last_log[sym] = now
            log.warning("bad tick rejected: %s %s (source %s)", sym, why, source)

    def offer(self, sym: str, price: float, source: str) -> bool:
        """Accept or reject one price update; return True if accepted."""
        i = self.index.get(sym)
        if i is None:
            return False
        if not isinstance(price, (int, float)) or isinstance(price, bool) or not math.isfinite(price):
            self._reject(sym, f"non-finite price {price!r}", source)
            return False
        if price <= 0:
            self._reject(sym, f"non-positive price {price!r}", source)
            return False
        ref = self.ref[i]
        if ref is not None and abs(price / ref - 1.0) > MAX_JUMP:
            self._reject(sym, f"price {price!r} jumps {100 * (price / ref - 1):+.1f}% from {ref!r} "
                              f"within one scan", source)
            return False
        self.price[i] = float(price)
        self.at[i] = self.clock()
        return True

    def sample(self) -> list[float | None]:
        """Return this scan's prices (None = missing or stale) and move the jump references."""
        now = self.clock()
        out: list[float | None] = []
        for i in range(len(self.symbols)):
            p = self.price[i]
            if p is None or now - self.at[i] > self.stale_s:
                out.append(None)
                self.ref[i] = None
            else:
                out.append(p)
                self.ref[i] = p
        return out

    def seed_reference(self, prices: list[float | None]) -> None:
        for i, p in enumerate(prices):
            self.ref[i] = p
