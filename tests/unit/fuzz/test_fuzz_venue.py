"""Fuzz every venue message decoder: market streams and REST bodies (prod.venue.schemas), the trading
side (prod.execution.schemas) and the user-data stream's frame handler.

Property: a decoder returns its typed value or raises :class:`MalformedMessage` (CrossedBook is one);
no other exception escapes. Inputs are recorded fixture messages mutated one field at a time (wrong
type, NaN/inf, huge numbers, dropped, extra), plus random JSON and bytes.
"""
from __future__ import annotations

import copy
import json
import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prod.execution import schemas as X
from prod.execution.user_stream import UserStream
from prod.venue import schemas as S
from prod.venue.errors import MalformedMessage, UnknownMessage
from tests.unit.fuzz.strategies import FUZZ, json_values, nasty_numbers, raw_values

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "venue"

DEPTH = {"e": "depthUpdate", "E": 1, "T": 1, "s": "BTCUSDT", "U": 1, "u": 2, "pu": 0,
         "b": [["100.0", "1.5"], ["99.5", "2"]], "a": [["100.5", "1"], ["101", "3"]]}
BOOK = {"e": "bookTicker", "u": 1, "s": "BTCUSDT", "b": "100.0", "B": "1", "a": "100.5", "A": "2", "T": 1, "E": 1}
AGG = {"e": "aggTrade", "E": 1, "s": "BTCUSDT", "a": 5, "p": "100.0", "q": "0.1", "f": 1, "l": 2, "T": 1, "m": True}
MARK = {"e": "markPriceUpdate", "E": 1, "s": "BTCUSDT", "p": "100", "i": "100", "P": "100", "r": "0.0001", "T": 8}
KLINE = {"e": "kline", "E": 1, "s": "BTCUSDT", "k": {"t": 0, "T": 59999, "s": "BTCUSDT", "i": "1m", "o": "1", "c": "1.1",
                                                      "h": "1.2", "l": "0.9", "v": "10", "n": 3, "x": False,
                                                      "q": "11", "V": "5", "Q": "5.5"}}
OTU = {"e": "ORDER_TRADE_UPDATE", "E": 1, "T": 1, "o": {
    "s": "BTCUSDT", "c": "cid", "S": "SELL", "o": "MARKET", "q": "0.1", "ap": "100", "x": "TRADE", "X": "FILLED",
    "i": 7, "l": "0.1", "z": "0.1", "L": "100", "n": "0.004", "T": 1, "t": 9, "m": False, "rp": "0"}}
ACCT = {"e": "ACCOUNT_UPDATE", "E": 1, "T": 1, "a": {"m": "ORDER", "B": [{"a": "USDT", "wb": "1000", "cw": "1000"}],
                                                     "P": [{"s": "BTCUSDT", "pa": "-0.1", "ep": "100", "up": "0"}]}}
REST_ORDER = {"symbol": "BTCUSDT", "clientOrderId": "cid", "orderId": 7, "side": "SELL", "status": "NEW",
              "origQty": "0.1", "executedQty": "0", "avgPrice": "0", "updateTime": 1}
USER_TRADE = {"id": 1, "orderId": 7, "qty": "0.1", "price": "100", "commission": "0.004", "maker": False,
              "realizedPnl": "0", "time": 1}
POSITION = [{"symbol": "BTCUSDT", "positionAmt": "-0.1", "entryPrice": "100", "markPrice": "100",
             "unRealizedProfit": "0"}]


def _fixture(name: str) -> Any:
    return json.loads((FIX / name).read_text())["body"]


# decoder -> a well-formed input it accepts
DECODERS: list[tuple[str, Callable[[Any], Any], Any]] = [
    ("depth", S.parse_depth, DEPTH),
    ("book_ticker", S.parse_book_ticker, BOOK),
    ("agg_trade", S.parse_agg_trade, AGG),
    ("mark_price", S.parse_mark_price, MARK),
    ("mark_price_arr", S.parse_mark_price_arr, [MARK, MARK]),
    ("kline", S.parse_kline, KLINE),
    ("raw_payload", S.parse_raw_payload, KLINE),
    ("stream_payload", lambda d: S.parse_stream_payload("btcusdt@depth5@100ms", d), DEPTH),
    ("exchange_info", S.parse_exchange_info, _fixture("rest_exchange_info.json")),
    ("depth_snapshot", lambda b: S.parse_depth_snapshot("BTCUSDT", b), _fixture("rest_depth.json")),
    ("klines", S.parse_klines, _fixture("rest_klines.json")),
    ("premium_index", S.parse_premium_index, _fixture("rest_premium_index.json")),
    ("taker_ratio", S.parse_taker_ratio, _fixture("rest_taker_long_short_ratio.json")),
    ("dvol", S.parse_dvol, _fixture("rest_dvol.json")),
    ("fng", S.parse_fng, _fixture("rest_fng.json")),
    ("order_trade_update", X.parse_order_trade_update, OTU),
    ("account_update", X.parse_account_update, ACCT),
    ("rest_order", X.parse_rest_order, REST_ORDER),
    ("user_trade", X.parse_user_trade, USER_TRADE),
    ("position_risk", X.parse_position_risk, POSITION),
    ("symbol_rules", X.parse_symbol_rules, _fixture("rest_exchange_info.json")),
]
NAMES = [d[0] for d in DECODERS]


def _paths(v: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys/indices) to a node of ``v``, the root included."""
    out = [prefix]
    if isinstance(v, dict):
        for k, x in v.items():
            out += _paths(x, prefix + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v[:3]):          # the first rows stand for the rest
            out += _paths(x, prefix + (i,))
    return out


@st.composite
def mutated(draw, good: Any) -> Any:
    """``good`` with one node replaced by a hostile value, dropped, or given an extra field."""
    v = copy.deepcopy(good)
    path = draw(st.sampled_from(_paths(v)))
    if not path:
        return draw(json_values)
    parent = v
    for p in path[:-1]:
        parent = parent[p]
    how = draw(st.sampled_from(["replace", "number", "drop", "extra"]))
    if how == "replace":
        parent[path[-1]] = draw(json_values)
    elif how == "number":
        parent[path[-1]] = draw(nasty_numbers | nasty_numbers.map(str))
    elif how == "drop":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(max_size=4))] = draw(json_values)
    else:
        parent.append(draw(json_values))
    return v


def _only_malformed(fn: Callable[[Any], Any], value: Any) -> Any:
    try:
        return fn(value)
    except MalformedMessage:
        return None


def _numbers(v: Any) -> list[float]:
    if isinstance(v, float):
        return [v]
    if isinstance(v, Decimal):
        return [0.0] if v.is_finite() else [math.nan]          # a finite Decimal may exceed the float range
    if isinstance(v, (tuple, list)):
        return [x for y in v for x in _numbers(y)]
    if hasattr(v, "__dataclass_fields__"):
        return [x for f in v.__dataclass_fields__ for x in _numbers(getattr(v, f))]
    if isinstance(v, dict):
        return [x for y in v.values() for x in _numbers(y)]
    return []


@pytest.mark.parametrize("name,fn,good", DECODERS, ids=NAMES)
def test_well_formed_message_decodes(name, fn, good):
    assert fn(copy.deepcopy(good)) is not None


@FUZZ
@given(case=st.sampled_from(DECODERS), data=st.data())
def test_mutated_message_is_decoded_or_malformed(case, data):
    name, fn, good = case
    out = _only_malformed(fn, data.draw(mutated(good)))
    if out is not None and name not in ("account_update",):      # ACCOUNT_UPDATE's mark is NaN by design
        assert all(math.isfinite(x) for x in _numbers(out)), f"{name}: a non-finite number got through"


@FUZZ
@given(case=st.sampled_from(DECODERS), value=json_values | st.binary(max_size=32))
def test_random_value_is_decoded_or_malformed(case, value):
    _only_malformed(case[1], value)


@FUZZ
@given(raw=raw_values | st.sampled_from([json.dumps(OTU), json.dumps(ACCT)]).map(lambda s: s[: len(s) // 2])
       | st.sampled_from([OTU, ACCT]).flatmap(mutated).map(json.dumps))
def test_user_stream_frame_handler_never_raises(raw):
    got: list = []
    us = UserStream(None, "ws://127.0.0.1:1", got.append)     # type: ignore[arg-type]  # (rest unused here)
    us._handle(raw)
    assert all(isinstance(e, (X.OrderUpdate, X.AccountUpdate)) for e in got)
    assert us.events == len(got)


def test_huge_integer_price_is_malformed():
    """Regression (issue 17 fuzzing): a price of 10**400 leaked OverflowError from float()."""
    with pytest.raises(MalformedMessage, match="'p'"):
        S.parse_agg_trade({**AGG, "p": 10**400})
    with pytest.raises(MalformedMessage, match="'L'"):
        X.parse_order_trade_update({**OTU, "o": {**OTU["o"], "L": 10**400}})


def test_nan_tick_size_is_malformed():
    """Regression (issue 17 fuzzing): tickSize "NaN" became a NaN Decimal rule instead of an error."""
    info = _fixture("rest_exchange_info.json")
    info["symbols"][0]["filters"] = [{**f, "tickSize": "NaN"} if f.get("filterType") == "PRICE_FILTER" else f
                                     for f in info["symbols"][0]["filters"]]
    with pytest.raises(MalformedMessage, match="tick"):
        X.parse_symbol_rules(info)


def test_non_object_user_event_is_malformed():
    """Regression (issue 17 fuzzing): a non-object event leaked AttributeError."""
    with pytest.raises(MalformedMessage):
        X.parse_order_trade_update([1, 2])
    with pytest.raises(MalformedMessage):
        X.parse_account_update({"e": "ACCOUNT_UPDATE", "E": 1, "a": {"B": 5}})


# ---------------------------------------------------------------------- Binance's documented variants
_NUM_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_TEXT_KEYS = {"c", "clientOrderId", "s", "symbol", "caid"}      # strings by contract, even when made of digits


def _respell_leaf(draw, key: Any, v: Any) -> Any:
    """``v`` in another spelling Binance uses for the same number (number <-> string), or unchanged."""
    if key in _TEXT_KEYS or not draw(st.booleans()):
        return v
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str) and _NUM_TEXT.fullmatch(v):
        return int(v) if "." not in v and abs(int(v)) < 2 ** 63 else float(v)
    return v


@st.composite
def respelled(draw, good: Any, key: Any = None) -> Any:
    """``good`` with any of its numbers respelled (JSON number <-> string) and unknown fields added."""
    if isinstance(good, dict):
        out = {k: draw(respelled(v, k)) for k, v in good.items()}
        for n in range(draw(st.integers(0, 2))):                # fields a newer venue version adds
            out[f"zz_new_{n}"] = draw(json_values)
        return out
    if isinstance(good, list):
        return [draw(respelled(v, key)) for v in good]
    return _respell_leaf(draw, key, good)


@FUZZ
@given(case=st.sampled_from(DECODERS), data=st.data())
def test_numbers_as_strings_or_numbers_and_unknown_fields_decode_the_same(case, data):
    """Binance writes numbers as JSON strings in some bodies and as numbers in others, and adds fields
    without notice: every decoder gives the same typed value for any such spelling."""
    name, fn, good = case
    variant = data.draw(respelled(copy.deepcopy(good)))
    assert repr(fn(variant)) == repr(fn(copy.deepcopy(good))), name     # repr: ACCOUNT_UPDATE's NaN mark


@FUZZ
@given(kind=st.text(min_size=1, max_size=24).filter(lambda k: k not in ("ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE",
                                                                        "listenKeyExpired")),
       body=st.dictionaries(st.text(max_size=6), st.integers() | st.text(max_size=8) | st.booleans(), max_size=4))
def test_unknown_user_event_kinds_are_ignored_not_malformed(kind, body):
    got: list = []
    us = UserStream(None, "ws://127.0.0.1:1", got.append)     # type: ignore[arg-type]
    us._handle(json.dumps({**body, "e": kind}))
    assert got == [] and us.malformed == 0


@FUZZ
@given(kind=st.text(min_size=1, max_size=24).filter(lambda k: k not in S.EVENT_ROUTES),
       body=st.dictionaries(st.text(max_size=6), json_values, max_size=4))
def test_unknown_market_event_kinds_are_unknown_not_malformed(kind, body):
    with pytest.raises(UnknownMessage):
        S.parse_raw_payload({**body, "e": kind})
