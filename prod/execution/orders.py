"""Order state machine and idempotent client order ids (pure: no I/O, no clock).

Design notes: ``docs/design/prod.execution.md``.
"""
from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

CLIENT_ID_PREFIX = "DLP-"
EPS = 1e-12


class OrderStatus(str, enum.Enum):
    PENDING_NEW = "PENDING_NEW"
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


S = OrderStatus
TERMINAL = frozenset({S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED})
ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING_NEW: frozenset({S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED}),
    S.NEW: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.FILLED: frozenset(), S.CANCELED: frozenset(), S.REJECTED: frozenset(), S.EXPIRED: frozenset(),
}
_RANK = {S.PENDING_NEW: 0, S.NEW: 1, S.PARTIALLY_FILLED: 2}


class IllegalTransition(ValueError):
    """A status change the state machine does not allow (e.g. a terminal order changing state)."""


class BadFill(ValueError):
    """A fill that cannot be applied: more than the order's quantity, non-finite or non-positive."""


def check_transition(frm: OrderStatus, to: OrderStatus) -> bool:
    """Return True for an allowed move, False for a stale (backward) one; raise IllegalTransition otherwise."""
    if to in ALLOWED[frm]:
        return True
    if frm == to and frm.terminal:
        return False                                  # duplicate of a final event
    if not frm.terminal and to in _RANK and _RANK[to] <= _RANK[frm]:
        return False                                  # a late earlier state
    if frm.terminal and to in _RANK:
        return False                                  # a late non-final event after the final one
    raise IllegalTransition(f"{frm.value} -> {to.value}")


def client_order_id(strategy: str, day: str, bar: int, side: str, leg: str) -> str:
    """Return the idempotent client order id of one decision (same decision -> same id, <= 36 chars).

    ``leg`` tells the orders of one decision apart (``entry``, ``exit``, ``exit-2``, ...).
    """
    key = f"{strategy}|{day}|{int(bar)}|{side.upper()}|{leg}"
    return CLIENT_ID_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Fill:
    trade_id: int
    qty: float
    price: float
    fee: float
    maker: bool
    realized_pnl: float
    ts_ms: int
    fee_asset: str = "USDT"       # the venue's commission asset; the client books non-USDT fees at the account's rate

    def to_dict(self) -> dict[str, Any]:
        return {"trade_id": self.trade_id, "qty": self.qty, "price": self.price, "fee": self.fee,
                "maker": self.maker, "realized_pnl": self.realized_pnl, "ts_ms": self.ts_ms,
                "fee_asset": self.fee_asset}


@dataclass
class Order:
    """One order as we know it; :meth:`apply_status` and :meth:`add_fill` are the only mutators."""

    client_id: str
    symbol: str
    side: str
    type: str
    qty: float
    price: float | None = None
    tif: str | None = None
    reduce_only: bool = False
    status: OrderStatus = S.PENDING_NEW
    venue_order_id: int | None = None
    venue_cum_qty: float = 0.0        # executed quantity the venue last reported
    fills: dict[int, Fill] = field(default_factory=dict)
    unknown_outcome: bool = False
    reason: str | None = None          # reject code/msg, "lost", ...
    update_ms: int = 0
    stale_updates: int = 0
    meta: dict[str, Any] = field(default_factory=dict)   # caller's tags (trade id, leg, scan), journaled

    @property
    def filled_qty(self) -> float:
        return sum(f.qty for f in self.fills.values())

    @property
    def avg_price(self) -> float:
        q = self.filled_qty
        return sum(f.qty * f.price for f in self.fills.values()) / q if q > 0 else 0.0

    @property
    def fees(self) -> float:
        return sum(f.fee for f in self.fills.values())

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    @property
    def missing_qty(self) -> float:
        """Quantity the venue reports executed but whose fills we have not seen (fetch them)."""
        return max(0.0, self.venue_cum_qty - self.filled_qty)

    def apply_status(self, to: OrderStatus, cum_qty: float | None = None, update_ms: int = 0,
                     venue_order_id: int | None = None, reason: str | None = None) -> bool:
        """Move to ``to`` if allowed; return whether the status changed. Raise IllegalTransition."""
        if cum_qty is not None:
            if not (math.isfinite(cum_qty) and 0 <= cum_qty <= self.qty * (1 + 1e-9) + EPS):
                raise BadFill(f"{self.client_id}: venue executed qty {cum_qty} outside [0, {self.qty}]")
        if venue_order_id is not None:
            if self.venue_order_id not in (None, venue_order_id):
                raise IllegalTransition(f"{self.client_id}: venue order id {venue_order_id} != {self.venue_order_id}")
            self.venue_order_id = venue_order_id
        if not check_transition(self.status, to):
            if to != self.status:
                self.stale_updates += 1
            if cum_qty is not None and not self.terminal:
                self.venue_cum_qty = max(self.venue_cum_qty, cum_qty)
            return False
        changed = to != self.status
        self.status = to
        if cum_qty is not None:
            self.venue_cum_qty = max(self.venue_cum_qty, cum_qty)
        self.update_ms = max(self.update_ms, update_ms)
        if reason:
            self.reason = reason
        return changed

    def add_fill(self, fill: Fill) -> bool:
        """Record a fill once (keyed by trade id); return False for a duplicate. Raise BadFill."""
        if fill.trade_id in self.fills:
            return False
        if not (math.isfinite(fill.qty) and fill.qty > 0 and math.isfinite(fill.price) and fill.price > 0
                and math.isfinite(fill.fee)):
            raise BadFill(f"{self.client_id}: bad fill {fill}")
        if self.filled_qty + fill.qty > self.qty * (1 + 1e-9) + EPS:
            raise BadFill(f"{self.client_id}: fill {fill.qty} would take {self.filled_qty} beyond qty {self.qty}")
        self.fills[fill.trade_id] = fill
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "symbol": self.symbol, "side": self.side, "type": self.type,
                "qty": self.qty, "price": self.price, "tif": self.tif, "reduce_only": self.reduce_only,
                "status": self.status.value, "venue_order_id": self.venue_order_id,
                "venue_cum_qty": self.venue_cum_qty, "filled_qty": self.filled_qty, "avg_price": self.avg_price,
                "fees": self.fees, "unknown_outcome": self.unknown_outcome, "reason": self.reason,
                "meta": dict(self.meta), "fills": [f.to_dict() for f in self.fills.values()]}
