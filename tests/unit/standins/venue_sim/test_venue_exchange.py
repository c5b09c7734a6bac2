"""Unit tests of the simulator's matching engine (standins.venue_sim.exchange) on a real MarketModel."""
from __future__ import annotations

import pytest

from standins.venue_sim import accounts as A
from standins.venue_sim.exchange import ExchangeConfig, ExchangeError, SimExchange
from standins.venue_sim.model import MarketModel
from standins.venue_sim.universe import build_universe

K = "key"


@pytest.fixture
def ex():
    m = MarketModel(build_universe(7, 60), 7, 1_790_000_000_000, kline_1s_s=0)
    m.step()
    return SimExchange(m, ExchangeConfig(start_balance=1_000_000.0, leverage=10), {K: "secret"})


def _sym(ex, i=1):
    return ex.m.symbols[i]


def _q(ex, i, steps):
    return ex.fq(i, steps)


def _min(ex, i):
    """Lot steps worth >= 10 USDT (above the 5 USDT minimum notional)."""
    return int(10.0 / (ex.m.step_size[i] * ex.m.mid[i])) + 1


def test_market_order_walks_the_depth_with_one_trade_per_level_and_taker_fees(ex):
    i = 1
    lv = ex._levels(i, buy=True)
    want = lv[0][1] + lv[1][1] // 2
    o = ex.place(K, {"symbol": _sym(ex, i), "side": "BUY", "type": "MARKET", "quantity": _q(ex, i, want)}, 5)
    acct = ex.account(K)
    trades = [e["o"] for e in acct.outbox if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["x"] == "TRADE"]
    assert o.status == "FILLED" and o.filled == want
    assert [t["X"] for t in trades] == ["PARTIALLY_FILLED", "FILLED"]
    assert [t["L"] for t in trades] == [ex.fp(i, lv[0][0]), ex.fp(i, lv[1][0])]      # best level first
    notional = sum(float(t["l"]) * float(t["L"]) for t in trades)
    assert sum(float(t["n"]) for t in trades) == pytest.approx(notional * 0.0005, rel=1e-9)
    assert acct.positions[i].amt == want
    # the liquidity we took is gone until the next tick: a second order starts where the first stopped
    ex.place(K, {"symbol": _sym(ex, i), "side": "BUY", "type": "MARKET", "quantity": _q(ex, i, _min(ex, i))}, 6)
    assert acct.trades[-1]["price"] == ex.fp(i, lv[1][0])


def test_market_order_beyond_visible_depth_fills_partially_then_expires(ex):
    i = 2
    total = sum(a for _, a in ex._levels(i, buy=False))
    ex.place(K, {"symbol": _sym(ex, i), "side": "BUY", "type": "MARKET", "quantity": _q(ex, i, total)}, 1)
    ex.m.step()
    o = ex.place(K, {"symbol": _sym(ex, i), "side": "SELL", "type": "MARKET",
                     "quantity": _q(ex, i, 10 * total)}, 2)
    assert o.status == "EXPIRED" and 0 < o.filled < o.qty
    assert ex.account(K).outbox[-1]["o"]["X"] == "EXPIRED"


def test_limit_gtc_rests_as_maker_and_fills_when_the_book_crosses(ex):
    i = 3
    best_ask = ex._levels(i, buy=True)[0][0]
    o = ex.place(K, {"symbol": _sym(ex, i), "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                     "price": ex.fp(i, best_ask - 50), "quantity": _q(ex, i, _min(ex, i))}, 1)
    assert o.status == "NEW" and o.filled == 0
    ioc = ex.place(K, {"symbol": _sym(ex, i), "side": "BUY", "type": "LIMIT", "timeInForce": "IOC",
                       "price": ex.fp(i, best_ask - 50), "quantity": _q(ex, i, _min(ex, i))}, 1)
    assert ioc.status == "EXPIRED"
    ex.m.ask_idx[i] = ex.m.ask_idx[i] - (best_ask - (best_ask - 50))          # the book moves through our price
    ex.on_tick(2)
    assert o.status == "FILLED" and ex.account(K).trades[-1]["maker"] is True
    assert ex.account(K).trades[-1]["price"] == ex.fp(i, best_ask - 50)
    assert float(ex.account(K).trades[-1]["commission"]) == pytest.approx(
        float(ex.account(K).trades[-1]["quoteQty"]) * 0.0002)


@pytest.mark.parametrize("params, code", [
    ({"symbol": "NOPEUSDT"}, -1121),
    ({"quantity": "0.00000000001"}, -1111),
    ({"quantity": "abc"}, -1100),
    ({"quantity": "0"}, -4003),
    ({"side": "UP"}, -1117),
    ({"type": "LIMIT_MAKER"}, -1116),
    ({"type": "STOP_MARKET", "stopPrice": "1"}, -4120),      # conditional types: algo-order API since 2025-12
    ({"positionSide": "LONG"}, -4061),                       # one-way account
    ({"newClientOrderId": "x" * 37}, -4015),
    ({"reduceOnly": "true"}, -2022),
    ({"quantity": None}, -1102),
])
def test_bad_orders_get_binance_error_codes(ex, params, code):
    p = {"symbol": _sym(ex), "side": "BUY", "type": "MARKET", "quantity": _q(ex, 1, 1000)}
    p.update(params)
    p = {k: v for k, v in p.items() if v is not None}
    with pytest.raises(ExchangeError) as e:
        ex.place(K, p, 1)
    assert e.value.code == code
    assert not ex.account(K).positions.get(1) or ex.account(K).positions[1].amt == 0


def test_insufficient_margin_and_duplicate_client_id(ex):
    small = SimExchange(ex.m, ExchangeConfig(start_balance=100.0, leverage=2), {K: "s"})
    i = 0
    with pytest.raises(ExchangeError) as e:
        small.place(K, {"symbol": _sym(ex, i), "side": "SELL", "type": "MARKET", "quantity": "1"}, 1)
    assert e.value.code == -2019
    p = {"symbol": _sym(ex, i), "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
         "price": ex.fp(i, ex._levels(i, True)[0][0] - 100), "quantity": _q(ex, i, 2), "newClientOrderId": "dup"}
    ex.place(K, p, 1)
    with pytest.raises(ExchangeError) as e:
        ex.place(K, p, 1)
    assert e.value.code == -4116
    ex.cancel(K, None, "dup", 2)
    assert ex.place(K, p, 3).status == "NEW"         # unique among *open* orders only (Binance's rule)


def test_reduce_only_is_capped_to_the_position_and_realises_pnl(ex):
    i = 4
    n = 3 * _min(ex, i)
    ex.place(K, {"symbol": _sym(ex, i), "side": "SELL", "type": "MARKET", "quantity": _q(ex, i, n)}, 1)
    acct = ex.account(K)
    w0 = acct.wallet
    o = ex.place(K, {"symbol": _sym(ex, i), "side": "BUY", "type": "MARKET", "quantity": _q(ex, i, 10 * n),
                     "reduceOnly": "true"}, 2)
    assert o.qty == n and o.status == "FILLED" and acct.positions[i].amt == 0
    rp = sum(float(t["realizedPnl"]) for t in acct.trades if t["orderId"] == o.order_id)
    fee = sum(float(t["commission"]) for t in acct.trades if t["orderId"] == o.order_id)
    assert acct.wallet == pytest.approx(w0 + rp - fee)
    assert [r["positionAmt"] for r in A.position_risk_v2(ex, ex.account(K), _sym(ex, i))] == [_q(ex, i, 0)]
