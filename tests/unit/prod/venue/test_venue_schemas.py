"""Unit tests of prod.venue parsers and of the simulator's message shapes against documented fixtures."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pytest

from prod.venue import schemas as S
from prod.venue.errors import MalformedMessage, UnknownMessage
from standins.venue_sim import messages as M
from standins.venue_sim.model import MarketModel
from standins.venue_sim.universe import build_universe
from tests.helpers import FIXTURES, SHARED_REAL

FIX = FIXTURES / "venue"
# shared/ sits beside the repository in CI and on developer machines; a user's clone has none (tests skip)
REAL = SHARED_REAL / "binance_futures_ws"


def fixture(name: str) -> dict:
    return json.loads((FIX / name).read_text())


def shape(x):
    """Structural shape of a JSON value: key sets and leaf types (decimal strings stay 'str')."""
    if isinstance(x, dict):
        return {k: shape(v) for k, v in x.items() if not k.startswith("_")}
    if isinstance(x, list):
        return [shape(x[0])] if x else []
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int):
        return "int"
    if isinstance(x, float):
        return "number"
    if x is None:
        return "null"
    return "str"


def numeric_shape(x):
    s = shape(x)
    return json.loads(json.dumps(s).replace('"int"', '"number"'))


@pytest.fixture(scope="module")
def model():
    m = MarketModel(build_universe(42), 42, 1_700_000_000_000)
    for _ in range(620):        # past a minute boundary so a closed kline exists
        m.step()
    return m


def test_sim_stream_messages_have_the_documented_shapes(model):
    m = model
    nft = m.next_funding_ms()
    mark, index = m.mark_price(), m.index_price()
    rendered = {
        "ws_depth5_500ms.json": M.depth_partial(m, 0, 1, 0),
        "ws_book_ticker.json": M.book_ticker(m, 0),
        "ws_agg_trade.json": M.agg_trade(m, 0)[1],
        "ws_mark_price_1s.json": M.mark_price(m, 0, mark, index, nft),
        "ws_mark_price_arr_1s.json": [M.mark_price(m, i, mark, index, nft) for i in range(3)],
        "ws_kline_1m.json": M.kline(m, 0, False),
    }
    for name, msg in rendered.items():
        doc = fixture(name)["data"]
        assert shape(orjson.loads(orjson.dumps(msg))) == shape(doc), name
        assert list(orjson.loads(orjson.dumps(msg)) if isinstance(msg, dict) else msg[0]) is not None


def test_sim_rest_bodies_have_the_documented_shapes(model):
    m = model
    assert shape(M.depth_snapshot(m, 0, 5)) == shape(fixture("rest_depth.json")["body"])
    assert shape(M.premium_index(m, 0)) == shape(fixture("rest_premium_index.json")["body"])
    info = orjson.loads(orjson.dumps(M.exchange_info(m)))
    doc = fixture("rest_exchange_info.json")["body"]
    assert set(info) == set(doc)
    assert set(info["symbols"][0]) == set(doc["symbols"][0])
    pf = [f for f in info["symbols"][0]["filters"] if f["filterType"] == "PRICE_FILTER"][0]
    pf_doc = [f for f in doc["symbols"][0]["filters"] if f["filterType"] == "PRICE_FILTER"][0]
    assert shape(pf) == shape(pf_doc)


@pytest.mark.parametrize("name,parser", [
    ("ws_depth5_500ms.json", S.parse_depth), ("ws_book_ticker.json", S.parse_book_ticker),
    ("ws_agg_trade.json", S.parse_agg_trade), ("ws_mark_price_1s.json", S.parse_mark_price),
    ("ws_mark_price_arr_1s.json", S.parse_mark_price_arr), ("ws_kline_1m.json", S.parse_kline)])
def test_documented_stream_payloads_parse_into_typed_events(name, parser):
    fx = fixture(name)
    ev = parser(fx["data"])
    assert type(ev) is type(S.parse_stream_payload(fx["stream"], fx["data"]))
    with pytest.raises(AttributeError):
        ev.event_time_ms = 0          # frozen


def test_documented_rest_bodies_parse():
    assert S.parse_depth_snapshot("BTCUSDT", fixture("rest_depth.json")["body"]).last_update_id == 1027024
    k = S.parse_klines(fixture("rest_klines.json")["body"])[0]
    assert k.trades == 308 and k.high == 0.8
    assert S.parse_premium_index(fixture("rest_premium_index.json")["body"])[0].last_funding_rate == 0.00038246
    assert S.parse_taker_ratio(fixture("rest_taker_long_short_ratio.json")["body"])[0].buy_sell_ratio == 1.5586
    assert S.parse_dvol(fixture("rest_dvol.json")["body"])[0].timestamp_ms == 1598019300000
    assert [f.value for f in S.parse_fng(fixture("rest_fng.json")["body"])] == [40, 47]
    info = S.parse_exchange_info(fixture("rest_exchange_info.json")["body"])
    assert info[0].symbol == "BTCUSDT" and info[0].tick_size == 0.01 and info[0].step_size == 0.001


BAD = [
    ("bookTicker", {"e": "bookTicker", "u": 1, "s": "BTCUSDT", "b": "NaN", "B": "1", "a": "2", "A": "1", "T": 1, "E": 1}),
    ("bookTicker", {"e": "bookTicker", "u": 1, "s": "BTCUSDT", "b": "2", "B": "1", "a": "-5", "A": "1", "T": 1, "E": 1}),
    ("bookTicker", {"e": "bookTicker", "u": "1.5", "s": "BTCUSDT", "b": "1", "B": "1", "a": "2", "A": "1", "T": 1, "E": 1}),
    ("bookTicker", {"e": "bookTicker", "u": True, "s": "BTCUSDT", "b": "1", "B": "1", "a": "2", "A": "1", "T": 1, "E": 1}),
    ("depth5@500ms", {"e": "depthUpdate", "E": "yesterday", "s": 42, "b": [["1"]], "a": None}),
    ("depth5@500ms", {"e": "depthUpdate", "E": 1, "T": 1, "s": "X", "U": 1, "u": 2, "pu": 0, "b": [], "a": [["1", "1"]]}),
    ("aggTrade", {"e": "aggTrade", "E": 1, "a": 1, "s": "X", "p": "1", "q": "1", "f": 1, "l": 1, "T": 1, "m": "no"}),
    ("kline_1m", {"e": "kline", "E": 1, "s": "X", "k": {"t": 1, "T": 2, "s": "X", "i": "1m", "f": 1, "L": 1, "o": "2",
                                                       "c": "2", "h": "1", "l": "3", "v": "1", "n": 1, "x": False,
                                                       "q": "1", "V": "1", "Q": "1", "B": "0"}}),
    ("markPrice@1s", [1, 2, 3]),
    ("unknownKind", {"e": "x"}),
]


@pytest.mark.parametrize("kind,payload", BAD)
def test_malformed_payloads_are_rejected_with_a_reason(kind, payload):
    with pytest.raises(MalformedMessage) as ei:
        S.parse_stream_payload(f"btcusdt@{kind}", payload)
    assert str(ei.value)


def test_taker_ratio_with_a_string_timestamp_decodes():
    """Regression (issue 29): Binance documents ``takerlongshortRatio`` rows with ``"timestamp": "1583139900000"``;
    the decoder refused the string."""
    body = [{"buySellRatio": "1.5586", "buyVol": "387.3300", "sellVol": "248.5030", "timestamp": "1585614900000"},
            {"buySellRatio": 1.1, "buyVol": 2, "sellVol": "1.8", "timestamp": 1585615200000}]
    rows = S.parse_taker_ratio(body)
    assert [r.timestamp_ms for r in rows] == [1585614900000, 1585615200000]
    assert rows[0].buy_sell_ratio == 1.5586 and rows[1].buy_vol == 2.0


@pytest.mark.parametrize("v, want", [(7, 7), ("7", 7), ("-12", -12), (7.0, 7), ("9223372036854775807", 2**63 - 1),
                                     (True, None), (7.5, None), ("7.0", None), ("0x7", None), ("", None),
                                     (float("nan"), None), ("9223372036854775808", None), (None, None), ([7], None)])
def test_integers_are_accepted_as_numbers_or_digit_strings(v, want):
    assert S.as_int(v) == want


def test_unknown_event_kinds_and_streams_are_unknown_not_malformed():
    with pytest.raises(UnknownMessage):
        S.parse_raw_payload({"e": "contractInfo", "E": 1, "s": "BTCUSDT"})
    with pytest.raises(UnknownMessage):
        S.parse_stream_payload("btcusdt@forceOrder", {"e": "forceOrder"})
    with pytest.raises(MalformedMessage) as e:
        S.parse_raw_payload({"e": 5})
    assert not isinstance(e.value, UnknownMessage)


def test_unknown_fields_are_ignored():
    d = fixture("ws_depth5_500ms.json")["data"]
    assert S.parse_depth({**d, "newField": {"x": [1]}, "Z": "?"}) == S.parse_depth(d)


def test_crossed_book_is_rejected_as_crossed():
    d = fixture("ws_depth5_500ms.json")["data"]
    bad = dict(d, b=d["a"], a=d["b"])
    with pytest.raises(S.CrossedBook):
        S.parse_depth(bad)


def _real_lines(path: Path, limit: int):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        for k, line in enumerate(fh):
            if k >= limit:
                break
            yield line


@pytest.mark.skipif(not REAL.exists(), reason="shared real recordings absent (user clone)")
def test_recorded_real_venue_frames_parse_into_events():
    counts: dict[str, int] = {}
    for line in _real_lines(REAL / "cryptofeed" / "BINANCE_FUTURES.ws.1.0", 3000):
        _, sep, raw = line.partition(": ")
        if not sep or not raw.startswith('{"stream"'):
            continue
        env = json.loads(raw)
        if "@depth@" in env["stream"]:   # diff-depth is not a partial book; the sim does not serve it
            continue
        ev = S.parse_stream_payload(env["stream"], env["data"])
        counts[type(ev).__name__] = counts.get(type(ev).__name__, 0) + 1
    assert {"BookTickerEvent", "AggTradeEvent", "KlineEvent"} <= set(counts)
    snaps = 0
    for line in _real_lines(REAL / "cryptofeed" / "BINANCE_FUTURES.http.0.0", 50):
        if "/fapi/v1/depth?symbol=" in line:
            url, _, rest = line.partition(" -> ")
            snap = S.parse_depth_snapshot(url.split("symbol=")[1].split("&")[0], json.loads(rest.split(": ", 1)[1]))
            assert snap.bids[0][0] < snap.asks[0][0] and len(snap.bids) > 5
            snaps += 1
    assert snaps > 0
    n = 0
    for line in _real_lines(REAL / "hftbacktest" / "btcusdt_20230404.dat.gz", 20000):
        if "markPrice@1s" in line:
            ev = S.parse_stream_payload("btcusdt@markPrice@1s", json.loads(line.split(" ", 1)[1])["data"])
            assert ev.symbol == "BTCUSDT" and ev.mark_price > 0
            n += 1
    assert n > 0


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=5),
                     max_leaves=20)
_suffixes = st.sampled_from(sorted(S.STREAM_ROUTES))


def _mutated(name: str):
    base = fixture(name)["data"]
    if not isinstance(base, dict):
        return st.just(base)
    return st.dictionaries(st.sampled_from(sorted(base)), _json, max_size=4).map(lambda d: {**base, **d})


@settings(max_examples=300, deadline=None)
@given(suffix=_suffixes, payload=_json | _mutated("ws_depth5_500ms.json") | _mutated("ws_book_ticker.json")
       | _mutated("ws_kline_1m.json") | _mutated("ws_agg_trade.json"))
def test_any_payload_either_parses_or_raises_malformed_never_anything_else(suffix, payload):
    stream = suffix if suffix.startswith("!") else f"btcusdt@{suffix}"
    try:
        S.parse_raw_payload(payload)
    except MalformedMessage:
        pass
    try:
        ev = S.parse_stream_payload(stream, payload)
    except MalformedMessage:
        return
    for v in getattr(ev, "__slots__", ()):
        x = getattr(ev, v)
        if isinstance(x, float):
            assert x == x and abs(x) != float("inf")     # no NaN/inf reaches an event


def test_stream_client_counts_unknown_kinds_apart_from_malformed_frames():
    from prod.venue.stream import VenueStreamClient
    got: list = []
    c = VenueStreamClient("ws://127.0.0.1:1", ["btcusdt@bookTicker"], got.append)
    c._handle('{"e": "contractInfo", "E": 1, "s": "BTCUSDT", "ps": "BTCUSDT"}', 0)
    c._handle('{"stream": "btcusdt@forceOrder", "data": {"e": "forceOrder"}}', 0)
    c._handle('{"e": "bookTicker", "u": "x"}', 0)
    assert (c.stats.unknown, c.stats.malformed, got) == (2, 1, [])
    c._handle('{"e": "bookTicker", "u": "7", "s": "BTCUSDT", "b": 1, "B": "1", "a": "2", "A": 1, "T": "1", "E": 1,'
              ' "newField": true}', 0)
    assert len(got) == 1 and got[0].update_id == 7 and c.stats.malformed == 1
