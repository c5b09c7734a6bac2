"""The protective stop's default distance never pre-empts the engine's own exits in a backtest (issue 29).

The backtest (the same NDAlphaEngine the trader drives) replays synthetic days; for every trade the largest
adverse move between its entry and exit bar is measured from the bar prices. The default stop (12 %) must lie
beyond all of them and beyond the engine's own stop under OB stress (10 %), so it only ever fires for a
trader that is no longer managing its position. docs/execution.md has the 10-day measurement.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from prod.alpha.exits import ob_dynamic_params
from prod.backtest.runner import BacktestOptions, run_backtest
from prod.backtest.synth import generate
from prod.trading.safety import SafetyConfig
from tests.helpers import REPO_ROOT


def test_default_stop_is_beyond_every_adverse_move_before_an_engine_exit_and_beyond_the_engines_stop(tmp_path):
    data = tmp_path / "data"
    generate(data, days=2, seed=7)
    res = run_backtest(BacktestOptions(config=REPO_ROOT / "prod/configs/blue.yml", data=data,
                                       out_dir=tmp_path / "out", png=False))
    assert len(res.trades) >= 5, "the synthetic days must trade"
    tables = [pq.read_table(f) for f in sorted(Path(data).glob("*.parquet"))]
    prices = {a: np.concatenate([t.column(a).to_numpy(zero_copy_only=False) for t in tables])
              for a in {tr["asset"] for tr in res.trades}}
    mae = []
    for tr in res.trades:
        p = prices[tr["asset"]][tr["entry_bar"]:tr["exit_bar"] + 1]
        assert abs(p[0] / tr["entry_price"] - 1) < 0.01          # the bar index is the price row of the entry
        mae.append(float(np.nanmax(-tr["direction"] * (p - tr["entry_price"]) / tr["entry_price"])))
    stop = SafetyConfig().stop_pct
    assert max(mae) < stop / 2, (max(mae), stop)
    # the engine's own stop: off in the champion (stop_pct 1.0), 10 % when the OB macro signals stress
    _tp, sl_stress, _hold = ob_dynamic_params(0.0095, 1.0, 120, 0.0, 0, 1, 0.0, 0.0)
    assert sl_stress < stop
