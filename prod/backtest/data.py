"""Read daily backtest Parquet files (shared/ARCHITECTURE.md §5) into validated column arrays.

A day file ``YYYY-MM-DD.parquet`` holds ``timestamp, scan_number, vel_div``,
``v50/v150/v300/v750_lambda_max_velocity``, ``instability_50``, ``instability_150`` and one price
column per asset; every other numeric column is taken as an asset price. A file that cannot be
read, or lacks ``vel_div`` / ``v50_lambda_max_velocity`` / ``v750_lambda_max_velocity`` or any asset
column, is reported (:class:`DayFileError`, message naming the file) and the caller skips the day.
Bad values inside a readable file are kept as NaN here and filtered bar by bar by the replay. An
optional ``gap_hold`` column (the scanner's post-gap flag, issue 21) is read when present.

Also reads the optional external-factor file ``exf_daily.json`` (date → factors) written by
``prod.backtest.synth`` or by an exf archive export.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger("dolphin.backtest")

META_COLUMNS = frozenset({
    "timestamp", "scan_number", "vel_div", "v50_lambda_max_velocity", "v150_lambda_max_velocity",
    "v300_lambda_max_velocity", "v750_lambda_max_velocity", "instability_50", "instability_150",
    "__index_level_0__", "gap_s", "gap_hold", "carried",
})
REQUIRED_COLUMNS = ("vel_div", "v50_lambda_max_velocity", "v750_lambda_max_velocity")
EXF_FILENAME = "exf_daily.json"


class DayFileError(ValueError):
    """A daily Parquet file is unreadable or lacks required columns (skip the day)."""


@dataclass(frozen=True)
class DayData:
    """One day's bars as arrays: scalars per bar and a (bars × assets) price matrix."""

    date: str
    path: Path
    timestamp_ns: np.ndarray
    scan_number: np.ndarray
    vel_div: np.ndarray
    v50: np.ndarray
    v750: np.ndarray
    assets: tuple[str, ...]
    prices: np.ndarray
    gap_hold: np.ndarray | None = None     # issue 21: the scanner's post-gap flag per bar, when the file has it

    @property
    def n_bars(self) -> int:
        return int(self.vel_div.shape[0])


def _as_f64(col: pa.ChunkedArray) -> np.ndarray:
    arr = col.cast(pa.float64(), safe=False) if col.type != pa.float64() else col
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)


def list_day_files(data_dir: Path, date_from: dt.date | None = None,
                   date_to: dt.date | None = None) -> list[tuple[str, Path]]:
    """Return ``(date, path)`` of the ``YYYY-MM-DD.parquet`` files in range (inclusive), sorted."""
    out = []
    for p in sorted(Path(data_dir).glob("*.parquet")):
        try:
            d = dt.date.fromisoformat(p.stem)
        except ValueError:
            log.warning("backtest: %s: name is not YYYY-MM-DD.parquet, ignored", p)
            continue
        if (date_from and d < date_from) or (date_to and d > date_to):
            continue
        out.append((d.isoformat(), p))
    return out


def load_day(date: str, path: Path) -> DayData:
    """Read and validate one day file; raise :class:`DayFileError` naming the file on failure."""
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for corrupt files
        raise DayFileError(f"{path}: unreadable Parquet ({type(exc).__name__}: {exc})") from None
    names = table.column_names
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise DayFileError(f"{path}: missing required column(s) {missing}")
    assets = tuple(c for c in names if c not in META_COLUMNS
                   and (pa.types.is_floating(table.schema.field(c).type)
                        or pa.types.is_integer(table.schema.field(c).type)))
    if not assets:
        raise DayFileError(f"{path}: no asset price columns")
    n = table.num_rows
    if "timestamp" in names:
        tcol = table.column("timestamp")
        if pa.types.is_timestamp(tcol.type):
            ts = tcol.cast(pa.timestamp("ns", tz=tcol.type.tz)).cast(pa.int64())
        else:
            ts = tcol.cast(pa.int64(), safe=False)
        timestamp_ns = np.asarray(ts.to_numpy(zero_copy_only=False), dtype=np.int64)
    else:
        timestamp_ns = np.zeros(n, dtype=np.int64)
    scan = (np.asarray(table.column("scan_number").to_numpy(zero_copy_only=False), dtype=np.int64)
            if "scan_number" in names else np.arange(n, dtype=np.int64))
    prices = np.empty((n, len(assets)), dtype=np.float64)
    for j, a in enumerate(assets):
        prices[:, j] = _as_f64(table.column(a))
    return DayData(date=date, path=Path(path), timestamp_ns=timestamp_ns, scan_number=scan,
                   vel_div=_as_f64(table.column("vel_div")),
                   v50=_as_f64(table.column("v50_lambda_max_velocity")),
                   v750=_as_f64(table.column("v750_lambda_max_velocity")),
                   assets=assets, prices=prices,
                   gap_hold=(np.asarray(table.column("gap_hold").cast("bool").fill_null(False)
                                        .to_numpy(zero_copy_only=False), dtype=bool)
                             if "gap_hold" in names else None))


def load_exf(path: Path | None) -> dict[str, dict[str, float]]:
    """Read ``exf_daily.json`` (date → {funding_btc, dvol_btc, fng, taker}); {} if absent or bad."""
    if path is None or not Path(path).is_file():
        return {}
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        log.warning("backtest: %s: unreadable exf file (%s); ACB runs without external factors", path, exc)
        return {}
    if not isinstance(raw, dict):
        log.warning("backtest: %s: expected a JSON object date -> factors; ignored", path)
        return {}
    out: dict[str, dict[str, float]] = {}
    for date, f in raw.items():
        if isinstance(f, dict):
            out[str(date)] = {k: float(v) for k, v in f.items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    return out
