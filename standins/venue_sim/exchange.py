"""Order matching and accounts of the venue simulator (the order side of Binance USDT-M, one-way mode).

Design notes: ``docs/design/standins.venue_sim.md``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from standins.venue_sim.model import LEVELS, MarketModel

CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
MIN_NOTIONAL = 5.0
KEEP_CLOSED = 5000
TERMINAL = ("FILLED", "CANCELED", "EXPIRED", "REJECTED")
CONDITIONAL_TYPES = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
KEEP_INCOME = 10_000


class ExchangeError(Exception):
    """A request the venue refuses: Binance error ``code`` and ``msg`` (HTTP 400 unless ``status``)."""

    def __init__(self, code: int, msg: str, status: int = 400):
        super().__init__(f"{code}: {msg}")
        self.code, self.msg, self.status = code, msg, status


@dataclass(frozen=True)
class ExchangeConfig:
    """Account parameters of the simulated exchange."""

    start_balance: float = 10_000.0
    leverage: int = 10
    taker_fee: float = 0.0005
    maker_fee: float = 0.0002
    maint_margin_rate: float = 0.025
    dual_side: bool = False           # accounts start in hedge mode (a misconfigured account, for tests)
    multi_assets: bool = False        # accounts start in multi-assets mode

    def __post_init__(self) -> None:
        if not (0 < self.start_balance < 1e12):
            raise ValueError(f"start_balance {self.start_balance}: must be > 0")
        if not 1 <= self.leverage <= 125:
            raise ValueError(f"leverage {self.leverage}: must be in [1, 125]")
        for k in ("taker_fee", "maker_fee"):
            v = getattr(self, k)
            if not -0.001 <= v <= 0.01:
                raise ValueError(f"{k} {v}: must be in [-0.001, 0.01]")


@dataclass
class SimOrder:
    order_id: int
    client_id: str
    symbol: str
    i: int
    side: str                 # BUY | SELL
    type: str                 # MARKET | LIMIT
    tif: str                  # GTC | IOC (MARKET orders report GTC, as Binance does)
    qty: int                  # lot steps
    price: int                # ticks (0 for MARKET)
    reduce_only: bool
    status: str = "NEW"
    orig_type: str = ""       # STOP_MARKET / TAKE_PROFIT_MARKET for the order a triggered algo order placed
    stop_price: int = 0       # ticks (that algo order's trigger price)
    filled: int = 0
    quote: float = 0.0        # cumulative filled notional (USDT)
    time_ms: int = 0
    update_ms: int = 0

    @property
    def sign(self) -> int:
        return 1 if self.side == "BUY" else -1

    @property
    def open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")


@dataclass
class Position:
    amt: int = 0              # signed lot steps (one-way mode)
    entry: float = 0.0        # VWAP entry price
    update_ms: int = 0


@dataclass
class Account:
    api_key: str
    wallet: float
    orders: dict[int, SimOrder] = field(default_factory=dict)
    by_client: dict[str, int] = field(default_factory=dict)      # open orders only
    closed: list[int] = field(default_factory=list)
    positions: dict[int, Position] = field(default_factory=dict)
    trades: list[dict] = field(default_factory=list)             # userTrades rows (last 5,000)
    outbox: list[dict] = field(default_factory=list)             # user-data events not yet sent
    update_ms: int = 0                                           # last change of the wallet (market time)
    dual_side: bool = False                                      # hedge mode (positionSide/dual)
    multi_assets: bool = False                                   # multi-assets margin mode
    leverage: dict[int, int] = field(default_factory=dict)      # symbol -> leverage (missing: config)
    isolated: set[int] = field(default_factory=set)              # symbols in ISOLATED margin type
    income: list[dict] = field(default_factory=list)             # income rows (last 10,000)
    algos: dict[int, Any] = field(default_factory=dict)          # algoId -> algo.AlgoOrder
    algo_by_client: dict[str, int] = field(default_factory=dict)  # open algo orders only


def _dec(raw: Any, name: str) -> Decimal:
    try:
        d = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        raise ExchangeError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                   "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.") from None
    if not d.is_finite():
        raise ExchangeError(-1100, f"Illegal characters found in parameter '{name}'.")
    return d


def _units(raw: Any, unit: float, decimals: int, name: str) -> int:
    """Parse a decimal string into an integer count of ``unit`` (``-1111`` if finer than ``decimals``)."""
    d = _dec(raw, name)
    n = d / Decimal(1).scaleb(-decimals) / Decimal(round(unit * 10 ** decimals))
    if n != n.to_integral_value():
        raise ExchangeError(-1111, "Precision is over the maximum defined for this asset.")
    return int(n)


def check_position_side(acct: Account, p: dict[str, str]) -> str:
    """Return the order's positionSide, refused as Binance does for the account's position mode."""
    ps = p.get("positionSide") or "BOTH"
    if ps not in ("BOTH", "LONG", "SHORT"):
        raise ExchangeError(-1130, "Data sent for parameter 'positionSide' is not valid.")
    if (ps == "BOTH") == acct.dual_side:
        raise ExchangeError(-4061, "Order's position side does not match user's setting.")
    if acct.dual_side:
        raise ExchangeError(-1000, "An unknown error occurred while processing the request. (venue_sim: hedge-mode "
                                   "LONG/SHORT positions are not simulated; switch the account to one-way mode)")
    return ps


class SimExchange:
    """Accounts, orders and matching against :class:`MarketModel`'s books."""

    def __init__(self, model: MarketModel, cfg: ExchangeConfig, api_keys: dict[str, str]):
        self.m, self.cfg = model, cfg
        self.secrets = dict(api_keys)
        self.accounts = {k: Account(k, cfg.start_balance, update_ms=model.t_ms, dual_side=cfg.dual_side,
                                    multi_assets=cfg.multi_assets) for k in api_keys}
        self._oid = 7_000_000_000
        self._tid = 900_000_000
        self._tran = 5_000_000_000
        self._taken_tick = -1
        self._taken: dict[tuple[int, int], int] = {}   # (symbol, price tick) -> lot steps taken this tick
        self.fills = 0
        self.status: dict[int, str] = {}    # symbol index -> status other than TRADING (delisting fault)
        self.on_flat: Any = None        # callback(acct, symbol index, now_ms) when a position closes (algo)

    # ------------------------------------------------------------------ formatting
    def fq(self, i: int, steps: int) -> str:
        return f"{steps * self.m.step_size[i]:.{self.m.qty_dec[i]}f}"

    def fp(self, i: int, ticks: float) -> str:
        return f"{ticks * self.m.tick_size[i]:.{self.m.price_dec[i]}f}"

    def price(self, i: int, ticks: int) -> float:
        return float(ticks * self.m.tick_size[i])

    def mark(self, i: int) -> float:
        """Mark price (as premiumIndex and markPrice streams publish it)."""
        return float(self.m.mid[i] * (1.0 + self.m.basis[i]))

    def lev(self, acct: Account, i: int) -> int:
        return acct.leverage.get(i, self.cfg.leverage)

    # ------------------------------------------------------------------ book access
    def _levels(self, i: int, buy: bool) -> list[tuple[int, int]]:
        """Opposite-side levels for an aggressor (price ticks, available lot steps), best first."""
        if self._taken_tick != self.m.tick_no:
            self._taken_tick, self._taken = self.m.tick_no, {}
        if buy:
            px, qty = self.m.ask_idx[i], self.m.ask_qty[i]
        else:
            px, qty = self.m.bid_idx[i], self.m.bid_qty[i]
        step = self.m.step_size[i]
        out = []
        for k in range(LEVELS):
            p = int(px[k])
            avail = int(round(float(qty[k]) / step)) - self._taken.get((i, p), 0)
            if avail > 0:
                out.append((p, avail))
        return out

    # ------------------------------------------------------------------ account views
    def account(self, api_key: str) -> Account:
        return self.accounts[api_key]

    def unrealized(self, acct: Account) -> float:
        return sum(p.amt * self.m.step_size[i] * (self.mark(i) - p.entry) for i, p in acct.positions.items()
                   if p.amt)

    def position_margin(self, acct: Account) -> float:
        return sum(abs(p.amt) * self.m.step_size[i] * self.mark(i) / self.lev(acct, i)
                   for i, p in acct.positions.items())

    def order_margin(self, acct: Account) -> float:
        tot = 0.0
        for oid in acct.by_client.values():
            o = acct.orders[oid]
            if not o.reduce_only:
                tot += (o.qty - o.filled) * self.m.step_size[o.i] * self.price(o.i, o.price) / self.lev(acct, o.i)
        return tot

    def available(self, acct: Account) -> float:
        return acct.wallet + self.unrealized(acct) - self.position_margin(acct) - self.order_margin(acct)

    # ------------------------------------------------------------------ orders
    def place(self, api_key: str, p: dict[str, str], now_ms: int,
              trigger: tuple[str, int] | None = None) -> SimOrder:
        """Validate and match a new order (Binance parameter names); raise ExchangeError if refused.

        ``trigger`` (original type, trigger price in ticks) marks the MARKET order a triggered algo
        order places."""
        acct = self.accounts[api_key]
        for name in ("symbol", "side", "type"):
            if not p.get(name):
                raise ExchangeError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or "
                                           "malformed.")
        sym = p["symbol"]
        i = self.m.index.get(sym)
        if i is None:
            raise ExchangeError(-1121, "Invalid symbol.")
        side, otype = p["side"], p["type"]
        if side not in ("BUY", "SELL"):
            raise ExchangeError(-1117, "Invalid side.")
        if otype in CONDITIONAL_TYPES:
            raise ExchangeError(-4120, "Order type not supported for this endpoint. Please use the Algo Order API "
                                       "endpoints instead.")
        if otype not in ("MARKET", "LIMIT"):
            raise ExchangeError(-1116, "Invalid orderType.")
        check_position_side(acct, p)
        if not p.get("quantity"):
            raise ExchangeError(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        qty = _units(p["quantity"], float(self.m.step_size[i]), self.m.qty_dec[i], "quantity")
        if qty <= 0:
            raise ExchangeError(-4003, "Quantity less than or equal to zero.")
        ro_raw = p.get("reduceOnly", "false").lower()
        if ro_raw not in ("true", "false"):
            raise ExchangeError(-1130, "Data sent for parameter 'reduceOnly' is not valid.")
        reduce_only = ro_raw == "true"
        tif, price = "GTC", 0
        if otype == "LIMIT":
            tif = p.get("timeInForce") or ""
            if not tif:
                raise ExchangeError(-1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or "
                                           "malformed.")
            if tif not in ("GTC", "IOC"):
                raise ExchangeError(-1115, "Invalid timeInForce.")
            if not p.get("price"):
                raise ExchangeError(-1102, "Mandatory parameter 'price' was not sent, was empty/null, or "
                                           "malformed.")
            price = _units(p["price"], float(self.m.tick_size[i]), self.m.price_dec[i], "price")
            if price <= 0:
                raise ExchangeError(-4013, "Price less than min price.")
        elif p.get("price"):
            raise ExchangeError(-1106, "Parameter 'price' sent when not required.")
        cid = p.get("newClientOrderId") or f"sim_{self._oid + 1}"
        if not CLIENT_ID_RE.match(cid):
            raise ExchangeError(-4015, "Client order id is not valid.")
        if cid in acct.by_client:
            raise ExchangeError(-4116, "ClientOrderId is duplicated.")
        pos = acct.positions.get(i, Position())
        sign = 1 if side == "BUY" else -1
        if i in self.status and not reduce_only:
            raise ExchangeError(-4140, "Invalid symbol status for opening position.")
        if reduce_only:
            if pos.amt == 0 or (pos.amt > 0) == (sign > 0):
                raise ExchangeError(-2022, "ReduceOnly Order is rejected.")
            pending = sum(o.qty - o.filled for o in (acct.orders[x] for x in acct.by_client.values())
                          if o.i == i and o.reduce_only and o.sign == sign)
            qty = min(qty, abs(pos.amt) - pending)
            if qty <= 0:
                raise ExchangeError(-2022, "ReduceOnly Order is rejected.")
        ref = self.price(i, price) if otype == "LIMIT" else self.mark(i)
        lev = self.lev(acct, i)
        notional = qty * float(self.m.step_size[i]) * ref
        if not reduce_only and notional < MIN_NOTIONAL:
            raise ExchangeError(-4164, f"Order's notional must be no smaller than {MIN_NOTIONAL:g} (unless you "
                                       "choose reduce only).")
        increase = max(0, abs(pos.amt + sign * qty) - abs(pos.amt)) if not reduce_only else 0
        need = increase * float(self.m.step_size[i]) * ref / lev
        if need > self.available(acct) + 1e-9:
            raise ExchangeError(-2019, "Margin is insufficient.")
        self._oid += 1
        o = SimOrder(self._oid, cid, sym, i, side, otype, tif, qty, price, reduce_only, time_ms=now_ms,
                     update_ms=now_ms)
        if trigger is not None:
            o.orig_type, o.stop_price = trigger
        acct.orders[o.order_id] = o
        acct.by_client[cid] = o.order_id
        self._event(acct, o, "NEW", now_ms)
        self._take(acct, o, now_ms)
        if o.open and (otype == "MARKET" or tif == "IOC"):
            self._close(acct, o, "EXPIRED", now_ms)
        return o

    def _take(self, acct: Account, o: SimOrder, now_ms: int) -> None:
        """Fill ``o`` as taker against the opposite levels it can reach."""
        buy = o.side == "BUY"
        for p, avail in self._levels(o.i, buy):
            if o.filled >= o.qty:
                break
            if o.type == "LIMIT" and ((buy and p > o.price) or (not buy and p < o.price)):
                break
            n = min(avail, o.qty - o.filled)
            self._taken[(o.i, p)] = self._taken.get((o.i, p), 0) + n
            self._fill(acct, o, n, p, maker=False, now_ms=now_ms)

    def on_tick(self, now_ms: int) -> None:
        """Fill resting LIMIT orders the new books cross (maker, at the order's price)."""
        for acct in self.accounts.values():
            for oid in list(acct.by_client.values()):
                o = acct.orders[oid]
                if not o.open:
                    continue
                buy = o.side == "BUY"
                for p, avail in self._levels(o.i, buy):
                    if o.filled >= o.qty or (buy and p > o.price) or (not buy and p < o.price):
                        break
                    n = min(avail, o.qty - o.filled)
                    self._taken[(o.i, p)] = self._taken.get((o.i, p), 0) + n
                    self._fill(acct, o, n, o.price, maker=True, now_ms=now_ms)

    def _fill(self, acct: Account, o: SimOrder, n: int, px_ticks: int, maker: bool, now_ms: int) -> None:
        i = o.i
        step = float(self.m.step_size[i])
        px = self.price(i, px_ticks)
        if o.reduce_only:           # a reduce-only order never flips the position
            pos0 = acct.positions.get(i, Position())
            n = min(n, abs(pos0.amt)) if (pos0.amt > 0) != (o.sign > 0) and pos0.amt else 0
            if n <= 0:
                self._close(acct, o, "EXPIRED", now_ms)
                return
        pos = acct.positions.setdefault(i, Position())
        signed = o.sign * n
        realized = 0.0
        if pos.amt == 0 or (pos.amt > 0) == (signed > 0):
            tot = abs(pos.amt) + n
            pos.entry = (pos.entry * abs(pos.amt) + px * n) / tot
            pos.amt += signed
        else:
            closing = min(n, abs(pos.amt))
            realized = closing * step * (px - pos.entry) * (1 if pos.amt > 0 else -1)
            rest = n - closing
            pos.amt += o.sign * closing
            if pos.amt == 0:
                pos.entry = 0.0
            if rest:
                pos.amt, pos.entry = o.sign * rest, px
        pos.update_ms = now_ms
        notional = n * step * px
        fee = notional * (self.cfg.maker_fee if maker else self.cfg.taker_fee)
        acct.wallet += realized - fee
        acct.update_ms = now_ms
        tid = self._tid + 1
        if realized:
            self.book_income(acct, o.symbol, "REALIZED_PNL", realized, now_ms, str(tid))
        if fee:
            self.book_income(acct, o.symbol, "COMMISSION", -fee, now_ms, str(tid))
        o.filled += n
        o.quote += notional
        o.update_ms = now_ms
        self._tid += 1
        self.fills += 1
        status = "FILLED" if o.filled >= o.qty else "PARTIALLY_FILLED"
        o.status = status
        acct.trades.append({
            "buyer": o.side == "BUY", "commission": f"{fee:.8f}", "commissionAsset": "USDT", "id": self._tid,
            "maker": maker, "orderId": o.order_id, "price": self.fp(i, px_ticks), "qty": self.fq(i, n),
            "quoteQty": f"{notional:.8f}", "realizedPnl": f"{realized:.8f}", "side": o.side,
            "positionSide": "BOTH", "symbol": o.symbol, "time": now_ms})
        del acct.trades[:-KEEP_CLOSED]
        self._event(acct, o, "TRADE", now_ms, last=(n, px_ticks, fee, realized, maker, self._tid))
        acct.outbox.append(self._account_update(acct, i, now_ms))
        if status == "FILLED":
            self._retire(acct, o)
        if pos.amt == 0 and self.on_flat is not None:
            self.on_flat(acct, i, now_ms)

    def book_income(self, acct: Account, symbol: str, kind: str, amount: float, now_ms: int,
                    trade_id: str = "") -> None:
        """Append one ``GET /fapi/v1/income`` row."""
        self._tran += 1
        acct.income.append({"symbol": symbol, "incomeType": kind, "income": f"{amount:.8f}", "asset": "USDT",
                            "info": kind if kind in ("FUNDING_FEE", "TRANSFER") else "", "time": now_ms,
                            "tranId": self._tran, "tradeId": trade_id})
        del acct.income[:-KEEP_INCOME]

    def cancel(self, api_key: str, order_id: int | None, client_id: str | None, now_ms: int) -> SimOrder:
        acct = self.accounts[api_key]
        o = self.find(api_key, order_id, client_id)
        if o is None or not o.open:
            raise ExchangeError(-2011, "Unknown order sent.")
        self._close(acct, o, "CANCELED", now_ms)
        return o

    def cancel_all(self, api_key: str, symbol: str, now_ms: int) -> int:
        acct = self.accounts[api_key]
        n = 0
        for oid in list(acct.by_client.values()):
            o = acct.orders[oid]
            if o.symbol == symbol and o.open:
                self._close(acct, o, "CANCELED", now_ms)
                n += 1
        return n

    def find(self, api_key: str, order_id: int | None, client_id: str | None) -> SimOrder | None:
        acct = self.accounts[api_key]
        if order_id is not None:
            return acct.orders.get(order_id)
        oid = acct.by_client.get(client_id or "")
        if oid is not None:
            return acct.orders[oid]
        for o in reversed(list(acct.orders.values())):      # closed orders: newest first
            if o.client_id == client_id:
                return o
        return None

    def _close(self, acct: Account, o: SimOrder, status: str, now_ms: int) -> None:
        o.status, o.update_ms = status, now_ms
        self._event(acct, o, status, now_ms)
        self._retire(acct, o)

    def _retire(self, acct: Account, o: SimOrder) -> None:
        acct.by_client.pop(o.client_id, None)
        acct.closed.append(o.order_id)
        while len(acct.closed) > KEEP_CLOSED:
            acct.orders.pop(acct.closed.pop(0), None)

    # ------------------------------------------------------------------ wire shapes
    def order_json(self, o: SimOrder) -> dict:
        """The order object of ``/fapi/v1/order`` answers."""
        i = o.i
        step = float(self.m.step_size[i])
        avg = o.quote / (o.filled * step) if o.filled else 0.0
        return {"orderId": o.order_id, "symbol": o.symbol, "status": o.status, "clientOrderId": o.client_id,
                "price": self.fp(i, o.price), "avgPrice": f"{avg:.8f}" if o.filled else "0.00",
                "origQty": self.fq(i, o.qty), "executedQty": self.fq(i, o.filled),
                "cumQty": self.fq(i, o.filled), "cumQuote": f"{o.quote:.8f}", "timeInForce": o.tif,
                "type": o.type, "reduceOnly": o.reduce_only, "closePosition": False, "side": o.side,
                "positionSide": "BOTH", "stopPrice": self.fp(i, o.stop_price) if o.stop_price else "0",
                "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": o.orig_type or o.type,
                "priceMatch": "NONE", "selfTradePreventionMode": "NONE", "goodTillDate": 0,
                "time": o.time_ms, "updateTime": o.update_ms}

    def _event(self, acct: Account, o: SimOrder, x: str, now_ms: int,
               last: tuple[int, int, float, float, bool, int] | None = None) -> None:
        i = o.i
        step = float(self.m.step_size[i])
        n, lp, fee, rp, maker, tid = last if last else (0, 0, 0.0, 0.0, False, 0)
        avg = o.quote / (o.filled * step) if o.filled else 0.0
        acct.outbox.append({"e": "ORDER_TRADE_UPDATE", "E": now_ms, "T": now_ms, "o": {
            "s": o.symbol, "c": o.client_id, "S": o.side, "o": o.type, "f": o.tif, "q": self.fq(i, o.qty),
            "p": self.fp(i, o.price), "ap": f"{avg:.8f}" if o.filled else "0",
            "sp": self.fp(i, o.stop_price) if o.stop_price else "0", "x": x,
            "X": o.status if x != "NEW" else "NEW", "i": o.order_id, "l": self.fq(i, n), "z": self.fq(i, o.filled),
            "L": self.fp(i, lp) if n else "0", "N": "USDT", "n": f"{fee:.8f}", "T": now_ms, "t": tid,
            "b": "0", "a": "0", "m": maker, "R": o.reduce_only, "wt": "CONTRACT_PRICE", "ot": o.orig_type or o.type,
            "ps": "BOTH", "cp": False, "rp": f"{rp:.8f}", "pP": False, "si": 0, "ss": 0, "V": "NONE",
            "pm": "NONE", "gtd": 0}})

    def _account_update(self, acct: Account, i: int, now_ms: int) -> dict:
        pos = acct.positions.get(i, Position())
        step = float(self.m.step_size[i])
        up = pos.amt * step * (self.mark(i) - pos.entry) if pos.amt else 0.0
        return {"e": "ACCOUNT_UPDATE", "E": now_ms, "T": now_ms, "a": {
            "m": "ORDER",
            "B": [{"a": "USDT", "wb": f"{acct.wallet:.8f}", "cw": f"{acct.wallet:.8f}", "bc": "0"}],
            "P": [{"s": self.m.symbols[i], "pa": self.fq(i, pos.amt), "ep": f"{pos.entry:.8f}",
                   "bep": f"{pos.entry:.8f}", "cr": "0", "up": f"{up:.8f}",
                   "mt": "isolated" if i in acct.isolated else "cross", "iw": "0",
                   "ps": "BOTH"}]}}
