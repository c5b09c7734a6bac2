"""Read daily backtest Parquet files (shared/ARCHITECTURE.md §5) into validated column arrays.

A day file ``YYYY-MM-DD.parquet`` holds ``timestamp, scan_number, vel_div``,
``v50/v150/v300/v750_lambda_max_velocity``, ``instability_50``, ``instability_150`` and one price
column per asset; every other numeric column is taken as an asset price. A file that cannot be
read, or lacks ``vel_div`` / ``v50_lambda_max_velocity`` / ``v750_lambda_max_velocity`` or any asset
column, is reported (:class:`DayFileError`, message naming the file) and the caller skips the day.
Bad values inside a readable file are kept as NaN here and filtered bar by bar by the replay. An
optional ``gap_hold`` column (the scanner's post-gap flag, issue 21) is read when present.

With ``--ob-dir`` it also reads the order-book Parquet obf_universe records (:func:`load_ob_history`,
issue 17) so the replay's OB layers (§9) see the books of the time instead of the neutral fallback.

Also reads the optional external-factor file ``exf_daily.json`` (date → factors) written by
``prod.backtest.synth`` or by an exf archive export.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


EXF_HISTORY_FACTORS = ("funding_btc", "dvol_btc", "fng", "taker")


def load_exf_history(exf_dir: Path) -> list[dict[str, Any]]:
    """Read exf_fetcher's history ``<dir>/date=YYYY-MM-DD/part-NNN.parquet`` (one row per ``exf_latest`` push:
    ``ts`` seconds and the four factors, null when stale or missing) into rows sorted by ``ts``.

    A missing directory is a :class:`DayFileError` naming it; an unreadable part file, a file without ``ts``
    and a row with no finite ``ts`` are logged (file named) and left out."""
    d = Path(exf_dir)
    if not d.is_dir():
        raise DayFileError(f"{d}: no such exf history directory (exf_fetcher writes <data>/exf/date=YYYY-MM-DD/)")
    rows: list[dict[str, Any]] = []
    for p in sorted(d.glob("date=*/part-*.parquet")):
        try:
            t = pq.read_table(p)
        except Exception as exc:  # noqa: BLE001 - one bad part file is dropped, named
            log.warning("backtest: exf history %s unreadable, skipped: %r", p, exc)
            continue
        if "ts" not in t.column_names:
            log.warning("backtest: exf history %s has no ts column, skipped", p)
            continue
        cols = {c: t.column(c).to_pylist() if c in t.column_names else [None] * t.num_rows
                for c in ("ts", *EXF_HISTORY_FACTORS)}
        bad = 0
        for i in range(t.num_rows):
            ts = cols["ts"][i]
            if not isinstance(ts, (int, float)) or not math.isfinite(ts):
                bad += 1
                continue
            rows.append({"ts": float(ts), **{k: cols[k][i] for k in EXF_HISTORY_FACTORS}})
        if bad:
            log.warning("backtest: exf history %s: %d row(s) without a finite ts dropped", p, bad)
    rows.sort(key=lambda r: r["ts"])
    return rows


# ── recorded order books (issue 17: the OB-aware backtest) ────────────────────────────────────
OB_FIELDS = ("imbalance", "imbalance_ma5", "imbalance_persistence", "withdrawal_velocity", "depth_quality",
             "fill_probability")


@dataclass
class ObHistory:
    """The ``<data>/ob_universe/date=*/part-*.parquet`` rows of obf_universe, per symbol in time order.

    :meth:`advance` hands each symbol's latest row at or before a bar's time to the engine's
    :class:`~prod.alpha.ob.InProcessOBProvider` with the live trader's rules (``TraderCore.on_book``):
    the file's ``imbalance_ma5`` / ``imbalance_persistence`` when present, else the mean and sign
    persistence of the last five imbalances; ``withdrawal_velocity`` 0 when absent. A row with a
    non-finite value is dropped (counted) as the live provider drops it.
    """

    times: dict[str, np.ndarray]
    rows: dict[str, list[dict]]
    files: int
    skipped_files: list[dict]
    pos: dict[str, int] = dataclasses.field(default_factory=dict)
    hist: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    applied: int = 0
    dropped: int = 0
    next_t: float = -math.inf

    def advance(self, provider: Any, t_s: float) -> None:
        """Feed ``provider`` every row with ``snapshot_utc <= t_s`` not fed yet (the last one wins)."""
        if t_s < self.next_t:
            return
        for sym, ts in self.times.items():
            i = self.pos.get(sym, 0)
            if i >= ts.shape[0] or ts[i] > t_s:
                continue
            j = int(np.searchsorted(ts, t_s, side="right"))
            rows = self.rows[sym]
            for r in rows[i:j]:                     # the imbalance history sees every row, as live
                v = r.get("imbalance")
                if isinstance(v, (int, float)) and math.isfinite(v):
                    h = self.hist.setdefault(sym, [])
                    h.append(float(v))
                    del h[:-5]
            self.pos[sym] = j
            self._apply(provider, sym, rows[j - 1])
        self.next_t = min((float(ts[self.pos.get(s, 0)]) for s, ts in self.times.items()
                           if self.pos.get(s, 0) < ts.shape[0]), default=math.inf)

    def _apply(self, provider: Any, sym: str, r: dict) -> None:
        h = self.hist.get(sym) or [0.0]
        ma5 = sum(h) / len(h)
        sign = 1 if ma5 > 0 else -1 if ma5 < 0 else 0
        pers = sum(1 for v in h if (v > 0) - (v < 0) == sign) / len(h) if sign else 0.0
        d = {"imbalance_ma5": r.get("imbalance_ma5") if r.get("imbalance_ma5") is not None else ma5,
             "imbalance_persistence": (r.get("imbalance_persistence") if r.get("imbalance_persistence") is not None
                                       else pers),
             "withdrawal_velocity": r.get("withdrawal_velocity") if r.get("withdrawal_velocity") is not None else 0.0,
             "depth_quality": r.get("depth_quality", 1.0), "fill_probability": r.get("fill_probability", 0.5)}
        try:
            provider.update_asset(sym, d)
            self.applied += 1
        except ValueError:
            self.dropped += 1


def load_ob_history(ob_dir: Path, assets: tuple[str, ...] | None = None) -> ObHistory:
    """Read obf_universe's Parquet parts under ``ob_dir`` (``date=YYYY-MM-DD/part-NNN.parquet``).

    An unreadable part or one without ``snapshot_utc``/``symbol`` is logged naming the file and skipped
    (listed in ``skipped_files``); a directory with no part at all raises :class:`DayFileError`.
    """
    parts = sorted(Path(ob_dir).glob("date=*/part-*.parquet")) or sorted(Path(ob_dir).glob("*.parquet"))
    if not parts:
        raise DayFileError(f"{ob_dir}: no obf_universe Parquet parts (date=YYYY-MM-DD/part-NNN.parquet)")
    by_sym: dict[str, list[tuple[float, dict]]] = {}
    skipped: list[dict] = []
    want = set(assets) if assets else None
    for p in parts:
        try:
            t = pq.read_table(p)
            names = set(t.column_names)
            if not {"snapshot_utc", "symbol"} <= names:
                raise DayFileError("missing snapshot_utc/symbol")
            cols = ["snapshot_utc", "symbol"] + [c for c in OB_FIELDS if c in names]
            recs = t.select(cols).to_pylist()
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for corrupt files
            log.error("backtest: OB file %s skipped: %s: %s", p, type(exc).__name__, exc)
            skipped.append({"file": str(p), "reason": f"{type(exc).__name__}: {exc}"})
            continue
        for r in recs:
            sym, ts = r.pop("symbol"), r.pop("snapshot_utc")
            if not isinstance(sym, str) or not isinstance(ts, (int, float)) or (want and sym not in want):
                continue
            by_sym.setdefault(sym, []).append((float(ts), r))
    times, rows = {}, {}
    for sym, lst in by_sym.items():
        lst.sort(key=lambda x: x[0])
        times[sym] = np.array([x[0] for x in lst], dtype=np.float64)
        rows[sym] = [x[1] for x in lst]
    return ObHistory(times, rows, len(parts) - len(skipped), skipped)
