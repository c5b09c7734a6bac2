"""The flows' day loader: Parquet first, the scan archive as fallback, bad days refused with a named error."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow.parquet as pq
import pytest

from prod.flows.common import FlowSettings, align_prices, default_date, flow_settings
from prod.flows.days import DayDataError, load_validated_day
from prod.settings import ConfigError
from prod.scans import arrow_io, daily as build_daily
from scanner.engine import EigenEngine
from scanner.records import build_record

ASSETS = [f"A{i}USDT" for i in range(8)]
DATE = "2026-03-01"
DAY0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def _archive(data, step_s=240.0, vel_div=True):
    """Write a day of scans every ``step_s`` into ``data/arrow_scans``; vel_div set (or left cold)."""
    rng = np.random.default_rng(3)
    eng = EigenEngine(ASSETS, precision_mode="float64")
    p = np.full(len(ASSETS), 50.0)
    t0 = int(DAY0.timestamp() * 1e9) + 60 * 10**9
    recs = []
    for k in range(int((86_400 - 120) / step_s) + 1):
        p = p * np.exp(rng.standard_normal(len(ASSETS)) * 1e-3)
        rec = build_record(k + 1, eng.enhance(p.tolist(), t0 + int(k * step_s * 1e9)))
        if vel_div:
            rec.update(vel_div=float(-0.01 * (k % 7)), w50_velocity=0.001 * k, w750_velocity=0.0)
        arrow_io.write_scan(data / "arrow_scans", rec)
        recs.append(rec)
    return recs


def test_the_scan_archive_is_the_fallback_when_the_day_has_no_parquet(tmp_path):
    recs = _archive(tmp_path)
    got = load_validated_day(tmp_path, DATE)
    assert got.source == "arrow_scans" and got.day.n_bars == len(recs) and got.valid_vel_div == len(recs)
    assert got.day.vel_div.tolist() == [r["vel_div"] for r in recs]
    assert got.day.assets == tuple(ASSETS) and got.day.prices[5, 2] == recs[5]["prices"][2]


def test_the_daily_parquet_is_preferred(tmp_path):
    recs = _archive(tmp_path)
    build_daily.build_day(tmp_path, DATE)
    got = load_validated_day(tmp_path, DATE)
    assert got.source == "parquet" and got.origin.endswith(f"vbt_cache_klines/{DATE}.parquet")
    assert got.day.n_bars == len(recs)


def test_a_day_mostly_without_vel_div_is_refused(tmp_path):
    _archive(tmp_path, vel_div=False)       # a cold scanner: every vel_div is null
    with pytest.raises(DayDataError, match=r"vel_div is finite on 0 of \d+ bars"):
        load_validated_day(tmp_path, DATE)


def test_a_hole_in_the_day_and_a_bad_date_are_refused_by_name(tmp_path):
    _archive(tmp_path)
    build_daily.build_day(tmp_path, DATE)
    path = tmp_path / "vbt_cache_klines" / f"{DATE}.parquet"
    t = pq.read_table(path)
    pq.write_table(t.slice(0, 100), path)   # the scans stop at ~06:40
    with pytest.raises(DayDataError, match="partial day 2026-03-01: a .* s gap after 06:"):
        load_validated_day(tmp_path, DATE)
    with pytest.raises(DayDataError, match="not YYYY-MM-DD"):
        load_validated_day(tmp_path, "2026-3-1x")
    with pytest.raises(DayDataError, match="no data for 2026-03-02"):
        load_validated_day(tmp_path, "2026-03-02")


def test_flow_settings_and_helpers():
    assert flow_settings({}) == FlowSettings(10.0, 10.0)
    assert flow_settings({"DOLPHIN_FLOW_RETRY_DELAY_S": "0.5"}).retry_delay_s == 0.5
    with pytest.raises(ConfigError, match="DOLPHIN_FLOW_HZ_TIMEOUT_S"):
        flow_settings({"DOLPHIN_FLOW_HZ_TIMEOUT_S": "nan"})
    with pytest.raises(ConfigError, match="DOLPHIN_FLOW_RETRY_DELAY_S"):
        flow_settings({"DOLPHIN_FLOW_RETRY_DELAY_S": "soon"})
    assert default_date(dt.datetime(2026, 1, 1, 0, 5, tzinfo=dt.timezone.utc)) == "2025-12-31"
    m = np.arange(6.0).reshape(2, 3)
    out = align_prices(m, ("A", "B", "C"), ("C", "X", "A"))
    assert out[:, 0].tolist() == [2.0, 5.0] and np.isnan(out[:, 1]).all() and out[:, 2].tolist() == [0.0, 3.0]
