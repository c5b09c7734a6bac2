"""Parity with execution=venue (the mesh default): TraderCore on a real VenueAccount against the venue simulator's
order API records the venue's fills; the replay takes them as inputs and finds the same decisions and capital."""
from __future__ import annotations

import json
import random
import time
import urllib.request

from prod.backtest import parity
from prod.trading.core import CoreLimits
from services.event_trader.main import VenueAccounts, load_engine_params, start_recorder
from tests.helpers import start_venue
from tests.venue_kit import CREDS, RecordedScans, venue_trader_config


def test_venue_fills_are_recorded_and_the_replay_matches_decisions_fees_and_capital(tmp_path):
    sim, port = start_venue(tmp_path, "--start-balance", "1000000", "--symbols", "80", "--klines-1s", "0",
                            name="sim", seed=13)
    acct = None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/fapi/v1/premiumIndex") as r:
            marks = {x["symbol"]: float(x["markPrice"]) for x in json.loads(r.read())}
        cfg, journal, symbols = venue_trader_config(tmp_path, port, marks)
        params = load_engine_params()
        accounts = VenueAccounts(cfg, journal, params, creds=CREDS)   # the factory, with the simulator's test key
        core, rec = start_recorder(cfg, dict(limits=CoreLimits(), symbols=symbols, clock=time.time,
                                             account_type=accounts), journal, params, "venue")
        acct = core.account
        assert rec is not None
        scans, exits = RecordedScans(core, rec, {s: marks[s] for s in symbols}, random.Random(3)), 0

        def step(vd, drift, noise):
            nonlocal exits
            exits += bool(scans.step(vd, drift, noise).get("exited"))

        for i in range(159):
            step(0.0, 0.0, 0.001 + i * 0.00002)
        for i in range(160):
            step(-0.06 if i < 60 else 0.01, -0.002 if i < 60 else 0.001, 0.003)
            if exits >= 2:
                break
        assert exits >= 1
        live_cap = scans.finish(journal)
    finally:
        if acct is not None:
            acct.stop()
        sim.stop()
    code, diffs, s = parity.run_parity(rec.dir)
    assert code == parity.EXIT_OK, diffs
    assert s["trades"] >= 1 and s["replay_capital"] == live_cap
    live, _ = parity.live_events(parity.load_recording(rec.dir), cfg.trader_dir / "journal.sqlite")
    assert all(e["payload"].get("source") == "venue" for e in live if e["kind"] in ("ENTRY", "EXIT"))
