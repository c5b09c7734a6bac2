"""Parity with execution=venue (the mesh default): TraderCore on a real VenueAccount against the venue simulator's
order API records the venue's fills; the replay takes them as inputs and finds the same decisions and capital."""
from __future__ import annotations

import json
import math
import random
import time
import urllib.request

from prod.backtest import parity
from prod.execution import Credentials
from prod.settings import load_settings
from services.event_trader.core import CoreLimits, TraderCore
from services.event_trader.journal import Journal
from services.event_trader.main import TraderConfig, VenueAccounts, load_engine_params, start_recorder
from tests.helpers import Proc, free_port, port_open, wait_until

CREDS = Credentials("dolphin-sim-key", "dolphin-sim-secret")


def test_venue_fills_are_recorded_and_the_replay_matches_decisions_fees_and_capital(tmp_path):
    port = free_port()
    sim = Proc("standins.venue_sim", ["--host", "127.0.0.1", "--port", str(port), "--seed", "13",
                                      "--start-balance", "1000000", "--symbols", "80", "--klines-1s", "0"],
               tmp_path / "sim.log").start()
    acct = None
    try:
        wait_until(lambda: port_open(port) or sim.p.poll() is not None, 60, what="venue_sim port")
        assert sim.p.poll() is None, sim.log_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/fapi/v1/premiumIndex") as r:
            marks = {x["symbol"]: float(x["markPrice"]) for x in json.loads(r.read())}
        settings = load_settings(env={}, data_dir=str(tmp_path / "data"), venue_rest=f"http://127.0.0.1:{port}",
                                 venue_ws=f"ws://127.0.0.1:{port}")
        symbols = tuple(s for s in settings.symbols if s in marks)
        cfg = TraderConfig(settings=settings, execution="venue", fill_timeout_s=5.0)
        cfg.trader_dir.mkdir(parents=True)
        journal = Journal.open(cfg.trader_dir / "journal.sqlite", cfg.trader_dir / "audit.log")
        accounts = VenueAccounts.__new__(VenueAccounts)          # the factory, with the simulator's test key
        accounts.cfg, accounts.journal, accounts.creds = cfg, journal, CREDS
        params = load_engine_params()
        core = TraderCore(CoreLimits(), journal, params, symbols, time.time, account_type=accounts)
        acct = core.account
        rec = start_recorder(cfg, core, journal, params, "venue")
        assert rec is not None
        rng, prices = random.Random(3), {s: marks[s] for s in symbols}
        n, exits = 0, 0

        def step(vd, drift, noise):
            nonlocal n, exits
            for a in prices:
                prices[a] *= math.exp(drift + rng.gauss(0, noise))
            n += 1
            t = time.time()
            sc = {"scan_number": n, "timestamp_ns": int(t * 1e9), "timestamp": "", "bridge_ts": t, "vel_div": vd,
                  "w50_velocity": vd, "w150_velocity": 0.0, "w300_velocity": 0.0, "w750_velocity": 0.0,
                  "instability_50": 0.0, "instability_150": 0.0, "assets": list(prices),
                  "asset_prices": list(prices.values())}
            rec.begin_scan(sc, t)
            try:
                r = core.process(sc, t)
            finally:
                rec.end_scan()
            exits += bool(r and r.get("exited"))

        for i in range(159):
            step(0.0, 0.0, 0.001 + i * 0.00002)
        for i in range(160):
            step(-0.06 if i < 60 else 0.01, -0.002 if i < 60 else 0.001, 0.003)
            if exits >= 2:
                break
        assert exits >= 1
        rec.close({"journal_end_id": journal.last_event_id(), "capital": core.account.capital,
                   "last_scan": core.last_scan})
        live_cap = core.account.capital
    finally:
        if acct is not None:
            acct.stop()
        sim.stop()
    code, diffs, s = parity.run_parity(rec.dir)
    assert code == parity.EXIT_OK, diffs
    assert s["trades"] >= 1 and s["replay_capital"] == live_cap
    live, _ = parity.live_events(parity.load_recording(rec.dir), cfg.trader_dir / "journal.sqlite")
    assert all(e["payload"].get("source") == "venue" for e in live if e["kind"] in ("ENTRY", "EXIT"))
