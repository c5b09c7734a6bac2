"""Real third-party Binance USDT-M clients judge the venue simulator (ccxt and binance-futures-connector).

Each client runs, against a simulator on a free port, every call a trading bot makes: markets, book,
klines, tickers, funding, balance, positions, position mode, leverage, margin type, fees, brackets,
orders (market, limit, reduceOnly, cancel, query by client id), a protective stop, trades, income and
the listen key. Every call is either accepted -- and the parsed result must hold sane values -- or
refused with the error code Binance gives for it (``-4046`` unchanged margin type, ``-4059``
unchanged position mode, ``-2022`` reduceOnly with no position, ``-4120`` a stop on ``/order``,
``-4061`` an order in hedge mode). The clients are configured, never patched: ccxt through its
``urls['api']`` and ``options``, the connector through ``base_url``.
"""
from __future__ import annotations

import json
import re
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from tests.helpers import running_venue

ccxt = pytest.importorskip("ccxt")
um_futures = pytest.importorskip("binance.um_futures")
binance_error = pytest.importorskip("binance.error")

SYM, MKT = "BTCUSDT", "BTC/USDT:USDT"
START_BALANCE = 10_000.0


@dataclass
class Call:
    """One bot call: ``fn()`` must be accepted and pass ``check(result)``, or be refused with ``code``."""

    name: str
    fn: Callable[[], Any]
    check: Callable[[Any], object] | None = None
    code: int | None = None


@dataclass
class Outcome:
    name: str
    passed: bool
    accepted: bool
    detail: str


def admin(port: int, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/sim/admin/account", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def error_code(exc: Exception) -> int | None:
    """The Binance error code a client raised (connector: ``error_code``; ccxt: the JSON body in the message)."""
    if isinstance(exc, binance_error.ClientError):
        return None if exc.error_code is None else int(exc.error_code)     # None: not a Binance JSON error body
    m = re.search(r'"code"\s*:\s*(-?\d+)', str(exc))
    return int(m.group(1)) if m else None


def run_calls(calls: list[Call]) -> list[Outcome]:
    """Run ``calls`` in order; each outcome says whether it behaved as Binance would."""
    out = []
    for c in calls:
        try:
            res = c.fn()
        except Exception as exc:  # noqa: BLE001 - every client error is an outcome to judge
            code = error_code(exc)
            ok = c.code is not None and code == c.code
            out.append(Outcome(c.name, ok, False, f"refused {code}: {str(exc)[:160]}"))
            continue
        if c.code is not None:
            out.append(Outcome(c.name, False, True, f"accepted, but Binance refuses it with {c.code}: {str(res)[:160]}"))
            continue
        try:
            ok = bool(c.check(res)) if c.check else True
            detail = "" if ok else f"insane result: {str(res)[:200]}"
        except Exception as exc:  # noqa: BLE001
            ok, detail = False, f"check failed: {exc!r} on {str(res)[:200]}"
        out.append(Outcome(c.name, ok, True, detail))
    return out


# ---------------------------------------------------------------------- the two clients' bot calls
def ccxt_client(port: int, key: str, secret: str):
    base = f"http://127.0.0.1:{port}"
    ex = ccxt.binanceusdm({"apiKey": key, "secret": secret, "enableRateLimit": False, "timeout": 10_000,
                           "options": {"fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False,
                                       "adjustForTimeDifference": False}})
    for name, url in list(ex.urls["api"].items()):
        if isinstance(url, str) and url.startswith("https://fapi.binance.com"):
            ex.urls["api"][name] = url.replace("https://fapi.binance.com", base)
    return ex


def ccxt_calls(ex, port: int) -> list[Call]:
    amount = 0.01
    box: dict[str, Any] = {}

    def hedge_order():
        admin(port, {"dual_side": True})
        try:
            return ex.create_order(MKT, "market", "buy", amount)
        finally:
            admin(port, {"dual_side": False})

    def stop_then_cancel():
        o = ex.create_order(MKT, "market", "sell", amount, None, {"stopLossPrice": box["last"] * 0.8,
                                                                  "reduceOnly": True})
        box["stop"] = o
        opened = ex.fetch_open_orders(MKT, params={"trigger": True})
        ex.cancel_order(o["id"], MKT, {"trigger": True})
        return o, opened

    return [
        Call("markets", lambda: ex.load_markets(), lambda r: r[MKT]["precision"]["amount"] > 0
             and r[MKT]["linear"] and r[MKT]["settle"] == "USDT"),
        Call("time", lambda: ex.fetch_time(), lambda r: abs(r - time.time() * 1000) < 3_600_000),
        Call("book", lambda: ex.fetch_order_book(MKT, 5), lambda r: r["bids"][0][0] < r["asks"][0][0]),
        Call("klines", lambda: ex.fetch_ohlcv(MKT, "1m", limit=5),
             lambda r: len(r) == 5 and all(k[3] <= min(k[1], k[4]) <= max(k[1], k[4]) <= k[2] for k in r)),
        Call("ticker", lambda: box.setdefault("last", ex.fetch_ticker(MKT)["last"]), lambda r: r > 0),
        Call("tickers", lambda: ex.fetch_tickers(), lambda r: len(r) >= 50 and r[MKT]["last"] > 0),
        Call("book tickers", lambda: ex.fetch_bids_asks([MKT]), lambda r: r[MKT]["bid"] < r[MKT]["ask"]),
        Call("funding rate", lambda: ex.fetch_funding_rate(MKT), lambda r: abs(r["fundingRate"]) < 0.01
             and r["markPrice"] > 0 and r["fundingTimestamp"] % (8 * 3_600_000) == 0),
        Call("funding history", lambda: ex.fetch_funding_rate_history(MKT), lambda r: r and abs(r[-1]["fundingRate"]) < 0.01),
        Call("balance", lambda: ex.fetch_balance(), lambda r: r["USDT"]["total"] == pytest.approx(START_BALANCE)
             and r["USDT"]["free"] == pytest.approx(START_BALANCE)),
        Call("positions", lambda: ex.fetch_positions([MKT]), lambda r: r == []),
        Call("position mode", lambda: ex.fetch_position_mode(MKT), lambda r: r["hedged"] is False),
        Call("set one-way mode again", lambda: ex.set_position_mode(False), code=-4059),
        Call("set leverage", lambda: ex.set_leverage(5, MKT), lambda r: int(r["leverage"]) == 5),
        Call("leverage", lambda: ex.fetch_leverage(MKT), lambda r: r["longLeverage"] == 5
             and r["marginMode"] == "cross"),
        Call("set cross margin again", lambda: ex.set_margin_mode("cross", MKT), code=-4046),
        Call("set isolated margin", lambda: ex.set_margin_mode("isolated", MKT), lambda r: r["code"] == 200),
        Call("set cross margin", lambda: ex.set_margin_mode("cross", MKT), lambda r: r["code"] == 200),
        Call("trading fee", lambda: ex.fetch_trading_fee(MKT), lambda r: r["taker"] == 0.0005 and r["maker"] == 0.0002),
        Call("leverage tiers", lambda: ex.fetch_leverage_tiers([MKT]),
             lambda r: r[MKT][0]["maxLeverage"] == 125 and r[MKT][0]["minNotional"] == 0),
        Call("market order", lambda: ex.create_order(MKT, "market", "buy", amount),
             lambda r: r["status"] == "closed" and r["filled"] == amount and r["average"] > 0),
        Call("positions after entry", lambda: ex.fetch_positions([MKT]),
             lambda r: len(r) == 1 and r[0]["contracts"] == amount and r[0]["side"] == "long"
             and r[0]["entryPrice"] > 0 and r[0]["marginMode"] == "cross"),
        Call("protective stop", stop_then_cancel, lambda r: r[0]["type"] == "market" and r[0]["triggerPrice"] > 0
             and [o["id"] for o in r[1]] == [r[0]["id"]]),
        Call("limit order", lambda: ex.create_order(MKT, "limit", "buy", amount, round(box["last"] * 0.5, 1),
                                                    {"clientOrderId": "bot-limit-1"}),
             lambda r: r["status"] == "open" and r["clientOrderId"] == "bot-limit-1"),
        Call("order by client id", lambda: ex.fetch_order(None, MKT, {"origClientOrderId": "bot-limit-1"}),
             lambda r: r["status"] == "open" and r["remaining"] == amount),
        Call("open orders", lambda: ex.fetch_open_orders(MKT), lambda r: [o["clientOrderId"] for o in r] == ["bot-limit-1"]),
        Call("cancel by client id", lambda: ex.cancel_order(None, MKT, {"origClientOrderId": "bot-limit-1"}),
             lambda r: r["status"] == "canceled"),
        Call("reduceOnly exit", lambda: ex.create_order(MKT, "market", "sell", amount, None, {"reduceOnly": True}),
             lambda r: r["status"] == "closed" and r["filled"] == amount and r["reduceOnly"] is True),
        Call("reduceOnly when flat", lambda: ex.create_order(MKT, "market", "sell", amount, None, {"reduceOnly": True}),
             code=-2022),
        Call("order in hedge mode", hedge_order, code=-4061),
        Call("trades", lambda: ex.fetch_my_trades(MKT), lambda r: len(r) >= 2 and {t["side"] for t in r} == {"buy", "sell"}
             and all(t["fee"]["currency"] == "USDT" and t["fee"]["cost"] > 0 for t in r)),
        Call("income", lambda: ex.fetch_ledger(), lambda r: "commission" in {e["type"] for e in r}
             and all(e["currency"] == "USDT" for e in r)),
        Call("funding payments", lambda: ex.fetch_funding_history(MKT), lambda r: isinstance(r, list)),
        Call("listen key", lambda: ex.fapiPrivatePostListenKey(), lambda r: len(r["listenKey"]) >= 32),
    ]


def connector_calls(c, port: int) -> list[Call]:
    box: dict[str, Any] = {}
    qty = "0.010"

    def last_price():
        box["last"] = float(c.ticker_price(SYM)["price"])
        return box["last"]

    def hedge_order():
        admin(port, {"dual_side": True})
        try:
            return c.new_order(symbol=SYM, side="BUY", type="MARKET", quantity=qty)
        finally:
            admin(port, {"dual_side": False})

    def algo_stop():
        trig = f"{box['last'] * 0.8:.1f}"
        a = c.sign_request("POST", "/fapi/v1/algoOrder", {"algoType": "CONDITIONAL", "symbol": SYM, "side": "SELL",
                                                          "type": "STOP_MARKET", "triggerPrice": trig,
                                                          "closePosition": "true", "workingType": "MARK_PRICE",
                                                          "clientAlgoId": "bot-stop-1"})
        opened = c.sign_request("GET", "/fapi/v1/openAlgoOrders", {"symbol": SYM})
        gone = c.sign_request("DELETE", "/fapi/v1/algoOrder", {"clientAlgoId": "bot-stop-1"})
        return a, opened, gone

    return [
        Call("exchangeInfo", lambda: c.exchange_info(), lambda r: any(s["symbol"] == SYM and s["status"] == "TRADING"
                                                                      for s in r["symbols"])),
        Call("time", lambda: c.time(), lambda r: r["serverTime"] > 0),
        Call("book", lambda: c.depth(SYM, limit=5), lambda r: float(r["bids"][0][0]) < float(r["asks"][0][0])),
        Call("klines", lambda: c.klines(SYM, "1m", limit=5), lambda r: len(r) == 5 and float(r[-1][4]) > 0),
        Call("ticker 24hr", lambda: c.ticker_24hr_price_change(SYM), lambda r: float(r["lastPrice"]) > 0
             and float(r["lowPrice"]) <= float(r["lastPrice"]) <= float(r["highPrice"])),
        Call("ticker price", last_price, lambda r: r > 0),
        Call("book ticker", lambda: c.book_ticker(SYM), lambda r: float(r["bidPrice"]) < float(r["askPrice"])),
        Call("mark price", lambda: c.mark_price(SYM), lambda r: float(r["markPrice"]) > 0
             and abs(float(r["lastFundingRate"])) < 0.01),
        Call("funding rate", lambda: c.funding_rate(SYM, limit=5), lambda r: r and r[-1]["symbol"] == SYM),
        Call("balance", lambda: c.balance(), lambda r: float(r[0]["balance"]) == START_BALANCE and r[0]["asset"] == "USDT"),
        Call("account", lambda: c.account(), lambda r: float(r["availableBalance"]) == START_BALANCE
             and r["positions"] == []),
        Call("positions", lambda: c.get_position_risk(symbol=SYM), lambda r: r == []),
        Call("position mode", lambda: c.get_position_mode(), lambda r: r["dualSidePosition"] is False),
        Call("set one-way mode again", lambda: c.change_position_mode(dualSidePosition="false"), code=-4059),
        Call("multi-assets mode", lambda: c.get_multi_asset_mode(), lambda r: r["multiAssetsMargin"] is False),
        Call("account config", lambda: c.futures_account_configuration(),
             lambda r: r["dualSidePosition"] is False and r["canTrade"] is True),
        Call("set leverage", lambda: c.change_leverage(SYM, 6), lambda r: r["leverage"] == 6 and r["symbol"] == SYM),
        Call("symbol config", lambda: c.symbol_configuration(symbol=SYM),
             lambda r: r[0]["leverage"] == 6 and r[0]["marginType"] == "CROSSED"),
        Call("set cross margin again", lambda: c.change_margin_type(SYM, "CROSSED"), code=-4046),
        Call("leverage brackets", lambda: c.leverage_brackets(symbol=SYM),
             lambda r: (r[0] if isinstance(r, list) else r)["brackets"][0]["initialLeverage"] == 125),
        Call("commission rate", lambda: c.commission_rate(SYM), lambda r: float(r["takerCommissionRate"]) == 0.0005),
        Call("market order", lambda: c.new_order(symbol=SYM, side="BUY", type="MARKET", quantity=qty,
                                                 newOrderRespType="RESULT"),
             lambda r: r["status"] == "FILLED" and r["executedQty"] == qty),
        Call("positions after entry", lambda: c.get_position_risk(symbol=SYM),
             lambda r: len(r) == 1 and r[0]["positionAmt"] == qty and float(r[0]["markPrice"]) > 0),
        Call("stop on /order", lambda: c.new_order(symbol=SYM, side="SELL", type="STOP_MARKET",
                                                   stopPrice=f"{box['last'] * 0.8:.1f}", closePosition="true"),
             code=-4120),
        Call("protective stop (algo)", algo_stop, lambda r: r[0]["algoStatus"] == "NEW" and r[0]["closePosition"]
             and [a["clientAlgoId"] for a in r[1]] == ["bot-stop-1"] and r[2]["code"] == "200"),
        Call("limit order", lambda: c.new_order(symbol=SYM, side="BUY", type="LIMIT", quantity=qty, timeInForce="GTC",
                                                price=f"{box['last'] * 0.5:.1f}", newClientOrderId="bot-limit-2"),
             lambda r: r["status"] == "NEW" and r["clientOrderId"] == "bot-limit-2"),
        Call("order by client id", lambda: c.query_order(SYM, origClientOrderId="bot-limit-2"),
             lambda r: r["status"] == "NEW" and r["origQty"] == qty),
        Call("open order by client id", lambda: c.get_open_orders(SYM, origClientOrderId="bot-limit-2"),
             lambda r: r["clientOrderId"] == "bot-limit-2"),
        Call("open orders", lambda: c.get_orders(symbol=SYM), lambda r: [o["clientOrderId"] for o in r] == ["bot-limit-2"]),
        Call("cancel by client id", lambda: c.cancel_order(SYM, origClientOrderId="bot-limit-2"),
             lambda r: r["status"] == "CANCELED"),
        Call("countdown cancel-all", lambda: c.countdown_cancel_order(SYM, 30_000),
             lambda r: r["symbol"] == SYM and r["countdownTime"] == "30000"),
        Call("reduceOnly exit", lambda: c.new_order(symbol=SYM, side="SELL", type="MARKET", quantity=qty,
                                                    reduceOnly="true", newOrderRespType="RESULT"),
             lambda r: r["status"] == "FILLED" and r["reduceOnly"] is True),
        Call("reduceOnly when flat", lambda: c.new_order(symbol=SYM, side="SELL", type="MARKET", quantity=qty,
                                                         reduceOnly="true"), code=-2022),
        Call("order in hedge mode", hedge_order, code=-4061),
        Call("trades", lambda: c.get_account_trades(SYM), lambda r: len(r) == 2 and {t["side"] for t in r} == {"BUY", "SELL"}),
        Call("income", lambda: c.get_income_history(symbol=SYM),
             lambda r: {"COMMISSION"} <= {x["incomeType"] for x in r} and all(x["asset"] == "USDT" for x in r)),
        Call("funding income", lambda: c.get_income_history(incomeType="FUNDING_FEE"), lambda r: isinstance(r, list)),
        Call("adl quantile", lambda: c.adl_quantile(symbol=SYM), lambda r: isinstance(r, list)),
        Call("listen key", lambda: c.new_listen_key(), lambda r: len(r["listenKey"]) >= 32),
        Call("keep listen key", lambda: c.renew_listen_key(c.new_listen_key()["listenKey"]), lambda r: "listenKey" in r
             or r == {}),
    ]


def connector_client(port: int, key: str, secret: str):
    return um_futures.UMFutures(key=key, secret=secret, base_url=f"http://127.0.0.1:{port}", timeout=10)


CLIENTS = {"ccxt": (ccxt_client, ccxt_calls), "binance-futures-connector": (connector_client, connector_calls)}


@pytest.fixture(params=sorted(CLIENTS))
def client_sim(request, tmp_path):
    key, secret = f"oracle-{secrets.token_hex(4)}", secrets.token_hex(16)
    with running_venue(tmp_path, "--symbols", "60", "--api-key", f"{key}:{secret}", name="sim", seed=None) as (_, port):
        make, calls = CLIENTS[request.param]
        yield request.param, port, calls(make(port, key, secret), port)


def test_every_bot_call_is_accepted_or_refused_as_binance_would(client_sim, capsys):
    name, port, calls = client_sim
    outcomes = run_calls(calls)
    accepted = sum(o.accepted and o.passed for o in outcomes)
    refused = sum(not o.accepted and o.passed for o in outcomes)
    with capsys.disabled():
        print(f"\n{name}: {accepted} accepted, {refused} refused as Binance would, of {len(outcomes)} bot calls")
    bad = [f"{o.name}: {o.detail}" for o in outcomes if not o.passed]
    assert not bad, f"{name}: {len(bad)} of {len(outcomes)} calls not as Binance:\n" + "\n".join(bad)


def test_unknown_paths_answer_json_not_html(client_sim):
    _, port, _ = client_sim
    req = urllib.request.Request(f"http://127.0.0.1:{port}/fapi/v1/noSuchEndpoint")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 404
    assert e.value.headers["Content-Type"].startswith("application/json")
    assert json.loads(e.value.read())["code"] < 0
