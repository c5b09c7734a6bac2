"""The trader as a real process against the real embedded member: trades, garbage, lock, kill -9 restart."""
from __future__ import annotations

import json
import math
import random
import sqlite3
import time


from prod.bus import maps
from prod.bus.client import make_client
from prod.settings import PRIORITY_SYMBOLS
from tests.helpers import Proc, wait_until


class LiveMarket:
    """Scans written into latest_eigen_scan the way the scanner does (real-time timestamps)."""

    def __init__(self, fmap, seed=1):
        self.fmap = fmap
        self.rng = random.Random(seed)
        self.prices = {a: 100.0 + i for i, a in enumerate(PRIORITY_SYMBOLS)}
        self.n = 0

    def push(self, vd, drift=0.0, noise=0.001):
        for a in self.prices:
            self.prices[a] *= math.exp(drift + self.rng.gauss(0, noise))
        self.n += 1
        now = time.time()
        scan = {"scan_number": self.n, "timestamp_ns": time.time_ns(), "timestamp": "", "bridge_ts": now,
                "vel_div": vd, "w50_velocity": vd, "w150_velocity": 0.0, "w300_velocity": 0.0, "w750_velocity": 0.0,
                "instability_50": 0.0, "instability_150": 0.0, "assets": list(self.prices),
                "asset_prices": list(self.prices.values())}
        self.fmap.set(maps.KEY_EIGEN_SCAN, json.dumps(scan))


def _state(client):
    raw = client.get_map(maps.STATE_BLUE).blocking().get(maps.KEY_LATEST)
    return None if raw is None else json.loads(raw)


def _entries(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COUNT(*) FROM events WHERE kind='ENTRY'").fetchone()[0]
    finally:
        con.close()


def _start_trader(tmp_path, port, name="trader"):
    return Proc("services.event_trader", ["--hz-members", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "data")],
                tmp_path / f"{name}.log").start()


def test_trader_lifecycle_garbage_lock_kill9_restart(hz_member, settings_for, tmp_path):
    _, port = hz_member
    client = make_client(settings_for(hz_port=port), name="test-trader-proc")
    tr = _start_trader(tmp_path, port)
    try:
        hb = client.get_map(maps.HEARTBEAT).blocking()
        wait_until(lambda: hb.get("event_trader") is not None or tr.p.poll() is not None, 60, what="trader heartbeat")
        assert tr.p.poll() is None, tr.log_text()

        # a second trader on the same data dir exits at once with a clear message
        second = _start_trader(tmp_path, port, "trader2")
        assert second.p.wait(60) == 3
        assert "another trader" in second.log_text()

        # garbage on every input: logged and dropped, no crash, no trade
        fm = client.get_map(maps.FEATURES).blocking()
        fm.set(maps.KEY_EIGEN_SCAN, "{garbage")
        fm.set(maps.KEY_ACB_BOOST, '{"boost": NaN, "beta": 0.2}')
        client.get_map(maps.shard_map("BTCUSDT")).blocking().set("BTCUSDT", "not json at all")
        wait_until(lambda: tr.log_text().count("dropped bad payload") >= 3, 20, what="three drop log lines")
        assert tr.p.poll() is None

        market = LiveMarket(client.get_map(maps.FEATURES))
        for i in range(159):
            market.push(0.0, 0.0, 0.001 + i * 0.00002)
        db = tmp_path / "data" / "trader" / "journal.sqlite"
        for _ in range(60):
            market.push(-0.06, -0.002, 0.003)
            try:   # scans are processed in order; an entry shows in the journal within a moment
                wait_until(lambda: _entries(db) > 0, 1.0, what="entry")
                break
            except AssertionError:
                continue
        wait_until(lambda: ((_state(client) or {}).get("paper") or {}).get("position") is not None, 10,
                   what="position published")
        st = _state(client)
        assert st["paper"]["position"] is not None, tr.log_text()[-3000:]
        pnl = json.loads(client.get_map(maps.PNL_BLUE).blocking().get(st["paper"]["day"]))
        assert pnl["open_position"]["trade_id"] == st["paper"]["position"]["trade_id"]
        assert _entries(db) == 1
        cap, pos = st["capital"], st["paper"]["position"]

        tr.kill()   # kill -9 mid-position
        tr = _start_trader(tmp_path, port, "trader_restart")
        wait_until(lambda: "RESTORED from journal" in tr.log_text() or tr.p.poll() is not None, 60, what="restore")
        assert tr.p.poll() is None, tr.log_text()
        wait_until(lambda: (_state(client) or {}).get("updated_at", 0) > 0 and
                   _state(client)["paper"]["position"] == pos and _state(client)["capital"] == cap, 30,
                   what="restored state published")
        # the last scan again (dedup) and more signal bars while in position: never a second entry
        market.n -= 1
        market.push(-0.06, 0.0, 0.0005)
        for _ in range(3):
            market.push(-0.06, 0.0, 0.0005)
        wait_until(lambda: json.loads(hb.get("event_trader"))["last_scan"] == market.n, 30, what="post-restart scans")
        st2 = _state(client)
        assert _entries(db) == 1
        assert st2["paper"]["position"] is None or st2["paper"]["position"]["trade_id"] == pos["trade_id"]
    finally:
        tr.stop()
        client.shutdown()


def test_posture_reads_atomic_reference_then_map_then_defaults_to_apex(hz_member, settings_for, tmp_path):
    from services.event_trader.main import EventTrader, TraderConfig, load_engine_params
    from services.event_trader.journal import Journal
    _, port = hz_member
    settings = settings_for(hz_port=port)
    client = make_client(settings, name="test-posture")
    j = Journal.open(tmp_path / "j.sqlite", tmp_path / "a.log")
    try:
        tr = EventTrader(TraderConfig(settings=settings), j, load_engine_params(), client=client)
        tr.read_posture()
        assert (tr.posture, tr.posture_source) == ("APEX", "default")
        client.get_map(maps.SAFETY).blocking().set(maps.KEY_LATEST, json.dumps({"posture": "TURTLE", "Rm": 0.6}))
        tr.read_posture()
        assert (tr.posture, tr.posture_source) == ("TURTLE", "map-fallback")
        client.cp_subsystem.get_atomic_reference(maps.SAFETY_ATOMIC_REF).blocking().set(
            json.dumps({"posture": "STALKER", "Rm": 0.8}))
        tr.read_posture()
        assert (tr.posture, tr.posture_source) == ("STALKER", "cp-atomic-ref")
        client.cp_subsystem.get_atomic_reference(maps.SAFETY_ATOMIC_REF).blocking().set(json.dumps({"posture": "BOGUS", "Rm": 1}))
        tr.read_posture()
        assert tr.posture == "STALKER"   # an invalid posture is ignored, the last good one stays
    finally:
        j.close()
        client.shutdown()
