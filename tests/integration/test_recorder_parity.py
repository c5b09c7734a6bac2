"""Recorder → parity replay without a bus: identical replay passes, a perturbed scan is a diff, corruption is caught."""
from __future__ import annotations

import json
import shutil
import time

import pytest

import pyarrow as pa
import pyarrow.ipc as ipc

from prod.backtest import parity
from prod.bus.payloads import ObFeatures
from prod.settings import load_settings
from services.event_trader.core import CoreLimits, TraderCore
from services.event_trader.journal import Journal
from services.event_trader.main import TraderConfig, load_engine_params, start_recorder
from services.event_trader.paper import PaperAccount, PaperPosition
from services.event_trader.recorder import SCAN_SCHEMA
from tests.market import Market




class VenueLike(PaperAccount):
    """An account whose fills the paper model cannot reproduce (its own slippage and fee, one refusal), as a venue."""

    refused = False

    def open(self, trade_id, symbol, direction, notional, book, ref_price, now, scan, max_book_age_s=30.0):
        if not VenueLike.refused:
            VenueLike.refused = True
            raise RuntimeError("-2019 margin is insufficient")
        price, fee = ref_price * (1.0003 if direction > 0 else 0.9997), 0.0004 * notional * 0.999
        self.capital -= fee                     # VenueAccount's bookkeeping: the venue's fee, its fill price
        self.fees_paid += fee
        self.position = PaperPosition(trade_id, symbol, direction, price, notional * 0.999, fee, now, scan, "venue")
        f = {"side": "SELL" if direction < 0 else "BUY", "trade_id": trade_id, "symbol": symbol, "price": price,
             "notional": notional * 0.999, "fee": fee, "source": "venue", "ts": now, "scan_number": scan}
        return f


def _live_run(tmp_path, mode="paper"):
    """A core with a recorder, driven through warm-up, a stress leg (entry, exit) with ACB/posture/book inputs."""
    m = Market(time.time(), seed=3)
    s = load_settings(env={}, data_dir=str(tmp_path))
    j = Journal.open(tmp_path / "journal.sqlite", tmp_path / "audit.log")
    params = load_engine_params()
    VenueLike.refused = False
    core = TraderCore(CoreLimits(), j, params, tuple(s.symbols), clock=lambda: m.t + 0.001,
                      account_type=PaperAccount if mode == "paper" else VenueLike)
    rec = start_recorder(TraderConfig(settings=s, record_dir=str(tmp_path / "recordings")), core, j, params, mode)

    def step(n, *a):
        sc = m.scan(n, *a)
        rec.begin_scan(sc, m.t)
        try:
            return core.process(sc, m.t)
        finally:
            rec.end_scan()

    n, exits = 0, 0
    for n in range(1, 160):
        step(n, 0.0, 0.0, 0.001 + n * 0.00002)
        if n == 80:
            core.on_acb(1.2, 0.4)
            core.set_posture("STALKER", "test")
        if n == 120:
            core.set_posture("APEX", "test")
    for n in range(160, 400):
        if n % 7 == 0:   # books for a few symbols, priced around the scan's price
            for a in list(m.prices)[:6]:
                p = m.prices[a]
                core.on_book(ObFeatures(symbol=a, ts=m.t, imbalance=0.1, fill_probability=0.9, depth_quality=1.0,
                                        spread_bps=2.0, best_bid=p * 0.9999, best_ask=p * 1.0001))
        r = step(n, -0.06 if n < 260 else 0.01, -0.002 if n < 260 else 0.001, 0.003)
        exits += bool(r and r.get("exited"))
    rec.close({"journal_end_id": j.last_event_id(), "capital": core.account.capital, "last_scan": core.last_scan})
    j.close()
    assert exits >= 1, "the episode must close at least one trade"
    return rec.dir, core.account.capital


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """One recorded paper episode for the module: (its directory, the recording's name, final capital)."""
    base = tmp_path_factory.mktemp("paper_run")
    run_dir, cap = _live_run(base)
    return base, run_dir.relative_to(base), cap


def _copy(paper_run, tmp_path):
    """A private copy of the episode (tests edit it): (recording dir, journal path, capital)."""
    base, rel, cap = paper_run
    shutil.copytree(base, tmp_path / "run")
    return tmp_path / "run" / rel, tmp_path / "run" / "journal.sqlite", cap


def test_replay_of_a_recording_matches_the_journal_and_a_perturbed_scan_is_a_diff(paper_run, tmp_path, capsys):
    run_dir, jpath, cap = _copy(paper_run, tmp_path)
    code, diffs, s = parity.run_parity(run_dir, jpath)
    assert code == parity.EXIT_OK, diffs
    assert s["trades"] >= 1 and s["replay_capital"] == cap and s["live_capital"] == cap
    assert s["events"] > 50     # acb, posture changes and books were recorded

    # perturb one scan's price of the traded asset after the first entry: the replay differs, reported per trade
    scans = parity._read_scans(run_dir / "scans.arrow")
    live, _ = parity.live_events(parity.load_recording(run_dir), jpath)
    entry = next(e for e in live if e["kind"] == "ENTRY")
    target = next(r for r in scans if r["scan_number"] == entry["scan_number"])
    i = target["scan"]["assets"].index(entry["payload"]["symbol"])
    target["scan"]["asset_prices"][i] *= 1.001
    _write_scans(run_dir / "scans.arrow", scans)
    assert parity.main(["--recording", str(run_dir), "--journal", str(jpath)]) == parity.EXIT_DIFF
    out = capsys.readouterr().out
    assert "DIFF row" in out and f"scan {entry['scan_number']}" in out and "PARITY FAILED" in out


def _write_scans(path, rows):
    with pa.OSFile(str(path), "wb") as sink, ipc.new_stream(sink, SCAN_SCHEMA) as w:
        for r in rows:
            w.write_batch(pa.RecordBatch.from_pylist([{**r, "scan": json.dumps(r["scan"])}], schema=SCAN_SCHEMA))


def test_truncated_or_corrupted_recording_is_named_and_exits_2(paper_run, tmp_path, capsys):
    run_dir, jpath, _ = _copy(paper_run, tmp_path)
    arrow = run_dir / "scans.arrow"
    good = arrow.read_bytes()
    arrow.write_bytes(good[: len(good) // 2])          # truncated mid-stream (a kill -9 or a full disk)
    assert parity.main(["--recording", str(run_dir)]) == parity.EXIT_CORRUPT
    err = capsys.readouterr().err
    assert "scans.arrow" in err and "corrupt recording" in err
    arrow.write_bytes(good)
    ev = run_dir / "events.jsonl"
    lines = ev.read_text().splitlines(keepends=True)
    lines[3] = '{"v": 1, "seq": 12, "kind": "acb", "data": {"boost": 1.1\n'     # garbage written in place
    ev.write_text("".join(lines))
    assert parity.main(["--recording", str(run_dir)]) == parity.EXIT_CORRUPT
    assert "events.jsonl:4" in capsys.readouterr().err
    ev.write_text("".join(lines[:3] + lines[4:]))       # a line dropped: end.json's count says truncated
    assert parity.main(["--recording", str(run_dir)]) == parity.EXIT_CORRUPT
    assert "truncated" in capsys.readouterr().err


def test_a_venue_recording_replays_the_venues_fills_as_inputs_and_checks_the_decisions(tmp_path):
    run_dir, cap = _live_run(tmp_path, "venue")
    code, diffs, s = parity.run_parity(run_dir)
    assert code == parity.EXIT_OK, diffs
    assert s["replay_capital"] == cap and s["trades"] >= 1
    live, _ = parity.live_events(parity.load_recording(run_dir), tmp_path / "journal.sqlite")
    assert any(e["kind"] == "ENTRY_NOT_TAKEN" for e in live)         # the venue's refusal replayed as such
    # the venue's fills are not the paper model's: replaying them as paper gives differences
    cfg = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**cfg, "execution": "paper"}))
    code, diffs, _ = parity.run_parity(run_dir)
    assert code == parity.EXIT_DIFF and any("price" in d or "fee" in d for d in diffs)


def test_a_write_error_stops_the_recording_never_the_trader(tmp_path, caplog):
    from services.event_trader.recorder import END_FILE, Recorder
    from tests.helpers import wait_until
    rec = Recorder.start(tmp_path, time.time, {"execution": "paper"})
    rec._ev.close()                        # the file goes away under the writer (a full or lost disk)
    rec.event("acb", {"boost": 1.1, "beta": 0.2})
    wait_until(lambda: rec.failed is not None, 5, what="the writer noticed")
    rec.begin_scan({"scan_number": 1}, None)
    rec.end_scan()                         # the decision thread goes on without an exception
    rec.close({"capital": 1.0})
    assert "recording" in caplog.text and "stopped" in caplog.text
    assert not (rec.dir / END_FILE).exists()      # an incomplete recording never claims to be complete
