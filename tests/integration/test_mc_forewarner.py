"""MC-forewarner service against the real embedded member: the fallbacks and the model published, heartbeat,
reassessment when the day boost changes, the watchdog reads it, SIGTERM clean."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from prod.bus import maps
from prod.configs import load_blue
from prod.runtime import Bus
from services.safety_watchdog import main as sw
from tests.helpers import REPO_ROOT, Proc, free_port, wait_until
from tests.mc_fixture import fit_model

pytestmark = pytest.mark.timeout(60)


def _env(tmp_path, port):
    return {"DOLPHIN_HZ_MEMBERS": f"127.0.0.1:{port}", "DOLPHIN_DATA_DIR": str(tmp_path / "data"),
            "DOLPHIN_RUN_LOGS": str(tmp_path / "run_logs"), "PYTHONUNBUFFERED": "1"}


def test_once_without_a_model_publishes_orange_fallback_no_data(hz_member, settings_for, tmp_path):
    _, port = hz_member
    c = Bus(settings_for(hz_port=port), "test-mcfw").start()
    try:
        assert c.wait_connected(20)
        c.publish(maps.ACB_BOOST, {"boost": 1.2, "beta": 0.5, "computed_at": time.time()})
        r = subprocess.run([sys.executable, "-m", "services.mc_forewarner", "--once"], cwd=REPO_ROOT,
                           env={**os.environ, **_env(tmp_path, port)}, capture_output=True,
                           text=True, timeout=45)
        assert r.returncode == 0, r.stdout + r.stderr
        mc = c.get(maps.MC_FOREWARNER)
        p = mc.to_dict()
        assert (p["status"], p["source"], p["catastrophic_prob"], p["envelope_score"]) == \
            ("ORANGE", "FALLBACK_NO_DATA", 0.20, 0.80)
        assert p["day_boost"] == 1.2 and p["max_leverage"] == pytest.approx(p["base_max_leverage"] * 1.2)
        status, stale_h, source = sw.mc_reading(mc, mc.ts)
        assert (status, stale_h, source) == ("ORANGE", 0.0, "FALLBACK_NO_DATA")
        hb = c.get(maps.HEARTBEATS, "mc_forewarner")       # --once waited for its last heartbeat
        assert hb.extra["last_status"] == "ORANGE" and hb.extra["last_source"] == "FALLBACK_NO_DATA"
    finally:
        c.close()


def test_once_with_a_model_publishes_real_model_and_a_corrupt_one_fallback_error(hz_member, settings_for, tmp_path):
    _, port = hz_member
    model = tmp_path / "data" / "mc_models" / "blue_forewarner.zip"
    fit_model(load_blue(), model)
    c = Bus(settings_for(hz_port=port), "test-mcfw-model").start()
    env = {**os.environ, **_env(tmp_path, port)}
    try:
        assert c.wait_connected(20)
        r = subprocess.run([sys.executable, "-m", "services.mc_forewarner", "--once"], cwd=REPO_ROOT, env=env,
                           capture_output=True, text=True, timeout=45)
        assert r.returncode == 0, r.stdout + r.stderr
        mc = c.get(maps.MC_FOREWARNER)
        assert (mc.status, mc.source) == ("GREEN", "REAL_MODEL") and mc.catastrophic_prob < 0.10
        assert sw.mc_reading(mc, mc.ts)[0] == "OK"
        model.write_bytes(model.read_bytes()[:300])           # truncated: refused by name
        r = subprocess.run([sys.executable, "-m", "services.mc_forewarner", "--once"], cwd=REPO_ROOT, env=env,
                           capture_output=True, text=True, timeout=45)
        assert r.returncode == 0, r.stdout + r.stderr
        mc = c.get(maps.MC_FOREWARNER)
        assert (mc.status, mc.source, mc.catastrophic_prob) == ("ORANGE", "FALLBACK_ERROR", None)
        assert "ModelCorruptError" in mc.reason and "blue_forewarner.zip" in mc.reason
        assert "FALLBACK_ERROR" in r.stdout + r.stderr
    finally:
        c.close()


def test_loop_heartbeats_and_stops_on_sigterm(hz_member, settings_for, tmp_path):
    _, port = hz_member
    c = Bus(settings_for(hz_port=port), "test-mcfw-loop").start()
    proc = Proc("services.mc_forewarner", ["--interval-s", "3600", "--heartbeat-s", "0.5"], tmp_path / "mcfw.log",
                env=_env(tmp_path, port)).start()
    try:
        assert c.wait_connected(20)
        fm = c.map(maps.FEATURES).blocking()
        wait_until(lambda: fm.get(maps.KEY_MC_FOREWARNER) is not None or proc.p.poll() is not None, 40,
                   what="mc_forewarner_latest")
        assert proc.p.poll() is None, proc.log_text()
        assert "mc_forewarner starting" in proc.log_text()
        wait_until(lambda: c.get(maps.HEARTBEATS, "mc_forewarner") is not None, 10, what="a first heartbeat")
        first = c.get(maps.HEARTBEATS, "mc_forewarner").ts
        wait_until(lambda: c.get(maps.HEARTBEATS, "mc_forewarner").ts > first, 10, what="a heartbeat between runs")
        assert c.get(maps.MC_FOREWARNER).day_boost == 1.0
        c.publish(maps.ACB_BOOST, {"boost": 1.4, "beta": 0.5, "computed_at": time.time()})
        wait_until(lambda: c.get(maps.MC_FOREWARNER).day_boost == 1.4, 15,
                   what="a new assessment at the new day boost (interval 1 h)")
        assert "assessing again" in proc.log_text()
        assert c.get(maps.MC_FOREWARNER).source == "FALLBACK_NO_DATA"
        fit_model(load_blue(), tmp_path / "data" / "mc_models" / "blue_forewarner.zip")   # a model appears
        wait_until(lambda: c.get(maps.MC_FOREWARNER).source == "REAL_MODEL", 15,
                   what="the new model file picked up within a heartbeat")
        proc.p.terminate()
        assert proc.p.wait(15) == 0
        assert "mc_forewarner stopped" in proc.log_text()
    finally:
        proc.stop()
        c.close()


def test_once_with_no_member_exits_1_and_sigterm_while_waiting_exits_0(tmp_path):
    env = {**os.environ, **_env(tmp_path, free_port()), "DOLPHIN_HZ_CONNECT_TIMEOUT_S": "2"}
    r = subprocess.run([sys.executable, "-m", "services.mc_forewarner", "--once"], cwd=REPO_ROOT, env=env,
                       capture_output=True, text=True, timeout=45)
    assert r.returncode == 1 and "no Hazelcast member" in r.stdout + r.stderr
    proc = Proc("services.mc_forewarner", [], tmp_path / "nomember.log", env=_env(tmp_path, free_port())).start()
    try:
        wait_until(lambda: "cannot reach Hazelcast" in proc.log_text(), 30, what="a failed connect attempt")
        proc.p.send_signal(signal.SIGTERM)
        assert proc.p.wait(15) == 0
    finally:
        proc.stop()
    assert "mc_forewarner stopped (exit 0)" in proc.log_text() and "Traceback" not in proc.log_text()
