"""Daily Parquet builder: turn one UTC day of the Arrow scan archive into a backtest file (bible §3.1).

Design notes: ``docs/design/prod.scans.md``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from prod.settings import ConfigError, load_settings
from prod.scans import arrow_io

log = logging.getLogger("build_daily")
read_log = logging.getLogger("dolphin.backtest")

MAX_GAP_S = 300.0
SIGNAL_COLUMNS = (("vel_div", "vel_div"),
                  ("v50_lambda_max_velocity", "w50_velocity"),
                  ("v150_lambda_max_velocity", "w150_velocity"),
                  ("v300_lambda_max_velocity", "w300_velocity"),
                  ("v750_lambda_max_velocity", "w750_velocity"),
                  ("instability_50", "w50_instability"),
                  ("instability_150", "w150_instability"))


class PartialDay(RuntimeError):
    """The day's archive does not cover the day; use --allow-partial to build it anyway."""


class ParityError(RuntimeError):
    """The written Parquet file does not equal the Arrow scans."""


@dataclass(frozen=True)
class BuildResult:
    date: str
    path: Path
    rows: int
    partial_reason: str | None


def load_day(arrow_dir: Path, date: str) -> list[dict]:
    """Return the valid scan records of ``date`` in timestamp order (exact duplicates dropped)."""
    day = Path(arrow_dir) / date
    recs: dict[tuple[int, int], dict] = {}
    if day.is_dir():
        for e in sorted(os.scandir(day), key=lambda e: e.name):
            if not arrow_io.FILE_RE.match(e.name):
                continue
            try:
                r = arrow_io.read_scan(Path(e.path))
            except arrow_io.ScanFileError as exc:
                log.error("skipping invalid scan file: %s", exc)
                continue
            recs[(r["timestamp_ns"], r["scan_number"])] = r
    return [recs[k] for k in sorted(recs)]


def partial_reason(recs: list[dict], date: str, now: dt.datetime | None = None) -> str | None:
    """Return why the day is partial, or None if it is complete."""
    d0 = dt.datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    d1 = d0 + dt.timedelta(days=1)
    now = now or dt.datetime.now(dt.timezone.utc)
    if now < d1:
        return f"day {date} is not over yet (UTC)"
    if not recs:
        return f"no scans for {date}"
    ts = [d0.timestamp()] + [r["timestamp_ns"] / 1e9 for r in recs] + [d1.timestamp()]
    gaps = [(b - a, a) for a, b in zip(ts, ts[1:])]
    worst, at = max(gaps)
    if worst > MAX_GAP_S:
        when = dt.datetime.fromtimestamp(at, dt.timezone.utc).strftime("%H:%M:%S")
        return f"gap of {worst:.0f}s from {when} (limit {MAX_GAP_S:.0f}s)"
    return None


def to_table(recs: list[dict]) -> pa.Table:
    """Build the §3.1 table for ``recs``."""
    assets: list[str] = []
    seen: set[str] = set()
    for r in recs:
        for a in r["assets"]:
            if a not in seen:
                seen.add(a)
                assets.append(a)
    cols: dict[str, pa.Array] = {
        "timestamp": pa.array([r["timestamp_ns"] for r in recs], type=pa.timestamp("ns", tz="UTC")),
        "scan_number": pa.array([r["scan_number"] for r in recs], type=pa.int64()),
    }
    for out, src in SIGNAL_COLUMNS:
        cols[out] = pa.array([r[src] for r in recs], type=pa.float64())
    price_maps = [dict(zip(r["assets"], r["prices"])) for r in recs]
    for a in assets:
        cols[a] = pa.array([m.get(a) for m in price_maps], type=pa.float64())
    # the scanner's post-gap flag (False for v5.0.0 scans); the backtest holds entries on it
    cols["gap_hold"] = pa.array([bool(r.get("gap_hold", False)) for r in recs], type=pa.bool_())
    return pa.table(cols)


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def check_parity(path: Path, recs: list[dict]) -> None:
    """Raise :class:`ParityError` unless the Parquet file at ``path`` equals ``recs`` row for row."""
    t = pq.read_table(path)
    if t.num_rows != len(recs):
        raise ParityError(f"{path}: {t.num_rows} rows, {len(recs)} Arrow scans")
    got_sn = t.column("scan_number").to_pylist()
    got_ts = [int(x) for x in t.column("timestamp").cast(pa.int64()).to_pylist()]
    for i, r in enumerate(recs):
        if got_sn[i] != r["scan_number"] or got_ts[i] != r["timestamp_ns"]:
            raise ParityError(f"{path}: row {i} is scan {got_sn[i]}@{got_ts[i]}, Arrow has "
                              f"{r['scan_number']}@{r['timestamp_ns']}")
    for out, src in SIGNAL_COLUMNS:
        col = t.column(out).to_pylist()
        for i, r in enumerate(recs):
            if not _same(col[i], r[src]):
                raise ParityError(f"{path}: {out} row {i}: {col[i]!r} != Arrow {r[src]!r}")
    if t.column("gap_hold").to_pylist() != [bool(r.get("gap_hold", False)) for r in recs]:
        raise ParityError(f"{path}: gap_hold differs from the Arrow scans")
    for i, r in enumerate(recs):
        for a, p in zip(r["assets"], r["prices"]):
            if not _same(t.column(a)[i].as_py(), p):
                raise ParityError(f"{path}: price {a} row {i} differs from the Arrow scan")


def build_day(data_dir: Path, date: str, allow_partial: bool = False,
              now: dt.datetime | None = None) -> BuildResult:
    """Build, check and atomically write the Parquet file of one day."""
    dt.datetime.strptime(date, "%Y-%m-%d")
    arrow_dir = Path(data_dir) / "arrow_scans"
    recs = load_day(arrow_dir, date)
    reason = partial_reason(recs, date, now)
    if reason is not None and not allow_partial:
        raise PartialDay(f"{date}: partial day refused ({reason}); pass --allow-partial to build it")
    if not recs:
        raise PartialDay(f"{date}: no valid scans in {arrow_dir / date}")
    out_dir = Path(data_dir) / "vbt_cache_klines"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{date}.parquet"
    tmp = out_dir / f".{date}.parquet.{os.getpid()}.tmp"
    try:
        pq.write_table(to_table(recs), tmp)
        check_parity(tmp, recs)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    log.info("built %s: %d rows%s", path, len(recs), f" (PARTIAL: {reason})" if reason else "")
    return BuildResult(date, path, len(recs), reason)


# ── reading a day file (the backtest and the flows) ─────────────────────────────────────────────
META_COLUMNS = frozenset({
    "timestamp", "scan_number", "vel_div", "v50_lambda_max_velocity", "v150_lambda_max_velocity",
    "v300_lambda_max_velocity", "v750_lambda_max_velocity", "instability_50", "instability_150",
    "__index_level_0__", "gap_s", "gap_hold", "carried",
})
REQUIRED_COLUMNS = ("vel_div", "v50_lambda_max_velocity", "v750_lambda_max_velocity")


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
    gap_hold: np.ndarray | None = None     # the scanner's post-gap flag per bar, when the file has it

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
            read_log.warning("backtest: %s: name is not YYYY-MM-DD.parquet, ignored", p)
            continue
        if (date_from and d < date_from) or (date_to and d > date_to):
            continue
        out.append((d.isoformat(), p))
    return out


def read_day_file(date: str, path: Path) -> DayData:
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


def _dates(first: str, last: str | None) -> list[str]:
    d0 = dt.date.fromisoformat(first)
    d1 = dt.date.fromisoformat(last) if last else d0
    if d1 < d0:
        raise ConfigError(f"--to {last} is before --date {first}")
    return [(d0 + dt.timedelta(days=k)).isoformat() for k in range((d1 - d0).days + 1)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prod.scans.daily", description=__doc__.splitlines()[0])
    ap.add_argument("--date", required=True, help="first UTC day YYYY-MM-DD")
    ap.add_argument("--to", default=None, help="last UTC day (inclusive) of a range")
    ap.add_argument("--allow-partial", action="store_true")
    ap.add_argument("--data-dir", default=None, help="data directory (DOLPHIN_DATA_DIR)")
    ap.add_argument("--log-level", default="INFO")
    a = ap.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(data_dir=a.data_dir)
        dates = _dates(a.date, a.to)
    except (ConfigError, ValueError) as exc:
        log.error("bad arguments: %s", exc)
        return 2
    log.info("build_daily: dates %s..%s, data_dir %s, allow_partial=%s", dates[0], dates[-1],
             settings.data_dir, a.allow_partial)
    failed = 0
    for d in dates:
        try:
            build_day(settings.data_dir, d, a.allow_partial)
        except (PartialDay, ParityError) as exc:
            log.error("%s", exc)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
