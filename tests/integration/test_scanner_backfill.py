"""Scanner cold start from venue 1s klines: warm first scan, λ parity with the engine, clean fallbacks."""
from __future__ import annotations

import asyncio
import json
import re
import urllib.request

import numpy as np
import pytest

from prod.venue.errors import VenueRequestError
from prod.venue.rest import VenueRestClient
from prod.scans import arrow_io
from scanner.engine import INSTABILITY_SCANS, WINDOWS, EigenEngine
from standins.venue_sim.model import MarketModel
from standins.venue_sim.universe import build_universe
from tests.helpers import Proc, free_port, start_listening, start_venue, wait_until

START = 1_700_000_000_000
BACKFILL_RE = re.compile(r"backfilled (\d+) scans from venue 1s klines \(market time (\d+)\.\.(\d+) ms, "
                         r"step (\d+) ms .*?lambda (\{.*\})\)")


def _sim(tmp_path, *extra, name="venue_bf"):
    return start_venue(tmp_path, "--symbols", "60", *extra, name=name)


def _scan_once(tmp_path, port, *extra, name="scanner_bf"):
    p = Proc("scanner.ng8_scanner", ["--venue-ws", f"ws://127.0.0.1:{port}", "--venue-rest",
                                     f"http://127.0.0.1:{port}", "--data-dir", str(tmp_path / name),
                                     "--no-bus", "--max-scans", "1", "--precision", "float64", *extra],
             tmp_path / f"{name}.log").start()
    # a bound, not a pace: the backfill of thousands of 1s klines per symbol took over 60 s at load 15
    assert p.p.wait(180) == 0, p.log_text()
    files = list(arrow_io.iter_scan_files(tmp_path / name / "arrow_scans"))
    assert len(files) == 1, "backfilled rows are history: only the live scan is written"
    return p.log_text(), arrow_io.read_scan(files[0])


async def _klines(port, symbols, start_ms, end_ms):
    out = {}
    sem = asyncio.Semaphore(6)
    async with VenueRestClient(f"http://127.0.0.1:{port}") as rest:
        async def one(s):
            rows, st = [], start_ms
            async with sem:
                while st <= end_ms:
                    got = await rest.klines(s, "1s", limit=499, start_ms=st, end_ms=end_ms)   # weight 2
                    if not got:
                        break
                    rows += got
                    st = got[-1].open_time_ms + 1000
            out[s] = rows
        await asyncio.gather(*(one(s) for s in symbols))
    return out


def _replicate(port, rec, anchor, step, n):
    """Independently sample kline closes at the logged times and run the engine on them."""
    symbols = rec["assets"]
    times = [anchor - (n - 1 - k) * step for k in range(n)]
    kl = asyncio.run(_klines(port, symbols, times[0] - 2000, anchor))
    cols = []
    for s in symbols:
        ot = np.array([k.open_time_ms for k in kl[s]])
        close = np.array([k.close for k in kl[s]])
        assert (np.diff(ot) == 1000).all(), f"{s}: 1s klines are contiguous"
        j = np.searchsorted(ot + 1000, times, side="right") - 1      # newest kline closed by T
        assert (j >= 0).all()
        cols.append(close[j])
    rows = np.array(cols).T
    eng = EigenEngine(symbols, precision_mode="float64")
    quiet = n - (INSTABILITY_SCANS + 1)
    for r in rows[:quiet]:
        eng.append(list(r))
    for t, r in zip(times[quiet:], rows[quiet:]):
        last = eng.enhance(list(r), t * 1_000_000)
    first = eng.enhance(rec["prices"], rec["timestamp_ns"])
    return last, first


def _check_warm_and_parity(log, rec, port, expect_step):
    m = BACKFILL_RE.search(log)
    assert m, log
    n, t0, anchor, step = (int(m.group(k)) for k in (1, 2, 3, 4))
    assert n == max(WINDOWS) + INSTABILITY_SCANS + 2 == 772 and step == expect_step
    assert anchor - t0 == (n - 1) * step
    # the FIRST scan of a fresh scanner with an empty archive: every window warm, vel_div published
    assert rec["scan_number"] == 1 and rec["vel_div"] is not None
    for w in WINDOWS:
        assert rec[f"w{w}_lambda_max"] is not None and rec[f"w{w}_velocity"] is not None, w
        assert rec[f"w{w}_instability"] is not None, w
    last, first = _replicate(port, rec, anchor, step, n)
    logged = {int(k): v for k, v in json.loads(m.group(5)).items()}
    for w in WINDOWS:        # backfilled λ = engine on the same kline closes
        assert logged[w] == pytest.approx(last.windows[w].lambda_max, rel=1e-12, abs=1e-12), w
    if "bridged" not in log:
        # the first scan follows the history directly: it is the engine's next step on those closes
        for w in WINDOWS:
            assert rec[f"w{w}_lambda_max"] == pytest.approx(first.windows[w].lambda_max, rel=1e-12, abs=1e-12), w
        assert rec["vel_div"] == pytest.approx(first.vel_div, rel=1e-9, abs=1e-12)
        return False
    return True


def test_fresh_scanner_first_scan_is_warm_and_lambda_matches_engine_on_kline_closes(tmp_path):
    # steps of 5 s of market time (772 of them fit the venue's 4096 s of 1s klines) that last 20 s of wall
    # time (interval 20 s x speed 0.25): the history loads well within one step even on a loaded box (at
    # 5 s x speed 1 it once took 7.9 s and the first scan was bridged), so the first scan is compared
    # with the engine's next step on the same closes
    sim, port = _sim(tmp_path, "--speed", "0.25")
    try:
        log, rec = _scan_once(tmp_path, port, "--interval", "20")
        assert "50/50 symbols complete" in log
        bridged = _check_warm_and_parity(log, rec, port, expect_step=5000)
        assert not bridged, "the history ends one scan step before the first scan"
    finally:
        sim.stop()


def test_a_venue_that_comes_up_after_the_scanner_still_gives_a_warm_first_scan(tmp_path):
    # supervisord starts the scanner and the venue together; the venue may answer a moment later
    port = free_port()
    p = Proc("scanner.ng8_scanner", ["--venue-ws", f"ws://127.0.0.1:{port}", "--venue-rest",
                                     f"http://127.0.0.1:{port}", "--data-dir", str(tmp_path / "scanner_late"),
                                     "--no-bus", "--max-scans", "1", "--precision", "float64", "--interval", "5"],
             tmp_path / "scanner_late.log").start()
    sim = None
    try:
        wait_until(lambda: "not reachable yet" in p.log_text() or p.p.poll() is not None, 30,
                   what="the scanner to find the venue down")
        assert p.p.poll() is None, p.log_text()
        sim = start_listening("standins.venue_sim", ["--host", "127.0.0.1", "--port", str(port), "--seed", "42",
                                                     "--symbols", "60"], tmp_path / "venue_late.log", port)
        assert p.p.wait(90) == 0, p.log_text()
        log = p.log_text()
        assert re.search(r"venue REST \S+ answers after \d+ tries", log), log
        assert BACKFILL_RE.search(log) and "no venue backfill" not in log, log
        files = list(arrow_io.iter_scan_files(tmp_path / "scanner_late" / "arrow_scans"))
        assert len(files) == 1
        rec = arrow_io.read_scan(files[0])
        assert rec["scan_number"] == 1 and rec["vel_div"] is not None
        assert all(rec[f"w{w}_lambda_max"] is not None for w in WINDOWS)
    finally:
        p.stop()
        if sim is not None:
            sim.stop()


def test_speed_above_one_samples_market_time_at_interval_times_speed(tmp_path):
    # 8192 s of 1s klines: the history spans 3860 s of market time, and at speed 10 the default 4096 s
    # would keep its oldest klines only ~23 s of wall time, less than a loaded box took to compare them
    sim, port = _sim(tmp_path, "--speed", "10", "--klines-1s", "8192", name="venue_fast")
    try:
        log, rec = _scan_once(tmp_path, port, "--interval", "0.5", name="scanner_fast")
        assert "interval 0.5s x speed 10" in log
        _check_warm_and_parity(log, rec, port, expect_step=5000)
    finally:
        sim.stop()


def test_venue_without_1s_klines_falls_back_cleanly_with_nulls(tmp_path):
    sim, port = _sim(tmp_path, "--klines-1s", "0", name="venue_no1s")
    try:
        async def probe():
            async with VenueRestClient(f"http://127.0.0.1:{port}") as rest:
                await rest.klines("BTCUSDT", "1s", limit=10)
        with pytest.raises(VenueRequestError) as ei:       # what the real USDT-M venue answers
            asyncio.run(probe())
        assert ei.value.code == -1120
        log, rec = _scan_once(tmp_path, port, "--interval", "1", name="scanner_no1s")
        assert "venue rejects interval=1s" in log and "backfilled" not in log
        assert rec["vel_div"] is None and rec["regime_signal"] is None
        assert all(rec[f"w{w}_lambda_max"] is None for w in WINDOWS)
        assert sum(p is not None for p in rec["prices"]) == 50      # the live scan itself is real
    finally:
        sim.stop()


def test_rest_error_fault_falls_back_cleanly_with_nulls(tmp_path):
    sim, port = _sim(tmp_path, name="venue_fault")
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/sim/admin/fault", method="POST",
                                     data=json.dumps({"kind": "rest_error", "status": 500, "count": 10_000}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read())["ok"]
        log, rec = _scan_once(tmp_path, port, "--interval", "1", name="scanner_fault")
        assert "no venue backfill" in log and "backfilled" not in log
        assert rec["vel_div"] is None and all(rec[f"w{w}_lambda_max"] is None for w in WINDOWS)
    finally:
        sim.stop()


def test_sim_1s_klines_are_the_model_path_consistent_with_1m_and_deterministic():
    u = build_universe(7, 50)
    m = MarketModel(u, 7, START)
    for _ in range(1300):                                    # > 2 market minutes
        m.step()
    t1, f1 = m.klines_1m(0)
    checked = 0
    for k in range(len(t1) - 1):                             # closed live minutes
        if t1[k] >= m.k1_start:
            t, f = m.klines_1s(0, int(t1[k]), None, 60)
            assert len(t) == 60 and (np.diff(t) == 1000).all()
            assert f["c"][-1] == pytest.approx(f1["c"][k], rel=1e-12)        # same trades
            assert f["v"].sum() == pytest.approx(f1["v"][k], rel=1e-5)
            assert f["h"].max() <= f1["h"][k] * (1 + 1e-12) and f["l"].min() >= f1["l"][k] * (1 - 1e-12)
            checked += 1
    assert checked >= 1
    # pre-start: the same factor model at 1 s, ending at the start price, deterministic per seed
    t, f = m.klines_1s(0, None, m.k1_start - 1, 1000)
    assert t[-1] == m.k1_start - 1000 and (np.diff(t) == 1000).all()
    assert abs(f["c"][-1] / u[0].price - 1) < 0.005
    again = MarketModel(u, 7, START).klines_1s(0, None, m.k1_start - 1, 1000)[1]["c"]
    assert np.array_equal(f["c"], again)
    other = MarketModel(build_universe(8, 50), 8, START).klines_1s(0, None, m.k1_start - 1, 1000)[1]["c"]
    assert not np.array_equal(f["c"] / f["c"][-1], other / other[-1])
    # the pre-start factor structure: BTC and ETH returns are correlated like the live path
    pre = np.array([np.diff(np.log(MarketModel(u, 7, START).klines_1s(i, None, m.k1_start - 1, 1000)[1]["c"][::5]))
                    for i in range(10)])
    c = np.corrcoef(pre)
    assert 0.05 < c[np.triu_indices(10, 1)].mean() < 0.6
    off = MarketModel(u, 7, START, kline_1s_s=0)
    assert off.k1_cap == 0
