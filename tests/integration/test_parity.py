"""Live == replay: the trader as a real process on the embedded member trades a stress episode published the
way scan_bridge publishes (plus ACB, posture and order books on their maps); its recording replayed by
``python -m prod.backtest.parity`` gives the same trades, fees and capital. A truncated recording is caught."""
from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time

from prod.bus import maps
from prod.bus.client import make_client
from prod.settings import PRIORITY_SYMBOLS
from tests.helpers import REPO_ROOT, Proc, wait_until
from tests.market import scan_payload, walk


def _rows(db, kind):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COUNT(*) FROM events WHERE kind=?", (kind,)).fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def _parity(*args):
    return subprocess.run([sys.executable, "-m", "prod.backtest.parity", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_live_episode_replays_to_identical_trades_fees_and_capital(hz_member, settings_for, tmp_path):
    _, port = hz_member
    client = make_client(settings_for(hz_port=port), name="test-parity")
    data = tmp_path / "data"
    tr = Proc("services.event_trader", ["--hz-members", f"127.0.0.1:{port}", "--data-dir", str(data)],
              tmp_path / "trader.log", env={"DOLPHIN_EVENT_TRADER_EXECUTION": "paper",
                                             "DOLPHIN_EVENT_TRADER_RECORD": "1"}).start()
    try:
        hb = client.get_map(maps.HEARTBEAT).blocking()
        wait_until(lambda: hb.get("event_trader") is not None or tr.p.poll() is not None, 60, what="trader heartbeat")
        assert tr.p.poll() is None, tr.log_text()
        fm = client.get_map(maps.FEATURES).blocking()
        safety = client.get_map(maps.SAFETY).blocking()
        rng = random.Random(7)
        prices = {a: 100.0 + i for i, a in enumerate(PRIORITY_SYMBOLS)}
        n = 0

        def push(vd, drift, noise):
            nonlocal n
            walk(prices, rng, drift, noise)
            n += 1
            now = time.time()
            fm.set(maps.KEY_EIGEN_SCAN, json.dumps(scan_payload(n, prices, vd, now, time.time_ns())))

        def books():
            for a in list(prices)[:8]:
                p = prices[a]
                client.get_map(maps.shard_map(a)).blocking().set(a, maps.ob_topic(a).encode({
                    "symbol": a, "ts": time.time(), "imbalance": rng.uniform(-0.3, 0.3), "fill_probability": 0.9,
                    "depth_quality": 1.0, "spread_bps": 2.0, "best_bid": p * 0.9999, "best_ask": p * 1.0001}, a))

        for i in range(159):
            push(0.0, 0.0, 0.001 + i * 0.00002)
            if i == 60:
                fm.set(maps.KEY_ACB_BOOST, maps.ACB_BOOST.encode({"boost": 1.25, "beta": 0.5,
                                                                  "computed_at": time.time()}))
            if i == 90:
                safety.set(maps.KEY_LATEST, maps.SAFETY_LATEST.encode({"posture": "STALKER", "Rm": 0.8,
                                                                        "ts": time.time()}))
            if i == 130:
                safety.set(maps.KEY_LATEST, maps.SAFETY_LATEST.encode({"posture": "APEX", "Rm": 1.0,
                                                                        "ts": time.time()}))
        db = data / "trader" / "journal.sqlite"
        for i in range(260):   # the stress leg (falling, volatile, vel_div -0.06), then the recovery
            if i % 5 == 0:
                books()
            if i % 10 == 0:   # the §9.2 macro: bid-side withdrawal in the stress leg, calm after it
                fm.set(maps.KEY_OB_MACRO, maps.OB_MACRO.encode({
                    "ts": time.time(), "cascade_count": 3 if i < 100 else 0, "regime_signal": 1 if i < 100 else -1,
                    "market_imbalance": -0.2 if i < 100 else 0.05, "withdrawal_stress": 0.5 if i < 100 else 0.0,
                    "n_assets": 8}))
            push(-0.06 if i < 100 else 0.01, -0.002 if i < 100 else 0.001, 0.003)
        wait_until(lambda: json.loads(hb.get("event_trader") or "{}").get("last_scan") == n, 30,
                   what="every scan decided")
        assert _rows(db, "EXIT") >= 1, tr.log_text()[-3000:]
    finally:
        tr.stop()
        client.shutdown()
    assert tr.p.returncode == 0, tr.log_text()[-2000:]
    runs = sorted((data / "recordings").iterdir())
    assert len(runs) == 1 and (runs[0] / "end.json").exists()

    r = _parity("--recording", str(runs[0]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PARITY OK: 0 difference(s)" in r.stdout
    assert "input events (0 raced)" in r.stdout      # inputs are applied on the decision thread, in order
    trades = _rows(db, "EXIT")
    assert f"{trades} closed trades" in r.stdout
    end = json.loads((runs[0] / "end.json").read_text())
    assert f"final capital live={end['capital']!r} replay={end['capital']!r}" in r.stdout
    ev = [json.loads(x)["kind"] for x in (runs[0] / "events.jsonl").read_text().splitlines()]
    assert {"acb", "posture", "ob", "ob_macro"} <= set(ev), set(ev)     # the inputs besides scans were recorded and replayed

    # a recording cut short (kill -9 mid-write, full disk): named, distinct exit code
    arrow = runs[0] / "scans.arrow"
    arrow.write_bytes(arrow.read_bytes()[:-100])
    r = _parity("--recording", str(runs[0]))
    assert r.returncode == 2 and "scans.arrow" in r.stderr, r.stdout + r.stderr
