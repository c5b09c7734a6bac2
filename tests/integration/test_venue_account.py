"""Integration tests: the simulator's account side over real sockets -- admin switches, funding at the 8-hour
marks of market time, countdownCancelAll, and the user-stream events Binance sends for them
(ACCOUNT_CONFIG_UPDATE, MARGIN_CALL, ACCOUNT_UPDATE with reason FUNDING_FEE, ALGO_UPDATE).

The signed client is the real binance-futures-connector; the user stream is a real websocket.
"""
from __future__ import annotations

import json
import secrets
import time
import urllib.request

import pytest
from websockets.sync.client import connect

from tests.helpers import Proc, free_port, port_open, wait_until
from tests.integration.test_venue_real_clients import ccxt_client

ccxt = pytest.importorskip("ccxt")
um_futures = pytest.importorskip("binance.um_futures")
binance_error = pytest.importorskip("binance.error")

SYM = "BTCUSDT"
EIGHT_H = 8 * 3_600_000


@pytest.fixture
def venue(tmp_path, request):
    """A simulator (param: seconds of market time before an 8-hour mark to start at, or "hedge": hedge mode)."""
    before = getattr(request, "param", None)
    key, secret = f"acct-{secrets.token_hex(4)}", secrets.token_hex(16)
    port = free_port()
    args = ["--host", "127.0.0.1", "--port", str(port), "--symbols", "60", "--api-key", f"{key}:{secret}"]
    if before == "hedge":
        args.append("--hedge-mode")
    elif before == "lagging":                      # market time 20 s behind the wall clock, as a loaded simulator
        args += ["--start-ms", str(int(time.time() * 1000) - 20_000)]
    elif before is not None:
        mark = (int(time.time() * 1000) // EIGHT_H + 1) * EIGHT_H
        args += ["--start-ms", str(mark - int(before * 1000))]
    proc = Proc("standins.venue_sim", args, tmp_path / "sim.log").start()
    try:
        wait_until(lambda: port_open(port) or proc.p.poll() is not None, 60, what="venue_sim port")
        assert proc.p.poll() is None, proc.log_text()
        yield port, um_futures.UMFutures(key=key, secret=secret, base_url=f"http://127.0.0.1:{port}", timeout=10)
    finally:
        proc.stop()


def admin(port: int, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/sim/admin/account", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def admin_status(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/sim/status", timeout=10) as r:
        return json.loads(r.read())


def refused(fn) -> int:
    with pytest.raises(binance_error.ClientError) as e:
        fn()
    return int(e.value.error_code)


class UserStream:
    """The account's user-data stream; ``wait(pred)`` returns the first event matching ``pred``."""

    def __init__(self, port: int, client) -> None:
        lk = client.new_listen_key()["listenKey"]
        self.ws = connect(f"ws://127.0.0.1:{port}/ws/{lk}", open_timeout=10)

    def wait(self, pred, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ev = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            except TimeoutError:
                break
            if pred(ev):
                return ev
        raise AssertionError(f"no matching user event within {timeout}s")

    def close(self) -> None:
        self.ws.close()


def test_a_misconfigured_account_is_met_as_binance_reports_it(venue):
    port, c = venue
    st, body = admin(port, {"dual_side": True, "multi_assets": True, "leverage": {SYM: 2}, "balance": 50})
    assert st == 200 and body["dual_side"] and body["multi_assets"]
    assert c.get_position_mode()["dualSidePosition"] is True
    assert c.get_multi_asset_mode()["multiAssetsMargin"] is True
    assert c.symbol_configuration(symbol=SYM)[0]["leverage"] == 2
    assert float(c.balance()[0]["availableBalance"]) == 50.0
    assert refused(lambda: c.new_order(symbol=SYM, side="BUY", type="MARKET", quantity="0.010")) == -4061
    c.change_position_mode(dualSidePosition="false")
    assert refused(lambda: c.new_order(symbol=SYM, side="BUY", type="MARKET", quantity="0.010")) == -2019
    assert refused(lambda: c.change_margin_type(SYM, "ISOLATED")) == -4168
    st, body = admin(port, {"leverage": "ten"})
    assert st == 400 and "leverage" in body["error"]
    st, body = admin(port, {"hedge": True})
    assert st == 400 and "unknown fields" in body["error"]


def test_config_changes_and_margin_call_reach_the_user_stream(venue):
    port, c = venue
    us = UserStream(port, c)
    try:
        c.change_leverage(SYM, 7)
        ev = us.wait(lambda e: e["e"] == "ACCOUNT_CONFIG_UPDATE")
        assert ev["ac"] == {"s": SYM, "l": 7}
        admin(port, {"leverage": {SYM: 3}})                          # changed by hand on the "website"
        assert us.wait(lambda e: e["e"] == "ACCOUNT_CONFIG_UPDATE")["ac"] == {"s": SYM, "l": 3}
        c.change_multi_asset_mode(multiAssetsMargin="true")
        assert us.wait(lambda e: e["e"] == "ACCOUNT_CONFIG_UPDATE")["ai"] == {"j": True}
        c.change_multi_asset_mode(multiAssetsMargin="false")
        c.new_order(symbol=SYM, side="BUY", type="MARKET", quantity="0.010")
        admin(port, {"margin_call": True})
        mc = us.wait(lambda e: e["e"] == "MARGIN_CALL")
        assert mc["p"][0]["s"] == SYM and mc["p"][0]["pa"] == "0.010" and float(mc["cw"]) > 0
    finally:
        us.close()


def test_protective_stop_lives_on_the_venue_and_reports_algo_updates(venue):
    port, c = venue
    us = UserStream(port, c)
    try:
        c.new_order(symbol=SYM, side="BUY", type="MARKET", quantity="0.010")
        last = float(c.ticker_price(SYM)["price"])
        a = c.sign_request("POST", "/fapi/v1/algoOrder", {"algoType": "CONDITIONAL", "symbol": SYM, "side": "SELL",
                                                          "type": "STOP_MARKET", "triggerPrice": f"{last * 0.9:.1f}",
                                                          "closePosition": "true", "clientAlgoId": "stop-a"})
        ev = us.wait(lambda e: e["e"] == "ALGO_UPDATE")
        assert ev["o"]["caid"] == "stop-a" and ev["o"]["X"] == "NEW" and ev["o"]["cp"] is True
        assert c.sign_request("GET", "/fapi/v1/algoOrder", {"algoId": a["algoId"]})["algoStatus"] == "NEW"
        assert c.get_orders(symbol=SYM) == []                         # stops are algo orders, not openOrders
        c.sign_request("DELETE", "/fapi/v1/algoOpenOrders", {"symbol": SYM})
        assert us.wait(lambda e: e["e"] == "ALGO_UPDATE")["o"]["X"] == "CANCELED"
        assert refused(lambda: c.sign_request("DELETE", "/fapi/v1/algoOrder", {"algoId": a["algoId"]})) == -2011
    finally:
        us.close()


def test_countdown_cancels_the_symbols_open_orders_when_it_runs_out(venue):
    port, c = venue
    last = float(c.ticker_price(SYM)["price"])
    c.new_order(symbol=SYM, side="BUY", type="LIMIT", quantity="0.010", timeInForce="GTC", price=f"{last * 0.5:.1f}")
    c.countdown_cancel_order(SYM, 60_000)
    c.countdown_cancel_order(SYM, 0)                                 # stopped: nothing happens
    c.countdown_cancel_order(SYM, 300)
    assert len(c.get_orders(symbol=SYM)) == 1
    wait_until(lambda: c.get_orders(symbol=SYM) == [], 10, what="countdownCancelAll to cancel the order")


@pytest.mark.parametrize("venue", [2.0], indirect=True)
def test_funding_is_charged_at_the_8_hour_mark_of_market_time(venue):
    port, c = venue
    us = UserStream(port, c)
    try:
        c.new_order(symbol=SYM, side="BUY", type="MARKET", quantity="0.100")
        w0 = float(c.balance()[0]["balance"])
        ev = us.wait(lambda e: e["e"] == "ACCOUNT_UPDATE" and e["a"]["m"] == "FUNDING_FEE", timeout=20)
        assert ev["E"] % EIGHT_H == 0 and ev["a"]["P"] == []
        rows = c.get_income_history(incomeType="FUNDING_FEE")
        assert len(rows) == 1 and rows[0]["symbol"] == SYM and rows[0]["time"] == ev["E"]
        assert float(ev["a"]["B"][0]["wb"]) == pytest.approx(w0 + float(rows[0]["income"]), abs=1e-6)
        assert float(rows[0]["income"]) != 0
        paid = ccxt_client(port, c.key, c.secret).fetch_funding_history("BTC/USDT:USDT")    # a real client's view
        assert [(p["amount"], p["timestamp"]) for p in paid] == [(float(rows[0]["income"]), rows[0]["time"])]
    finally:
        us.close()


def fault(port: int, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/sim/admin/fault", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_clock_skew_refuses_unsynced_timestamps_until_the_client_measures_the_offset(venue):
    port, c = venue
    fault(port, {"kind": "clock_skew", "offset_ms": 30_000})
    assert refused(lambda: c.balance()) == -1021                   # the connector signs with the local clock
    ex = ccxt_client(port, c.key, c.secret)
    with pytest.raises(ccxt.InvalidNonce):                         # ccxt names -1021 a nonce error
        ex.fetch_balance()
    ex.load_time_difference()                                      # measures serverTime - local clock
    assert -35_000 < ex.options["timeDifference"] < -25_000         # local - server; speed 1: market time = wall
    assert ex.fetch_balance()["USDT"]["total"] > 0
    fault(port, {"kind": "clear"})
    assert c.balance()[0]["asset"] == "USDT"


def test_a_delisted_symbol_refuses_openings_but_lets_positions_close(venue):
    port, c = venue
    c.new_order(symbol=SYM, side="BUY", type="MARKET", quantity="0.010")
    fault(port, {"kind": "delist", "symbol": SYM, "status": "SETTLING"})
    assert {s["symbol"]: s["status"] for s in c.exchange_info()["symbols"]}[SYM] == "SETTLING"
    assert refused(lambda: c.new_order(symbol=SYM, side="BUY", type="MARKET", quantity="0.010")) == -4140
    r = c.new_order(symbol=SYM, side="SELL", type="MARKET", quantity="0.010", reduceOnly="true",
                    newOrderRespType="RESULT")
    assert r["status"] == "FILLED"
    fault(port, {"kind": "delist", "symbol": SYM, "status": "TRADING"})
    assert c.new_order(symbol=SYM, side="BUY", type="MARKET", quantity="0.010")["symbol"] == SYM


@pytest.mark.parametrize("venue", ["hedge"], indirect=True)
def test_hedge_mode_flag_starts_a_misconfigured_account(venue):
    port, c = venue
    assert c.get_position_mode()["dualSidePosition"] is True
    assert refused(lambda: c.new_order(symbol=SYM, side="BUY", type="MARKET", quantity="0.010")) == -4061
    c.change_position_mode(dualSidePosition="false")
    assert c.new_order(symbol=SYM, side="BUY", type="MARKET", quantity="0.010")["symbol"] == SYM


@pytest.mark.parametrize("venue", ["lagging"], indirect=True)
def test_server_time_is_the_wall_clock_while_market_time_lags_and_synced_clients_are_accepted(venue):
    port, c = venue
    assert c.balance()[0]["asset"] == "USDT"                        # wall-clock timestamps
    lag = time.time() * 1000 - admin_status(port)["market_time_ms"]
    assert 15_000 < lag < 25_000                                    # market time 20 s behind ...
    ex = ccxt_client(port, c.key, c.secret)
    ex.load_time_difference()
    assert abs(ex.options["timeDifference"]) < 2_000                # ... serverTime is not: as Binance's, the wall clock
    assert ex.fetch_balance()["USDT"]["total"] > 0                  # serverTime-synced timestamps
