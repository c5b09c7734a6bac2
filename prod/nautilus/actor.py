"""``DolphinActor``: a Nautilus ``Strategy`` that is a thin wire to :class:`prod.alpha.engine.NDAlphaEngine` (bible §14).

The actor holds no alpha logic. Per driver bar (one per scan) it does what the trader core does per scan,
through Nautilus instead of the project's own order path:

1. drains the pending ACB update under ``_acb_lock`` (§14.2): the bus listener only parses and swaps a
   reference under the lock; the engine sees the update at the top of this bar's ``step_bar``;
2. rolls the day on the bar's UTC date: ``end_day`` / ``begin_day`` with the posture read at the roll (§14.6:
   CP AtomicReference ``DOLPHIN_SAFETY``, then ``DOLPHIN_SAFETY[latest]``, APEX without a bus);
3. takes a ``GateSnap`` (boost, beta, posture, MC gate) before and after ``step_bar`` (§14.3); a change is
   counted in ``stale_state_events`` and flags the bar's result (and its bus write) ``stale_state``;
4. turns ``entered`` / ``exited`` into Nautilus market orders; fills, commissions and realised PnL come back
   through ``on_order_filled`` / ``on_position_closed``, and the engine's capital is synced to the Nautilus
   account after every close (as the trader syncs to its account);
5. writes the day's result to ``DOLPHIN_PNL_BLUE[date]`` (§14.7) when a bus is given.

HIBERNATE follows the trader core's documented choice (prod/trading/core.py) over §14.1's hard skip:
the posture goes to the engine, which force-closes an open position and halts entries.

What the actor steps on comes from a *feed* (``feed.row(ts_ns)`` → :class:`ScanRow`): in replay the rows of the
day's Parquet (the backtest prepares them with the native runner's rules: aligned prices, the vol gate, gap
holds), so the engine sees exactly the floats the native backtest feeds it, while Nautilus fills orders at the
bars' (instrument-precision) prices.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Protocol

import numpy as np
from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import Bar, BarType, QuoteTick
from nautilus_trader.model.enums import OrderSide
from nautilus_trader.model.events import OrderDenied, OrderFilled, OrderRejected, PositionClosed
from nautilus_trader.model.identifiers import InstrumentId, Venue
from nautilus_trader.model.objects import Currency
from nautilus_trader.trading.strategy import Strategy

from prod.alpha.engine import GateSnap, NDAlphaEngine, changed_gates

log = logging.getLogger("dolphin.nautilus.actor")

USDT = Currency.from_str("USDT")


@dataclass(slots=True)
class ScanRow:
    """One scan as the engine is stepped on it."""
    date: str
    bar_idx: int
    vel_div: float
    prices: np.ndarray
    v50: float
    v750: float
    vol_ok: bool
    hold: bool = False          # gap hold (issue 21): no entry while flat
    last: bool = False          # last bar of the replay: close what is open (END_OF_DATA)


class Feed(Protocol):
    def row(self, ts_ns: int) -> ScanRow | None: ...


@dataclass
class TradeFills:
    """What Nautilus did for one engine trade."""
    trade_id: int
    asset: str
    side: str
    qty: float = 0.0
    entry_px: float | None = None
    exit_px: float | None = None
    entry_commission: float = 0.0
    exit_commission: float = 0.0
    realized_pnl: float | None = None
    capital_after: float | None = None
    not_taken: str | None = None
    orders: list[str] = field(default_factory=list)


class DolphinActorConfig(StrategyConfig, frozen=True):
    """Nautilus-side config; the engine, feed and bus are passed to the actor itself (they are not serialisable)."""
    strategy_name: str = "blue"
    direction: int = -1


class DolphinActor(Strategy):
    """Route each driver bar to ``NDAlphaEngine.step_bar``; orders and fills through Nautilus (bible §14)."""

    def __init__(self, config: DolphinActorConfig, engine: NDAlphaEngine, instruments: dict[str, InstrumentId],
                 driver: BarType | InstrumentId, feed: Feed, venue: Venue, bus: Any = None,
                 size_precision: dict[str, int] | None = None, hz_timeout_s: float = 2.0,
                 on_day_end: Callable[[Any, float], None] | None = None, begin_kwargs: dict | None = None) -> None:
        super().__init__(config)
        self.engine = engine
        self.instruments = instruments
        self.driver = driver
        self.feed = feed
        self.venue = venue
        self.bus = bus
        self.hz_timeout_s = hz_timeout_s
        self.size_precision = size_precision or {}
        self.direction = config.direction
        self.strategy_name = config.strategy_name
        self.on_day_end = on_day_end
        self.begin_kwargs = begin_kwargs or {}       # fixed begin_day inputs (the flow's boost/beta/mc_status)
        self.current_date: str | None = None
        self.posture = "APEX"
        self.posture_source = "default"
        self._pending_acb: dict | None = None
        self._acb_lock = threading.Lock()
        self._stale_state_events = 0
        self._day_start_capital = 0.0
        self.trades: dict[int, TradeFills] = {}
        self._order_trade: dict[str, tuple[int, str]] = {}
        self.skip_reasons: Counter[str] = Counter()
        self.bars = 0
        self.unknown_bars = 0
        self.day_results: list[tuple[Any, float]] = []
        self.bus_errors = 0
        self.account_balance_final = engine.capital

    # ------------------------------------------------------------------ lifecycle
    def on_start(self) -> None:
        acct = self.portfolio.account(self.venue)
        bal = None if acct is None else acct.balance_total(USDT)
        if bal is not None:                        # the venue's money is the engine's capital (capital sync)
            self.engine.capital = float(bal)
        if isinstance(self.driver, BarType):
            self.subscribe_bars(self.driver)
        else:
            self.subscribe_quote_ticks(self.driver)
        if self.bus is not None:
            from prod.bus import maps
            self.bus.listen(maps.ACB_BOOST, self._on_acb)
            self.bus.listen(maps.SAFETY_LATEST, self._on_safety)

    def on_stop(self) -> None:
        self.account_balance_final = self.account_balance()
        if self.current_date is not None:
            self._end_day()
            self.current_date = None

    # ------------------------------------------------------------------ bus listeners (HZ client threads)
    def _on_acb(self, _key: str, payload: Any) -> None:
        """§14.2: validated off-lock by the bus; only the reference swap is under the lock."""
        parsed = {"boost": float(payload.boost), "beta": float(payload.beta)}
        with self._acb_lock:
            self._pending_acb = parsed

    def _on_safety(self, _key: str, payload: Any) -> None:
        self.posture = payload.posture          # a plain attribute swap; the next bar hands it to the engine

    def _read_posture(self) -> str:
        """§14.6: CP AtomicReference, then the map; APEX when there is no bus or neither answers."""
        if self.bus is None:
            return self.posture
        from prod.flows.bus_io import BusUnavailableError, read_posture
        try:
            p, self.posture_source = read_posture(self.bus.client, self.hz_timeout_s)
        except BusUnavailableError as exc:
            log.warning("posture unavailable (%s): keeping %s", exc, self.posture)
            return self.posture
        return p

    # ------------------------------------------------------------------ the bar
    def on_bar(self, bar: Bar) -> None:
        self._on_scan(bar.ts_event)

    def on_quote_tick(self, tick: QuoteTick) -> None:
        self._on_scan(tick.ts_event)             # the driver is a quote stream when its books are recorded

    def _on_scan(self, ts_event: int) -> None:
        row = self.feed.row(ts_event)
        if row is None:
            self.unknown_bars += 1
            return
        self.bars += 1
        eng = self.engine
        with self._acb_lock:                       # ① atomic consume
            pending, self._pending_acb = self._pending_acb, None
        if pending is not None:
            eng.update_acb_boost(pending["boost"], pending["beta"])
        if row.date != self.current_date:          # ② day roll
            if self.current_date is not None:
                self._end_day()
            self.current_date = row.date
            self.posture = self._read_posture()
            self._day_start_capital = eng.capital
            eng.begin_day(row.date, posture=self.posture, direction=self.direction, **self.begin_kwargs)
        elif self.posture != eng.posture:
            eng.set_posture(self.posture)
        if row.hold and eng.position is None:
            self.skip_reasons["post_gap"] += 1
            self._maybe_close_last(row)
            return
        boost, beta = eng.next_acb                 # ⑤ snap before (what this step will use)
        before = GateSnap(boost, beta, self.posture, eng.mc_gate_open)
        r = eng.step_bar(row.bar_idx, row.vel_div, row.prices, row.v50, row.v750, row.vol_ok)
        after = GateSnap(eng.day_base_boost, eng.day_beta, self.posture, eng.mc_gate_open)
        stale = before != after
        if stale:
            self._stale_state_events += 1
            changed = changed_gates(before, after)
            log.warning("[STALE_STATE] gate changed mid-eval: %s", changed)
        if r.skipped is not None:
            self.skip_reasons[r.skipped] += 1
        if r.exited is not None:
            self._submit_exit(r.exited.trade_id, r.exited.asset)
        if r.entered is not None:
            self._submit_entry(r.entered)
        self._maybe_close_last(row)
        if (r.entered is not None or r.exited is not None) and self.bus is not None:
            self._write_result(stale)

    def _maybe_close_last(self, row: ScanRow) -> None:
        if row.last and self.engine.position is not None:
            rec = self.engine.close_position(row.bar_idx, row.prices)
            if rec is not None:
                self._submit_exit(rec.trade_id, rec.asset)

    # ------------------------------------------------------------------ orders
    def _submit_entry(self, e: Any) -> None:
        iid = self.instruments[e.asset]
        side = OrderSide.SELL if e.direction < 0 else OrderSide.BUY
        tf = TradeFills(e.trade_id, e.asset, "SELL" if e.direction < 0 else "BUY")
        self.trades[e.trade_id] = tf
        instrument = self.cache.instrument(iid)
        if instrument is None:
            self._not_taken(tf, f"no instrument {iid} in the cache")
            return
        prec = self.size_precision.get(e.asset, instrument.size_precision)
        q = round(e.notional / e.price, prec)
        if q <= 0:
            self._not_taken(tf, f"quantity rounds to 0 at size precision {prec}")
            return
        order = self.order_factory.market(iid, side, instrument.make_qty(Decimal(str(q))))
        self._order_trade[order.client_order_id.value] = (e.trade_id, "entry")
        tf.orders.append(order.client_order_id.value)
        self.submit_order(order)

    def _submit_exit(self, trade_id: int, asset: str) -> None:
        tf = self.trades.get(trade_id)
        if tf is None or tf.not_taken:
            return
        iid = self.instruments[asset]
        for pos in self.cache.positions_open(instrument_id=iid, strategy_id=self.id):
            order = self.order_factory.market(iid, OrderSide.BUY if pos.is_short else OrderSide.SELL, pos.quantity,
                                              reduce_only=True)
            self._order_trade[order.client_order_id.value] = (trade_id, "exit")
            tf.orders.append(order.client_order_id.value)
            self.submit_order(order, position_id=pos.id)

    def _not_taken(self, tf: TradeFills, why: str) -> None:
        """An entry Nautilus did not fill: undo the engine's position (as the trader's ENTRY_NOT_TAKEN)."""
        tf.not_taken = why
        if self.engine.position is not None and self.engine.position.trade_id == tf.trade_id:
            self.engine.position = None
        log.warning("entry of trade %d (%s) not taken: %s", tf.trade_id, tf.asset, why)

    def on_order_filled(self, event: OrderFilled) -> None:
        ref = self._order_trade.get(event.client_order_id.value)
        if ref is None:
            return
        tf = self.trades[ref[0]]
        px = float(event.last_px)
        fee = float(event.commission)
        if ref[1] == "entry":
            tf.qty += float(event.last_qty)
            tf.entry_px = px
            tf.entry_commission += fee
        else:
            tf.exit_px = px
            tf.exit_commission += fee

    def _order_failed(self, client_order_id: str, why: str) -> None:
        ref = self._order_trade.get(client_order_id)
        if ref is not None and ref[1] == "entry":
            self._not_taken(self.trades[ref[0]], why)
        elif ref is not None:
            log.error("exit order of trade %d refused: %s", ref[0], why)

    def on_order_rejected(self, event: OrderRejected) -> None:
        self._order_failed(event.client_order_id.value, f"rejected: {event.reason}")

    def on_order_denied(self, event: OrderDenied) -> None:
        self._order_failed(event.client_order_id.value, f"denied: {event.reason}")

    def on_position_closed(self, event: PositionClosed) -> None:
        ref = self._order_trade.get(event.closing_order_id.value)
        cap = self.account_balance()
        if ref is not None:
            tf = self.trades[ref[0]]
            tf.realized_pnl = float(event.realized_pnl)
            tf.capital_after = cap
        self.engine.capital = cap                  # capital sync: Nautilus's account is the money

    def account_balance(self) -> float:
        acct = self.portfolio.account(self.venue)
        return float(acct.balance_total(USDT))

    # ------------------------------------------------------------------ results
    @property
    def stale_state_events(self) -> int:
        return self._stale_state_events

    def _end_day(self) -> None:
        res = self.engine.end_day()
        self.day_results.append((res, self._day_start_capital))
        if self.on_day_end is not None:
            self.on_day_end(res, self._day_start_capital)
        if self.bus is not None:
            self._write_result(False, day_end=True, date=res.date, pnl=res.pnl, trades=res.trades)

    def _write_result(self, stale: bool, day_end: bool = False, date: str | None = None, pnl: float | None = None,
                      trades: int | None = None) -> None:
        """§14.7: the day's result to ``DOLPHIN_PNL_BLUE[date]`` (a stale-state write is flagged)."""
        import time

        from prod.bus import maps
        eng = self.engine
        d = date or self.current_date
        day_trades = [t for t in eng.trades if t.exit_date == d]
        payload = maps.PNL_BLUE_DAY.build(
            d, date=d, strategy=self.strategy_name, capital=eng.capital,
            pnl=eng.capital - self._day_start_capital if pnl is None else pnl,
            trades=len(day_trades) if trades is None else trades, updated_at=time.time(),
            total_trades=len(eng.trades), boost=eng.day_base_boost, beta=eng.day_beta, mc_status=eng.mc_status,
            posture=self.posture, stale_state_events=self._stale_state_events, day_end=day_end, stale_state=stale)
        try:
            self.bus.publish(maps.PNL_BLUE_DAY, payload, d, wait=False)
        except Exception as exc:  # noqa: BLE001 - a bus outage must not stop the replay; counted and logged
            self.bus_errors += 1
            log.error("result for %s not written: %r", d, exc)
        if stale:
            log.error("[STALE_STATE] result for %s flagged: DO NOT use for live order submission", d)
