"""Synthetic scans for trader tests: random-walk prices of the priority symbols, one scan every 5 s."""
from __future__ import annotations

import math
import random

from prod.settings import PRIORITY_SYMBOLS


class Market:
    """``scan(n, vel_div, drift, noise)`` moves every price one log-normal step and returns the scan payload."""

    def __init__(self, t0: float, seed: int = 1):
        self.rng = random.Random(seed)
        self.prices = {a: 100.0 + i for i, a in enumerate(PRIORITY_SYMBOLS)}
        self.t = t0

    def scan(self, n, vd, drift=0.0, noise=0.001):
        for a in self.prices:
            self.prices[a] *= math.exp(drift + self.rng.gauss(0, noise))
        self.t += 5
        return {"scan_number": n, "timestamp_ns": int(self.t * 1e9), "timestamp": "", "bridge_ts": self.t,
                "vel_div": vd, "w50_velocity": vd, "w150_velocity": 0.0, "w300_velocity": 0.0,
                "w750_velocity": 0.0, "instability_50": 0.0, "instability_150": 0.0,
                "assets": list(self.prices), "asset_prices": list(self.prices.values())}
