"""Market-data clients for Binance USDT-M (real venue or standins.venue_sim): streams, REST, typed events.

Public API::

    from prod.venue import VenueStreamClient, VenueRestClient, DepthEvent, BookTickerEvent, ...

See :mod:`prod.venue.stream`, :mod:`prod.venue.rest` and :mod:`prod.venue.schemas`.
"""
from prod.venue.errors import (MalformedMessage, RateLimitedError, TransientVenueError, UnknownMessage, VenueError,
                               VenueRequestError, VenueUnreachableError)
from prod.venue.rest import VenueRestClient
from prod.venue.schemas import (AggTradeEvent, BookTickerEvent, CrossedBook, DepthEvent, DepthSnapshot,
                                DvolCandle, FearGreed, Kline, KlineEvent, MarkPriceArrayEvent, MarkPriceEvent,
                                PremiumIndex, StreamEvent, SymbolInfo, TakerRatio, parse_raw_payload,
                                parse_stream_payload)
from prod.venue.stream import StreamStats, VenueStreamClient


def depth_stream(symbol: str, speed_ms: int = 500, levels: int = 5) -> str:
    """Return the partial-depth stream name of ``symbol``, e.g. ``btcusdt@depth5@500ms``."""
    return f"{symbol.lower()}@depth{levels}@{speed_ms}ms"


def stream_name(symbol: str, kind: str) -> str:
    """Return ``<symbol lower>@<kind>``, e.g. ``stream_name("BTCUSDT", "bookTicker")``."""
    return f"{symbol.lower()}@{kind}"


__all__ = [
    "VenueStreamClient", "VenueRestClient", "StreamStats", "StreamEvent", "DepthEvent", "BookTickerEvent",
    "AggTradeEvent", "MarkPriceEvent", "MarkPriceArrayEvent", "KlineEvent", "SymbolInfo", "DepthSnapshot",
    "Kline", "PremiumIndex", "TakerRatio", "DvolCandle", "FearGreed", "VenueError", "TransientVenueError",
    "VenueUnreachableError", "RateLimitedError", "VenueRequestError", "MalformedMessage", "CrossedBook",
    "UnknownMessage", "parse_stream_payload", "parse_raw_payload", "depth_stream", "stream_name",
]
