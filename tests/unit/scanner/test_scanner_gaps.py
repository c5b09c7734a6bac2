"""Issue 21: an input gap never makes a signal, one missing symbol never empties every window, v5 files still read."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from prod.scans import arrow_io
from scanner.engine import GAP_HOLD_RETURNS, EigenEngine
from scanner.records import build_record
from tests.unit.scanner.test_scanner_incremental import real_btc_panel

STEP = 5_000_000_000


def factor_prices(n: int, scans: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r = 0.001 * (0.6 * rng.standard_normal((scans, 1)) + 0.8 * rng.standard_normal((scans, n)))
    return 100.0 * np.exp(np.cumsum(r, axis=0))


def names(n):
    return [f"A{i:02d}USDT" for i in range(n)]


def run(engine, rows, ts):
    return [engine.enhance([None if not np.isfinite(p) else float(p) for p in row], t) for row, t in zip(rows, ts)]


def test_synthetic_spacing_gap_makes_no_signal_and_windows_refill():
    n, before, after = 12, 760, 760
    p = factor_prices(n, before + after)
    p[before:] *= 0.92                                   # the market moved 8 % while the feed was down
    ts = [k * STEP for k in range(before)] + [(before - 1) * STEP + 9000 * 10**9 + k * STEP for k in range(after)]
    old = run(EigenEngine(names(n), precision_mode="float64"), p, ts)          # no cadence: the bug
    new = run(EigenEngine(names(n), precision_mode="float64", interval_s=5.0), p, ts)
    g = before
    assert old[g].vel_div is not None and abs(old[g].vel_div) > 0.01   # the cross-gap jump is a "signal"
    assert new[g - 1].vel_div is not None and not new[g - 1].gap_hold and new[g - 1].gap_s == 0.0
    assert abs(new[g].gap_s - 8995.0) < 1e-6 and new[g].gap_hold
    for k in range(g, g + 50):                            # every window holds the gap: none is computed
        assert new[k].warm_windows == [] and new[k].vel_div is None and new[k].gap_hold
    assert new[g + 50].warm_windows == [50]               # w50 refilled with 50 post-gap returns
    assert new[g + 750].warm_windows == [50, 150, 300, 750] and new[g + 750].gap_hold
    assert new[g + GAP_HOLD_RETURNS].vel_div is not None and not new[g + GAP_HOLD_RETURNS].gap_hold
    assert all(abs(r.vel_div) < 0.01 for r in new[g:] if r.vel_div is not None)


def test_missing_symbol_is_carried_then_excluded_without_emptying_windows():
    n = 12
    p = factor_prices(n, 800)
    p[770, 3] = np.nan                                   # one scan without a price: carried
    p[780:790, 5] = np.nan                               # ten scans: carried twice, then excluded
    res = run(EigenEngine(names(n), precision_mode="float64", interval_s=5.0), p,
              [k * STEP for k in range(800)])
    assert res[770].carried == 1 and res[770].warm_windows == [50, 150, 300, 750] and not res[770].gap_hold
    assert res[770].windows[50].n_assets == n and res[771].windows[50].n_assets == n
    assert [res[k].carried for k in (780, 781, 782)] == [1, 1, 0]
    for k in range(782, 800):                             # symbol 5 left out, the others still scanned
        assert res[k].warm_windows == [50, 150, 300, 750] and res[k].windows[50].n_assets == n - 1
        assert res[k].windows[50].loadings[5] is None


def test_partly_priced_scan_holds_entries_briefly_and_keeps_windows():
    n = 12
    p = factor_prices(n, 800)
    p[780, 1:] = np.nan                                   # only one symbol priced in this scan
    res = run(EigenEngine(names(n), precision_mode="float64", interval_s=5.0), p,
              [k * STEP for k in range(800)])
    assert res[780].partial and res[780].carried == n - 1
    assert [res[k].gap_hold for k in range(779, 786)] == [False, True, True, True, True, False, False]
    assert all(res[k].warm_windows == [50, 150, 300, 750] for k in range(780, 800))
    assert res[785].vel_div is not None


def test_v6_record_round_trip_and_v5_file_still_reads(tmp_path):
    n = 12
    eng = EigenEngine(names(n), precision_mode="float64", interval_s=5.0)
    p = factor_prices(n, 60)
    res = run(eng, p[:55], [k * STEP for k in range(55)])[-1]
    gap = eng.enhance(list(p[55]), 54 * STEP + 600 * 10**9)
    for sn, r in ((1, res), (2, gap)):
        back = arrow_io.read_scan(arrow_io.write_scan(tmp_path, build_record(sn, r)))
        assert back["schema_version"] == "6.0.0" and back["w50_warm"] == (50 in r.warm_windows)
        assert back["gap_hold"] == r.gap_hold and back["gap_s"] == r.gap_s
        pay = arrow_io.payload_from_record(back, 1.0)
        assert pay["gap_hold"] == r.gap_hold and pay["warm_windows"] == r.warm_windows
    assert gap.gap_hold and gap.gap_s == 595.0
    rec = build_record(3, res)
    v5 = {f.name: rec[f.name] for f in arrow_io.SCAN_SCHEMA_V5}
    v5.update(schema_version="5.0.0", timestamp_iso="x", **{k: arrow_io.json.dumps(v5[k]) for k in
                                                            ("assets", "prices", "loadings")})
    table = pa.Table.from_pylist([v5], schema=arrow_io.SCAN_SCHEMA_V5)
    old = arrow_io.validate_table(table, "v5-file")
    assert old["w50_warm"] is True and old["w750_warm"] is False and old["gap_s"] == 0.0 and not old["gap_hold"]
    v5["schema_version"] = "6.0.0"                       # a 27-field file claiming v6 is refused, naming it
    try:
        arrow_io.validate_table(pa.Table.from_pylist([v5], schema=arrow_io.SCAN_SCHEMA_V5), "bad-file")
    except arrow_io.ScanFileError as exc:
        assert "bad-file" in str(exc)
    else:
        raise AssertionError("mislabelled v5 file accepted")


def test_real_btc_maintenance_gap_and_partly_priced_minute():
    """Real 1-min BTCUSDT closes (skips without ../shared/data/real): a 2.5 h hole and a partly priced minute."""
    n, scans = 12, 2400
    p = real_btc_panel(n, scans)
    minute = 60 * 10**9
    ts = np.arange(scans, dtype=np.int64) * minute
    cut = slice(800, 950)                                 # 150 minutes of exchange maintenance: no rows
    keep = np.r_[0:cut.start, cut.stop:scans]
    pg, tg = p[keep], ts[keep]
    old = run(EigenEngine(names(n), precision_mode="float64"), pg, tg)
    new = run(EigenEngine(names(n), precision_mode="float64", interval_s=60.0), pg, tg)
    g = cut.start
    assert old[g].vel_div is not None                     # before: the cross-gap return is a signal
    assert new[g].gap_s == 150 * 60.0 and new[g].vel_div is None and new[g].gap_hold
    assert new[g + GAP_HOLD_RETURNS].vel_div is not None and not new[g + GAP_HOLD_RETURNS].gap_hold
    # a partly priced minute: all but two symbols missing
    q = p[:1800].copy()
    q[1000, 2:] = np.nan
    old = run(EigenEngine(names(n), precision_mode="float64", carry_scans=0), q, ts[:1800])
    new = run(EigenEngine(names(n), precision_mode="float64", interval_s=60.0), q, ts[:1800])
    dark_old = sum(r.vel_div is None for r in old[1000:])
    dark_new = sum(r.vel_div is None for r in new[1000:])
    assert dark_old >= 750                                # before: ~12.5 h without vel_div
    assert dark_new <= 2 and sum(r.gap_hold for r in new[1000:]) == 4


def test_a_late_scan_under_a_minute_is_a_longer_return_not_a_gap():
    """A busy machine delays a scan by seconds: its return covers a longer step and stays in the windows;
    only a step over both 2.5 cadences and MIN_GAP_S (60 s) is an outage."""
    n = 12
    eng = EigenEngine(names(n), precision_mode="float64", interval_s=5.0)
    p = factor_prices(n, 60)
    run(eng, p[:55], [k * STEP for k in range(55)])
    late = eng.enhance(list(p[55]), 54 * STEP + 59 * 10**9)        # 59 s: 11.8 cadences, under a minute
    assert late.gap_s == 0.0 and not late.gap_hold and 50 in late.warm_windows and eng.gaps == 0
    out = eng.enhance(list(p[56]), 54 * STEP + 59 * 10**9 + 61 * 10**9)   # 61 s: an outage
    assert out.gap_s == 56.0 and out.gap_hold and 50 not in out.warm_windows and eng.gaps == 1
