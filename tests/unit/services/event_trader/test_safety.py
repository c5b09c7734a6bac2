"""The periodic reconcile's comparison, the protective stop's price, funding bookkeeping and the new stream events."""
from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from prod.execution import schemas as X
from prod.execution.user_stream import UserStream
from prod.venue.errors import MalformedMessage
from prod.trading.accounts import PaperAccount
from prod.execution.funding import apply_funding
from prod.trading.safety import (AccountEvents, Held, SafetyConfig, stop_price,
                                          venue_mismatches)

BASE = {"ETHUSDT": (20, "cross"), "BTCUSDT": (20, "cross")}


def _agree(**kw):
    args = dict(held=Held(7, "ETHUSDT", -0.5), step=0.001, known_open={"DLP-stop": "ETHUSDT"},
                venue_positions={"ETHUSDT": -0.5}, venue_open=[("DLP-stop", "ETHUSDT")], stop_open=True,
                gap=975_000.0, gap0=975_000.0, baseline=BASE, settings=dict(BASE))
    args.update(kw)
    return venue_mismatches(**args)


def test_venue_and_journal_that_agree_have_no_mismatch():
    assert _agree() == {}
    assert _agree(held=None, known_open={}, venue_positions={}, venue_open=[("web_abc", "BTCUSDT")],
                  stop_open=None) == {}          # a foreign (non-DLP) order alone is not ours to judge


@pytest.mark.parametrize("change, key", [
    (dict(venue_positions={"ETHUSDT": -0.7}), "position:ETHUSDT"),                 # changed behind our back
    (dict(venue_positions={}), "position:ETHUSDT"),                                # closed behind our back
    (dict(venue_positions={"ETHUSDT": -0.5, "BTCUSDT": 0.01}), "position:BTCUSDT"),  # one we never ordered
    (dict(venue_open=[("DLP-stop", "ETHUSDT"), ("DLP-x", "ETHUSDT")]), "order:DLP-x"),   # ours, unknown open
    (dict(venue_open=[], stop_open=True), "order:DLP-stop"),                       # open for us, not on the venue
    (dict(stop_open=False, known_open={}, venue_open=[]), "stop:7"),               # the position lost its stop
    (dict(gap=974_999.95), "balance"),                                             # a fee nobody booked
    (dict(settings={**BASE, "ETHUSDT": (5, "cross")}), "leverage:ETHUSDT"),        # leverage changed by hand
    (dict(settings={**BASE, "BTCUSDT": (20, "isolated")}), "margin:BTCUSDT"),      # margin type changed by hand
])
def test_each_disagreement_is_one_keyed_mismatch(change, key):
    found = _agree(**change)
    assert key in found and found[key]


def test_quantities_within_half_a_step_and_cent_sized_balance_noise_agree():
    assert _agree(venue_positions={"ETHUSDT": -0.5004}, gap=975_000.008) == {}
    assert "position:ETHUSDT" in _agree(venue_positions={"ETHUSDT": -0.501})


def test_protective_stop_is_beyond_the_distance_on_the_tick_on_the_loss_side():
    tick = Decimal("0.01")
    short = stop_price(-1, 2000.004, 0.12, tick)
    long = stop_price(1, 2000.004, 0.12, tick)
    assert short == Decimal("2240.01") and short >= Decimal("2000.004") * Decimal("1.12")
    assert long == Decimal("1760.00") and long <= Decimal("2000.004") * Decimal("0.88")


def test_safety_config_rejects_out_of_range_values_by_name():
    assert SafetyConfig().reconcile_s == 60.0 and SafetyConfig().stop_pct == 0.12
    for kw, name in ((dict(reconcile_s=0), "reconcile_s"), (dict(stop_pct=0.6), "protective_stop_pct"),
                     (dict(stop_pct=float("nan")), "protective_stop_pct"),
                     (dict(stop_working_type="LAST"), "stop_working_type")):
        with pytest.raises(ValueError, match=name):
            SafetyConfig(**kw)


def test_funding_is_booked_into_capital_and_peak_once_per_call():
    a = PaperAccount.new(1000.0)
    rec = apply_funding(a, {"income": -1.25, "tran_id": 9})
    assert a.capital == 998.75 and rec["capital_after"] == 998.75 and a.peak_capital == 1000.0
    apply_funding(a, {"income": 3.0, "tran_id": 10})
    assert a.capital == 1001.75 and a.peak_capital == 1001.75


def test_account_events_wake_the_safety_thread_and_drain_in_order():
    ev = AccountEvents()
    ev.put(1)
    ev.put(2)
    assert ev.wake.is_set() and ev.drain() == [1, 2] and ev.drain() == []


# ── the user stream's new account events (Binance's documented shapes) ─────────────────────────────────
def _stream(got: list) -> UserStream:
    return UserStream(None, "ws://127.0.0.1:1", got.append)   # _handle never touches the REST client


def test_account_config_margin_call_and_funding_events_are_parsed_and_passed_on():
    got: list = []
    us = _stream(got)
    us._handle(orjson.dumps({"e": "ACCOUNT_CONFIG_UPDATE", "E": 1, "T": 1, "ac": {"s": "ETHUSDT", "l": 5}}))
    us._handle(orjson.dumps({"e": "ACCOUNT_CONFIG_UPDATE", "E": 2, "T": 2, "ai": {"j": True}}))
    us._handle(orjson.dumps({"e": "MARGIN_CALL", "E": 3, "cw": "3.16812045", "p": [
        {"s": "ETHUSDT", "ps": "LONG", "pa": "1.327", "mt": "CROSSED", "iw": "0", "mp": "187.17127",
         "up": "-1.166074", "mm": "1.614445"}]}))
    us._handle(orjson.dumps({"e": "ACCOUNT_UPDATE", "E": 4, "T": 4, "a": {
        "m": "FUNDING_FEE", "B": [{"a": "USDT", "wb": "1000.5", "cw": "1000.5", "bc": "-0.375"}], "P": []}}))
    assert got[0] == X.AccountConfigUpdate("ETHUSDT", 5, None, 1)
    assert got[1] == X.AccountConfigUpdate(None, None, True, 2)
    assert isinstance(got[2], X.MarginCall) and got[2].cross_wallet == pytest.approx(3.16812045)
    assert got[2].positions[0]["symbol"] == "ETHUSDT" and got[2].positions[0]["maint_margin"] == 1.614445
    assert got[3].reason == "FUNDING_FEE" and got[3].balance_change == -0.375 and got[3].wallet_balance == 1000.5


def test_unknown_event_kinds_are_ignored_and_counted_never_refused():
    got: list = []
    us = _stream(got)
    for kind in ("TRADE_LITE", "TRADE_LITE", "CONDITIONAL_ORDER_TRIGGER_REJECT", "STRATEGY_UPDATE"):
        assert us._handle(orjson.dumps({"e": kind, "E": 1})) is False
    assert got == [] and us.malformed == 0
    assert us.unknown_kinds == {"TRADE_LITE": 2, "CONDITIONAL_ORDER_TRIGGER_REJECT": 1, "STRATEGY_UPDATE": 1}


def test_income_settings_and_wallet_parsers_take_binance_shapes_and_name_bad_fields():
    rows = X.parse_income([{"symbol": "ETHUSDT", "incomeType": "FUNDING_FEE", "income": "-0.37500000", "asset": "USDT",
                            "info": "", "time": 1570636800000, "tranId": "9689322392", "tradeId": ""}])
    assert rows == (X.IncomeRow("ETHUSDT", "FUNDING_FEE", -0.375, "USDT", 1570636800000, 9689322392),)
    with pytest.raises(MalformedMessage, match="income"):
        X.parse_income([{"symbol": "ETHUSDT", "incomeType": "FUNDING_FEE", "income": "x", "time": 1, "tranId": 1}])
    st = X.parse_symbol_settings([{"symbol": "ETHUSDT", "positionAmt": "0", "leverage": "20", "marginType": "CROSS"},
                                  {"symbol": "BTCUSDT", "positionAmt": "0"}])
    assert st == {"ETHUSDT": X.SymbolSetting("ETHUSDT", 20, "cross")}
    assert X.parse_wallet({"assets": [{"asset": "USDT", "walletBalance": "123.5"}], "totalWalletBalance": "9"}) == 123.5
    assert X.parse_wallet({"totalWalletBalance": "9.25"}) == 9.25
    with pytest.raises(MalformedMessage, match="ACCOUNT_CONFIG_UPDATE"):
        X.parse_account_config_update({"e": "ACCOUNT_CONFIG_UPDATE", "E": 1})


def test_trader_config_takes_reconcile_and_stop_settings_and_names_a_bad_one(tmp_path):
    from prod.settings import ConfigError, load_settings
    from services.event_trader.main import TraderConfig
    s = load_settings(env={}, data_dir=str(tmp_path))
    cfg = TraderConfig(settings=s, reconcile_s=15.0, protective_stop_pct=0.2)
    assert cfg.safety == SafetyConfig(reconcile_s=15.0, stop_pct=0.2)
    assert TraderConfig(settings=s).safety == SafetyConfig()          # defaults: 60 s, 12 %
    with pytest.raises(ConfigError, match="protective_stop_pct"):
        TraderConfig(settings=s, protective_stop_pct=0.7)
    with pytest.raises(ConfigError, match="reconcile_s"):
        TraderConfig(settings=s, reconcile_s=0.0)
