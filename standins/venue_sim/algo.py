"""Conditional (algo) orders of the venue simulator: Binance USDT-M's algo-order service.

Design notes: ``docs/design/standins.venue_sim.md``.
"""
from __future__ import annotations

from dataclasses import dataclass

from standins.venue_sim.exchange import (CLIENT_ID_RE, CONDITIONAL_TYPES, Account, ExchangeError, Position,
                                         SimExchange, _units, check_position_side)

MAX_ALGO_PER_SYMBOL = 10
SIMULATED = ("STOP_MARKET", "TAKE_PROFIT_MARKET")


@dataclass
class AlgoOrder:
    algo_id: int
    client_id: str
    symbol: str
    i: int
    side: str
    type: str
    qty: int                  # lot steps (0 with closePosition)
    trigger: int              # ticks
    working_type: str
    close_position: bool
    reduce_only: bool
    price_protect: bool
    tif: str
    status: str = "NEW"
    create_ms: int = 0
    update_ms: int = 0
    trigger_ms: int = 0
    actual_id: str = ""
    actual_qty: str = "0"
    actual_avg: str = "0"
    reason: str = ""

    @property
    def open(self) -> bool:
        return self.status == "NEW"


def _bool(p: dict[str, str], name: str) -> bool:
    raw = (p.get(name) or "false").lower()
    if raw not in ("true", "false"):
        raise ExchangeError(-1130, f"Data sent for parameter '{name}' is not valid.")
    return raw == "true"


class AlgoDesk:
    """The algo-order service over one :class:`SimExchange`."""

    def __init__(self, ex: SimExchange) -> None:
        self.ex = ex
        self._aid = 3_000_000
        ex.on_flat = self._on_flat

    def price_for(self, a: AlgoOrder) -> float:
        m = self.ex.m
        if a.working_type == "MARK_PRICE":
            return float(m.mid[a.i] * (1.0 + m.basis[a.i]))
        return float(m.k_open["c"][a.i])           # last trade price

    def _hit(self, a: AlgoOrder, px: float) -> bool:
        trig = a.trigger * float(self.ex.m.tick_size[a.i])
        up = (a.type == "STOP_MARKET") == (a.side == "BUY")      # triggers when the price rises to it
        return px >= trig if up else px <= trig

    # ------------------------------------------------------------------ requests
    def place(self, api_key: str, p: dict[str, str], now_ms: int) -> AlgoOrder:
        """Validate and accept a conditional order; raise ExchangeError as Binance refuses it."""
        ex = self.ex
        acct = ex.accounts[api_key]
        for name in ("algoType", "symbol", "side", "type"):
            if not p.get(name):
                raise ExchangeError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        if p["algoType"] != "CONDITIONAL":
            raise ExchangeError(-1130, "Data sent for parameter 'algoType' is not valid.")
        i = ex.m.index.get(p["symbol"])
        if i is None:
            raise ExchangeError(-1121, "Invalid symbol.")
        side, otype = p["side"], p["type"]
        if side not in ("BUY", "SELL"):
            raise ExchangeError(-1117, "Invalid side.")
        if otype not in CONDITIONAL_TYPES:
            raise ExchangeError(-1116, "Invalid orderType.")
        if otype not in SIMULATED:
            raise ExchangeError(-1116, f"Invalid orderType. (venue_sim simulates {', '.join(SIMULATED)} only)")
        check_position_side(acct, p)
        close = _bool(p, "closePosition")
        reduce = _bool(p, "reduceOnly")
        protect = _bool(p, "priceProtect")
        if close and p.get("quantity"):
            raise ExchangeError(-1106, "Parameter 'quantity' sent when not required.")
        if close and reduce:
            raise ExchangeError(-1106, "Parameter 'reduceOnly' sent when not required.")
        qty = 0
        if not close:
            if not p.get("quantity"):
                raise ExchangeError(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
            qty = _units(p["quantity"], float(ex.m.step_size[i]), ex.m.qty_dec[i], "quantity")
            if qty <= 0:
                raise ExchangeError(-4003, "Quantity less than or equal to zero.")
        if not p.get("triggerPrice"):
            raise ExchangeError(-1102, "Mandatory parameter 'triggerPrice' was not sent, was empty/null, or malformed.")
        trig = _units(p["triggerPrice"], float(ex.m.tick_size[i]), ex.m.price_dec[i], "triggerPrice")
        if trig <= 0:
            raise ExchangeError(-4006, "Stop price less than zero.")
        wt = p.get("workingType") or "CONTRACT_PRICE"
        if wt not in ("MARK_PRICE", "CONTRACT_PRICE"):
            raise ExchangeError(-1130, "Data sent for parameter 'workingType' is not valid.")
        tif = p.get("timeInForce") or "GTC"
        if tif not in ("GTC", "IOC", "FOK", "GTX", "GTD"):
            raise ExchangeError(-1115, "Invalid timeInForce.")
        cid = p.get("clientAlgoId") or f"simalgo_{self._aid + 1}"
        if not CLIENT_ID_RE.match(cid):
            raise ExchangeError(-4015, "Client order id is not valid.")
        if cid in acct.algo_by_client:
            raise ExchangeError(-4116, "ClientOrderId is duplicated.")
        if sum(1 for a in acct.algos.values() if a.open and a.i == i) >= MAX_ALGO_PER_SYMBOL:
            raise ExchangeError(-4045, "Reach max stop order limit.")
        self._aid += 1
        a = AlgoOrder(self._aid, cid, p["symbol"], i, side, otype, qty, trig, wt, close, reduce, protect,
                      "GTE_GTC" if close else tif, create_ms=now_ms, update_ms=now_ms)
        if self._hit(a, self.price_for(a)):
            self._aid -= 1
            raise ExchangeError(-2021, "Order would immediately trigger.")
        acct.algos[a.algo_id] = a
        acct.algo_by_client[cid] = a.algo_id
        self._event(acct, a, now_ms)
        return a

    def find(self, api_key: str, algo_id: int | None, client_id: str | None) -> AlgoOrder | None:
        acct = self.ex.accounts[api_key]
        if algo_id is not None:
            return acct.algos.get(algo_id)
        for a in reversed(list(acct.algos.values())):
            if a.client_id == client_id:
                return a
        return None

    def cancel(self, api_key: str, a: AlgoOrder, now_ms: int) -> None:
        if not a.open:
            raise ExchangeError(-2011, "Unknown order sent.")
        self._finish(self.ex.accounts[api_key], a, "CANCELED", now_ms)

    def cancel_all(self, api_key: str, symbol: str, now_ms: int) -> int:
        acct = self.ex.accounts[api_key]
        mine = [a for a in acct.algos.values() if a.open and a.symbol == symbol]
        for a in mine:
            self._finish(acct, a, "CANCELED", now_ms)
        return len(mine)

    def open_orders(self, api_key: str, symbol: str | None) -> list[AlgoOrder]:
        return [a for a in self.ex.accounts[api_key].algos.values()
                if a.open and (symbol is None or a.symbol == symbol)]

    # ------------------------------------------------------------------ matching
    def on_tick(self, now_ms: int) -> None:
        """Trigger every open algo order whose price condition holds."""
        for key, acct in self.ex.accounts.items():
            for a in [a for a in acct.algos.values() if a.open]:
                if self._hit(a, self.price_for(a)):
                    self._trigger(key, acct, a, now_ms)

    def _trigger(self, key: str, acct: Account, a: AlgoOrder, now_ms: int) -> None:
        ex = self.ex
        a.status, a.trigger_ms, a.update_ms = "TRIGGERING", now_ms, now_ms
        qty = a.qty
        if a.close_position:
            qty = abs(acct.positions.get(a.i, Position()).amt)
        if qty <= 0:
            a.reason = "Reduce Only reject"
            self._finish(acct, a, "EXPIRED", now_ms)
            return
        p = {"symbol": a.symbol, "side": a.side, "type": "MARKET", "quantity": ex.fq(a.i, qty),
             "reduceOnly": "true" if (a.close_position or a.reduce_only) else "false"}
        if a.client_id not in acct.by_client:
            p["newClientOrderId"] = a.client_id
        try:
            o = ex.place(key, p, now_ms, trigger=(a.type, a.trigger))
        except ExchangeError as exc:
            a.reason = exc.msg
            self._finish(acct, a, "EXPIRED" if exc.code == -2022 else "REJECTED", now_ms)
            return
        a.actual_id = str(o.order_id)
        a.actual_qty = ex.fq(a.i, o.filled)
        a.actual_avg = f"{o.quote / (o.filled * float(ex.m.step_size[a.i])):.8f}" if o.filled else "0"
        a.status = "TRIGGERED"
        self._event(acct, a, now_ms)
        self._finish(acct, a, "FINISHED", now_ms)

    def _on_flat(self, acct: Account, i: int, now_ms: int) -> None:
        for a in list(acct.algos.values()):
            if a.open and a.i == i and a.close_position:
                self._finish(acct, a, "EXPIRED", now_ms)

    def _finish(self, acct: Account, a: AlgoOrder, status: str, now_ms: int) -> None:
        a.status, a.update_ms = status, now_ms
        acct.algo_by_client.pop(a.client_id, None)
        self._event(acct, a, now_ms)
        closed = [x for x, b in acct.algos.items() if not b.open and b.status != "TRIGGERING"]
        for x in closed[:-1000]:            # keep the last 1,000 closed algo orders queryable
            del acct.algos[x]

    # ------------------------------------------------------------------ wire shapes
    def order_json(self, a: AlgoOrder) -> dict:
        """The algo order of ``/fapi/v1/algoOrder`` and ``openAlgoOrders`` answers."""
        ex = self.ex
        return {"algoId": a.algo_id, "clientAlgoId": a.client_id, "algoType": "CONDITIONAL", "orderType": a.type,
                "symbol": a.symbol, "side": a.side, "positionSide": "BOTH", "timeInForce": a.tif,
                "quantity": ex.fq(a.i, a.qty), "algoStatus": a.status, "actualOrderId": a.actual_id,
                "actualPrice": a.actual_avg, "triggerPrice": ex.fp(a.i, a.trigger), "price": ex.fp(a.i, 0),
                "icebergQuantity": None, "tpTriggerPrice": "0", "tpPrice": "0", "slTriggerPrice": "0", "slPrice": "0",
                "tpOrderType": "", "selfTradePreventionMode": "EXPIRE_MAKER", "workingType": a.working_type,
                "priceMatch": "NONE", "closePosition": a.close_position, "priceProtect": a.price_protect,
                "reduceOnly": a.reduce_only, "createTime": a.create_ms, "updateTime": a.update_ms,
                "triggerTime": a.trigger_ms, "goodTillDate": 0}

    def _event(self, acct: Account, a: AlgoOrder, now_ms: int) -> None:
        ex = self.ex
        o = {"caid": a.client_id, "aid": a.algo_id, "at": "CONDITIONAL", "o": a.type, "s": a.symbol, "S": a.side,
             "ps": "BOTH", "f": a.tif, "q": ex.fq(a.i, a.qty), "X": a.status, "ai": a.actual_id,
             "ap": a.actual_avg, "aq": a.actual_qty, "act": "MARKET" if a.actual_id else "0",
             "tp": ex.fp(a.i, a.trigger), "p": ex.fp(a.i, 0), "V": "EXPIRE_MAKER", "wt": a.working_type, "pm": "NONE",
             "cp": a.close_position, "pP": a.price_protect, "R": a.reduce_only, "tt": a.trigger_ms, "gtd": 0}
        if a.reason:
            o["rm"] = a.reason
        acct.outbox.append({"e": "ALGO_UPDATE", "T": now_ms, "E": now_ms, "o": o})
