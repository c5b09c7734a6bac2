"""Paper execution: fill the engine's decisions against the latest order book with the bible's costs.

Fills are market orders (taker): a SHORT entry sells at the best bid, its exit buys at the best ask,
a LONG the other way round, so the spread is the slippage (§8.3). When the book for the asset is
missing, stale (older than ``max_book_age_s``), crossed or non-finite, the fill falls back to the
scan price moved against us by the engine's slippage for that event (§7.4: 5 bps stop, 2 bps
otherwise) and is labelled ``scan+slip``. Each side pays the taker fee (§8.1, 0.0005 of notional).

The account is the truth of paper PnL: capital, peak capital, the open position and the day's
realised PnL; its state is a plain dict journaled with every trade (restart restores it exactly).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

TAKER_FEE = 0.0005
STOP_SLIP = 0.0005
OTHER_SLIP = 0.0002
STOP_REASONS = frozenset({"STOP_LOSS"})


@dataclass(frozen=True)
class Book:
    best_bid: float
    best_ask: float
    ts: float

    def sane(self, now: float, max_age_s: float) -> bool:
        b, a = self.best_bid, self.best_ask
        return (math.isfinite(b) and math.isfinite(a) and 0 < b < a and math.isfinite(self.ts)
                and now - self.ts <= max_age_s)


def fill_price(direction: int, opening: bool, book: Book | None, ref_price: float, now: float,
               max_book_age_s: float = 30.0, slip: float = OTHER_SLIP) -> tuple[float, str]:
    """Return (price, source) of a market fill; sell = short open / long close."""
    sell = (direction < 0) == opening
    if book is not None and book.sane(now, max_book_age_s):
        return (book.best_bid if sell else book.best_ask), "book"
    if not (math.isfinite(ref_price) and ref_price > 0):
        raise ValueError(f"no usable price (book={book}, ref={ref_price})")
    return (ref_price * (1 - slip) if sell else ref_price * (1 + slip)), "scan+slip"


@dataclass
class PaperPosition:
    trade_id: int
    symbol: str
    direction: int
    entry_price: float
    notional: float
    entry_fee: float
    entry_ts: float
    entry_scan: int
    source: str


@dataclass
class PaperAccount:
    capital: float
    peak_capital: float
    position: PaperPosition | None = None
    trades: int = 0
    day: str | None = None
    day_start_capital: float = 0.0
    day_trades: int = 0
    fees_paid: float = 0.0
    history: list = field(default_factory=list)

    @classmethod
    def new(cls, capital: float) -> "PaperAccount":
        return cls(capital=capital, peak_capital=capital, day_start_capital=capital)

    def roll_day(self, day: str) -> None:
        self.day, self.day_start_capital, self.day_trades = day, self.capital, 0

    def open(self, trade_id: int, symbol: str, direction: int, notional: float, book: Book | None,
             ref_price: float, now: float, scan: int, max_book_age_s: float = 30.0) -> dict:
        """Open the paper position; return the fill record."""
        if self.position is not None:
            raise RuntimeError(f"paper position {self.position.trade_id} already open; refusing a second entry")
        if not (math.isfinite(notional) and notional > 0):
            raise ValueError(f"bad notional {notional!r}")
        price, src = fill_price(direction, True, book, ref_price, now, max_book_age_s, OTHER_SLIP)
        fee = TAKER_FEE * notional
        self.capital -= fee
        self.fees_paid += fee
        self.position = PaperPosition(trade_id, symbol, direction, price, notional, fee, now, scan, src)
        return {"side": "SELL" if direction < 0 else "BUY", "trade_id": trade_id, "symbol": symbol, "price": price,
                "notional": notional, "fee": fee, "source": src, "ts": now, "scan_number": scan}

    def close(self, reason: str, book: Book | None, ref_price: float, now: float, scan: int,
              max_book_age_s: float = 30.0) -> dict:
        """Close the open paper position; return the fill record with realised PnL."""
        pos = self.position
        if pos is None:
            raise RuntimeError("no open paper position to close")
        slip = STOP_SLIP if reason in STOP_REASONS else OTHER_SLIP
        price, src = fill_price(pos.direction, False, book, ref_price, now, max_book_age_s, slip)
        gross = pos.direction * (price - pos.entry_price) / pos.entry_price * pos.notional
        fee = TAKER_FEE * pos.notional
        self.capital += gross - fee
        self.fees_paid += fee
        self.peak_capital = max(self.peak_capital, self.capital)
        self.trades += 1
        self.day_trades += 1
        rec = {"side": "BUY" if pos.direction < 0 else "SELL", "trade_id": pos.trade_id, "symbol": pos.symbol,
               "price": price, "entry_price": pos.entry_price, "notional": pos.notional, "fee": fee, "gross": gross,
               "net": gross - fee - pos.entry_fee, "reason": reason, "source": src, "ts": now, "scan_number": scan,
               "capital_after": self.capital}
        self.history = (self.history + [rec])[-50:]
        self.position = None
        return rec

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PaperAccount":
        pos = d.get("position")
        return cls(capital=float(d["capital"]), peak_capital=float(d["peak_capital"]),
                   position=None if pos is None else PaperPosition(**pos), trades=int(d.get("trades", 0)),
                   day=d.get("day"), day_start_capital=float(d.get("day_start_capital", d["capital"])),
                   day_trades=int(d.get("day_trades", 0)), fees_paid=float(d.get("fees_paid", 0.0)),
                   history=list(d.get("history", [])))
