"""Safety watchdog: sensor extraction (pure), publishing to the real embedded member, the service shape."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from prod.bus import maps
from prod.bus.payloads import EngineState, ObfUniverse
from prod.runtime import Bus, ManualClock
from prod.settings import PRIORITY_SYMBOLS
from services.safety_watchdog import main as sw
from tests.helpers import REPO_ROOT, free_port, start_listening, wait_until

NOW = 1_800_000_000.0


def _state(capital: float, peak: float | None = None) -> EngineState:
    return maps.STATE_LATEST.build(strategy="blue", capital=capital, updated_at=NOW, peak_capital=peak)


class TestSensorExtraction:
    def test_mc_absent_is_orange_fallback(self):
        assert sw.mc_reading(None, NOW) == ("ORANGE", 0.0, "FALLBACK_NO_DATA")

    def test_mc_green_maps_to_ok_with_staleness(self):
        mc = maps.MC_FOREWARNER.build(status="GREEN", ts=NOW - 7200, source="REAL_MODEL")
        st, h, src = sw.mc_reading(mc, NOW)
        assert (st, src) == ("OK", "REAL_MODEL") and h == pytest.approx(2.0)

    def test_mc_ok_from_the_forewarner_and_a_future_ts(self):
        st, h, src = sw.mc_reading(maps.MC_FOREWARNER.build(status="OK", ts=NOW + 60), NOW)
        assert (st, h, src) == ("OK", 0.0, "HZ")

    def test_mc_unknown_status_never_reaches_the_reading(self):
        with pytest.raises(maps.PayloadError, match="status 'PURPLE'"):
            maps.MC_FOREWARNER.decode(json.dumps({"status": "PURPLE", "ts": NOW}))

    def test_ob_snapshot(self):
        # built in code (no validation), so a NaN inside an asset reaches the guard of ob_reading
        obf = ObfUniverse(_snapshot_utc=NOW - 10, _n_assets=2,
                          assets={"BTCUSDT": {"depth_quality": 0.8, "fill_probability": 0.6},
                                  "ETHUSDT": {"depth_quality": 0.6, "fill_probability": float("nan")}})
        stale, dq, fp = sw.ob_reading(obf, NOW, 180)
        assert not stale and dq == pytest.approx(0.8) and fp == pytest.approx(0.6)

    def test_ob_stale_or_absent(self):
        assert sw.ob_reading(None, NOW, 180)[0]
        old = maps.OBF_UNIVERSE.build(_snapshot_utc=NOW - 1000, _n_assets=1,
                                      assets={"BTCUSDT": {"depth_quality": 1, "fill_probability": 1}})
        assert sw.ob_reading(old, NOW, 180)[0]

    def test_drawdown(self):
        assert sw.drawdown_from_state(_state(90.0, 100.0)) == pytest.approx(0.1)
        assert sw.drawdown_from_state(None) == 0.0
        assert sw.drawdown_from_state(_state(90.0)) == 0.0                   # no peak: capital is the peak
        assert sw.drawdown_from_state(_state(120.0, 100.0)) == 0.0
        assert sw.drawdown_from_state(_state(50.0, 0.0)) == 0.0
        with pytest.raises(maps.PayloadError, match="capital must be a number"):
            maps.STATE_LATEST.decode(json.dumps({"strategy": "blue", "capital": "x", "updated_at": NOW}))

    def test_dvol_from_both_exf_shapes(self):
        flat = maps.EXF.build(_pushed_at=NOW, dvol_btc=95.0, indicators={"dvol_btc": {"value": 1.0}})
        nested = maps.EXF.build(_pushed_at=NOW, indicators={"dvol_btc": {"value": 40.0}})
        assert sw.dvol_from_exf(flat) == 95.0 and sw.dvol_from_exf(nested) == 40.0
        assert sw.dvol_from_exf(None) is None and sw.dvol_from_exf(maps.EXF.build(_pushed_at=NOW)) is None

    def test_dvol_spike_tracker(self):
        t = sw.DvolSpikeTracker(80, 15)
        assert t.update(50, NOW) is None
        assert t.update("garbage", NOW + 60) is None
        assert t.update(62, NOW + 100) is None          # +12 points: not a spike
        assert t.update(78, NOW + 120) == 0.0           # +16 points → spike
        assert t.update(63, NOW + 420) == pytest.approx(5.0)
        assert t.update(85, NOW + 480) == 0.0          # level rule


@pytest.fixture
def bus(hz_member, settings_for):
    """The watchdog's bus (heartbeat key ``safety_watchdog``) and a writer bus for the sensors."""
    _, port = hz_member
    settings = settings_for(hz_port=port)
    b = Bus(settings, "safety_watchdog").start()
    w = Bus(settings, "test_writer").start()
    assert b.wait_connected(20) and w.wait_connected(20)
    yield b, w, settings
    b.close()
    w.close()


def _good_obf(now):
    return {"_snapshot_utc": now, "_n_assets": len(PRIORITY_SYMBOLS),
            "assets": {s: {"depth_quality": 0.95, "fill_probability": 0.95} for s in PRIORITY_SYMBOLS}}


def _beat(w: Bus, name: str, now: float) -> None:
    w.publish(maps.HEARTBEATS, {"service": name, "ts": now}, name)


class TestWatchdogOnTheBus:
    def test_absent_mc_is_reported_orange_but_does_not_cut_rm_and_publishes_both_views(self, bus):
        b, w, settings = bus
        now = time.time()
        _beat(w, "scanner", now)
        w.publish(maps.OBF_UNIVERSE, _good_obf(now))
        wd = sw.SafetyWatchdog(sw.WatchdogConfig(settings=settings, interval_s=1), b)
        p = wd.tick()
        # §12 over §11.2: the status is reported, the trader applies it; Cat2 never sees it (no HIBERNATE)
        assert p["sensors"]["mc_reported"] == "ORANGE" and p["sensors"]["mc_source"] == "FALLBACK_NO_DATA"
        assert p["sensors"]["mc_status"] == "OK" and p["categories"]["cat2"] == pytest.approx(1.0)
        assert p["Rm"] > 0.5 and p["posture"] not in ("TURTLE", "HIBERNATE")   # no MC data never hibernates
        ref = b.cp.get_atomic_reference(maps.SAFETY_ATOMIC_REF).blocking().get()
        # the map write and the heartbeat are not awaited by the watchdog: the other client waits for them
        via_map = wait_until(lambda: w.get(maps.SAFETY_LATEST), 10, what="the payload in the map")
        assert maps.SAFETY_LATEST.decode(ref).posture == via_map.posture == p["posture"]
        assert ref == b.map(maps.SAFETY).blocking().get(maps.KEY_LATEST)       # encoded once, written twice
        assert json.loads(ref)["_v"] == maps.SAFETY_LATEST.version
        hb = wait_until(lambda: w.get(maps.HEARTBEATS, "safety_watchdog"), 10, what="the watchdog's heartbeat")
        assert hb.service == "safety_watchdog" and hb.extra["posture"] == p["posture"]

    def test_dvol_from_the_exf_payload_shape(self, bus):
        b, w, settings = bus
        now = time.time()
        _beat(w, "scanner", now)
        w.publish(maps.OBF_UNIVERSE, _good_obf(now))
        w.publish(maps.MC_FOREWARNER, {"status": "GREEN", "ts": now})
        w.publish(maps.EXF, {"_pushed_at": now, "dvol_btc": 95.0,
                             "indicators": {"dvol_btc": {"value": 95.0, "status": "ok"}}})
        p = sw.SafetyWatchdog(sw.WatchdogConfig(settings=settings, interval_s=1, warmup_max_s=0), b).tick()
        assert p["sensors"]["dvol_btc"] == 95.0 and p["categories"]["cat4"] == pytest.approx(0.3)
        assert p["posture"] == "HIBERNATE"
        w.publish(maps.EXF, {"_pushed_at": now, "indicators": {"dvol_btc": {"value": 40.0}}})
        p2 = sw.SafetyWatchdog(sw.WatchdogConfig(settings=settings, interval_s=1, warmup_max_s=0), b).tick()
        assert p2["sensors"]["dvol_btc"] == 40.0

    def test_healthy_sensors_give_apex_and_garbage_mc_is_ignored(self, bus):
        b, w, settings = bus
        now = time.time()
        _beat(w, "scanner", now)
        w.publish(maps.OBF_UNIVERSE, _good_obf(now))
        w.publish(maps.MC_FOREWARNER, {"status": "GREEN", "ts": now, "source": "REAL_MODEL"})
        wd = sw.SafetyWatchdog(sw.WatchdogConfig(settings=settings, interval_s=1), b)
        p = wd.tick()
        assert p["posture"] == "APEX" and p["Rm"] >= 0.9
        w.map(maps.FEATURES).blocking().set(maps.KEY_MC_FOREWARNER, "{not json")
        p2 = wd.tick()
        # garbage is dropped (counted), the last valid reading stays: no crash, no flip to the ORANGE fallback
        assert p2["sensors"]["mc_reported"] == "OK" and p2["sensors"]["mc_source"] == "REAL_MODEL"
        assert p2["sensors"]["kept_readings"] == {"mc": 1}
        assert p2["Rm"] == pytest.approx(p["Rm"])        # MC never moves Rm (§12 is the trader's, not Cat2's)
        assert b.bad_payloads.get(maps.MC_FOREWARNER.source()) == 1
        # a watchdog that never saw a valid reading has nothing to keep: the §28.6 fallback
        fresh = sw.SafetyWatchdog(sw.WatchdogConfig(settings=settings, interval_s=1), b).tick()
        assert fresh["sensors"]["mc_reported"] == "ORANGE" and fresh["sensors"]["mc_source"] == "FALLBACK_NO_DATA"

    def test_garbage_in_the_ob_snapshot_keeps_the_last_valid_one_until_it_is_stale(self, bus):
        """One bad write to obf_universe_latest must not read as a dead OB feed (Cat3 0.5 → HIBERNATE, then
        an hour of bounded recovery); the kept snapshot still ages out ob_stale_s after it was written."""
        b, w, settings = bus
        now = time.time()
        clock = ManualClock(now)
        _beat(w, "scanner", now)
        w.publish(maps.OBF_UNIVERSE, _good_obf(now))
        w.publish(maps.MC_FOREWARNER, {"status": "GREEN", "ts": now})
        wd = sw.SafetyWatchdog(sw.WatchdogConfig(settings=settings, interval_s=5, ob_stale_s=60), b, clock)
        p = wd.tick()
        assert p["posture"] == "APEX" and p["sensors"]["ob_stale"] is False
        for bad in ("{not json", json.dumps({"_snapshot_utc": float("nan"), "assets": 7}), json.dumps([1, 2])):
            w.map(maps.FEATURES).blocking().set(maps.KEY_OBF_UNIVERSE, bad)
            clock.advance(5)
            _beat(w, "scanner", clock.time())
            q = wd.tick()
            assert q["sensors"]["ob_stale"] is False and q["categories"]["cat3"] == p["categories"]["cat3"], q
            assert q["posture"] == "APEX"
        assert q["sensors"]["kept_readings"] == {"obf": 3}
        assert b.bad_payloads.get(maps.OBF_UNIVERSE.source()) == 3
        clock.advance(60)                      # the kept snapshot is now older than ob_stale_s: stale, as a dead feed
        _beat(w, "scanner", clock.time())
        r = wd.tick()
        assert r["sensors"]["ob_stale"] is True and r["categories"]["cat3"] == pytest.approx(0.5)

    def test_warm_up_publishes_hibernate_without_touching_the_stack(self, bus):
        b, w, settings = bus
        wd = sw.SafetyWatchdog(sw.WatchdogConfig(settings=settings, interval_s=1, warmup_max_s=600), b)
        p = wd.tick()     # no obf snapshot yet → warming up
        assert p["warming_up"] and p["posture"] == "HIBERNATE" and wd.stack.rm is None
        # the map write is not awaited by the watchdog (non-blocking proxy): the other client waits for it
        latest = wait_until(lambda: w.get(maps.SAFETY_LATEST), 10, what="the warm-up payload in the map")
        assert latest.warming_up is True
        now = time.time()
        _beat(w, "scanner", now)
        w.publish(maps.OBF_UNIVERSE, _good_obf(now))
        w.publish(maps.MC_FOREWARNER, {"status": "GREEN", "ts": now})
        p = wd.tick()     # ready: the fresh stack takes the first real reading directly
        assert "warming_up" not in p and p["posture"] == "APEX"

    def test_no_other_heartbeat_is_cat1_kill(self, settings_for, tmp_path):
        # a member that writes no heartbeat of its own: the watchdog's own beat is the only one, and it does not
        # count (a bus that does not answer in time is a Cat1 kill too, so no load can turn this into a pass)
        port = free_port()
        member = start_listening("standins.hz_member", ["--host", "127.0.0.1", "--port", str(port),
                                                        "--cluster-name", "dolphin", "--no-heartbeat"],
                                 tmp_path / "hz_member.log", port, 30)
        b = Bus(settings_for(hz_port=port), "safety_watchdog").start()
        try:
            assert b.wait_connected(20)
            wd = sw.SafetyWatchdog(sw.WatchdogConfig(settings=settings_for(hz_port=port), interval_s=1,
                                                     warmup_max_s=0), b)
            p = wd.tick()
            assert p["posture"] == "HIBERNATE" and p["categories"]["cat1"] == 0.0, p
            # its own beat is written without waiting: present or still in flight, and nothing else
            assert {k for k, _ in b.map(maps.HEARTBEAT).blocking().entry_set()} <= {"safety_watchdog"}
        finally:
            b.close()
            member.stop()

    def test_restart_resumes_stack_state(self, bus):
        b, w, settings = bus
        _beat(w, "scanner", time.time())
        cfg = sw.WatchdogConfig(settings=settings, interval_s=1, warmup_max_s=0)
        wd = sw.SafetyWatchdog(cfg, b)
        wd.tick()
        state = wd.stack.state()
        assert state["rm"] is not None
        wd2 = sw.SafetyWatchdog(cfg, b)
        assert wd2.stack.state() == state and wd2.warm

    def test_run_ticks_on_the_manual_clock_until_stopped(self, bus):
        b, w, settings = bus
        _beat(w, "scanner", time.time())
        clock, stop = ManualClock(time.time()), threading.Event()
        seen: list[float] = []
        w.listen(maps.SAFETY_LATEST, lambda k, p: (seen.append(p.ts), len(seen) >= 3 and stop.set()))
        t = threading.Thread(target=sw.run, args=(sw.WatchdogConfig(settings=settings, interval_s=5), b, clock, stop))
        t.start()
        t.join(30)
        assert not t.is_alive() and len(seen) >= 3
        assert seen[1] - seen[0] == pytest.approx(5.0, abs=0.01)        # one tick per interval of clock time


def test_a_disconnected_bus_is_a_cat1_kill_and_the_write_is_skipped(settings_for):
    b = Bus(settings_for(hz_port=free_port()), "safety_watchdog")       # never started: no member
    wd = sw.SafetyWatchdog(sw.WatchdogConfig(settings=b.settings, interval_s=1, warmup_max_s=0), b,
                           ManualClock(NOW))
    p = wd.tick()
    assert p["posture"] == "HIBERNATE" and p["sensors"]["hz_nodes"] == 0
    assert wd.publish_failures == 1


def test_a_bad_environment_value_is_one_config_error_line():
    r = subprocess.run([sys.executable, "-m", "services.safety_watchdog"], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=60, env={"PATH": "", "DOLPHIN_SAFETY_WATCHDOG_INTERVAL_S": "fast"})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "safety_watchdog: configuration error: safety_watchdog: DOLPHIN_SAFETY_WATCHDOG_INTERVAL_S='fast': "
        "could not convert string to float: 'fast'"]


def test_old_flags_still_parse():
    from prod.runtime import build_config
    cfg, _ = build_config(sw.WatchdogConfig, "safety_watchdog", ["--interval", "2", "--ob-stale-s", "60",
                                                                  "--hz-members", "10.0.0.1:5701"], env={})
    assert (cfg.interval_s, cfg.ob_stale_s, cfg.settings.hz_members) == (2.0, 60.0, ("10.0.0.1:5701",))
