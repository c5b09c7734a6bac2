"""The value types NDAlphaEngine hands out (bible §13): the open position, what a bar opened or
closed, a block's and a day's report.  Plain frozen dataclasses; no engine logic."""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Optional


@dataclass(slots=True)
class Position:
    """The open position (at most one)."""
    trade_id: int
    asset: str
    asset_idx: int
    direction: int
    entry_price: float
    notional: float
    leverage: float
    fraction: float
    bucket: int
    confidence: float
    dc: int
    entry_bar: int
    entry_date: str
    bars_held: int = 0
    vd_adverse_run: int = 0
    tf_spread_entry: float = 0.0


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """What step_bar opened."""
    trade_id: int
    asset: str
    direction: int
    price: float
    notional: float
    leverage: float
    fraction: float
    bucket: int
    confidence: float


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """A closed trade."""
    trade_id: int
    asset: str
    direction: int
    entry_bar: int
    exit_bar: int
    entry_date: str
    exit_date: str
    entry_price: float
    exit_price: float
    notional: float
    leverage: float
    fraction: float
    bucket: int
    bars_held: int
    reason: str
    pnl_pct: float
    gross_pnl: float
    fees: float
    net_pnl: float
    capital_after: float

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(slots=True)
class BarResult:
    """Outcome of one step_bar: at most one of entered / exited, or skipped (bad bar)."""
    bar_idx: int
    entered: Optional[EntryInfo] = None
    exited: Optional[TradeRecord] = None
    skipped: Optional[str] = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (for journals and bus payloads)."""
        return {"bar_idx": self.bar_idx,
                "entered": None if self.entered is None else {
                    k: getattr(self.entered, k) for k in EntryInfo.__slots__},
                "exited": None if self.exited is None else self.exited.to_dict(),
                "skipped": self.skipped, "note": self.note}


@dataclass
class BlockResult:
    """What run_bars reports: the step_bar results of the event bars (row, result) and the quiet bars' counts."""
    events: list = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    held: int = 0            # bars not given to the engine (hold set while flat)
    quiet: int = 0           # bars consumed by the compiled scans (held and skipped ones included)


@dataclass(frozen=True)
class DayResult:
    """What end_day reports (§13.1 return value)."""
    date: str
    pnl: float
    capital: float
    boost: float
    beta: float
    mc_status: str
    posture: str
    trades: int
    skipped_bars: int
    open_position: bool
    trade_list: tuple = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["trade_list"] = [t.to_dict() for t in self.trade_list]
        return d
