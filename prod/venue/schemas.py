"""Typed, frozen venue messages and their parsers (Binance USDT-M wire format -> dataclasses).

Raw dicts never leave this module: every stream payload and REST body is validated here (finite,
positive prices, non-negative sizes, ordered and uncrossed books) and turned into a frozen
dataclass, or rejected with :class:`MalformedMessage` naming the problem. Websocket payloads are
routed by stream suffix through :data:`STREAM_ROUTES` (built once), raw ``/ws`` payloads by their
``"e"`` event type through :data:`EVENT_ROUTES`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Union

from prod.venue.errors import MalformedMessage, UnknownMessage

Level = tuple[float, float]
_INT_TEXT = re.compile(r"-?[0-9]{1,19}")


def _f(d: dict, k: str, *, positive: bool = False, nonneg: bool = False) -> float:
    try:
        v = d[k]
    except (KeyError, TypeError):
        raise MalformedMessage(f"missing field {k!r}") from None
    if not isinstance(v, (str, int, float)) or isinstance(v, bool):
        raise MalformedMessage(f"field {k!r} has type {type(v).__name__}")
    try:
        x = float(v)
    except (ValueError, OverflowError):   # OverflowError: an int beyond the float range (fuzzing)
        raise MalformedMessage(f"field {k!r}={str(v)[:40]!r} is not a number") from None
    if not math.isfinite(x):
        raise MalformedMessage(f"field {k!r}={v!r} is not finite")
    if positive and x <= 0:
        raise MalformedMessage(f"field {k!r}={v!r} must be > 0")
    if nonneg and x < 0:
        raise MalformedMessage(f"field {k!r}={v!r} must be >= 0")
    return x


def as_int(v: Any) -> int | None:
    """``v`` as an int when it is one in any of Binance's documented spellings, else None.

    Binance sends integers as JSON numbers and, in some bodies (``takerlongshortRatio``'s
    ``timestamp``), as strings of digits; an integral float (``1.0``) is accepted too. Booleans,
    fractions, non-finite values and text that is not a plain 64-bit integer are refused.
    """
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and _INT_TEXT.fullmatch(v):
        n = int(v)
        return n if -(2 ** 63) <= n < 2 ** 63 else None
    if isinstance(v, float) and math.isfinite(v) and v.is_integer() and abs(v) < 2 ** 63:
        return int(v)
    return None


def _i(d: dict, k: str) -> int:
    try:
        v = d[k]
    except (KeyError, TypeError):
        raise MalformedMessage(f"missing field {k!r}") from None
    n = as_int(v)
    if n is None:
        raise MalformedMessage(f"field {k!r}={str(v)[:40]!r} is not an integer")
    return n


def _opt_i(d: dict, k: str, default: int) -> int:
    return default if d.get(k) is None else _i(d, k)


def _s(d: dict, k: str) -> str:
    try:
        v = d[k]
    except (KeyError, TypeError):
        raise MalformedMessage(f"missing field {k!r}") from None
    if not isinstance(v, str) or not v:
        raise MalformedMessage(f"field {k!r}={v!r} is not a non-empty string")
    return v


def _levels(v: Any, name: str) -> tuple[Level, ...]:
    if not isinstance(v, list):
        raise MalformedMessage(f"{name} is not a list")
    out = []
    for lv in v:
        if not isinstance(lv, list) or len(lv) < 2:
            raise MalformedMessage(f"{name} level {lv!r} is not [price, qty]")
        p = _f({"p": lv[0]}, "p", positive=True)
        q = _f({"q": lv[1]}, "q", nonneg=True)
        out.append((p, q))
    return tuple(out)


def _dict(data: Any) -> dict:
    if not isinstance(data, dict):
        raise MalformedMessage(f"payload is {type(data).__name__}, expected an object")
    return data


# ---------------------------------------------------------------------------- stream events
@dataclass(frozen=True, slots=True)
class DepthEvent:
    """Partial book depth (``<sym>@depth5@500ms`` / ``@100ms``): top levels, best first."""

    symbol: str
    event_time_ms: int
    transaction_time_ms: int
    first_update_id: int
    final_update_id: int
    prev_final_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]

    @property
    def best_bid(self) -> float:
        return self.bids[0][0]

    @property
    def best_ask(self) -> float:
        return self.asks[0][0]


@dataclass(frozen=True, slots=True)
class BookTickerEvent:
    """Best bid/ask (``<sym>@bookTicker``)."""

    symbol: str
    update_id: int
    bid_price: float
    bid_qty: float
    ask_price: float
    ask_qty: float
    event_time_ms: int
    transaction_time_ms: int


@dataclass(frozen=True, slots=True)
class AggTradeEvent:
    """Aggregated trade (``<sym>@aggTrade``); ``buyer_is_maker`` True means the taker sold."""

    symbol: str
    agg_id: int
    price: float
    qty: float
    first_trade_id: int
    last_trade_id: int
    trade_time_ms: int
    event_time_ms: int
    buyer_is_maker: bool


@dataclass(frozen=True, slots=True)
class MarkPriceEvent:
    """Mark price and funding (``<sym>@markPrice@1s``, elements of ``!markPrice@arr@1s``)."""

    symbol: str
    mark_price: float
    index_price: float
    est_settle_price: float
    funding_rate: float
    next_funding_time_ms: int
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class KlineEvent:
    """Candle update (``<sym>@kline_<interval>``); ``closed`` marks the final update of the candle."""

    symbol: str
    interval: str
    open_time_ms: int
    close_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    taker_buy_volume: float
    taker_buy_quote_volume: float
    trades: int
    closed: bool
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class MarkPriceArrayEvent:
    """All symbols' mark prices (``!markPrice@arr@1s``)."""

    items: tuple[MarkPriceEvent, ...]
    event_time_ms: int


StreamEvent = Union[DepthEvent, BookTickerEvent, AggTradeEvent, MarkPriceEvent, KlineEvent, MarkPriceArrayEvent]


class CrossedBook(MalformedMessage):
    """A book whose best ask is at or below its best bid."""


def parse_depth(data: Any) -> DepthEvent:
    d = _dict(data)
    if d.get("e") != "depthUpdate":
        raise MalformedMessage(f"event type {d.get('e')!r}, expected 'depthUpdate'")
    bids, asks = _levels(d.get("b"), "bids"), _levels(d.get("a"), "asks")
    if not bids or not asks:
        raise MalformedMessage("empty side in partial depth")
    bids = tuple(sorted(bids, key=lambda lv: -lv[0]))   # best first, whatever order the venue used
    asks = tuple(sorted(asks, key=lambda lv: lv[0]))
    if asks[0][0] <= bids[0][0]:
        raise CrossedBook(f"crossed book {d.get('s')}: bid {bids[0][0]} >= ask {asks[0][0]}")
    return DepthEvent(_s(d, "s"), _i(d, "E"), _i(d, "T"), _i(d, "U"), _i(d, "u"), _i(d, "pu"), bids, asks)


def parse_book_ticker(data: Any) -> BookTickerEvent:
    d = _dict(data)
    bp, ap = _f(d, "b", positive=True), _f(d, "a", positive=True)
    if ap <= bp:
        raise CrossedBook(f"crossed bookTicker {d.get('s')}: bid {bp} >= ask {ap}")
    return BookTickerEvent(_s(d, "s"), _i(d, "u"), bp, _f(d, "B", nonneg=True), ap, _f(d, "A", nonneg=True),
                           _i(d, "E"), _i(d, "T"))


def parse_agg_trade(data: Any) -> AggTradeEvent:
    d = _dict(data)
    m = d.get("m")
    if not isinstance(m, bool):
        raise MalformedMessage(f"field 'm'={m!r} is not a boolean")
    return AggTradeEvent(_s(d, "s"), _i(d, "a"), _f(d, "p", positive=True), _f(d, "q", positive=True),
                         _i(d, "f"), _i(d, "l"), _i(d, "T"), _i(d, "E"), m)


def parse_mark_price(data: Any) -> MarkPriceEvent:
    d = _dict(data)
    if d.get("e") != "markPriceUpdate":
        raise MalformedMessage(f"event type {d.get('e')!r}, expected 'markPriceUpdate'")
    return MarkPriceEvent(_s(d, "s"), _f(d, "p", positive=True), _f(d, "i", positive=True),
                          _f(d, "P", nonneg=True), _f(d, "r"), _i(d, "T"), _i(d, "E"))


def parse_mark_price_arr(data: Any) -> MarkPriceArrayEvent:
    if not isinstance(data, list) or not data:
        raise MalformedMessage("mark price array is not a non-empty list")
    items = tuple(parse_mark_price(x) for x in data)
    return MarkPriceArrayEvent(items, max(x.event_time_ms for x in items))


def parse_kline(data: Any) -> KlineEvent:
    d = _dict(data)
    k = _dict(d.get("k"))
    x = k.get("x")
    if not isinstance(x, bool):
        raise MalformedMessage(f"field 'k.x'={x!r} is not a boolean")
    o, h, lo, c = (_f(k, f, positive=True) for f in ("o", "h", "l", "c"))
    if h < lo:   # (the docs' own example has o/c outside [l, h], so only h >= l is enforced)
        raise MalformedMessage(f"inconsistent candle o={o} h={h} l={lo} c={c}")
    return KlineEvent(_s(d, "s"), _s(k, "i"), _i(k, "t"), _i(k, "T"), o, h, lo, c, _f(k, "v", nonneg=True),
                      _f(k, "q", nonneg=True), _f(k, "V", nonneg=True), _f(k, "Q", nonneg=True), _i(k, "n"), x,
                      _i(d, "E"))


Parser = Callable[[Any], StreamEvent]

# stream suffix (text after "<symbol>@", or the whole name for "!" streams) -> parser. Built once.
STREAM_ROUTES: dict[str, Parser] = {
    **{f"depth{n}{sp}": parse_depth for n in (5, 10, 20) for sp in ("", "@100ms", "@250ms", "@500ms")},
    "bookTicker": parse_book_ticker,
    "aggTrade": parse_agg_trade,
    "markPrice": parse_mark_price,
    "markPrice@1s": parse_mark_price,
    **{f"kline_{iv}": parse_kline for iv in ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "1d")},
    "!markPrice@arr": parse_mark_price_arr,
    "!markPrice@arr@1s": parse_mark_price_arr,
}
# raw /ws payloads (no envelope) -> parser by event type
EVENT_ROUTES: dict[str, Parser] = {"depthUpdate": parse_depth, "bookTicker": parse_book_ticker,
                                   "aggTrade": parse_agg_trade, "markPriceUpdate": parse_mark_price,
                                   "kline": parse_kline}


def stream_suffix(stream: str) -> str:
    """Return the routing key of a stream name: ``btcusdt@depth5@500ms`` -> ``depth5@500ms``."""
    return stream if stream.startswith("!") else stream.partition("@")[2]


def parse_stream_payload(stream: str, data: Any) -> StreamEvent:
    """Parse the ``data`` of a combined-stream envelope for ``stream`` into a typed event."""
    parser = STREAM_ROUTES.get(stream_suffix(stream))
    if parser is None:
        raise UnknownMessage(f"stream {stream!r} not used")
    return parser(data)


def parse_raw_payload(data: Any) -> StreamEvent:
    """Parse a raw (``/ws``) payload by its event type."""
    if isinstance(data, list):
        return parse_mark_price_arr(data)
    e = _dict(data).get("e")
    parser = EVENT_ROUTES.get(e) if isinstance(e, str) else None
    if parser is None:
        if isinstance(e, str) and e:        # a kind we do not use (e.g. a new venue event): ignored, counted
            raise UnknownMessage(f"event type {e!r} not used")
        raise MalformedMessage(f"event type {e!r} is not a non-empty string")
    return parser(data)


# ---------------------------------------------------------------------------- REST bodies
@dataclass(frozen=True, slots=True)
class SymbolInfo:
    """One contract from ``/fapi/v1/exchangeInfo``."""

    symbol: str
    status: str
    contract_type: str
    base_asset: str
    quote_asset: str
    tick_size: float
    step_size: float
    min_qty: float
    price_precision: int
    quantity_precision: int


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    symbol: str
    last_update_id: int
    event_time_ms: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class Kline:
    open_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    close_time_ms: int
    quote_volume: float
    trades: int
    taker_buy_volume: float
    taker_buy_quote_volume: float


@dataclass(frozen=True, slots=True)
class PremiumIndex:
    symbol: str
    mark_price: float
    index_price: float
    last_funding_rate: float
    next_funding_time_ms: int
    time_ms: int


@dataclass(frozen=True, slots=True)
class TakerRatio:
    buy_sell_ratio: float
    buy_vol: float
    sell_vol: float
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class DvolCandle:
    timestamp_ms: int
    open: float
    high: float
    low: float
    close: float


@dataclass(frozen=True, slots=True)
class FearGreed:
    value: int
    classification: str
    timestamp_s: int


def parse_exchange_info(body: Any) -> tuple[SymbolInfo, ...]:
    d = _dict(body)
    syms = d.get("symbols")
    if not isinstance(syms, list):
        raise MalformedMessage("exchangeInfo without a 'symbols' list")
    out = []
    for s in syms:
        s = _dict(s)
        raw_filters = s.get("filters", [])
        if not isinstance(raw_filters, list):
            raise MalformedMessage(f"symbol {s.get('symbol')!r}: 'filters' is not a list")
        filters = {f["filterType"]: f for f in raw_filters if isinstance(f, dict) and isinstance(f.get("filterType"), str)}
        pf, lf = filters.get("PRICE_FILTER"), filters.get("LOT_SIZE")
        if pf is None or lf is None:
            raise MalformedMessage(f"symbol {s.get('symbol')!r} lacks PRICE_FILTER/LOT_SIZE")
        out.append(SymbolInfo(_s(s, "symbol"), _s(s, "status"), str(s.get("contractType", "")),
                              str(s.get("baseAsset", "")), str(s.get("quoteAsset", "")),
                              _f(pf, "tickSize", positive=True), _f(lf, "stepSize", positive=True),
                              _f(lf, "minQty", nonneg=True), _opt_i(s, "pricePrecision", 8),
                              _opt_i(s, "quantityPrecision", 8)))
    return tuple(out)


def parse_depth_snapshot(symbol: str, body: Any) -> DepthSnapshot:
    d = _dict(body)
    bids, asks = _levels(d.get("bids"), "bids"), _levels(d.get("asks"), "asks")
    bids = tuple(sorted(bids, key=lambda lv: -lv[0]))
    asks = tuple(sorted(asks, key=lambda lv: lv[0]))
    if bids and asks and asks[0][0] <= bids[0][0]:
        raise CrossedBook(f"crossed depth snapshot {symbol}: bid {bids[0][0]} >= ask {asks[0][0]}")
    return DepthSnapshot(symbol, _i(d, "lastUpdateId"), _opt_i(d, "E", 0), bids, asks)


def parse_klines(body: Any) -> tuple[Kline, ...]:
    if not isinstance(body, list):
        raise MalformedMessage("klines body is not a list")
    out = []
    for r in body:
        if not isinstance(r, list) or len(r) < 11:
            raise MalformedMessage(f"kline row {r!r} has fewer than 11 fields")
        row = dict(enumerate(r))
        out.append(Kline(_i(row, 0), _f(row, 1, positive=True), _f(row, 2, positive=True),  # type: ignore[arg-type]
                         _f(row, 3, positive=True), _f(row, 4, positive=True), _f(row, 5, nonneg=True),  # type: ignore[arg-type]
                         _i(row, 6), _f(row, 7, nonneg=True), _i(row, 8), _f(row, 9, nonneg=True),  # type: ignore[arg-type]
                         _f(row, 10, nonneg=True)))  # type: ignore[arg-type]
    return tuple(out)


def parse_premium_index(body: Any) -> tuple[PremiumIndex, ...]:
    items = body if isinstance(body, list) else [body]
    out = []
    for x in items:
        x = _dict(x)
        out.append(PremiumIndex(_s(x, "symbol"), _f(x, "markPrice", positive=True),
                                _f(x, "indexPrice", nonneg=True), _f(x, "lastFundingRate"),
                                _i(x, "nextFundingTime"), _i(x, "time")))
    return tuple(out)


def parse_taker_ratio(body: Any) -> tuple[TakerRatio, ...]:
    if not isinstance(body, list):
        raise MalformedMessage("takerlongshortRatio body is not a list")
    return tuple(TakerRatio(_f(x, "buySellRatio", nonneg=True), _f(x, "buyVol", nonneg=True),
                            _f(x, "sellVol", nonneg=True), _i(x, "timestamp")) for x in map(_dict, body))


def parse_dvol(body: Any) -> tuple[DvolCandle, ...]:
    d = _dict(body)
    res = _dict(d.get("result"))
    rows = res.get("data")
    if not isinstance(rows, list):
        raise MalformedMessage("DVOL result without a data list")
    out = []
    for r in rows:
        if not isinstance(r, list) or len(r) < 5:
            raise MalformedMessage(f"DVOL row {r!r} is not [ts, o, h, l, c]")
        row = dict(enumerate(r))
        out.append(DvolCandle(_i(row, 0), *(_f(row, k, positive=True) for k in (1, 2, 3, 4))))  # type: ignore[arg-type]
    return tuple(out)


def parse_fng(body: Any) -> tuple[FearGreed, ...]:
    d = _dict(body)
    rows = d.get("data")
    if not isinstance(rows, list):
        raise MalformedMessage("fear & greed body without a data list")
    out = []
    for x in map(_dict, rows):
        v = _f(x, "value", nonneg=True)
        if v > 100:
            raise MalformedMessage(f"fear & greed value {v} > 100")
        out.append(FearGreed(int(v), str(x.get("value_classification", "")), int(_f(x, "timestamp"))))
    return tuple(out)
