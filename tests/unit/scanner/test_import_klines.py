"""scanner.import_klines: formats, cadence detection, late listing and bad files on small generated inputs."""
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scanner import import_klines as ik

REAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real" / "binance_spot_btcusdt_1m"
T0 = 1_620_604_800_000  # 2021-05-10 00:00 UTC


def _csv(path: Path, t0: int, n: int, scale: int = 1, header: bool = False) -> None:
    lines = ["open_time,open,high,low,close,volume,close_time"] if header else []
    for i in range(n):
        t = (t0 + i * 60_000) * scale
        lines.append(f"{t},1,1,1,{100 + (i * 7919 % 13) * 0.1},1,{t + 59_999}")
    path.write_text("\n".join(lines) + "\n")


def test_formats_cadence_late_listing_and_bad_files(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _csv(src / "AAAUSDT-1m-2021-05-10.csv", T0, 30)
    _csv(src / "BBBUSDT-1m-2021-05-10.csv", T0, 30, scale=1000, header=True)     # µs + header
    (src / "CCC_USDT-1m.json").write_text(json.dumps(
        [[T0 + i * 60_000, 1, 1, 1, 50 + i % 3, 1] for i in range(10, 30)]))    # late-listed
    (src / "DDDUSDT-1m-2021-05-10.csv").write_text(f"{T0},1,1,1,1,1\n{T0 + 60000},1")  # truncated
    (src / "EEEUSDT.json").write_text("[[1, 2, 3")                              # garbage
    (src / "FFFUSDT.json").write_text(json.dumps([[T0, "1", "1", "1", "NaN", "1"]]))  # NaN
    out = tmp_path / "out"
    lines: list[str] = []
    s = ik.run([src], out, echo=lines.append)
    assert s["cadence_s"] == 60
    assert sorted(s["symbols"]) == ["AAAUSDT", "BBBUSDT", "CCCUSDT"]
    assert s["late_listed"] == ["CCCUSDT"]
    bad = {Path(x["file"]).name for x in s["skipped"]}
    assert bad == {"DDDUSDT-1m-2021-05-10.csv", "EEEUSDT.json", "FFFUSDT.json"}
    assert all(Path(x["file"]).name in x["error"] for x in s["skipped"])
    assert any(line.startswith("cadence: 60 s") for line in lines)
    t = pq.read_table(out / "vbt_cache_klines" / "2021-05-10.parquet")
    assert t.num_rows == 30
    assert t.column("CCCUSDT").to_pylist()[:10] == [None] * 10
    assert t.column("BBBUSDT").to_pylist() == t.column("AAAUSDT").to_pylist()


def test_cli_exit_codes(tmp_path):
    assert ik.main([str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    (tmp_path / "XUSDT.json").write_text("garbage")
    assert ik.main([str(tmp_path / "XUSDT.json"), "--out", str(tmp_path / "o")]) == 1


@pytest.mark.skipif(not REAL.is_dir(), reason="shared/data/real absent (user clone)")
def test_real_archive_ms_and_us(tmp_path):
    files = sorted(REAL.glob("BTCUSDT-1m-*.csv"))
    pick = [files[0], files[-1]]           # 2021 (ms) and 2025 (µs)
    s = ik.run(pick, tmp_path, echo=lambda _: None)
    assert s["cadence_s"] == 60 and not s["skipped"]
    assert {d["date"] for d in s["days"]} >= {p.name[11:21] for p in pick}


FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "klines"


def _closes(n: int) -> list[float]:
    return [100 + (i * 7919 % 13) * 0.1 for i in range(n)]


def test_freqtrade_feather_with_timestamp_or_int_dates(tmp_path):
    import pyarrow as pa
    import pyarrow.feather as feather

    n = 40
    closes = _closes(n)
    feather.write_feather(pa.table({"date": pa.array([T0 + i * 300_000 for i in range(n)], type=pa.timestamp("ms", tz="UTC")),
                                    "open": closes, "close": closes}), tmp_path / "AAA_USDT_USDT-5m-futures.feather")
    feather.write_feather(pa.table({"date": pa.array([(T0 + i * 300_000) * 1000 for i in range(n)],
                                                     type=pa.timestamp("us")), "close": closes[::-1]}),
                          tmp_path / "BBB_USDT-5m.feather")
    feather.write_feather(pa.table({"date": [T0 + i * 300_000 for i in range(n)], "close": closes}),
                          tmp_path / "CCC_USDT-5m.feather")                # int ms dates
    feather.write_feather(pa.table({"time": [T0], "close": [1.0]}), tmp_path / "DDD_USDT-5m.feather")
    s = ik.run([tmp_path], tmp_path / "out", echo=lambda _: None)
    assert s["cadence_s"] == 300
    assert sorted(s["symbols"]) == ["AAAUSDT", "BBBUSDT", "CCCUSDT"]          # futures _USDT_USDT -> AAAUSDT
    assert [Path(x["file"]).name for x in s["skipped"]] == ["DDD_USDT-5m.feather"]
    assert "'date' and 'close'" in s["skipped"][0]["error"]
    t = pq.read_table(tmp_path / "out" / "vbt_cache_klines" / "2021-05-10.parquet")
    assert t.column("AAAUSDT").to_pylist() == closes == t.column("CCCUSDT").to_pylist()
    assert t.column("BBBUSDT").to_pylist() == closes[::-1]
    assert t.column("timestamp").to_pylist()[1].timestamp() * 1000 == T0 + 300_000


def test_fapi_klines_json_body(tmp_path):
    n = 30
    closes = _closes(n)
    body = [[T0 + i * 60_000, "1.0", "2.0", "0.5", f"{c:.8f}", "12.5", T0 + i * 60_000 + 59_999, "100.0", 7,
             "6.0", "50.0", "0"] for i, c in enumerate(closes)]
    (tmp_path / "XYZUSDT-1m-fapi.json").write_text(json.dumps(body))
    (tmp_path / "BADUSDT-1m-fapi.json").write_text(json.dumps([row[:4] for row in body]))   # no close column
    s = ik.run([tmp_path], tmp_path / "out", echo=lambda _: None)
    assert s["cadence_s"] == 60 and list(s["symbols"]) == ["XYZUSDT"]
    assert "expected [open_time, open, high, low, close" in s["skipped"][0]["error"]
    t = pq.read_table(tmp_path / "out" / "vbt_cache_klines" / "2021-05-10.parquet")
    assert t.column("XYZUSDT").to_pylist() == [float(f"{c:.8f}") for c in closes]


def test_shipped_fixture_imports_end_to_end_with_cadence_windows_gap_and_late_listing(tmp_path, capsys):
    out = tmp_path / "data"
    assert ik.main([str(FIXTURE), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    s = json.loads((out / "import_summary.json").read_text())
    assert s["files"] == 11 and not s["skipped"]
    assert sorted(s["symbols"]) == [*(f"ALT{c}USDT" for c in "ABCDEFGHIJ"), "BTCUSDT"]
    assert s["cadence_s"] == 60
    assert s["windows"]["w750"] == {"klines": 750, "span_s": 45000.0, "live_span_s": 750 * s["live_cadence_s"]}
    assert s["late_listed"] == ["ALTBUSDT"] and s["symbols"]["ALTBUSDT"]["first"] == "2021-05-19T11:00:00Z"
    assert s["all_symbol_gaps"] == [{"from": "2021-05-19T13:10:00Z", "to": "2021-05-19T13:19:00Z"}]
    assert s["symbols"]["ALTAUSDT"]["missing_in_range"] == 15                 # its own 5 + the common 10
    assert s["symbols"]["BTCUSDT"]["missing_in_range"] == 10
    assert any(x.startswith("cadence: 60 s") for x in lines)
    assert any(x.startswith("windows: w50 = 50 klines = 50 min") and "w750 = 750 klines = 12.5 h" in x
               for x in lines)
    assert any(x.startswith("ALTBUSDT") and x.endswith("(late-listed)") for x in lines)
    assert any(x.startswith("gap: no symbol has a kline 2021-05-19T13:10:00Z") for x in lines)
    t = pq.read_table(out / "vbt_cache_klines" / "2021-05-19.parquet").to_pylist()
    assert len(t) == s["rows"] == 230
    after = next(i for i, r in enumerate(t) if r["timestamp"].strftime("%H:%M") == "13:20")
    assert not any(r["gap_hold"] for r in t[:after]) and all(r["gap_hold"] for r in t[after:])
    assert s["gap_hold_rows"] == len(t) - after == 40
    v50 = [r["v50_lambda_max_velocity"] for r in t]
    assert all(v is None for v in v50[:50]) and sum(v is not None for v in v50[:after]) > 100   # w50 warm
    assert all(v is None for v in v50[after:])                                # restarted, < 50 klines since
    assert all(r["vel_div"] is None for r in t)                               # w750 needs 12.5 h of klines
    assert all(r["ALTBUSDT"] is None for r in t[:60]) and t[60]["ALTBUSDT"] is not None
    assert t[0]["BTCUSDT"] == 40415.0                                          # the real archive's first close


def _import(tmp_path, capsys, name: str, *flags: str) -> tuple[list[str], str, dict, list[dict]]:
    out = tmp_path / name
    assert ik.main([str(FIXTURE), "--out", str(out), *flags]) == 0
    cap = capsys.readouterr()
    summary = json.loads((out / "import_summary.json").read_text().replace(str(out), "OUT"))
    rows = pq.read_table(out / "vbt_cache_klines" / "2021-05-19.parquet").to_pylist()
    return cap.out.replace(str(out), "OUT").splitlines(), cap.err, summary, rows


def test_progress_bars_and_throughput_go_to_stderr_and_leave_the_output_unchanged(tmp_path, capsys):
    plain_out, plain_err, plain_summary, plain_rows = _import(tmp_path, capsys, "plain")   # stderr not a TTY
    bar_out, bar_err, bar_summary, bar_rows = _import(tmp_path, capsys, "bar", "--progress")
    off_out, off_err, _, _ = _import(tmp_path, capsys, "off", "--no-progress")
    assert bar_out == plain_out == off_out and any(x.startswith("cadence: 60 s") for x in bar_out)
    assert bar_summary == plain_summary and bar_rows == plain_rows
    assert "load: 100%" in bar_err and "11/11" in bar_err and "scan: 100%" in bar_err and "230/230" in bar_err
    for err in (plain_err, off_err):                       # not a terminal, no flag: no carriage-return bars
        assert "\r" not in err and "230/230" not in err
    for err in (plain_err, bar_err, off_err):
        last = err.strip().splitlines()[-1]
        assert last.startswith("import_klines: 230 scans x 11 symbols in ") and " scans/s); 11 files loaded" in last
    # the engine's gap warning prints on a line of its own above the bar (tqdm.write), not spliced into it
    assert any(x.startswith("scan input gap: 660.0s") for x in bar_err.replace("\r", "\n").splitlines())


def _agreement_input(src: Path, rows: int = 1000, symbols: int = 12) -> None:
    """``symbols`` freqtrade JSON files of 1 m klines: a common factor plus noise, one symbol listed late, one
    with missing klines, one with a 3-kline hole (carried, then excluded), and a 15-minute gap in every file."""
    import numpy as np
    rng = np.random.default_rng(31)
    common = rng.standard_normal(rows) * 1e-3
    keep = np.ones(rows, dtype=bool)
    keep[880:895] = False                                                      # the common gap
    for k in range(symbols):
        lp = np.cumsum(0.8 * common + 6e-4 * rng.standard_normal(rows))
        ok = keep.copy()
        if k == 1:
            ok[:120] = False                                                   # late-listed
        if k == 2:
            ok[rng.choice(rows, 25, replace=False)] = False                    # missing klines
        if k == 3:
            ok[300:303] = False
        body = [[T0 + i * 60_000, 1, 1, 1, float(100 * np.exp(lp[i])), 1] for i in range(rows) if ok[i]]
        (src / f"S{k:02d}_USDT-1m.json").write_text(json.dumps(body))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("source", ["generated", "shipped"])
def test_compiled_float64_import_agrees_with_the_per_scan_engine(tmp_path, source):
    """issue 31: the default float64 import (scanner.batch, whole series in compiled code) writes what the
    per-scan EigenEngine path writes: same rows, prices, gap_hold and null pattern, signals within 1e-10."""
    import numpy as np
    if source == "generated":
        src = tmp_path / "in"
        src.mkdir()
        _agreement_input(src)
    else:
        src = FIXTURE
    fast = ik.run([src], tmp_path / "fast", echo=lambda _: None, note=lambda _: None)
    slow = ik.run([src], tmp_path / "slow", echo=lambda _: None, note=lambda _: None, per_scan=True)
    assert [d["rows"] for d in fast["days"]] == [d["rows"] for d in slow["days"]]
    assert fast["gap_hold_rows"] == slow["gap_hold_rows"] > 0
    warm = 0
    for df, ds in zip(fast["days"], slow["days"]):
        a, b = pq.read_table(df["path"]), pq.read_table(ds["path"])
        assert a.schema == b.schema
        for name in a.column_names:
            x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
            assert [v is None for v in x] == [v is None for v in y], name
            if name in ("timestamp", "scan_number", "gap_hold") or name.endswith("USDT"):
                assert x == y, name
            else:
                fx = np.array([v for v in x if v is not None], dtype=float)
                fy = np.array([v for v in y if v is not None], dtype=float)
                assert fx.size == 0 or np.abs(fx - fy).max() < 1e-10, name
                warm += fx.size
    assert warm > 0
    if source == "generated":
        t = pq.read_table(fast["days"][0]["path"])
        assert t.column("vel_div").null_count < t.num_rows                    # w750 and vel_div were warm
