"""Execution client: orders on a Binance-USDT-M-compatible venue with fills, fallback, reconcile and kill.

Design notes: ``docs/design/prod.execution.md``.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Callable

from prod.execution import schemas as X
from prod.execution.errors import (KillSwitchActive, OrderRejected, UnknownOutcome, VenueUnavailable)
from prod.execution.orders import (CLIENT_ID_PREFIX, BadFill, Fill, IllegalTransition, Order, OrderStatus,
                                   client_order_id)
from prod.execution.rest import OrderRestClient
from prod.execution.user_stream import UserStream
from prod.venue.errors import MalformedMessage

log = logging.getLogger(__name__)
S = OrderStatus


@dataclass(frozen=True)
class OrderIntent:
    """What to send; quantities and prices as decimal strings already on the symbol's step/tick."""

    client_id: str
    symbol: str
    side: str                     # BUY | SELL
    qty: str
    type: str = "MARKET"
    price: str | None = None
    tif: str | None = None        # GTC | IOC for LIMIT
    reduce_only: bool = False
    meta: dict = field(default_factory=dict)
    stop_price: str | None = None     # STOP_MARKET: the trigger price, on the tick
    working_type: str | None = None   # STOP_MARKET: MARK_PRICE | CONTRACT_PRICE (the venue's default)


@dataclass
class ExecStats:
    submitted: int = 0
    rejected: int = 0
    unknown_outcome: int = 0
    lost: int = 0
    adopted: int = 0
    polls: int = 0
    rest_fills: int = 0
    stream_fills: int = 0
    unknown_client_id: int = 0
    illegal: int = 0
    bad_fills: int = 0
    stale: int = 0
    fees_converted: int = 0


@dataclass
class _Track:
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    last_seen: float = 0.0
    next_poll: float = 0.0
    poll_gap: float = 0.0
    unknown_since: float | None = None
    needs_check: bool = False


class ExecutionClient:
    """Orders, fills and account state against one venue account (see the module docstring)."""

    def __init__(self, rest: OrderRestClient, ws_base: str | None, *,
                 on_order: Callable[[str, dict], None] | None = None, poll_interval_s: float = 0.1,
                 stream_silence_s: float = 1.0, poll_max_s: float = 10.0, lost_after_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, on_account: Callable[[Any], None] | None = None):
        self.rest = rest
        self.on_order = on_order
        self.on_account = on_account
        self.poll_interval_s, self.stream_silence_s = poll_interval_s, stream_silence_s
        self.poll_max_s, self.lost_after_s = poll_max_s, lost_after_s
        self.clock = clock
        self.orders: dict[str, Order] = {}
        self._track: dict[str, _Track] = {}
        self.rules: dict[str, X.SymbolRules] = {}
        self.stats = ExecStats()
        self.halted = False
        self.last_account: X.AccountUpdate | None = None
        self.algos: dict[str, X.AlgoUpdate] = {}     # our conditional (algo) orders by clientAlgoId, last state
        self.fee_rates: X.FeeRates | None = None     # the account's rates (preflight): books non-USDT commissions
        self.stream = UserStream(rest, ws_base, self._on_stream, self._on_connect) if ws_base else None
        self._tasks: list[asyncio.Task] = []
        self._sweep_all = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle
    async def start(self, stream_timeout_s: float = 10.0) -> None:
        """Load symbol rules, open the user stream (wait up to ``stream_timeout_s``), start the poller."""
        self.rules = X.parse_symbol_rules(await self.rest.exchange_info())
        if self.stream is not None:
            self._tasks.append(asyncio.create_task(self.stream.run(), name="user-stream"))
            try:
                await asyncio.wait_for(self.stream.connected.wait(), stream_timeout_s)
            except asyncio.TimeoutError:
                log.warning("user stream not connected after %.0fs; REST polling only until it is", stream_timeout_s)
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="order-poller"))
        self._tasks.append(asyncio.create_task(self._time_loop(), name="server-time"))

    async def _time_loop(self) -> None:
        """Measure the server-time offset every ``rest.time_sync_s``, so an order never waits for a resync."""
        while True:
            await asyncio.sleep(self.rest.time_sync_s)
            try:
                before = self.rest.time_offset_ms
                after = await self.rest.sync_time()
                if abs(after - before) > 500:
                    log.warning("server-time offset moved %d -> %d ms", before, after)
            except Exception as exc:  # noqa: BLE001 - keep the last offset; -1021 resyncs on demand
                log.warning("server-time resync failed (%s); keeping offset %d ms", exc, self.rest.time_offset_ms)

    async def stop(self) -> None:
        if self.stream is not None:
            await self.stream.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    @property
    def stream_up(self) -> bool:
        return self.stream is not None and self.stream.connected.is_set()

    # ------------------------------------------------------------------ events
    def _emit(self, event: str, o: Order) -> bool:
        """Pass the event to the journal hook; False when the hook failed (logged)."""
        if self.on_order is not None:
            try:
                self.on_order(event, o.to_dict())
            except Exception:  # noqa: BLE001 - a journal failure must be loud but not kill the stream
                log.exception("on_order hook failed for %s %s", event, o.client_id)
                return False
        return True

    def _touch(self, cid: str) -> _Track:
        t = self._track.setdefault(cid, _Track())
        t.last_seen = self.clock()
        t.poll_gap = 0.0
        t.next_poll = t.last_seen + self.stream_silence_s
        t.changed.set()
        return t

    def _on_stream(self, ev: Any) -> None:
        if isinstance(ev, X.OrderUpdate):
            self._apply(ev, "stream")
            return
        if isinstance(ev, X.AccountUpdate):
            self.last_account = ev
        elif isinstance(ev, X.AlgoUpdate):
            self._take_algo(ev)
        if self.on_account is not None:
            try:
                self.on_account(ev)
            except Exception:  # noqa: BLE001 - a failing hook must not kill the stream
                log.exception("on_account hook failed for %s", type(ev).__name__)

    async def _on_connect(self) -> None:
        self._sweep_all.set()                 # events while we were away are lost: re-read open orders

    def _take_algo(self, a: X.AlgoUpdate) -> None:
        prev = self.algos.get(a.client_id)
        if prev is None or a.ts_ms >= prev.ts_ms or a.status != X.ALGO_OPEN:
            self.algos[a.client_id] = a

    def _apply(self, u: X.OrderUpdate, source: str) -> None:
        o = self.orders.get(u.client_id)
        if o is None and u.client_id in self.algos:
            return        # the market order one of our algo orders placed: its fills are read by its order id
        if o is None:
            self.stats.unknown_client_id += 1
            log.warning("%s: update for unknown client order id %s (%s %s) dropped", source, u.client_id,
                        u.symbol, u.status.value)
            return
        tr = self._track.setdefault(u.client_id, _Track())
        try:
            if u.symbol != o.symbol or u.side != o.side:
                raise IllegalTransition(f"{o.client_id}: venue reports {u.side} {u.symbol}, "
                                        f"we sent {o.side} {o.symbol}")
            if u.fill is not None and o.add_fill(self._usdt_fee(u.fill, o.symbol)):
                self.stats.stream_fills += source == "stream"
                self._emit("FILL", o)
            before = o.stale_updates
            if o.apply_status(u.status, u.cum_qty, u.update_ms, u.venue_order_id):
                o.unknown_outcome = False
                self._emit(u.status.value, o)
            self.stats.stale += o.stale_updates - before
        except (IllegalTransition, BadFill) as exc:
            if isinstance(exc, BadFill):
                self.stats.bad_fills += 1
            else:
                self.stats.illegal += 1
            log.error("%s: refused update for %s: %s (re-reading the order from the venue)", source, o.client_id, exc)
            tr.needs_check = True
            tr.next_poll = 0.0
            return
        self._touch(u.client_id)

    def _usdt_fee(self, f: Fill, symbol: str) -> Fill:
        """A fill whose commission is in another asset (BNB fee discount) is booked in USDT at the account's
        maker/taker rate (``GET /fapi/v1/commissionRate``): a BNB amount is never booked as USDT."""
        if f.fee_asset == "USDT":
            return f
        if self.fee_rates is None:
            log.error("%s: commission of trade %d is %g %s and the account's commission rate is unknown; booking "
                      "the taker rate of Binance's base tier (0.05%%)", symbol, f.trade_id, f.fee, f.fee_asset)
            rate = 0.0005
        else:
            rate = self.fee_rates.rate(f.maker)
        self.stats.fees_converted += 1
        return replace(f, fee=rate * f.qty * f.price, fee_asset="USDT")

    # ------------------------------------------------------------------ orders
    def format_qty(self, symbol: str, qty: float) -> str:
        """Round ``qty`` down to the symbol's lot step and return it as the venue expects it."""
        return str(self.rules[symbol].round_qty(qty))

    async def submit(self, intent: OrderIntent) -> Order:
        """Send an order once per client id (see the module docstring); return its Order."""
        known = self.orders.get(intent.client_id)
        if known is not None and not (known.status == S.REJECTED and (known.reason or "").startswith("not_sent")):
            return known
        if self.halted and not intent.reduce_only:
            raise KillSwitchActive(f"kill switch active: entry {intent.client_id} refused")
        o = Order(intent.client_id, intent.symbol, intent.side, intent.type, float(intent.qty),
                  None if intent.price is None else float(intent.price), intent.tif, intent.reduce_only,
                  meta=dict(intent.meta))
        self.orders[o.client_id] = o
        self._touch(o.client_id)
        self.stats.submitted += 1
        if not self._emit("SUBMIT", o) and not intent.reduce_only:
            # the journal cannot record the order (full disk): an entry is not sent; a reduceOnly exit is
            o.apply_status(S.REJECTED, reason="not_sent: the journal hook failed for SUBMIT")
            self.stats.rejected += 1
            self._emit("REJECTED", o)
            return o
        params: dict[str, Any] = {"symbol": intent.symbol, "side": intent.side, "type": intent.type,
                                  "quantity": intent.qty, "newClientOrderId": intent.client_id}
        if intent.type == "LIMIT":
            params.update(price=intent.price, timeInForce=intent.tif or "GTC")
        if intent.stop_price is not None:
            params["stopPrice"] = intent.stop_price
        if intent.working_type is not None:
            params["workingType"] = intent.working_type
        if intent.reduce_only:
            params["reduceOnly"] = True
        try:
            body = await self.rest.new_order(**params)
        except VenueUnavailable as exc:
            o.apply_status(S.REJECTED, reason=f"not_sent: {exc}")
            self.stats.rejected += 1
            self._emit("REJECTED", o)
            return o
        except OrderRejected as exc:
            if exc.code == -4116:
                log.warning("%s: venue says the client id is open already; adopting it", o.client_id)
                await self._check(o)
                return o
            o.apply_status(S.REJECTED, reason=f"{exc.code} {exc.msg}")
            self.stats.rejected += 1
            self._emit("REJECTED", o)
            return o
        except UnknownOutcome as exc:
            o.unknown_outcome = True
            self._track[o.client_id].unknown_since = self.clock()
            self._track[o.client_id].next_poll = 0.0
            self.stats.unknown_outcome += 1
            log.warning("%s: outcome unknown (%s); will query it by client id", o.client_id, exc)
            self._emit("UNKNOWN_OUTCOME", o)
            return o
        try:
            self._apply(X.parse_rest_order(body), "rest-ack")
        except MalformedMessage as exc:
            log.error("%s: malformed order answer (%s); will query it", o.client_id, exc)
            self._track[o.client_id].needs_check = True
        return o

    async def wait_final(self, client_id: str, timeout_s: float) -> Order:
        """Wait until the order is final with all its fills seen (or ``timeout_s``); return it."""
        o = self.orders[client_id]
        tr = self._track[client_id]
        deadline = self.clock() + timeout_s
        while True:
            tr.changed.clear()                 # before the check: a change after it wakes the wait below
            if o.terminal and o.missing_qty <= 1e-12:
                break
            left = deadline - self.clock()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(tr.changed.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass
        return o

    async def cancel(self, client_id: str) -> Order:
        """Cancel an open order; an unknown-to-venue answer re-reads it."""
        o = self.orders[client_id]
        if o.terminal:
            return o
        try:
            body = await self.rest.cancel_order(o.symbol, client_id=o.client_id)
            self._apply(X.parse_rest_order(body), "rest-cancel")
        except OrderRejected as exc:
            log.warning("%s: cancel refused (%s); re-reading", client_id, exc.msg)
            await self._check(o)
        return o

    # ------------------------------------------------------------------ REST fallback
    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            sweep = self._sweep_all.is_set() or not self.stream_up
            self._sweep_all.clear()
            now = self.clock()
            for cid, o in list(self.orders.items()):
                tr = self._track.get(cid)
                if tr is None or (o.terminal and o.missing_qty <= 1e-12 and not tr.needs_check):
                    continue
                if sweep or tr.needs_check or now >= tr.next_poll:
                    try:
                        await self._check(o)
                    except Exception as exc:  # noqa: BLE001 - keep polling the others
                        log.warning("poll of %s failed: %s", cid, exc)
                    tr.poll_gap = min(self.poll_max_s, max(self.stream_silence_s, tr.poll_gap * 2))
                    tr.next_poll = self.clock() + (tr.poll_gap if self.stream_up else self.poll_interval_s)

    async def _check(self, o: Order) -> None:
        """Re-read one order (and its missing fills) from the venue."""
        tr = self._track.setdefault(o.client_id, _Track())
        self.stats.polls += 1
        try:
            body = await self.rest.get_order(o.symbol, client_id=o.client_id)
        except OrderRejected as exc:
            if exc.code == -2013 and o.status == S.PENDING_NEW:
                if not o.unknown_outcome:
                    return                    # our POST is still in flight
                since = tr.unknown_since if tr.unknown_since is not None else tr.last_seen
                if self.clock() - since >= self.lost_after_s:
                    o.apply_status(S.REJECTED, reason="lost: the venue never saw it")
                    o.unknown_outcome = False
                    self.stats.lost += 1
                    self._emit("LOST", o)
                    tr.changed.set()
                return
            raise
        tr.needs_check = False
        was_unknown = o.unknown_outcome
        u = X.parse_rest_order(body)
        self._apply(u, "rest")
        if was_unknown and not o.unknown_outcome:
            self.stats.adopted += 1
            self._emit("ADOPTED", o)
        if o.missing_qty > 1e-12 and o.venue_order_id is not None:
            for row in await self.rest.user_trades(o.symbol, order_id=o.venue_order_id, limit=1000):
                oid, f = X.parse_user_trade(row)
                if oid == o.venue_order_id:
                    try:
                        if o.add_fill(self._usdt_fee(f, o.symbol)):
                            self.stats.rest_fills += 1
                            self._emit("FILL", o)
                    except BadFill as exc:
                        self.stats.bad_fills += 1
                        log.error("rest: refused fill for %s: %s", o.client_id, exc)
            self._touch(o.client_id)

    # ------------------------------------------------------------------ restart + kill
    def restore(self, d: dict) -> Order:
        """Rebuild an order from its journaled ``to_dict`` (for :meth:`reconcile`)."""
        o = Order(d["client_id"], d["symbol"], d["side"], d["type"], float(d["qty"]), d.get("price"), d.get("tif"),
                  bool(d.get("reduce_only")), OrderStatus(d["status"]), d.get("venue_order_id"),
                  float(d.get("venue_cum_qty", 0.0)), reason=d.get("reason"), meta=dict(d.get("meta") or {}))
        for f in d.get("fills", []):
            o.fills[int(f["trade_id"])] = Fill(int(f["trade_id"]), float(f["qty"]), float(f["price"]),
                                               float(f["fee"]), bool(f["maker"]), float(f["realized_pnl"]),
                                               int(f["ts_ms"]), str(f.get("fee_asset") or "USDT"))
        self.orders[o.client_id] = o
        self._touch(o.client_id)
        return o

    async def reconcile(self, journal_orders: dict[str, dict]) -> dict:
        """Compare the venue with the journal's orders (last state per client id); adopt, cancel strays, report."""
        opens = [X.parse_rest_order(x) for x in await self.rest.open_orders()]
        positions = X.parse_position_risk(await self.rest.position_risk())
        report: dict[str, list] = {"adopted": [], "lost": [], "final": [], "strays_canceled": [],
                                   "foreign_open_orders": [], "positions": []}
        for cid, d in journal_orders.items():
            o = self.restore(d)
            if o.terminal and o.missing_qty <= 1e-12:
                continue
            if o.status == S.PENDING_NEW:
                o.unknown_outcome = True
                self._track[cid].unknown_since = self.clock() - self.lost_after_s   # a restart waited long enough
            await self._check(o)
            if o.status == S.REJECTED:
                report["lost"].append(cid)
            else:
                report["adopted"].append({"client_id": cid, "status": o.status.value, "filled": o.filled_qty})
        for u in opens:
            known = self.orders.get(u.client_id)
            if u.client_id.startswith(CLIENT_ID_PREFIX) and (known is None or known.terminal):
                try:
                    await self.rest.cancel_order(u.symbol, order_id=u.venue_order_id)
                    report["strays_canceled"].append(u.client_id)
                except OrderRejected as exc:
                    log.warning("reconcile: stray %s could not be cancelled: %s", u.client_id, exc.msg)
            elif not u.client_id.startswith(CLIENT_ID_PREFIX):
                report["foreign_open_orders"].append({"client_id": u.client_id, "symbol": u.symbol})
        report["positions"] = [{"symbol": p.symbol, "amount": p.amount, "entry_price": p.entry_price}
                               for p in positions]
        log.warning("RECONCILE: adopted=%d lost=%d strays_canceled=%d foreign=%d positions=%s",
                    len(report["adopted"]), len(report["lost"]), len(report["strays_canceled"]),
                    len(report["foreign_open_orders"]), report["positions"])
        return report

    async def refresh(self, client_id: str) -> Order:
        """Re-read one of our orders (and its missing fills) from the venue; return it."""
        o = self.orders[client_id]
        await self._check(o)
        return o

    # ------------------------------------------------------------------ conditional (algo) orders
    async def place_algo(self, client_id: str, symbol: str, side: str, type: str, trigger_price: str, *,
                         working_type: str = "MARK_PRICE", close_position: bool = True,
                         qty: str | None = None) -> X.AlgoUpdate:
        """``POST /fapi/v1/algoOrder`` (``algoType=CONDITIONAL``; Binance takes STOP_MARKET only there since
        2025-12-09); return the accepted order. OrderRejected carries the venue's refusal."""
        params: dict[str, Any] = {"algoType": "CONDITIONAL", "symbol": symbol, "side": side, "type": type,
                                  "triggerPrice": trigger_price, "workingType": working_type,
                                  "clientAlgoId": client_id}
        if close_position:
            params["closePosition"] = True
        else:
            params.update(quantity=qty, reduceOnly=True)
        a = X.parse_algo_order(await self.rest.request("POST", "/fapi/v1/algoOrder", params, placing=True))
        self._take_algo(a)
        return a

    async def cancel_algo(self, client_id: str, symbol: str) -> X.AlgoUpdate | None:
        """Cancel one of our algo orders (already final: re-read); return its last known state."""
        try:
            await self.rest.request("DELETE", "/fapi/v1/algoOrder", {"symbol": symbol, "clientAlgoId": client_id})
        except OrderRejected as exc:
            log.info("algo order %s not cancelled (%s %s); re-reading it", client_id, exc.code, exc.msg)
            return await self.refresh_algo(client_id, symbol)
        a = self.algos.get(client_id)
        if a is not None and a.status == X.ALGO_OPEN:
            self.algos[client_id] = dataclasses.replace(a, status="CANCELED")
        return self.algos.get(client_id)

    async def refresh_algo(self, client_id: str, symbol: str) -> X.AlgoUpdate | None:
        """Re-read one of our algo orders from the venue; return it (None: the venue does not know it)."""
        try:
            a = X.parse_algo_order(await self.rest.request("GET", "/fapi/v1/algoOrder",
                                                           {"symbol": symbol, "clientAlgoId": client_id}))
        except OrderRejected:
            return self.algos.get(client_id)
        self._take_algo(a)
        return self.algos.get(client_id)

    async def open_algo_orders(self, symbol: str | None = None) -> list[X.AlgoUpdate]:
        """The venue's open algo orders (``GET /fapi/v1/openAlgoOrders``); ours are remembered."""
        out = [X.parse_algo_order(x) for x in await self.rest.request("GET", "/fapi/v1/openAlgoOrders",
                                                                       {"symbol": symbol})]
        for a in out:
            if a.client_id.startswith(CLIENT_ID_PREFIX):
                self._take_algo(a)
        return out

    async def order_fills(self, symbol: str, order_id: int) -> list[Fill]:
        """The fills of one venue order, read from ``/fapi/v1/userTrades`` (an algo order's market order)."""
        out = []
        for row in await self.rest.user_trades(symbol, order_id=order_id, limit=1000):
            oid, f = X.parse_user_trade(row)
            if oid == order_id:
                out.append(f)
        return out

    async def venue_state(self, symbols: list[str] | None = None, orders: bool = True) -> dict[str, Any]:
        """Read open orders (plain and algo), then positions (with leverage/margin type per symbol), then the wallet;
        return them parsed with ``ms`` (duration) and ``weight`` (REST weight used, ``X-MBX-USED-WEIGHT-1M``).

        ``symbols`` None reads every symbol's open orders (weight 40 each kind on Binance), a list only those
        symbols' (weight 1 each); ``orders`` False reads no plain open orders (reconcile at start just did).
        """
        t0, w0 = time.perf_counter(), self.rest.used_weight
        opens: list[X.OrderUpdate] = []
        algos: list[X.AlgoUpdate] = []
        for sym in ([None] if symbols is None else symbols):
            if orders:
                opens += [X.parse_rest_order(x) for x in await self.rest.open_orders(sym)]
            algos += await self.open_algo_orders(sym)
        risk = await self.rest.position_risk()
        wallet = X.parse_wallet(await self.rest.account())
        w1 = self.rest.used_weight
        return {"open_orders": opens, "open_algos": algos, "positions": X.parse_position_risk(risk),
                "settings": X.parse_symbol_settings(risk), "wallet": wallet,
                "ms": (time.perf_counter() - t0) * 1e3, "weight": w1 - w0 if w1 >= w0 else w1}

    async def income(self, symbol: str | None, start_ms: int, income_type: str = "FUNDING_FEE",
                     limit: int = 1000) -> tuple[X.IncomeRow, ...]:
        """``GET /fapi/v1/income`` rows of ``income_type`` since ``start_ms`` (of one symbol, or all)."""
        body = await self.rest.request("GET", "/fapi/v1/income", {"symbol": symbol, "incomeType": income_type,
                                                                  "startTime": int(start_ms), "limit": limit})
        return X.parse_income(body)

    async def positions(self, symbol: str | None = None) -> tuple[X.PositionInfo, ...]:
        """Return the venue's non-zero positions (of one symbol, or all)."""
        return X.parse_position_risk(await self.rest.position_risk(symbol))

    async def kill(self, attempts: int = 3, fill_timeout_s: float = 5.0) -> dict:
        """Halt entries, cancel all open orders (conditional ones: ours, and those in symbols with a position),
        flatten all positions with reduceOnly MARKET orders."""
        self.halted = True
        t0 = time.monotonic()
        report: dict[str, Any] = {"canceled_symbols": [], "flatten_orders": [], "flat": False}
        for sym in sorted({X.parse_rest_order(x).symbol for x in await self.rest.open_orders()}):
            await self.rest.cancel_all(sym)
            report["canceled_symbols"].append(sym)
        # conditional orders: ours (the protective stops) and any in a symbol with a position, one symbol at a time
        # (weight 1, not the 40 of an all-symbol read); a closePosition stop elsewhere has no position to close and
        # expires with it (GTE_GTC)
        algo_syms = {a.symbol for a in self.algos.values() if a.status == X.ALGO_OPEN}
        algo_syms |= {p.symbol for p in await self.positions()}
        for sym in sorted(algo_syms):
            try:
                await self.rest.request("DELETE", "/fapi/v1/algoOpenOrders", {"symbol": sym})
                report.setdefault("canceled_algo_symbols", []).append(sym)
            except OrderRejected as exc:      # a venue without the algo service: nothing conditional to cancel
                log.warning("kill: conditional orders of %s not cancelled (%s %s)", sym, exc.code, exc.msg)
        for k in range(attempts):
            poss = await self.positions()
            if not poss:
                report["flat"] = True
                break
            stamp = f"{int(time.time() * 1000)}"
            sent = []
            for p in poss:
                side = "BUY" if p.amount < 0 else "SELL"
                rules = self.rules.get(p.symbol)
                qty = str(rules.round_qty(abs(p.amount))) if rules else str(Decimal(repr(abs(p.amount))))
                cid = client_order_id("kill", stamp, k, side, p.symbol)
                sent.append(await self.submit(OrderIntent(cid, p.symbol, side, qty, reduce_only=True)))
            for o in sent:
                await self.wait_final(o.client_id, fill_timeout_s)
                report["flatten_orders"].append({"client_id": o.client_id, "symbol": o.symbol, "side": o.side,
                                                 "status": o.status.value, "filled": o.filled_qty})
        else:
            report["flat"] = not await self.positions()
        report["elapsed_s"] = round(time.monotonic() - t0, 3)
        log.critical("KILL SWITCH: %s", report)
        return report

    def clear_kill(self) -> None:
        self.halted = False
