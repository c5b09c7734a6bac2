"""Episodes the e2e tests drive through a running mesh: MC GREEN as the forewarner flow would publish it,
scans published the way scan_bridge does (a deterministic stress episode), and read-only journal queries."""
from __future__ import annotations

import json
import math
import random
import sqlite3
import time
from pathlib import Path

from prod.bus import maps
from prod.bus.client import make_client
from prod.settings import load_settings
from tests.helpers import wait_until


def publish_mc_green(port: int) -> None:
    """Stand in for the MC-forewarner flow (not part of the mesh): a GREEN assessment (§28.6)."""
    c = make_client(load_settings(env={}, hz_members=(f"127.0.0.1:{port}",)), name="e2e-mc")
    try:
        c.get_map(maps.FEATURES).blocking().set(maps.KEY_MC_FOREWARNER, json.dumps(
            {"status": "GREEN", "catastrophic_prob": 0.05, "envelope_score": 0.95, "source": "E2E_FIXTURE",
             "ts": time.time()}))
    finally:
        c.shutdown()


TRADING = ("APEX", "STALKER")


def trading_posture(bus) -> bool:
    """True when the watchdog has computed a trading posture (not its warm-up placeholder) and the trader holds it.

    A trader that has read no posture yet reports APEX, and the warming watchdog publishes HIBERNATE marked
    ``warming_up``: the trader's heartbeat alone can say APEX for a moment and then halt on the placeholder.
    """
    raw = bus.get_map(maps.SAFETY).blocking().get(maps.KEY_LATEST)
    hb = bus.get_map(maps.HEARTBEAT).blocking().get("event_trader")
    if raw is None or hb is None:
        return False
    safety = json.loads(raw)
    return (not safety.get("warming_up") and safety.get("posture") in TRADING
            and json.loads(hb).get("posture") in TRADING)


def push_until_entry(bus, src: "BridgeScans", journal: Path, n0: int, vel_div: float = -0.06,
                     timeout: float = 240.0, noise: float = 0.006) -> None:
    """Push entry-signal scans in legs of ten, each once the posture trades, until the journal has an entry.

    The legs' noise (0.006) is above every leg the module pushed before (calm legs ramp to 0.0042, stress legs
    0.003): the trader's vol gate opens when BTC's 50-bar return std is above the 60th percentile of what it has
    seen, and it keeps that history across restarts, so at 0.003 a long-lived trader's gate stayed shut (ci12:
    every signal "not taken: vol_regime" for 240 s)."""
    deadline = time.monotonic() + timeout
    while entries(journal) <= n0:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no entry within {timeout:.0f}s of entry-signal scans")
        wait_until(lambda: trading_posture(bus), max(left, 1.0), interval=0.5, what="a trading posture")
        for _ in range(10):
            src.push(vel_div, -0.002, noise)
        src.wait_consumed()


def journal_rows(journal: Path, sql: str, *args) -> list:
    con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def entries(journal: Path, kind: str = "ENTRY") -> int:
    con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COUNT(*) FROM events WHERE kind=?", (kind,)).fetchone()[0]
    finally:
        con.close()


class BridgeScans:
    """Scans published into latest_eigen_scan the way scan_bridge does (numbers above the live scanner's).

    The live path has its own test above; the kill -9 test needs a position open at a moment it chooses,
    which the simulator's stress regime gives only at random times, so its episode is published here:
    prices start at the venue's current books and then walk (calm with rising vol, then a falling,
    volatile stress leg with vel_div −0.06).
    """

    def __init__(self, bus, offset: int = 100_000):
        self.fm = bus.get_map(maps.FEATURES)
        self.hb = bus.get_map(maps.HEARTBEAT).blocking()
        try:   # the key may still hold another test's garbage
            live = int(json.loads(self.fm.blocking().get(maps.KEY_EIGEN_SCAN))["scan_number"])
        except (TypeError, ValueError, KeyError):
            live = 0
        try:
            live = max(live, int(json.loads(bus.get_map(maps.HEARTBEAT).blocking().get("event_trader"))["last_scan"]))
        except (TypeError, ValueError, KeyError):
            pass
        self.n = live + offset
        self.prices = {}
        for sym in load_settings(env={}).symbols:
            raw = bus.get_map(maps.shard_map(sym)).blocking().get(sym)
            try:
                b = json.loads(raw)
                self.prices[sym] = (float(b["best_bid"]) + float(b["best_ask"])) / 2
            except (TypeError, ValueError, KeyError):
                self.prices[sym] = 100.0
        self.rng = random.Random(5)

    def wait_consumed(self, n: int | None = None, timeout: float = 60.0) -> None:
        """Wait until the trader's heartbeat shows scan ``n`` (default: the last pushed) consumed.

        The trader skips scans older than its ``max_scan_age_s`` (10 s): an episode pushed faster than a
        loaded box's trader reads it goes stale unread (a cluster run once never entered), so episodes
        push in short legs and wait here between them.
        """
        n = self.n if n is None else n
        hb = self.hb

        def seen() -> int:
            raw = hb.get("event_trader")
            return int(json.loads(raw).get("last_scan") or 0) if raw else 0
        wait_until(lambda: seen() >= n, timeout, interval=0.05, what=f"the trader consumed scan {n}")

    def push(self, vd: float, drift: float = 0.0, noise: float = 0.001) -> int:
        for a in self.prices:
            self.prices[a] *= math.exp(drift + self.rng.gauss(0, noise))
        self.n += 1
        scan = {"scan_number": self.n, "timestamp_ns": time.time_ns(), "timestamp": "", "bridge_ts": time.time(),
                "vel_div": vd, "w50_velocity": vd, "w150_velocity": 0.0, "w300_velocity": 0.0, "w750_velocity": 0.0,
                "instability_50": 0.0, "instability_150": 0.0, "assets": list(self.prices),
                "asset_prices": list(self.prices.values())}
        self.fm.set(maps.KEY_EIGEN_SCAN, json.dumps(scan)).result()
        return self.n
