"""The preflight's pure rules: endpoint kind vs URL, mainnet opt-in, the typed settings, the entry gate,
commission-rate parsing and booking a non-USDT commission at the account's rate (no network needed)."""
from __future__ import annotations

import orjson
import pytest

from prod.execution import Credentials, ExecutionClient, Order
from prod.execution.preflight import (Check, EntryGate, PreflightConfig, PreflightReport, endpoint_check,
                                      url_kind)
from prod.execution.rest import OrderRestClient
from prod.execution.schemas import FeeRates, parse_commission_rate, parse_user_trade
from prod.settings import ConfigError, load_settings
from prod.venue.errors import MalformedMessage


@pytest.mark.parametrize("url,kind", [
    ("https://fapi.binance.com", "mainnet"), ("wss://fstream.binance.com", "mainnet"),
    ("wss://ws-fapi.binance.com/ws-fapi/v1", "mainnet"),
    ("https://testnet.binancefuture.com", "testnet"), ("wss://stream.binancefuture.com", "testnet"),
    ("wss://fstream.binancefuture.com", "testnet"), ("https://demo-fapi.binance.com", "testnet"),
    ("http://127.0.0.1:8765", "simulator"), ("ws://localhost:8765", "simulator"), ("http://venue_sim:8765", "simulator"),
    ("http://10.1.2.3:8765", "simulator"), ("http://[::1]:8765", "simulator"),
    ("https://example.com", "unknown"), ("http://8.8.8.8", "unknown"),
])
def test_url_kind_names_binance_mainnet_testnet_and_local_simulators(url, kind):
    assert url_kind(url) == kind


def test_a_testnet_url_declared_mainnet_and_the_reverse_are_refused_naming_the_setting():
    c = endpoint_check("mainnet", True, ("https://testnet.binancefuture.com", "wss://stream.binancefuture.com"))
    assert not c.ok and "testnet endpoint" in c.detail and "DOLPHIN_VENUE_KIND=testnet" in c.fix
    c = endpoint_check("testnet", False, ("https://fapi.binance.com", "wss://fstream.binance.com"))
    assert not c.ok and "mainnet endpoint" in c.detail and "DOLPHIN_VENUE_KIND=mainnet" in c.fix
    c = endpoint_check("simulator", False, ("https://fapi.binance.com",))
    assert not c.ok and "FAIL endpoint" in c.line()


def test_mainnet_needs_the_explicit_opt_in():
    urls = ("https://fapi.binance.com", "wss://fstream.binance.com")
    refused = endpoint_check("mainnet", False, urls)
    assert not refused.ok and "DOLPHIN_VENUE_MAINNET_OK=1" in refused.fix and "testnet first" in refused.fix
    assert endpoint_check("mainnet", True, urls).ok
    assert endpoint_check("testnet", False, ("https://testnet.binancefuture.com",)).ok
    assert endpoint_check("simulator", False, ("http://127.0.0.1:1", "ws://127.0.0.1:1")).ok


def test_venue_settings_are_typed_and_bad_values_name_the_variable():
    s = load_settings(env={"DOLPHIN_VENUE_KIND": "Testnet", "DOLPHIN_VENUE_MAINNET_OK": "1",
                           "DOLPHIN_VENUE_MARGIN_TYPE": "crossed", "DOLPHIN_VENUE_LEVERAGE": "8",
                           "DOLPHIN_VENUE_ALLOCATION_USDT": "500"})
    assert (s.venue_kind, s.venue_mainnet_ok, s.venue_margin_type, s.venue_leverage, s.venue_allocation_usdt) == (
        "testnet", True, "CROSSED", 8, 500.0)
    d = load_settings(env={})
    assert (d.venue_kind, d.venue_mainnet_ok, d.venue_margin_type, d.venue_leverage, d.venue_allocation_usdt) == (
        "simulator", False, "ISOLATED", 6, None)
    for var, raw in (("DOLPHIN_VENUE_KIND", "prod"), ("DOLPHIN_VENUE_MAINNET_OK", "maybe"),
                     ("DOLPHIN_VENUE_MARGIN_TYPE", "PORTFOLIO"), ("DOLPHIN_VENUE_LEVERAGE", "0"),
                     ("DOLPHIN_VENUE_LEVERAGE", "2.5"), ("DOLPHIN_VENUE_ALLOCATION_USDT", "-1")):
        with pytest.raises(ConfigError, match=var):
            load_settings(env={var: raw})


def test_preflight_config_takes_the_engine_limits_and_the_allocation_default():
    from prod.configs import load_blue
    params = load_blue().engine
    cfg = PreflightConfig.from_settings(load_settings(env={}), params)
    assert cfg.engine_max_leverage == params.abs_max_leverage == 6.0 and cfg.leverage == 6
    assert cfg.allocation_usdt == params.initial_capital
    assert cfg.max_entry_fraction == pytest.approx(params.fraction * params.abs_max_leverage)
    assert PreflightConfig.from_settings(load_settings(env={"DOLPHIN_VENUE_ALLOCATION_USDT": "750"}),
                                         params).allocation_usdt == 750.0


def _report(*checks: Check, refused=()) -> PreflightReport:
    return PreflightReport(tuple(checks), "simulator", refused=tuple(refused))


def test_the_gate_is_closed_until_a_report_and_refuses_by_account_or_by_symbol():
    g = EntryGate()
    assert not g.open and "not run" in g.refusal("BTCUSDT")
    g.apply(_report(Check("endpoint", True, "sim"), Check("position mode", False, "Hedge Mode", "switch to One-way")))
    assert not g.open and "position mode: Hedge Mode -> switch to One-way" in g.refusal("ETHUSDT")
    g.apply(_report(Check("position mode", True, "One-way"), Check("symbols", False, "1/2 tradable"),
                    refused=[("FTMUSDT", "not listed in GET /fapi/v1/exchangeInfo (delisted?)")]))
    assert g.open and g.refusal("ETHUSDT") is None and "FTMUSDT" in g.refusal("FTMUSDT")
    g.close("restart the trader")
    assert g.refusal("ETHUSDT") == "restart the trader"


def test_report_lines_say_pass_fail_and_the_fix():
    r = _report(Check("endpoint", True, "simulator (http://127.0.0.1:1)"),
                Check("asset mode", False, "Multi-Assets Mode", "switch Asset Mode to Single-Asset"))
    lines = r.lines()
    assert lines[0].startswith("PASS endpoint") and lines[1].startswith("FAIL asset mode")
    assert lines[1].endswith("-> switch Asset Mode to Single-Asset") and lines[-1].startswith("FAIL preflight")
    assert not r.ok and not r.entries_allowed and r.to_dict()["checks"][1]["fix"].startswith("switch")


def test_commission_rate_is_parsed_from_strings_and_out_of_range_is_refused():
    assert parse_commission_rate({"symbol": "BTCUSDT", "makerCommissionRate": "0.0002",
                                  "takerCommissionRate": "0.0004"}) == FeeRates(0.0002, 0.0004, "BTCUSDT")
    for bad in ({"symbol": "BTCUSDT", "makerCommissionRate": "0.5", "takerCommissionRate": "0.0004"},
                {"symbol": "BTCUSDT", "makerCommissionRate": "NaN", "takerCommissionRate": "0.0004"},
                {"symbol": "BTCUSDT"}, ["x"]):
        with pytest.raises(MalformedMessage):
            parse_commission_rate(bad)


def test_a_bnb_commission_is_booked_in_usdt_at_the_accounts_rate():
    c = ExecutionClient(OrderRestClient("http://127.0.0.1:1", Credentials("k", "s")), "ws://127.0.0.1:1")
    c.fee_rates = FeeRates(0.0002, 0.0004, "BTCUSDT")
    c.orders["DLP-a"] = Order("DLP-a", "ETHUSDT", "SELL", "MARKET", 2.0)
    ev = {"e": "ORDER_TRADE_UPDATE", "E": 10, "T": 10, "o": {
        "s": "ETHUSDT", "c": "DLP-a", "S": "SELL", "o": "MARKET", "f": "GTC", "q": "2", "p": "0", "ap": "100",
        "x": "TRADE", "X": "FILLED", "i": 55, "l": "2", "z": "2", "L": "100", "N": "BNB", "n": "0.00012",
        "T": 10, "t": 1, "m": False, "R": False, "rp": "0"}}
    c.stream._handle(orjson.dumps(ev))
    o = c.orders["DLP-a"]
    assert o.fees == pytest.approx(0.0004 * 2 * 100) and c.stats.fees_converted == 1
    ev["o"].update(N="USDT", n="-0.08", t=2, c="DLP-b")
    c.orders["DLP-b"] = Order("DLP-b", "ETHUSDT", "SELL", "MARKET", 2.0)
    c.stream._handle(orjson.dumps(ev))
    assert c.orders["DLP-b"].fees == pytest.approx(0.08) and c.stats.fees_converted == 1
    _oid, f = parse_user_trade({"id": 3, "orderId": 9, "qty": "1", "price": "10", "commission": "0.001",
                                "commissionAsset": "BNB", "maker": True, "realizedPnl": "0", "time": 5})
    assert f.fee_asset == "BNB" and c._usdt_fee(f, "ETHUSDT").fee == pytest.approx(0.0002 * 10)
