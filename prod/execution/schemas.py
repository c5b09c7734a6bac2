"""Typed parsers for the trading side of Binance USDT-M: order answers, user-data events, positions, filters.

Raw dicts never leave this module: every parser returns a frozen dataclass or raises
:class:`prod.venue.errors.MalformedMessage` naming the field, so a malformed event is counted and
dropped by the caller and never reaches the order state machine as a number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from collections.abc import Iterator
from typing import Any

from prod.execution.orders import Fill, OrderStatus
from prod.venue.errors import MalformedMessage
from prod.venue.schemas import as_int

# Numbers may come as JSON numbers or as strings (Binance documents both spellings across endpoints);
# unknown fields are ignored. Booleans are never numbers.


def _f(d: dict, k: str, src: str) -> float:
    try:
        raw = d[k]
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise TypeError
        v = float(raw)
    except (KeyError, TypeError, ValueError, OverflowError):   # OverflowError: int beyond float (fuzzing)
        raise MalformedMessage(f"{src}: field {k!r} missing or not a number: {str(d.get(k))[:40]!r}") from None
    if not math.isfinite(v):
        raise MalformedMessage(f"{src}: field {k!r} is not finite: {d.get(k)!r}")
    return v


def _i(d: dict, k: str, src: str) -> int:
    v = d.get(k)
    n = as_int(v)
    if n is None:
        raise MalformedMessage(f"{src}: field {k!r} missing or not an integer: {str(v)[:40]!r}")
    return n


def _s(d: dict, k: str, src: str) -> str:
    v = d.get(k)
    if not isinstance(v, str) or not v:
        raise MalformedMessage(f"{src}: field {k!r} missing or not a string: {v!r}")
    return v


def _object_rows(body: Any, src: str) -> Iterator[dict]:
    """The rows of a REST list reply, each checked to be an object (a clear error naming ``src`` otherwise)."""
    if not isinstance(body, list):
        raise MalformedMessage(f"{src}: expected a list")
    for d in body:
        if not isinstance(d, dict):
            raise MalformedMessage(f"{src}: row is not an object")
        yield d


def _asset(v: Any) -> str:
    return v if isinstance(v, str) and v else "USDT"


def _status(v: Any, src: str) -> OrderStatus:
    try:
        return OrderStatus(v)
    except ValueError:
        raise MalformedMessage(f"{src}: unknown order status {v!r}") from None


@dataclass(frozen=True)
class OrderUpdate:
    """One order report (user-stream ORDER_TRADE_UPDATE or a REST order object)."""

    symbol: str
    client_id: str
    venue_order_id: int
    side: str
    status: OrderStatus
    exec_type: str            # NEW | TRADE | CANCELED | EXPIRED | ... ("REST" for REST answers)
    orig_qty: float
    cum_qty: float
    avg_price: float
    update_ms: int
    fill: Fill | None = None  # the trade this event reports (user stream, exec_type TRADE)


def parse_order_trade_update(ev: dict) -> OrderUpdate:
    """Parse an ``ORDER_TRADE_UPDATE`` user-data event."""
    src = "ORDER_TRADE_UPDATE"
    if not isinstance(ev, dict):
        raise MalformedMessage(f"{src}: event is not an object")
    o = ev.get("o")
    if not isinstance(o, dict):
        raise MalformedMessage(f"{src}: field 'o' missing or not an object")
    x = _s(o, "x", src)
    fill = None
    if x == "TRADE":
        last = _f(o, "l", src)
        if last <= 0:
            raise MalformedMessage(f"{src}: TRADE with last filled qty {o.get('l')!r}")
        fill = Fill(trade_id=_i(o, "t", src), qty=last, price=_f(o, "L", src), fee=abs(_f(o, "n", src)),
                    maker=bool(o.get("m")), realized_pnl=_f(o, "rp", src) if "rp" in o else 0.0,
                    ts_ms=_i(o, "T", src), fee_asset=_asset(o.get("N")))
        if fill.price <= 0:
            raise MalformedMessage(f"{src}: TRADE at price {o.get('L')!r}")
    cum = _f(o, "z", src)
    if cum < 0:
        raise MalformedMessage(f"{src}: negative executed qty {o.get('z')!r}")
    return OrderUpdate(symbol=_s(o, "s", src), client_id=_s(o, "c", src), venue_order_id=_i(o, "i", src),
                       side=_s(o, "S", src), status=_status(o.get("X"), src), exec_type=x, orig_qty=_f(o, "q", src),
                       cum_qty=cum, avg_price=_f(o, "ap", src), update_ms=_i(o, "T", src), fill=fill)


def parse_rest_order(d: Any) -> OrderUpdate:
    """Parse a ``/fapi/v1/order`` (or openOrders element) order object."""
    src = "REST order"
    if not isinstance(d, dict):
        raise MalformedMessage(f"{src}: not an object: {str(d)[:80]}")
    return OrderUpdate(symbol=_s(d, "symbol", src), client_id=_s(d, "clientOrderId", src),
                       venue_order_id=_i(d, "orderId", src), side=_s(d, "side", src),
                       status=_status(d.get("status"), src), exec_type="REST", orig_qty=_f(d, "origQty", src),
                       cum_qty=_f(d, "executedQty", src), avg_price=_f(d, "avgPrice", src),
                       update_ms=_i(d, "updateTime", src))


def parse_user_trade(d: Any) -> tuple[int, Fill]:
    """Parse one ``/fapi/v1/userTrades`` row; return (venue order id, fill)."""
    src = "userTrades"
    if not isinstance(d, dict):
        raise MalformedMessage(f"{src}: not an object")
    f = Fill(trade_id=_i(d, "id", src), qty=_f(d, "qty", src), price=_f(d, "price", src),
             fee=abs(_f(d, "commission", src)), maker=bool(d.get("maker")),
             realized_pnl=_f(d, "realizedPnl", src), ts_ms=_i(d, "time", src),
             fee_asset=_asset(d.get("commissionAsset")))
    return _i(d, "orderId", src), f


@dataclass(frozen=True)
class PositionInfo:
    symbol: str
    amount: float             # signed (one-way mode): < 0 short
    entry_price: float
    mark_price: float
    unrealized_pnl: float


def parse_position_risk(body: Any) -> tuple[PositionInfo, ...]:
    """Parse ``/fapi/v2/positionRisk``; return the rows with a non-zero position."""
    src = "positionRisk"
    out = []
    for d in _object_rows(body, src):
        amt = _f(d, "positionAmt", src)
        if amt != 0:
            out.append(PositionInfo(_s(d, "symbol", src), amt, _f(d, "entryPrice", src), _f(d, "markPrice", src),
                                    _f(d, "unRealizedProfit", src)))
    return tuple(out)


@dataclass(frozen=True)
class AccountUpdate:
    reason: str               # ``a.m``: ORDER, FUNDING_FEE, DEPOSIT, ...
    wallet_balance: float | None
    positions: tuple[PositionInfo, ...]
    ts_ms: int
    balance_change: float | None = None   # USDT ``bc``: the change except PnL and commission (the funding fee)


def parse_account_update(ev: dict) -> AccountUpdate:
    """Parse an ``ACCOUNT_UPDATE`` user-data event (USDT balance and changed positions)."""
    src = "ACCOUNT_UPDATE"
    if not isinstance(ev, dict):
        raise MalformedMessage(f"{src}: event is not an object")
    a = ev.get("a")
    if not isinstance(a, dict):
        raise MalformedMessage(f"{src}: field 'a' missing or not an object")
    for part in ("B", "P"):
        if not isinstance(a.get(part) or [], list):
            raise MalformedMessage(f"{src}: field 'a.{part}' is not a list")
    wb = bc = None
    for b in a.get("B") or []:
        if isinstance(b, dict) and b.get("a") == "USDT":
            wb = _f(b, "wb", src)
            bc = _f(b, "bc", src) if "bc" in b else None
    poss = []
    for p in a.get("P") or []:
        if not isinstance(p, dict):
            raise MalformedMessage(f"{src}: position is not an object")
        poss.append(PositionInfo(_s(p, "s", src), _f(p, "pa", src), _f(p, "ep", src), float("nan"),
                                 _f(p, "up", src)))
    return AccountUpdate(str(a.get("m", "")), wb, tuple(poss), _i(ev, "E", src), bc)


@dataclass(frozen=True)
class AccountConfigUpdate:
    """``ACCOUNT_CONFIG_UPDATE``: a symbol's leverage (``ac``) or the multi-assets mode (``ai``) changed."""

    symbol: str | None
    leverage: int | None
    multi_assets: bool | None
    ts_ms: int


def parse_account_config_update(ev: dict) -> AccountConfigUpdate:
    """Parse an ``ACCOUNT_CONFIG_UPDATE`` user-data event (fields other than ``ac``/``ai`` are ignored)."""
    src = "ACCOUNT_CONFIG_UPDATE"
    if not isinstance(ev, dict):
        raise MalformedMessage(f"{src}: event is not an object")
    sym = lev = multi = None
    ac, ai = ev.get("ac"), ev.get("ai")
    if isinstance(ac, dict):
        sym = _s(ac, "s", src)
        lev = int(_f(ac, "l", src))
    if isinstance(ai, dict):
        multi = bool(ai.get("j"))
    if sym is None and multi is None:
        raise MalformedMessage(f"{src}: neither 'ac' (leverage) nor 'ai' (multi-assets) is an object")
    return AccountConfigUpdate(sym, lev, multi, _i(ev, "E", src))


@dataclass(frozen=True)
class MarginCall:
    """``MARGIN_CALL``: positions whose margin ratio crossed the maintenance level."""

    cross_wallet: float | None
    positions: tuple[dict, ...]     # symbol, amount, mark price, maintenance margin, unrealised PnL
    ts_ms: int


def parse_margin_call(ev: dict) -> MarginCall:
    """Parse a ``MARGIN_CALL`` user-data event."""
    src = "MARGIN_CALL"
    if not isinstance(ev, dict):
        raise MalformedMessage(f"{src}: event is not an object")
    rows = ev.get("p") or []
    if not isinstance(rows, list):
        raise MalformedMessage(f"{src}: field 'p' is not a list")
    out = []
    for p in rows:
        if not isinstance(p, dict):
            raise MalformedMessage(f"{src}: position is not an object")
        out.append({"symbol": _s(p, "s", src), "amount": _f(p, "pa", src), "mark_price": _f(p, "mp", src),
                    "maint_margin": _f(p, "mm", src) if "mm" in p else None,
                    "unrealized_pnl": _f(p, "up", src) if "up" in p else None})
    return MarginCall(_f(ev, "cw", src) if "cw" in ev else None, tuple(out), _i(ev, "E", src))


@dataclass(frozen=True)
class IncomeRow:
    """One ``/fapi/v1/income`` row."""

    symbol: str
    income_type: str
    income: float
    asset: str
    time_ms: int
    tran_id: int


def parse_income(body: Any) -> tuple[IncomeRow, ...]:
    """Parse ``/fapi/v1/income`` (tranId and time as integers or numeric strings)."""
    src = "income"
    out = []
    for d in _object_rows(body, src):
        try:
            tran, t = int(d.get("tranId")), int(d.get("time"))
        except (TypeError, ValueError):
            raise MalformedMessage(f"{src}: tranId/time not integers: {d.get('tranId')!r}/{d.get('time')!r}") from None
        out.append(IncomeRow(str(d.get("symbol") or ""), _s(d, "incomeType", src), _f(d, "income", src),
                             str(d.get("asset") or "USDT"), t, tran))
    return tuple(out)


@dataclass(frozen=True)
class SymbolSetting:
    """A symbol's leverage and margin type as ``positionRisk`` reports them (every row, flat or not)."""

    symbol: str
    leverage: int
    margin_type: str


def parse_symbol_settings(body: Any) -> dict[str, SymbolSetting]:
    """Parse the leverage and margin type of every ``positionRisk`` row that carries them."""
    src = "positionRisk"
    if not isinstance(body, list):
        raise MalformedMessage(f"{src}: expected a list")
    out = {}
    for d in body:
        if isinstance(d, dict) and "leverage" in d and "marginType" in d:
            sym = _s(d, "symbol", src)
            out[sym] = SymbolSetting(sym, int(_f(d, "leverage", src)), str(d["marginType"]).lower())
    return out


def parse_wallet(body: Any) -> float:
    """The USDT wallet balance of ``/fapi/v2/account`` (the USDT asset row, else ``totalWalletBalance``)."""
    src = "account"
    if not isinstance(body, dict):
        raise MalformedMessage(f"{src}: not an object")
    for a in body.get("assets") or []:
        if isinstance(a, dict) and a.get("asset") == "USDT":
            return _f(a, "walletBalance", src)
    return _f(body, "totalWalletBalance", src)


@dataclass(frozen=True)
class SymbolRules:
    """Trading filters of one symbol (``exchangeInfo``)."""

    symbol: str
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    min_notional: float

    def round_qty(self, qty: float) -> Decimal:
        """Round ``qty`` down to the lot step."""
        q = (Decimal(repr(qty)) / self.step).to_integral_value(rounding="ROUND_FLOOR") * self.step
        return q.quantize(self.step)

    def held_qty(self, qty: float) -> Decimal:
        """Round a held quantity (a sum of fills, each a whole number of lot steps) to the NEAREST step.

        A float sum of fills can sit just below the true size (354.2 + 36.4 = 390.59999999999997), and
        :meth:`round_qty` would floor it a whole step short: an exit sized that way leaves one step open."""
        q = (Decimal(repr(qty)) / self.step).to_integral_value(rounding="ROUND_HALF_EVEN") * self.step
        return q.quantize(self.step)

    def round_price(self, price: float, up: bool) -> Decimal:
        q = (Decimal(repr(price)) / self.tick).to_integral_value(rounding="ROUND_CEILING" if up else "ROUND_FLOOR")
        return (q * self.tick).quantize(self.tick)


def _dec(v: Any) -> Decimal:
    """A filter value as a Decimal: strings and ints exactly, a JSON float by its shortest repr (0.1, not
    0.1000000000000000055...)."""
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise TypeError(f"not a number: {v!r}")
    return Decimal(repr(v)) if isinstance(v, float) else Decimal(v)


def parse_symbol_rules(info: Any) -> dict[str, SymbolRules]:
    """Parse ``/fapi/v1/exchangeInfo`` into rules per symbol."""
    src = "exchangeInfo"
    if not isinstance(info, dict) or not isinstance(info.get("symbols"), list):
        raise MalformedMessage(f"{src}: no 'symbols' list")
    out = {}
    for s in info["symbols"]:
        try:
            filt = {f["filterType"]: f for f in s["filters"]}
            out[s["symbol"]] = SymbolRules(
                s["symbol"], _dec(filt["PRICE_FILTER"]["tickSize"]).normalize(),
                _dec(filt["LOT_SIZE"]["stepSize"]).normalize(), _dec(filt["LOT_SIZE"]["minQty"]),
                float(_dec(filt.get("MIN_NOTIONAL", {}).get("notional", 0))))
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise MalformedMessage(f"{src}: bad symbol entry {str(s)[:80]}: {exc!r}") from None
        r = out[s["symbol"]]
        if not (r.tick.is_finite() and r.tick > 0 and r.step.is_finite() and r.step > 0 and r.min_qty.is_finite()
                and r.min_qty >= 0 and math.isfinite(r.min_notional)):   # fuzzing: "NaN" got through
            raise MalformedMessage(f"{src}: {r.symbol}: tick/step must be finite > 0, minQty/notional finite")
    return out


ALGO_OPEN = "NEW"                       # an algo order that can still trigger
ALGO_DONE = frozenset({"TRIGGERED", "FINISHED"})    # it placed its market order (``actual_order_id``)


@dataclass(frozen=True)
class AlgoUpdate:
    """A conditional (algo) order: ``ALGO_UPDATE`` event or a ``/fapi/v1/algoOrder`` / ``openAlgoOrders`` object.

    Status: NEW (waiting for its trigger), TRIGGERING, TRIGGERED / FINISHED (it placed ``actual_order_id``),
    CANCELED, EXPIRED (nothing to reduce), REJECTED.
    """

    client_id: str
    algo_id: int
    symbol: str
    side: str
    type: str
    status: str
    trigger_price: float
    actual_order_id: int | None
    ts_ms: int
    reason: str = ""


def _opt_id(v: Any) -> int | None:
    if v in (None, "", "0", 0):
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def parse_algo_update(ev: dict) -> AlgoUpdate:
    """Parse an ``ALGO_UPDATE`` user-data event."""
    src = "ALGO_UPDATE"
    o = ev.get("o") if isinstance(ev, dict) else None
    if not isinstance(o, dict):
        raise MalformedMessage(f"{src}: field 'o' missing or not an object")
    return AlgoUpdate(_s(o, "caid", src), _i(o, "aid", src), _s(o, "s", src), _s(o, "S", src), _s(o, "o", src),
                      _s(o, "X", src), _f(o, "tp", src), _opt_id(o.get("ai")), _i(ev, "E", src), str(o.get("rm") or ""))


def parse_algo_order(d: Any) -> AlgoUpdate:
    """Parse a ``/fapi/v1/algoOrder`` (or ``openAlgoOrders`` element) object."""
    src = "algoOrder"
    if not isinstance(d, dict):
        raise MalformedMessage(f"{src}: not an object: {str(d)[:80]}")
    return AlgoUpdate(_s(d, "clientAlgoId", src), _i(d, "algoId", src), _s(d, "symbol", src), _s(d, "side", src),
                      _s(d, "orderType", src), _s(d, "algoStatus", src), _f(d, "triggerPrice", src),
                      _opt_id(d.get("actualOrderId")), int(d.get("updateTime") or 0))


@dataclass(frozen=True)
class FeeRates:
    """Commission rates (fractions of notional) of the account, from ``GET /fapi/v1/commissionRate``."""

    maker: float
    taker: float
    symbol: str

    def rate(self, maker: bool) -> float:
        return self.maker if maker else self.taker


def parse_commission_rate(d: Any) -> FeeRates:
    """Parse ``GET /fapi/v1/commissionRate``; rates must be finite and in [0, 1%)."""
    src = "commissionRate"
    if not isinstance(d, dict):
        raise MalformedMessage(f"{src}: not an object: {str(d)[:80]}")
    maker, taker = _f(d, "makerCommissionRate", src), _f(d, "takerCommissionRate", src)
    if not (0 <= maker < 0.01 and 0 <= taker < 0.01):
        raise MalformedMessage(f"{src}: rates out of range: maker {maker}, taker {taker}")
    return FeeRates(maker, taker, _s(d, "symbol", src))
