"""Running safely on a venue account: the periodic reconcile's comparison, the protective stop, funding bookkeeping.

Design notes: ``docs/design/prod.trading.md``.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Mapping

WORKING_TYPES = ("MARK_PRICE", "CONTRACT_PRICE")


class EntriesFrozen(RuntimeError):
    """An entry refused: the venue and the journal disagree, or the account was changed outside the trader."""


@dataclass(frozen=True)
class SafetyConfig:
    """How often to reconcile, and the protective stop (``stop_pct`` 0 places none)."""

    reconcile_s: float = 60.0
    stop_pct: float = 0.12
    stop_working_type: str = "MARK_PRICE"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.reconcile_s) and 0 < self.reconcile_s <= 3600):
            raise ValueError(f"reconcile_s={self.reconcile_s!r}: must be in (0, 3600]")
        if not (math.isfinite(self.stop_pct) and 0 <= self.stop_pct < 0.5):
            raise ValueError(f"protective_stop_pct={self.stop_pct!r}: must be in [0, 0.5) (0 = no stop)")
        if self.stop_working_type not in WORKING_TYPES:
            raise ValueError(f"stop_working_type={self.stop_working_type!r}: must be one of {WORKING_TYPES}")


def stop_price(direction: int, entry: float, pct: float, tick: Decimal) -> Decimal:
    """The protective stop's trigger: ``pct`` against the position from ``entry``, on the tick, never closer."""
    raw = entry * (1.0 + pct) if direction < 0 else entry * (1.0 - pct)
    q = (Decimal(repr(raw)) / tick).to_integral_value(rounding="ROUND_CEILING" if direction < 0 else "ROUND_FLOOR")
    return (q * tick).quantize(tick)


@dataclass(frozen=True)
class Held:
    """The position the journal holds (signed quantity: < 0 short)."""

    trade_id: int
    symbol: str
    amount: float


def venue_mismatches(held: Held | None, step: float, known_open: Mapping[str, str], venue_positions: Mapping[str, float],
                     venue_open: Iterable[tuple[str, str]], stop_open: bool | None, gap: float | None,
                     gap0: float | None, baseline: Mapping[str, tuple[int, str]] | None,
                     settings: Mapping[str, tuple[int, str]], prefix: str = "DLP-") -> dict[str, str]:
    """Return ``{key: what differs}`` between the venue and the journal (empty: they agree).

    Parameters
    ----------
    held : the journal's position, or None (flat).
    step : the position symbol's lot step (quantities closer than half of it are equal).
    known_open : our orders the journal holds as open, client id -> symbol.
    venue_positions : the venue's non-zero positions, symbol -> signed amount.
    venue_open : the venue's open orders, (client id, symbol).
    stop_open : whether the position's protective stop is open on the venue (None: no stop is wanted).
    gap, gap0 : the venue's USDT wallet less the trader's capital (and the funding taken but not booked yet), now
        and at start. Everything the trader books (fills' PnL, commissions, funding) moves both alike, so the gap
        stays; a change beyond 0.01 USDT (+ 1e-9 of it, float rounding) is money the journal does not explain (a transfer,
        another strategy on the same account, a fill or a fee it never saw).
    baseline, settings : symbol -> (leverage, margin type) at start, and now.
    """
    out: dict[str, str] = {}
    for sym, amt in venue_positions.items():
        if held is None or sym != held.symbol:
            out[f"position:{sym}"] = f"the venue holds {amt:g} {sym}; the journal holds no position in it"
    if held is not None:
        v = venue_positions.get(held.symbol, 0.0)
        if abs(v - held.amount) > step / 2:
            out[f"position:{held.symbol}"] = (f"the journal holds {held.amount:g} {held.symbol} (trade "
                                              f"{held.trade_id}); the venue {v:g}")
    on_venue = {}
    for cid, sym in venue_open:
        on_venue[cid] = sym
        if cid.startswith(prefix) and cid not in known_open:
            out[f"order:{cid}"] = f"our order {cid} ({sym}) is open on the venue; the journal holds it final or unknown"
    for cid, sym in known_open.items():
        if cid not in on_venue:
            out[f"order:{cid}"] = f"our order {cid} ({sym}) is open in the journal; the venue does not hold it open"
    if held is not None and stop_open is False:
        out[f"stop:{held.trade_id}"] = f"position {held.trade_id} {held.symbol} has no protective stop on the venue"
    if gap is not None and gap0 is not None and abs(gap - gap0) > 0.01 + 1e-9 * abs(gap0):
        out["balance"] = (f"the venue's USDT wallet moved {gap - gap0:+.4f} more than the journal's capital "
                          "(unexplained: a transfer, another strategy on this account, an unbooked fill or fee)")
    for sym, (lev, mt) in (baseline or {}).items():
        now = settings.get(sym)
        if now is None:
            continue
        if now[0] != lev:
            out[f"leverage:{sym}"] = f"{sym} leverage is {now[0]}x on the venue, {lev}x when the trader started"
        if now[1] != mt:
            out[f"margin:{sym}"] = f"{sym} margin type is {now[1]} on the venue, {mt} when the trader started"
    return out



class AccountEvents:
    """Account events from the execution loop's thread to the safety thread (a deque and a wake-up)."""

    def __init__(self, maxlen: int = 10_000):
        self.q: deque = deque(maxlen=maxlen)
        self.wake = threading.Event()

    def put(self, ev: Any) -> None:
        self.q.append(ev)
        self.wake.set()

    def drain(self) -> list:
        out = []
        while self.q:
            out.append(self.q.popleft())
        return out
