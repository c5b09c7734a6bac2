"""``--universe obf``: the scanner scans every simulator perp beside the unchanged 50-asset scan."""
from __future__ import annotations

import numpy as np

from prod.settings import PRIORITY_SYMBOLS
from prod.scans import arrow_io
from scanner.engine import EigenEngine
from scanner.records import build_record
from tests.helpers import Proc, running_venue


def test_universe_obf_writes_a_whole_universe_scan_and_leaves_the_50_asset_scan_unchanged(tmp_path):
    with running_venue(tmp_path, "--speed", "10") as (_, port):
        p = Proc("scanner.ng8_scanner", [
            "--venue-ws", f"ws://127.0.0.1:{port}", "--venue-rest", f"http://127.0.0.1:{port}",
            "--data-dir", str(tmp_path / "data"), "--no-bus", "--no-venue-backfill", "--interval", "0.25",
            "--max-scans", "6", "--universe", "obf"], tmp_path / "scanner.log").start()
        assert p.p.wait(90) == 0, p.log_text()
    log = p.log_text()
    assert "universe: " in log and "!markPrice@arr@1s" in log
    def scans(d):
        return sorted((arrow_io.read_scan(f) for f in arrow_io.iter_scan_files(tmp_path / "data" / d)),
                      key=lambda r: r["scan_number"])
    prio, uni = scans("arrow_scans"), scans("arrow_scans_obf")
    assert [r["scan_number"] for r in prio] == list(range(1, 7))
    assert [r["scan_number"] for r in uni] == [r["scan_number"] for r in prio[-len(uni):]] and len(uni) >= 4
    for r in prio:                                   # today's 27-field, 50-asset record
        assert r["assets"] == list(PRIORITY_SYMBOLS) and len(r["prices"]) == 50
        assert r["schema_version"] == arrow_io.SCHEMA_VERSION
    last = uni[-1]
    assert len(last["assets"]) >= 540 and last["assets"][:50] == list(PRIORITY_SYMBOLS)
    assert sum(x is not None for x in last["prices"]) >= 540
    assert last["timestamp_ns"] == next(r for r in prio if r["scan_number"] == last["scan_number"])["timestamp_ns"]
    # the 50-asset output is a function of its own 50 prices only: a fresh engine replays it bit for bit
    eng = EigenEngine(list(PRIORITY_SYMBOLS))
    for r in prio:
        rec = build_record(r["scan_number"], eng.enhance(r["prices"], r["timestamp_ns"]))
        for key in arrow_io.FLOAT_FIELDS + ("n_assets", "assets", "prices", "timestamp_ns"):
            assert rec[key] == r[key], key
    lp = np.log(np.array([[np.nan if x is None else x for x in r["prices"]] for r in prio]))
    assert np.isfinite(lp).all()
