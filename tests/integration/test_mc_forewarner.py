"""MC-forewarner service against the real embedded member: publish, heartbeat, watchdog reads it, SIGTERM clean."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from prod.bus import maps
from prod.runtime import Bus
from services.safety_watchdog import main as sw
from tests.helpers import REPO_ROOT, Proc, free_port, wait_until

pytestmark = pytest.mark.timeout(60)


def _env(tmp_path, port):
    return {"DOLPHIN_HZ_MEMBERS": f"127.0.0.1:{port}", "DOLPHIN_DATA_DIR": str(tmp_path / "data"),
            "DOLPHIN_RUN_LOGS": str(tmp_path / "run_logs"), "PYTHONUNBUFFERED": "1"}


def test_once_publishes_and_the_watchdog_reads_it(hz_member, settings_for, tmp_path):
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
        assert p["source"] == "SYNTHETIC_PRIOR" and p["n_paths"] >= 2000 and p["n_trades"] > 0
        assert p["day_boost"] == 1.2 and p["max_leverage"] == pytest.approx(p["base_max_leverage"] * 1.2)
        status, stale_h, source = sw.mc_reading(mc, mc.ts)
        assert status == sw.MC_STATUS_MAP[mc.status] and stale_h == 0.0 and source == "SYNTHETIC_PRIOR"
        assert status == "OK", p      # the seeded blue prior is benign: the watchdog no longer holds ORANGE
        hb = c.get(maps.HEARTBEATS, "mc_forewarner")       # --once waited for its last heartbeat
        assert hb.extra["last_status"] == mc.status
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
        first = c.get(maps.HEARTBEATS, "mc_forewarner").ts
        wait_until(lambda: c.get(maps.HEARTBEATS, "mc_forewarner").ts > first, 10, what="a heartbeat between runs")
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
