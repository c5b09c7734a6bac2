"""Load one UTC day of bars for a flow: the daily Parquet, else the day's scan archive; refuse a partial day.

Design notes: ``docs/design/prod.flows.md``.
"""
from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prod.scans.daily import DayData, DayFileError, read_day_file as load_day

MAX_GAP_S = 300.0
MIN_VALID_VEL_DIV = 0.50


class DayDataError(ValueError):
    """The day's bars are missing, unreadable, partial or carry too few valid vel_div values."""


@dataclass(frozen=True)
class LoadedDay:
    """A validated day and where it came from."""
    day: DayData
    source: str          # "parquet" | "arrow_scans"
    origin: str          # the file or directory read
    valid_vel_div: int


def parquet_path(data_dir: Path, date: str) -> Path:
    return Path(data_dir) / "vbt_cache_klines" / f"{date}.parquet"


def arrow_day_dir(data_dir: Path, date: str) -> Path:
    return Path(data_dir) / "arrow_scans" / date


def _from_arrow_scans(data_dir: Path, date: str) -> DayData | None:
    import pyarrow.parquet as pq
    from prod.scans.daily import load_day as load_scans, to_table
    recs = load_scans(Path(data_dir) / "arrow_scans", date)
    if not recs:
        return None
    with tempfile.TemporaryDirectory(prefix="dolphin_day_") as tmp:
        path = Path(tmp) / f"{date}.parquet"
        pq.write_table(to_table(recs), path)
        return load_day(date, path)


def _gap_reason(day: DayData, date: str) -> str | None:
    start = dt.datetime.fromisoformat(date).replace(tzinfo=dt.timezone.utc).timestamp()
    ts = day.timestamp_ns.astype(np.float64) / 1e9
    if not np.all(ts > 0):
        return "bars without a timestamp"
    edges = np.concatenate([[start], np.sort(ts), [start + 86_400.0]])
    gaps = np.diff(edges)
    i = int(np.argmax(gaps))
    if gaps[i] > MAX_GAP_S:
        at = dt.datetime.fromtimestamp(edges[i], dt.timezone.utc).strftime("%H:%M:%S")
        return f"a {gaps[i]:.0f} s gap after {at} UTC (max {MAX_GAP_S:.0f} s)"
    return None


def load_validated_day(data_dir: Path, date: str) -> LoadedDay:
    """Return the validated bars of ``date``; raise :class:`DayDataError` naming the source otherwise."""
    try:
        dt.date.fromisoformat(date)
    except ValueError:
        raise DayDataError(f"date {date!r} is not YYYY-MM-DD") from None
    pq_path = parquet_path(data_dir, date)
    try:
        if pq_path.is_file():
            day, source, origin = load_day(date, pq_path), "parquet", str(pq_path)
        else:
            day = _from_arrow_scans(data_dir, date)
            source, origin = "arrow_scans", str(arrow_day_dir(data_dir, date))
            if day is None:
                raise DayDataError(f"no data for {date}: neither {pq_path} nor scans in {origin}")
    except DayFileError as exc:
        raise DayDataError(f"day {date}: {exc}") from None
    n = day.n_bars
    if n == 0:
        raise DayDataError(f"{origin}: no bars for {date}")
    valid = int(np.count_nonzero(np.isfinite(day.vel_div)))
    if valid < MIN_VALID_VEL_DIV * n:
        raise DayDataError(f"{origin}: vel_div is finite on {valid} of {n} bars "
                           f"(< {MIN_VALID_VEL_DIV:.0%}); refusing the day")
    reason = _gap_reason(day, date)
    if reason is not None:
        raise DayDataError(f"{origin}: partial day {date}: {reason}")
    return LoadedDay(day, source, origin, valid)
