"""NDAlphaEngine (bible §13, shared/ARCHITECTURE.md §6): the one bar loop the backtest and the live
trader both drive.  Pure: no I/O, no clock, no logging, no bus; ports (OB provider, ACB provider,
MC forewarner) are injected objects.

Design notes: ``docs/design/prod.alpha.md``.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import deque, namedtuple
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
from prod.alpha.jit import njit

from prod.alpha import barscan
from prod.alpha import exits as ex
from prod.alpha import fees as fz
from prod.alpha.mc_status import MC_STATUSES, classify_mc
from prod.alpha.irp import ob_depth_adjustment, select_asset
from prod.alpha.ob import market_ob_multiplier
from prod.alpha.params import EngineParams
from prod.alpha.records import BarResult, BlockResult, DayResult, EntryInfo, Position, TradeRecord
from prod.alpha.signal import (DC_CONFIRM, DC_CONTRADICT, check_dc, confidence,
                               ob_confidence_adjust)
from prod.alpha.sizing import (bucket_boost, dynamic_leverage, effective_fraction, final_leverage,
                               regime_size_mult, signal_bucket, streak_mult, strength_score,
                               trend_mult)

POSTURES = ("APEX", "STALKER", "TURTLE", "HIBERNATE")
GateSnap = namedtuple("GateSnap", ["acb_boost", "acb_beta", "posture", "mc_gate_open"])


def changed_gates(before: GateSnap, after: GateSnap) -> list[str]:
    """The gates that differ between the snapshots taken before and after one ``step_bar`` (a stale decision)."""
    return [f for f in GateSnap._fields if getattr(before, f) != getattr(after, f)]

STATE_VERSION = 1


__all__ = ["BarResult", "BlockResult", "DayResult", "EngineError", "EntryInfo", "NDAlphaEngine", "Position",
           "TradeRecord", "classify_mc", "params_hash"]


class EngineError(RuntimeError):
    """The engine was driven out of sequence (e.g. step_bar before begin_day)."""


def params_hash(params: EngineParams) -> str:
    """Return sha256(json.dumps(params, sort_keys=True))[:16] of the engine parameters."""
    return hashlib.sha256(json.dumps(params.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


@njit(cache=True)
def _push_prices(buf, pos, L, prices):
    n = prices.shape[0]
    bad = 0
    for a in range(n):
        p = prices[a]
        if not (p > 0.0 and p < np.inf):
            bad += 1
    if bad == n:
        return bad
    for a in range(n):
        p = prices[a]
        if not (p > 0.0 and p < np.inf):
            p = np.nan
        buf[pos, a] = p
        buf[pos + L, a] = p
    return bad


def _nan_to_none(v: float) -> Optional[float]:
    return None if v != v else float(v)


class NDAlphaEngine:
    """The champion alpha engine; see the module docstring for the call sequence."""

    def __init__(self, params: EngineParams, assets: Sequence[str],
                 entry_fill: Callable[[EntryInfo], bool] | None = None,
                 capital_of: Callable[[], float] | None = None) -> None:
        """``entry_fill`` (a trader's account): asked to fill each entry before the position opens; False
        leaves the engine flat (note ``entry_not_taken``). ``capital_of`` (the same account): the capital the
        engine sizes from and reports is the account's, never a copy. None: every entry opens and the engine
        books its own capital (backtests)."""
        if not isinstance(params, EngineParams):
            raise TypeError("params must be an EngineParams")
        assets = tuple(str(a) for a in assets)
        if not assets or len(set(assets)) != len(assets):
            raise ValueError("assets must be a non-empty sequence of unique symbols")
        p = params
        self.params = p
        self.assets = assets
        self._entry_fill = entry_fill
        self._capital_of = capital_of
        self.asset_index = {a: i for i, a in enumerate(assets)}
        self.n_assets = len(assets)
        self._L = max(p.irp_window, p.dc_lookback_bars + 1)
        self._buf = np.full((2 * self._L, self.n_assets), np.nan)
        self._pos = self._L - 1
        self._n_hist = 0
        self._zeros = np.zeros(self.n_assets)
        self._ones_bool = np.ones(self.n_assets, dtype=np.bool_)
        self._fallback_idx = self.asset_index.get(p.fallback_asset, -1)
        # capital, trades, learning state
        self._capital = p.initial_capital
        self.trades: list[TradeRecord] = []
        self._trade_seq = 0
        self._bar_count = 0
        self._vd_hist: deque = deque(maxlen=10)
        self._bucket_wins = [0, 0, 0, 0]
        self._bucket_totals = [0, 0, 0, 0]
        self._recent: deque = deque(maxlen=5)
        self.position: Optional[Position] = None
        # day state
        self._date: Optional[str] = None
        self._posture = "APEX"
        self._direction = p.direction
        self._thr, self._ext = p.signed_gate()
        self._base_boost = 1.0
        self._beta = 0.0
        self._mc_status = "OK"
        self._mc_scale = 1.0
        self._halt = False
        self._regime_mult = 1.0
        self._day_start_capital = self._capital
        self._day_first_trade = 0
        self._day_skipped = 0
        self._pending_acb: Optional[tuple[float, float]] = None
        self._subday_exit = False
        self._rng = np.random.RandomState(p.seed)
        # ports
        self._ob = None
        self._mc = None
        self._mc_base_cfg: dict = {}
        self._acb = None

    # ------------------------------------------------------------------ ports
    def set_ob_engine(self, provider) -> None:
        """Attach an OB provider (prod.alpha.ob); None or a null provider → legacy paths (§9)."""
        if provider is not None and getattr(provider, "is_null", False):
            provider = None
        self._ob = provider

    def set_mc_forewarner(self, forewarner, base_cfg: Optional[Mapping] = None) -> None:
        """Attach an MC forewarner with `assess_config_dict(cfg)`; consulted by begin_day (§12)."""
        self._mc = forewarner
        self._mc_base_cfg = dict(base_cfg or {})

    def set_acb(self, acb) -> None:
        """Attach an ACB with `get_dynamic_boost_for_date(date, ob_engine) -> {'boost','beta'}`."""
        self._acb = acb

    # ------------------------------------------------------------------ day flow
    @property
    def date(self) -> Optional[str]:
        """The current trading day, or None between end_day and begin_day."""
        return self._date

    @property
    def posture(self) -> str:
        return self._posture

    @property
    def regime_size_mult(self) -> float:
        return self._regime_mult

    @property
    def regime_dd_halt(self) -> bool:
        return self._halt

    @property
    def day_base_boost(self) -> float:
        return self._base_boost

    @property
    def day_beta(self) -> float:
        return self._beta

    def signal_fires(self, vd: float) -> bool:
        """True when ``vd`` passes the entry threshold in the engine's trade direction."""
        return (vd if self._direction < 0 else -vd) < self._thr

    @property
    def next_acb(self) -> tuple[float, float]:
        """(boost, beta) the next ``step_bar`` will use: a pending ACB update, else the current values."""
        return self._pending_acb if self._pending_acb is not None else (self._base_boost, self._beta)

    @property
    def mc_status(self) -> str:
        return self._mc_status

    @property
    def mc_gate_open(self) -> bool:
        return self._mc_status != "RED"

    def begin_day(self, date: str, posture: str = "APEX", direction: Optional[int] = None, *,
                  boost: Optional[float] = None, beta: Optional[float] = None,
                  mc_status: Optional[str] = None) -> None:
        """Start a trading day: posture, direction, ACB scale 1+3 (boost, beta), MC gate (§12, §13.1)."""
        if posture not in POSTURES:
            raise ValueError(f"unknown posture {posture!r}; expected one of {POSTURES}")
        d = self.params.direction if direction in (None, 0) else int(direction)
        if d not in (-1, 1):
            raise ValueError(f"direction must be -1 or +1, got {direction!r}")
        self._date = str(date)
        self._posture = posture
        self._direction = d
        p = self.params
        self._thr, self._ext = ((p.vel_div_threshold, p.vel_div_extreme) if d < 0
                                else (-p.long_threshold, -p.long_extreme))
        if boost is None and self._acb is not None:
            info = self._acb.get_dynamic_boost_for_date(self._date, self._ob)
            boost, beta = info["boost"], info["beta"] if beta is None else beta
        self._base_boost, self._beta = self._check_boost(1.0 if boost is None else boost,
                                                         0.0 if beta is None else beta)
        if mc_status is None and self._mc is not None:
            cfg = {**self._mc_base_cfg, "max_leverage": p.max_leverage * self._base_boost}
            rep = self._mc.assess_config_dict(cfg)
            mc_status = classify_mc(float(rep.catastrophic_probability), float(rep.envelope_score))
        mc_status = mc_status or "OK"
        if mc_status not in MC_STATUSES:
            raise ValueError(f"unknown mc_status {mc_status!r}; expected one of {MC_STATUSES}")
        self._mc_status = mc_status
        self._mc_scale = 0.5 if mc_status == "ORANGE" else 1.0
        self._update_halt()
        self._day_start_capital = self.capital
        self._day_first_trade = len(self.trades)
        self._day_skipped = 0

    def set_posture(self, posture: str) -> None:
        """Change posture mid-day (§11.7): STALKER caps leverage, TURTLE/HIBERNATE halt entries."""
        if posture not in POSTURES:
            raise ValueError(f"unknown posture {posture!r}; expected one of {POSTURES}")
        self._posture = posture
        self._update_halt()

    def _update_halt(self) -> None:
        self._halt = self._mc_status == "RED" or self._posture in ("TURTLE", "HIBERNATE")

    @staticmethod
    def _check_boost(boost: float, beta: float) -> tuple[float, float]:
        boost, beta = float(boost), float(beta)
        if not (math.isfinite(boost) and boost > 0 and math.isfinite(beta) and beta >= 0):
            raise ValueError(f"invalid ACB boost/beta ({boost!r}, {beta!r}): need boost > 0, beta >= 0")
        return boost, beta

    def update_acb_boost(self, boost: float, beta: float) -> None:
        """Store an ACB update; it is applied at the top of the next step_bar (§10.5, §7.3)."""
        self._pending_acb = self._check_boost(boost, beta)

    def _apply_pending_acb(self) -> None:
        boost, beta = self._pending_acb
        self._pending_acb = None
        old = self._base_boost
        self._base_boost, self._beta = boost, beta
        p = self.params
        if self.position is not None and ex.subday_acb_exit_due(old, boost, p.subday_acb_high,
                                                                p.subday_acb_low):
            self._subday_exit = True

    def end_day(self) -> DayResult:
        """Close the day's books (the open position, if any, carries over) and report it."""
        if self._date is None:
            raise EngineError("end_day called without begin_day")
        day_trades = tuple(self.trades[self._day_first_trade:])
        res = DayResult(self._date, self.capital - self._day_start_capital, self.capital,
                        self._base_boost, self._beta, self._mc_status, self._posture,
                        len(day_trades), self._day_skipped, self.position is not None, day_trades)
        self._date = None
        return res

    # ------------------------------------------------------------------ bar loop
    def _as_array(self, prices) -> Optional[np.ndarray]:
        if isinstance(prices, np.ndarray):
            if prices.dtype == np.float64 and prices.shape == (self.n_assets,):
                return prices
            try:
                arr = np.asarray(prices, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                return None
            return arr if arr.shape == (self.n_assets,) else None
        if isinstance(prices, Mapping):
            arr = np.full(self.n_assets, np.nan)
            get = prices.get
            for i, a in enumerate(self.assets):
                v = get(a)
                if v is not None:
                    try:
                        arr[i] = float(v)
                    except (TypeError, ValueError):
                        pass
            return arr
        return None

    def step_bar(self, bar_idx: int, vel_div: float, prices, v50_vel: float = 0.0,
                 v750_vel: float = 0.0, vol_regime_ok: bool = True) -> BarResult:
        """Process one bar: pending ACB, validation, exits first, then a possible entry (§13.2)."""
        if self._date is None:
            raise EngineError("step_bar called before begin_day")
        if self._pending_acb is not None:
            self._apply_pending_acb()
        try:
            vd = float(vel_div)
            v50 = float(v50_vel)
            v750 = float(v750_vel)
        except (TypeError, ValueError):
            self._day_skipped += 1
            return BarResult(bar_idx, skipped="bad_scalar")
        if not (math.isfinite(vd) and math.isfinite(v50) and math.isfinite(v750)):
            self._day_skipped += 1
            return BarResult(bar_idx, skipped="bad_vel_div" if not math.isfinite(vd) else "bad_velocity")
        arr = self._as_array(prices)
        if arr is None:
            self._day_skipped += 1
            return BarResult(bar_idx, skipped="bad_prices_shape")
        L = self._L
        pos = self._pos + 1
        if pos == L:
            pos = 0
        if _push_prices(self._buf, pos, L, arr) == self.n_assets:
            self._day_skipped += 1
            return BarResult(bar_idx, skipped="no_valid_prices")
        self._pos = pos
        if self._n_hist < L:
            self._n_hist += 1
        self._bar_count += 1
        self._vd_hist.append(vd)
        x = vd if self._direction < 0 else -vd
        p = self.params
        self._regime_mult = regime_size_mult(x, self._thr, self._ext, p.leverage_convexity,
                                             self._base_boost, self._beta, self._mc_scale)
        if self.position is not None:
            return self._manage_position(bar_idx, arr, x, v50 - v750)
        # ---- entry gates, cheapest first
        if self._halt:
            return BarResult(bar_idx, note="halted")
        if self._bar_count < p.lookback:
            return BarResult(bar_idx, note="warmup")
        if not vol_regime_ok:
            return BarResult(bar_idx, note="vol_regime")
        if not x < self._thr:
            return BarResult(bar_idx, note="no_signal")
        if self.capital <= 0:
            return BarResult(bar_idx, note="no_capital")
        return self._try_entry(bar_idx, arr, x, v50 - v750)

    def run_bars(self, bar_idx0: int, vel_div: np.ndarray, prices: np.ndarray, v50_vel: np.ndarray,
                 v750_vel: np.ndarray, vol_regime_ok: np.ndarray, hold: Optional[np.ndarray] = None) -> BlockResult:
        """Step a block of bars (bar ``bar_idx0 + i`` is row ``i``): the same as calling ``step_bar`` on each.

        ``prices`` is (bars × assets) float64 in the engine's asset order.  A bar with ``hold[i]`` set is
        not given to the engine while it is flat (the replay's post-gap rule); with a position it is.
        Quiet bars (flat without an entry signal, or in a position no exit can close) are consumed by
        compiled scans (:mod:`prod.alpha.barscan`) with the same effect on the state; every other bar
        goes through ``step_bar``.  Returns the ``step_bar`` results of those bars and the counts of
        the bars the scans consumed.
        """
        if self._date is None:
            raise EngineError("run_bars called before begin_day")
        vd = np.ascontiguousarray(vel_div, dtype=np.float64)
        n = vd.shape[0]
        v50 = np.ascontiguousarray(v50_vel, dtype=np.float64)
        v750 = np.ascontiguousarray(v750_vel, dtype=np.float64)
        px = np.ascontiguousarray(prices, dtype=np.float64)
        vok = np.ascontiguousarray(vol_regime_ok, dtype=np.bool_)
        hd = np.zeros(n, dtype=np.bool_) if hold is None else np.ascontiguousarray(hold, dtype=np.bool_)
        if px.shape != (n, self.n_assets) or not (v50.shape == v750.shape == vok.shape == hd.shape == (n,)):
            raise ValueError(f"run_bars: arrays of {n} bars and prices of shape ({n}, {self.n_assets}) expected, "
                             f"got prices {px.shape}")
        out = BlockResult()
        acc = np.empty(n, dtype=np.int64)
        p = self.params
        short = self._direction < 0
        i = 0
        while i < n:
            j = i
            if self._pending_acb is None and self._ob is None:
                pos = self.position
                if pos is None:
                    can_enter = not self._halt and self.capital > 0
                    j, k, held, bvd, bvel, nop = barscan.scan_flat(i, vd, v50, v750, px, vok, hd, self._thr, short,
                                                                   can_enter, acc)
                    out.held += held
                    if bvd or bvel or nop:
                        self._day_skipped += bvd + bvel + nop
                        for reason, c in (("bad_vel_div", bvd), ("bad_velocity", bvel), ("no_valid_prices", nop)):
                            if c:
                                out.skipped[reason] += c
                    self._accept(k, acc, vd, px)
                elif self._posture != "HIBERNATE" and not self._subday_exit and not p.tf_enabled:
                    j, k, bh, run = barscan.scan_position(
                        i, vd, v50, v750, px, pos.asset_idx, pos.direction, pos.entry_price, p.fixed_tp_pct,
                        p.stop_pct, p.max_hold_bars, pos.bars_held, p.vd_enabled, p.vd_adverse_threshold,
                        p.vd_adverse_bars, pos.vd_adverse_run, pos.direction == self._direction, short, acc)
                    pos.bars_held = int(bh)
                    pos.vd_adverse_run = int(run)
                    self._accept(k, acc, vd, px)
                out.quiet += j - i
            if j >= n:
                break
            if hd[j] and self.position is None:
                out.held += 1
            else:
                out.events.append((j, self.step_bar(bar_idx0 + j, vd[j], px[j], v50[j], v750[j], bool(vok[j]))))
            i = j + 1
        return out

    def _accept(self, k: int, acc: np.ndarray, vd: np.ndarray, px: np.ndarray) -> None:
        """Apply ``k`` accepted quiet bars (rows ``acc[:k]``): what step_bar does to the state on them."""
        if k <= 0:
            return
        L = self._L
        m = min(L, k)
        self._pos = barscan.push_rows(self._buf, (self._pos + k - m) % L, L, px, acc, k - m, k)
        self._n_hist = min(L, self._n_hist + k)
        self._bar_count += k
        self._vd_hist.extend(float(vd[a]) for a in acc[max(0, k - 10):k])
        v = float(vd[acc[k - 1]])
        x = v if self._direction < 0 else -v
        p = self.params
        self._regime_mult = regime_size_mult(x, self._thr, self._ext, p.leverage_convexity,
                                             self._base_boost, self._beta, self._mc_scale)

    def _try_entry(self, bar_idx: int, arr: np.ndarray, x: float, spread: float) -> BarResult:
        p = self.params
        L = self._L
        top = self._pos + 1 + L
        d = self._direction
        ob = self._ob
        if p.use_asset_selection:
            W = p.irp_window
            if self._n_hist < W:
                return BarResult(bar_idx, note="irp_warmup")
            window = self._buf[top - W:top]
            if ob is not None:
                adj = np.zeros(self.n_assets)
                depth_ok = np.ones(self.n_assets, dtype=np.bool_)
                for i, a in enumerate(self.assets):
                    pl = ob.get_placement(a)
                    if pl is not None:
                        adj[i] = ob_depth_adjustment(pl.depth_quality)
                        depth_ok[i] = pl.depth_quality >= p.ob_min_depth_quality
            else:
                adj, depth_ok = self._zeros, self._ones_bool
            ai = int(select_asset(window, d, p.irp_noise_max, p.irp_latency_max, p.irp_alignment_min,
                                  adj, p.min_irp_alignment, depth_ok))
            if ai < 0:
                return BarResult(bar_idx, note="no_asset")
        else:
            ai = self._fallback_idx
            if ai < 0 or not (arr[ai] > 0.0 and arr[ai] < math.inf):
                return BarResult(bar_idx, note="no_asset")
        asset = self.assets[ai]
        price = float(arr[ai])
        conf = confidence(x, self._thr, self._ext)
        dc = 0
        if p.use_direction_confirm:
            lb = p.dc_lookback_bars
            if self._n_hist >= lb + 1:
                dc = int(check_dc(self._buf[top - lb - 1:top, ai], lb, p.dc_min_magnitude_bps, d))
            if dc == DC_CONTRADICT and p.dc_skip_contradicts:
                return BarResult(bar_idx, note="dc_contradict")
        macro = None
        if ob is not None:
            sig = ob.get_signal(asset)
            if sig is not None:
                conf, skip = ob_confidence_adjust(conf, sig.imbalance_ma5, sig.imbalance_persistence, d)
                if skip:
                    return BarResult(bar_idx, note="ob_contradiction")
            macro = ob.get_macro()
        # ---- sizing
        thr, ext = self._thr, self._ext
        strength = strength_score(x, thr, ext)
        extreme = x <= ext
        lev = (dynamic_leverage(strength, p.min_leverage, p.max_leverage, p.leverage_convexity)
               if p.use_dynamic_leverage else p.max_leverage)
        bucket = signal_bucket(x, thr, ext)
        if p.use_alpha_layers:
            h = self._vd_hist
            if len(h) >= 10:
                t = h[-1] - h[0]
                tm = trend_mult(t if d < 0 else -t)
            else:
                tm = 1.0
            bb = bucket_boost(self._bucket_wins[bucket], self._bucket_totals[bucket], p.bucket_min_trades)
            sm = streak_mult(tuple(self._recent))
        else:
            tm = bb = sm = 1.0
        frac = effective_fraction(strength, extreme, p.fraction, p.min_fraction, tm, bb, sm)
        mkt = market_ob_multiplier(macro, d) if ob is not None else 1.0
        dc_lev = p.dc_leverage_boost if dc == DC_CONFIRM else 1.0
        flev = final_leverage(lev, dc_lev, self._regime_mult, mkt, p.min_leverage, p.max_leverage,
                              p.abs_max_leverage, self._posture == "STALKER", p.stalker_max_leverage)
        notional = self.capital * frac * flev
        if not (math.isfinite(notional) and notional > 0.0):
            return BarResult(bar_idx, note="bad_size")
        self._trade_seq += 1
        entry = EntryInfo(self._trade_seq, asset, d, price, notional, flev, frac, bucket, conf)
        if self._entry_fill is not None and not self._entry_fill(entry):
            return BarResult(bar_idx, note="entry_not_taken")
        self.position = Position(self._trade_seq, asset, ai, d, price, notional, flev, frac, bucket,
                                 conf, dc, int(bar_idx), self._date, 0, 0, spread)
        return BarResult(bar_idx, entered=entry)

    def _manage_position(self, bar_idx: int, arr: np.ndarray, x: float, spread: float) -> BarResult:
        pos = self.position
        p = self.params
        pos.bars_held += 1
        price = arr[pos.asset_idx]
        if not (price > 0.0 and price < math.inf):
            self._day_skipped += 1
            return BarResult(bar_idx, skipped="bad_position_price")
        price = float(price)
        if p.vd_enabled:
            # adverse = signal reversing against the trade, in the position's own frame
            xs = x if pos.direction == self._direction else -x
            pos.vd_adverse_run = pos.vd_adverse_run + 1 if xs > p.vd_adverse_threshold else 0
        if self._posture == "HIBERNATE":
            reason = ex.HIBERNATE_HALT
        elif self._subday_exit:
            reason = ex.SUBDAY_ACB
        else:
            pnl = ex.position_pnl_pct(pos.direction, pos.entry_price, price)
            tp, sl, hold = p.fixed_tp_pct, p.stop_pct, p.max_hold_bars
            ob = self._ob
            if ob is not None:
                macro = ob.get_macro()
                sig = ob.get_signal(pos.asset)
                eff = pos.direction * sig.imbalance_ma5 if sig is not None else 0.0
                wv = sig.withdrawal_velocity if sig is not None else 0.0
                if macro is not None or sig is not None:
                    tp, sl, hold = ex.ob_dynamic_params(
                        tp, sl, hold, pnl, macro.cascade_count if macro else 0,
                        macro.regime_signal if macro else 0, eff, wv)
            reason = ex.evaluate_exit(pnl, pos.bars_held, tp, sl, hold, pos.vd_adverse_run, p.vd_enabled,
                                      p.vd_adverse_bars, p.tf_enabled, pos.tf_spread_entry, spread,
                                      p.tf_exhaust_ratio, p.tf_flip_ratio)
        if reason is None:
            return BarResult(bar_idx, note="in_position")
        return BarResult(bar_idx, exited=self._close(bar_idx, price, reason))

    def _close(self, bar_idx: int, price: float, reason: str) -> TradeRecord:
        p = self.params
        pos = self.position
        slip = ex.exit_slippage(reason, p.tp_slippage, p.stop_slippage, p.other_slippage)
        exit_price = ex.exit_fill_price(pos.direction, price, slip)
        pnl_pct = ex.position_pnl_pct(pos.direction, pos.entry_price, exit_price)
        if p.use_sp_slippage:
            pnl_pct += fz.sp_slippage_refund(slip, p.sp_maker_exit_rate)
        if p.use_ob_edge:
            if self._ob is not None:
                pl = self._ob.get_placement(pos.asset)
                if pl is not None:
                    pnl_pct += fz.ob_edge_real(pl.depth_quality, pl.fill_probability, p.ob_edge_bps)
            else:
                pnl_pct += fz.ob_edge_legacy(float(self._rng.random_sample()), p.ob_confirm_rate,
                                             p.ob_edge_bps)
        gross = pnl_pct * pos.notional
        fees = 0.0
        if p.use_sp_fees:
            fees = (fz.entry_fee(pos.notional, p.sp_maker_entry_rate, p.maker_fee, p.taker_fee)
                    + fz.exit_fee(pos.notional, p.sp_maker_exit_rate, p.maker_fee, p.taker_fee))
        net = gross - fees
        self.capital += net
        win = net > 0.0
        self._bucket_totals[pos.bucket] += 1
        if win:
            self._bucket_wins[pos.bucket] += 1
        self._recent.append(win)
        rec = TradeRecord(pos.trade_id, pos.asset, pos.direction, pos.entry_bar, int(bar_idx), pos.entry_date,
                          self._date or "", pos.entry_price, exit_price, pos.notional, pos.leverage,
                          pos.fraction, pos.bucket, pos.bars_held, reason, pnl_pct, gross, fees, net,
                          self.capital)
        self.trades.append(rec)
        self.position = None
        self._subday_exit = False
        return rec

    def close_position(self, bar_idx: int, prices, reason: str = ex.END_OF_DATA) -> Optional[TradeRecord]:
        """Force-close the open position at `prices` (e.g. end of a backtest); None when flat or no price."""
        if self.position is None:
            return None
        arr = self._as_array(prices)
        if arr is None:
            return None
        price = arr[self.position.asset_idx]
        if not (price > 0.0 and price < math.inf):
            return None
        return self._close(bar_idx, float(price), reason)

    # ------------------------------------------------------------------ state
    def get_state(self, include_trades: bool = True) -> dict[str, Any]:
        """Return the full engine state as JSON-serialisable data (exact float round trip).

        `include_trades=False` leaves out the closed-trade list (for frequent live snapshots whose
        trades are journalled elsewhere); an engine restored from it starts with an empty list and
        its current day counts trades from the restore on.  Everything that drives future decisions
        (capital, position, histories, bucket/streak learning, multipliers, rng) is always included.
        """
        L = self._L
        top = self._pos + 1 + L
        hist = self._buf[top - L:top]
        rs = self._rng.get_state()
        return {
            "version": STATE_VERSION,
            "params_hash": params_hash(self.params),
            "assets": list(self.assets),
            "capital": self.capital,
            "trade_seq": self._trade_seq,
            "bar_count": self._bar_count,
            "n_hist": self._n_hist,
            "history": [[_nan_to_none(v) for v in row] for row in hist.tolist()],
            "vd_hist": list(self._vd_hist),
            "bucket_wins": list(self._bucket_wins),
            "bucket_totals": list(self._bucket_totals),
            "recent": list(self._recent),
            "position": None if self.position is None else {
                k: getattr(self.position, k) for k in Position.__slots__},
            "day": {"date": self._date, "posture": self._posture, "direction": self._direction,
                    "base_boost": self._base_boost, "beta": self._beta, "mc_status": self._mc_status,
                    "regime_mult": self._regime_mult, "day_start_capital": self._day_start_capital,
                    "day_first_trade": self._day_first_trade, "day_skipped": self._day_skipped},
            "pending_acb": None if self._pending_acb is None else list(self._pending_acb),
            "subday_exit": self._subday_exit,
            "rng": {"keys": [int(k) for k in rs[1]], "pos": int(rs[2]), "has_gauss": int(rs[3]),
                    "cached_gaussian": float(rs[4])},
            "trades": [t.to_dict() for t in self.trades] if include_trades else None,
        }

    @property
    def capital(self) -> float:
        """The capital: the account's when the engine was given ``capital_of``, else the engine's own."""
        return self._capital_of() if self._capital_of is not None else self._capital

    @capital.setter
    def capital(self, value: float) -> None:
        self._capital = value

    @classmethod
    def from_state(cls, params: EngineParams, state: Mapping[str, Any],
                   entry_fill: Callable[[EntryInfo], bool] | None = None,
                   capital_of: Callable[[], float] | None = None) -> "NDAlphaEngine":
        """Rebuild an engine from get_state() output; refuses a state made with other params."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"engine state version {state.get('version')!r} != {STATE_VERSION}")
        if state.get("params_hash") != params_hash(params):
            raise ValueError("engine state was produced with different parameters (params_hash mismatch)")
        eng = cls(params, state["assets"], entry_fill, capital_of)
        L = eng._L
        hist = np.array([[np.nan if v is None else v for v in row] for row in state["history"]],
                        dtype=np.float64).reshape(L, eng.n_assets)
        eng._buf[:L] = hist
        eng._buf[L:] = hist
        eng._pos = L - 1
        eng._n_hist = int(state["n_hist"])
        eng.capital = float(state["capital"])
        eng._trade_seq = int(state["trade_seq"])
        eng._bar_count = int(state["bar_count"])
        eng._vd_hist.extend(float(v) for v in state["vd_hist"])
        eng._bucket_wins = [int(v) for v in state["bucket_wins"]]
        eng._bucket_totals = [int(v) for v in state["bucket_totals"]]
        eng._recent.extend(bool(v) for v in state["recent"])
        if state["position"] is not None:
            eng.position = Position(**state["position"])
        day = state["day"]
        eng._date = day["date"]
        eng._posture = day["posture"]
        eng._direction = int(day["direction"])
        eng._thr, eng._ext = ((params.vel_div_threshold, params.vel_div_extreme) if eng._direction < 0
                              else (-params.long_threshold, -params.long_extreme))
        eng._base_boost = float(day["base_boost"])
        eng._beta = float(day["beta"])
        eng._mc_status = day["mc_status"]
        eng._mc_scale = 0.5 if eng._mc_status == "ORANGE" else 1.0
        eng._regime_mult = float(day["regime_mult"])
        eng._day_start_capital = float(day["day_start_capital"])
        eng._day_first_trade = int(day["day_first_trade"]) if state["trades"] is not None else 0
        eng._day_skipped = int(day["day_skipped"])
        eng._update_halt()
        pa = state["pending_acb"]
        eng._pending_acb = None if pa is None else (float(pa[0]), float(pa[1]))
        eng._subday_exit = bool(state["subday_exit"])
        r = state["rng"]
        eng._rng.set_state(("MT19937", np.array(r["keys"], dtype=np.uint32), r["pos"], r["has_gauss"],
                            r["cached_gaussian"]))
        eng.trades = [TradeRecord(**t) for t in (state["trades"] or [])]
        return eng
