"""MHS against the real embedded member: typed reads aged from each topic's timestamp, the report on the
bus and on disk, and the service shape (config errors, SIGTERM while no member answers, old flags)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from prod.bus import maps
from prod.runtime import Bus, build_config
from services.meta_health import main as mh
from tests.helpers import REPO_ROOT, free_port, wait_until


def _scan(bridge_ts: float, scan_ts: float) -> dict:
    return dict(scan_number=3, timestamp_ns=int(scan_ts * 1e9), timestamp="2020-01-01T00:00:00+00:00",
                bridge_ts=bridge_ts, vel_div=None, w50_velocity=None, w150_velocity=None, w300_velocity=None,
                w750_velocity=None, instability_50=None, instability_150=None, assets=[], asset_prices=[])


def test_a_cycle_reads_topics_and_publishes_the_report(hz_member, settings_for, tmp_path):
    _, port = hz_member
    s = settings_for(hz_port=port)
    bus, w = Bus(s, "meta_health").start(), Bus(s, "test_writer").start()
    try:
        assert bus.wait_connected(20) and w.wait_connected(20)
        now = time.time()
        w.publish(maps.EIGEN_SCAN, _scan(now - 2, now - 3600))          # scan computed long ago, published now
        w.publish(maps.ACB_BOOST, {"boost": 1.3, "beta": 0.5, "computed_at": now - 9999})
        w.publish(maps.OBF_UNIVERSE, {"_snapshot_utc": now - 60, "_n_assets": 300, "assets": {}})
        w.map(maps.FEATURES).blocking().set(maps.KEY_EXF, '{"_pushed_at": "soon"}')   # malformed
        w.publish(maps.HEARTBEATS, {"service": "scanner", "ts": now}, "scanner")
        cfg = mh.MHSConfig(settings=s, supervisor_conf=str(tmp_path / "missing.conf"), prefect_port=free_port())
        rep = mh.MetaHealthService(cfg, bus).check()
        ds = rep["data_sources"]
        assert ds[maps.KEY_EIGEN_SCAN]["score"] == 1.0 and ds[maps.KEY_EIGEN_SCAN]["age_s"] < 30   # bridge_ts
        assert ds[maps.KEY_ACB_BOOST] == {"score": 1.0, "age_s": None, "present": True}           # presence only
        assert ds[maps.KEY_OBF_UNIVERSE]["score"] == 0.5
        assert ds[maps.KEY_EXF] == {"score": 0.0, "age_s": None, "present": True, "valid": False}
        assert rep["sensors"]["m5_coherence"] == 1.0 and rep["heartbeat_ages_s"]["scanner"] < 30
        on_bus = w.get(maps.META_HEALTH_LATEST)
        assert on_bus.status == rep["status"] and on_bus.timestamp == rep["timestamp"]
        assert maps.META_HEALTH_LATEST.written_at(on_bus) == rep["timestamp"]
        assert json.loads((tmp_path / "run_logs" / "meta_health.json").read_text())["cycle"] == 0
        wait_until(lambda: w.get(maps.HEARTBEATS, "meta_health") is not None, 10, what="MHS heartbeat")
    finally:
        bus.close()
        w.close()


def test_sigterm_before_any_member_answers_is_a_clean_exit(tmp_path):
    log = tmp_path / "mhs.log"
    with open(log, "wb") as fh:
        p = subprocess.Popen([sys.executable, "-m", "services.meta_health", "--hz-members", f"127.0.0.1:{free_port()}",
                              "--run-logs", str(tmp_path / "rl"), "--supervisor-conf", str(tmp_path / "none.conf"),
                              "--check-interval", "0.5", "--prefect-port", "0"], cwd=REPO_ROOT, stdout=fh,
                             stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: (tmp_path / "rl" / "meta_health.json").exists(), 60, what="a report with no member")
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0
    finally:
        if p.poll() is None:
            p.kill()
    text = log.read_text()
    assert "meta_health starting" in text and "SIGTERM received" in text and "Traceback" not in text
    assert json.loads((tmp_path / "rl" / "meta_health.json").read_text())["control_plane"]["hz_up"] is False


def test_a_bad_environment_value_is_one_config_error_line():
    r = subprocess.run([sys.executable, "-m", "services.meta_health"], cwd=REPO_ROOT, capture_output=True, text=True,
                       timeout=60, env={"PATH": "/usr/bin:/bin", "DOLPHIN_META_HEALTH_CHECK_INTERVAL_S": "60"})
    assert r.returncode == 2
    assert r.stderr.strip() == ("meta_health: configuration error: meta_health: --check-interval 60.0: "
                                "must be in [0.05, 15] s (§26.3.4)")


def test_the_supervisor_flags_still_parse(tmp_path):
    cfg, _ = build_config(mh.MHSConfig, "meta_health", [
        "--supervisor-conf", "supervisor/dolphin-supervisord.conf", "--check-interval", "10",
        "--prefect-port", "4200", "--min-obf-assets", "100", "--run-logs", str(tmp_path), "--once"], env={})
    assert cfg.supervisor_conf.startswith("/") and cfg.supervisor_conf.endswith("supervisor/dolphin-supervisord.conf")
    assert (cfg.check_interval_s, cfg.prefect_port, cfg.min_obf_assets, cfg.once) == (10.0, 4200, 100, True)
    assert cfg.report_path == tmp_path / "meta_health.json"
