"""Unit tests of prod.execution's pure parts: state machine (hypothesis), client ids, signing, parsers."""
from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prod.execution import (BadFill, Credentials, Fill, IllegalTransition, MissingCredentials, Order, OrderStatus,
                            check_transition, client_order_id, sign, signed_query)
from prod.execution import schemas as X
from prod.execution.orders import ALLOWED, TERMINAL
from prod.venue.errors import MalformedMessage
from tests.helpers import FIXTURES

FIX = FIXTURES / "venue"
S = OrderStatus
STATUSES = list(OrderStatus)


# ---------------------------------------------------------------------- signing
def test_signature_matches_binance_documented_example():
    # Binance USDT-M docs, "SIGNED Endpoint Examples for POST /fapi/v1/order" (HMAC SHA256, query string)
    secret = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
    qs = ("symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000"
          "&timestamp=1591702613943")
    assert sign(secret, qs) == "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"


def test_signed_query_appends_recv_window_timestamp_and_signature_in_order():
    secret = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
    q = signed_query({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": 1, "price": 9000,
                      "timeInForce": "GTC", "skip": None}, secret, 1591702613943, 5000)
    assert q == ("symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000"
                 "&timestamp=1591702613943&signature=3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9")
    assert "reduceOnly=true" in signed_query({"reduceOnly": True}, "s", 1)


def test_credentials_never_show_the_secret_and_name_missing_env_vars():
    c = Credentials("abcdefgh", "supersecretvalue")
    assert "supersecretvalue" not in repr(c) and "supersecretvalue" not in str(c) and "abcd" in repr(c)
    with pytest.raises(MissingCredentials, match="DOLPHIN_VENUE_API_SECRET"):
        Credentials.from_env({"DOLPHIN_VENUE_API_KEY": "k"})
    assert Credentials.from_env({"DOLPHIN_VENUE_API_KEY": "k", "DOLPHIN_VENUE_API_SECRET": "s"}).secret == "s"


# ---------------------------------------------------------------------- client order ids
def test_client_order_id_is_deterministic_short_and_venue_legal():
    a = client_order_id("blue", "2026-12-02", 1234, "SELL", "entry-7")
    assert a == client_order_id("blue", "2026-12-02", 1234, "sell", "entry-7")
    assert len(a) <= 36 and re.fullmatch(r"[.A-Z:/a-z0-9_-]{1,36}", a) and a.startswith("DLP-")
    others = {client_order_id("blue", "2026-12-02", 1235, "SELL", "entry-7"),
              client_order_id("blue", "2026-12-03", 1234, "SELL", "entry-7"),
              client_order_id("blue", "2026-12-02", 1234, "BUY", "entry-7"),
              client_order_id("green", "2026-12-02", 1234, "SELL", "entry-7"),
              client_order_id("blue", "2026-12-02", 1234, "SELL", "exit-7-0")}
    assert a not in others and len(others) == 5


# ---------------------------------------------------------------------- state machine
def _order(qty: float = 1.0) -> Order:
    return Order("DLP-x", "BTCUSDT", "SELL", "MARKET", qty)


def test_documented_path_and_illegal_moves():
    o = _order()
    assert o.apply_status(S.NEW) and o.apply_status(S.PARTIALLY_FILLED, 0.5) and o.apply_status(S.FILLED, 1.0)
    with pytest.raises(IllegalTransition):
        o.apply_status(S.CANCELED)
    assert not o.apply_status(S.NEW)          # a late NEW after FILLED is stale, ignored
    assert o.status == S.FILLED and o.stale_updates == 1
    c = _order()
    c.apply_status(S.NEW)
    with pytest.raises(IllegalTransition):
        c.apply_status(S.REJECTED)            # the venue accepted it: it cannot be rejected afterwards
    c.apply_status(S.CANCELED)
    with pytest.raises(IllegalTransition):
        c.apply_status(S.FILLED)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(STATUSES), max_size=12))
def test_random_status_sequences_respect_the_machine(seq):
    o = _order()
    history = [o.status]
    for to in seq:
        frm = o.status
        try:
            changed = o.apply_status(to)
        except IllegalTransition:
            assert to not in ALLOWED[frm] and to != frm
            assert o.status == frm                      # refused: nothing changed
            continue
        if o.status != frm:
            assert o.status in ALLOWED[frm]             # every move taken is an allowed one
            assert changed
        history.append(o.status)
    terminal_at = next((k for k, s in enumerate(history) if s in TERMINAL), None)
    if terminal_at is not None:                         # once final, final for good
        assert all(s == history[terminal_at] for s in history[terminal_at:])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.integers(1, 400)), max_size=20))
def test_fills_count_once_and_never_exceed_the_order(fills):
    o = _order(qty=1000)
    applied = {}
    for tid, q in fills:
        f = Fill(tid, float(q), 100.0, 0.01, False, 0.0, 1)
        if tid in applied:
            assert o.add_fill(f) is False               # same trade id again (stream + REST): counted once
            continue
        if sum(applied.values()) + q > 1000:
            with pytest.raises(BadFill):
                o.add_fill(f)
            continue
        assert o.add_fill(f) is True
        applied[tid] = q
    assert o.filled_qty == sum(applied.values()) <= 1000


def test_over_fill_and_bad_numbers_are_refused():
    o = _order(qty=1.0)
    o.add_fill(Fill(1, 0.6, 100.0, 0.0, False, 0.0, 1))
    with pytest.raises(BadFill):
        o.add_fill(Fill(2, 0.6, 100.0, 0.0, False, 0.0, 1))
    with pytest.raises(BadFill):
        o.add_fill(Fill(3, 0.1, float("nan"), 0.0, False, 0.0, 1))
    with pytest.raises(BadFill):
        o.apply_status(S.FILLED, cum_qty=1.5)
    assert o.filled_qty == 0.6 and o.status == S.PENDING_NEW


def test_check_transition_table():
    assert check_transition(S.PENDING_NEW, S.FILLED)      # ack after the fills
    assert check_transition(S.PARTIALLY_FILLED, S.PARTIALLY_FILLED)
    assert check_transition(S.PARTIALLY_FILLED, S.NEW) is False
    with pytest.raises(IllegalTransition):
        check_transition(S.EXPIRED, S.FILLED)


# ---------------------------------------------------------------------- parsers
def test_order_trade_update_fixture_parses_to_a_fill():
    u = X.parse_order_trade_update(json.loads((FIX / "ws_order_trade_update.json").read_text()))
    assert u.status == S.PARTIALLY_FILLED and u.client_id == "TEST" and u.venue_order_id == 8886774
    assert u.fill == Fill(12345, 0.001, 9200.10, 0.00460005, False, 0.0, 1568879465650)
    assert u.cum_qty == 0.001 and u.orig_qty == 0.002


def test_account_update_and_rest_order_fixtures_parse():
    a = X.parse_account_update(json.loads((FIX / "ws_account_update.json").read_text()))
    assert a.wallet_balance == 122624.12345678 and a.positions[0].amount == -0.001 and a.reason == "ORDER"
    r = X.parse_rest_order(json.loads((FIX / "rest_order.json").read_text()))
    assert r.status == S.NEW and r.cum_qty == 0 and r.orig_qty == 10 and r.client_id == "testOrder"


@pytest.mark.parametrize("patch", [
    {"X": "EXPLODED"}, {"z": "NaN"}, {"l": "0"}, {"t": "12.5"}, {"c": None}, {"L": "-1"}, {"i": True}, {"z": "-1"},
    {"q": True}, {"t": "twelve"},
])
def test_malformed_order_events_are_refused_naming_the_field(patch):
    ev = json.loads((FIX / "ws_order_trade_update.json").read_text())
    ev["o"].update(patch)
    with pytest.raises(MalformedMessage, match="ORDER_TRADE_UPDATE"):
        X.parse_order_trade_update(ev)
    with pytest.raises(MalformedMessage):
        X.parse_order_trade_update({"e": "ORDER_TRADE_UPDATE", "o": "garbage"})


def test_symbol_rules_round_down_to_the_step():
    info = {"symbols": [{"symbol": "BTCUSDT", "filters": [
        {"filterType": "PRICE_FILTER", "tickSize": "0.10"},
        {"filterType": "LOT_SIZE", "stepSize": "0.001", "minQty": "0.001"},
        {"filterType": "MIN_NOTIONAL", "notional": "5"}]}]}
    r = X.parse_symbol_rules(info)["BTCUSDT"]
    assert str(r.round_qty(0.12399)) == "0.123" and str(r.round_qty(0.0009)) == "0.000"
    assert str(r.round_price(100.04, up=True)) == "100.1" and r.min_notional == 5.0
    with pytest.raises(MalformedMessage):
        X.parse_symbol_rules({"symbols": [{"symbol": "X", "filters": []}]})


def test_a_held_quantity_summed_from_fills_rounds_to_the_nearest_step_not_a_step_short():
    info = {"symbols": [{"symbol": "ETCUSDT", "filters": [
        {"filterType": "PRICE_FILTER", "tickSize": "0.001"},
        {"filterType": "LOT_SIZE", "stepSize": "0.1", "minQty": "0.1"},
        {"filterType": "MIN_NOTIONAL", "notional": "5"}]}]}
    r = X.parse_symbol_rules(info)["ETCUSDT"]
    held = 354.2 + 36.4                                   # two fills of an entry (ci13's mesh)
    assert held < 390.6 and str(r.round_qty(held)) == "390.5"      # floored: an exit would leave 0.1 open
    assert str(r.held_qty(held)) == "390.6" and str(r.held_qty(390.6 - 390.5)) == "0.1"
    assert str(r.held_qty(1e-12)) == "0.0"
