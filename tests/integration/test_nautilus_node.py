"""A Nautilus TradingNode with Nautilus's own Binance USDT-M data and execution clients, pointed at the venue
simulator (base URLs only, nothing stubbed), runs DolphinActor and completes an entry and an exit.

The scans come from the real embedded Hazelcast member (``latest_eigen_scan``, the live feed of §14.4), published
by the test with the simulator's BTCUSDT price and a strong SHORT signal; the engine runs a smoke parameter set
(fallback asset, no IRP/DC warm-up, 2-bar max hold, no vol gate) so the round trip happens within seconds. The
driver bars are Binance 1-minute klines from the simulator at 60× market speed (one closed bar per second).
"""
from __future__ import annotations

import asyncio

import datetime as dt
import json
import threading
import time
import urllib.request

import pytest

from prod.alpha.engine import NDAlphaEngine
from prod.alpha.params import EngineParams
from prod.bus import maps
from prod.nautilus import require_nautilus
from prod.runtime import Bus
from tests.helpers import running_venue, wait_until

require_nautilus()
from prod.nautilus.node import BusScanFeed, build_node  # noqa: E402

KEY, SECRET = "nt-node-key", "nt-node-secret"


def _price(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/fapi/v1/ticker/price?symbol=BTCUSDT", timeout=5) as r:
        return float(json.loads(r.read())["price"])


@pytest.mark.timeout(240)
def test_trading_node_entry_and_exit_on_the_venue_simulator(tmp_path, hz_member, settings_for):
    _, hz_port = hz_member
    bus = Bus(settings_for(hz_port=hz_port), "test-nautilus-node", backoff_s=(0.1, 0.5)).start()
    assert bus.wait_connected(30)
    stop = threading.Event()
    with running_venue(tmp_path, "--speed", "60", "--symbols", "60", "--api-key", f"{KEY}:{SECRET}") as (_, port):
        def publish_scans():
            n = 0
            while not stop.is_set():
                n += 1
                now = time.time()
                try:
                    px = _price(port)
                except OSError:
                    stop.wait(0.2)
                    continue
                bus.publish(maps.EIGEN_SCAN, maps.EIGEN_SCAN.build(
                    scan_number=n, timestamp_ns=int(now * 1e9),
                    timestamp=dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(), bridge_ts=now,
                    vel_div=-0.06, w50_velocity=-0.05, w150_velocity=0.0, w300_velocity=0.0, w750_velocity=0.01,
                    instability_50=0.1, instability_150=0.1, assets=["BTCUSDT"], asset_prices=[px]))
                stop.wait(0.25)

        pub = threading.Thread(target=publish_scans, daemon=True)
        pub.start()
        params = EngineParams(lookback=3, use_asset_selection=False, use_direction_confirm=False, max_hold_bars=2,
                              use_sp_fees=False, use_sp_slippage=False)
        engine = NDAlphaEngine(params, ("BTCUSDT",))
        feed = BusScanFeed(bus, engine.assets, vol_gate=None)
        asyncio.run(asyncio.sleep(0))    # as after any earlier test's asyncio.run: this thread has no event loop left
        node, actor = build_node(engine, feed, api_key=KEY, api_secret=SECRET, base_url_http=f"http://127.0.0.1:{port}",
                                 base_url_ws=f"ws://127.0.0.1:{port}", bus=bus, log_level="ERROR")
        done = threading.Event()

        def closed_trade():
            return any(t.realized_pnl is not None for t in actor.trades.values())

        def watch():
            try:
                wait_until(closed_trade, timeout=120, what="a round trip through Nautilus's Binance clients")
            finally:
                done.set()
                node.stop()

        threading.Thread(target=watch, daemon=True).start()
        try:
            node.run()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/sim/status", timeout=5) as r:
                venue_fills = json.loads(r.read())["fills"]
            day = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
            written = {k: maps.PNL_BLUE_DAY.decode(v, k) for k, v in
                       bus.client.get_map(maps.PNL_BLUE).blocking().entry_set()}
        finally:
            stop.set()
            pub.join(5)
            node.dispose()
            bus.close()
        assert done.is_set()
        assert venue_fills >= 2                                          # the simulator filled the entry and the exit
        assert any(p.total_trades >= 1 and p.strategy == "blue" for k, p in written.items()), (day, written)
        t = next(t for t in actor.trades.values() if t.realized_pnl is not None)
        assert t.side == "SELL" and t.qty > 0 and t.entry_px and t.exit_px
        assert t.entry_commission > 0 and t.exit_commission > 0       # the simulator's taker fee, via the user stream
        assert t.realized_pnl == pytest.approx((t.entry_px - t.exit_px) * t.qty - t.entry_commission
                                               - t.exit_commission, abs=0.01)
        rec = engine.trades[0]
        assert rec.reason == "MAX_HOLD" or rec.reason == "FIXED_TP"
        assert engine.capital == pytest.approx(t.capital_after)          # capital synced to the venue account
