"""The trader as a real process against the real embedded member: trades, garbage, lock, kill -9 restart."""
from __future__ import annotations

import json
import math
import random
import re
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
        # the start-up heap is frozen before the listeners start (no full collection walks it mid-delivery)
        frozen = re.search(r"start-up heap frozen: (\d+) objects", tr.log_text())
        assert frozen is not None and int(frozen.group(1)) > 10_000, tr.log_text()[-3000:]

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
        wait_until(lambda: ((_state(client) or {}).get("account") or {}).get("position") is not None, 10,
                   what="position published")
        st = _state(client)
        assert st["account"]["position"] is not None, tr.log_text()[-3000:]
        pnl = json.loads(client.get_map(maps.PNL_BLUE).blocking().get(st["account"]["day"]))
        assert pnl["open_position"]["trade_id"] == st["account"]["position"]["trade_id"]
        assert _entries(db) == 1
        cap, pos = st["capital"], st["account"]["position"]

        tr.kill()   # kill -9 mid-position
        tr = _start_trader(tmp_path, port, "trader_restart")
        wait_until(lambda: "RESTORED from journal" in tr.log_text() or tr.p.poll() is not None, 60, what="restore")
        assert tr.p.poll() is None, tr.log_text()
        # the new process beats only once connected, i.e. after its listeners are registered
        wait_until(lambda: json.loads(hb.get("event_trader") or "{}").get("pid") == tr.p.pid, 30,
                   what="heartbeat of the restarted trader")
        wait_until(lambda: (_state(client) or {}).get("updated_at", 0) > 0 and
                   _state(client)["account"]["position"] == pos and _state(client)["capital"] == cap, 30,
                   what="restored state published")
        # the last scan again (dedup) and more signal bars while in position: never a second entry
        market.n -= 1
        market.push(-0.06, 0.0, 0.0005)
        for _ in range(3):
            market.push(-0.06, 0.0, 0.0005)
        wait_until(lambda: json.loads(hb.get("event_trader"))["last_scan"] == market.n, 30, what="post-restart scans")
        st2 = _state(client)
        assert _entries(db) == 1
        assert st2["account"]["position"] is None or st2["account"]["position"]["trade_id"] == pos["trade_id"]
    finally:
        tr.stop()
        client.shutdown()


def _safety(posture, rm):
    return maps.SAFETY_LATEST.encode({"posture": posture, "Rm": rm, "ts": time.time()})


def test_posture_reads_atomic_reference_then_map_then_defaults_to_apex(hz_member, settings_for, tmp_path):
    from prod.runtime import Bus, SystemClock
    from prod.trading.core import TraderCore
    from prod.trading.journal import Journal
    from services.event_trader.main import BusOutputs, TraderConfig, TraderService, load_engine_params
    _, port = hz_member
    settings = settings_for(hz_port=port)
    client = make_client(settings, name="test-posture")
    bus = Bus(settings, "test-posture-bus").start()
    j = Journal.open(tmp_path / "j.sqlite", tmp_path / "a.log")
    try:
        assert bus.wait_connected(30)
        cfg = TraderConfig(settings=settings)
        core = TraderCore(cfg.limits, j, load_engine_params(), tuple(settings.symbols), time.time)
        svc = TraderService(cfg, core, bus, SystemClock(), BusOutputs(bus, __import__("queue").Queue()))
        assert svc.read_posture() == ("APEX", "default")
        client.get_map(maps.SAFETY).blocking().set(maps.KEY_LATEST, _safety("TURTLE", 0.6))
        assert svc.read_posture() == ("TURTLE", "map-fallback")
        ref = client.cp_subsystem.get_atomic_reference(maps.SAFETY_ATOMIC_REF).blocking()
        ref.set(_safety("STALKER", 0.8))
        assert svc.read_posture() == ("STALKER", "cp-atomic-ref")
        ref.set(json.dumps({"posture": "BOGUS", "Rm": 1, "ts": time.time()}))
        assert svc.read_posture() == ("TURTLE", "map-fallback")   # invalid ref: the map answers
        client.get_map(maps.SAFETY).blocking().set(maps.KEY_LATEST, "{garbage")
        assert svc.read_posture() is None   # nothing valid answers: the last good posture stays, never APEX
    finally:
        j.close()
        bus.close()
        client.shutdown()


def test_sigterm_before_any_member_answers_stops_cleanly(tmp_path):
    """No member at the address: the trader starts, trades nothing, and SIGTERM ends it with exit 0."""
    from tests.helpers import free_port
    tr = Proc("services.event_trader", ["--hz-members", f"127.0.0.1:{free_port()}", "--data-dir",
                                        str(tmp_path / "data")], tmp_path / "t.log").start()
    try:
        wait_until(lambda: "trader listening" in tr.log_text() or tr.p.poll() is not None, 60, what="trader up")
        assert tr.p.poll() is None, tr.log_text()
        tr.p.terminate()
        assert tr.p.wait(20) == 0, tr.log_text()
    finally:
        tr.stop()
    text = tr.log_text()
    assert "SIGTERM received" in text and "Traceback" not in text
    db = tmp_path / "data" / "trader" / "journal.sqlite"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        kinds = [k for (k,) in con.execute("SELECT kind FROM events ORDER BY rowid")]
    finally:
        con.close()
    assert kinds[-2:] == ["TRADER_START", "TRADER_STOP"]


def test_a_bad_setting_is_one_config_error_line_and_exit_2(capsys):
    from prod.runtime import Service
    from services.event_trader.main import TraderConfig, run
    rc = Service.main("event_trader", TraderConfig, run, [], env={"DOLPHIN_EVENT_TRADER_MAX_SCAN_AGE_S": "abc"})
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("event_trader: configuration error:") and "DOLPHIN_EVENT_TRADER_MAX_SCAN_AGE_S" in err[0]
    rc = Service.main("event_trader", TraderConfig, run, ["--max-scan-age", "-1"], env={})
    assert rc == 2 and "max_scan_age_s" in capsys.readouterr().err
