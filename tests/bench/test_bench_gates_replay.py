"""Real-data replay with every live gate on against the same replay with them off → run_logs/bench_gates_replay.json.

Data (``../shared/data/real``; skipped cleanly without it): the four days of real Binance BTCUSDT 1-minute klines
around the 10 Oct 2025 liquidation cascade (2025-10-08..11) plus ten symbols derived from BTC's real returns as
``beta · r_btc + seeded noise`` (the real data holds BTC only; the same construction as tests/fixtures/klines),
imported into day files by ``scanner.import_klines`` (the project's scanner). External factors are the real
indicators of those days (Binance funding every 8 h — the file is in percent —, Deribit DVOL, Fear & Greed and the
taker buy/sell ratio, daily), laid out as exf_fetcher's history: one row every 10 s carrying each indicator's latest
value at that time.

Gates on: sub-day ACB replayed from that history (``--exf-history``), the MC-forewarner gate with a model trained
here on the same days (``python -m prod.mc train``), the survival stack (``--survival``). Gates off: none of them
(boost 1.0, MC off, APEX). No order-book recordings cover these days, so the OB layers stay neutral in both.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import math
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prod.backtest.runner import BacktestOptions, run_backtest
from prod.configs import BLUE_PATH
from tests.helpers import REPO_ROOT

REAL = REPO_ROOT.parent.parent / "shared" / "data" / "real"
if not REAL.is_dir():
    REAL = Path("/work/shared/data/real")
DAYS = ("2025-10-08", "2025-10-09", "2025-10-10", "2025-10-11")
OUT = REPO_ROOT / "run_logs" / "bench_gates_replay.json"
ALTS = (("ALTA", 2.5, 1.3, 0.0015), ("ALTB", 0.8, 0.9, 0.002), ("ALTC", 120.0, 1.1, 0.001),
        ("ALTD", 14.0, 1.2, 0.0012), ("ALTE", 0.05, 1.5, 0.0025), ("ALTF", 330.0, 0.8, 0.001),
        ("ALTG", 6.0, 1.0, 0.0018), ("ALTH", 1.1, 1.4, 0.002), ("ALTI", 42.0, 0.7, 0.0015),
        ("ALTJ", 0.3, 1.2, 0.003))


def _klines(tmp: Path) -> Path:
    src = tmp / "klines"
    src.mkdir()
    rows = []
    for d in DAYS:
        f = REAL / "binance_spot_btcusdt_1m" / f"BTCUSDT-1m-{d}.csv"
        (src / f.name).write_bytes(f.read_bytes())
        with open(f, newline="") as fh:
            rows += list(csv.reader(fh))
    ts = [int(r[0]) // (1000 if int(r[0]) > 10**14 else 1) for r in rows]     # µs from 2025 -> ms
    closes = [float(r[4]) for r in rows]
    rets = [0.0] + [math.log(b / a) for a, b in zip(closes, closes[1:])]
    rng = random.Random(17)
    for sym, start, beta, vol in ALTS:
        out, c = [], start
        for t, r, ret in zip(ts, rows, rets):
            o = c
            c = o * math.exp(beta * ret + rng.gauss(0, vol))
            hi, lo = max(o, c) * (1 + abs(rng.gauss(0, vol))), min(o, c) * (1 - abs(rng.gauss(0, vol)))
            out.append([t, o, hi, lo, c, round(float(r[5]) * 40, 1)])
        (src / f"{sym}_USDT-1m.json").write_text(json.dumps(out))
    return src


def _asof(series: list[tuple[float, float]], t: float) -> float | None:
    v = None
    for ts, x in series:
        if ts <= t:
            v = x
        else:
            break
    return v


def _exf_history(out: Path) -> int:
    from services.exf_fetcher.main import _atomic_parquet
    ind = REAL / "indicators"
    funding = [(a / 1000, b / 100.0) for a, b in json.loads((ind / "funding_rate_btc.json").read_text())]
    dvol = [(a / 1000, b) for a, b in json.loads((ind / "dvol_btc.json").read_text())]
    taker = [(a / 1000, b) for a, b in json.loads((ind / "taker_ratio_btc.json").read_text())]
    with open(ind / "fng.csv", newline="") as fh:
        fng = [(float(r["timestamp"]), float(r["value"])) for r in csv.DictReader(fh)]
    t0 = dt.datetime.fromisoformat(DAYS[0]).replace(tzinfo=dt.timezone.utc).timestamp() - 3600
    t1 = dt.datetime.fromisoformat(DAYS[-1]).replace(tzinfo=dt.timezone.utc).timestamp() + 86400
    rows, t = [], t0
    while t < t1:
        vals = {"funding_btc": _asof(funding, t), "dvol_btc": _asof(dvol, t), "fng": _asof(fng, t),
                "taker": _asof(taker, t)}
        rows.append({"ts": t, **vals, **{f"{k}_status": "OK" if v is not None else "MISSING" for k, v in vals.items()}})
        t += 10.0
    _atomic_parquet(rows, out)
    return len(rows)


def _summary(s: dict) -> dict:
    return {k: s[k] for k in ("roi_pct", "trades", "max_drawdown_pct", "profit_factor", "win_rate_pct",
                              "final_capital", "exit_reasons", "skip_reasons")} | {
        "per_day": [{k: d.get(k) for k in ("date", "trades", "return_pct", "boost_start", "boost", "beta",
                                           "acb_updates", "posture", "mc_status", "mc_source")}
                    for d in s["per_day"]],
        "acb_subday": s["acb"].get("subday"), "mc_days_by_status": s["mc"]["days_by_status"]}


@pytest.mark.skipif(not (REAL / "binance_spot_btcusdt_1m").is_dir(), reason="no ../shared/data/real here")
def test_real_data_replay_gates_on_vs_off(tmp_path):
    src = _klines(tmp_path)
    data = tmp_path / "data"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scanner.import_klines", str(src), "--out", str(data), "--no-progress"],
                   cwd=REPO_ROOT, check=True, timeout=1800)
    t_import = time.perf_counter() - t
    days = data / "vbt_cache_klines"
    n_exf = _exf_history(data / "exf")
    model = tmp_path / "mc.zip"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "prod.mc", "train", "--data", str(days), "--out", str(model),
                    "--samples", "24", "--window-days", "1"], cwd=REPO_ROOT, check=True, timeout=1800)
    t_train = time.perf_counter() - t
    off = run_backtest(BacktestOptions(config=BLUE_PATH, data=days, summary=tmp_path / "off.json", png=False))
    on = run_backtest(BacktestOptions(config=BLUE_PATH, data=days, summary=tmp_path / "on.json", png=False,
                                      exf_history=data / "exf", mc_model=model, survival=True))
    res = {"kind": "bench_gates_replay", "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(),
           "data": {"days": list(DAYS), "btc": "real Binance spot BTCUSDT 1m", "alts": "10 derived from BTC returns",
                    "bars": off.summary["bars"], "exf_rows": n_exf, "import_s": t_import, "mc_train_s": t_train},
           "gates_off": _summary(off.summary), "gates_on": _summary(on.summary)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=1, default=str))
    print(json.dumps({k: {m: res[k][m] for m in ("roi_pct", "trades", "max_drawdown_pct")}
                      for k in ("gates_off", "gates_on")}, indent=1))
    assert off.summary["bars"] > 0
    assert {d["acb_source"] for d in on.summary["per_day"]} == {"LIVE_REPLAY"}
    assert {d["mc_source"] for d in on.summary["per_day"]} == {"REAL_MODEL"}
