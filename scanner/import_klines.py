"""Import exchange kline history into the backtest's daily Parquet by running the project's scanner over it.

Design notes: ``docs/design/scanner.md``.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import datetime as dt
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from prod.settings import ConfigError, Settings, load_settings
from prod.scans.daily import SIGNAL_COLUMNS
from scanner import batch
from scanner.engine import GAP_FACTOR, MIN_GAP_S, WINDOWS, EigenEngine

SUFFIXES = (".csv", ".json", ".feather")


class KlineFileError(ValueError):
    """A kline file could not be read; the message names the file."""


def symbol_of(path: Path) -> str:
    stem = path.name.split(".")[0].split("-")[0]
    parts = stem.split("_")
    if len(parts) >= 3 and parts[-1] == parts[-2]:   # freqtrade futures BTC_USDT_USDT
        parts = parts[:-1]
    sym = "".join(parts).upper()
    if not sym.isalnum():
        raise KlineFileError(f"{path}: cannot read a symbol from the file name")
    return sym


def _ms(v: float) -> int:
    v = int(v)
    if v > 10**17:        # ns
        return v // 1_000_000
    if v > 10**14:        # µs (Binance archive from 2025)
        return v // 1000
    return v


def _close(path: Path, i: int, v) -> float:
    try:
        c = float(v)
    except (TypeError, ValueError):
        raise KlineFileError(f"{path}: row {i}: close {v!r} is not a number") from None
    if not math.isfinite(c) or c <= 0:
        raise KlineFileError(f"{path}: row {i}: close {v!r} is not a finite positive price")
    return c


def _rows_from_list(path: Path, rows: list) -> dict[int, float]:
    t, c = _arrays_from_list(path, rows)
    return dict(zip(t.tolist(), c.tolist()))


def _arrays_from_list(path: Path, rows: list) -> tuple[np.ndarray, np.ndarray]:
    times = np.empty(len(rows), dtype=np.int64)
    closes = np.empty(len(rows))
    for i, r in enumerate(rows):
        if not isinstance(r, (list, tuple)) or len(r) < 5:
            raise KlineFileError(f"{path}: row {i}: expected [open_time, open, high, low, close, ...]")
        try:
            t = float(r[0])
        except (TypeError, ValueError):
            raise KlineFileError(f"{path}: row {i}: open_time {r[0]!r} is not a number") from None
        if not math.isfinite(t) or t < 0:
            raise KlineFileError(f"{path}: row {i}: open_time {r[0]!r} is not a timestamp")
        times[i] = _ms(t)
        closes[i] = _close(path, i, r[4])
    if not rows:
        raise KlineFileError(f"{path}: no klines")
    return times, closes


def _ms_array(v: np.ndarray) -> np.ndarray:
    """:func:`_ms` on an int64 array."""
    return np.where(v > 10**17, v // 1_000_000, np.where(v > 10**14, v // 1000, v))


def _csv_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A Binance archive CSV through pyarrow's reader (the column checks vectorised); any row it cannot take
    goes through the row-by-row reader for the error message."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with open(path, "rb") as f:
        first = f.readline().decode("utf-8", "replace")
    header = bool(first.strip()) and not first.split(",")[0].strip().lstrip("-").isdigit()
    if len(first.split(",")) < 7:                   # pyarrow holds every row to the first row's field count
        return _csv_rows(path)
    try:
        t = pacsv.read_csv(path, read_options=pacsv.ReadOptions(autogenerate_column_names=True,
                                                                 skip_rows=1 if header else 0, use_threads=False),
                           convert_options=pacsv.ConvertOptions(column_types={"f0": pa.int64(), "f4": pa.float64()},
                                                                include_columns=["f0", "f4"]))
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError):
        return _csv_rows(path)
    if t.num_rows == 0 or t.column("f0").null_count or t.column("f4").null_count:
        return _csv_rows(path)
    times = t.column("f0").to_numpy()
    closes = t.column("f4").to_numpy()
    if (times < 0).any() or not (np.isfinite(closes) & (closes > 0)).all():
        return _csv_rows(path)
    return _ms_array(times), closes


def _csv_rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if rows and not rows[0][0].strip().lstrip("-").isdigit():
        rows = rows[1:]                              # header line
    for i, r in enumerate(rows):
        if len(r) < 7:
            raise KlineFileError(f"{path}: row {i}: {len(r)} fields, archive rows have 12 (truncated?)")
    return _arrays_from_list(path, rows)


def read_file(path: Path) -> dict[int, float]:
    """Return ``{open_time_ms: close}`` of one kline file or raise :class:`KlineFileError`."""
    t, c = read_arrays(path)
    return dict(zip(t.tolist(), c.tolist()))


def read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return (open_time_ms int64, close float64) of one kline file, in file order (a later row of the same
    open time wins), or raise :class:`KlineFileError`."""
    path = Path(path)
    try:
        if path.suffix == ".csv":
            return _csv_arrays(path)
        if path.suffix == ".json":
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise KlineFileError(f"{path}: not valid JSON ({exc})") from None
            if not isinstance(data, list):
                raise KlineFileError(f"{path}: expected a JSON list of klines")
            return _arrays_from_list(path, data)
        if path.suffix == ".feather":
            import pyarrow.feather as feather
            try:
                t = feather.read_table(path)
            except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
                raise KlineFileError(f"{path}: not a readable feather file ({exc})") from None
            if "date" not in t.column_names or "close" not in t.column_names:
                raise KlineFileError(f"{path}: feather file needs 'date' and 'close' columns")
            import pyarrow as pa
            dates = t.column("date")
            if pa.types.is_timestamp(dates.type):
                ms = [None if d is None else int(d) // {"s": 1 / 1000, "ms": 1, "us": 1000, "ns": 10**6}
                      [dates.type.unit] for d in dates.cast(pa.int64()).to_pylist()]
            else:
                ms = dates.to_pylist()
            rows = [[m, 0, 0, 0, c] for m, c in zip(ms, t.column("close").to_pylist())]
            return _arrays_from_list(path, rows)
    except OSError as exc:
        raise KlineFileError(f"{path}: cannot read ({exc})") from None
    raise KlineFileError(f"{path}: unknown kline format (expected {', '.join(SUFFIXES)})")


def collect(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix in SUFFIXES and q.is_file())
        else:
            out.append(p)
    return out


def cadence_ms(series: dict[str, dict[int, float]]) -> int:
    steps: collections.Counter = collections.Counter()
    for s in series.values():
        ts = sorted(s)
        steps.update(b - a for a, b in zip(ts, ts[1:]) if b > a)
    if not steps:
        raise KlineFileError("cannot detect the cadence: no symbol has two klines")
    return steps.most_common(1)[0][0]


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _span(s: float) -> str:
    if s < 3600:
        return f"{s / 60:.3g} min" if s >= 60 else f"{s:.3g} s"
    return f"{s / 3600:.3g} h"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _load(f: Path) -> tuple[Path, str | None, tuple | None, KlineFileError | None]:
    try:
        return f, symbol_of(f), read_arrays(f), None
    except KlineFileError as exc:
        return f, None, None, exc


def _merge(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One symbol's klines from its files in order: sorted by open time, a later row of the same time winning."""
    t = np.concatenate([p[0] for p in parts])
    c = np.concatenate([p[1] for p in parts])
    order = np.argsort(t, kind="stable")
    t, c = t[order], c[order]
    last = np.append(t[1:] != t[:-1], True)
    return t[last], c[last]


def _cadence(series: dict[str, tuple[np.ndarray, np.ndarray]]) -> int:
    """:func:`cadence_ms` on sorted arrays (the most common step; the first seen among equally common ones)."""
    steps = [np.diff(t) for t, _ in series.values() if t.size > 1]
    if not steps:
        raise KlineFileError("cannot detect the cadence: no symbol has two klines")
    st = np.concatenate(steps)
    vals, first, counts = np.unique(st, return_index=True, return_counts=True)
    best = counts == counts.max()
    return int(vals[best][np.argmin(first[best])])


def _day_table(ts_ms: np.ndarray, scan_no: np.ndarray, cols: dict[str, np.ndarray], assets: list[str],
               prices: np.ndarray, gap_hold: np.ndarray) -> pa.Table:
    """The table :func:`prod.scans.daily.to_table` builds, from columns (NaN = null)."""
    def f64(v: np.ndarray) -> pa.Array:
        return pa.array(v, type=pa.float64(), mask=np.isnan(v))
    out: dict[str, pa.Array] = {
        "timestamp": pa.array(ts_ms * 1_000_000, type=pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
        "scan_number": pa.array(scan_no, type=pa.int64())}
    for name, src in SIGNAL_COLUMNS:
        out[name] = f64(cols[src])
    for j, a in enumerate(assets):
        out[a] = f64(np.ascontiguousarray(prices[:, j]))
    out["gap_hold"] = pa.array(gap_hold, type=pa.bool_())
    return pa.table(out)


def run(paths: list[Path], out_dir: Path, precision_mode: str = "float64", echo=print, progress: bool = False,
        note: Callable[[str], None] = _stderr, per_scan: bool = False) -> dict:
    """Import ``paths`` into ``out_dir``; return the summary dict (also written as JSON).

    ``echo`` takes the summary lines, ``note`` the closing throughput line; ``progress`` shows tqdm bars
    (files loaded, then scans) on stderr. ``float64`` scans the whole series in compiled code
    (:func:`scanner.batch.scan_series`); ``arb512``, or ``per_scan``, runs :class:`EigenEngine` scan by scan.
    """
    t_start = time.perf_counter()
    parts: dict[str, list] = {}
    skipped: list[dict] = []
    files = collect(paths)
    # pyarrow's CSV parser releases the GIL: two threads read files side by side (results in file order)
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        loading = tqdm(pool.map(_load, files), total=len(files), desc="load", unit="file", disable=not progress,
                       dynamic_ncols=True)
        for f, sym, got, exc in loading:
            if exc is not None:
                skipped.append({"file": str(f), "error": str(exc)})
                echo(f"skipped: {exc}")
            else:
                parts.setdefault(sym, []).append(got)
            loading.set_postfix(symbols=len(parts), refresh=False)
    loading.close()
    series = {s: _merge(v) for s, v in parts.items()}
    load_s = time.perf_counter() - t_start
    summary: dict = {"files": len(files), "skipped": skipped, "days": []}
    if not series:
        echo("nothing imported: no readable kline file")
        return summary
    step = _cadence(series)
    t0 = min(int(v[0][0]) for v in series.values())
    t1 = max(int(v[0][-1]) for v in series.values())
    assets = sorted(series)
    on = {s: (series[s][0] - t0) % step == 0 for s in assets}
    grid_a = np.unique(np.concatenate([series[s][0][on[s]] for s in assets]))
    grid = grid_a.tolist()
    prices = np.full((grid_a.size, len(assets)), np.nan)
    sym_info: dict[str, dict] = {}
    for j, s in enumerate(assets):
        t, c = series[s]
        first, last = int(t[0]), int(t[-1])
        n_on = int(on[s].sum())
        prices[np.searchsorted(grid_a, t[on[s]]), j] = c[on[s]]
        expected = (last - first) // step + 1
        sym_info[s] = {"first": _iso(first), "last": _iso(last), "klines": int(t.size),
                       "missing_in_range": int(expected - n_on), "late_listed": first > t0,
                       "off_grid": int(t.size - n_on)}
    jumps = np.flatnonzero(np.diff(grid_a) > step) + 1      # no symbol has a kline in between: no scans there
    gaps = [{"from": _iso(grid[n - 1] + step), "to": _iso(grid[n] - step)} for n in jumps.tolist()]
    ts_ns = grid_a * 1_000_000
    scanning = tqdm(total=len(grid), desc="scan", unit="scan", disable=not progress, dynamic_ncols=True)
    t_scan = time.perf_counter()
    # with the bar on, the engine's warnings (gaps) print above it instead of through it
    with logging_redirect_tqdm() if progress else contextlib.nullcontext():
        if precision_mode == "float64" and not per_scan:
            r = batch.scan_series(prices, ts_ns, step / 1000)
            cols = {f"w{k}_velocity": r.velocity[:, i] for i, k in enumerate(WINDOWS)}
            cols.update({"vel_div": r.vel_div, "w50_instability": r.instability[:, WINDOWS.index(50)],
                         "w150_instability": r.instability[:, WINDOWS.index(150)]})
            gap_hold = r.gap_hold
            scanning.update(len(grid))
        else:
            cols = {src: np.full(len(grid), np.nan) for _, src in SIGNAL_COLUMNS}
            gap_hold = np.zeros(len(grid), dtype=np.bool_)
            eng = EigenEngine(assets, precision_mode=precision_mode, interval_s=step / 1000)   # gaps restart windows
            for n in range(len(grid)):
                row = [None if p != p else p for p in prices[n].tolist()]
                res = eng.enhance(row, int(ts_ns[n]))
                w = res.windows
                vals = {"vel_div": res.vel_div, "w50_instability": w[50].instability,
                        "w150_instability": w[150].instability}
                vals.update({f"w{k}_velocity": w[k].velocity for k in WINDOWS})
                for key, v in vals.items():
                    if v is not None:
                        cols[key][n] = v
                gap_hold[n] = res.gap_hold
                scanning.update(1)
    scanning.close()
    scan_s = time.perf_counter() - t_scan
    days = (grid_a // 86_400_000).astype(np.int64)
    bounds = np.flatnonzero(np.diff(days)) + 1
    t_write = time.perf_counter()
    vdir = Path(out_dir) / "vbt_cache_klines"
    vdir.mkdir(parents=True, exist_ok=True)
    scan_no = np.arange(1, len(grid) + 1, dtype=np.int64)
    for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), len(grid)]):
        day = dt.datetime.fromtimestamp(grid[lo] / 1000, dt.timezone.utc).strftime("%Y-%m-%d")
        path = vdir / f"{day}.parquet"
        tmp = vdir / f".{day}.parquet.{os.getpid()}.tmp"
        table = _day_table(grid_a[lo:hi], scan_no[lo:hi], {k: v[lo:hi] for k, v in cols.items()}, assets,
                           prices[lo:hi], gap_hold[lo:hi])
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        summary["days"].append({"date": day, "rows": hi - lo, "path": str(path)})
    write_s = time.perf_counter() - t_write
    try:
        live_s = load_settings().scan_interval_s          # DOLPHIN_SCAN_INTERVAL_S: the live scanner's cadence
    except ConfigError:
        live_s = Settings().scan_interval_s
    windows = {f"w{k}": {"klines": k, "span_s": k * step / 1000, "live_span_s": k * live_s} for k in WINDOWS}
    summary.update({"cadence_s": step / 1000, "live_cadence_s": live_s, "windows": windows,
                    "gap_hold_rows": int(gap_hold.sum()),
                    "symbols": sym_info, "first": _iso(t0), "last": _iso(t1),
                    "rows": len(grid), "all_symbol_gaps": gaps,
                    "late_listed": [s for s in assets if sym_info[s]["late_listed"]]})
    echo(f"cadence: {step / 1000:g} s (most common kline step); {len(grid)} scans {_iso(t0)} .. {_iso(t1)}")
    echo("windows: " + ", ".join(f"w{k} = {k} klines = {_span(k * step / 1000)}" for k in WINDOWS)
         + f" at this cadence (the live scanner at {live_s:g} s: "
         + ", ".join(_span(k * live_s) for k in WINDOWS) + "); a kline step over "
         + f"{GAP_FACTOR:g} x cadence and {MIN_GAP_S:g} s is a gap: the windows restart "
         + f"(gap_hold on {summary['gap_hold_rows']} scans)")
    for s in assets:
        i = sym_info[s]
        echo(f"{s}: {i['klines']} klines {i['first']} .. {i['last']}, {i['missing_in_range']} missing"
             + (" (late-listed)" if i["late_listed"] else ""))
    for g in gaps:
        echo(f"gap: no symbol has a kline {g['from']} .. {g['to']}")
    for d in summary["days"]:
        echo(f"wrote {d['path']}: {d['rows']} rows")
    rate = f"{len(grid) / scan_s:,.0f}" if scan_s > 0 else "n/a"
    note(f"import_klines: {len(grid)} scans x {len(assets)} symbols in {scan_s:.1f} s ({rate} scans/s); "
         f"{len(files)} files loaded in {load_s:.1f} s, {len(summary['days'])} days written in {write_s:.1f} s; "
         f"total {time.perf_counter() - t_start:.1f} s")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scanner.import_klines", description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", help="kline files or folders")
    ap.add_argument("--out", required=True, help="data directory (writes vbt_cache_klines/ under it)")
    ap.add_argument("--precision", default="float64", choices=("float64", "arb512"))
    ap.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="progress bars on stderr (default: only when stderr is a terminal)")
    a = ap.parse_args(argv)
    missing = [p for p in a.inputs if not Path(p).exists()]
    if missing:
        print(f"bad arguments: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    progress = sys.stderr.isatty() if a.progress is None else a.progress
    summary = run([Path(p) for p in a.inputs], Path(a.out), a.precision, progress=progress)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "import_summary.json").write_text(json.dumps(summary, indent=1))
    return 0 if summary["days"] else 1


if __name__ == "__main__":
    sys.exit(main())
