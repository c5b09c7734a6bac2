"""Recorder → parity replay without a bus: identical replay passes, a perturbed scan is a diff, corruption is caught."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pyarrow as pa
import pyarrow.ipc as ipc

from prod.backtest import parity
from prod.trading import recording
from prod.bus.payloads import ObFeatures
from prod.settings import load_settings
from prod.trading.core import CoreLimits
from prod.trading.journal import Journal
from services.event_trader.main import TraderConfig, load_engine_params, start_recorder
from prod.trading.accounts import PaperAccount, Position
from prod.trading.recording import SCAN_SCHEMA
from tests.helpers import REPO_ROOT
from tests.market import Market, morning




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
        self.position = Position(trade_id, symbol, direction, price, notional * 0.999, fee, now, scan, "venue")
        f = {"side": "SELL" if direction < 0 else "BUY", "trade_id": trade_id, "symbol": symbol, "price": price,
             "notional": notional * 0.999, "fee": fee, "source": "venue", "ts": now, "scan_number": scan}
        return f

    def flatten(self, price):
        """What the venue account's kill watcher does on its thread: flatten, book the exit, leave it for the core."""
        pos = self.position
        gross = pos.direction * (price - pos.entry_price) / pos.entry_price * pos.notional
        fee = 0.0004 * pos.notional
        self.capital += gross - fee
        self.fees_paid += fee
        self.trades += 1
        self.day_trades += 1
        self.position = None
        self.kill_exits.append({"side": "BUY" if pos.direction < 0 else "SELL", "trade_id": pos.trade_id,
                                "symbol": pos.symbol, "price": price, "entry_price": pos.entry_price,
                                "notional": pos.notional, "fee": fee, "gross": gross,
                                "net": gross - fee - pos.entry_fee, "reason": "KILL_SWITCH", "source": "venue",
                                "ts": 0.0, "scan_number": None, "capital_after": self.capital})


def _live_run(tmp_path, mode="paper"):
    """A core with a recorder, driven through warm-up, a stress leg (entry, exit) with ACB/posture/book inputs."""
    m = Market(morning(), seed=3)
    s = load_settings(env={}, data_dir=str(tmp_path))
    j = Journal.open(tmp_path / "journal.sqlite", tmp_path / "audit.log")
    params = load_engine_params()
    VenueLike.refused = False
    core, rec = start_recorder(TraderConfig(settings=s, record_dir=str(tmp_path / "recordings")),
                               dict(limits=CoreLimits(), symbols=tuple(s.symbols), clock=lambda: m.t + 0.001,
                                    account_type=PaperAccount if mode == "paper" else VenueLike), j, params, mode)
    core.journal_event("TRADER_START", {"capital": core.account.capital, "last_scan": core.last_scan})

    def step(n, *a):
        sc = m.scan(n, *a)
        rec.begin_scan(sc, m.t)
        try:
            return core.process(sc, m.t)
        finally:
            rec.end_scan()

    if mode != "paper":
        core.account.kill_exits = []
    n, exits, killed = 0, 0, False
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
        if mode != "paper" and not killed and exits and core.account.position is not None:
            # a kill switch between two scans: the venue account flattens on its own; the core books it next scan
            core.account.flatten(m.prices[core.account.position.symbol] * 1.002)
            killed = True
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
    scans, _ = recording.read_scans(run_dir / "scans.arrow")
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


def test_a_killed_run_replays_up_to_its_torn_tail_and_damage_before_the_tail_is_still_corrupt(paper_run, tmp_path,
                                                                                               capsys):
    """A kill -9 leaves no end.json, a half-written last Arrow message and JSON line, and live rows the writer had
    not caught up with: the run replays up to its last whole scan and compares what it holds."""
    run_dir, jpath, _ = _copy(paper_run, tmp_path)
    scans, _ = recording.read_scans(run_dir / "scans.arrow")
    live, _ = parity.live_events(parity.load_recording(run_dir), jpath)
    first_exit = next(e for e in live if e["kind"] == "EXIT")
    k = next(i for i, r in enumerate(scans) if r["scan_number"] == first_exit["scan_number"]) + 5
    (run_dir / "end.json").unlink()
    arrow = run_dir / "scans.arrow"
    _write_scans(arrow, scans[:k + 1])
    whole = arrow.read_bytes()
    _write_scans(arrow, scans[:k])
    good_end = len(arrow.read_bytes()) - 8               # k whole scans (less the 8-byte end-of-stream marker)
    cut = good_end + 40
    arrow.write_bytes(whole[:cut])                       # the kill hit while scan k was being written
    ev = run_dir / "events.jsonl"
    text = ev.read_text()
    torn_line = text.splitlines(keepends=True)[-1][:25]
    ev.write_text(text + torn_line)                      # and while an input line was written
    recorded = {r["scan_number"] for r in scans[:k]}
    cut_rows = sum(1 for e in live if e["scan_number"] not in recorded)
    assert cut_rows >= 1, "the cut must leave live rows the recording does not hold"

    assert parity.main(["--recording", str(run_dir), "--journal", str(jpath)]) == parity.EXIT_OK
    out = capsys.readouterr().out
    assert f"{k} scans" in out and "partial run" in out and f"torn tail dropped: {40 + len(torn_line)} bytes" in out, out
    assert f"live rows on scans not recorded: {cut_rows}" in out and "PARITY OK: 0 difference(s)" in out, out
    code, diffs, s = parity.run_parity(run_dir, jpath)
    assert code == parity.EXIT_OK and s["live_capital"] is not None and s["live_capital"] == s["replay_capital"]
    assert s["live_rows"] == len(live) - cut_rows and s["trades"] >= 1

    # killed with a position open and no exit yet: the capital compared is TRADER_START's less the entry fee
    first_entry = next(e for e in live if e["kind"] == "ENTRY")
    ke = next(i for i, r in enumerate(scans) if r["scan_number"] == first_entry["scan_number"]) + 1
    _write_scans(arrow, scans[:ke])
    code, diffs, s = parity.run_parity(run_dir, jpath)
    assert code == parity.EXIT_OK and s["live_rows"] == 1 and s["torn_bytes"] == len(torn_line), (diffs, s)
    assert s["live_capital"] == s["replay_capital"] == 25_000.0 - first_entry["payload"]["fee"], s

    # the replay still checks what the partial run holds: a perturbed price before the cut is a difference
    entry = next(e for e in live if e["kind"] == "ENTRY")
    target = next(r for r in scans[:k] if r["scan_number"] == entry["scan_number"])
    bad = [dict(r, scan=json.loads(json.dumps(r["scan"]))) for r in scans[:k]]
    bt = next(r for r in bad if r["seq"] == target["seq"])
    bt["scan"]["asset_prices"][bt["scan"]["assets"].index(entry["payload"]["symbol"])] *= 1.001
    _write_scans(arrow, bad)
    assert parity.run_parity(run_dir, jpath)[0] == parity.EXIT_DIFF

    # garbage before the tail is not a torn tail: corrupt, named
    raw = bytearray(whole[:cut])
    mid = len(raw) // 2
    raw[mid:mid + 64] = b"\x07" * 64
    arrow.write_bytes(bytes(raw))
    assert parity.main(["--recording", str(run_dir), "--journal", str(jpath)]) == parity.EXIT_CORRUPT
    assert "scans.arrow" in capsys.readouterr().err

    # the parent directory checks every run in it and exits with the worst verdict
    good = tmp_path / "runs" / "a_good"
    shutil.copytree(paper_run[0] / paper_run[1], good)
    shutil.copytree(run_dir, tmp_path / "runs" / "b_corrupt")
    assert parity.main(["--recording", str(tmp_path / "runs"), "--journal", str(paper_run[0] / "journal.sqlite")]) \
        == parity.EXIT_CORRUPT
    assert "2 runs: 1 ok, 0 differ, 1 corrupt, 0 not replayable" in capsys.readouterr().out


def test_a_venue_recording_replays_the_venues_fills_as_inputs_and_checks_the_decisions(tmp_path):
    run_dir, cap = _live_run(tmp_path, "venue")
    code, diffs, s = parity.run_parity(run_dir)
    assert code == parity.EXIT_OK, diffs
    assert s["replay_capital"] == cap and s["trades"] >= 1
    live, _ = parity.live_events(parity.load_recording(run_dir), tmp_path / "journal.sqlite")
    assert any(e["kind"] == "ENTRY_NOT_TAKEN" for e in live)         # the venue's refusal replayed as such
    forced = [e for e in live if e["kind"] == "EXIT" and e["payload"].get("reason") == "KILL_SWITCH"]
    assert len(forced) == 1 and forced[0]["payload"]["forced"], forced   # and the kill-switch exit as booked
    assert s["trades"] >= 2                                              # trades after it replayed too
    # the venue's fills are not the paper model's: replaying them as paper gives differences
    cfg = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**cfg, "execution": "paper"}))
    code, diffs, _ = parity.run_parity(run_dir)
    assert code == parity.EXIT_DIFF and any("price" in d or "fee" in d for d in diffs)


def _fsize_child(tmp_path, mode):
    r = subprocess.run([sys.executable, "-m", "tests.integration.recorder_fsize_child", str(tmp_path), mode],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def test_a_disk_that_fills_and_frees_again_leaves_a_complete_recording(tmp_path):
    """The kernel refuses the appends (EFBIG part-way through a line) for a while: the cut-short write is taken
    back off the file, everything waits in order, and once writes succeed the recording is whole and strict."""
    out, err = _fsize_child(tmp_path, "transient")
    run = Path(out["dir"])
    assert out["write_errors"] >= 2 and out["held_max"] >= 20 and out["failed"] is None, out
    assert out["during"]["events"] == out["before"]["events"], out     # the torn 30 bytes did not stay
    assert out["during"]["scans"] == out["before"]["scans"], out
    assert "write failed" in err and "held" in err
    assert out["end"] and out["scans"] == 35 and out["events"] == 35, out
    scans, torn = recording.read_scans(run / "scans.arrow")              # strict: no torn tail allowed
    events, torn_ev = recording.read_events(run / "events.jsonl")
    assert torn == torn_ev == 0
    assert [r["scan_number"] for r in scans] == list(range(1, 36))
    assert [e["data"]["boost"] for e in events] == [1.0 + n / 1000 for n in range(1, 36)]
    assert math.isnan(events[2]["data"]["beta"])                       # a bad input is recorded as it came
    seqs = sorted([r["seq"] for r in scans] + [e["seq"] for e in events])
    assert seqs == sorted(set(seqs)) and len(seqs) == 70                # one counter, nothing lost


def test_a_disk_that_stays_full_stops_the_recording_never_the_trader(tmp_path):
    out, err = _fsize_child(tmp_path, "persistent")
    assert out["failed"] and "more than 8" in out["failed"], out
    assert "stopped" in err and not out["end"], out                    # never claims to be complete
    run = Path(out["dir"])
    scans, torn = recording.read_scans(run / "scans.arrow", torn_tail_ok=True)
    assert [r["scan_number"] for r in scans] == list(range(1, 11)) and torn == 0


def test_the_soak_replays_every_run_and_reports_a_difference(paper_run, tmp_path):
    from tests.soak.invariants import check_parity
    run_dir, jpath, _ = _copy(paper_run, tmp_path)
    summary, found = check_parity(run_dir.parent)
    assert found == [] and summary["runs"] == 1 and summary["ok"] == 1 and summary["trades"] >= 1, (summary, found)
    scans, _ = recording.read_scans(run_dir / "scans.arrow")
    entry = next(e for e in parity.live_events(parity.load_recording(run_dir), jpath)[0] if e["kind"] == "ENTRY")
    target = next(r for r in scans if r["scan_number"] == entry["scan_number"])
    target["scan"]["asset_prices"][target["scan"]["assets"].index(entry["payload"]["symbol"])] *= 1.001
    _write_scans(run_dir / "scans.arrow", scans)
    summary, found = check_parity(run_dir.parent)
    assert summary["ok"] == 0 and found and all(f.startswith(run_dir.name) for f in found), (summary, found)
    cfg = json.loads((run_dir / "config.json").read_text())
    cfg["params"]["vel_div_threshold"] *= 2       # not the engine that made the start snapshot: corrupt, named
    (run_dir / "config.json").write_text(json.dumps(cfg))
    summary, found = check_parity(run_dir.parent)
    assert len(found) == 1 and "config.json" in found[0] and "start snapshot" in found[0], found
    assert check_parity(tmp_path / "nothing")[1] == [f"{tmp_path / 'nothing'}: no trader recording to replay"]
