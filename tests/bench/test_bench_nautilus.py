"""Benchmark: the Nautilus backtest engine against the native one on the same synthetic days
→ run_logs/bench_nautilus.json.

Measures, after a warm-up replay of both engines (numba compilation and Nautilus's first-run costs not counted):
* throughput in scans (bars) per second: native (``step_bar`` loop and whole replay) and Nautilus (the
  ``BacktestEngine.run`` of the driver bars, and the data points it processes: one bar per asset per scan);
* the decision match rate: (entry bar, asset, side) present in both engines / in either;
* per trade, the fill and fee difference (Nautilus fill vs the native engine's price, both engines' fees and
  net PnL). Why they differ: docs/nautilus.md.
Days: DOLPHIN_BENCH_NT_DAYS (default 2) full synthetic days of 17,280 5-s scans × 50 assets.
"""
from __future__ import annotations

import json
import os
import statistics

import pytest

from prod.backtest import synth
from prod.backtest.runner import BacktestOptions, run_backtest
from prod.configs import BLUE_PATH
from prod.nautilus import require_nautilus
from tests.helpers import REPO_ROOT

require_nautilus()
from prod.nautilus.backtest import run_nautilus_backtest  # noqa: E402

DAYS = int(os.environ.get("DOLPHIN_BENCH_NT_DAYS", "2"))
OUT = REPO_ROOT / "run_logs" / "bench_nautilus.json"


def _key(t):
    return (t["entry_bar"], t["asset"], t["direction"])


@pytest.mark.timeout(1800)
def test_bench_nautilus_vs_native(tmp_path):
    warm = tmp_path / "warm"
    synth.generate(warm, 1, 3, bars=1200)
    run_backtest(BacktestOptions(config=BLUE_PATH, data=warm, summary=tmp_path / "w1.json", png=False))
    run_nautilus_backtest(BacktestOptions(config=BLUE_PATH, data=warm, summary=tmp_path / "w2.json", png=False))

    data = tmp_path / "days"
    synth.generate(data, DAYS, 42)
    nat = run_backtest(BacktestOptions(config=BLUE_PATH, data=data, summary=tmp_path / "native.json", png=False))
    nt = run_nautilus_backtest(BacktestOptions(config=BLUE_PATH, data=data, summary=tmp_path / "nt.json", png=False))
    a = {_key(t): t for t in nat.summary["trade_list"]}
    b = {_key(t): t for t in nt.summary["trade_list"]}
    both = set(a) & set(b)
    rate = len(both) / max(1, len(set(a) | set(b)))
    per_trade = []
    for k in sorted(both):
        x, y = a[k], b[k]
        per_trade.append({
            "entry_bar": k[0], "asset": k[1], "side": "SHORT" if k[2] < 0 else "LONG", "reason": x["reason"],
            "entry_fill_bps": (y["entry_price"] / x["entry_price"] - 1) * 1e4,
            "exit_fill_bps": (y["exit_price"] / x["exit_price"] - 1) * 1e4,
            "native_notional": x["notional"], "nautilus_notional": y["qty"] * y["entry_price"],
            "native_fees": x["fees"], "nautilus_fees": y["fees"],
            "native_net": x["net_pnl"], "nautilus_net": y["net_pnl"]})
    nat_bps = nat.summary["timing"]["bars_per_s"]
    res = {
        "days": DAYS, "scans": nat.summary["bars"], "assets": 50,
        "native": {"step_bar_bars_per_s": nat_bps, "wall_s": nat.summary["timing"]["wall_s"],
                   "wall_bars_per_s": nat.summary["bars"] / nat.summary["timing"]["wall_s"],
                   "trades": nat.summary["trades"], "roi_pct": nat.summary["roi_pct"]},
        "nautilus": {"run_bars_per_s": nt.summary["timing"]["bars_per_s"],
                     "run_data_points_per_s": nt.summary["timing"]["data_points_per_s"],
                     "run_s": nt.summary["timing"]["run_s"], "wall_s": nt.summary["timing"]["wall_s"],
                     "wall_bars_per_s": nt.summary["bars"] / nt.summary["timing"]["wall_s"],
                     "trades": nt.summary["trades"], "roi_pct": nt.summary["roi_pct"]},
        "decision_match_rate": rate, "decisions_native": len(a), "decisions_nautilus": len(b),
        "fill_diff_mean": {k: statistics.fmean(p[k] for p in per_trade) for k in
                           ("entry_fill_bps", "exit_fill_bps", "native_fees", "nautilus_fees", "native_net",
                            "nautilus_net")} if per_trade else {},
        "per_trade": per_trade,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "per_trade"}, indent=1))
    assert len(a) > 0 and rate == 1.0
    assert res["nautilus"]["run_bars_per_s"] > 0 and nat_bps > 0
