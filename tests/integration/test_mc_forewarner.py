"""MC-forewarner service against the real embedded member: publish, heartbeat, watchdog reads it, SIGTERM clean."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from prod.bus import maps
from prod.bus.client import make_client
from services.safety_watchdog import main as sw
from tests.helpers import REPO_ROOT, Proc, wait_until

pytestmark = pytest.mark.timeout(60)


def _env(tmp_path, port):
    return {"DOLPHIN_HZ_MEMBERS": f"127.0.0.1:{port}", "DOLPHIN_DATA_DIR": str(tmp_path / "data"),
            "DOLPHIN_RUN_LOGS": str(tmp_path / "run_logs"), "PYTHONUNBUFFERED": "1"}


def test_once_publishes_and_the_watchdog_reads_it(hz_member, settings_for, tmp_path):
    _, port = hz_member
    c = make_client(settings_for(hz_port=port), name="test-mcfw")
    try:
        fm = c.get_map(maps.FEATURES).blocking()
        fm.set(maps.KEY_ACB_BOOST, json.dumps({"boost": 1.2, "beta": 0.5}))
        r = subprocess.run([sys.executable, "-m", "services.mc_forewarner", "--once"], cwd=REPO_ROOT,
                           env={**os.environ, **_env(tmp_path, port)}, capture_output=True,
                           text=True, timeout=45)
        assert r.returncode == 0, r.stdout + r.stderr
        p = maps.decode(maps.FEATURES, maps.KEY_MC_FOREWARNER, fm.get(maps.KEY_MC_FOREWARNER))
        assert p["source"] == "SYNTHETIC_PRIOR" and p["n_paths"] >= 2000 and p["n_trades"] > 0
        assert p["day_boost"] == 1.2 and p["max_leverage"] == pytest.approx(p["base_max_leverage"] * 1.2)
        status, stale_h, source = sw.mc_reading(p, p["ts"])
        assert status == sw.MC_STATUS_MAP[p["status"]] and stale_h == 0.0 and source == "SYNTHETIC_PRIOR"
        assert status == "OK", p      # the seeded blue prior is benign: the watchdog no longer holds ORANGE
        hb = maps.decode(maps.HEARTBEAT, "mc_forewarner", c.get_map(maps.HEARTBEAT).blocking().get("mc_forewarner"))
        assert hb["last_status"] == p["status"]
    finally:
        c.shutdown()


def test_loop_heartbeats_and_stops_on_sigterm(hz_member, settings_for, tmp_path):
    _, port = hz_member
    c = make_client(settings_for(hz_port=port), name="test-mcfw-loop")
    proc = Proc("services.mc_forewarner", ["--interval-s", "3600"], tmp_path / "mcfw.log",
                env=_env(tmp_path, port)).start()
    try:
        fm = c.get_map(maps.FEATURES).blocking()
        wait_until(lambda: fm.get(maps.KEY_MC_FOREWARNER) is not None or proc.p.poll() is not None, 40,
                   what="mc_forewarner_latest")
        assert proc.p.poll() is None, proc.log_text()
        assert "mc_forewarner starting" in proc.log_text()
        proc.p.terminate()
        assert proc.p.wait(15) == 0
        assert "mc_forewarner stopped" in proc.log_text()
    finally:
        proc.stop()
        c.shutdown()
