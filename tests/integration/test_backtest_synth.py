"""Synthetic data generator, day-file reader and report figures of the backtest (prod/backtest)."""
from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prod.backtest import synth
from prod.backtest.data import DayFileError, list_day_files, load_day, load_exf
from prod.backtest.report import compute_metrics, max_drawdown, profit_factor, sharpe, write_equity_png
from prod.settings import PRIORITY_SYMBOLS

SMALL = 1_200   # bars per synthetic day in these tests (the CLI default is 17,280)


def test_synth_writes_schema_and_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert synth.main(["--out", str(a), "--days", "2", "--seed", "3", "--bars", str(SMALL)]) == 0
    synth.generate(b, 2, 3, bars=SMALL)
    files = sorted(p.name for p in a.glob("*.parquet"))
    assert files == ["2026-01-01.parquet", "2026-01-02.parquet"]
    for name in files:
        ta, tb = pq.read_table(a / name), pq.read_table(b / name)
        assert ta.equals(tb)
    t = pq.read_table(a / files[0])
    assert t.column_names == list(synth.META_COLUMNS) + list(PRIORITY_SYMBOLS)
    assert t.num_rows == SMALL
    ts = t.column("timestamp").cast(pa.int64()).to_numpy()
    assert np.all(np.diff(ts) == 5 * 10**9)
    assert t.column("scan_number").to_numpy()[0] == 1
    vd = t.column("vel_div").to_numpy()
    v50 = t.column("v50_lambda_max_velocity").to_numpy()
    v750 = t.column("v750_lambda_max_velocity").to_numpy()
    np.testing.assert_allclose(vd, v50 - v750, atol=1e-12)
    assert vd.min() < -0.02                   # at least one instability episode
    prices = np.stack([t.column(s).to_numpy() for s in PRIORITY_SYMBOLS], axis=1)
    assert np.all(np.isfinite(prices)) and np.all(prices > 0)
    t2 = pq.read_table(a / files[1])
    assert t2.column("scan_number").to_numpy()[0] == SMALL + 1     # continuous across days
    assert t2.column("BTCUSDT").to_numpy()[0] == pytest.approx(t.column("BTCUSDT").to_numpy()[-1])
    exf = json.loads((a / synth.EXF_FILENAME).read_text())
    assert set(exf) == {"2026-01-01", "2026-01-02"}
    assert set(exf["2026-01-01"]) == {"funding_btc", "dvol_btc", "fng", "taker"}


def test_synth_day_does_not_depend_on_number_of_days(tmp_path):
    synth.generate(tmp_path / "one", 1, 9, bars=SMALL)
    synth.generate(tmp_path / "three", 3, 9, bars=SMALL)
    assert pq.read_table(tmp_path / "one" / "2026-01-01.parquet").equals(
        pq.read_table(tmp_path / "three" / "2026-01-01.parquet"))


def test_synth_episodes_make_prices_fall_after_the_dip():
    t = synth.make_day(dt.date(2026, 1, 1), 0, 11)
    vd = t.column("vel_div").to_numpy()
    mkt = np.mean([np.log(t.column(s).to_numpy()) for s in PRIORITY_SYMBOLS], axis=0)
    dips = np.flatnonzero((vd[1:] < -0.025) & (vd[:-1] >= -0.025))
    assert len(dips) >= 3
    fwd = [mkt[min(i + 60, len(mkt) - 1)] - mkt[i] for i in dips]
    assert np.median(fwd) < 0        # the market tends to fall after an instability dip


def test_synth_rejects_bad_arguments(tmp_path, capsys):
    assert synth.main(["--out", str(tmp_path), "--days", "0"]) == 2
    assert "--days=0" in capsys.readouterr().err


def test_list_and_load_day_files(tmp_path):
    synth.generate(tmp_path, 3, 5, bars=SMALL)
    (tmp_path / "notes.parquet").write_text("x")
    got = list_day_files(tmp_path, dt.date(2026, 1, 2), dt.date(2026, 1, 3))
    assert [d for d, _ in got] == ["2026-01-02", "2026-01-03"]
    day = load_day(*got[0])
    assert day.n_bars == SMALL and day.assets == PRIORITY_SYMBOLS and day.prices.shape == (SMALL, 50)
    assert day.timestamp_ns[1] - day.timestamp_ns[0] == 5 * 10**9


def test_truncated_and_incomplete_day_files_raise_naming_the_file(tmp_path):
    synth.generate(tmp_path, 1, 5, bars=SMALL)
    good = tmp_path / "2026-01-01.parquet"
    bad = tmp_path / "2026-01-02.parquet"
    bad.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(DayFileError, match="2026-01-02.parquet: unreadable"):
        load_day("2026-01-02", bad)
    t = pq.read_table(good).drop(["vel_div"])
    pq.write_table(t, tmp_path / "2026-01-03.parquet")
    with pytest.raises(DayFileError, match=r"missing required column\(s\) \['vel_div'\]"):
        load_day("2026-01-03", tmp_path / "2026-01-03.parquet")


def test_load_exf_tolerates_absent_and_bad_files(tmp_path):
    assert load_exf(tmp_path / "nope.json") == {}
    p = tmp_path / "exf.json"
    p.write_text("{not json")
    assert load_exf(p) == {}
    p.write_text(json.dumps({"2026-01-01": {"fng": 20, "dvol_btc": "x", "taker": True}}))
    assert load_exf(p) == {"2026-01-01": {"fng": 20.0}}


def test_report_figures():
    assert max_drawdown([100, 120, 90, 130, 65]) == pytest.approx(0.5)
    assert max_drawdown([]) == 0.0
    assert profit_factor([10, -5, 5, -5]) == pytest.approx(1.5)
    assert profit_factor([1, 2]) is None
    r = [0.01, -0.005, 0.02, 0.0]
    assert sharpe(r) == pytest.approx(np.mean(r) / np.std(r, ddof=1) * math.sqrt(365))
    assert sharpe([0.01]) is None and sharpe([0.01, 0.01]) is None
    m = compute_metrics(1000.0, 1100.0, [60, -20, 60], [0.05, 0.0476], [1000, 1060, 1040, 1100])
    assert m.roi_pct == pytest.approx(10.0) and m.trades == 3
    assert m.win_rate_pct == pytest.approx(200 / 3) and m.profit_factor == pytest.approx(6.0)
    assert m.max_drawdown_pct == pytest.approx(20 / 1060 * 100)


def test_equity_png_is_a_png(tmp_path):
    p = write_equity_png([0, 1, 2], [100.0, 101.0, 99.0], tmp_path / "eq.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
