"""The TUI overview against the real embedded member at 80×24 and at a big size (issue 20).

Values are written with a real client; the test reads what the widgets hold and where they sit:
every essential widget is on screen (inside the screen region, not zero-sized), the overview rows
fit the width, the sparkline holds the scans' vel_div in order, the trades table the trader's
closed trades newest first, and the MHS holds row appears only while the payload carries holds.
"""
from __future__ import annotations

import asyncio
import time

from textual.widgets import Sparkline

from observability.tui import DolphinTui, Overview, TradesTable
from prod.bus import maps
from tests.integration.test_tui import _bus, _put, _wait_for, _writer

ESSENTIAL = ("#bus", "#overview", "#spark-label", "#spark", "#trades", "#tests")


def _scan(n: int, vel_div: float, eth: float, now: float) -> dict:
    return {"scan_number": n, "timestamp_ns": int(now * 1e9), "timestamp": "2026-12-03T00:00:00+00:00",
            "bridge_ts": now, "vel_div": vel_div, "w50_velocity": 0.0, "w150_velocity": 0.0, "w300_velocity": 0.0,
            "w750_velocity": 0.0, "instability_50": 0.0, "instability_150": 0.0,
            "assets": ["BTCUSDT", "ETHUSDT"], "asset_prices": [60000.0, eth], "warm_windows": [50, 150, 300, 750],
            "n_assets": 2}


def _trader_state(now: float) -> dict:
    hist = [{"side": "BUY", "symbol": f"T{i}USDT", "price": 10.0 - i * 0.1, "entry_price": 10.0, "net": 1.0 + i,
             "reason": "FIXED_TP", "ts": now - 600 + i * 60} for i in range(4)]          # oldest first, as kept
    return {"strategy": "blue", "capital": 25123.5, "updated_at": now, "posture": "APEX",
            "account": {"position": {"symbol": "ETHUSDT", "direction": -1, "entry_price": 3000.0, "notional": 6000.0,
                                   "entry_ts": now - 60}, "history": hist}}


def _inside(app: DolphinTui, selector: str) -> bool:
    w = app.query_one(selector)
    r, screen = w.region, app.screen.region
    return (w.display and r.width > 0 and r.height > 0 and r.x >= 0 and r.y >= 0
            and r.right <= screen.right and r.bottom <= screen.bottom)


def _overview(app: DolphinTui) -> str:
    return app.query_one("#overview", Overview).plain


async def _feed(pilot, app: DolphinTui, writer, now: float) -> None:
    """Write the sources of the overview; three scans one after the other (each seen before the next)."""
    await asyncio.to_thread(_put, writer, maps.SAFETY, maps.KEY_LATEST, {"posture": "STALKER", "Rm": 0.62, "ts": now})
    await asyncio.to_thread(_put, writer, maps.META_HEALTH, maps.KEY_LATEST, {
        "rm_meta": 0.975, "status": "GREEN", "timestamp": now,
        "holds": {"scanner": {"reason": "maintenance", "since": now - 120, "until": now + 600}}})
    await asyncio.to_thread(_put, writer, maps.STATE_BLUE, maps.KEY_LATEST, _trader_state(now))
    for n, vd in ((101, -0.010), (102, -0.031), (103, 0.004)):
        await asyncio.to_thread(_put, writer, maps.FEATURES, maps.KEY_EIGEN_SCAN, _scan(n, vd, 2970.0, time.time()))
        await _wait_for(pilot, lambda n=n: f"scan #{n}" in _overview(app), 5, f"scan #{n} in the overview")


def _complete(app: DolphinTui) -> bool:
    """Every source has reached the overview (events of different maps may arrive in any order)."""
    ov = _overview(app)
    return all(n in ov for n in ("STALKER", "MHS GREEN", "scan #103", "uPnL +60", "HOLD")) \
        and app.query_one("#trades", TradesTable).row_count == 4


def _assert_overview(app: DolphinTui, width: int) -> None:
    rows = _overview(app).splitlines()
    assert rows[0].startswith("STALKER Rm 0.620  MHS GREEN 0.975  scan #103 age"), rows
    assert rows[1] == "capital 25,123.50", rows
    assert rows[2] == "SHORT ETHUSDT @ 3000  last 2970  uPnL +60.00 (+1.00%)", rows      # -1*(2970-3000)/3000*6000
    assert rows[3].startswith("HOLD  scanner: maintenance 2m"), rows
    assert all(len(r) <= width - 2 for r in rows), rows                                   # padding 1 each side
    assert list(app.query_one("#spark", Sparkline).data) == [-0.010, -0.031, 0.004]
    assert "vel_div +0.0040 min -0.0310" in str(app.query_one("#spark-label").render())
    table = app.query_one("#trades", TradesTable)
    assert [r[1] for r in table.rows_shown] == ["T3USDT", "T2USDT", "T1USDT", "T0USDT"]
    assert table.row_count == 4 and table.rows_shown[0][2:6] == ("SHORT", "10", "9.7", "+4.00")


def test_at_80x24_the_overview_sparkline_and_trades_fit_the_screen(hz_member, settings_for):
    _, port = hz_member
    settings = settings_for(hz_port=port)
    writer = _writer(settings, "tui-layout-writer")

    async def scenario() -> None:
        app = DolphinTui(settings, connect_timeout=2.0, retry_s=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await _wait_for(pilot, lambda: _bus(app).startswith("bus: connected"), 15, "bus connected")
            await _feed(pilot, app, writer, time.time())
            await _wait_for(pilot, lambda: _complete(app), 5, "every source in the overview")
            _assert_overview(app, 80)
            for sel in ESSENTIAL:
                assert _inside(app, sel), (sel, app.query_one(sel).region)
            assert not app.query_one("#grid").display                      # small: no detail panels
            table = app.query_one("#trades")
            assert table.region.height >= 5                                 # header + the 4 trades

            # d: the detail panels replace the trades table, the overview stays
            await pilot.press("d")
            await _wait_for(pilot, lambda: app.query_one("#grid").display, 2, "details shown")
            assert not app.query_one("#trades").display and _inside(app, "#grid") and _inside(app, "#overview")
            await pilot.press("d")
            await _wait_for(pilot, lambda: app.query_one("#trades").display, 2, "trades back")

            # the hold is released: its row goes away
            await asyncio.to_thread(_put, writer, maps.META_HEALTH, maps.KEY_LATEST,
                                    {"rm_meta": 1.0, "status": "GREEN", "timestamp": time.time()})
            await _wait_for(pilot, lambda: "HOLD" not in _overview(app) and "MHS GREEN 1.000" in _overview(app),
                            5, "hold row gone")
            assert len(_overview(app).splitlines()) == 3

    try:
        asyncio.run(scenario())
    finally:
        writer.close()


def test_at_a_big_size_the_detail_panels_show_under_the_overview(hz_member, settings_for):
    _, port = hz_member
    settings = settings_for(hz_port=port)
    writer = _writer(settings, "tui-layout-writer-big")

    async def scenario() -> None:
        app = DolphinTui(settings, connect_timeout=2.0, retry_s=0.2)
        async with app.run_test(size=(200, 60)) as pilot:
            await _wait_for(pilot, lambda: _bus(app).startswith("bus: connected"), 15, "bus connected")
            await _feed(pilot, app, writer, time.time())
            await _wait_for(pilot, lambda: _complete(app), 5, "every source in the overview")
            _assert_overview(app, 200)
            for sel in ESSENTIAL + ("#grid",) + tuple(f"#panel-{p}" for p in app.views):
                assert _inside(app, sel), (sel, app.query_one(sel).region)
            assert app.query_one("#trades").region.bottom <= app.query_one("#grid").region.y   # trades above
            await _wait_for(pilot, lambda: "unrealised +60.00" in app.query_one("#panel-position").plain, 5,
                            "position panel with unrealised PnL")
            assert "HOLD scanner: maintenance" in app.query_one("#panel-meta").plain

    try:
        asyncio.run(scenario())
    finally:
        writer.close()
