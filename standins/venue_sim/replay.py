"""Replay driver: recorded 1-minute klines (CSV in Binance archive format, or Parquet) as price paths.

Design notes: ``docs/design/standins.venue_sim.md``.
"""
from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np

from standins.venue_sim.universe import SECTORS, SymbolSpec, _step_for, _tick_for

log = logging.getLogger(__name__)


class ReplayError(ValueError):
    """The replay directory is missing, empty or holds an unreadable file (message names the file)."""


def _load_csv(path: Path) -> np.ndarray:
    rows = []
    with path.open(newline="") as fh:
        for ln, row in enumerate(csv.reader(fh), 1):
            if not row or not row[0].strip():
                continue
            try:
                t = int(float(row[0]))
                o, h, lo, c = (float(x) for x in row[1:5])
            except (ValueError, IndexError) as exc:
                if ln == 1:      # tolerate a header line
                    continue
                raise ReplayError(f"{path}:{ln}: bad kline row {row[:6]!r}: {exc}") from exc
            if not all(math.isfinite(v) and v > 0 for v in (o, h, lo, c)):
                raise ReplayError(f"{path}:{ln}: non-positive or non-finite price in {row[:5]!r}")
            rows.append((t, o, h, lo, c))
    if not rows:
        raise ReplayError(f"{path}: no kline rows")
    return np.array(rows, dtype=np.float64)


def _load_parquet(path: Path) -> np.ndarray:
    try:
        import pyarrow.parquet as pq
        tbl = pq.read_table(path, columns=["open_time", "open", "high", "low", "close"])
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise ReplayError(f"{path}: unreadable parquet: {exc}") from exc
    arr = np.column_stack([np.asarray(tbl.column(c).to_numpy(), dtype=np.float64)
                           for c in ("open_time", "open", "high", "low", "close")])
    if arr.size == 0:
        raise ReplayError(f"{path}: no kline rows")
    return arr


class ReplayDriver:
    """Serve recorded mids per tick for the symbols found in a replay directory."""

    def __init__(self, directory: str | Path) -> None:
        d = Path(directory)
        if not d.is_dir():
            raise ReplayError(f"replay directory {d} does not exist")
        files = sorted([*d.glob("*.csv"), *d.glob("*.parquet")])
        if not files:
            raise ReplayError(f"replay directory {d} holds no <SYMBOL>.csv or .parquet files")
        self.symbols: list[str] = []
        self.data: list[np.ndarray] = []
        for f in files:
            arr = _load_csv(f) if f.suffix == ".csv" else _load_parquet(f)
            t = arr[:, 0]
            arr[:, 0] = np.where(t > 1e14, t // 1000, t)   # µs archives -> ms
            arr = arr[np.argsort(arr[:, 0], kind="stable")]
            self.symbols.append(f.stem.upper())
            self.data.append(arr)
        self.start_ms = int(max(a[0, 0] for a in self.data))
        self.end_ms = int(max(a[-1, 0] for a in self.data)) + 60_000

    def universe(self) -> tuple[SymbolSpec, ...]:
        """Return contract specs for the replayed symbols (tick and lot sizes from the price level)."""
        specs = []
        for sym, arr in zip(self.symbols, self.data):
            price = float(arr[0, 1])
            tick, pdec = _tick_for(price)
            step, qdec = _step_for(price)
            specs.append(SymbolSpec(sym, sym[:-4] if sym.endswith("USDT") else sym, price, tick, pdec,
                                    step, qdec, len(SECTORS) - 1, 1.0, 1.0, 200_000.0))
        return tuple(specs)

    def mids(self, t_ms: int) -> np.ndarray:
        """Return the interpolated mid of every replayed symbol at market time ``t_ms``."""
        out = np.empty(len(self.data))
        for k, arr in enumerate(self.data):
            j = int(np.searchsorted(arr[:, 0], t_ms, side="right")) - 1
            if j < 0:
                out[k] = arr[0, 1]
                continue
            t0, o, h, lo, c = arr[j]
            frac = (t_ms - t0) / 60_000.0
            if frac >= 1.0:
                out[k] = c
                continue
            path = (o, lo, h, c) if c >= o else (o, h, lo, c)
            x = frac * 3.0
            seg = min(int(x), 2)
            w = x - seg
            out[k] = path[seg] * (1 - w) + path[seg + 1] * w
        return out
