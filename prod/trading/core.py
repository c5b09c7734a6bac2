"""The trader's decision core: restore, one scan → one decision, day roll, fills and journal; no bus.

Design notes: ``docs/design/prod.trading.md``.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import sqlite3
import threading
from collections import deque
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Protocol

from prod.alpha.engine import GateSnap, NDAlphaEngine, changed_gates
from prod.alpha.ob import InProcessOBProvider
from prod.alpha.params import EngineParams
from prod.alpha.vol import VolGate
from prod.bus import maps
from prod.bus.payloads import EigenScan, EngineState, ObFeatures, ObMacro, PayloadError, Pnl
from prod.ratelog import RateLog
from prod.trading.journal import Journal, JournalIntegrityError
from prod.trading.accounts import AccountFactory, Book, Costs, PaperAccounts
from prod.trading.recording import NULL_RECORDER

log = logging.getLogger("event_trader")


class JournalUnavailable(RuntimeError):
    """An entry refused because decided events are still waiting to be journaled."""
STRATEGY = "blue"
VOL_SYMBOL = "BTCUSDT"
POSTURES = ("APEX", "STALKER", "TURTLE", "HIBERNATE")

Snapshot = tuple  # (last_scan, engine_state, trader_state)


class Outputs(Protocol):
    """Where the core hands what it produced (the bus adapter publishes; tests may record)."""

    def pnl(self, day: str, payload: Pnl) -> None: ...
    def state(self, payload: EngineState) -> None: ...
    def day_state(self, day: str, payload: EngineState) -> None: ...
    def snapshot(self, snap: Snapshot) -> None: ...


class NoOutputs:
    """Outputs that go nowhere (a core without a bus)."""

    def pnl(self, day: str, payload: Pnl) -> None:
        pass

    def state(self, payload: EngineState) -> None:
        pass

    def day_state(self, day: str, payload: EngineState) -> None:
        pass

    def snapshot(self, snap: Snapshot) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class CoreLimits:
    """The core's own settings (the service config carries them)."""

    max_scan_age_s: float = 10.0
    max_book_age_s: float = 30.0
    snapshot_every_s: float = 5.0
    max_macro_age_s: float = 15.0


def _pct(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


class TraderCore:
    """The trader's state machine (see the module docstring).

    Parameters
    ----------
    limits : CoreLimits
    journal : Journal
        The opened, verified journal (restore source and event sink).
    params : EngineParams
    symbols : tuple of str
        The engine's assets.
    clock : callable
        Epoch seconds (``Clock.time``).
    account_type : AccountFactory, optional
        Builds the account (``new(capital)``, ``from_dict(d)``; :class:`~prod.trading.accounts.Account`);
        default: the paper account at ``params``' costs.
    outputs : Outputs
    recorder : prod.trading.recording.Recorder, optional
        Records the core's inputs, clock values and account calls for the replay (wraps ``clock`` and the
        account here, at construction).
    """

    def __init__(self, limits: CoreLimits, journal: Journal, params: EngineParams, symbols: tuple[str, ...],
                 clock: Callable[[], float], account_type: AccountFactory | None = None,
                 outputs: Outputs | None = None, recorder: Any = None):
        self.recorder: Any = recorder if recorder is not None else NULL_RECORDER
        self.limits, self.journal, self.params = limits, journal, params
        self.clock = self.recorder.clock(clock)
        self.symbols = tuple(symbols)
        self.account_type: AccountFactory = account_type if account_type is not None else PaperAccounts(Costs.of(params))
        self.out: Outputs = outputs or NoOutputs()
        self.ob = InProcessOBProvider()
        self.books: dict[str, Book] = {}
        self._imb: dict[str, deque] = {}
        self._acb_lock = threading.Lock()
        self._pending_acb: dict | None = None
        self.acb = {"boost": 1.0, "beta": 0.0}
        self.posture = "APEX"
        self.posture_source = "default"
        self.mc_status: str | None = None     # None = no MC data → the engine's OK
        self._macro_lock = threading.Lock()
        self._macro_ts: float | None = None   # bar time of the macro the OB provider holds
        self.macro_updates = self.macro_dropped = 0
        self.macro_drop_reason: str | None = None
        self.stale_state_events = 0
        self.scans_processed = self.scans_dup = self.scans_stale = self.scans_bad = 0
        self.latencies: deque = deque(maxlen=20000)
        self.lat_buf: deque = deque()
        self.last_decision: dict | None = None
        self.vol = VolGate()
        self.bar_idx = 0
        self.last_scan: int | None = None
        self.signals_not_taken = 0
        self._last_snapshot = 0.0
        self.rl = RateLog(log, 30.0)
        self.journal_backlog: deque = deque()   # events decided but not yet journaled (full disk)
        self._entry_ctx: tuple = ({}, 0)          # (prices, scan number) of the bar being decided
        self._entry_t: float | None = None        # when the account filled (or refused) this bar's entry
        self._entry_fill: dict | None = None
        self._entry_refused: tuple | None = None  # (entry, exception) the account did not fill
        self.gap_held_scans = 0           # scans the gap gate held back
        self._gap_holding = False
        self._decision_stale = False      # the stale_state flag of the decision being booked (PnL writes carry it)
        self._restore()
        self.account = self.recorder.wrap_account(self.account)

    # ── restore ──────────────────────────────────────────────────────────────────────────────
    def _restore(self) -> None:
        last_scan, engine_state, trader_state = self.journal.load_snapshot()
        if engine_state is None:
            # a venue account sizes from the wallet (preflight): the engine reads the account's capital
            self.account = self.account_type.new(self.params.initial_capital)
            self.engine = NDAlphaEngine(self.params, self.symbols, self._fill_entry, self._account_capital)
            self.engine.set_ob_engine(self.ob)
            log.info("fresh start: capital %.2f", self.account.capital)
            return
        try:   # the engine reads its capital from the account, which comes next
            self.engine = NDAlphaEngine.from_state(self.params, engine_state, self._fill_entry, self._account_capital)
        except (ValueError, KeyError, TypeError) as exc:
            raise JournalIntegrityError(f"journal snapshot cannot restore the engine: {exc}") from exc
        self.engine.set_ob_engine(self.ob)
        ts = trader_state or {}
        self.account = (self.account_type.from_dict(ts["account"]) if "account" in ts
                        else self.account_type.new(float(engine_state["capital"])))
        self.bar_idx = int(ts.get("bar_idx", 0))
        self.acb = ts.get("acb", self.acb)
        self.stale_state_events = int(ts.get("stale_state_events", 0))
        if isinstance(ts.get("vol"), dict):
            self.vol.restore(ts["vol"])
        self.last_scan = last_scan
        eng_pos = self.engine.position
        if (eng_pos is None) != (self.account.position is None):
            raise JournalIntegrityError(
                f"journal snapshot inconsistent: engine position {eng_pos} vs account {self.account.position}")
        log.warning("RESTORED from journal: capital=%.4f last_scan=%s position=%s", self.account.capital, last_scan,
                    None if self.account.position is None else dataclasses.asdict(self.account.position))

    def _account_capital(self) -> float:
        """The engine's capital: the account's (one number, no copy to keep in sync)."""
        return self.account.capital

    def trader_state(self) -> dict:
        return {"account": self.account.to_dict(), "bar_idx": self.bar_idx, "acb": self.acb,
                "stale_state_events": self.stale_state_events, "vol": self.vol.state()}

    def snapshot_now(self) -> Snapshot:
        return (self.last_scan, self.engine.get_state(), self.trader_state())

    # ── inputs (listener threads: validate, then hand over) ─────────────────────────────────
    def on_acb(self, boost: Any, beta: Any) -> bool:
        """Queue an ACB update for the next bar (§14.2); False (logged) when out of range."""
        try:
            b, be = float(boost), float(beta)
        except (TypeError, ValueError):
            log.error("acb_boost dropped: no numeric boost/beta (%r, %r)", boost, beta)
            return False
        if not (math.isfinite(b) and b > 0 and math.isfinite(be) and be >= 0):
            log.error("acb_boost dropped: out of range boost=%r beta=%r", boost, beta)
            return False
        parsed = {"boost": b, "beta": be}
        self.recorder.event("acb", parsed)
        with self._acb_lock:
            self._pending_acb = parsed
        return True

    def set_posture(self, posture: Any, source: str) -> None:
        if posture not in POSTURES:
            log.error("posture %r from %s ignored", posture, source)
            return
        if posture != self.posture:
            self.recorder.event("posture", {"posture": posture, "source": source})
            log.warning("posture %s -> %s (%s)", self.posture, posture, source)
        self.posture, self.posture_source = posture, source

    def set_mc_status(self, status: Any, source: str) -> None:
        """Take the MC-Forewarner status (GREEN/OK/ORANGE/RED) for the next day roll; junk is dropped."""
        st = {"GREEN": "OK", "OK": "OK", "ORANGE": "ORANGE", "RED": "RED"}.get(status) if isinstance(status, str) else None
        if st is None:
            log.error("mc status %r from %s ignored", status, source)
            return
        if st != self.mc_status:
            self.recorder.event("mc", {"status": st, "source": source})
            log.warning("mc status %s -> %s (%s; applied at the next day roll)", self.mc_status, st, source)
        self.mc_status = st

    def on_book(self, p: ObFeatures) -> None:
        """Take one asset's order-book features (best bid/ask for fills, OB features for the engine)."""
        self.recorder.event("ob", p)
        sym = p.symbol
        book = Book(float(p.best_bid), float(p.best_ask), float(p.ts))
        if not (book.best_bid > 0 and book.best_ask > book.best_bid):
            log.warning("shard %s: crossed/invalid book dropped (bid=%s ask=%s)", sym, book.best_bid, book.best_ask)
            return
        h = self._imb.setdefault(sym, deque(maxlen=5))
        h.append(float(p.imbalance))
        ma5 = sum(h) / len(h)
        sign = 1 if ma5 > 0 else -1 if ma5 < 0 else 0
        persistence = sum(1 for v in h if (v > 0) - (v < 0) == sign) / len(h) if sign else 0.0
        try:
            self.ob.update_asset(sym, {
                "imbalance_ma5": p.imbalance_ma5 if p.imbalance_ma5 is not None else ma5,
                "imbalance_persistence": (p.imbalance_persistence if p.imbalance_persistence is not None
                                          else persistence),
                "withdrawal_velocity": p.withdrawal_velocity if p.withdrawal_velocity is not None else 0.0,
                "depth_quality": p.depth_quality, "fill_probability": p.fill_probability})
        except ValueError as exc:
            log.warning("shard %s dropped: %s", sym, exc)
            return
        self.books[sym] = book

    def on_ob_macro(self, p: ObMacro) -> bool:
        """Feed the §9.2 macro to the engine's OB provider; False (logged, neutral) when stale or invalid."""
        src = maps.OB_MACRO.source()
        now = self.clock()
        self.recorder.event("ob_macro", {"now": now, "macro": p.to_dict()})
        age = now - float(p.ts)
        with self._macro_lock:
            if abs(age) > self.limits.max_macro_age_s:
                self._drop_macro(f"{src} is {age:.1f}s old (limit {self.limits.max_macro_age_s:.0f}s)")
                return False
            try:
                self.ob.update_macro({"cascade_count": p.cascade_count, "regime_signal": p.regime_signal,
                                      "market_imbalance": p.market_imbalance, "withdrawal_stress": p.withdrawal_stress})
            except ValueError as exc:
                self._drop_macro(f"{src} invalid: {exc}")
                return False
            if self._macro_ts is None:
                log.info("OB macro live from %s: regime_signal=%d cascade_count=%d market_imbalance=%.3f",
                         src, p.regime_signal, p.cascade_count, p.market_imbalance)
            self._macro_ts = float(p.ts)
            self.macro_updates += 1
        return True

    def on_ob_macro_invalid(self, exc: Exception) -> None:
        """A malformed or out-of-range value arrived on the macro key: neutral at once, not after 15 s."""
        self.recorder.event("ob_macro_invalid", {"error": str(exc)})
        with self._macro_lock:
            self._drop_macro(f"{maps.OB_MACRO.source()} invalid: {exc}")

    def _drop_macro(self, why: str) -> None:
        """(under _macro_lock) Forget the macro: the engine runs neutral until a fresh one arrives."""
        self.macro_dropped += 1
        self.macro_drop_reason = why
        self.ob.clear_macro()
        self._macro_ts = None
        self.rl.warning("ob_macro", "OB macro dropped, engine neutral (no OB-3 multiplier, champion exits): %s", why)

    def _check_macro_age(self, now: float) -> None:
        with self._macro_lock:
            if self._macro_ts is not None and now - self._macro_ts > self.limits.max_macro_age_s:
                self._drop_macro(f"{maps.OB_MACRO.source()} went stale ({now - self._macro_ts:.1f}s without "
                                 f"an update, limit {self.limits.max_macro_age_s:.0f}s)")

    # ── the decision ─────────────────────────────────────────────────────────────────────────
    def process(self, scan: EigenScan | Mapping[str, Any], t_recv: float | None = None) -> dict | None:
        """Run one scan through the engine; return the decision record (None when skipped)."""
        if not isinstance(scan, EigenScan):
            try:
                scan = maps.EIGEN_SCAN.coerce(scan)
            except PayloadError as exc:
                self.scans_bad += 1
                log.error("scan dropped: %s", exc)
                return None
        if self.journal_backlog:
            self.flush_journal_backlog()
        sn = scan.scan_number
        if self.last_scan is not None and sn <= self.last_scan:
            self.scans_dup += 1
            return None
        now = self.clock()
        scan_ts = scan.timestamp_ns / 1e9
        age = now - scan_ts
        if age > self.limits.max_scan_age_s:
            self.scans_stale += 1
            log.warning("scan %s is %.1fs old (> %.0fs): skipped", sn, age, self.limits.max_scan_age_s)
            return None
        prices = self._prices(scan)
        if prices is None:
            self.scans_bad += 1
            return None
        vd, v50, v750 = scan.vel_div, scan.w50_velocity, scan.w750_velocity
        vol_ok = self.vol.update(prices.get(VOL_SYMBOL))
        self.last_scan = sn
        held = self._gap_gate(scan)
        if held is not None:
            return held
        if vd is None or v50 is None or v750 is None:
            return {"scan_number": sn, "note": "scanner warming up", "vol_ok": vol_ok}
        with self._acb_lock:
            pending, self._pending_acb = self._pending_acb, None
        if pending is not None:
            self.acb = pending
            if self.engine.date is not None:
                self.engine.update_acb_boost(pending["boost"], pending["beta"])
        day = datetime.fromtimestamp(scan_ts, timezone.utc).strftime("%Y-%m-%d")
        if self.engine.date != day:
            self._roll_day(day)
        if self.engine.posture != self.posture:
            self.engine.set_posture(self.posture)
        self._decision_stale = False
        killed = self._book_kill_exits(prices, sn)
        funded = self._book_funding(sn)
        self._check_macro_age(now)
        eng = self.engine
        # the gates this bar is evaluated under (a pending ACB update is applied by step_bar itself)
        before = GateSnap(*eng.next_acb, self.posture, eng.mc_gate_open)
        self._entry_ctx = (prices, sn)
        self._entry_t = self._entry_fill = self._entry_refused = None
        res = eng.step_bar(self.bar_idx, vd, prices, v50, v750, vol_ok)
        self.bar_idx += 1
        after = GateSnap(eng.day_base_boost, eng.day_beta, self.posture, eng.mc_gate_open)
        stale = before != after
        if stale:
            self.stale_state_events += 1
            changed = changed_gates(before, after)
            log.warning("[STALE_STATE] gate changed mid-eval: %s", changed)
        t_dec = self._entry_t if self._entry_t is not None else self.clock()   # an entry read it when it filled
        latency_ms = (t_dec - scan_ts) * 1e3
        self.latencies.append(latency_ms)
        bus_ms = (t_recv - scan_ts) * 1e3 if t_recv is not None else float("nan")
        pub_ts = maps.EIGEN_SCAN.written_at(scan)
        pub_ms = (t_dec - pub_ts) * 1e3 if pub_ts is not None and pub_ts > 0 else float("nan")
        self.lat_buf.append(f"{sn},{latency_ms:.4f},{bus_ms:.4f},{pub_ms:.4f}\n")
        self.scans_processed += 1
        macro = self.ob.get_macro()
        decision = {"scan_number": sn, "vel_div": vd, "latency_ms": latency_ms, "vol_ok": vol_ok, "note": res.note,
                    "skipped": res.skipped, "stale_state": stale, "posture": self.posture,
                    "ob_regime": None if macro is None else macro.regime_signal}
        self._decision_stale = stale
        acct = self.account
        if killed:
            decision["kill_exits"] = killed
        if funded:
            decision["funding"] = funded
        if self._entry_refused is not None:
            self._entry_not_taken(*self._entry_refused, sn, decision)
            self.last_decision = decision
            return decision
        if res.entered is not None and eng.position is not None:
            e, fill = res.entered, self._entry_fill
            fill.update(engine_price=e.price, leverage=e.leverage, stale_state=stale, posture=self.posture,
                        latency_ms=latency_ms)
            decision["entered"] = fill
            self._journal("ENTRY", fill, sn)
            log.info("ENTRY #%d %s %s @ %.6g notional=%.2f (%s)%s", e.trade_id, "SHORT" if e.direction < 0 else "LONG",
                     e.asset, fill["price"], e.notional, fill["source"], " [STALE_STATE]" if stale else "")
        elif res.exited is not None:
            x = res.exited
            if acct.position is None:
                log.error("engine closed trade %d but no account position is open; journaling engine-only exit",
                          x.trade_id)
                fill = {"trade_id": x.trade_id, "reason": x.reason, "engine_only": True}
            else:
                try:
                    fill = acct.close(x.reason, self.books.get(x.asset), prices.get(x.asset, x.exit_price), t_dec,
                                      sn, self.limits.max_book_age_s)
                except Exception as exc:  # noqa: BLE001 - venue down / timeout: the kill switch flattens
                    self._exit_failed(x, exc, sn, decision)
                    self.last_decision = decision
                    return decision
            fill.update(engine_exit_price=x.exit_price, bars_held=x.bars_held, stale_state=stale)
            decision["exited"] = fill
            self._journal("EXIT", fill, sn)
            log.info("EXIT #%d %s %s net=%.4f capital=%.4f", x.trade_id, x.asset, x.reason, fill.get("net", 0.0),
                     acct.capital)
        else:
            if res.note not in ("in_position", "no_signal") and not res.skipped and eng.signal_fires(vd):
                # the signal fired but a gate held it back: say which (operators ask "why no trade?")
                self.signals_not_taken += 1
                log.info("signal at scan %s (vel_div=%.4f) not taken: %s", sn, vd, res.note)
            if t_dec - self._last_snapshot >= self.limits.snapshot_every_s:
                self._last_snapshot = t_dec
                self.out.snapshot(self.snapshot_now())
        self.last_decision = decision
        return decision

    def _fill_entry(self, e: Any) -> bool:
        """The engine's ``entry_fill``: fill entry ``e`` on the account before the engine opens it; False (the
        engine stays flat) when the journal is behind or the account does not fill (journaled after the bar)."""
        prices, sn = self._entry_ctx
        self._entry_t = t = self.clock()
        if not self.flush_journal_backlog():
            self._entry_refused = (e, JournalUnavailable(
                f"{len(self.journal_backlog)} event(s) not journaled yet (journal write failing)"))
            return False
        try:
            self._entry_fill = self.account.open(e.trade_id, e.asset, e.direction, e.notional, self.books.get(e.asset),
                                                 prices.get(e.asset, e.price), t, sn, self.limits.max_book_age_s)
        except Exception as exc:  # noqa: BLE001 - not filled / kill switch / duplicate / venue refused
            self._entry_refused = (e, exc)
            return False
        return True

    def _entry_not_taken(self, e: Any, exc: BaseException, sn: int, decision: dict) -> None:
        """The account did not fill the engine's entry (the engine stayed flat): journal it as not taken."""
        self.signals_not_taken += 1
        rec = {"trade_id": e.trade_id, "symbol": e.asset, "direction": e.direction, "notional": e.notional,
               "error": type(exc).__name__, "detail": str(exc)}
        decision["not_taken"] = rec
        self._journal_only("ENTRY_NOT_TAKEN", rec, sn)
        log.warning("ENTRY #%d %s not taken: %s: %s", e.trade_id, e.asset, type(exc).__name__, exc)

    def _exit_failed(self, x: Any, exc: BaseException, sn: int, decision: dict) -> None:
        """The account could not exit: engage its kill switch (flatten, booked as a kill exit later), journal it."""
        ks = getattr(self.account, "kill_switch", None)
        if ks is not None:
            ks.engage(f"exit of trade {x.trade_id} failed: {type(exc).__name__}")
        rec = {"trade_id": x.trade_id, "symbol": x.asset, "reason": x.reason, "error": type(exc).__name__,
               "detail": str(exc), "kill_switch": ks is not None}
        decision["exit_failed"] = rec
        self._journal_only("EXIT_FAILED", rec, sn)
        log.critical("EXIT #%d %s failed (%s: %s); %s", x.trade_id, x.asset, type(exc).__name__, exc,
                     "kill switch engaged" if ks is not None else "account position kept")

    def _book_kill_exits(self, prices: dict, sn: int) -> list[dict]:
        """Book the forced flat exits the account made (kill switch) into the engine and the journal."""
        exits, booked = getattr(self.account, "kill_exits", None), []
        while exits:
            fill = exits.pop(0)
            # the account booked it on its own thread: a recorded input of this scan for the replay
            self.recorder.account_call("kill_exit", {"trade_id": fill.get("trade_id")}, dict(fill), None)
            eng = self.engine
            reason = str(fill.get("reason") or "KILL_SWITCH")   # KILL_SWITCH, or PROTECTIVE_STOP (the venue's stop)
            if eng.position is not None and (eng.close_position(self.bar_idx, prices, reason) is None):
                eng.position = None
            fill.update(scan_number=sn, forced=True)
            booked.append(fill)
            self._journal("EXIT", fill, sn)
            log.warning("EXIT #%s %s %s net=%.4f capital=%.4f", fill.get("trade_id"), fill.get("symbol"), reason,
                        fill.get("net", 0.0), self.account.capital)
        return booked

    def _book_funding(self, sn: int) -> list[dict]:
        """Book the funding fees the account took from the venue into capital and the journal (FUNDING).

        The venue account fetches them on its own thread; they are booked here, on the decision thread at a scan,
        and recorded as a ``funding`` call of that scan, so the parity replay books the same fee at the same point.
        """
        due, booked = getattr(self.account, "funding_due", None), []
        while due:
            row = dict(due.pop(0))
            self.recorder.account_call("funding", {"tran_id": row.get("tran_id")}, dict(row), None)
            rec = self.account.book_funding(row)
            rec.update(scan_number=sn)
            booked.append(rec)
            self._journal("FUNDING", rec, sn)
            log.warning("FUNDING #%s %s %+.8f capital=%.4f", rec.get("trade_id"), rec.get("symbol"),
                        float(rec.get("income", 0.0)), self.account.capital)
        return booked

    def _prices(self, scan: EigenScan) -> dict | None:
        out: dict[str, float] = {}
        for a, p in zip(scan.assets, scan.asset_prices):
            if isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) and p > 0:
                out[a] = float(p)
        if not out:
            log.error("scan %s dropped: no valid price", scan.scan_number)
            return None
        return out

    def _roll_day(self, day: str) -> None:
        eng = self.engine
        if eng.date is not None:
            res = eng.end_day()
            self._journal_only("DAY_END", {"date": res.date, "capital": self.account.capital,
                                           "trades": self.account.day_trades}, self.last_scan)
            self._emit("pnl", res.date, lambda: self.pnl_payload(res.date, day_end=True))
            self._emit("day_state", res.date, self.state_payload)
            self._emit("state", None, self.state_payload)
        eng.begin_day(day, posture=self.posture, direction=self.params.direction,
                      boost=self.acb["boost"], beta=self.acb["beta"], mc_status=self.mc_status)
        self.account.roll_day(day)
        self.bar_idx = 0
        log.info("begin_day %s posture=%s boost=%.3f beta=%.2f", day, self.posture, self.acb["boost"], self.acb["beta"])

    def _gap_gate(self, scan: EigenScan) -> dict | None:
        """The gap gate: no entry on a post-gap scan (``gap_hold``) while flat; journaled once per hold."""
        if not scan.gap_hold or self.account.position is not None:
            if self._gap_holding:
                self._gap_holding = False
                log.info("gap gate released at scan %s (windows valid again)", scan.scan_number)
            return None
        self.gap_held_scans += 1
        if not self._gap_holding:
            self._gap_holding = True
            info = {"gate": "gap", "gap_s": scan.gap_s, "carried": scan.carried, "warm_windows": scan.warm_windows}
            log.warning("[GAP] scan %s follows an input gap of %.1fs: entries held until the windows are valid "
                        "again", scan.scan_number, scan.gap_s)
            self._journal_only("GATE", info, scan.scan_number)
        return {"scan_number": scan.scan_number, "note": "gap gate: post-gap scan, windows refilling",
                "gate": "gap", "gap_s": scan.gap_s}

    def _journal_only(self, kind: str, payload: dict, sn: int | None) -> None:
        self.journal_backlog.append((kind, payload, sn))
        self.flush_journal_backlog()

    def flush_journal_backlog(self) -> bool:
        """Journal the held events in order; False while a write still fails (they stay held).

        A failed journal write (full disk, I/O error) must neither lose a trade that happened (the
        account moved) nor let the trader open another one unrecorded: the event is held in memory
        and retried on every scan, and entries are refused (``ENTRY_NOT_TAKEN``) until the backlog
        drains. Found by the chaos soak (``tests/soak``): before, an EFBIG on the journal lost the
        ENTRY/EXIT rows while the venue filled them, and capital diverged from the journal.
        """
        while self.journal_backlog:
            kind, payload, sn = self.journal_backlog[0]
            try:
                self.journal.append(kind, payload, sn, snapshot=self.snapshot_now())
            except (OSError, sqlite3.Error, JournalIntegrityError) as exc:
                self.rl.error("journal-write", "journal write failed (%d event(s) held, entries halted): %s: %s",
                              len(self.journal_backlog), type(exc).__name__, exc)
                return False
            self.journal_backlog.popleft()
            self._last_snapshot = self.clock()
        return True

    def _journal(self, kind: str, payload: dict, sn: int | None) -> None:
        self._journal_only(kind, payload, sn)
        day = self.account.day or "unknown"
        stale = self._decision_stale
        self._emit("pnl", day, lambda: self.pnl_payload(day, stale_state=stale))
        self._emit("state", None, self.state_payload)

    def _emit(self, kind: str, day: str | None, build: Callable[[], Any]) -> None:
        """Build a payload and hand it to the outputs; a payload that fails validation is logged, never raised."""
        try:
            payload = build()
        except (PayloadError, ValueError, TypeError) as exc:
            self.rl.error(f"emit:{kind}", "%s payload not published: %s", kind, exc)
            return
        if kind == "pnl":
            self.out.pnl(day, payload)
        elif kind == "day_state":
            self.out.day_state(day, payload)
        else:
            self.out.state(payload)

    def journal_event(self, kind: str, payload: dict) -> None:
        """Append a lifecycle event (TRADER_START / TRADER_STOP) to the journal (after any held events)."""
        if not self.flush_journal_backlog():
            log.critical("%d decided event(s) could not be journaled: %s", len(self.journal_backlog),
                         [k for k, _, _ in self.journal_backlog])
        self.journal.append(kind, payload)

    # ── outputs ──────────────────────────────────────────────────────────────────────────────
    def latency_stats(self) -> dict:
        """p50/p99/max over the last 2000 decisions."""
        vals = sorted(list(self.latencies)[-2000:])
        return {"n": len(vals), "p50_ms": _pct(vals, 0.50), "p99_ms": _pct(vals, 0.99),
                "max_ms": vals[-1] if vals else None}

    def pnl_payload(self, day: str, day_end: bool = False, stale_state: bool = False) -> Pnl:
        """The day's result (§15.1); ``stale_state`` True when the decision it books ran under changed gates."""
        p = self.account
        return maps.PNL_BLUE_DAY.build(
            day, date=day, strategy=STRATEGY, capital=p.capital, pnl=p.capital - p.day_start_capital,
            trades=p.day_trades, total_trades=p.trades, peak_capital=p.peak_capital,
            open_position=None if p.position is None else dataclasses.asdict(p.position),
            last_trades=p.history[-5:], boost=self.engine.day_base_boost, beta=self.engine.day_beta,
            mc_status=self.engine.mc_status, posture=self.posture,
            stale_state_events=self.stale_state_events, fees_paid=p.fees_paid, day_end=day_end,
            stale_state=stale_state, updated_at=self.clock())

    def state_payload(self, snap: Snapshot | None = None) -> EngineState:
        """Build the trader's state; ``snap`` = (last_scan, engine_state, trader_state) taken earlier."""
        last_scan, engine_state, ts = snap if snap is not None else self.snapshot_now()
        acct = ts["account"]
        cap, peak = float(acct["capital"]), float(acct["peak_capital"])
        return maps.STATE_LATEST.build(
            date=acct.get("day"), pnl=cap - float(acct.get("day_start_capital", cap)),
            trades=int(acct.get("day_trades", 0)), drawdown=max(0.0, 1.0 - cap / peak) if peak > 0 else 0.0,
            strategy=STRATEGY, capital=acct["capital"], peak_capital=acct["peak_capital"],
            updated_at=self.clock(), last_scan_number=last_scan, posture=self.posture,
            posture_source=self.posture_source, account=acct, engine_state=engine_state,
            latency=self.latency_stats(), stale_state_events=ts["stale_state_events"])

    def heartbeat_fields(self) -> dict:
        return {"posture": self.posture, "scans": self.scans_processed, "last_scan": self.last_scan,
                "dup": self.scans_dup, "stale": self.scans_stale, "signals_not_taken": self.signals_not_taken,
                "latency": self.latency_stats(), "capital": self.account.capital,
                "open_position": self.account.position is not None,
                "ob_macro": self._macro_ts is not None, "ob_macro_updates": self.macro_updates,
                "ob_macro_dropped": self.macro_dropped, "ob_macro_drop_reason": self.macro_drop_reason}

    def drain_latency_lines(self) -> list[str]:
        buf = []
        while self.lat_buf:
            buf.append(self.lat_buf.popleft())
        return buf
