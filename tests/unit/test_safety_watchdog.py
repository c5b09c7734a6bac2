"""Safety watchdog: sensor extraction (pure) and publishing to the real embedded member."""
from __future__ import annotations

import json
import time

import pytest

from prod.bus import maps
from prod.bus.client import make_client, write_heartbeat
from prod.settings import PRIORITY_SYMBOLS
from services.safety_watchdog import main as sw

NOW = 1_800_000_000.0


class TestSensorExtraction:
    def test_mc_absent_is_orange_fallback(self):
        assert sw.mc_reading(None, NOW) == ("ORANGE", 0.0, "FALLBACK_NO_DATA")

    def test_mc_green_maps_to_ok_with_staleness(self):
        st, h, src = sw.mc_reading({"status": "GREEN", "ts": NOW - 7200, "source": "REAL_MODEL"}, NOW)
        assert (st, src) == ("OK", "REAL_MODEL") and h == pytest.approx(2.0)

    def test_mc_iso_timestamp_and_unknown_status(self):
        st, h, _ = sw.mc_reading({"status": "PURPLE", "timestamp": "2027-01-15T08:00:00+00:00"}, NOW)
        assert st == "ORANGE" and h >= 0

    def test_ob_snapshot(self):
        obf = {"_snapshot_utc": NOW - 10, "_n_assets": 2,
               "assets": {"BTCUSDT": {"depth_quality": 0.8, "fill_probability": 0.6},
                          "ETHUSDT": {"depth_quality": 0.6, "fill_probability": float("nan")}}}
        stale, dq, fp = sw.ob_reading(obf, NOW, 180)
        assert not stale and dq == pytest.approx(0.8) and fp == pytest.approx(0.6)

    def test_ob_stale_or_absent(self):
        assert sw.ob_reading(None, NOW, 180)[0]
        old = {"_snapshot_utc": NOW - 1000, "assets": {"BTCUSDT": {"depth_quality": 1, "fill_probability": 1}}}
        assert sw.ob_reading(old, NOW, 180)[0]

    def test_drawdown(self):
        assert sw.drawdown_from_state({"capital": 90.0, "peak_capital": 100.0}) == pytest.approx(0.1)
        assert sw.drawdown_from_state(None) == 0.0
        assert sw.drawdown_from_state({"capital": "x"}) == 0.0
        assert sw.drawdown_from_state({"capital": 120.0, "peak_capital": 100.0}) == 0.0

    def test_dvol_spike_tracker(self):
        t = sw.DvolSpikeTracker(80, 15)
        assert t.update(50, NOW) is None
        assert t.update("garbage", NOW + 60) is None
        assert t.update(62, NOW + 100) is None          # +12 points: not a spike
        assert t.update(78, NOW + 120) == 0.0           # +16 points → spike
        assert t.update(63, NOW + 420) == pytest.approx(5.0)
        assert t.update(85, NOW + 480) == 0.0          # level rule


@pytest.fixture
def client(hz_member, settings_for):
    _, port = hz_member
    settings = settings_for(hz_port=port)
    c = make_client(settings, name="test-safety")
    yield c, settings
    c.shutdown()


def _good_obf(now):
    return {"_snapshot_utc": now, "_n_assets": len(PRIORITY_SYMBOLS),
            "assets": {s: {"depth_quality": 0.95, "fill_probability": 0.95} for s in PRIORITY_SYMBOLS}}


class TestWatchdogOnTheBus:
    def test_absent_mc_gives_orange_fallback_and_publishes_both_views(self, client):
        c, settings = client
        now = time.time()
        write_heartbeat(c, "scanner", now=now).result()
        c.get_map(maps.FEATURES).blocking().set(maps.KEY_OBF_UNIVERSE, json.dumps(_good_obf(now)))
        wd = sw.SafetyWatchdog(sw.WatchdogConfig(settings=settings, interval_s=1), c)
        p = wd.tick()
        assert p["sensors"]["mc_status"] == "ORANGE" and p["sensors"]["mc_source"] == "FALLBACK_NO_DATA"
        assert p["categories"]["cat2"] == pytest.approx(0.5)
        assert p["Rm"] <= 0.5 and p["posture"] in ("TURTLE", "HIBERNATE")   # no new entries without MC
        ref = c.cp_subsystem.get_atomic_reference(maps.SAFETY_ATOMIC_REF).blocking().get()
        via_map = maps.decode(maps.SAFETY, maps.KEY_LATEST, c.get_map(maps.SAFETY).blocking().get(maps.KEY_LATEST))
        assert json.loads(ref)["posture"] == via_map["posture"] == p["posture"]
        assert maps.decode(maps.HEARTBEAT, "safety_watchdog",
                           c.get_map(maps.HEARTBEAT).blocking().get("safety_watchdog"))["service"] == "safety_watchdog"

    def test_dvol_from_the_exf_payload_shape(self, client):
        c, settings = client
        now = time.time()
        write_heartbeat(c, "scanner", now=now).result()
        fm = c.get_map(maps.FEATURES).blocking()
        fm.set(maps.KEY_OBF_UNIVERSE, json.dumps(_good_obf(now)))
        fm.set(maps.KEY_MC_FOREWARNER, json.dumps({"status": "GREEN", "ts": now}))
        fm.set(maps.KEY_EXF, json.dumps({"_pushed_at": now, "dvol_btc": 95.0,
                                         "indicators": {"dvol_btc": {"value": 95.0, "status": "ok"}}}))
        p = sw.SafetyWatchdog(sw.WatchdogConfig(settings=settings, interval_s=1, warmup_max_s=0), c).tick()
        assert p["sensors"]["dvol_btc"] == 95.0 and p["categories"]["cat4"] == pytest.approx(0.3)
        assert p["posture"] == "HIBERNATE"
        fm.set(maps.KEY_EXF, json.dumps({"_pushed_at": now, "indicators": {"dvol_btc": {"value": 40.0}}}))
        p2 = sw.SafetyWatchdog(sw.WatchdogConfig(settings=settings, interval_s=1, warmup_max_s=0), c).tick()
        assert p2["sensors"]["dvol_btc"] == 40.0

    def test_healthy_sensors_give_apex_and_garbage_mc_is_ignored(self, client):
        c, settings = client
        now = time.time()
        write_heartbeat(c, "scanner", now=now).result()
        fm = c.get_map(maps.FEATURES).blocking()
        fm.set(maps.KEY_OBF_UNIVERSE, json.dumps(_good_obf(now)))
        fm.set(maps.KEY_MC_FOREWARNER, json.dumps({"status": "GREEN", "ts": now, "source": "REAL_MODEL"}))
        wd = sw.SafetyWatchdog(sw.WatchdogConfig(settings=settings, interval_s=1), c)
        p = wd.tick()
        assert p["posture"] == "APEX" and p["Rm"] >= 0.9
        fm.set(maps.KEY_MC_FOREWARNER, "{not json")
        p2 = wd.tick()
        assert p2["sensors"]["mc_status"] == "ORANGE"     # garbage → fallback, no crash
        assert p2["Rm"] < p["Rm"]                          # lower target applies at once (fast attack)

    def test_warm_up_publishes_hibernate_without_touching_the_stack(self, client):
        c, settings = client
        wd = sw.SafetyWatchdog(sw.WatchdogConfig(settings=settings, interval_s=1, warmup_max_s=600), c)
        p = wd.tick()     # no obf snapshot yet → warming up
        assert p["warming_up"] and p["posture"] == "HIBERNATE" and wd.stack.rm is None
        now = time.time()
        write_heartbeat(c, "scanner", now=now).result()
        c.get_map(maps.FEATURES).blocking().set(maps.KEY_OBF_UNIVERSE, json.dumps(_good_obf(now)))
        c.get_map(maps.FEATURES).blocking().set(maps.KEY_MC_FOREWARNER, json.dumps({"status": "GREEN", "ts": now}))
        p = wd.tick()     # ready: the fresh stack takes the first real reading directly
        assert "warming_up" not in p and p["posture"] == "APEX"

    def test_no_other_heartbeat_is_cat1_kill(self, client):
        c, settings = client
        wd = sw.SafetyWatchdog(sw.WatchdogConfig(settings=settings, interval_s=1, warmup_max_s=0), c)
        p = wd.tick()
        # only the member's own heartbeat (if it writes one) counts; with none fresh → HIBERNATE
        hb = c.get_map(maps.HEARTBEAT).blocking().entry_set()
        others = [k for k, _ in hb if k != "safety_watchdog"]
        if not others:
            assert p["posture"] == "HIBERNATE" and p["categories"]["cat1"] == 0.0
        else:
            assert p["categories"]["cat1"] == 1.0

    def test_restart_resumes_stack_state(self, client):
        c, settings = client
        now = time.time()
        write_heartbeat(c, "scanner", now=now).result()
        cfg = sw.WatchdogConfig(settings=settings, interval_s=1, warmup_max_s=0)
        wd = sw.SafetyWatchdog(cfg, c)
        wd.tick()
        state = wd.stack.state()
        assert state["rm"] is not None
        wd2 = sw.SafetyWatchdog(cfg, c)
        assert wd2.stack.state() == state and wd2.warm
