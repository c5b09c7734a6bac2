"""The chaos soak's invariant checkers on synthetic journals (written with the trader's real Journal)."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import pytest

from prod.trading.journal import Journal
from tests.soak import invariants as inv

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp()


@pytest.fixture()
def jdir(tmp_path):
    return tmp_path / "trader"


def _journal(jdir, rows):
    """Write TRADER_START then ``rows`` = [(kind, payload, scan_number)] with the real journal."""
    j = Journal.open(jdir / "journal.sqlite", jdir / "audit.log")
    j.append("TRADER_START", {"capital": 25000.0, "last_scan": None})
    for kind, payload, sn in rows:
        j.append(kind, payload, sn)
    j.close()
    return jdir / "journal.sqlite", jdir / "audit.log"


def _entry(tid, sym="ETHUSDT", fee=5.0):
    return ("ENTRY", {"trade_id": tid, "symbol": sym, "fee": fee}, 100 + tid)


def _exit(tid, net):
    return ("EXIT", {"trade_id": tid, "net": net}, 200 + tid)


def test_chain_intact_then_an_edited_line_and_a_truncation_are_caught(jdir):
    db, audit = _journal(jdir, [_entry(1), _exit(1, 12.5)])
    assert inv.check_chain(db, audit) == []
    lines = audit.read_text().splitlines(keepends=True)
    audit.write_text("".join(lines[:-1]))                       # truncated: the anchor line is gone
    assert "truncated" in inv.check_chain(db, audit)[0]
    audit.write_text("".join(lines).replace('"net":12.5', '"net":99.5'))   # edited payload
    assert "hash mismatch" in inv.check_chain(db, audit)[0]


def test_double_entry_and_max_positions(jdir):
    db, _ = _journal(jdir, [_entry(1), _exit(1, 1.0), _entry(2), _exit(2, -1.0)])
    assert inv.check_no_double_entry(inv.read_events(db)) == []
    ev = inv.read_events(db)
    ev_same_symbol = ev + [{"id": 98, "kind": "ENTRY", "payload": {"trade_id": 3, "symbol": "BTCUSDT"}},
                           {"id": 99, "kind": "ENTRY", "payload": {"trade_id": 4, "symbol": "BTCUSDT"}}]
    found = inv.check_no_double_entry(ev_same_symbol)
    assert any("BTCUSDT entered while already open" in f for f in found)
    assert any("2 positions open (max 1)" in f for f in found)
    again = ev + [{"id": 97, "kind": "ENTRY", "payload": {"trade_id": 2, "symbol": "XRPUSDT"}}]
    assert any("trade_id 2 entered twice" in f for f in inv.check_no_double_entry(again))


def test_capital_replay_counts_exits_and_the_open_entry_fee(jdir):
    db, _ = _journal(jdir, [_entry(1, fee=5.0), _exit(1, 12.5), _entry(2, fee=4.0), _exit(2, -3.25), _entry(3, fee=2.0)])
    ev = inv.read_events(db)
    assert inv.replay_capital(ev) == pytest.approx(25000.0 + 12.5 - 3.25 - 2.0)
    assert inv.check_capital(ev, 25000.0 + 12.5 - 3.25 - 2.0) == []
    bad = inv.check_capital(ev, 25000.0 + 12.5 - 3.25)   # the open position's entry fee forgotten
    assert len(bad) == 1 and "journal replay" in bad[0]


def test_entries_only_on_fresh_scans_the_scanner_wrote(tmp_path, jdir):
    arrow = tmp_path / "arrow_scans" / "2026-01-02"
    arrow.mkdir(parents=True)
    for sn, dt in ((101, 0), (102, 30)):
        t = datetime.fromtimestamp(T0 + dt, timezone.utc)
        (arrow / f"scan_{sn:06d}_{t.strftime('%H%M%S')}.arrow").write_bytes(b"")
    scans = inv.scan_times(tmp_path / "arrow_scans")
    assert scans == {101: T0, 102: T0 + 30}
    ev = [{"id": 1, "kind": "ENTRY", "ts": T0 + 2, "scan_number": 101, "payload": {}},
          {"id": 2, "kind": "ENTRY", "ts": T0 + 30 + 15, "scan_number": 102, "payload": {}},   # 15 s old
          {"id": 3, "kind": "ENTRY", "ts": T0 + 40, "scan_number": 103, "payload": {}},        # never written
          {"id": 4, "kind": "ENTRY", "ts": T0 + 40, "scan_number": 900_000_001, "payload": {}}]
    found = inv.check_entries_inputs(ev, scans, {900_000_001}, max_scan_age_s=10)
    assert len(found) == 3
    assert "15.0s after the scan" in found[0] and "never wrote" in found[1] and "injected" in found[2]
    assert inv.check_entries_inputs(ev[:1], scans, set(), 10) == []


def test_recoveries_and_rss_slope():
    kills = [{"program": "a", "t": 1.0, "recovery_s": 4.2}, {"program": "b", "t": 2.0, "recovery_s": 31.0},
             {"program": "c", "t": 3.0, "recovery_s": None}]
    found = inv.check_recoveries(kills, 30)
    assert len(found) == 2 and "31.0s" in found[0] and "not back" in found[1]
    flat = [(t, 7, 100.0 + (t % 2) * 0.1) for t in range(0, 900, 5)]
    leak = [(t, 8, 100.0 + t / 3600 * 500) for t in range(0, 900, 5)]          # 500 MB/h
    short = [(t, 9, 100.0 + t) for t in range(0, 100, 5)]                      # too short to judge
    slopes = inv.rss_slopes({"flat": flat, "leak": leak, "short": short})
    assert abs(slopes["flat"]["slope_mb_per_h"]) < 5
    assert slopes["leak"]["slope_mb_per_h"] == pytest.approx(500, rel=1e-6)
    assert slopes["short"]["slope_mb_per_h"] is None
    found = inv.check_rss(slopes, 200)
    assert len(found) == 1 and found[0].startswith("leak:")


def test_read_events_absent_journal_and_anchor_without_lines(tmp_path, jdir):
    assert inv.read_events(tmp_path / "none.sqlite") == []
    db, audit = _journal(jdir, [])
    audit.unlink()
    assert "truncated" in inv.check_chain(db, audit)[0]
    con = sqlite3.connect(db)
    con.execute("DELETE FROM meta")
    con.commit()
    con.close()
    assert inv.check_chain(db, audit) == []   # nothing written yet: nothing to verify
