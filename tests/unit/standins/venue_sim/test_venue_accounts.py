"""Unit tests of the simulator's account settings, funding and algo (conditional) orders on a real MarketModel."""
from __future__ import annotations

import pytest

from standins.venue_sim import accounts as A
from standins.venue_sim.algo import AlgoDesk
from standins.venue_sim.exchange import ExchangeConfig, ExchangeError, SimExchange
from standins.venue_sim.model import MarketModel
from standins.venue_sim.universe import build_universe

K = "key"
EIGHT_H = 8 * 3_600_000


@pytest.fixture
def ex():
    m = MarketModel(build_universe(7, 60), 7, 1_790_000_000_000, kline_1s_s=0)
    m.step()
    return SimExchange(m, ExchangeConfig(start_balance=1_000_000.0, leverage=10), {K: "secret"})


def _buy(ex, i, steps, side="BUY", **extra):
    return ex.place(K, {"symbol": ex.m.symbols[i], "side": side, "type": "MARKET", "quantity": ex.fq(i, steps),
                        **extra}, ex.m.t_ms)


def _steps(ex, i, usdt=1000.0):
    return int(usdt / (ex.m.step_size[i] * ex.m.mid[i])) + 1


def _code(fn) -> int:
    with pytest.raises(ExchangeError) as e:
        fn()
    return e.value.code


def test_position_mode_changes_follow_binance_rules(ex):
    acct = ex.account(K)
    assert _code(lambda: A.set_dual_side(acct, False)) == -4059
    _buy(ex, 1, _steps(ex, 1))
    assert _code(lambda: A.set_dual_side(acct, True)) == -4068          # a position is open
    _buy(ex, 1, _steps(ex, 1) * 2, side="SELL", reduceOnly="true")
    A.set_dual_side(acct, True)
    assert _code(lambda: _buy(ex, 1, _steps(ex, 1))) == -4061          # hedge mode: positionSide required
    A.set_dual_side(acct, False)
    assert _buy(ex, 1, _steps(ex, 1)).status == "FILLED"


def test_leverage_and_margin_type_errors_and_config_event(ex):
    acct = ex.account(K)
    i = 0                                                                   # BTCUSDT: 125x first bracket
    r = A.set_leverage(ex, acct, i, "20", 5)
    assert r == {"leverage": 20, "maxNotionalValue": str(A.max_notional(ex, i, 20)), "symbol": ex.m.symbols[i]}
    assert acct.outbox[-1] == {"e": "ACCOUNT_CONFIG_UPDATE", "E": 5, "T": 5, "ac": {"s": ex.m.symbols[i], "l": 20}}
    assert _code(lambda: A.set_leverage(ex, acct, i, "126", 5)) == -4028
    assert _code(lambda: A.set_leverage(ex, acct, 55, "60", 5)) == -4028    # a small symbol caps at 50x
    assert _code(lambda: A.set_margin_type(acct, i, "CROSSED")) == -4046
    A.set_margin_type(acct, i, "ISOLATED")
    assert A.position_risk_v2(ex, acct, ex.m.symbols[i])[0]["marginType"] == "isolated"
    assert _code(lambda: A.set_multi_assets(acct, True, 5)) == -4167        # an isolated symbol
    A.set_margin_type(acct, i, "CROSSED")
    A.set_multi_assets(acct, True, 6)
    assert acct.outbox[-1]["ai"] == {"j": True}
    assert _code(lambda: A.set_margin_type(acct, i, "ISOLATED")) == -4168
    _buy(ex, i, _steps(ex, i))
    assert _code(lambda: A.set_margin_type(acct, i, "CROSSED")) == -4046
    A.set_multi_assets(acct, False, 7)
    assert _code(lambda: A.set_margin_type(acct, i, "ISOLATED")) == -4048   # a position is open


def test_leverage_sets_the_margin_an_order_needs(ex):
    acct = ex.account(K)
    i = 1
    A.set_leverage(ex, acct, i, "2", 1)
    _buy(ex, i, _steps(ex, i, 10_000))
    im = float(A.account_v3(ex, acct)["totalInitialMargin"])
    notional = abs(float(A.position_risk_v3(ex, acct, None)[0]["notional"]))
    assert im == pytest.approx(notional / 2, rel=1e-6)
    A.set_leverage(ex, acct, 2, "1", 1)
    big = _steps(ex, 2, 1_000_000.0 * 0.999)                  # fits the wallet at 10x, not at 1x
    assert _code(lambda: _buy(ex, 2, big)) == -2019


def test_brackets_are_a_consistent_ladder(ex):
    b = A.brackets(ex, 0)
    assert [x["initialLeverage"] for x in b][:3] == [125, 62, 31]
    for lo, hi in zip(b, b[1:]):
        assert hi["notionalFloor"] == lo["notionalCap"]
        # cum makes the maintenance amount continuous at the bracket boundary
        at = hi["notionalFloor"]
        assert at * lo["maintMarginRatio"] - lo["cum"] == pytest.approx(at * hi["maintMarginRatio"] - hi["cum"])


def test_funding_charges_longs_when_the_rate_is_positive_and_books_income(ex):
    acct = ex.account(K)
    i = 1
    _buy(ex, i, _steps(ex, i, 5000))
    ex.m.funding[i] = 0.0001
    w0 = acct.wallet
    mark = float(ex.m.mark_price()[i])
    amt = acct.positions[i].amt * float(ex.m.step_size[i])
    assert A.charge_funding(ex, EIGHT_H * 3) == 1
    assert acct.wallet - w0 == pytest.approx(-amt * mark * 0.0001)
    row = acct.income[-1]
    assert row["incomeType"] == "FUNDING_FEE" and row["time"] == EIGHT_H * 3 and float(row["income"]) < 0
    ev = acct.outbox[-1]
    assert ev["e"] == "ACCOUNT_UPDATE" and ev["a"]["m"] == "FUNDING_FEE" and ev["a"]["P"] == []
    assert A.income_rows(acct, None, "FUNDING_FEE", None, None, 100, EIGHT_H * 3) == [row]


def _stop(desk, ex, i, side, trig_ticks, **extra):
    p = {"algoType": "CONDITIONAL", "symbol": ex.m.symbols[i], "side": side, "type": "STOP_MARKET",
         "triggerPrice": ex.fp(i, trig_ticks), **extra}
    return desk.place(K, p, ex.m.t_ms)


def test_close_position_stop_triggers_on_the_last_price_and_flattens(ex):
    desk = AlgoDesk(ex)
    acct = ex.account(K)
    i = 1
    _buy(ex, i, _steps(ex, i))
    last = int(round(float(ex.m.k_open["c"][i]) / ex.m.tick_size[i]))
    assert _code(lambda: _stop(desk, ex, i, "SELL", last + 5, closePosition="true")) == -2021   # already below
    a = _stop(desk, ex, i, "SELL", last - 20, closePosition="true")
    assert a.status == "NEW" and acct.outbox[-1]["e"] == "ALGO_UPDATE" and acct.outbox[-1]["o"]["X"] == "NEW"
    desk.on_tick(ex.m.t_ms)
    assert a.status == "NEW"                                                  # not reached yet
    acct.outbox.clear()
    ex.m.k_open["c"][i] = (last - 25) * ex.m.tick_size[i]                     # a trade below the trigger
    desk.on_tick(ex.m.t_ms + 100)
    assert a.status == "FINISHED" and acct.positions[i].amt == 0
    algo = [e["o"]["X"] for e in acct.outbox if e["e"] == "ALGO_UPDATE"]
    assert algo == ["TRIGGERED", "FINISHED"]
    fills = [e["o"] for e in acct.outbox if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["x"] == "TRADE"]
    assert fills and all(f["ot"] == "STOP_MARKET" and f["o"] == "MARKET" and f["R"] is True for f in fills)
    assert fills[0]["sp"] == ex.fp(i, last - 20)
    assert acct.outbox[-1]["o"]["ai"] == str(fills[0]["i"])


def test_mark_price_stop_waits_for_the_mark_and_close_position_expires_when_flat(ex):
    desk = AlgoDesk(ex)
    acct = ex.account(K)
    i = 2
    _buy(ex, i, _steps(ex, i))
    mark_ticks = int(ex.mark(i) / ex.m.tick_size[i])
    a = _stop(desk, ex, i, "SELL", mark_ticks - 30, closePosition="true", workingType="MARK_PRICE")
    b = _stop(desk, ex, i, "SELL", mark_ticks - 40, reduceOnly="true", quantity=ex.fq(i, 1))
    ex.m.k_open["c"][i] = (mark_ticks - 100) * ex.m.tick_size[i]              # last trades far below ...
    desk.on_tick(ex.m.t_ms)
    assert a.status == "NEW"                                                  # ... the mark has not moved
    assert b.status == "FINISHED"                                             # the CONTRACT_PRICE one fired
    _buy(ex, i, abs(acct.positions[i].amt), side="SELL", reduceOnly="true")   # the trader closes by hand
    assert a.status == "EXPIRED"                                              # GTE_GTC: gone with the position


def test_algo_order_limits_and_refusals(ex):
    desk = AlgoDesk(ex)
    i = 3
    last = int(round(float(ex.m.k_open["c"][i]) / ex.m.tick_size[i]))
    assert _code(lambda: _stop(desk, ex, i, "SELL", last - 50)) == -1102                        # no quantity
    assert _code(lambda: _stop(desk, ex, i, "SELL", last - 50, closePosition="true",
                               quantity="1")) == -1106
    assert _code(lambda: desk.place(K, {"algoType": "VP", "symbol": ex.m.symbols[i], "side": "SELL",
                                        "type": "STOP_MARKET"}, 1)) == -1130
    for k in range(10):
        _stop(desk, ex, i, "SELL", last - 50 - k, closePosition="true")
    assert _code(lambda: _stop(desk, ex, i, "SELL", last - 70, closePosition="true")) == -4045
    assert desk.cancel_all(K, ex.m.symbols[i], 9) == 10 and desk.open_orders(K, None) == []
    # no position when it triggers: the close-all stop expires with Binance's reason
    a = _stop(desk, ex, i, "SELL", last - 50, closePosition="true")
    ex.m.k_open["c"][i] = (last - 60) * ex.m.tick_size[i]
    desk.on_tick(10)
    assert a.status == "EXPIRED" and a.reason == "Reduce Only reject"


def test_account_and_position_views_list_what_each_version_documents(ex):
    acct = ex.account(K)
    _buy(ex, 4, _steps(ex, 4))
    v2, v3 = A.account_v2(ex, acct), A.account_v3(ex, acct)
    assert len(v2["positions"]) == ex.m.n and "feeTier" in v2 and "feeTier" not in v3
    assert [p["symbol"] for p in v3["positions"]] == [ex.m.symbols[4]]
    assert "leverage" not in v3["positions"][0] and "notional" in v3["positions"][0]
    assert len(A.position_risk_v2(ex, acct, None)) == ex.m.n
    assert [r["symbol"] for r in A.position_risk_v3(ex, acct, None)] == [ex.m.symbols[4]]
    assert v2["totalWalletBalance"] == v3["totalWalletBalance"] == A.balance_json(ex, acct)[0]["balance"]
    assert A.balance_json(ex, acct)[0]["updateTime"] == acct.update_ms > 0


def test_a_high_margin_ratio_pushes_a_margin_call_once_a_minute(ex):
    acct = ex.account(K)
    i = 1
    _buy(ex, i, _steps(ex, i, 100_000))
    last: dict = {}
    assert A.check_margin_calls(ex, 1_000, last) == 0                        # a 1M wallet: ratio far below 0.8
    mm = float(A.account_v3(ex, acct)["totalMaintMargin"])
    acct.wallet = mm * 1.1 - ex.unrealized(acct)                             # margin balance just above maint.
    assert A.check_margin_calls(ex, 2_000, last) == 1
    ev = acct.outbox[-1]
    assert ev["e"] == "MARGIN_CALL" and ev["p"][0]["s"] == ex.m.symbols[i] and float(ev["p"][0]["mm"]) > 0
    assert A.check_margin_calls(ex, 30_000, last) == 0                       # at most one a minute
    assert A.check_margin_calls(ex, 62_000, last) == 1
