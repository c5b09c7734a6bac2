"""One volatility gate: the live trader's core and the backtest runner open it on the same bars.

The same synthetic day files go through both real paths: the backtest (``run_backtest`` and the
``day_vol_gates`` it calls) and the trader (each bar sent as a scan to ``TraderCore.process``).
"""
from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from prod.alpha.vol import VolGate
from prod.backtest import synth
from prod.backtest.data import list_day_files, load_day
from prod.backtest.runner import BacktestOptions, day_vol_gates, run_backtest
from prod.configs import BLUE_PATH
from prod.trading.core import CoreLimits, TraderCore
from prod.trading.journal import Journal
from services.event_trader.main import load_engine_params

BARS = 1200


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    d = tmp_path_factory.mktemp("volgate")
    synth.generate(d, 2, 11, bars=BARS)
    return [load_day(date, path) for date, path in list_day_files(d)], d


def _scan(day, i, prices):
    return {"scan_number": int(day.scan_number[i]), "timestamp_ns": int(day.timestamp_ns[i]), "timestamp": "",
            "bridge_ts": day.timestamp_ns[i] / 1e9, "vel_div": float(day.vel_div[i]),
            "w50_velocity": float(day.v50[i]), "w150_velocity": 0.0, "w300_velocity": 0.0,
            "w750_velocity": float(day.v750[i]), "instability_50": 0.0, "instability_150": 0.0,
            "assets": list(day.assets),
            "asset_prices": [None if not math.isfinite(p) else float(p) for p in prices]}


def _trader_gates(tmp_path, days, edit=None):
    now = [0.0]
    j = Journal.open(tmp_path / "j.sqlite", tmp_path / "a.log")
    core = TraderCore(CoreLimits(), j, load_engine_params(), days[0].assets, clock=lambda: now[0])
    gates = []
    try:
        for day in days:
            prices = day.prices if edit is None else edit(day.prices.copy())
            for i in range(day.n_bars):
                now[0] = day.timestamp_ns[i] / 1e9 + 0.05
                gates.append(core.process(_scan(day, i, prices[i]))["vol_ok"])
    finally:
        j.close()
    return gates


def _backtest_gates(days, edit=None):
    gate = VolGate()
    out = []
    for day in days:
        prices = day.prices if edit is None else edit(day.prices.copy())
        out += day_vol_gates(gate, prices, day.assets)
    return out


def test_trader_and_backtest_open_the_gate_on_the_same_bars(days, tmp_path):
    loaded, data_dir = days
    bt = _backtest_gates(loaded)
    tr = _trader_gates(tmp_path, loaded)
    assert len(tr) == len(bt) == 2 * BARS
    assert tr == bt
    assert 0 < sum(bt) < len(bt)
    assert not any(bt[:50])                               # 50 returns before the first dvol
    res = run_backtest(BacktestOptions(config=BLUE_PATH, data=data_dir, summary=tmp_path / "s.json", png=False),
                       now=dt.datetime(2026, 1, 10, tzinfo=dt.timezone.utc))
    assert res.summary["vol_ok_bars"] == sum(tr)          # the replay itself used this gate


def test_a_missing_btc_price_closes_the_gate_the_same_way_in_both(days, tmp_path):
    loaded, _ = days
    btc = loaded[0].assets.index("BTCUSDT")

    def knock_out(prices):
        prices[400, btc] = np.nan
        return prices

    bt = _backtest_gates(loaded, knock_out)
    tr = _trader_gates(tmp_path, loaded, knock_out)
    assert tr == bt
    assert not any(bt[400:450]) and any(bt[450:])          # closed until 50 good returns again
