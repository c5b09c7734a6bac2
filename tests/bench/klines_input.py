"""The import benchmark's input: ``days`` × ``symbols`` Binance-archive 1 m kline CSVs built from the real BTCUSDT
1 m closes in ``shared/data/real`` (17 days), widened by the tests' mixing model on returns:
r_k(t) = 0.6 r(t) + 0.8 r(t + 997 k), indices wrapped inside the real series (43 days need the 17 recorded
days about 2.5 times), prices the cumulative sum from 100. Files are ``SYMkUSDT-1m-YYYY-MM-DD.csv``, one per
symbol and day, headerless with the archive's 12 columns."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

T0_MS = 1_672_531_200_000      # 2023-01-01 00:00 UTC


def real_btc_returns(real_dir: Path) -> np.ndarray:
    closes: list[float] = []
    for f in sorted(Path(real_dir).glob("BTCUSDT-1m-*.csv")):
        with f.open() as fh:
            closes.extend(float(row[4]) for row in csv.reader(fh))
    return np.diff(np.log(np.array(closes)))


def build(out: Path, real_dir: Path, days: int = 43, symbols: int = 94) -> list[Path]:
    r = real_btc_returns(real_dir)
    rows = days * 1440
    t = np.arange(rows)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(symbols):
        rk = 0.6 * r[t % r.size] + 0.8 * r[(t + 997 * k) % r.size]
        close = 100.0 * np.exp(np.cumsum(rk))
        sym = f"SYM{k:03d}USDT"
        for d in range(days):
            t_ms = T0_MS + (d * 1440 + np.arange(1440)) * 60_000
            day = np.datetime_as_string(np.datetime64(int(t_ms[0]), "ms"), unit="D")
            path = out / f"{sym}-1m-{day}.csv"
            c = close[d * 1440:(d + 1) * 1440]
            with path.open("w") as fh:
                for tm, cl in zip(t_ms.tolist(), c.tolist()):
                    fh.write(f"{tm},{cl:.6f},{cl:.6f},{cl:.6f},{cl:.6f},1.0,{tm + 59_999},1.0,1,0.5,0.5,0\n")
            files.append(path)
    return files
