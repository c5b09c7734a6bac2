"""Read daily backtest Parquet files (shared/ARCHITECTURE.md §5) into validated column arrays.

Design notes: ``docs/design/prod.backtest.md``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

# the day file is read by the module that writes it (prod.scans.daily); re-exported for the backtest
from prod.scans.daily import (META_COLUMNS, REQUIRED_COLUMNS, DayData, DayFileError,  # noqa: F401
                              list_day_files, read_day_file as load_day)

log = logging.getLogger("dolphin.backtest")

EXF_FILENAME = "exf_daily.json"


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


# ── recorded order books (the OB-aware backtest) ────────────────────────────────────
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
