"""The mesh under real supervisord on a simulator account that starts in Hedge Mode (``DOLPHIN_SIM_HEDGE_MODE=1``):
the trader stays up and refuses every entry naming the setting, ``python -m prod.execution preflight`` fails
naming it; the same account switched to One-way passes the preflight and the trader trades.

Select with ``-m e2e``. Its own mesh (a few minutes on a 2-core machine).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest

from prod.bus import maps
from prod.bus.client import make_client
from prod.settings import load_settings
from tests.e2e.episodes import BridgeScans, entries as _entries, journal_rows as _journal_rows, trading_posture
from tests.e2e.test_mesh import LIVE_ENV, Mesh
from tests.helpers import REPO_ROOT, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def hedge_mesh(tmp_path_factory):
    with Mesh(tmp_path_factory.mktemp("hedge_mesh")).up(*LIVE_ENV, "DOLPHIN_SIM_HEDGE_MODE=1",
                                                         "DOLPHIN_EVENT_TRADER_PREFLIGHT_RETRY_S=10") as m:
        yield m


def _preflight(mesh: Mesh) -> tuple[int, list[str]]:
    key, secret = (mesh.root / "venue_api_key").read_text().strip().split(":", 1)
    env = {**mesh.env, "DOLPHIN_VENUE_REST": f"http://127.0.0.1:{mesh.venue_port}",
           "DOLPHIN_VENUE_WS": f"ws://127.0.0.1:{mesh.venue_port}", "DOLPHIN_VENUE_API_KEY": key,
           "DOLPHIN_VENUE_API_SECRET": secret, "DOLPHIN_DATA_DIR": str(mesh.root / "cli-data")}
    r = subprocess.run([sys.executable, "-m", "prod.execution", "preflight"], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=120, env=env)
    return r.returncode, [ln for ln in r.stdout.splitlines() if ln.startswith(("PASS", "FAIL", "SKIP"))]


def test_hedge_mode_refuses_to_trade_naming_the_setting_and_one_way_trades(hedge_mesh):
    mesh = hedge_mesh
    wait_until(lambda: "REFUSING ENTRIES: preflight failed: position mode: Hedge Mode" in mesh.log("event_trader"),
               60, interval=0.5, what="the trader refusing entries in hedge mode")
    assert "One-way" in mesh.log("event_trader")
    rc, lines = _preflight(mesh)
    assert rc == 1 and any(ln.startswith("FAIL position mode") and "One-way" in ln for ln in lines), lines
    bus = make_client(load_settings(env={}, hz_members=(f"127.0.0.1:{mesh.hz_port}",)), name="e2e-hedge")
    try:
        hb = bus.get_map(maps.HEARTBEAT).blocking()
        wait_until(lambda: trading_posture(bus), 120, interval=0.5,
                   what="a trading posture (safety watchdog warmed up with MC GREEN)")
        journal = mesh.root / "data" / "trader" / "journal.sqlite"
        src = BridgeScans(bus)

        def consumed(n: int) -> bool:
            return json.loads(hb.get("event_trader"))["last_scan"] == n

        for i in range(159):
            src.push(0.0, 0.0, 0.001 + i * 0.00002)
        for _ in range(60):
            last = src.push(-0.06, -0.002, 0.003)
            time.sleep(0.02)  # scan cadence of the episode (the trader consumes in order)
        wait_until(lambda: consumed(last), 60, interval=0.2, what="the hedge-mode episode decided")
        refused = [json.loads(p) for (p,) in _journal_rows(
            journal, "SELECT payload FROM events WHERE kind='ENTRY_NOT_TAKEN'")]
        assert refused and all(r["error"] == "EntriesRefused" for r in refused), refused[-3:]
        assert "Hedge Mode" in refused[0]["detail"] and _entries(journal) == 0

        req = urllib.request.Request(f"http://127.0.0.1:{mesh.venue_port}/sim/admin/account", method="POST",
                                     data=json.dumps({"dual_side": False}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
        wait_until(lambda: "preflight passed: entries allowed" in mesh.log("event_trader"), 60, interval=0.5,
                   what="the trader's preflight retry passing in one-way mode")
        rc, lines = _preflight(mesh)
        assert rc == 0 and all(ln.startswith("PASS") for ln in lines), lines
        for _ in range(120):
            last = src.push(-0.06, -0.002, 0.003)
            if _entries(journal):
                break
            time.sleep(0.02)
        wait_until(lambda: _entries(journal) > 0, 60, interval=0.2, what="an entry once the account is one-way")
        entry = json.loads(_journal_rows(journal, "SELECT payload FROM events WHERE kind='ENTRY'")[0][0])
        assert entry["source"] == "venue" and entry["status"] == "FILLED", entry
    finally:
        bus.shutdown()
