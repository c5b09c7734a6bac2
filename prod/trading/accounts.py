"""Accounts: the protocol the core fills on, typed Position and Fill, one ledger, and the paper account.

Every account (paper here, venue in :mod:`prod.trading.venue_account`, the recorded fills of a replay in
:mod:`prod.trading.replay`) books entries and exits through the one :class:`Ledger`; fees and slippage come
from the strategy's :class:`~prod.alpha.params.EngineParams` (:class:`Costs`). Paper fills are taker market
orders against the latest book (the spread is the slippage), or the scan price moved by the engine's
slippage for that exit when the book is missing, stale or crossed (``scan+slip``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Protocol, TypedDict

from prod.alpha.params import EngineParams

STOP_REASONS = frozenset({"STOP_LOSS"})


@dataclass(frozen=True)
class Costs:
    """The taker fee and the slippages a fill uses: the strategy's EngineParams, nothing else."""

    taker_fee: float
    stop_slippage: float
    other_slippage: float

    @classmethod
    def of(cls, params: EngineParams) -> "Costs":
        return cls(float(params.taker_fee), float(params.stop_slippage), float(params.other_slippage))

    def exit_slippage(self, reason: str) -> float:
        return self.stop_slippage if reason in STOP_REASONS else self.other_slippage


DEFAULT_COSTS = Costs.of(EngineParams())


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
               max_book_age_s: float = 30.0, slip: float = DEFAULT_COSTS.other_slippage) -> tuple[float, str]:
    """Return (price, source) of a market fill; sell = short open / long close."""
    sell = (direction < 0) == opening
    if book is not None and book.sane(now, max_book_age_s):
        return (book.best_bid if sell else book.best_ask), "book"
    if not (math.isfinite(ref_price) and ref_price > 0):
        raise ValueError(f"no usable price (book={book}, ref={ref_price})")
    return (ref_price * (1 - slip) if sell else ref_price * (1 + slip)), "scan+slip"


@dataclass
class Position:
    """The account's open position (one at a time)."""

    trade_id: int
    symbol: str
    direction: int
    entry_price: float
    notional: float
    entry_fee: float
    entry_ts: float
    entry_scan: int
    source: str


class Fill(TypedDict, total=False):
    """A fill record as the accounts return it and the journal stores it (``ENTRY`` / ``EXIT`` payloads)."""

    side: str
    trade_id: int
    symbol: str
    price: float
    entry_price: float
    notional: float
    fee: float
    gross: float
    net: float
    reason: str
    source: str
    ts: float
    scan_number: int | None
    capital_after: float


def exit_gross(pos: Position, price: float, share: float = 1.0) -> float:
    """Realised gross PnL of closing ``share`` of ``pos`` at ``price``."""
    return pos.direction * (price - pos.entry_price) / pos.entry_price * pos.notional * share


def exit_record(pos: Position, price: float, fee: float, gross: float, reason: str, source: str, now: float,
                scan: int | None) -> dict:
    """The exit's fill record (``capital_after`` is set when it is booked)."""
    return {"side": "BUY" if pos.direction < 0 else "SELL", "trade_id": pos.trade_id, "symbol": pos.symbol,
            "price": price, "entry_price": pos.entry_price, "notional": pos.notional, "fee": fee, "gross": gross,
            "net": gross - fee - pos.entry_fee, "reason": reason, "source": source, "ts": now, "scan_number": scan}


LEDGER_FIELDS = ("capital", "peak_capital", "position", "trades", "day", "day_start_capital", "day_trades",
                 "fees_paid", "history")


@dataclass(eq=False)
class Ledger:
    """The one bookkeeping of every account: capital, peak, the open position, trade counts, fees, history."""

    capital: float
    peak_capital: float
    position: Position | None = None
    trades: int = 0
    day: str | None = None
    day_start_capital: float = 0.0
    day_trades: int = 0
    fees_paid: float = 0.0
    history: list = field(default_factory=list)

    def roll_day(self, day: str) -> None:
        self.day, self.day_start_capital, self.day_trades = day, self.capital, 0

    def book_entry(self, pos: Position) -> None:
        """Open ``pos``: its entry fee leaves capital."""
        self.capital -= pos.entry_fee
        self.fees_paid += pos.entry_fee
        self.position = pos

    def book_exit(self, rec: dict) -> dict:
        """Close the position with the exit record ``rec`` (its ``gross`` and ``fee``); return it with
        ``capital_after``."""
        self.capital += rec["gross"] - rec["fee"]
        self.fees_paid += rec["fee"]
        self.peak_capital = max(self.peak_capital, self.capital)
        self.trades += 1
        self.day_trades += 1
        rec["capital_after"] = self.capital
        self.history = (self.history + [rec])[-50:]
        self.position = None
        return rec

    def ledger_dict(self) -> dict[str, Any]:
        return {"capital": self.capital, "peak_capital": self.peak_capital,
                "position": None if self.position is None else asdict(self.position), "trades": self.trades,
                "day": self.day, "day_start_capital": self.day_start_capital, "day_trades": self.day_trades,
                "fees_paid": self.fees_paid, "history": self.history}

    def load_ledger(self, d: Mapping[str, Any]) -> None:
        pos = d.get("position")
        self.capital, self.peak_capital = float(d["capital"]), float(d["peak_capital"])
        self.position = None if pos is None else Position(**pos)
        self.trades, self.day = int(d.get("trades", 0)), d.get("day")
        self.day_start_capital = float(d.get("day_start_capital", self.capital))
        self.day_trades, self.fees_paid = int(d.get("day_trades", 0)), float(d.get("fees_paid", 0.0))
        self.history = list(d.get("history", []))


class Account(Protocol):
    """What the core fills on: a :class:`Ledger` plus ``open`` / ``close`` and ``to_dict``."""

    capital: float
    peak_capital: float
    position: Position | None

    def roll_day(self, day: str) -> None: ...
    def open(self, trade_id: int, symbol: str, direction: int, notional: float, book: Book | None,
             ref_price: float, now: float, scan: int, max_book_age_s: float = 30.0) -> dict: ...
    def close(self, reason: str, book: Book | None, ref_price: float, now: float, scan: int,
              max_book_age_s: float = 30.0) -> dict: ...
    def to_dict(self) -> dict[str, Any]: ...


class AccountFactory(Protocol):
    """Builds the core's account: fresh with a capital, or restored from its ``to_dict``."""

    def new(self, capital: float) -> Any: ...
    def from_dict(self, d: Mapping[str, Any]) -> Any: ...


@dataclass
class PaperAccount(Ledger):
    """The paper account: fills against the book at the strategy's costs (see the module docstring)."""

    costs: Costs = DEFAULT_COSTS

    @classmethod
    def new(cls, capital: float, costs: Costs = DEFAULT_COSTS) -> "PaperAccount":
        return cls(capital=capital, peak_capital=capital, day_start_capital=capital, costs=costs)

    def open(self, trade_id: int, symbol: str, direction: int, notional: float, book: Book | None,
             ref_price: float, now: float, scan: int, max_book_age_s: float = 30.0) -> dict:
        """Open the paper position; return the fill record."""
        if self.position is not None:
            raise RuntimeError(f"paper position {self.position.trade_id} already open; refusing a second entry")
        if not (math.isfinite(notional) and notional > 0):
            raise ValueError(f"bad notional {notional!r}")
        price, src = fill_price(direction, True, book, ref_price, now, max_book_age_s, self.costs.other_slippage)
        fee = self.costs.taker_fee * notional
        self.book_entry(Position(trade_id, symbol, direction, price, notional, fee, now, scan, src))
        return {"side": "SELL" if direction < 0 else "BUY", "trade_id": trade_id, "symbol": symbol, "price": price,
                "notional": notional, "fee": fee, "source": src, "ts": now, "scan_number": scan}

    def close(self, reason: str, book: Book | None, ref_price: float, now: float, scan: int,
              max_book_age_s: float = 30.0) -> dict:
        """Close the open paper position; return the fill record with realised PnL."""
        pos = self.position
        if pos is None:
            raise RuntimeError("no open paper position to close")
        price, src = fill_price(pos.direction, False, book, ref_price, now, max_book_age_s,
                                self.costs.exit_slippage(reason))
        fee = self.costs.taker_fee * pos.notional
        return self.book_exit(exit_record(pos, price, fee, exit_gross(pos, price), reason, src, now, scan))

    def to_dict(self) -> dict[str, Any]:
        return self.ledger_dict()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], costs: Costs = DEFAULT_COSTS) -> "PaperAccount":
        acct = cls(capital=0.0, peak_capital=0.0, costs=costs)
        acct.load_ledger(d)
        return acct


@dataclass(frozen=True)
class PaperAccounts:
    """The paper account factory at one strategy's costs (what the core is given)."""

    costs: Costs = DEFAULT_COSTS

    def new(self, capital: float) -> PaperAccount:
        return PaperAccount.new(capital, self.costs)

    def from_dict(self, d: Mapping[str, Any]) -> PaperAccount:
        return PaperAccount.from_dict(d, self.costs)
