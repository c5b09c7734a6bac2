"""Sub-day ACB in the backtest (issue 32): the acb_processor's state machine replayed over the ExF history.

The ExF history is written by exf_fetcher's own writer (``_atomic_parquet``); the expected processor output
is computed here with the processor's former numpy formulas (window median, ``np.percentile`` over the whole
scan history), independently of :class:`prod.alpha.acb_live.LiveAcb`.
"""
from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from prod.alpha import acb
from prod.alpha.acb_live import LiveAcb, percentile_linear, replay_updates
from prod.alpha.exits import SUBDAY_ACB
from prod.backtest import synth
from prod.backtest.data import load_day, load_exf_history
from prod.backtest.runner import BacktestError, BacktestOptions, run_backtest
from prod.configs import BLUE_PATH
from services.exf_fetcher.main import _atomic_parquet

BARS = 4000
CALM = {"funding_btc": 0.0001, "dvol_btc": 40.0, "fng": 60.0, "taker": 1.1}
BEAR = {"funding_btc": -0.0003, "dvol_btc": 90.0, "fng": 20.0, "taker": 0.7}


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    d = tmp_path_factory.mktemp("subday")
    synth.generate(d, 2, 42, bars=BARS)
    (d / "exf_daily.json").unlink()          # the daily file is not what this test is about
    return d


def _day0_ts(days) -> float:
    return dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()


def _history(path, rows):
    _atomic_parquet([{"ts": t, **f, **{f"{k}_status": "OK" for k in f}} for t, f in rows], path)
    return path


def test_incremental_percentile_is_numpys_bit_for_bit():
    rng = np.random.default_rng(3)
    for n in [1, 2, 3, 5, 10, 49, 50, 51, 333, 1000]:
        v = rng.normal(0, 0.02, n)
        assert percentile_linear(sorted(v), 60.0) == float(np.percentile(v, 60.0))
    live = LiveAcb(scan_history=200, min_scans=50)
    hist = []
    for i in range(700):
        x = None if i % 97 == 0 else (math.nan if i % 89 == 0 else float(rng.normal(0, 0.01)))
        live.add_scan(i, x)
        if x is not None:
            hist = (hist + [x])[-200:]
        fin = [h for h in hist if math.isfinite(h)]
        want = float(np.percentile(fin, 60.0)) if len(hist) >= 50 and fin else None
        assert live.threshold() == want


def _expected_writes(exf_rows, ts, scans, w750):
    """The processor as it was written with numpy: recompute after each new input, write on a new decision."""
    window, hist, out, last = [], [], [], None
    events = [(r["ts"], 0, "exf", r) for r in exf_rows] + [(t, 1, "scan", (s, w)) for t, s, w in zip(ts, scans, w750)]
    for t, _, kind, x in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == "exf":
            window = (window + [{k: x[k] for k in acb.FACTOR_NAMES}])[-10:]
        else:
            if x[1] is None:
                continue
            hist = (hist + [x[1]])[-17_280:]
        fin = [h for h in hist if math.isfinite(h)]
        thr = float(np.percentile(fin, 60.0)) if len(hist) >= 50 and fin else None
        res = acb.compute_acb(acb.daily_factors(window), acb.daily_w750(hist[-10:]) if hist else None, thr, 0.0)
        d = (res.boost, res.beta, res.signals)
        if d != last:
            last = d
            out.append((t, d))
    return out


def test_replay_gives_the_live_processors_writes_for_the_same_inputs(days, tmp_path):
    t0 = _day0_ts(days)
    rows = [(t0 - 600 + 60 * i, CALM) for i in range(10)] + [(t0 + 5 * 1500 + 30 * i + 1, BEAR) for i in range(12)]
    hist = load_exf_history(_history(tmp_path / "exf", rows))
    assert [r["ts"] for r in hist] == sorted(t for t, _ in rows)
    day = load_day("2026-01-01", days / "2026-01-01.parquet")
    ts = day.timestamp_ns / 1e9
    w750 = [v if math.isfinite(v) else None for v in day.v750.tolist()]
    state = LiveAcb()
    writes, last = replay_updates(state, state.decision(), hist, ts, day.scan_number.tolist(), w750)
    want = _expected_writes(hist, ts.tolist(), day.scan_number.tolist(), w750)
    assert [(w.t, (w.boost, w.beta, w.signals)) for w in writes] == want[1:]   # [0]: the start state, no write
    assert last == want[-1][1]
    boosts = [w for w in writes if w.cause == "exf" and w.boost > 1.5]
    assert boosts, "the bearish rows never raised the boost"
    first = boosts[0]
    assert ts[first.bar - 1] <= first.t < ts[first.bar]          # lands at the first bar after the write


def _trades(res):
    return [(t["entry_bar"], t["exit_bar"], t["asset"], t["notional"], t["reason"]) for t in res.trades]


def test_an_exf_change_mid_day_changes_the_boost_from_that_bar_on(days, tmp_path):
    t0 = _day0_ts(days)
    calm_all = _history(tmp_path / "calm", [(t0 - 600 + 60 * i, CALM) for i in range(10)])
    t_change = t0 + 5 * 1800 + 2.5         # between bar 1800 and 1801
    switch = _history(tmp_path / "switch", [(t0 - 600 + 60 * i, CALM) for i in range(10)]
                      + [(t_change + 0.01 * i, BEAR) for i in range(10)])
    o = dict(config=BLUE_PATH, data=days, png=False, date_to=dt.date(2026, 1, 1))
    base = run_backtest(BacktestOptions(summary=tmp_path / "a.json", exf_history=calm_all, **o))
    sw = run_backtest(BacktestOptions(summary=tmp_path / "b.json", exf_history=switch, **o))
    pd_base, pd_sw = base.summary["per_day"][0], sw.summary["per_day"][0]
    assert pd_base["acb_source"] == pd_sw["acb_source"] == "LIVE_REPLAY"
    assert pd_base["boost_start"] == pd_sw["boost_start"] == 1.0 and pd_base["boost"] == 1.0
    assert pd_sw["boost"] == pytest.approx(1.0 + 0.5 * math.log1p(4.0))       # four bearish signals
    assert pd_sw["acb_updates"] > pd_base["acb_updates"]
    landing = 1801
    before = [t for t in _trades(base) if t[0] < landing]
    assert before and [t for t in _trades(sw) if t[0] < landing] == before    # same trades before the bar
    after_b = [t for t in _trades(base) if t[0] >= landing]
    after_s = [t for t in _trades(sw) if t[0] >= landing]
    assert after_b and after_s and after_s != after_b                          # a bigger boost from that bar on
    # the compiled replay and the per-bar reference apply the updates at the same bars
    ref = run_backtest(BacktestOptions(summary=tmp_path / "c.json", exf_history=switch, python_loop=True, **o))
    assert _trades(ref) == _trades(sw) and ref.summary["per_day"][0]["acb_updates"] == pd_sw["acb_updates"]


def test_a_boost_drop_mid_trade_forces_the_subday_exit(days, tmp_path):
    t0 = _day0_ts(days)
    bear_all = _history(tmp_path / "bear", [(t0 - 600 + 60 * i, BEAR) for i in range(10)])
    o = dict(config=BLUE_PATH, data=days, png=False, date_to=dt.date(2026, 1, 1))
    base = run_backtest(BacktestOptions(summary=tmp_path / "a.json", exf_history=bear_all, **o))
    held = [t for t in base.trades if t["exit_bar"] - t["entry_bar"] >= 6 and t["reason"] != SUBDAY_ACB]
    assert held, "no trade long enough to cut"
    tr = held[0]
    bar = tr["entry_bar"] + 2
    t_drop = t0 + 5 * bar + 1.0                # after bar `bar`: lands on bar + 1
    drop = _history(tmp_path / "drop", [(t0 - 600 + 60 * i, BEAR) for i in range(10)]
                    + [(t_drop + 0.01 * i, CALM) for i in range(10)])
    cut = run_backtest(BacktestOptions(summary=tmp_path / "b.json", exf_history=drop, **o))
    hit = [t for t in cut.trades if t["entry_bar"] == tr["entry_bar"]]
    assert hit and hit[0]["reason"] == SUBDAY_ACB and hit[0]["exit_bar"] == bar + 1
    assert cut.summary["per_day"][0]["boost"] == 1.0 and cut.summary["exit_reasons"][SUBDAY_ACB] >= 1


def test_a_missing_exf_history_dir_is_refused_by_name(days, tmp_path):
    with pytest.raises(BacktestError, match="--exf-history: .*nope"):
        run_backtest(BacktestOptions(config=BLUE_PATH, data=days, png=False, summary=tmp_path / "s.json",
                                     exf_history=tmp_path / "nope"))
