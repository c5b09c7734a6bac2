"""The compiled bar loop (issue 31) replays exactly as the Python loop did: 30 synthetic days, every
trade field bit for bit, and every other number of the summary.

``BacktestOptions(python_loop=True)`` is the reference mode kept for this comparison: ``step_bar`` on
every bar and the streaming :class:`prod.alpha.vol.VolGate`, as the runner did before.  The default
mode steps only the event bars (``NDAlphaEngine.run_bars``) and opens the vol gate a day at a time
(:class:`prod.alpha.vol.BatchVolGate`).
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prod.backtest import synth
from prod.backtest.runner import BacktestOptions, run_backtest
from prod.configs import BLUE_PATH

NOW = dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)
SKIP_KEYS = {"timing", "html_report", "equity_png"}


def _both(data, tmp_path, **kw):
    out = []
    for python_loop in (True, False):
        res = run_backtest(BacktestOptions(config=BLUE_PATH, data=data, summary=tmp_path / f"s_{python_loop}.json",
                                           png=False, python_loop=python_loop, **kw), now=NOW)
        out.append(res.summary)
    return out


def _assert_same(ref, new):
    assert len(ref["trade_list"]) == len(new["trade_list"])
    for a, b in zip(ref["trade_list"], new["trade_list"]):
        assert a.keys() == b.keys()
        for k in a:                                  # exact: floats compared with ==, bit for bit
            assert a[k] == b[k] and type(a[k]) is type(b[k]), (a["trade_id"], k, a[k], b[k])
    for k in ref:
        if k not in SKIP_KEYS:
            assert ref[k] == new[k], k


@pytest.mark.timeout(900)
def test_thirty_synthetic_days_give_the_same_trades_bit_for_bit(tmp_path):
    data = tmp_path / "days"
    synth.generate(data, 30, 42)
    ref, new = _both(data, tmp_path)
    _assert_same(ref, new)
    assert ref["days"] == 30 and ref["trades"] > 100
    assert {"FIXED_TP", "MAX_HOLD"} <= set(ref["exit_reasons"])
    assert 0 < ref["vol_ok_bars"] < ref["bars"]
    # how much faster the compiled loop is belongs to `make bench` (tests/bench/test_bench_backtest_vbt.py), not
    # here: a timed comparison failed at load 8 (ci8: 3.72 s compiled vs 3.19 s reference)


def _damage(path, rng, drop_rows=False):
    t = pq.read_table(path)
    cols = {c: t.column(c).to_numpy(zero_copy_only=False).copy() for c in t.column_names}
    n = t.num_rows
    cols["vel_div"][rng.choice(n, 20, replace=False)] = np.nan
    cols["v50_lambda_max_velocity"][rng.choice(n, 5, replace=False)] = np.nan
    cols["BTCUSDT"][rng.choice(n, 30, replace=False)] = np.nan
    for c in list(cols)[9:]:
        cols[c][rng.choice(n, 25, replace=False)] = np.nan
    bad_rows = rng.choice(n, 5, replace=False)
    for c in list(cols)[9:]:
        cols[c][bad_rows] = np.nan
    keep = np.ones(n, dtype=bool)
    if drop_rows:
        keep[400:440] = False                        # a 200-s hole: the post-gap hold (issue 21); short days
        #                                               also leave a hole before the next midnight
    arrays = {c: pa.array(v[keep], type=t.schema.field(c).type) for c, v in cols.items()}
    pq.write_table(pa.table(arrays), path)


def test_bad_bars_and_gaps_replay_the_same(tmp_path):
    data = tmp_path / "days"
    paths = synth.generate(data, 4, 7, bars=3000)
    rng = np.random.default_rng(3)
    for k, p in enumerate(paths):
        _damage(p, rng, drop_rows=k == 1)
    ref, new = _both(data, tmp_path)
    _assert_same(ref, new)
    assert ref["input_gaps"] >= 1 and ref["skip_reasons"]["post_gap"] > 0
    assert {"bad_vel_div", "bad_velocity", "no_valid_prices"} <= set(ref["skip_reasons"])
    assert ref["trades"] > 5
