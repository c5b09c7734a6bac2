"""Running safely against a real venue-simulator process (issue 29): the protective stop, the periodic reconcile,
changes made behind the trader's back, margin calls and funding fees booked live and replayed by parity."""
from __future__ import annotations

import asyncio
import functools
import json
import random
import time
import urllib.request
from pathlib import Path

import pytest

from prod.backtest import parity
from prod.execution import ExecConfig
from prod.execution.rest import OrderRestClient
from prod.trading.core import CoreLimits
from services.event_trader.main import load_engine_params, start_recorder
from prod.trading.safety import EntriesFrozen, SafetyConfig
from prod.trading.venue_account import VenueAccount
from tests.helpers import Proc, running_venue, start_venue, wait_until
from tests.helpers import venue_admin as admin
from tests.venue_kit import CREDS, exec_driver, restart_report, RecordedScans, quote_book, venue_account, venue_trader_config

FUNDING_MS = 8 * 3_600_000
SIM_ARGS = ("--start-balance", "1000000", "--symbols", "80", "--klines-1s", "0")


def _sim(tmp: Path, *extra: str) -> tuple[Proc, int]:
    return start_venue(tmp, *SIM_ARGS, *extra, name="sim", seed=17)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with running_venue(tmp_path_factory.mktemp("safety"), *SIM_ARGS, name="sim", seed=17) as (_proc, port):
        yield port


def venue(port: int, method: str, path: str, params: dict | None = None):
    """A signed call with the trader's own key, made behind its back (an operator, another program)."""
    async def go():
        async with OrderRestClient(f"http://127.0.0.1:{port}", CREDS) as rest:
            return await rest.request(method, path, params or {})
    return asyncio.run(go())


def mark(port: int, symbol: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/fapi/v1/premiumIndex?symbol={symbol}", timeout=5) as r:
        return float(json.loads(r.read())["markPrice"])


def open_algos(port: int) -> list[dict]:
    return venue(port, "GET", "/fapi/v1/openAlgoOrders")


_account = functools.partial(venue_account, day="2026-12-07")


def _market(port: int, symbol: str, side: str, qty: str, cid: str) -> dict:
    return venue(port, "POST", "/fapi/v1/order", {"symbol": symbol, "side": side, "type": "MARKET", "quantity": qty,
                                                  "newClientOrderId": cid, "newOrderRespType": "RESULT"})


def _kinds(acct: VenueAccount, kind: str) -> list[dict]:
    return [e["payload"] for e in acct.journal.events(kind)]


def test_every_entry_places_a_protective_stop_on_the_venue_and_the_exit_cancels_it(sim, tmp_path):
    acct = _account(sim, tmp_path)
    try:
        px = mark(sim, "ETHUSDT")
        fill = acct.open(1, "ETHUSDT", -1, 1500.0, quote_book(px), px, time.time(), 100)
        stop = fill["protective_stop"]
        algos = {a["clientAlgoId"]: a for a in open_algos(sim)}
        assert list(algos) == [stop["client_id"]] == [acct.stop_cid]
        a = algos[stop["client_id"]]
        assert (a["orderType"], a["side"], a["closePosition"], a["workingType"]) == \
            ("STOP_MARKET", "BUY", True, "MARK_PRICE")                     # a short is stopped by a BUY above it
        assert float(a["triggerPrice"]) >= fill["price"] * 1.12 > float(a["triggerPrice"]) - 0.02
        acct.close("FIXED_TP", quote_book(px), px, time.time(), 101)
        assert open_algos(sim) == [] and acct.stop_cid is None
        assert [p["client_id"] for p in _kinds(acct, "STOP_PLACED")] == [stop["client_id"]]
        # cancelled by the trader, or already expired with the position (closePosition is GTE_GTC): ended either way
        ended = _kinds(acct, "STOP_CANCELED") + _kinds(acct, "STOP_EXPIRED")
        assert stop["client_id"] in [p["client_id"] for p in ended]
    finally:
        acct.stop()
        acct.journal.close()


def test_a_stop_that_fires_while_the_trader_runs_is_booked_as_a_forced_exit(sim, tmp_path):
    acct = _account(sim, tmp_path, safety=SafetyConfig(reconcile_s=600, stop_pct=0.0005))   # a stop the noise hits
    # the stress regime (3x the calm volatility, a falling drift) takes the long's mark through its stop in seconds;
    # calm noise took ~45 s
    admin(sim, "/sim/admin/regime", {"regime": "stress", "hold_s": 120})
    try:
        px = mark(sim, "ETHUSDT")
        acct.open(2, "ETHUSDT", 1, 1500.0, quote_book(px), px, time.time(), 200)
        wait_until(lambda: acct.kill_exits, 60, what="the protective stop to fire and be booked")
        rec = acct.kill_exits[0]
        assert rec["reason"] == "PROTECTIVE_STOP" and rec["trade_id"] == 2 and rec["qty"] > 0
        assert acct.position is None and acct._call(acct.client.positions) == ()
        assert _kinds(acct, "STOP_FIRED")[0]["trade_id"] == 2
        assert rec["capital_after"] == pytest.approx(10_000 + rec["net"], abs=1e-9)
    finally:
        admin(sim, "/sim/admin/regime", {"release": True})
        acct.stop()
        acct.journal.close()


def _open_then_kill9(tmp: Path, port: int) -> dict:
    """The driver opens a position with its protective stop and is SIGKILLed; returns its OPENED line."""
    d = exec_driver(tmp, port, "open")
    try:
        wait_until(lambda: '"step": "OPENED"' in d.log_text(), 30, what="driver opened")
    finally:
        d.kill()
    return json.loads([ln for ln in d.log_text().splitlines() if '"step": "OPENED"' in ln][0])


def test_a_trader_killed_mid_position_leaves_its_stop_and_the_restart_adopts_position_and_stop(sim, tmp_path):
    opened = _open_then_kill9(tmp_path, sim)                # SIGKILL mid-position: nothing cleaned up
    cid = opened["fill"]["protective_stop"]["client_id"]
    left = open_algos(sim)
    assert [(a["clientAlgoId"], a["orderType"], a["side"]) for a in left] == [(cid, "STOP_MARKET", "BUY")]
    rep = restart_report(tmp_path, sim)
    assert rep["position"]["trade_id"] == 1 and rep["outcome"].startswith("refused")
    assert rep["report"]["stop"]["adopted"] == cid and rep["report"]["stop"]["placed"] is None
    assert rep["stop_cid"] == cid and [a["client_id"] for a in rep["open_algos"]] == [cid]   # no second stop
    venue(sim, "DELETE", "/fapi/v1/algoOpenOrders", {"symbol": "ETHUSDT"})
    amt = float(venue(sim, "GET", "/fapi/v2/positionRisk", {"symbol": "ETHUSDT"})[0]["positionAmt"])
    _market(sim, "ETHUSDT", "BUY", str(abs(amt)), "cleanup-kill9")


def test_a_position_closed_on_the_venue_while_the_trader_was_down_is_booked_as_a_forced_exit(sim, tmp_path):
    opened = _open_then_kill9(tmp_path, sim)                # SIGKILL mid-position
    qty = opened["fill"]["qty"]
    # while the trader is down the position is closed on the venue (as its stop would): the stop expires with it
    _market(sim, "ETHUSDT", "BUY", str(qty), "manual-close-while-down")
    wait_until(lambda: open_algos(sim) == [], 10, what="the closePosition stop expiring with the position")
    rep = restart_report(tmp_path, sim)
    acts = rep["report"]["actions"]
    assert [a.get("closed_while_down") for a in acts] == [1] and acts[0]["reason"] == "CLOSED_WHILE_DOWN", acts
    # the position was kept until the first read of the forced exits (the core's first scan), then booked
    assert rep["held_at_start"] and rep["position"] is None and rep["venue_positions"] == []
    (x,) = rep["forced_exits"]
    assert x["trade_id"] == 1 and x["reason"] == "CLOSED_WHILE_DOWN" and x["qty"] == pytest.approx(qty)
    assert rep["capital"] == pytest.approx(x["capital_after"]) and rep["open_algos"] == []


def test_reconcile_freezes_entries_on_changes_behind_the_traders_back_and_clears_when_they_agree(sim, tmp_path):
    acct = _account(sim, tmp_path, safety=SafetyConfig(reconcile_s=0.3))
    try:
        assert acct.mismatches == {} and acct.recon["cycles"] >= 1
        w0 = float(venue(sim, "GET", "/fapi/v2/account")["totalWalletBalance"])
        # 1. a position the journal does not hold, opened with the trader's key behind its back
        _market(sim, "BTCUSDT", "BUY", "0.010", "manual-add-1")
        # the position, and its commission: money the journal does not explain
        wait_until(lambda: {"position:BTCUSDT", "balance"} <= set(acct.mismatches), 10, what="the foreign trade found")
        px = mark(sim, "ETHUSDT")
        with pytest.raises(EntriesFrozen, match="BTCUSDT"):
            acct.open(3, "ETHUSDT", -1, 1500.0, quote_book(px), px, time.time(), 300)
        assert acct._call(acct.client.positions, "ETHUSDT") == ()          # nothing was sent
        wait_until(lambda: "position:BTCUSDT" in _kinds(acct, "RECONCILE")[-1].get("mismatches", {}), 10,
                   what="the RECONCILE row")
        assert _kinds(acct, "RECONCILE")[-1]["frozen"]
        assert acct.to_dict()["safety"]["frozen"] is True
        # the operator undoes it: the position closed and the wallet put back as it was
        _market(sim, "BTCUSDT", "SELL", "0.010", "manual-undo-1")
        assert "position:BTCUSDT" in acct.mismatches or "balance" in acct.mismatches
        admin(sim, "/sim/admin/account", {"balance": w0})
        wait_until(lambda: acct.mismatches == {}, 10, what="venue and journal agreeing again")
        wait_until(lambda: not _kinds(acct, "RECONCILE")[-1].get("frozen", True), 10, what="the clearing row")
        assert set(_kinds(acct, "RECONCILE")[-1]["cleared"]) >= {"position:BTCUSDT", "balance"}
        fill = acct.open(4, "ETHUSDT", -1, 1500.0, quote_book(px), px, time.time(), 301)
        assert fill["status"] == "FILLED"
        # 2. our protective stop cancelled behind our back: frozen, a new stop placed, cleared
        old = acct.stop_cid
        venue(sim, "DELETE", "/fapi/v1/algoOrder", {"symbol": "ETHUSDT", "clientAlgoId": old})
        wait_until(lambda: any("stop:4" in r.get("mismatches", {}) for r in _kinds(acct, "RECONCILE")), 10,
                   what="the missing stop found")
        wait_until(lambda: acct.mismatches == {} and acct.stop_cid not in (None, old), 10, what="a new stop")
        assert [a["clientAlgoId"] for a in open_algos(sim)] == [acct.stop_cid]
        # 3. our position changed behind our back, then put back
        _market(sim, "ETHUSDT", "SELL", acct.client.format_qty("ETHUSDT", acct.qty / 2), "manual-add-2")
        wait_until(lambda: "position:ETHUSDT" in acct.mismatches, 10, what="the changed position found")
        _market(sim, "ETHUSDT", "BUY", acct.client.format_qty("ETHUSDT", acct.qty / 2), "manual-undo-2")
        wait_until(lambda: "position:ETHUSDT" not in acct.mismatches, 10, what="the position agreeing again")
        # 4. leverage changed by hand: ACCOUNT_CONFIG_UPDATE freezes at once; setting it back clears it
        lev0 = acct.baseline["ETHUSDT"][0]
        venue(sim, "POST", "/fapi/v1/leverage", {"symbol": "ETHUSDT", "leverage": 2 if lev0 != 2 else 3})
        wait_until(lambda: "leverage:ETHUSDT" in acct.mismatches, 10, what="the leverage change found")
        wait_until(lambda: any(r.get("kind") == "ACCOUNT_CONFIG_UPDATE" for r in _kinds(acct, "RECONCILE")), 10,
                   what="the RECONCILE row of the ACCOUNT_CONFIG_UPDATE")
        venue(sim, "POST", "/fapi/v1/leverage", {"symbol": "ETHUSDT", "leverage": lev0})
        wait_until(lambda: "leverage:ETHUSDT" not in acct.mismatches, 10, what="the leverage agreeing again")
        # 5. a margin call is journaled and counted for the alerts
        admin(sim, "/sim/admin/account", {"margin_call": True})
        wait_until(lambda: acct.margin_calls >= 1, 10, what="the MARGIN_CALL event")
        assert _kinds(acct, "MARGIN_CALL")[0]["positions"] and acct.to_dict()["safety"]["margin_calls"] >= 1
        st = acct.to_dict()["safety"]["reconcile"]
        assert st["last_weight"] > 0 and st["last_ms"] > 0 and st["failures"] == 0
    finally:
        admin(sim, "/sim/admin/account", {"margin_call": False})
        acct.kill()
        acct.stop()
        acct.journal.close()


def test_funding_at_the_8_hour_mark_is_booked_into_journal_and_capital_and_replayed_by_parity(tmp_path):
    # market time starts 20 s before an 8-hour mark (market time may run apart from serverTime, the wall clock;
    # funding follows market time); the simulator's start and the entry before the mark take ~1.3 s here
    start = (int(time.time() * 1000) // FUNDING_MS + 1) * FUNDING_MS - 20_000
    proc, port = _sim(tmp_path, "--start-ms", str(start))
    acct = None
    try:
        marks = {x["symbol"]: float(x["markPrice"]) for x in venue(port, "GET", "/fapi/v1/premiumIndex")}
        cfg, journal, symbols = venue_trader_config(tmp_path, port, marks)
        ec = ExecConfig(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", fill_timeout_s=5.0)

        class Accounts:    # the venue account without the preflight: its clock check refuses a market time hours
            @staticmethod  # away from the wall clock, which is what puts an 8-hour mark 40 s ahead
            def new(capital):
                return VenueAccount.connect(ec, journal, capital, creds=CREDS, safety=cfg.safety)

        params = load_engine_params()
        core, rec = start_recorder(cfg, dict(limits=CoreLimits(), symbols=symbols, clock=time.time,
                                             account_type=Accounts), journal, params, "venue")
        acct = core.account
        assert rec is not None
        scans, booked = RecordedScans(core, rec, {s: marks[s] for s in symbols}, random.Random(3)), []

        def step(vd, drift, noise):
            r = scans.step(vd, drift, noise)
            booked.extend(r.get("funding", []))
            return r

        for i in range(159):
            step(0.0, 0.0, 0.001 + i * 0.00002)
        for _ in range(60):
            if step(-0.06, -0.002, 0.003).get("entered"):
                break
        refused = [e["payload"] for e in journal.events("ENTRY_NOT_TAKEN")][-2:]
        assert acct.position is not None, ("the stress leg must enter", refused, acct.mismatches)
        market_ms = admin(port, "/sim/status")["market_time_ms"]
        assert market_ms < start + 20_000, f"entered {market_ms - start - 20_000} ms after the 8-hour mark (a slow box)"
        wait_until(lambda: acct.funding_due, 90, what="the 8-hour mark's funding fee taken from /fapi/v1/income")
        step(0.0, 0.0, 0.0001)
        pos = acct.position
        assert booked and pos is not None and booked[0]["symbol"] == pos.symbol and booked[0]["trade_id"] == pos.trade_id
        cap_before = booked[0]["capital_after"] - booked[0]["income"]
        for _ in range(200):
            if step(0.01, 0.001, 0.003).get("exited") or acct.position is None:
                break
        live_cap = scans.finish(journal)
    finally:
        if acct is not None:
            acct.stop()
        proc.stop()
    rows = [e["payload"] for e in journal.events("FUNDING")]
    assert rows and rows[0]["income"] != 0 and rows[0]["tran_id"] == booked[0]["tran_id"]
    assert rows[0]["capital_after"] == cap_before + rows[0]["income"]       # booked into the capital (PnL)
    code, diffs, s = parity.run_parity(rec.dir)
    assert code == parity.EXIT_OK, diffs
    assert s["replay_capital"] == live_cap
    live, _ = parity.live_events(parity.load_recording(rec.dir), cfg.trader_dir / "journal.sqlite")
    assert [e["kind"] for e in live].count("FUNDING") == len(rows)
    journal.close()
