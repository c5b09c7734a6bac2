"""Integration tests: prod.execution and the trader's VenueAccount against the simulator's order API.

One simulator process (real HTTP + websockets), one account with a 1,000,000 USDT wallet; after every
test the faults are cleared and the account is flattened through the kill switch path.
"""
from __future__ import annotations

import asyncio
import functools
import json
import time
import urllib.request
from pathlib import Path

import pytest

from prod.execution import (Credentials, ExecutionClient, KillSwitchActive, OrderIntent, OrderStatus,
                            client_order_id)
from prod.execution.killswitch import KillSwitch
from prod.execution.rest import OrderRestClient
from prod.trading.journal import Journal
from tests.helpers import Proc, free_port, running_venue, wait_until
from tests.helpers import venue_admin as admin
from tests.market import scan_payload, walk
from tests.venue_kit import CREDS, exec_driver, quote_book, venue_account

S = OrderStatus


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with running_venue(tmp_path_factory.mktemp("exec"), "--start-balance", "1000000", "--symbols", "80",
                       "--klines-1s", "0", name="sim", seed=11) as (_proc, port):
        yield port


@pytest.fixture(autouse=True)
def fresh_weight(sim):
    """Each test starts with the simulator's per-minute request weight at 0: the module's clients (each start
    reads open orders for all symbols, weight 40) could otherwise spend 2,000 of the 2,400 in one minute, and the
    next client rightly pauses to the next minute (ci6: the kill CLI waited 52 s and timed out)."""
    admin(sim, "/sim/admin/fault", {"kind": "reset_weight"})


def run(coro):
    return asyncio.run(coro)


async def _client(port: int, stream: bool = True, **kw) -> ExecutionClient:
    rest = OrderRestClient(f"http://127.0.0.1:{port}", CREDS)
    c = ExecutionClient(rest, f"ws://127.0.0.1:{port}" if stream else None, **kw)
    await c.start()
    return c


async def _close(c: ExecutionClient) -> None:
    await c.stop()
    await c.rest.close()


@pytest.fixture(autouse=True)
def _flat_after(sim):
    yield
    admin(sim, "/sim/admin/fault", {"kind": "clear"})

    async def flatten():
        c = await _client(sim, stream=False)
        try:
            rep = await c.kill()
            assert rep["flat"], rep
        finally:
            await _close(c)
    run(flatten())


def cid(n: int, side: str = "SELL", leg: str = "entry") -> str:
    return client_order_id("test", time.strftime("%H%M%S"), n, side, f"{leg}-{time.time_ns()}")


def qty_for(c: ExecutionClient, symbol: str, usdt: float, price: float) -> str:
    return c.format_qty(symbol, usdt / price)


async def _mid(c: ExecutionClient, symbol: str) -> float:
    rows = await c.rest.request("GET", "/fapi/v2/positionRisk", {"symbol": symbol})
    return float(rows[0]["markPrice"])


def test_market_order_fills_from_the_user_stream_with_fees_and_position(sim):
    async def go():
        events = []
        c = await _client(sim, on_order=lambda e, d: events.append((e, d["status"])))
        try:
            px = await _mid(c, "ETHUSDT")
            o = await c.submit(OrderIntent(cid(1), "ETHUSDT", "SELL", qty_for(c, "ETHUSDT", 2000, px)))
            o = await c.wait_final(o.client_id, 5)
            assert o.status == S.FILLED and o.filled_qty == o.qty and o.fees == pytest.approx(
                o.filled_qty * o.avg_price * 0.0005, rel=1e-6)
            assert abs(o.avg_price / px - 1) < 0.01
            assert c.stats.stream_fills == len(o.fills) >= 1 and c.stats.rest_fills == 0
            assert [e for e, _ in events][:2] == ["SUBMIT", "NEW"] and events[-1] == ("FILLED", "FILLED")
            pos = {p.symbol: p for p in await c.positions()}
            assert pos["ETHUSDT"].amount == pytest.approx(-o.filled_qty)
        finally:
            await _close(c)
    run(go())


def test_large_market_order_fills_partially_level_by_level(sim):
    async def go():
        c = await _client(sim)
        try:
            book = await c.rest.request("GET", "/fapi/v1/depth", {"symbol": "SOLUSDT", "limit": 5}, signed=False)
            # the five visible bid levels' size: the book may refresh (a 100-ms tick) before the order lands,
            # so it fills across several levels (FILLED) or takes all of them and expires the rest (EXPIRED)
            total = sum(float(q) for _, q in book["bids"])
            o = await c.submit(OrderIntent(cid(2), "SOLUSDT", "SELL", c.format_qty("SOLUSDT", total)))
            o = await c.wait_final(o.client_id, 5)
            prices = [f.price for f in sorted(o.fills.values(), key=lambda f: f.trade_id)]
            assert o.status in (S.FILLED, S.EXPIRED) and o.filled_qty > 0
            assert len(set(prices)) >= 2 and prices == sorted(prices, reverse=True)   # walked down the bids
            assert abs(prices[0] / float(book["bids"][0][0]) - 1) < 0.01
        finally:
            await _close(c)
    run(go())


def test_venue_errors_reject_the_order_with_binance_codes(sim):
    async def go():
        c = await _client(sim)
        try:
            bad = {
                "bad_symbol": OrderIntent(cid(3), "NOPEUSDT", "SELL", "1"),
                "precision": OrderIntent(cid(4), "ETHUSDT", "SELL", "0.00000001"),
                "margin": OrderIntent(cid(5), "BTCUSDT", "SELL", "10000"),
            }
            got = {k: await c.submit(v) for k, v in bad.items()}
            assert {k: o.status for k, o in got.items()} == {k: S.REJECTED for k in bad}
            assert got["bad_symbol"].reason.startswith("-1121")
            assert got["precision"].reason.startswith("-1111")
            assert got["margin"].reason.startswith("-2019")
            # a resting order's client id is taken while it is open: the venue says -4116, we adopt it
            px = await _mid(c, "ETHUSDT")
            lim = OrderIntent(cid(6, "BUY"), "ETHUSDT", "BUY", qty_for(c, "ETHUSDT", 100, px), "LIMIT",
                              str(c.rules["ETHUSDT"].round_price(px * 0.8, up=False)), "GTC")
            o = await c.submit(lim)
            assert o.status == S.NEW
            c.orders.pop(lim.client_id)                     # forget it, as a restarted client would
            again = await c.submit(lim)
            assert again.status == S.NEW and again.venue_order_id == o.venue_order_id
            assert len(await c.rest.open_orders("ETHUSDT")) == 1
            # wrong secret: -1022, nothing placed
            async with OrderRestClient(f"http://127.0.0.1:{sim}", Credentials(CREDS.api_key, "wrong")) as r2:
                w = ExecutionClient(r2, None)
                await w.start()
                o2 = await w.submit(OrderIntent(cid(7), "ETHUSDT", "SELL", "1"))
                assert o2.status == S.REJECTED and o2.reason.startswith("-1022")
        finally:
            await _close(c)
    run(go())


def test_dropped_user_stream_falls_back_to_rest_polling(sim):
    async def go():
        c = await _client(sim, stream_silence_s=0.3)
        try:
            admin(sim, "/sim/admin/fault", {"kind": "user_stream_drop", "mode": "mute", "duration_s": 30})
            px = await _mid(c, "ETHUSDT")
            t0 = time.monotonic()
            o = await c.submit(OrderIntent(cid(8), "ETHUSDT", "SELL", qty_for(c, "ETHUSDT", 1000, px)))
            o = await c.wait_final(o.client_id, 5)
            assert o.status == S.FILLED and o.filled_qty == o.qty and time.monotonic() - t0 < 3
            assert c.stats.stream_fills == 0 and c.stats.rest_fills == len(o.fills) >= 1
            # the stream is closed and refused: the client keeps polling and reconnects when it may
            admin(sim, "/sim/admin/fault", {"kind": "user_stream_drop", "mode": "close", "duration_s": 1})
            await asyncio.sleep(0.05)
            o2 = await c.submit(OrderIntent(cid(9, "BUY"), "ETHUSDT", "BUY", c.format_qty("ETHUSDT", o.qty),
                                            reduce_only=True))
            o2 = await c.wait_final(o2.client_id, 5)
            assert o2.status == S.FILLED
            t1 = time.monotonic()
            while c.stream.connects < 2 and time.monotonic() - t1 < 10:
                await asyncio.sleep(0.05)
            assert c.stream.connects >= 2 and c.stream_up
        finally:
            await _close(c)
    run(go())


def test_unknown_submit_outcome_is_queried_and_adopted_never_resent(sim):
    async def go():
        c = await _client(sim)
        try:
            admin(sim, "/sim/admin/fault", {"kind": "ack_lost", "count": 1})
            px = await _mid(c, "ETHUSDT")
            intent = OrderIntent(cid(10), "ETHUSDT", "SELL", qty_for(c, "ETHUSDT", 500, px))
            o = await c.submit(intent)
            assert o.unknown_outcome and c.stats.unknown_outcome == 1
            o = await c.wait_final(o.client_id, 5)
            assert o.status == S.FILLED and not o.unknown_outcome
            again = await c.submit(intent)                      # the same decision again: the same order
            assert again is o
            trades = await c.rest.user_trades("ETHUSDT", order_id=o.venue_order_id)
            assert len(trades) == len(o.fills)
            pos = {p.symbol: p.amount for p in await c.positions()}
            assert pos["ETHUSDT"] == pytest.approx(-o.qty)     # one position, not two
        finally:
            await _close(c)
    run(go())


def test_rate_limit_retry_after_is_waited_out(sim):
    async def go():
        c = await _client(sim)
        try:
            px = await _mid(c, "ETHUSDT")
            admin(sim, "/sim/admin/fault", {"kind": "rest_error", "status": 429, "count": 1, "retry_after": 1})
            t0 = time.monotonic()
            o = await c.submit(OrderIntent(cid(11), "ETHUSDT", "SELL", qty_for(c, "ETHUSDT", 200, px)))
            assert time.monotonic() - t0 >= 0.9 and c.rest.rate_limited == 1
            assert (await c.wait_final(o.client_id, 5)).status == S.FILLED
        finally:
            await _close(c)
    run(go())


_account = functools.partial(venue_account, day="2026-12-02")


def test_venue_account_round_trip_journals_every_order_event(sim, tmp_path):
    acct = _account(sim, tmp_path)
    try:
        px = run_mid(sim, "ETHUSDT")
        fill = acct.open(1, "ETHUSDT", -1, 1500.0, quote_book(px), px, time.time(), 100)
        assert fill["source"] == "venue" and fill["status"] == "FILLED" and acct.position is not None
        assert abs(fill["notional"] / 1500.0 - 1) < 0.02 and acct.capital == pytest.approx(10_000 - fill["fee"])
        with pytest.raises(RuntimeError):
            acct.open(2, "BTCUSDT", -1, 1500.0, None, run_mid(sim, "BTCUSDT"), time.time(), 101)
        rec = acct.close("TAKE_PROFIT", quote_book(px), px, time.time(), 105)
        assert acct.position is None and rec["qty"] == pytest.approx(fill["qty"]) and rec["source"] == "venue"
        assert acct.capital == pytest.approx(10_000 + rec["gross"] - rec["fee"] - fill["fee"])
        kinds = [e["kind"] for e in acct.journal.events() if e["kind"].startswith("ORDER_")]
        assert kinds.count("ORDER_SUBMIT") == 2 and kinds.count("ORDER_FILLED") == 2 and "ORDER_FILL" in kinds
        states = acct.journal.order_states()
        assert {d["status"] for d in states.values()} == {"FILLED"} and len(states) == 2
    finally:
        acct.stop()
        acct.journal.close()
    Journal.open(tmp_path / "journal.sqlite", tmp_path / "audit.log").close()   # the chain verifies


def run_mid(sim: int, symbol: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{sim}/fapi/v1/premiumIndex?symbol={symbol}", timeout=5) as r:
        return float(json.loads(r.read())["markPrice"])


def test_restart_reconciles_adopts_the_position_cancels_strays_and_never_enters_twice(sim, tmp_path):
    acct = _account(sim, tmp_path)
    px = run_mid(sim, "ETHUSDT")
    fill = acct.open(7, "ETHUSDT", -1, 1500.0, quote_book(px), px, time.time(), 200)
    state = acct.to_dict()
    acct.runtime.stop()                                   # the trader dies (no clean close of anything)
    acct.journal.close()
    # meanwhile a stray of ours sits on the venue (sent, never journaled) and the same decision comes back
    async def stray():
        c = await _client(sim, stream=False)
        try:
            lim = OrderIntent("DLP-stray-0001", "ETHUSDT", "BUY", c.format_qty("ETHUSDT", 0.05),
                              "LIMIT", str(c.rules["ETHUSDT"].round_price(px * 0.7, up=False)), "GTC")
            assert (await c.submit(lim)).status == S.NEW
        finally:
            await _close(c)
    run(stray())
    acct2 = _account(sim, tmp_path, state=state)
    try:
        rep = acct2.reconcile_report
        assert rep["strays_canceled"] == ["DLP-stray-0001"] and rep["lost"] == []
        assert acct2.position is not None and acct2.position.trade_id == 7 and acct2.qty == pytest.approx(fill["qty"])
        assert rep["actions"] == []                       # the venue position is the journal's position
        with pytest.raises(RuntimeError):                 # already in position: no second entry
            acct2.open(7, "ETHUSDT", -1, 1500.0, quote_book(px), px, time.time(), 200)
        pos = {p.symbol: p.amount for p in acct2._call(acct2.client.positions)}
        assert pos == {"ETHUSDT": pytest.approx(-fill["qty"])}
        assert acct2.journal.events("RECONCILE")
    finally:
        acct2.stop()
        acct2.journal.close()


def test_crash_after_fill_before_journal_snapshot_flattens_the_orphan_and_refuses_foreign(sim, tmp_path):
    acct = _account(sim, tmp_path)
    px = run_mid(sim, "ETHUSDT")
    acct.open(8, "ETHUSDT", -1, 1500.0, quote_book(px), px, time.time(), 300)
    acct.runtime.stop()
    acct.journal.close()
    acct2 = _account(sim, tmp_path, state=None)           # the snapshot never saw the entry
    try:
        acts = acct2.reconcile_report["actions"]
        assert [a.get("flattened_orphan") for a in acts] == ["ETHUSDT"] and acts[0]["status"] == "FILLED"
        assert acct2._call(acct2.client.positions) == ()
        assert acct2.position is None
    finally:
        acct2.stop()
        acct2.journal.close()


def test_kill_switch_cancels_and_flattens_within_two_seconds_and_halts_entries(sim, tmp_path):
    ks = KillSwitch(tmp_path / "KILL")
    acct = _account(sim, tmp_path, kill_switch=ks)
    try:
        px = run_mid(sim, "ETHUSDT")
        acct.open(9, "ETHUSDT", -1, 1500.0, quote_book(px), px, time.time(), 400)
        async def resting():
            c = await _client(sim, stream=False)
            try:
                lim = OrderIntent(cid(12, "BUY"), "ETHUSDT", "BUY", c.format_qty("ETHUSDT", 0.05), "LIMIT",
                                  str(c.rules["ETHUSDT"].round_price(px * 0.7, up=False)), "GTC")
                assert (await c.submit(lim)).status == S.NEW
            finally:
                await _close(c)
        run(resting())
        t0 = time.monotonic()
        ks.engage("test")

        def flat():
            async def q():
                c = await _client(sim, stream=False)
                try:
                    return not await c.positions() and not await c.rest.open_orders()
                finally:
                    await _close(c)
            return run(q())
        wait_until(flat, 5, interval=0.05, what="venue flat and no open orders")
        assert time.monotonic() - t0 < 2.0
        wait_until(lambda: acct.kill_exits, 2, what="kill exit booked")
        assert acct.position is None and acct.kill_exits[0]["reason"] == "KILL_SWITCH"
        with pytest.raises(KillSwitchActive):
            acct.open(10, "ETHUSDT", -1, 1500.0, quote_book(px), px, time.time(), 401)
        assert acct.journal.events("KILL_SWITCH")
        ks.clear()
        wait_until(lambda: not acct.client.halted, 3, what="kill cleared")
        assert acct.open(11, "ETHUSDT", -1, 1500.0, quote_book(px), px, time.time(), 402)["status"] == "FILLED"
    finally:
        acct.stop()
        acct.journal.close()


def _audit_has(tmp: Path, kind: str) -> bool:
    p = tmp / "audit.log"
    return p.exists() and f"|{kind}|" in p.read_text()


@pytest.mark.parametrize("step", ["ORDER_SUBMIT", "ORDER_FILLED", "OPENED"])
def test_kill_9_at_each_step_of_an_entry_then_restart_never_enters_twice(sim, tmp_path, step):
    """kill -9 once the order is journaled (its POST may or may not have gone out), once its fill is
    journaled (the ack still pending) and after the snapshot; the restarted process reconciles, replays
    the same decision, and the venue has executed at most one entry order (none only when the kill came
    before the POST left: the order is then reported lost and the decision is not re-sent) with a
    position consistent with the account's."""
    t_start = admin(sim, "/sim/status")["market_time_ms"]
    if step != "OPENED":
        admin(sim, "/sim/admin/fault", {"kind": "ack_delay", "delay_ms": 4000, "duration_s": 30})
    d = exec_driver(tmp_path, sim, "open")
    try:
        if step == "OPENED":
            wait_until(lambda: '"step": "OPENED"' in d.log_text(), 20, what="driver opened")
        else:
            wait_until(lambda: _audit_has(tmp_path, step), 20, what=f"{step} in the audit log")
    finally:
        d.kill()                                           # SIGKILL: no cleanup of any kind
    admin(sim, "/sim/admin/fault", {"kind": "clear"})
    r = exec_driver(tmp_path, sim, "restart")
    try:
        wait_until(lambda: r.p.poll() is not None, 40, what="restarted driver done")
    finally:
        r.kill()
    line = [ln for ln in r.log_text().splitlines() if ln.startswith('{"step": "REPORT"')]
    assert line, r.log_text()
    rep = json.loads(line[0])

    async def entry_orders():
        c = await _client(sim, stream=False)
        try:
            return {t["orderId"] for t in await c.rest.user_trades("ETHUSDT", limit=1000)
                    if t["side"] == "SELL" and t["time"] >= t_start}
        finally:
            await _close(c)
    n_entries = len(run(entry_orders()))
    assert n_entries <= 1, rep                                # never two entries on the venue
    if n_entries == 0:         # killed before the POST left: journaled SUBMIT, venue never saw it -> lost, not resent
        assert step == "ORDER_SUBMIT" and rep["report"]["lost"] and rep["outcome"] == "duplicate_refused", rep
    venue = {p["symbol"]: p["amount"] for p in rep["venue_positions"]}
    if rep["position"] is not None:                          # the account's position is the venue's, exactly
        assert venue == {"ETHUSDT": pytest.approx(-json.loads(line[0])["position"]["notional"]
                                                  / rep["position"]["entry_price"], rel=1e-6)}
    else:
        assert venue == {}
    if step == "OPENED":       # the snapshot holds the position: kept, and the replay is refused
        assert rep["position"]["trade_id"] == 1 and rep["outcome"].startswith("refused")
    elif step == "ORDER_FILLED":   # the engine never saw the entry: the orphan is flattened, the replay refused
        assert [a.get("flattened_orphan") for a in rep["report"]["actions"]] == ["ETHUSDT"]
        assert rep["outcome"] == "duplicate_refused" and rep["position"] is None
    else:                      # killed around the POST: adopted and flattened, or never sent and entered once
        assert rep["outcome"] in ("duplicate_refused", "entered")


def test_garbage_user_stream_frames_are_counted_and_dropped_while_the_order_fills(sim):
    async def go():
        c = await _client(sim)
        try:
            admin(sim, "/sim/admin/fault", {"kind": "user_garbage", "count": 3})   # NEW, TRADE, ACCOUNT_UPDATE
            px = await _mid(c, "ETHUSDT")
            o = await c.submit(OrderIntent(cid(13), "ETHUSDT", "SELL", qty_for(c, "ETHUSDT", 800, px)))
            o = await c.wait_final(o.client_id, 5)
            assert o.status == S.FILLED and o.filled_qty == o.qty
            t0 = time.monotonic()
            while c.stream.malformed < 3 and time.monotonic() - t0 < 5:
                await asyncio.sleep(0.02)
            assert c.stream.malformed == 3 and c.stream.events >= 3
            assert c.stats.bad_fills == 0 and c.stats.unknown_client_id == 0
            assert c.stream_up
        finally:
            await _close(c)
    run(go())


def test_kill_cli_writes_the_flag_cancels_and_flattens_then_clear_kill_removes_it(sim, tmp_path):
    async def setup():
        c = await _client(sim, stream=False)
        try:
            px = await _mid(c, "ETHUSDT")
            o = await c.submit(OrderIntent(cid(14), "ETHUSDT", "SELL", qty_for(c, "ETHUSDT", 900, px)))
            assert (await c.wait_final(o.client_id, 5)).status == S.FILLED
            lim = OrderIntent(cid(15, "BUY"), "ETHUSDT", "BUY", qty_for(c, "ETHUSDT", 100, px), "LIMIT",
                              str(c.rules["ETHUSDT"].round_price(px * 0.7, up=False)), "GTC")
            assert (await c.submit(lim)).status == S.NEW
        finally:
            await _close(c)
    run(setup())
    env = {"DOLPHIN_VENUE_REST": f"http://127.0.0.1:{sim}", "DOLPHIN_VENUE_WS": f"ws://127.0.0.1:{sim}",
           "DOLPHIN_DATA_DIR": str(tmp_path / "data"), "DOLPHIN_VENUE_API_KEY": CREDS.api_key,
           "DOLPHIN_VENUE_API_SECRET": CREDS.secret,
           "DOLPHIN_HZ_MEMBERS": f"127.0.0.1:{free_port()}"}     # no bus there: the flag and the venue still act
    k = Proc("prod.execution", ["kill", "--reason", "cli test", "--bus-timeout", "1"], tmp_path / "kill.log",
             env=env).start()
    assert k.p.wait(30) == 0, k.log_text()
    out = json.loads([ln for ln in k.log_text().splitlines() if ln.startswith("{")][-1])
    assert out["flat"] is True and out["canceled_symbols"] == ["ETHUSDT"] and out["bus"] is False
    assert (tmp_path / "data" / "trader" / "KILL").exists()
    assert CREDS.secret not in k.log_text()
    st = Proc("prod.execution", ["status"], tmp_path / "status.log", env=env).start()
    assert st.p.wait(30) == 0
    status = json.loads([ln for ln in st.log_text().splitlines() if ln.startswith("{")][-1])
    assert status["positions"] == [] and status["open_orders"] == [] and status["kill_flag"]["reason"] == "cli test"
    cl = Proc("prod.execution", ["clear-kill", "--bus-timeout", "0"], tmp_path / "clear.log", env=env).start()
    assert cl.p.wait(30) == 0 and not (tmp_path / "data" / "trader" / "KILL").exists()
    env.pop("DOLPHIN_VENUE_API_SECRET")
    nokey = Proc("prod.execution", ["kill"], tmp_path / "nokey.log", env={**env, "DOLPHIN_VENUE_API_SECRET": ""}).start()
    assert nokey.p.wait(30) == 2 and "DOLPHIN_VENUE_API_SECRET" in nokey.log_text()


def test_kill_cli_while_a_trader_holds_a_position_closes_it_once_and_the_trader_books_the_exit(sim, tmp_path):
    data = tmp_path / "data"
    ks = KillSwitch(data / "trader" / "KILL")
    acct = _account(sim, tmp_path, kill_switch=ks)
    try:
        px = run_mid(sim, "ETHUSDT")
        t_start = admin(sim, "/sim/status")["market_time_ms"]
        fill = acct.open(21, "ETHUSDT", -1, 1500.0, quote_book(px), px, time.time(), 600)
        env = {"DOLPHIN_VENUE_REST": f"http://127.0.0.1:{sim}", "DOLPHIN_DATA_DIR": str(data),
               "DOLPHIN_VENUE_API_KEY": CREDS.api_key, "DOLPHIN_VENUE_API_SECRET": CREDS.secret}
        k = Proc("prod.execution", ["kill", "--bus-timeout", "0"], tmp_path / "kill.log", env=env).start()
        assert k.p.wait(30) == 0, k.log_text()
        out = json.loads([ln for ln in k.log_text().splitlines() if ln.startswith("{")][-1])
        cli = out["flatten_orders"]
        # the CLI and the trader's own kill watcher (it sees the flag file) both flatten: whichever order reaches
        # the venue first fills, the other reduce-only order is rejected, or not sent once the position reads flat
        # (ci10: the trader's won). Either way the venue closes the position once, and the trader books that close.
        assert out["flat"] and len(cli) <= 1 and all(o["status"] in ("FILLED", "REJECTED") for o in cli), cli
        wait_until(lambda: acct.kill_exits, 5, what="the trader booked the kill exit")

        async def closes():
            c = await _client(sim, stream=False)
            try:
                return [t for t in await c.rest.user_trades("ETHUSDT", limit=1000)
                        if t["side"] == "BUY" and t["time"] >= t_start]
            finally:
                await _close(c)
        bought = run(closes())
        assert sum(float(t["qty"]) for t in bought) == pytest.approx(fill["qty"]), bought   # closed once, fully
        if cli and cli[0]["status"] == "FILLED":
            assert cli[0]["filled"] == pytest.approx(fill["qty"])
        ex = acct.kill_exits[0]
        assert acct.position is None and ex["qty"] == pytest.approx(fill["qty"]) and ex["fee"] > 0
        assert acct.capital == pytest.approx(10_000 - fill["fee"] + ex["gross"] - ex["fee"])
    finally:
        acct.stop()
        acct.journal.close()


# ── the trader's decision core on the venue account, the kill switch from DOLPHIN_SAFETY ─────────
def test_trader_core_enters_on_the_order_api_and_the_bus_kill_switch_flattens_within_two_seconds(
        sim, tmp_path, hz_member):
    """TraderCore + VenueAccount (the trader's venue mode) + the bus key ``DOLPHIN_SAFETY[kill_switch]``."""
    import queue
    import random
    from prod.bus import maps
    from prod.runtime import Bus
    from prod.runtime.clock import SystemClock
    from prod.settings import load_settings
    from prod.trading.core import CoreLimits, TraderCore
    from services.event_trader.main import BusOutputs, TraderConfig, TraderService, VenueAccounts, load_engine_params
    _proc, hz_port = hz_member
    marks = {r["symbol"]: float(r["markPrice"]) for r in admin(sim, "/fapi/v1/premiumIndex")}
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"), hz_members=(f"127.0.0.1:{hz_port}",),
                             venue_rest=f"http://127.0.0.1:{sim}", venue_ws=f"ws://127.0.0.1:{sim}")
    symbols = tuple(s for s in settings.symbols if s in marks)
    assert "BTCUSDT" in symbols and len(symbols) >= 10
    cfg = TraderConfig(settings=settings, execution="venue", fill_timeout_s=5.0)
    cfg.trader_dir.mkdir(parents=True)
    journal = Journal.open(cfg.trader_dir / "journal.sqlite", cfg.trader_dir / "audit.log")
    params = load_engine_params()
    accounts = VenueAccounts(cfg, journal, params, creds=CREDS)   # the factory, with the simulator's test key
    bus = Bus(settings, "test-trader-exec").start()
    core = TraderCore(CoreLimits(), journal, params, symbols, time.time, account_type=accounts,
                      outputs=BusOutputs(bus, queue.Queue()))
    svc = TraderService(cfg, core, bus, SystemClock(), core.out)
    svc.start()
    cli = Bus(settings, "test-kill-cli").start()
    rng, prices = random.Random(3), {s: marks[s] for s in symbols}

    def scan(n, vd, drift=0.0, noise=0.001):
        walk(prices, rng, drift, noise)
        return scan_payload(n, prices, vd, time.time())
    try:
        assert bus.wait_connected(20) and cli.wait_connected(20)
        n, entered = 0, None
        for n in range(1, 160):
            core.process(scan(n, 0.0, 0, 0.001 + n * 0.00002))
        for n in range(n + 1, n + 60):  # noqa: B020
            r = core.process(scan(n, -0.06, -0.002, 0.003))
            if r and r.get("entered"):
                entered = r["entered"]
                break
        assert entered is not None and entered["source"] == "venue" and entered["status"] == "FILLED"
        sym = entered["symbol"]
        assert [p.symbol for p in core.account._call(core.account.client.positions)] == [sym]
        order_events = [e for e in journal.events() if e["kind"].startswith("ORDER_")]
        assert any(e["payload"].get("client_id") == entered["client_id"] for e in order_events), order_events[-3:]
        t0 = time.monotonic()
        cli.publish(maps.KILL_SWITCH, maps.KILL_SWITCH.build(engaged=True, reason="test", ts=time.time(), by="t"))

        def flat():
            return not core.account._call(core.account.client.positions) and core.account.kill_active()
        wait_until(flat, 5, interval=0.05, what="venue flat and entries halted after the bus kill key")
        took = time.monotonic() - t0
        assert took < 2.0, f"kill switch took {took:.2f}s"
        wait_until(lambda: core.account.kill_exits, 3, what="kill exit booked by the account")
        r = core.process(scan(n + 1, 0.0))
        assert core.engine.position is None and core.account.position is None
        assert [x["reason"] for x in r["kill_exits"]] == ["KILL_SWITCH"]
        assert journal.events("KILL_SWITCH") and cfg.kill_switch.active()
        import os
        import subprocess
        import sys
        env = {**os.environ, "DOLPHIN_HZ_MEMBERS": f"127.0.0.1:{hz_port}", "DOLPHIN_DATA_DIR": settings.data_dir}
        res = subprocess.run([sys.executable, "-m", "prod.execution", "clear-kill"], capture_output=True,
                             text=True, env=env, timeout=60)
        assert res.returncode == 0 and json.loads(res.stdout.splitlines()[-1])["bus"] is True, res.stderr[-2000:]
        assert cli.get(maps.KILL_SWITCH, timeout=5).engaged is False
        wait_until(lambda: not cfg.kill_switch.active() and not core.account.kill_active(), 5,
                   what="kill cleared from the bus")
        print(f"\nbus kill key -> venue flat and halted: {took * 1e3:.0f} ms")
    finally:
        svc.stop()
        core.account.stop()
        cli.close()
        bus.close()
        journal.close()
