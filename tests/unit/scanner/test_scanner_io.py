"""Unit tests of the scan archive (Arrow schema, atomic writer, validator, numbering), the price
rules of the scanner, the map payload and the daily Parquet builder."""
from __future__ import annotations

import datetime as dt
import json
import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from prod.bus import maps
from prod.scans import arrow_io, daily as build_daily
from scanner.engine import EigenEngine
from scanner.pricebook import PriceBook
from scanner.records import build_record

ASSETS = [f"A{i}USDT" for i in range(12)]
DAY0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def _records(n, start_ns, step_s=5.0, seed=0, first=1):
    rng = np.random.default_rng(seed)
    eng = EigenEngine(ASSETS, precision_mode="float64")
    p = np.full(len(ASSETS), 50.0)
    out = []
    for k in range(n):
        p = p * np.exp(rng.standard_normal(len(ASSETS)) * 1e-3 + rng.standard_normal() * 1e-3)
        ts = start_ns + int(k * step_s * 1e9)
        out.append(build_record(first + k, eng.enhance(p.tolist(), ts)))
    return out


def test_schema_has_27_fields_and_version_5():
    assert len(arrow_io.SCAN_SCHEMA) == 34
    assert arrow_io.SCAN_SCHEMA.metadata[b"schema_version"] == b"6.0.0"


def test_write_then_read_round_trips_and_names_the_file_by_number_and_time(tmp_path):
    rec = _records(60, int(DAY0.timestamp() * 1e9) + 3_723_000_000_000)[-1]
    path = arrow_io.write_scan(tmp_path, rec)
    assert path.parent.name == "2026-03-01"
    assert path.name.startswith("scan_000060_") and path.name.endswith(".arrow")
    got = arrow_io.read_scan(path)
    assert got["scan_number"] == 60 and got["w50_lambda_max"] == rec["w50_lambda_max"]
    assert got["prices"] == rec["prices"] and got["assets"] == ASSETS
    assert got["w750_lambda_max"] is None and got["vel_div"] is None
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "temp file left behind"
    with pytest.raises(FileExistsError):
        arrow_io.write_scan(tmp_path, rec)


def _write_table(path, table):
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema) as w:
        w.write_table(table)


@pytest.mark.parametrize("breakage", ["missing_field", "wrong_version", "wrong_type", "nan", "bad_json",
                                      "bad_price", "two_rows", "truncated", "garbage"])
def test_malformed_scan_files_are_rejected_with_the_file_named(tmp_path, breakage):
    rec = _records(1, int(DAY0.timestamp() * 1e9))[0]
    good = arrow_io.write_scan(tmp_path / "good", rec)
    table = ipc.open_file(pa.memory_map(str(good))).read_all()
    bad = tmp_path / "bad" / "2026-03-01" / "scan_000001_000000.arrow"
    if breakage == "missing_field":
        _write_table(bad, table.drop_columns(["w50_eigengap"]))
    elif breakage == "wrong_version":
        _write_table(bad, table.set_column(26, "schema_version", pa.array(["4.0.0"])))
    elif breakage == "wrong_type":
        _write_table(bad, table.set_column(0, "scan_number", pa.array([1.0])))
    elif breakage == "nan":
        i = table.schema.get_field_index("vel_div")
        _write_table(bad, table.set_column(i, "vel_div", pa.array([float("nan")])))
    elif breakage == "bad_json":
        i = table.schema.get_field_index("prices")
        _write_table(bad, table.set_column(i, "prices", pa.array(["[1, 2"])))
    elif breakage == "bad_price":
        i = table.schema.get_field_index("prices")
        _write_table(bad, table.set_column(i, "prices", pa.array([json.dumps([-1.0] * 12)])))
    elif breakage == "two_rows":
        _write_table(bad, pa.concat_tables([table, table]))
    elif breakage == "truncated":
        bad.parent.mkdir(parents=True)
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    else:
        bad.parent.mkdir(parents=True)
        bad.write_bytes(b"this is not an arrow file")
    with pytest.raises(arrow_io.ScanFileError, match=str(bad)):
        arrow_io.read_scan(bad)


def test_last_scan_number_is_the_highest_file_number_across_days(tmp_path):
    assert arrow_io.last_scan_number(tmp_path) == 0
    t0 = int(DAY0.timestamp() * 1e9)
    for r in _records(3, t0, first=7):
        arrow_io.write_scan(tmp_path, r)
    for r in _records(2, t0 + 86_400 * 10**9, first=41):
        arrow_io.write_scan(tmp_path, r)
    (tmp_path / "2026-03-02" / "notes.txt").write_text("ignored")
    assert arrow_io.last_scan_number(tmp_path) == 42


def test_payload_from_record_passes_the_bus_schema_with_nulls_while_cold():
    rec = _records(60, int(DAY0.timestamp() * 1e9))[-1]
    payload = arrow_io.payload_from_record(rec, 123.0)
    decoded = maps.decode(maps.FEATURES, maps.KEY_EIGEN_SCAN,
                          maps.encode(maps.FEATURES, maps.KEY_EIGEN_SCAN, payload)).to_dict()
    assert decoded["warm_windows"] == [50] and decoded["vel_div"] is None
    assert decoded["w50_velocity"] is not None and decoded["w750_velocity"] is None
    assert decoded["multi_window_results"]["w50"]["lambda_max"] == rec["w50_lambda_max"]
    assert decoded["asset_prices"] == rec["prices"] and decoded["timestamp"] == rec["timestamp_iso"]


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_bad_ticks_are_rejected_with_a_log_line_and_keep_the_last_price(caplog):
    clk = _Clock()
    book = PriceBook(("BTCUSDT", "ETHUSDT"), stale_s=15.0, clock=clk)
    assert book.offer("BTCUSDT", 100.0, "test")
    assert book.sample() == [100.0, None]
    caplog.set_level(logging.WARNING, logger="scanner")
    for bad in (0.0, -5.0, float("nan"), float("inf"), 151.0, 49.0):
        assert not book.offer("BTCUSDT", bad, "test-src")
        clk.t += 11.0
        book.at[0] = clk.t   # keep the accepted price fresh for the next assertion
    assert book.rejected == 6
    assert book.sample()[0] == 100.0
    text = caplog.text
    assert "bad tick rejected: BTCUSDT" in text and "test-src" in text and "jumps +51.0%" in text
    assert book.offer("BTCUSDT", 140.0, "test")   # 40 %: allowed


def test_stale_price_becomes_null_and_clears_the_jump_reference():
    clk = _Clock()
    book = PriceBook(("BTCUSDT",), stale_s=15.0, clock=clk)
    book.offer("BTCUSDT", 100.0, "t")
    assert book.sample() == [100.0]
    clk.t = 16.0
    assert book.sample() == [None]
    assert book.offer("BTCUSDT", 300.0, "t"), "after staleness a re-quote at a new level is accepted"
    assert book.sample() == [300.0]


def _archive_day(tmp_path, step_s=200.0):
    t0 = int(DAY0.timestamp() * 1e9) + 60 * 10**9
    n = int((86_400 - 120) / step_s) + 1
    recs = _records(n, t0, step_s=step_s)
    for r in recs:
        arrow_io.write_scan(tmp_path / "arrow_scans", r)
    return recs


def test_daily_build_writes_parquet_equal_to_the_arrow_scans(tmp_path):
    recs = _archive_day(tmp_path)
    res = build_daily.build_day(tmp_path, "2026-03-01")
    assert res.partial_reason is None and res.rows == len(recs)
    t = pq.read_table(res.path)
    cols = t.column_names
    assert cols[:9] == ["timestamp", "scan_number", "vel_div", "v50_lambda_max_velocity",
                        "v150_lambda_max_velocity", "v300_lambda_max_velocity", "v750_lambda_max_velocity",
                        "instability_50", "instability_150"]
    assert cols[9:-1] == ASSETS and cols[-1] == "gap_hold"
    assert t.column("gap_hold").to_pylist() == [r["gap_hold"] for r in recs]
    assert t.column("scan_number").to_pylist() == [r["scan_number"] for r in recs]
    assert t.column("A3USDT").to_pylist() == [r["prices"][3] for r in recs]
    assert t.column("v50_lambda_max_velocity").to_pylist() == [r["w50_velocity"] for r in recs]


def test_daily_build_refuses_a_partial_day_unless_allowed(tmp_path):
    recs = _archive_day(tmp_path)
    for r in recs[100:110]:   # a ~33 min hole
        os.unlink(arrow_io.scan_path(tmp_path / "arrow_scans", r["scan_number"], r["timestamp_ns"]))
    with pytest.raises(build_daily.PartialDay, match="gap of"):
        build_daily.build_day(tmp_path, "2026-03-01")
    assert not (tmp_path / "vbt_cache_klines" / "2026-03-01.parquet").exists()
    res = build_daily.build_day(tmp_path, "2026-03-01", allow_partial=True)
    assert res.rows == len(recs) - 10 and "gap" in res.partial_reason
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    with pytest.raises(build_daily.PartialDay):
        build_daily.build_day(tmp_path, today)


def test_daily_build_skips_an_invalid_file_and_parity_check_catches_a_tampered_parquet(tmp_path):
    recs = _archive_day(tmp_path, step_s=250.0)
    bad = tmp_path / "arrow_scans" / "2026-03-01" / "scan_999999_120000.arrow"
    bad.write_bytes(b"garbage")
    res = build_daily.build_day(tmp_path, "2026-03-01")
    assert res.rows == len(recs)
    t = pq.read_table(res.path)
    i = t.schema.get_field_index("vel_div")
    tampered = t.set_column(i, "vel_div", pa.array([0.5] * t.num_rows))
    pq.write_table(tampered, res.path)
    with pytest.raises(build_daily.ParityError):
        build_daily.check_parity(res.path, recs)
