"""Generate synthetic daily backtest Parquet files (shared/ARCHITECTURE.md §5 schema) so the
backtest can run before the scanner has recorded anything.

Design notes: ``docs/design/prod.backtest.md``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from prod.settings import PRIORITY_SYMBOLS

BARS_PER_DAY = 17_280
BAR_SECONDS = 5
META_COLUMNS: tuple[str, ...] = (
    "timestamp", "scan_number", "vel_div", "v50_lambda_max_velocity", "v150_lambda_max_velocity",
    "v300_lambda_max_velocity", "v750_lambda_max_velocity", "instability_50", "instability_150",
)
EXF_FILENAME = "exf_daily.json"

_ANCHOR_PRICES = {"BTCUSDT": 95_000.0, "ETHUSDT": 3_400.0, "BNBUSDT": 650.0, "SOLUSDT": 190.0,
                  "XRPUSDT": 2.3, "DOGEUSDT": 0.32}


def _asset_profile(seed: int, symbols: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 1_000_003])
    n = len(symbols)
    betas = rng.uniform(0.6, 1.8, n)
    idio = rng.uniform(0.00012, 0.00030, n)
    p0 = np.exp(rng.uniform(np.log(0.05), np.log(600.0), n))
    for i, s in enumerate(symbols):
        if s in _ANCHOR_PRICES:
            p0[i] = _ANCHOR_PRICES[s]
    return betas, idio, p0


def _episodes(rng: np.random.Generator, n: int) -> list[tuple[int, int, int, float, float, bool]]:
    k = max(3, int(rng.poisson(8)))
    out = []
    starts = np.sort(rng.choice(np.arange(300, n - 700), size=k, replace=False))
    last_end = 0
    for s in starts:
        s = int(max(s, last_end + 50))
        if s >= n - 700:
            break
        fall = int(rng.integers(40, 121))
        rec = int(rng.integers(150, 401))
        depth = float(rng.uniform(0.006, 0.025))
        dip = float(rng.uniform(0.03, 0.09))
        real = bool(rng.random() < 0.55)
        out.append((s, fall, rec, depth, dip, real))
        last_end = s + fall + rec
    return out


def make_day(date: dt.date, day_index: int, seed: int, start_prices: np.ndarray | None = None,
             symbols: tuple[str, ...] = PRIORITY_SYMBOLS, bars: int = BARS_PER_DAY) -> pa.Table:
    """Build one synthetic day as an Arrow table (prices continue from ``start_prices`` if given)."""
    rng = np.random.default_rng([seed, day_index])
    betas, idio, p0 = _asset_profile(seed, symbols)
    if start_prices is not None:
        p0 = np.asarray(start_prices, dtype=np.float64)
    n, a = bars, len(symbols)

    # vel_div: AR(1) noise plus episode dips
    eps = rng.normal(0.0, 0.0025, n)
    vd = np.empty(n)
    acc = 0.0
    for i in range(n):  # cheap: 17k steps
        acc = 0.9 * acc + eps[i]
        vd[i] = acc
    drift = np.zeros(n)
    inst_bump = np.zeros(n)
    for s, fall, rec, depth, dip, real in _episodes(rng, n):
        span = np.arange(fall + 60)
        shape = np.exp(-((span - 12.0) ** 2) / (2 * 14.0 ** 2))
        shape[12:] = np.exp(-(span[12:] - 12.0) / (fall / 2.0))
        end = min(n, s - 3 + len(span))
        vd[s - 3:end] -= dip * shape[: end - (s - 3)]
        if real:
            drift[s:s + fall] -= depth / fall
            drift[s + fall:s + fall + rec] += 0.8 * depth / rec
        else:
            drift[s:s + fall] += 0.4 * depth / fall
        inst_bump[s:min(n, s + fall + rec // 2)] += 0.05 * dip / 0.09

    market = rng.normal(0.0, 0.00030, n) + drift
    rets = market[:, None] * betas[None, :] + rng.normal(0.0, 1.0, (n, a)) * idio[None, :]
    rets[0, :] = 0.0
    prices = p0[None, :] * np.exp(np.cumsum(rets, axis=0))

    v750 = np.convolve(rng.normal(0.0, 0.004, n), np.ones(50) / 50.0, mode="same")
    v50 = vd + v750
    v150 = 0.6 * v50 + 0.4 * v750 + rng.normal(0.0, 0.0005, n)
    v300 = 0.3 * v50 + 0.7 * v750 + rng.normal(0.0, 0.0003, n)
    inst50 = 0.02 + np.abs(rng.normal(0.0, 0.005, n)) + inst_bump
    inst150 = 0.015 + np.abs(rng.normal(0.0, 0.003, n)) + 0.5 * inst_bump

    t0 = int(dt.datetime(date.year, date.month, date.day, tzinfo=dt.timezone.utc).timestamp()) * 10**9
    ts = t0 + np.arange(n, dtype=np.int64) * BAR_SECONDS * 10**9
    cols: dict[str, pa.Array] = {
        "timestamp": pa.array(ts, type=pa.timestamp("ns", tz="UTC")),
        "scan_number": pa.array(day_index * bars + np.arange(1, n + 1, dtype=np.int64)),
        "vel_div": pa.array(vd), "v50_lambda_max_velocity": pa.array(v50),
        "v150_lambda_max_velocity": pa.array(v150), "v300_lambda_max_velocity": pa.array(v300),
        "v750_lambda_max_velocity": pa.array(v750),
        "instability_50": pa.array(inst50), "instability_150": pa.array(inst150),
    }
    for j, s in enumerate(symbols):
        cols[s] = pa.array(prices[:, j])
    return pa.table(cols)


def make_exf(date: dt.date, day_index: int, seed: int) -> dict[str, float]:
    """Draw one date's external factors (some days bearish, most not)."""
    rng = np.random.default_rng([seed, day_index, 77])
    return {
        "funding_btc": float(rng.normal(0.00004, 0.00008)),
        "dvol_btc": float(rng.uniform(38.0, 95.0)),
        "fng": float(rng.uniform(10.0, 80.0)),
        "taker": float(rng.uniform(0.72, 1.15)),
    }


def _atomic_write_table(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, use_dictionary=False)     # continuous prices: dictionary pages only cost
    os.replace(tmp, path)


def generate(out: Path, days: int, seed: int, start: dt.date = dt.date(2026, 1, 1),
             bars: int = BARS_PER_DAY, progress: bool = False) -> list[Path]:
    """Write ``days`` daily Parquet files plus ``exf_daily.json`` into ``out``; return the Parquet paths."""
    if days < 1:
        raise ValueError(f"--days={days}: expected >= 1")
    if bars < 800:
        raise ValueError(f"bars={bars}: expected >= 800 (episodes need room)")
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    exf: dict[str, dict[str, float]] = {}
    last: np.ndarray | None = None
    it = range(days)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="synth", unit="day")
    for k in it:
        date = start + dt.timedelta(days=k)
        table = make_day(date, k, seed, start_prices=last, bars=bars)
        last = np.array([table.column(s)[bars - 1].as_py() for s in PRIORITY_SYMBOLS])
        path = out / f"{date.isoformat()}.parquet"
        _atomic_write_table(table, path)
        paths.append(path)
        exf[date.isoformat()] = make_exf(date, k, seed)
    tmp = out / (EXF_FILENAME + ".tmp")
    tmp.write_text(json.dumps(exf, indent=1, sort_keys=True))
    os.replace(tmp, out / EXF_FILENAME)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prod.backtest.synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output directory for YYYY-MM-DD.parquet")
    ap.add_argument("--days", type=int, default=2, help="number of days (default 2)")
    ap.add_argument("--seed", type=int, default=42, help="RNG seed (default 42)")
    ap.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2026, 1, 1),
                    help="first date, YYYY-MM-DD (default 2026-01-01)")
    ap.add_argument("--bars", type=int, default=BARS_PER_DAY, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        paths = generate(args.out, args.days, args.seed, args.start, args.bars, progress=sys.stderr.isatty())
    except ValueError as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return 2
    print(f"synth: wrote {len(paths)} day(s) of {args.bars} bars x {len(PRIORITY_SYMBOLS)} assets "
          f"and {EXF_FILENAME} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
