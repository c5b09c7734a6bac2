"""Issue 21 in the backtest: post-gap bars make no entry; missing days and a non-5 s bar length are warned about."""
from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from prod.backtest import synth
from prod.backtest.data import load_day
from prod.backtest.runner import GAP_HOLD_BARS, BacktestOptions, gap_holds, missing_days, run_backtest
from prod.configs import BLUE_PATH

S = 10**9


def test_gap_holds_from_spacing_flag_and_across_midnight():
    ts = np.r_[np.arange(10) * 5 * S, 10_000 * S + np.arange(10) * 5 * S].astype(np.int64)
    hold, left, gaps = gap_holds(ts, None, None, 0, 5 * S)
    assert gaps == 1 and not hold[:10].any() and hold[10:].all() and left == GAP_HOLD_BARS - 10
    nxt = (ts[-1] + 5 * S + np.arange(5) * 5 * S).astype(np.int64)
    h2, left2, g2 = gap_holds(nxt, None, int(ts[-1]), left, 5 * S)      # the hold carries into the next day
    assert g2 == 0 and h2.all() and left2 == left - 5
    flag = np.zeros(5, dtype=bool)
    flag[2] = True                                                       # the scanner's own flag is honoured
    h3, _, _ = gap_holds(nxt, flag, int(ts[-1]), 0, 5 * S)
    assert h3.tolist() == [False, False, True, False, False]
    assert missing_days(["2026-01-01", "2026-01-02", "2026-01-05"]) == [("2026-01-02", "2026-01-05", 2)]


def test_backtest_holds_post_gap_bars_and_warns(tmp_path, caplog):
    d = tmp_path / "days"
    synth.generate(d, 3, 11, bars=1200)
    files = sorted(d.glob("*.parquet"))
    files[1].unlink()                                                    # a missing day
    t = pq.read_table(files[2])
    ts = t.column("timestamp").cast(pa.int64()).to_numpy()
    ts = np.r_[ts[:200], ts[200:] + 9000 * S]                            # a 2.5 h hole inside the last day
    t = t.set_column(t.schema.get_field_index("timestamp"), "timestamp",
                     pa.array(ts, type=pa.int64()).cast(pa.timestamp("ns", tz="UTC")))
    pq.write_table(t, files[2])
    t0 = pq.read_table(files[0])                                         # first day: 60 s bars
    ts0 = t0.column("timestamp").cast(pa.int64()).to_numpy()
    ts0 = ts0[0] + (ts0 - ts0[0]) * 12
    pq.write_table(t0.set_column(0, "timestamp", pa.array(ts0, type=pa.int64()).cast(pa.timestamp("ns", tz="UTC"))),
                   files[0])
    with caplog.at_level(logging.WARNING, logger="dolphin.backtest"):
        res = run_backtest(BacktestOptions(config=BLUE_PATH, data=d, out_dir=tmp_path, png=False))
    msgs = [r.getMessage() for r in caplog.records]
    assert any("1 day(s) missing between" in m for m in msgs)
    assert any("bars are 60 s long, not the 5 s" in m for m in msgs)
    assert res.summary["input_gaps"] == 2                  # across the missing day, and the hole inside day 3
    assert res.summary["skip_reasons"].get("post_gap", 0) >= 1
    assert all("entry_bar" in tr for tr in res.trades)
    assert not any(1200 <= tr["entry_bar"] < 1400 + GAP_HOLD_BARS for tr in res.trades)


def test_day_file_gap_hold_column_is_read_and_is_not_an_asset(tmp_path):
    synth.generate(tmp_path, 1, 5, bars=1200)
    f = next(tmp_path.glob("*.parquet"))
    t = pq.read_table(f)
    flag = [i in (3, 4) for i in range(t.num_rows)]
    pq.write_table(t.append_column("gap_hold", pa.array(flag, type=pa.bool_())), f)
    day = load_day(f.stem, f)
    assert "gap_hold" not in day.assets and day.gap_hold.tolist() == flag
