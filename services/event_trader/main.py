"""Event-driven paper trader: one NDAlphaEngine.step_bar per new scan on ``latest_eigen_scan``.

Bible §14, §24.3, shared/ARCHITECTURE.md §4/§6. No polling on the hot path: an entry listener on
``DOLPHIN_FEATURES["latest_eigen_scan"]`` queues each scan to one decision thread, which

1. drops a scan whose number is not above the last processed one (dedup, survives restarts) and a
   scan older than ``max_scan_age_s`` (10 s, warning);
2. drains the pending ACB update under ``_acb_lock`` (§14.2: the listener parses outside the lock
   and only swaps a reference inside it);
3. rolls the day (``end_day`` → ``DOLPHIN_PNL_BLUE[date]`` + ``STATE_BLUE[state_blue_<date>]``,
   ``begin_day`` with the cached posture and the last ACB boost/beta);
4. computes ``vol_regime_ok`` from BTC's rolling 50-bar volatility at 512 bits (§25);
5. takes a ``_GateSnap`` (boost, beta, posture, MC gate) before and after ``step_bar``; a change
   marks the result ``stale_state`` (§14.3): on paper the fill still happens (the engine already
   holds the position) but the fill record and the log carry the flag (never a live order);
6. fills an entry or exit on paper against the latest book of that asset (services.event_trader.paper),
   syncs the engine's capital to the paper account (capital sync), journals the event (SQLite WAL +
   hash-chained audit log) and publishes ``DOLPHIN_PNL_BLUE[date]`` and ``DOLPHIN_STATE_BLUE[latest]``;
7. records the scan-to-decision latency (scanner ``timestamp_ns`` → decision) per scan, in the
   heartbeat (p50/p99) and in ``<data>/trader/latency.csv``, with its publish-to-decision part
   (``bridge_ts``, the time the scan was put on the bus, → decision; for the live scanner the
   difference is the scan's computation). Snapshots between trades (every 5 s)
   are written and published by a persist thread, off the decision path.

Posture comes from a cache kept by a poller of the CP AtomicReference ``DOLPHIN_SAFETY`` (map
``DOLPHIN_SAFETY["latest"]`` as fallback, APEX when neither answers, §14.6) plus a map listener.
HIBERNATE is passed to the engine, which force-closes an open position and blocks entries (§11.7)
rather than skipping the bar (decision: a skipped bar could never close the position). OB features
come from listeners on the ten feature shards into an in-process cache (§22.2).

Paper sessions disable the engine's SmartPlacer fee/slippage emulation (§8.3: ``use_sp_fees`` and
``use_sp_slippage`` off); the paper fills carry the taker fees and the spread instead.

At start the trader takes the single-instance lock, verifies the journal's audit chain (tamper or
truncation → refuses to trade, exit 4) and restores engine state, paper account and last scan
number from the journal's snapshot, so a restart mid-position keeps capital and position and never
enters twice.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import queue
import signal
import sys
import threading
import time
from collections import deque, namedtuple
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from prod.alpha.engine import NDAlphaEngine
from prod.alpha.ob import InProcessOBProvider
from prod.alpha.params import EngineParams
from prod.bus import maps
from prod.bus.client import decoding_listener, make_client, write_heartbeat
from prod.settings import Settings, load_settings
from services.event_trader.journal import Journal, JournalIntegrityError
from services.event_trader.lock import InstanceLock, LockBusy
from services.event_trader.paper import Book, PaperAccount
from services.event_trader.vol import VolRegime

log = logging.getLogger("event_trader")
SERVICE_NAME = "event_trader"
STRATEGY = "blue"
EXIT_LOCKED = 3
EXIT_INTEGRITY = 4
EXIT_CONFIG = 5

_GateSnap = namedtuple("_GateSnap", ["acb_boost", "acb_beta", "posture", "mc_gate_open"])


@dataclass(frozen=True)
class TraderConfig:
    settings: Settings
    max_scan_age_s: float = 10.0
    max_book_age_s: float = 30.0
    posture_poll_s: float = 0.5
    heartbeat_s: float = 2.0
    snapshot_every_s: float = 5.0
    gil_switch_interval_s: float = 0.0005
    hz_timeout_s: float = 2.0

    @property
    def trader_dir(self) -> Path:
        return Path(self.settings.data_dir) / "trader"


def load_engine_params() -> EngineParams:
    """Load the frozen blue champion (drift refused) and switch to paper friction (§8.3)."""
    from prod.configs import load_blue
    cfg = load_blue()
    return dataclasses.replace(cfg.engine, use_sp_fees=False, use_sp_slippage=False)


def _result_within(fut: Any, timeout: float) -> Any:
    done = threading.Event()
    fut.add_done_callback(lambda _f: done.set())
    if not done.wait(timeout):
        raise TimeoutError("hazelcast call timed out")
    return fut.result()


def _pct(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


class EventTrader:
    """The trader's state machine; bus I/O is limited to listeners, a poller and fire-and-forget writes."""

    def __init__(self, cfg: TraderConfig, journal: Journal, params: EngineParams, client: Any = None,
                 clock: Callable[[], float] = time.time):
        self.cfg, self.journal, self.params, self.client, self.clock = cfg, journal, params, client, clock
        self.symbols = tuple(cfg.settings.symbols)
        self.ob = InProcessOBProvider()
        self.books: dict[str, Book] = {}
        self._imb: dict[str, deque] = {}
        self._acb_lock = threading.Lock()
        self._pending_acb: dict | None = None
        self.acb = {"boost": 1.0, "beta": 0.0}
        self.posture = "APEX"
        self.posture_source = "default"
        self.stale_state_events = 0
        self.scans_seen = self.scans_processed = self.scans_dup = self.scans_stale = self.scans_bad = 0
        self.latencies: deque = deque(maxlen=20000)
        self.last_decision: dict | None = None
        self._q: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.vol = VolRegime()
        self.bar_idx = 0
        self.last_scan: int | None = None
        self.signals_not_taken = 0
        self._last_snapshot = 0.0
        self._persist_q: queue.Queue = queue.Queue()
        self._pub_lock = threading.Lock()
        self._published_scan: int | None = None
        self._lat_buf: deque = deque()
        self._restore()

    # ── restore ──────────────────────────────────────────────────────────────────────────────
    def _restore(self) -> None:
        last_scan, engine_state, trader_state = self.journal.load_snapshot()
        if engine_state is None:
            self.engine = NDAlphaEngine(self.params, self.symbols)
            self.engine.set_ob_engine(self.ob)
            self.paper = PaperAccount.new(self.engine.capital)
            log.info("fresh start: capital %.2f", self.paper.capital)
            return
        try:
            self.engine = NDAlphaEngine.from_state(self.params, engine_state)
        except (ValueError, KeyError, TypeError) as exc:
            raise JournalIntegrityError(f"journal snapshot cannot restore the engine: {exc}") from exc
        self.engine.set_ob_engine(self.ob)
        ts = trader_state or {}
        self.paper = PaperAccount.from_dict(ts["account"]) if "account" in ts else PaperAccount.new(self.engine.capital)
        self.engine.capital = self.paper.capital
        self.bar_idx = int(ts.get("bar_idx", 0))
        self.acb = ts.get("acb", self.acb)
        self.stale_state_events = int(ts.get("stale_state_events", 0))
        if isinstance(ts.get("vol"), dict):
            self.vol.restore(ts["vol"])
        self.last_scan = last_scan
        eng_pos = self.engine.position
        if (eng_pos is None) != (self.paper.position is None):
            raise JournalIntegrityError(
                f"journal snapshot inconsistent: engine position {eng_pos} vs paper {self.paper.position}")
        log.warning("RESTORED from journal: capital=%.4f last_scan=%s position=%s", self.paper.capital, last_scan,
                    None if self.paper.position is None else dataclasses.asdict(self.paper.position))

    def trader_state(self) -> dict:
        return {"account": self.paper.to_dict(), "bar_idx": self.bar_idx, "acb": self.acb,
                "stale_state_events": self.stale_state_events, "vol": self.vol.state()}

    # ── listeners (client threads: parse, then hand over) ────────────────────────────────────
    def on_scan(self, key: str, payload: dict) -> None:
        self.scans_seen += 1
        self._q.put((payload, self.clock()))

    def on_acb(self, key: str, payload: dict) -> None:
        try:
            boost, beta = float(payload["boost"]), float(payload["beta"])
        except (KeyError, TypeError, ValueError):
            log.error("acb_boost dropped: no numeric boost/beta in %r", payload)
            return
        if not (math.isfinite(boost) and boost > 0 and math.isfinite(beta) and beta >= 0):
            log.error("acb_boost dropped: out of range boost=%r beta=%r", boost, beta)
            return
        parsed = {"boost": boost, "beta": beta}
        with self._acb_lock:
            self._pending_acb = parsed

    def on_safety(self, key: str, payload: dict) -> None:
        if key == maps.KEY_LATEST:
            self._set_posture(payload.get("posture"), "map-listener")

    def on_shard(self, key: str, payload: dict) -> None:
        sym = payload.get("symbol", key)
        try:
            book = Book(float(payload["best_bid"]), float(payload["best_ask"]), float(payload["ts"]))
        except (KeyError, TypeError, ValueError):
            return
        if not (book.best_bid > 0 and book.best_ask > book.best_bid):
            log.warning("shard %s: crossed/invalid book dropped (bid=%s ask=%s)", sym, book.best_bid, book.best_ask)
            return
        h = self._imb.setdefault(sym, deque(maxlen=5))
        h.append(float(payload["imbalance"]))
        ma5 = sum(h) / len(h)
        sign = 1 if ma5 > 0 else -1 if ma5 < 0 else 0
        persistence = sum(1 for v in h if (v > 0) - (v < 0) == sign) / len(h) if sign else 0.0
        try:
            self.ob.update_asset(sym, {"imbalance_ma5": payload.get("imbalance_ma5", ma5),
                                       "imbalance_persistence": payload.get("imbalance_persistence", persistence),
                                       "withdrawal_velocity": payload.get("withdrawal_velocity", 0.0),
                                       "depth_quality": payload["depth_quality"],
                                       "fill_probability": payload["fill_probability"]})
        except ValueError as exc:
            log.warning("shard %s dropped: %s", sym, exc)
            return
        self.books[sym] = book

    def _set_posture(self, posture: Any, source: str) -> None:
        if posture not in ("APEX", "STALKER", "TURTLE", "HIBERNATE"):
            log.error("posture %r from %s ignored", posture, source)
            return
        if posture != self.posture:
            log.warning("posture %s -> %s (%s)", self.posture, posture, source)
        self.posture, self.posture_source = posture, source

    def read_posture(self) -> None:
        """Poll the CP AtomicReference, then the map; APEX when neither answers (§14.6)."""
        c = self.client
        try:
            raw = _result_within(c.cp_subsystem.get_atomic_reference(maps.SAFETY_ATOMIC_REF).get(), self.cfg.hz_timeout_s)
            if raw is not None:
                self._set_posture(maps.decode(maps.SAFETY, maps.KEY_LATEST, raw)["posture"], "cp-atomic-ref")
                return
        except Exception as exc:  # noqa: BLE001
            log.debug("AtomicReference read failed: %r", exc)
        try:
            raw = _result_within(c.get_map(maps.SAFETY).get(maps.KEY_LATEST), self.cfg.hz_timeout_s)
            if raw is not None:
                self._set_posture(maps.decode(maps.SAFETY, maps.KEY_LATEST, raw)["posture"], "map-fallback")
                return
        except Exception as exc:  # noqa: BLE001
            log.debug("safety map read failed: %r", exc)
        self._set_posture("APEX", "default")

    # ── decision thread ──────────────────────────────────────────────────────────────────────
    def process(self, scan: dict, t_recv: float | None = None) -> dict | None:
        """Run one scan through the engine; return the decision record (None when skipped)."""
        sn = scan["scan_number"]
        if self.last_scan is not None and sn <= self.last_scan:
            self.scans_dup += 1
            return None
        now = self.clock()
        scan_ts = scan["timestamp_ns"] / 1e9
        age = now - scan_ts
        if age > self.cfg.max_scan_age_s:
            self.scans_stale += 1
            log.warning("scan %s is %.1fs old (> %.0fs): skipped", sn, age, self.cfg.max_scan_age_s)
            return None
        prices = self._prices(scan)
        if prices is None:
            self.scans_bad += 1
            return None
        vd, v50, v750 = scan.get("vel_div"), scan.get("w50_velocity"), scan.get("w750_velocity")
        btc = prices.get("BTCUSDT")
        vol_ok = self.vol.update(btc)
        self.last_scan = sn
        if vd is None or v50 is None or v750 is None:
            return {"scan_number": sn, "note": "scanner warming up"}
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
        eng = self.engine
        # the gates this bar is evaluated under (a pending ACB update is applied by step_bar itself)
        before = _GateSnap(*eng.next_acb, self.posture, eng.mc_gate_open)
        res = eng.step_bar(self.bar_idx, vd, prices, v50, v750, vol_ok)
        self.bar_idx += 1
        after = _GateSnap(eng.day_base_boost, eng.day_beta, self.posture, eng.mc_gate_open)
        stale = before != after
        if stale:
            self.stale_state_events += 1
            changed = [f for f in _GateSnap._fields if getattr(before, f) != getattr(after, f)]
            log.warning("[STALE_STATE] gate changed mid-eval: %s", changed)
        t_dec = self.clock()
        latency_ms = (t_dec - scan_ts) * 1e3
        self.latencies.append(latency_ms)
        bus_ms = (t_recv - scan_ts) * 1e3 if t_recv is not None else float("nan")
        pub_ts = scan.get("bridge_ts")
        pub_ms = (t_dec - pub_ts) * 1e3 if isinstance(pub_ts, (int, float)) and pub_ts > 0 else float("nan")
        self._lat_buf.append(f"{sn},{latency_ms:.4f},{bus_ms:.4f},{pub_ms:.4f}\n")
        self.scans_processed += 1
        decision = {"scan_number": sn, "latency_ms": latency_ms, "vol_ok": vol_ok, "note": res.note,
                    "skipped": res.skipped, "stale_state": stale, "posture": self.posture}
        if res.entered is not None:
            e = res.entered
            fill = self.paper.open(e.trade_id, e.asset, e.direction, e.notional, self.books.get(e.asset),
                                   prices.get(e.asset, e.price), t_dec, sn, self.cfg.max_book_age_s)
            fill.update(engine_price=e.price, leverage=e.leverage, stale_state=stale, posture=self.posture,
                        latency_ms=latency_ms)
            decision["entered"] = fill
            self._journal("ENTRY", fill, sn)
            log.info("ENTRY #%d %s %s @ %.6g notional=%.2f (%s)%s", e.trade_id, "SHORT" if e.direction < 0 else "LONG",
                     e.asset, fill["price"], e.notional, fill["source"], " [STALE_STATE]" if stale else "")
        elif res.exited is not None:
            x = res.exited
            if self.paper.position is None:
                log.error("engine closed trade %d but no paper position is open; journaling engine-only exit", x.trade_id)
                fill = {"trade_id": x.trade_id, "reason": x.reason, "engine_only": True}
            else:
                fill = self.paper.close(x.reason, self.books.get(x.asset), prices.get(x.asset, x.exit_price), t_dec, sn,
                                        self.cfg.max_book_age_s)
            eng.capital = self.paper.capital  # capital sync: the paper account is the truth
            fill.update(engine_exit_price=x.exit_price, bars_held=x.bars_held, stale_state=stale)
            decision["exited"] = fill
            self._journal("EXIT", fill, sn)
            log.info("EXIT #%d %s %s net=%.4f capital=%.4f", x.trade_id, x.asset, x.reason, fill.get("net", 0.0),
                     self.paper.capital)
        else:
            if res.note not in ("in_position", "no_signal") and not res.skipped and eng.signal_fires(vd):
                # the signal fired but a gate held it back: say which (operators ask "why no trade?")
                self.signals_not_taken += 1
                log.info("signal at scan %s (vel_div=%.4f) not taken: %s", sn, vd, res.note)
            if t_dec - self._last_snapshot >= self.cfg.snapshot_every_s:
                # persisted and published by the persist thread, off the decision path
                self._last_snapshot = t_dec
                self._persist_q.put((self.last_scan, eng.get_state(), self.trader_state()))
        self.last_decision = decision
        return decision

    def _prices(self, scan: dict) -> dict | None:
        assets, px = scan["assets"], scan["asset_prices"]
        if len(assets) != len(px):
            log.error("scan %s dropped: %d assets but %d prices", scan["scan_number"], len(assets), len(px))
            return None
        out: dict[str, float] = {}
        for a, p in zip(assets, px):
            if isinstance(a, str) and isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) and p > 0:
                out[a] = float(p)
        if not out:
            log.error("scan %s dropped: no valid price", scan["scan_number"])
            return None
        return out

    def _roll_day(self, day: str) -> None:
        eng = self.engine
        if eng.date is not None:
            res = eng.end_day()
            self._journal("DAY_END", {"date": res.date, "capital": self.paper.capital, "trades": self.paper.day_trades},
                          self.last_scan)
            self.publish_pnl(res.date, day_end=True)
            if self.client is not None:
                self.client.get_map(maps.STATE_BLUE).set(maps.state_key(STRATEGY, res.date),
                                                          json.dumps(self.state_payload(), allow_nan=False))
        eng.begin_day(day, posture=self.posture, direction=self.params.direction,
                      boost=self.acb["boost"], beta=self.acb["beta"])
        self.paper.roll_day(day)
        self.bar_idx = 0
        log.info("begin_day %s posture=%s boost=%.3f beta=%.2f", day, self.posture, self.acb["boost"], self.acb["beta"])

    def _journal(self, kind: str, payload: dict, sn: int | None) -> None:
        self.journal.append(kind, payload, sn, snapshot=(self.last_scan, self.engine.get_state(), self.trader_state()))
        self._last_snapshot = self.clock()
        self.publish_pnl(self.paper.day or "unknown")
        self.publish_state()

    # ── outputs ──────────────────────────────────────────────────────────────────────────────
    def latency_stats(self) -> dict:
        """p50/p99/max over the last 2000 decisions."""
        vals = sorted(list(self.latencies)[-2000:])
        return {"n": len(vals), "p50_ms": _pct(vals, 0.50), "p99_ms": _pct(vals, 0.99),
                "max_ms": vals[-1] if vals else None}

    def pnl_payload(self, day: str, day_end: bool = False) -> dict:
        p = self.paper
        return {"date": day, "strategy": STRATEGY, "capital": p.capital, "pnl": p.capital - p.day_start_capital,
                "trades": p.day_trades, "total_trades": p.trades, "peak_capital": p.peak_capital,
                "open_position": None if p.position is None else dataclasses.asdict(p.position),
                "last_trades": p.history[-5:], "boost": self.engine.day_base_boost, "beta": self.engine.day_beta,
                "mc_status": self.engine.mc_status, "posture": self.posture,
                "stale_state_events": self.stale_state_events, "fees_paid": p.fees_paid, "day_end": day_end,
                "updated_at": self.clock()}

    def state_payload(self, snap: tuple | None = None) -> dict:
        """Build STATE_BLUE[latest]; ``snap`` = (last_scan, engine_state, trader_state) taken earlier."""
        if snap is None:
            snap = (self.last_scan, self.engine.get_state(), self.trader_state())
        last_scan, engine_state, ts = snap
        acct = ts["account"]
        return {"strategy": STRATEGY, "capital": acct["capital"], "peak_capital": acct["peak_capital"],
                "updated_at": self.clock(), "last_scan_number": last_scan, "posture": self.posture,
                "posture_source": self.posture_source, "paper": acct,
                "engine_state": engine_state, "latency": self.latency_stats(),
                "stale_state_events": ts["stale_state_events"]}

    def publish_pnl(self, day: str, day_end: bool = False) -> None:
        if self.client is None:
            return
        try:
            self.client.get_map(maps.PNL_BLUE).set(day, maps.encode(maps.PNL_BLUE, day, self.pnl_payload(day, day_end)))
        except Exception as exc:  # noqa: BLE001
            log.warning("PNL publish failed: %r", exc)

    def publish_state(self, snap: tuple | None = None) -> None:
        """Publish STATE_BLUE[latest]; never an older snapshot after a newer one (two threads publish)."""
        if self.client is None:
            return
        try:
            payload = self.state_payload(snap)
            with self._pub_lock:
                sn = payload["last_scan_number"]
                if sn is not None and self._published_scan is not None and sn < self._published_scan:
                    return
                self._published_scan = sn
                self.client.get_map(maps.STATE_BLUE).set(
                    maps.KEY_LATEST, maps.encode(maps.STATE_BLUE, maps.KEY_LATEST, payload))
        except Exception as exc:  # noqa: BLE001
            log.warning("STATE publish failed: %r", exc)

    # ── threads ──────────────────────────────────────────────────────────────────────────────
    def start(self) -> None:
        """Register listeners and start the decision, posture and heartbeat threads."""
        c = self.client
        self.read_posture()
        fm = c.get_map(maps.FEATURES)
        scan_cb = decoding_listener(maps.FEATURES, self.on_scan)
        fm.add_entry_listener(include_value=True, key=maps.KEY_EIGEN_SCAN, added_func=scan_cb,
                              updated_func=scan_cb).result()
        acb_cb = decoding_listener(maps.FEATURES, self.on_acb)
        fm.add_entry_listener(include_value=True, key=maps.KEY_ACB_BOOST, added_func=acb_cb,
                              updated_func=acb_cb).result()
        saf_cb = decoding_listener(maps.SAFETY, self.on_safety)
        c.get_map(maps.SAFETY).add_entry_listener(include_value=True, key=maps.KEY_LATEST, added_func=saf_cb,
                                                  updated_func=saf_cb).result()
        for sym in self.symbols:   # one key listener per engine symbol: no event for the rest of the universe
            name = maps.shard_map(sym)
            cb = decoding_listener(name, self.on_shard)
            c.get_map(name).add_entry_listener(include_value=True, key=sym, added_func=cb, updated_func=cb).result()
        try:  # seed ACB from the current value (not on the hot path)
            raw = _result_within(fm.get(maps.KEY_ACB_BOOST), self.cfg.hz_timeout_s)
            if raw is not None:
                self.on_acb(maps.KEY_ACB_BOOST, maps.decode(maps.FEATURES, maps.KEY_ACB_BOOST, raw))
        except Exception as exc:  # noqa: BLE001
            log.warning("initial acb_boost read failed: %r", exc)
        for target, name in ((self._decision_loop, "decisions"), (self._posture_loop, "posture"),
                             (self._heartbeat_loop, "heartbeat"), (self._persist_loop, "persist")):
            t = threading.Thread(target=target, name=f"trader-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self.publish_state()
        log.info("trader listening on %s[%s]", maps.FEATURES, maps.KEY_EIGEN_SCAN)

    def _decision_loop(self) -> None:
        while not self._stop.is_set():
            try:
                scan, t_recv = self._q.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.process(scan, t_recv)
            except Exception:  # noqa: BLE001 - one bad scan must not kill the trader
                log.exception("scan %s failed", scan.get("scan_number"))

    def _persist_loop(self) -> None:
        while not self._stop.is_set() or not self._persist_q.empty():
            try:
                snap = self._persist_q.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                if self.journal.save_snapshot(*snap):   # False: a trade snapshot is newer; publish nothing older
                    self.publish_state(snap)
            except Exception:  # noqa: BLE001
                log.exception("periodic snapshot failed")

    def _posture_loop(self) -> None:
        while not self._stop.wait(self.cfg.posture_poll_s):
            self.read_posture()

    def flush_latency_log(self) -> None:
        """Append buffered ``scan_number,latency_ms,bus_ms,publish_to_decision_ms`` lines to ``<data>/trader/latency.csv``.

        ``bus_ms`` is the part from the scan timestamp to the listener callback (publish + member +
        event delivery); the rest is queueing and the decision itself.
        """
        buf = []
        while self._lat_buf:
            buf.append(self._lat_buf.popleft())
        if buf:
            with open(self.cfg.trader_dir / "latency.csv", "a") as fh:
                fh.writelines(buf)

    def _heartbeat_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.flush_latency_log()
            except OSError as exc:
                log.warning("latency log: %r", exc)
            try:
                write_heartbeat(self.client, SERVICE_NAME, now=self.clock(), posture=self.posture,
                                scans=self.scans_processed, last_scan=self.last_scan, dup=self.scans_dup, stale=self.scans_stale,
                                signals_not_taken=self.signals_not_taken,
                                latency=self.latency_stats(), capital=self.paper.capital,
                                open_position=self.paper.position is not None)
            except Exception as exc:  # noqa: BLE001
                log.debug("heartbeat failed: %r", exc)
            self._stop.wait(self.cfg.heartbeat_s)

    def stop(self) -> None:
        """Stop threads, write a final snapshot and publish the state."""
        self._stop.set()
        for t in self._threads:
            t.join(5)
        try:
            self.journal.save_snapshot(self.last_scan, self.engine.get_state(), self.trader_state())
        except Exception:  # noqa: BLE001
            log.exception("final snapshot failed")
        self.publish_state()
        if self.paper.day:
            self.publish_pnl(self.paper.day)


def run(cfg: TraderConfig, stop: threading.Event) -> int:
    """Lock, verify the journal, restore, connect, trade until ``stop``; return an exit code."""
    cfg.trader_dir.mkdir(parents=True, exist_ok=True)
    lock = InstanceLock(cfg.trader_dir / "event_trader.lock")
    try:
        lock.acquire()
    except LockBusy as exc:
        log.error("%s", exc)
        print(f"event_trader: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    try:
        try:
            journal = Journal.open(cfg.trader_dir / "journal.sqlite", cfg.trader_dir / "audit.log")
            params = load_engine_params()
            trader = EventTrader(cfg, journal, params)
        except JournalIntegrityError as exc:
            log.critical("REFUSING TO TRADE: trade journal integrity check failed: %s", exc)
            print(f"event_trader: REFUSING TO TRADE: {exc}", file=sys.stderr)
            return EXIT_INTEGRITY
        except (ValueError, OSError) as exc:
            log.critical("REFUSING TO TRADE: configuration error: %s", exc)
            return EXIT_CONFIG
        journal.append("TRADER_START", {"capital": trader.paper.capital, "last_scan": trader.last_scan,
                                        "open_position": trader.paper.position is not None})
        client = None
        while client is None and not stop.is_set():
            try:
                client = make_client(cfg.settings, name=SERVICE_NAME)
            except Exception as exc:  # noqa: BLE001
                log.warning("Hazelcast not reachable (%r); retrying", exc)
                stop.wait(2.0)
        if client is None:
            return 0
        trader.client = client
        trader.start()
        stop.wait()
        trader.stop()
        journal.append("TRADER_STOP", {"capital": trader.paper.capital, "last_scan": trader.last_scan})
        journal.close()
        client.shutdown()
        return 0
    finally:
        lock.release()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="DOLPHIN event-driven paper trader (blue)")
    ap.add_argument("--hz-members", default=None)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--max-scan-age", type=float, default=10.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings(hz_members=tuple(args.hz_members.split(",")) if args.hz_members else None,
                             data_dir=args.data_dir)
    cfg = TraderConfig(settings=settings, max_scan_age_s=args.max_scan_age)
    log.info("event_trader starting: %s", json.dumps({**dataclasses.asdict(cfg), "settings": settings.as_log_dict()},
                                                      default=str))
    # a short GIL switch interval lets the decision thread preempt the persist/listener threads sooner
    sys.setswitchinterval(cfg.gil_switch_interval_s)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return run(cfg, stop)


if __name__ == "__main__":
    sys.exit(main())
