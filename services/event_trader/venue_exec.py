"""Venue execution for the trader: the :class:`~services.event_trader.paper.PaperAccount` interface on real orders.

:class:`VenueAccount` keeps PaperAccount's fields (capital, peak_capital, position, trades, day,
day_start_capital, day_trades, fees_paid, history) and methods (``roll_day``, ``open``, ``close``,
``to_dict``) but fills through :mod:`prod.execution` on a Binance-USDT-M-compatible venue: the
simulator for paper (``DOLPHIN_VENUE_REST`` / ``_WS`` at ``standins.venue_sim``) or the real venue
— the same code, only URLs and keys differ. Every order event goes into the trade journal's audit
hash chain (``ORDER_<event>``), through :class:`~services.event_trader.journal.HeldAppends`: a write that
fails (full disk) is held in order and retried, never lost while the trader runs.

* ``open``: quantity = notional / the expected fill price (best bid for a sell, best ask for a
  buy, else the scan price ± slippage), rounded down to the lot step; one MARKET order whose client
  id is derived from the decision (strategy, day, scan, side, trade id), so the same decision can
  never send a second order; the position is what filled (VWAP entry, actual notional, actual
  fees). Nothing filled → :class:`EntryNotFilled` (no position). A decision whose client id is known
  already (replayed after a restart: the journal's orders are restored) → :class:`DuplicateDecision`,
  nothing sent. Before sending, the venue's
  position in that symbol is read: a position the account does not know refuses the entry.
* ``close``: reduceOnly MARKET orders until the position is flat (at most ``max_exit_rounds``:
  what the visible depth cannot take is sent again); PnL from the fills. An exit that cannot
  complete engages the kill switch.
* Kill switch: a watcher polls the flag file every 0.2 s; once engaged it halts entries, cancels
  all open orders and flattens every position (reduceOnly), books our position's flattening as an
  exit (``kill_exits``; when the kill CLI flattened it first, from the venue's closing trades after
  the entry) and keeps entries halted until the flag is cleared.
* :meth:`connect` reconciles at start: the journal's unfinished orders are re-read and adopted,
  our stray open orders cancelled, and the restored position compared with the venue's: the same
  → kept; the venue flat → the position is dropped and reported; a venue position in a symbol where
  the journal shows our filled entry that the snapshot never saw (a crash between fill and journal)
  → flattened with reduceOnly orders (the engine never saw that entry, so it is not adopted); a
  position we never ordered → reported, and entries in that symbol are refused.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import asdict
from typing import Any, Mapping

from prod.execution import (DuplicateDecision, EntriesRefused, EntryNotFilled, ExecConfig, ExecutionRuntime,
                            KillSwitchActive, OrderIntent, OrderStatus, client_order_id)
from prod.execution.killswitch import KillSwitch
from prod.execution.signing import Credentials
from services.event_trader.journal import HeldAppends, Journal
from services.event_trader.paper import OTHER_SLIP, Book, PaperPosition, fill_price

log = logging.getLogger(__name__)


class VenueAccount:
    """PaperAccount-compatible account whose fills are venue orders (see the module docstring)."""

    def __init__(self, runtime: ExecutionRuntime, journal: Journal, capital: float, *, strategy: str = "blue",
                 kill_switch: KillSwitch | None = None, fill_timeout_s: float = 10.0, max_exit_rounds: int = 5,
                 state: Mapping[str, Any] | None = None, kill_poll_s: float = 0.2, held: HeldAppends | None = None,
                 gate: Any = None):
        self.runtime, self.journal, self.strategy = runtime, journal, strategy
        self.held = held or HeldAppends(journal)     # order events and reports survive a full disk (held, retried)
        self.kill_switch = kill_switch
        self.gate = gate              # prod.execution.preflight.EntryGate: entries the preflight refuses
        self.fill_timeout_s, self.max_exit_rounds = fill_timeout_s, max_exit_rounds
        self.capital = self.peak_capital = self.day_start_capital = float(capital)
        self.position: PaperPosition | None = None
        self.qty = 0.0
        self.entry_ts_ms = 0          # venue time of the entry's last fill (finds a later flattening's fills)
        self.trades = self.day_trades = 0
        self.day: str | None = None
        self.fees_paid = 0.0
        self.history: list = []
        self.kill_exits: list[dict] = []
        self.reconcile_report: dict | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._kill_handled = False
        self._kill_poll_s = kill_poll_s
        self._watcher: threading.Thread | None = None
        if state:
            self._load(state)

    # ------------------------------------------------------------------ construction
    @classmethod
    def connect(cls, cfg: ExecConfig, journal: Journal, capital: float, *, state: Mapping[str, Any] | None = None,
                creds: Credentials | None = None, kill_switch: KillSwitch | None = None, **kw: Any) -> "VenueAccount":
        """Start the execution runtime (journal hooked in), reconcile with the venue, start the kill watcher."""
        held = HeldAppends(journal)
        runtime = ExecutionRuntime(cfg, creds or Credentials.from_env(), on_order=held.order_event)
        runtime.start()
        acct = cls(runtime, journal, capital, state=state, kill_switch=kill_switch, fill_timeout_s=cfg.fill_timeout_s,
                   held=held, **kw)
        try:
            acct.reconcile()
        except BaseException:
            runtime.stop()
            raise
        acct.start_watcher()
        return acct

    def _load(self, d: Mapping[str, Any]) -> None:
        pos = d.get("position")
        self.capital, self.peak_capital = float(d["capital"]), float(d["peak_capital"])
        self.position = None if pos is None else PaperPosition(**pos)
        self.trades, self.day = int(d.get("trades", 0)), d.get("day")
        self.day_start_capital = float(d.get("day_start_capital", self.capital))
        self.day_trades, self.fees_paid = int(d.get("day_trades", 0)), float(d.get("fees_paid", 0.0))
        self.history = list(d.get("history", []))
        self.qty = float((d.get("venue") or {}).get("qty", 0.0))
        self.entry_ts_ms = int((d.get("venue") or {}).get("entry_ts_ms", 0))
        if self.position is not None and not self.qty > 0:
            raise ValueError("venue account state: a position without a venue quantity")

    def to_dict(self) -> dict[str, Any]:
        """PaperAccount's dict plus ``venue`` (position quantity); restores with ``state=``."""
        return {"capital": self.capital, "peak_capital": self.peak_capital,
                "position": None if self.position is None else asdict(self.position), "trades": self.trades,
                "day": self.day, "day_start_capital": self.day_start_capital, "day_trades": self.day_trades,
                "fees_paid": self.fees_paid, "history": self.history, "venue": {"qty": self.qty, "entry_ts_ms": self.entry_ts_ms}}

    def roll_day(self, day: str) -> None:
        self.day, self.day_start_capital, self.day_trades = day, self.capital, 0

    @property
    def client(self):
        return self.runtime.client

    def _call(self, fn, *args, timeout_s: float | None = None, **kw):
        return self.runtime.call(fn, *args, timeout_s=timeout_s or self.fill_timeout_s + 10.0, **kw)

    # ------------------------------------------------------------------ orders
    def _fill_order(self, intent: OrderIntent):
        o = self._call(self.client.submit, intent)
        o = self._call(self.client.wait_final, o.client_id, self.fill_timeout_s)
        if not o.terminal:
            log.error("order %s not final after %.0fs (%s); cancelling", o.client_id, self.fill_timeout_s,
                      o.status.value)
            self._call(self.client.cancel, o.client_id)
            o = self._call(self.client.wait_final, o.client_id, 3.0)
        return o

    def kill_active(self) -> bool:
        return (self.kill_switch is not None and self.kill_switch.active()) or bool(self.client and self.client.halted)

    def open(self, trade_id: int, symbol: str, direction: int, notional: float, book: Book | None,
             ref_price: float, now: float, scan: int, max_book_age_s: float = 30.0) -> dict:
        """Enter with one MARKET order; return the fill record (PaperAccount.open's keys, source ``venue``)."""
        with self._lock:
            if self.kill_active():
                raise KillSwitchActive(f"kill switch engaged: entry #{trade_id} {symbol} refused")
            if self.gate is not None and (why := self.gate.refusal(symbol)) is not None:
                raise EntriesRefused(f"entry #{trade_id} {symbol} refused: {why}")
            if self.position is not None:
                raise RuntimeError(f"position {self.position.trade_id} already open; refusing a second entry")
            if not (math.isfinite(notional) and notional > 0):
                raise ValueError(f"bad notional {notional!r}")
            expected, _src = fill_price(direction, True, book, ref_price, now, max_book_age_s, OTHER_SLIP)
            rules = self.client.rules.get(symbol)
            if rules is None:
                raise ValueError(f"{symbol}: not a symbol of the venue")
            qty = rules.round_qty(notional / expected)
            if qty <= 0 or float(qty) * expected < rules.min_notional:
                raise ValueError(f"{symbol}: notional {notional:.2f} at {expected:.6g} is below the venue minimum")
            held = [p for p in self._call(self.client.positions, symbol) if p.symbol == symbol]
            if held:
                raise RuntimeError(f"{symbol}: the venue holds {held[0].amount} the account does not know; "
                                   "refusing the entry (reconcile first)")
            side = "SELL" if direction < 0 else "BUY"
            cid = client_order_id(self.strategy, self.day or "-", scan, side, f"entry-{trade_id}")
            if cid in self.client.orders:
                prev = self.client.orders[cid]
                raise DuplicateDecision(f"entry #{trade_id} {symbol} at scan {scan} was sent already as {cid} "
                                        f"({prev.status.value}, filled {prev.filled_qty}); not sending it again")
            o = self._fill_order(OrderIntent(cid, symbol, side, str(qty), meta={
                "leg": "entry", "trade_id": trade_id, "direction": direction, "scan": scan}))
            if o.filled_qty <= 0:
                raise EntryNotFilled(f"entry #{trade_id} {symbol}: {o.status.value} with nothing filled "
                                     f"({o.reason or 'no reason given'})")
            fee = o.fees
            self.capital -= fee
            self.fees_paid += fee
            self.qty = o.filled_qty
            self.entry_ts_ms = max(f.ts_ms for f in o.fills.values())
            actual = o.filled_qty * o.avg_price
            self.position = PaperPosition(trade_id, symbol, direction, o.avg_price, actual, fee, now, scan, "venue")
            return {"side": side, "trade_id": trade_id, "symbol": symbol, "price": o.avg_price, "notional": actual,
                    "fee": fee, "source": "venue", "ts": now, "scan_number": scan, "client_id": cid,
                    "venue_order_id": o.venue_order_id, "status": o.status.value, "qty": o.filled_qty,
                    "fills": len(o.fills), "requested_notional": notional, "expected_price": expected}

    def close(self, reason: str, book: Book | None, ref_price: float, now: float, scan: int,
              max_book_age_s: float = 30.0) -> dict:
        """Exit with reduceOnly MARKET orders until flat; return the fill record with realised PnL."""
        with self._lock:
            pos = self.position
            if pos is None:
                raise RuntimeError("no open position to close")
            side = "BUY" if pos.direction < 0 else "SELL"
            rules = self.client.rules[pos.symbol]
            left, fills = self.qty, []
            ids = []
            for k in range(self.max_exit_rounds):
                q = rules.round_qty(left)
                if q <= 0:
                    break
                cid = client_order_id(self.strategy, self.day or "-", scan, side, f"exit-{pos.trade_id}-{k}")
                o = self._fill_order(OrderIntent(cid, pos.symbol, side, str(q), reduce_only=True, meta={
                    "leg": "exit", "trade_id": pos.trade_id, "reason": reason, "scan": scan}))
                ids.append(cid)
                fills += list(o.fills.values())
                left -= o.filled_qty
                if o.status == OrderStatus.REJECTED and (o.reason or "").startswith("-2022"):
                    left = 0.0            # reduceOnly refused: the venue holds nothing more to close
                    break
            if rules.round_qty(left) > 0:
                log.critical("exit of #%d %s incomplete (%.8g left); engaging the kill switch", pos.trade_id,
                             pos.symbol, left)
                if self.kill_switch is not None:
                    self.kill_switch.engage(f"exit of trade {pos.trade_id} incomplete")
            rec = self._book_exit(pos, fills, reason, now, scan)
            rec.update(client_ids=ids, incomplete=rules.round_qty(left) > 0)
            return rec

    def _book_exit(self, pos: PaperPosition, fills: list, reason: str, now: float, scan: int | None) -> dict:
        qty = sum(f.qty for f in fills)
        price = sum(f.qty * f.price for f in fills) / qty if qty > 0 else pos.entry_price
        share = min(1.0, qty / self.qty) if self.qty > 0 else 0.0
        gross = pos.direction * (price - pos.entry_price) / pos.entry_price * pos.notional * share
        fee = sum(f.fee for f in fills)
        self.capital += gross - fee
        self.fees_paid += fee
        self.peak_capital = max(self.peak_capital, self.capital)
        self.trades += 1
        self.day_trades += 1
        rec = {"side": "BUY" if pos.direction < 0 else "SELL", "trade_id": pos.trade_id, "symbol": pos.symbol,
               "price": price, "entry_price": pos.entry_price, "notional": pos.notional, "fee": fee, "gross": gross,
               "net": gross - fee - pos.entry_fee, "reason": reason, "source": "venue", "ts": now, "scan_number": scan,
               "capital_after": self.capital, "qty": qty, "fills": len(fills)}
        self.history = (self.history + [rec])[-50:]
        self.position, self.qty = None, 0.0
        return rec

    # ------------------------------------------------------------------ reconcile + kill
    def reconcile(self) -> dict:
        """Reconcile journal, account and venue (see the module docstring); return and journal the report."""
        with self._lock:
            if not self.held.flush():
                log.error("reconcile: %d order event(s) still held (journal write failing): the venue's side decides",
                          len(self.held.held))
            rep = self._call(self.client.reconcile, self.journal.order_states(), timeout_s=60.0)
            venue = {p["symbol"]: p for p in rep["positions"]}
            pos = self.position
            actions = []
            if pos is not None:
                v = venue.pop(pos.symbol, None)
                if v is None or (v["amount"] < 0) != (pos.direction < 0):
                    actions.append({"dropped_position": pos.trade_id, "symbol": pos.symbol, "venue": v})
                    log.critical("RECONCILE: journal position #%d %s is not on the venue; dropped", pos.trade_id,
                                 pos.symbol)
                    self.position, self.qty = None, 0.0
                elif abs(abs(v["amount"]) - self.qty) > 1e-9:
                    actions.append({"qty_corrected": pos.trade_id, "from": self.qty, "to": abs(v["amount"])})
                    self.qty = abs(v["amount"])
            entered = {o.meta.get("trade_id"): o.symbol for o in self.client.orders.values()
                       if o.meta.get("leg") == "entry" and o.filled_qty > 0}
            exited = {o.meta.get("trade_id") for o in self.client.orders.values()
                      if o.meta.get("leg") == "exit" and o.filled_qty > 0}
            ours = {sym for tid, sym in entered.items() if tid not in exited}     # entries never exited
            for sym, v in venue.items():
                if sym in ours:
                    side = "BUY" if v["amount"] < 0 else "SELL"
                    q = self.client.rules[sym].round_qty(abs(v["amount"]))
                    cid = client_order_id(self.strategy, "reconcile", int(time.time()), side, sym)
                    o = self._fill_order(OrderIntent(cid, sym, side, str(q), reduce_only=True,
                                                     meta={"leg": "reconcile-flatten"}))
                    actions.append({"flattened_orphan": sym, "amount": v["amount"], "status": o.status.value})
                else:
                    actions.append({"foreign_position": sym, "amount": v["amount"]})
            rep["actions"] = actions
            self.held.append("RECONCILE", rep)
            self.reconcile_report = rep
            return rep

    def start_watcher(self) -> None:
        if self.kill_switch is None or self._watcher is not None:
            return
        self._watcher = threading.Thread(target=self._watch_kill, name="kill-watcher", daemon=True)
        self._watcher.start()

    def _watch_kill(self) -> None:
        while not self._stop.wait(self._kill_poll_s):
            if self.held.held:
                self.held.flush()
            try:
                active = self.kill_switch.active()
                if active and not self._kill_handled:
                    self.kill()
                elif not active and self._kill_handled:
                    self._kill_handled = False
                    self.client.clear_kill()
                    self.held.append("KILL_CLEARED", {})
                    log.warning("kill switch cleared: entries allowed again")
            except Exception:  # noqa: BLE001 - the watcher must survive a venue hiccup and retry
                log.exception("kill watcher")

    def kill(self) -> dict:
        """Cancel everything and flatten (reduceOnly); book our position's flattening; journal the report."""
        self.client.halted = True
        flag = self.kill_switch.read() if self.kill_switch is not None else None
        rep = self._call(self.client.kill, timeout_s=60.0)
        with self._lock:
            pos = self.position
            if pos is not None:
                fills = [f for r in rep["flatten_orders"] if r["symbol"] == pos.symbol
                         for f in self.client.orders[r["client_id"]].fills.values()]
                if not fills:       # flattened by someone else (the kill CLI): book the venue's closing trades
                    fills = self._call(self._closing_trades, pos)
                self.kill_exits.append(self._book_exit(pos, fills, "KILL_SWITCH", 0.0, None))
            rep["flag"] = flag
            self.held.append("KILL_SWITCH", rep)
            self._kill_handled = True
        return rep

    async def _closing_trades(self, pos: PaperPosition) -> list:
        """The venue's trades that closed ``pos`` after its entry (newest last), up to its quantity."""
        from prod.execution import schemas as X
        side = "BUY" if pos.direction < 0 else "SELL"
        rows = await self.client.rest.user_trades(pos.symbol, limit=1000)
        out, left = [], self.qty
        for row in rows:
            if row.get("side") != side or not isinstance(row.get("time"), int) or row["time"] < self.entry_ts_ms:
                continue
            _oid, f = X.parse_user_trade(row)
            if left <= 1e-12:
                break
            out.append(f)
            left -= f.qty
        return out

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(2.0)
        self.runtime.stop()
        if not self.held.flush():
            log.critical("%d order event(s) could not be journaled at stop: %s", len(self.held.held),
                         [k for k, _, _ in self.held.held])

