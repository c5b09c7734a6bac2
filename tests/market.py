"""Synthetic scans for trader tests: random-walk prices of the priority symbols, one scan every 5 s."""
from __future__ import annotations

import math
import random
import time

from prod.settings import PRIORITY_SYMBOLS


def walk(prices: dict[str, float], rng: random.Random, drift: float, noise: float) -> None:
    """Move every price in ``prices`` (in place) one log-normal step: ``exp(drift + N(0, noise))``."""
    for a in prices:
        prices[a] *= math.exp(drift + rng.gauss(0, noise))


def scan_payload(n: int, prices: dict[str, float], vd: float, t: float, timestamp_ns: int | None = None) -> dict:
    """The eigen-scan payload for scan ``n`` at ``t`` (epoch s) with ``vel_div`` = ``vd`` over ``prices``."""
    return {"scan_number": n, "timestamp_ns": int(t * 1e9) if timestamp_ns is None else timestamp_ns,
            "timestamp": "", "bridge_ts": t, "vel_div": vd, "w50_velocity": vd, "w150_velocity": 0.0,
            "w300_velocity": 0.0, "w750_velocity": 0.0, "instability_50": 0.0, "instability_150": 0.0,
            "assets": list(prices), "asset_prices": list(prices.values())}


def morning(now: float | None = None) -> float:
    """The latest 01:00 UTC at or before ``now`` (default: the wall clock), in epoch seconds.

    A market that starts there has 23 hours before its UTC day rolls, so a test's run of a few thousand
    scan-seconds stays inside one day whenever the suite runs (a start at the wall clock rolled the day in
    mid-test for runs near midnight), and its clock is never ahead of the wall clock."""
    now = time.time() if now is None else now
    t = now // 86400 * 86400 + 3600.0
    return t if t <= now else t - 86400.0


class Market:
    """``scan(n, vel_div, drift, noise)`` moves every price one log-normal step and returns the scan payload."""

    def __init__(self, t0: float, seed: int = 1):
        self.rng = random.Random(seed)
        self.prices = {a: 100.0 + i for i, a in enumerate(PRIORITY_SYMBOLS)}
        self.t = t0

    def scan(self, n, vd, drift=0.0, noise=0.001):
        walk(self.prices, self.rng, drift, noise)
        self.t += 5
        return scan_payload(n, self.prices, vd, self.t)
