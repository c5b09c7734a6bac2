"""Venue execution for the trader: the :class:`~prod.trading.accounts.PaperAccount` interface on real orders.

Design notes: ``docs/design/prod.trading.md``.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, Mapping

from prod.execution import (DuplicateDecision, EntriesRefused, EntryNotFilled, ExecConfig, ExecutionRuntime,
                            KillSwitchActive, OrderIntent, OrderStatus, client_order_id)
from prod.execution.killswitch import KillSwitch
from prod.binance.signing import Credentials
from prod.execution import schemas as X
from prod.trading.journal import HeldAppends, Journal
from prod.trading.accounts import DEFAULT_COSTS, Book, Costs, Ledger, Position, exit_gross, exit_record, fill_price
from prod.execution.funding import apply_funding
from prod.trading.safety import (AccountEvents, EntriesFrozen, Held, SafetyConfig, stop_price,
                                          venue_mismatches)

log = logging.getLogger(__name__)
FUNDING_POLL_S = 900.0     # income is read at a FUNDING_FEE event and at least this often in a position,
FUNDING_AFTER_EXIT_S = 30.0  # and once this long after the exit (a fee the venue charged just before it)


class VenueAccount(Ledger):
    """The account whose fills are venue orders, booked by the one :class:`~prod.trading.accounts.Ledger`."""

    def __init__(self, runtime: ExecutionRuntime, journal: Journal, capital: float, *, strategy: str = "blue",
                 kill_switch: KillSwitch | None = None, fill_timeout_s: float = 10.0, max_exit_rounds: int = 5,
                 state: Mapping[str, Any] | None = None, kill_poll_s: float = 0.2, held: HeldAppends | None = None,
                 safety: SafetyConfig | None = None, events: AccountEvents | None = None,
                 gate: Any = None, costs: Costs = DEFAULT_COSTS):
        Ledger.__init__(self, capital=float(capital), peak_capital=float(capital), day_start_capital=float(capital))
        self.costs = costs
        self.runtime, self.journal, self.strategy = runtime, journal, strategy
        self.safety = safety or SafetyConfig()
        self.events = events or AccountEvents()
        self.stop_cid: str | None = None           # the open position's protective stop (clientAlgoId)
        self.stop_symbol: str | None = None
        self._stop_seq = 0
        self.mismatches: dict[str, str] = {}       # key -> what the venue and the journal disagree on
        self.baseline: dict[str, tuple[int, str]] | None = None   # leverage / margin type per symbol at start
        self.margin_calls = 0
        self.last_margin_call: dict | None = None
        self.funding_watch: list[dict] = []        # symbol, trade_id, start_ms, end_ms, after
        self.funding_ids: list[int] = []           # tranIds already taken (the newest 500)
        self.funding_due: list[dict] = []          # taken, waiting for the core to book them (decision thread)
        self.funding_total = 0.0
        self.recon = {"cycles": 0, "failures": 0, "last_ms": None, "last_weight": None, "last_ts": None,
                      "last_error": None}
        self._safety_thread: threading.Thread | None = None
        self._gap0: float | None = None
        self._killing = False
        self._check_due = False
        self._funding_event = False
        self._closing = False         # close() ends the stop itself: its EXPIRED/CANCELED event needs no reconcile
        self.held = held or HeldAppends(journal)     # order events and reports survive a full disk (held, retried)
        self.kill_switch = kill_switch
        self.gate = gate              # prod.execution.preflight.EntryGate: entries the preflight refuses
        self.fill_timeout_s, self.max_exit_rounds = fill_timeout_s, max_exit_rounds
        self.qty = 0.0
        self.entry_ts_ms = 0          # venue time of the entry's last fill (finds a later flattening's fills)
        self._kill_exits: list[dict] = []
        self._down_close: tuple | None = None      # (position, fills, reason) closed on the venue while we were down
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
                creds: Credentials | None = None, kill_switch: KillSwitch | None = None, start_safety: bool = True,
                **kw: Any) -> "VenueAccount":
        """Start the execution runtime (journal hooked in), reconcile with the venue, start the kill watcher and
        (unless ``start_safety`` is False: the caller changes the account first, then calls :meth:`rebase` and
        :meth:`start_safety`) the periodic reconcile."""
        held = HeldAppends(journal)
        events = AccountEvents()
        runtime = ExecutionRuntime(cfg, creds or Credentials.from_env(), on_order=held.order_event,
                                   on_account=events.put)
        runtime.start()
        acct = cls(runtime, journal, capital, state=state, kill_switch=kill_switch, fill_timeout_s=cfg.fill_timeout_s,
                   held=held, events=events, **kw)
        try:
            acct.reconcile()
            acct.check(initial=True)
        except BaseException:
            runtime.stop()
            raise
        acct.start_watcher()
        if start_safety:
            acct.start_safety()
        return acct

    def _load(self, d: Mapping[str, Any]) -> None:
        self.load_ledger(d)
        self.qty = float((d.get("venue") or {}).get("qty", 0.0))
        v = d.get("venue") or {}
        self.entry_ts_ms = int(v.get("entry_ts_ms", 0))
        self.stop_cid = v.get("stop_cid")
        self.stop_symbol = v.get("stop_symbol") or (self.position.symbol if self.position is not None else None)
        self._stop_seq = int(v.get("stop_seq", 0))
        self.funding_watch = [dict(w) for w in v.get("funding_watch", [])]
        self.funding_ids = [int(x) for x in v.get("funding_ids", [])]
        self.funding_due = [dict(r) for r in v.get("funding_due", [])]
        self.funding_total = float(v.get("funding_total", 0.0))
        if self.position is not None and not self.funding_watch:
            self.funding_watch = [{"symbol": self.position.symbol, "trade_id": self.position.trade_id,
                                   "start_ms": self.entry_ts_ms, "end_ms": None, "after": 0}]
        if self.position is not None and not self.qty > 0:
            raise ValueError("venue account state: a position without a venue quantity")

    def to_dict(self) -> dict[str, Any]:
        """PaperAccount's dict plus ``venue`` (position quantity); restores with ``state=``."""
        return {**self.ledger_dict(),
                "venue": {"qty": self.qty, "entry_ts_ms": self.entry_ts_ms, "stop_cid": self.stop_cid,
                          "stop_symbol": self.stop_symbol, "stop_seq": self._stop_seq,
                          "funding_watch": [dict(w) for w in self.funding_watch],
                          "funding_ids": list(self.funding_ids), "funding_due": [dict(r) for r in self.funding_due],
                          "funding_total": self.funding_total},
                "safety": self.safety_state()}

    def safety_state(self) -> dict[str, Any]:
        """``frozen`` and why, margin calls, the last reconcile's cost, the stop (for the state and the alerts)."""
        mm = dict(self.mismatches)
        stream = self.client.stream if self.runtime.client is not None else None
        return {"frozen": bool(mm), "reasons": sorted(mm.values()), "keys": sorted(mm), "margin_calls": self.margin_calls,
                "last_margin_call": self.last_margin_call, "reconcile": dict(self.recon), "stop_cid": self.stop_cid,
                "unknown_events": dict(stream.unknown_kinds) if stream is not None else {}}

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
            if self.mismatches:
                raise EntriesFrozen(f"entries frozen (venue and journal disagree): entry #{trade_id} {symbol} refused; "
                                    + "; ".join(sorted(self.mismatches.values())))
            if self.position is not None:
                raise RuntimeError(f"position {self.position.trade_id} already open; refusing a second entry")
            if not (math.isfinite(notional) and notional > 0):
                raise ValueError(f"bad notional {notional!r}")
            expected, _src = fill_price(direction, True, book, ref_price, now, max_book_age_s,
                                         self.costs.other_slippage)
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
            self.qty = o.filled_qty
            self.entry_ts_ms = max(f.ts_ms for f in o.fills.values())
            actual = o.filled_qty * o.avg_price
            self.book_entry(Position(trade_id, symbol, direction, o.avg_price, actual, fee, now, scan, "venue"))
            self.funding_watch.append({"symbol": symbol, "trade_id": trade_id, "start_ms": self.entry_ts_ms,
                                       "end_ms": None, "after": 0})
            stop = self._place_stop(scan)
            return {"protective_stop": stop,
                    "side": side, "trade_id": trade_id, "symbol": symbol, "price": o.avg_price, "notional": actual,
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
            self._closing = True
            try:
                return self._close(pos, side, rules, left, fills, reason, now, scan)
            finally:
                self._closing = False

    def _close(self, pos: Position, side: str, rules: Any, left: float, fills: list, reason: str, now: float,
               scan: int) -> dict:
        """(under _lock) close()'s body."""
        ids = []
        for k in range(self.max_exit_rounds):
            q = rules.held_qty(left)         # what is held is whole steps: a float sum may sit just below one
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
        fired = self._end_stop()
        if fired:                                    # the stop fired before (or during) our exit: its fills count
            fills += fired
            left -= sum(f.qty for f in fired)
        if rules.held_qty(left) > 0:
            log.critical("exit of #%d %s incomplete (%.8g left); engaging the kill switch", pos.trade_id,
                         pos.symbol, left)
            if self.kill_switch is not None:
                self.kill_switch.engage(f"exit of trade {pos.trade_id} incomplete")
        rec = self._book_exit(pos, fills, reason, now, scan)
        rec.update(client_ids=ids, incomplete=rules.held_qty(left) > 0)
        return rec

    def _book_exit(self, pos: Position, fills: list, reason: str, now: float, scan: int | None) -> dict:
        for w in self.funding_watch:
            if w["trade_id"] == pos.trade_id and w["end_ms"] is None:
                w["end_ms"] = max([f.ts_ms for f in fills], default=0) or self.entry_ts_ms
                w["closed_at"] = time.time()
        qty = sum(f.qty for f in fills)
        price = sum(f.qty * f.price for f in fills) / qty if qty > 0 else pos.entry_price
        share = min(1.0, qty / self.qty) if self.qty > 0 else 0.0
        fee = sum(f.fee for f in fills)
        rec = self.book_exit(exit_record(pos, price, fee, exit_gross(pos, price, share), reason, "venue", now, scan))
        rec.update(qty=qty, fills=len(fills))
        self.qty = 0.0
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
                closed = self._closed_while_down(pos) if v is None else None
                if closed is not None:
                    actions.append(closed)
                elif v is None or (v["amount"] < 0) != (pos.direction < 0):
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

    # ------------------------------------------------------------------ protective stop
    def _place_stop(self, scan: int) -> dict | None:
        """(under _lock) Place the open position's STOP_MARKET (closePosition, an algo order); return its summary
        (None: not placed — the position stands, the reconcile places it again)."""
        pos = self.position
        if pos is None or self.safety.stop_pct <= 0:
            return None
        rules = self.client.rules[pos.symbol]
        side = "BUY" if pos.direction < 0 else "SELL"
        sp = stop_price(pos.direction, pos.entry_price, self.safety.stop_pct, rules.tick)
        self._stop_seq += 1
        cid = client_order_id(self.strategy, self.day or "-", scan, side, f"stop-{pos.trade_id}-{self._stop_seq}")
        try:
            a = self._call(self.client.place_algo, cid, pos.symbol, side, "STOP_MARKET", str(sp),
                           working_type=self.safety.stop_working_type)
        except Exception as exc:  # noqa: BLE001 - refused / venue down: the reconcile retries
            log.critical("protective stop for #%d %s not placed: %s: %s (the reconcile retries)", pos.trade_id,
                         pos.symbol, type(exc).__name__, exc)
            self.held.append("STOP_NOT_PLACED", {"trade_id": pos.trade_id, "symbol": pos.symbol, "client_id": cid,
                                                 "error": f"{type(exc).__name__}: {exc}"})
            return None
        self.stop_cid, self.stop_symbol = cid, pos.symbol
        rec = {"client_id": cid, "algo_id": a.algo_id, "symbol": pos.symbol, "side": side, "stop_price": float(sp),
               "trade_id": pos.trade_id, "status": a.status}
        self.held.append("STOP_PLACED", rec)
        log.info("protective stop for #%d %s: %s closePosition at %s (%s)", pos.trade_id, pos.symbol, side, sp, cid)
        return rec

    def _stop_state(self):
        return self.client.algos.get(self.stop_cid) if self.stop_cid else None

    def _stop_open(self) -> bool:
        a = self._stop_state()
        return a is not None and a.status == X.ALGO_OPEN

    def _stop_fills(self, a) -> list:
        """(under _lock) The fills of the market order a triggered stop placed (from the venue, by its order id)."""
        if a is None or a.status not in X.ALGO_DONE or a.actual_order_id is None:
            return []
        return self._call(self.client.order_fills, a.symbol, a.actual_order_id)

    def _end_stop(self) -> list:
        """(under _lock) Cancel the position's stop if open; return the fills it made if it fired (else [])."""
        cid, sym, self.stop_cid, self.stop_symbol = self.stop_cid, self.stop_symbol, None, None
        if not cid:
            return []
        a = self.client.algos.get(cid)
        try:
            if a is None or a.status == X.ALGO_OPEN or a.status == "TRIGGERING":
                a = self._call(self.client.cancel_algo, cid, sym)
            if a is not None:
                self.held.append("STOP_" + a.status, {"client_id": cid, "symbol": sym, "algo_id": a.algo_id})
            return self._stop_fills(a)
        except Exception as exc:  # noqa: BLE001 - closePosition: it expires with the position; reconcile reports it
            log.error("protective stop %s not cancelled: %s: %s", cid, type(exc).__name__, exc)
            return []

    def _adopt_stop(self, opens: dict) -> dict:
        """(under _lock, at start) Keep the position's stop if it is open on the venue (``opens``: the venue's open
        algo orders by client id), else place one; cancel our other open algo orders (a stop left by a crashed run
        whose position is gone)."""
        out: dict[str, Any] = {"adopted": None, "placed": None, "strays_canceled": []}
        if self.position is None and self.stop_cid:
            out["fired"] = [f.to_dict() for f in self._end_stop()] or None
        for cid, a in opens.items():
            if cid.startswith("DLP-") and (self.position is None or cid != self.stop_cid):
                self._call(self.client.cancel_algo, cid, a.symbol)
                out["strays_canceled"].append(cid)
        if self.position is not None and self._down_close is None and self.safety.stop_pct > 0:
            if self.stop_cid in opens:
                out["adopted"] = self.stop_cid
            else:
                out["placed"] = self._place_stop(int(time.time()))
        return out

    def _stop_fired(self) -> dict | None:
        """(under _lock) The stop fired while we run: book the exit as a forced one (the core books it next scan)."""
        a, pos = self._stop_state(), self.position
        if pos is None or a is None or a.status not in X.ALGO_DONE:
            return None
        fills = self._stop_fills(a)
        if not fills:
            return None
        self.stop_cid = None
        rec = self._book_exit(pos, fills, "PROTECTIVE_STOP", 0.0, None)
        self.kill_exits.append(rec)
        self.held.append("STOP_FIRED", {"trade_id": pos.trade_id, "symbol": pos.symbol, "client_id": a.client_id,
                                        "order_id": a.actual_order_id, "qty": rec["qty"], "price": rec["price"],
                                        "net": rec["net"]})
        log.critical("PROTECTIVE STOP fired for #%d %s at %.6g (net %.4f)", pos.trade_id, pos.symbol, rec["price"],
                     rec["net"])
        return rec

    # ------------------------------------------------------------------ periodic reconcile (safety thread)
    def check(self, initial: bool = False, rebase: bool = False) -> dict:
        """Compare the venue with the journal (positions, open orders, wallet, leverage/margin); freeze on a mismatch,
        clear when they agree; journal a ``RECONCILE`` row when that changes; return this check's report."""
        with self._lock:
            if not self.held.flush():
                log.error("reconcile: %d journal event(s) still held", len(self.held.held))
            if self._killing:        # the kill switch is flattening; its exit is not booked yet: judge after it
                return {"kind": "skipped", "why": "kill switch flattening"}
            if initial:      # the plain orders were read by reconcile() just before; algo orders where ours can be
                syms = {o.symbol for o in self.client.orders.values() if not o.terminal}
                syms |= {p["symbol"] for p in (self.reconcile_report or {}).get("positions", [])}
                syms |= {s for s in (self.stop_symbol, self.position.symbol if self.position else None) if s}
                st = self._call(self.client.venue_state, sorted(syms), False, timeout_s=30.0)
                stop_rep = self._adopt_stop({a.client_id: a for a in st["open_algos"]})
                st["open_algos"] = [a for a in st["open_algos"] if a.client_id not in stop_rep["strays_canceled"]]
                if stop_rep["placed"] is not None:
                    st["open_algos"].append(self.client.algos[self.stop_cid])
                if self.reconcile_report is not None:
                    self.reconcile_report["stop"] = stop_rep
                    self.held.append("RECONCILE", {"kind": "stop", **stop_rep})
            else:            # only the symbols where the journal holds something (weight 1 each, not 40)
                syms = {o.symbol for o in self.client.orders.values() if not o.terminal}
                syms |= {s for s in (self.stop_symbol, self.position.symbol if self.position else None) if s}
                st = self._call(self.client.venue_state, sorted(syms), timeout_s=30.0)
            algo_open = {a.client_id: a.symbol for a in st["open_algos"]}
            if self.stop_cid and self.stop_cid not in algo_open and self._stop_open():
                self._call(self.client.refresh_algo, self.stop_cid, self.stop_symbol)   # fired or cancelled?
            fired = self._stop_fired()
            cost_ms, weight = st["ms"], st["weight"]
            if self.funding_watch:
                t0, w0 = time.perf_counter(), self.client.rest.used_weight
                self._fetch_funding()
                cost_ms += (time.perf_counter() - t0) * 1e3
                weight += max(0, self.client.rest.used_weight - w0)
            settings = {k: (v.leverage, v.margin_type) for k, v in st["settings"].items()}
            pending = sum(float(r["income"]) for r in self.funding_due)
            gap = st["wallet"] - self.capital - pending
            if initial or rebase or self.baseline is None:
                self.baseline, self._gap0 = settings, gap
            known = {}
            for cid, o in list(self.client.orders.items()):
                if cid.startswith("DLP-") and not o.terminal and o.status != OrderStatus.PENDING_NEW and not initial:
                    known[cid] = o.symbol
            if self._stop_open():
                known[self.stop_cid] = self.stop_symbol
            on_venue = {u.client_id for u in st["open_orders"]} | set(algo_open)
            for cid in [c for c in known if c not in on_venue and c in self.client.orders]:   # a final event not seen yet
                try:
                    self._call(self.client.refresh, cid)
                except Exception as exc:  # noqa: BLE001
                    log.warning("reconcile: re-reading %s failed: %s", cid, exc)
                if self.client.orders[cid].terminal:
                    known.pop(cid)
            pos = self.position if self._down_close is None else None     # closed on the venue, booked next scan
            held = None if pos is None else Held(pos.trade_id, pos.symbol, pos.direction * self.qty)
            step = float(self.client.rules[pos.symbol].step) if pos is not None else 0.0
            found = venue_mismatches(
                held, step, known, {p.symbol: p.amount for p in st["positions"]},
                [(u.client_id, u.symbol) for u in st["open_orders"]] + list(algo_open.items()),
                None if self.safety.stop_pct <= 0 else self.stop_cid in algo_open, gap, self._gap0, self.baseline,
                settings)
            for k, v in self.mismatches.items():       # stream-reported, not visible in positionRisk: kept until seen
                if k == "multi_assets" and k not in found:
                    found[k] = v
            rep = self._set_mismatches(found, "initial" if initial else "rebase" if rebase else "periodic", stop_fired=fired,
                                       wallet=st["wallet"], capital=self.capital, ms=round(cost_ms, 3), weight=weight)
            if pos is not None and self.position is pos and self.safety.stop_pct > 0 and not self._stop_open():
                rep["stop_placed"] = self._place_stop(int(time.time()))
            self.recon.update(cycles=self.recon["cycles"] + 1, last_ms=round(cost_ms, 3), last_weight=weight,
                              last_ts=time.time(), last_error=None)
            return rep

    def _set_mismatches(self, found: dict[str, str], source: str, **detail: Any) -> dict:
        """(under _lock) Take the new set of mismatches; journal ``RECONCILE`` when it changed; return the report."""
        old = self.mismatches
        new_keys = sorted(set(found) - set(old))
        cleared = sorted(set(old) - set(found))
        self.mismatches = dict(found)
        rep = {"kind": source, "frozen": bool(found), "mismatches": found, "new": new_keys, "cleared": cleared, **detail}
        if new_keys or cleared:
            self.held.append("RECONCILE", rep)
            if found:
                log.critical("RECONCILE mismatch (%s): entries frozen: %s", source, "; ".join(found[k] for k in new_keys)
                             or "; ".join(found.values()))
            else:
                log.warning("RECONCILE: the venue and the journal agree again (%s cleared); entries allowed",
                            ", ".join(cleared))
        return rep

    def _fetch_funding(self) -> None:
        """(under _lock) Take the watched positions' new FUNDING_FEE income rows into ``funding_due`` (one income
        read per symbol, from its oldest watched entry on)."""
        seen = set(self.funding_ids)
        event, self._funding_event = self._funding_event, False
        now = time.time()
        due = [w for w in self.funding_watch
               if event or now - float(w.get("fetched", 0.0)) >= FUNDING_POLL_S
               or (w["end_ms"] is not None and now - float(w.get("closed_at", 0.0)) >= FUNDING_AFTER_EXIT_S)]
        for sym in sorted({w["symbol"] for w in due}):
            ws = [w for w in due if w["symbol"] == sym]
            rows = self._call(self.client.income, sym, min(w["start_ms"] for w in ws), timeout_s=30.0)
            for r in sorted(rows, key=lambda r: (r.time_ms, r.tran_id)):
                w = next((w for w in ws if w["start_ms"] <= r.time_ms
                          and (w["end_ms"] is None or r.time_ms <= w["end_ms"])), None)
                if r.income_type != "FUNDING_FEE" or r.symbol != sym or r.tran_id in seen or w is None:
                    continue
                seen.add(r.tran_id)
                self.funding_ids = (self.funding_ids + [r.tran_id])[-500:]
                self.funding_due.append({"trade_id": w["trade_id"], "symbol": r.symbol, "income": r.income,
                                         "asset": r.asset, "time_ms": r.time_ms, "tran_id": r.tran_id,
                                         "source": "venue"})
                log.info("funding fee %+.8f %s for #%s (tranId %s) taken; booked at the next scan", r.income,
                         r.symbol, w["trade_id"], r.tran_id)
            for w in ws:
                w["fetched"] = now
                if w["end_ms"] is not None and now - float(w.get("closed_at", 0.0)) >= FUNDING_AFTER_EXIT_S:
                    w["after"] = 1
        # a closed position's watch is read once FUNDING_AFTER_EXIT_S after its exit, then dropped
        self.funding_watch = [w for w in self.funding_watch if w["end_ms"] is None or not w.get("after")]

    def book_funding(self, row: Mapping[str, Any]) -> dict:
        """Book one taken funding fee (the core calls this on the decision thread); return the journal payload."""
        with self._lock:
            rec = apply_funding(self, row)
            self.funding_total += float(row["income"])
            return rec

    def _on_account_event(self, ev: Any) -> bool:
        """(safety thread) One user-stream account event; return True when a reconcile is due at once."""
        if isinstance(ev, X.AccountConfigUpdate):
            with self._lock:
                found = dict(self.mismatches)
                base = self.baseline or {}
                if ev.symbol is not None and ev.leverage is not None and base.get(ev.symbol, (ev.leverage,))[0] != ev.leverage:
                    found[f"leverage:{ev.symbol}"] = (f"{ev.symbol} leverage changed to {ev.leverage}x outside the "
                                                      f"trader (ACCOUNT_CONFIG_UPDATE; {base[ev.symbol][0]}x at start)")
                if ev.multi_assets:
                    found["multi_assets"] = "multi-assets mode switched on outside the trader (ACCOUNT_CONFIG_UPDATE)"
                elif ev.multi_assets is False:
                    found.pop("multi_assets", None)
                self._set_mismatches(found, "ACCOUNT_CONFIG_UPDATE", symbol=ev.symbol, leverage=ev.leverage,
                                     multi_assets=ev.multi_assets)
            return True
        if isinstance(ev, X.MarginCall):
            call = {"ts_ms": ev.ts_ms, "cross_wallet": ev.cross_wallet, "positions": list(ev.positions)}
            self.held.append("MARGIN_CALL", call)          # journaled first, then counted (the state's alert)
            self.last_margin_call = call
            self.margin_calls += 1
            log.critical("MARGIN_CALL from the venue: %s", self.last_margin_call)
            return True
        if isinstance(ev, X.AccountUpdate):
            if ev.reason == "FUNDING_FEE":
                self._funding_event = True
                return True
            return False
        if isinstance(ev, X.AlgoUpdate):
            if ev.client_id == self.stop_cid and ev.status != X.ALGO_OPEN and not self._closing:
                self.held.append("STOP_" + ev.status, {"client_id": ev.client_id, "symbol": ev.symbol,
                                                       "algo_id": ev.algo_id, "order_id": ev.actual_order_id,
                                                       "reason": ev.reason})
                return True             # fired, or cancelled/expired behind our back: reconcile at once
            return False
        return False

    def check_soon(self) -> None:
        """Ask the safety thread for a reconcile now (after a kill, a cleared kill switch)."""
        self._check_due = True
        self.events.wake.set()

    def _safety_loop(self) -> None:
        next_at = time.monotonic() + self.safety.reconcile_s
        while not self._stop.is_set():
            self.events.wake.wait(max(0.0, next_at - time.monotonic()))
            if self._stop.is_set():
                break
            self.events.wake.clear()
            due = time.monotonic() >= next_at or self._check_due
            self._check_due = False
            for ev in self.events.drain():
                try:
                    due = self._on_account_event(ev) or due
                except Exception:  # noqa: BLE001 - the safety thread must survive anything
                    log.exception("account event %s", type(ev).__name__)
            if not due:
                continue
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - venue down: keep the last verdict, try again next cycle
                self.recon.update(failures=self.recon["failures"] + 1, last_error=f"{type(exc).__name__}: {exc}")
                log.error("reconcile failed (%s: %s); the last verdict stands, next try in %.0fs", type(exc).__name__,
                          exc, self.safety.reconcile_s)
            next_at = time.monotonic() + self.safety.reconcile_s

    @property
    def kill_exits(self) -> list[dict]:
        """Forced exits the account booked on its own (kill switch, protective stop), for the core's next scan.

        A position the venue closed while the trader was down (its protective stop, or anyone) is booked here, at
        that first read on the decision thread, not at restart: the recording starts between the two, so the
        parity replay books the same exit from the same capital.
        """
        if self._down_close is not None:
            with self._lock:
                if self._down_close is not None:
                    pos, fills, reason = self._down_close
                    self._down_close = None
                    self._kill_exits.append(self._book_exit(pos, fills, reason, 0.0, None))
        return self._kill_exits

    def _closed_while_down(self, pos: Position) -> dict | None:
        """(restart) The journal's position is flat on the venue: find its closing trades (its protective stop's
        order, or anyone's) and keep the position until the core books that exit (:attr:`kill_exits`)."""
        a = self.client.algos.get(self.stop_cid) if self.stop_cid else None
        if self.stop_cid and self.stop_symbol:
            a = self._call(self.client.refresh_algo, self.stop_cid, self.stop_symbol)
        fills = self._call(self._closing_trades, pos)
        if not fills or sum(f.qty for f in fills) < self.qty - float(self.client.rules[pos.symbol].step) / 2:
            return None
        reason = "PROTECTIVE_STOP" if a is not None and a.status in X.ALGO_DONE else "CLOSED_WHILE_DOWN"
        self._down_close = (pos, fills, reason)
        self.stop_cid = self.stop_symbol = None
        log.critical("RECONCILE: position #%d %s was closed on the venue while the trader was down (%s); booked as "
                     "a forced exit at the next scan", pos.trade_id, pos.symbol, reason)
        return {"closed_while_down": pos.trade_id, "symbol": pos.symbol, "reason": reason,
                "qty": sum(f.qty for f in fills)}

    def start_safety(self) -> None:
        """Start the safety thread (periodic reconcile, account events)."""
        if self._safety_thread is None:
            self._safety_thread = threading.Thread(target=self._safety_loop, name="venue-safety", daemon=True)
            self._safety_thread.start()

    def rebase(self) -> dict:
        """Take the venue's leverage / margin type and the wallet-capital gap as they are now as the baseline (after
        the preflight set the account up and took the capital from the wallet); the settings events that caused are
        dropped, other account events handled. Return the check's report."""
        for ev in self.events.drain():
            if not isinstance(ev, X.AccountConfigUpdate):
                self._on_account_event(ev)
        return self.check(rebase=True)

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
                    self.check_soon()
                    log.warning("kill switch cleared: entries allowed again")
            except Exception:  # noqa: BLE001 - the watcher must survive a venue hiccup and retry
                log.exception("kill watcher")

    def kill(self) -> dict:
        """Cancel everything and flatten (reduceOnly); book our position's flattening; journal the report."""
        self.client.halted = True
        self._killing = True          # the reconcile holds its verdict until the flattening is booked
        try:
            return self._kill()
        finally:
            self._killing = False
            self.check_soon()

    def _kill(self) -> dict:
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
            self.stop_cid = self.stop_symbol = None      # the kill cancelled every open order, the stop too
            rep["flag"] = flag
            self.held.append("KILL_SWITCH", rep)
            self._kill_handled = True
        return rep

    async def _closing_trades(self, pos: Position) -> list:
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
        self.events.wake.set()
        if self._watcher is not None:
            self._watcher.join(2.0)
        if self._safety_thread is not None:
            self._safety_thread.join(35.0)
        self.runtime.stop()
        if not self.held.flush():
            log.critical("%d order event(s) could not be journaled at stop: %s", len(self.held.held),
                         [k for k, _, _ in self.held.held])

