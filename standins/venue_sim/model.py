"""Market model of the venue simulator: factor-model returns with regime switching, books, trades, klines.

Design notes: ``docs/design/standins.venue_sim.md``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from standins.venue_sim.universe import SECTORS, SymbolSpec

TICK_MS = 100
REGIMES = ("calm", "trending", "stress")
BASE_SIGMA_TICK = 5e-4 / math.sqrt(50.0)   # 5-s return std ~5 bp in calm for vol_scale 1
KLINE_CAP = 1500                            # 1m klines kept per symbol (>= Binance max limit 1500)
TAKER_CAP = 500                             # 5m taker-volume buckets kept
BACKFILL_MIN = 600                          # synthetic 1m history before start (minutes)
KLINE_1S_CAP = 4096                         # seconds of 1s klines served (simulator extension; 0 = off)
LEVELS = 5


@dataclass(frozen=True)
class RegimeParams:
    market_share: float
    sector_share: float
    vol_mult: float
    spread_mult: float
    depth_mult: float
    trade_rate: float        # expected aggTrades per symbol per tick (scaled by liquidity)
    buy_prob: float          # taker buy probability
    funding: float
    dvol: float
    fng: float
    mean_hold_s: float


PARAMS: dict[str, RegimeParams] = {
    "calm": RegimeParams(0.12, 0.18, 1.0, 1.0, 1.0, 0.25, 0.50, 0.00010, 45.0, 58.0, 1200.0),
    "trending": RegimeParams(0.35, 0.20, 1.4, 1.5, 0.8, 0.35, 0.50, 0.00015, 58.0, 50.0, 600.0),
    "stress": RegimeParams(0.80, 0.08, 3.0, 4.0, 0.25, 0.60, 0.30, -0.00060, 95.0, 12.0, 300.0),
}
_NEXT = {"calm": (("trending", 0.6), ("stress", 0.4)),
         "trending": (("calm", 0.5), ("stress", 0.5)),
         "stress": (("calm", 0.7), ("trending", 0.3))}
SLOW_TAU_S = 5.0
DVOL_TAU_S = 1200.0
LIQ_TAU_S = 90.0


class PriceDriver(Protocol):
    """Source of per-tick mid prices other than the factor model (e.g. replay)."""

    def mids(self, t_ms: int) -> np.ndarray:
        """Return the mid price of every symbol at market time ``t_ms``."""


class MarketModel:
    """State of the simulated market; advance it with :meth:`step`."""

    def __init__(self, universe: tuple[SymbolSpec, ...], seed: int, start_ms: int,
                 driver: PriceDriver | None = None, initial_regime: str = "calm",
                 kline_1s_s: int = KLINE_1S_CAP, liq_tau_s: float = LIQ_TAU_S) -> None:
        if not (math.isfinite(liq_tau_s) and liq_tau_s > 0):
            raise ValueError(f"liq_tau_s {liq_tau_s!r}: must be a positive number of seconds")
        self.liq_tau_s = float(liq_tau_s)
        self.universe = universe
        self.symbols = tuple(s.symbol for s in universe)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.n = n = len(universe)
        self.seed = seed
        self.driver = driver
        ss = np.random.SeedSequence([seed, 7])
        r1, r2, r3 = ss.spawn(3)
        self.rng = np.random.default_rng(r1)          # returns, books, trades
        self.rng_regime = np.random.default_rng(r2)   # regime timeline
        bf_rng = np.random.default_rng(r3)            # backfilled history
        self.tick_size = np.array([s.tick for s in universe])
        self.step_size = np.array([s.step for s in universe])
        self.price_dec = [s.price_decimals for s in universe]
        self.qty_dec = [s.qty_decimals for s in universe]
        self.sector = np.array([s.sector for s in universe], dtype=np.int64)
        self.beta = np.array([s.beta for s in universe])
        self.vol_scale = np.array([s.vol_scale for s in universe])
        self.depth_usd = np.array([s.notional_depth for s in universe])
        self.liquidity = np.clip(self.depth_usd / 50_000.0, 0.05, 4.0)
        self.base_spread = np.clip(np.round(1.0 + 2.0 / np.sqrt(self.liquidity)), 1, 6)
        self.level_gap = np.where(self.liquidity > 1.0, 1, 2).astype(np.int64)
        # state
        self.t_ms = int(start_ms) - int(start_ms) % TICK_MS
        self.start_ms = self.t_ms
        self.tick_no = 0
        self.mid = np.array([s.price for s in universe], dtype=np.float64)
        self.log_mid = np.log(self.mid)
        self.regime = initial_regime
        self.forced_until: int | None = None   # ms; -1 = forced indefinitely
        self.forced = False
        self.trend_sign = 1.0
        self.n_switches = 0
        self.timeline: list[dict] = [{"start_ms": self.t_ms, "end_ms": None, "regime": initial_regime,
                                      "forced": False}]
        self._next_switch_ms = self._draw_hold(initial_regime)
        self.cascade_left = np.zeros(len(SECTORS), dtype=np.int64)
        # slow variables
        p = PARAMS[initial_regime]
        self.funding = np.full(n, p.funding) + self.rng.normal(0, 2e-5, n)
        self.basis = self.rng.normal(0, 1e-4, n)
        self.dvol = {"BTC": p.dvol, "ETH": p.dvol * 1.1}
        self.fng = p.fng
        # liquidity stress in [0, 1]: how far books have thinned toward the stress shape (lags the regime)
        self.liq_stress = 1.0 if initial_regime == "stress" else 0.0
        # book state
        self.update_id = (self.rng.integers(1_000_000, 9_000_000, n).astype(np.int64) * 1000)
        self.prev_update_id = self.update_id.copy()
        self.bid_idx = np.zeros((n, LEVELS), dtype=np.int64)
        self.ask_idx = np.zeros((n, LEVELS), dtype=np.int64)
        self.bid_qty = np.zeros((n, LEVELS))
        self.ask_qty = np.zeros((n, LEVELS))
        self.crossed: set[int] = set()
        self._rebuild_books(np.ones(n, dtype=bool))
        self.top_changed = np.ones(n, dtype=bool)
        # trades of the current tick: arrays over symbols with a trade
        self.agg_id = self.rng.integers(10_000_000, 90_000_000, n).astype(np.int64)
        self.trade_id = self.agg_id * 3
        self.trade_sym = np.zeros(0, dtype=np.int64)
        self.trade_px_idx = np.zeros(0, dtype=np.int64)
        self.trade_qty = np.zeros(0)
        self.trade_maker = np.zeros(0, dtype=bool)
        self.trade_first = np.zeros(0, dtype=np.int64)
        self.trade_last = np.zeros(0, dtype=np.int64)
        # klines: ring of closed 1m klines + the open one
        self._init_klines(bf_rng)
        self._init_taker(bf_rng)
        self._init_indicator_history(bf_rng)
        self._init_klines_1s(int(kline_1s_s))

    # ------------------------------------------------------------------ regime
    def _draw_hold(self, regime: str) -> int:
        return self.t_ms + int(self.rng_regime.exponential(PARAMS[regime].mean_hold_s) * 1000) + 30_000

    def _set_regime(self, regime: str, forced: bool) -> None:
        if self.timeline and self.timeline[-1]["end_ms"] is None:
            self.timeline[-1]["end_ms"] = self.t_ms
        self.timeline.append({"start_ms": self.t_ms, "end_ms": None, "regime": regime, "forced": forced})
        self.n_switches += 1
        if len(self.timeline) > 10_000:
            del self.timeline[: len(self.timeline) - 10_000]
        self.regime = regime
        if regime == "trending":
            self.trend_sign = 1.0 if self.rng_regime.random() < 0.5 else -1.0

    def force_regime(self, regime: str, hold_s: float | None = None, settle: bool = False,
                     episode_seed: int | None = None) -> None:
        """Switch to ``regime`` now and hold it ``hold_s`` seconds of market time (None: until released).

        ``settle`` puts the lagging book shape (``liq_stress``) at the regime's target at once, as if the
        regime had already lasted several ``LIQ_TAU_S`` (tests of order-book stress use it).
        ``episode_seed`` restarts the returns/books/trades random stream from (model seed, episode_seed), so
        the episode from this tick on draws the same shocks whenever it is started (a scripted episode: the
        same onset gives the same correlation break, crossings and book thinning, tick for tick after it).
        """
        if regime not in REGIMES:
            raise ValueError(f"unknown regime {regime!r}; expected one of {REGIMES}")
        if episode_seed is not None:
            if isinstance(episode_seed, bool) or not isinstance(episode_seed, int) or episode_seed < 0:
                raise ValueError(f"episode_seed {episode_seed!r}: must be a non-negative integer")
            self.rng = np.random.default_rng(np.random.SeedSequence([self.seed, 11, episode_seed]))
        self._set_regime(regime, True)
        if settle:
            self.liq_stress = 1.0 if regime == "stress" else 0.0
        self.forced = True
        self.forced_until = -1 if hold_s is None else self.t_ms + int(hold_s * 1000)

    def release_regime(self) -> None:
        """Return to automatic regime switching from the current regime."""
        self.forced = False
        self.forced_until = None
        self._next_switch_ms = self._draw_hold(self.regime)

    def _maybe_switch(self) -> None:
        if self.forced:
            if self.forced_until is not None and self.forced_until >= 0 and self.t_ms >= self.forced_until:
                self.release_regime()
            return
        if self.t_ms >= self._next_switch_ms:
            opts = _NEXT[self.regime]
            u = self.rng_regime.random()
            nxt = opts[0][0] if u < opts[0][1] else opts[1][0]
            self._set_regime(nxt, False)
            self._next_switch_ms = self._draw_hold(nxt)

    # ------------------------------------------------------------------ step
    def step(self) -> None:
        """Advance market time by one tick (100 ms) and update prices, books, trades, klines."""
        self.t_ms += TICK_MS
        self.tick_no += 1
        self._maybe_switch()
        p = PARAMS[self.regime]
        n = self.n
        rng = self.rng
        if self.driver is not None:
            new_mid = self.driver.mids(self.t_ms)
            self.log_mid = np.log(new_mid)
        else:
            sig = BASE_SIGMA_TICK * self.vol_scale * p.vol_mult
            f_m = rng.standard_normal()
            f_s = rng.standard_normal(len(SECTORS))
            e = rng.standard_normal(n)
            idio = max(0.0, 1.0 - p.market_share - p.sector_share)
            r = sig * (math.sqrt(p.market_share) * self.beta * f_m
                       + math.sqrt(p.sector_share) * f_s[self.sector] + math.sqrt(idio) * e)
            if self.regime == "trending":
                r += self.trend_sign * 0.04 * sig
            elif self.regime == "stress":
                r -= 0.03 * sig
                if rng.random() < 0.004:   # ~ one cascade every 25 s
                    self.cascade_left[int(rng.integers(0, len(SECTORS)))] = 30
            casc = self.cascade_left[self.sector] > 0
            if casc.any():
                r = r - casc * sig * 1.5
            self.cascade_left = np.maximum(self.cascade_left - 1, 0)
            self.log_mid = self.log_mid + r
        self.mid = np.exp(self.log_mid)
        # slow variables
        a = 1.0 - math.exp(-TICK_MS / 1000.0 / SLOW_TAU_S)
        fund_t = p.funding if self.regime != "trending" else (0.0002 if self.trend_sign > 0 else -0.00005)
        self.funding += a * (fund_t - self.funding) + rng.normal(0, 1e-6, n)
        a_dvol = 1.0 - math.exp(-TICK_MS / 1000.0 / DVOL_TAU_S)
        a_liq = 1.0 - math.exp(-TICK_MS / 1000.0 / self.liq_tau_s)
        self.liq_stress += a_liq * ((1.0 if self.regime == "stress" else 0.0) - self.liq_stress)
        for cur, k in (("BTC", 1.0), ("ETH", 1.1)):
            self.dvol[cur] += a_dvol * (p.dvol * k - self.dvol[cur]) + rng.normal(0, 0.01)
        fng_t = p.fng if self.regime != "trending" else (64.0 if self.trend_sign > 0 else 38.0)
        self.fng += a * (fng_t - self.fng)
        self.basis += 0.05 * (-self.basis) + rng.normal(0, 2e-5, n)
        # books: refresh ~30% of symbols' sizes per tick, always re-anchor prices
        refresh = rng.random(n) < 0.3
        old_top = (self.bid_idx[:, 0].copy(), self.ask_idx[:, 0].copy(),
                   self.bid_qty[:, 0].copy(), self.ask_qty[:, 0].copy())
        self._rebuild_books(refresh)
        self.top_changed = ((self.bid_idx[:, 0] != old_top[0]) | (self.ask_idx[:, 0] != old_top[1])
                            | (self.bid_qty[:, 0] != old_top[2]) | (self.ask_qty[:, 0] != old_top[3]))
        self.prev_update_id = self.update_id.copy()
        self.update_id = self.update_id + 1 + rng.integers(0, 20, n)
        self._trades(p)
        self._klines_tick()
        self.record_indicators()

    def _book_shape(self) -> tuple[float, float, float, int]:
        """Return (spread_mult, depth_mult, bid_thinning, gap_mult) of the books now (lagged, see LIQ_TAU_S)."""
        base = PARAMS["calm"] if self.regime == "stress" else PARAMS[self.regime]
        st, ls = PARAMS["stress"], self.liq_stress
        return (base.spread_mult + (st.spread_mult - base.spread_mult) * ls,
                base.depth_mult + (st.depth_mult - base.depth_mult) * ls,
                1.0 - 0.4 * ls, 2 if ls > 0.5 else 1)

    def _rebuild_books(self, refresh: np.ndarray) -> None:
        n = self.n
        rng = self.rng
        spread_mult, depth_mult, bid_thin, gap_mult = self._book_shape()
        spread = np.maximum(1, np.round(self.base_spread * spread_mult
                                        * (1.0 + 0.3 * rng.random(n)))).astype(np.int64)
        center = self.mid / self.tick_size
        best_bid = np.floor(center - spread / 2.0).astype(np.int64)
        best_bid = np.maximum(best_bid, 1)
        best_ask = best_bid + spread
        gap = self.level_gap * gap_mult
        steps = np.arange(LEVELS, dtype=np.int64)
        self.bid_idx = best_bid[:, None] - gap[:, None] * steps[None, :]
        self.ask_idx = best_ask[:, None] + gap[:, None] * steps[None, :]
        self.bid_idx = np.maximum(self.bid_idx, 1)
        # sizes in base units, rounded to the lot step, at least one step
        base_qty = self.depth_usd * depth_mult / self.mid
        k = int(refresh.sum())
        if k:
            shape = np.array([0.5, 0.8, 1.0, 1.3, 1.6])
            rb = rng.lognormal(0.0, 0.5, (k, LEVELS)) * shape
            ra = rng.lognormal(0.0, 0.5, (k, LEVELS)) * shape
            bq = base_qty[refresh, None] * rb
            aq = base_qty[refresh, None] * ra
            bq *= bid_thin                     # in stress sellers dominate: bids thinner than asks
            casc = (self.cascade_left[self.sector] > 0)[refresh]
            bq[casc] *= 0.3
            st = self.step_size[refresh, None]
            self.bid_qty[refresh] = np.maximum(np.round(bq / st), 1) * st
            self.ask_qty[refresh] = np.maximum(np.round(aq / st), 1) * st

    def _trades(self, p: RegimeParams) -> None:
        n = self.n
        rng = self.rng
        casc = self.cascade_left[self.sector] > 0
        lam = p.trade_rate * np.sqrt(self.liquidity) * (1.0 + 2.0 * casc)
        has = rng.random(n) < np.minimum(lam, 0.95)
        idx = np.flatnonzero(has)
        k = idx.size
        buy_p = np.where(casc[idx], 0.15, p.buy_prob if self.regime != "trending"
                         else (0.58 if self.trend_sign > 0 else 0.42))
        is_buy = rng.random(k) < buy_p
        fills = 1 + rng.poisson(1.5, k)
        qty = self.depth_usd[idx] / self.mid[idx] * 0.05 * rng.lognormal(0, 1.0, k) * fills / 2.0
        st = self.step_size[idx]
        qty = np.maximum(np.round(qty / st), 1) * st
        self.trade_sym = idx
        self.trade_px_idx = np.where(is_buy, self.ask_idx[idx, 0], self.bid_idx[idx, 0])
        self.trade_qty = qty
        self.trade_maker = ~is_buy        # buyer is maker <=> taker sold
        self.agg_id[idx] += 1
        self.trade_first = self.trade_id[idx] + 1
        self.trade_id[idx] += fills
        self.trade_last = self.trade_id[idx].copy()
        px = self.trade_px_idx * self.tick_size[idx]
        notional = px * qty
        # kline accumulation (open kline)
        ko = self.k_open
        first = ko["n"][idx] == 0
        ko["f"][idx] = np.where(first, self.trade_first, ko["f"][idx])
        ko["L"][idx] = self.trade_last
        ko["n"][idx] += fills
        ko["v"][idx] += qty
        ko["q"][idx] += notional
        ko["V"][idx] += qty * is_buy
        ko["Q"][idx] += notional * is_buy
        self.taker_buy_cur[idx] += qty * is_buy
        self.taker_sell_cur[idx] += qty * ~is_buy
        if self.k1_cap:
            k1 = self.k1o
            first = k1["n"][idx] == 0
            k1["o"][idx] = np.where(first, px, k1["o"][idx])
            k1["h"][idx] = np.where(first, px, np.maximum(k1["h"][idx], px))
            k1["l"][idx] = np.where(first, px, np.minimum(k1["l"][idx], px))
            k1["c"][idx] = px
            k1["n"][idx] += fills
            k1["v"][idx] += qty
            k1["q"][idx] += notional
            k1["V"][idx] += qty * is_buy
            k1["Q"][idx] += notional * is_buy

    # ------------------------------------------------------------------ klines
    def _init_klines(self, rng: np.random.Generator) -> None:
        n = self.n
        minute = 60_000
        cur_open = self.t_ms - self.t_ms % minute
        self.k_times = np.zeros(KLINE_CAP, dtype=np.int64)
        self.k_hist = {f: np.zeros((n, KLINE_CAP)) for f in ("o", "h", "l", "c", "v", "q", "V", "Q")}
        self.k_hist_n = np.zeros((n, KLINE_CAP), dtype=np.int64)
        self.k_count = 0   # number of closed minutes stored (ring position = k_count % KLINE_CAP)
        # backfill BACKFILL_MIN minutes of calm random walk ending at the start price
        m = BACKFILL_MIN
        sig_min = BASE_SIGMA_TICK * math.sqrt(600) * self.vol_scale
        f = rng.standard_normal(m)
        e = rng.standard_normal((n, m))
        r = sig_min[:, None] * (math.sqrt(0.3) * self.beta[:, None] * f[None, :] + math.sqrt(0.7) * e)
        closes = self.log_mid[:, None] - np.cumsum(r[:, ::-1], axis=1)[:, ::-1] + r  # close of each min
        c = np.exp(closes)
        o = np.concatenate([c[:, :1] * np.exp(-r[:, :1]), c[:, :-1]], axis=1)
        wig = np.abs(rng.normal(0, 0.4, (n, m))) * sig_min[:, None]
        h = np.maximum(o, c) * np.exp(wig)
        lo = np.minimum(o, c) * np.exp(-wig)
        tick = self.tick_size[:, None]
        o, h, lo, c = (np.round(x / tick) * tick for x in (o, h, lo, c))
        vol = self.depth_usd[:, None] / self.mid[:, None] * rng.lognormal(0.5, 0.6, (n, m))
        st = self.step_size[:, None]
        vol = np.round(vol / st) * st
        buy = np.clip(rng.normal(0.5, 0.05, (n, m)), 0.05, 0.95)
        for j in range(m):
            t0 = cur_open - (m - j) * minute
            self._store_kline(t0, o[:, j], h[:, j], lo[:, j], c[:, j], vol[:, j],
                              vol[:, j] * c[:, j], vol[:, j] * buy[:, j], vol[:, j] * buy[:, j] * c[:, j],
                              np.maximum(1, (vol[:, j] / st[:, 0] / 5)).astype(np.int64))
        self._open_kline(cur_open)

    def _store_kline(self, t0, o, h, lo, c, v, q, V, Q, cnt) -> None:
        pos = self.k_count % KLINE_CAP
        self.k_times[pos] = t0
        for f, arr in (("o", o), ("h", h), ("l", lo), ("c", c), ("v", v), ("q", q), ("V", V), ("Q", Q)):
            self.k_hist[f][:, pos] = arr
        self.k_hist_n[:, pos] = cnt
        self.k_count += 1

    def _open_kline(self, t0: int) -> None:
        px = self._last_px()
        n = self.n
        self.k_open_t = t0
        self.k_open = {"o": px.copy(), "h": px.copy(), "l": px.copy(), "c": px.copy(),
                       "v": np.zeros(n), "q": np.zeros(n), "V": np.zeros(n), "Q": np.zeros(n),
                       "n": np.zeros(n, dtype=np.int64), "f": np.full(n, -1, dtype=np.int64),
                       "L": np.full(n, -1, dtype=np.int64)}
        self.kline_closed = False

    def _last_px(self) -> np.ndarray:
        return (self.bid_idx[:, 0] + self.ask_idx[:, 0]) * 0.5 * self.tick_size

    def _klines_tick(self) -> None:
        ko = self.k_open
        if self.trade_sym.size:
            idx = self.trade_sym
            px = self.trade_px_idx * self.tick_size[idx]
            ko["c"][idx] = px
            ko["h"][idx] = np.maximum(ko["h"][idx], px)
            ko["l"][idx] = np.minimum(ko["l"][idx], px)
        self.kline_closed = False
        if self.k1_cap and self.t_ms >= self.k1_open_t + 1000:
            self._k1_store()
        if self.t_ms >= self.k_open_t + 60_000:
            self._store_kline(self.k_open_t, ko["o"], ko["h"], ko["l"], ko["c"], ko["v"], ko["q"],
                              ko["V"], ko["Q"], ko["n"])
            self.closed_kline = {k: v.copy() for k, v in ko.items()}
            self.closed_kline_t = self.k_open_t
            self._open_kline(self.t_ms - self.t_ms % 60_000)
            self.kline_closed = True
            self._taker_minute()

    def klines_1m(self, i: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Return (open_times, fields) of the stored closed 1m klines of symbol ``i`` plus the open one."""
        cnt = min(self.k_count, KLINE_CAP)
        start = self.k_count - cnt
        pos = np.arange(start, self.k_count) % KLINE_CAP
        times = np.append(self.k_times[pos], self.k_open_t)
        fields = {f: np.append(self.k_hist[f][i, pos], self.k_open[f][i]) for f in self.k_hist}
        fields["n"] = np.append(self.k_hist_n[i, pos], self.k_open["n"][i])
        return times, fields

    # ------------------------------------------------------------------ 1s klines (extension)
    def _init_klines_1s(self, cap: int) -> None:
        self.k1_cap = max(0, cap)
        self.k1_count = 0
        if not self.k1_cap:
            return
        n = self.n
        self.k1_start = self.t_ms - self.t_ms % 1000        # open time of the first live second
        # ring of closed live seconds, time-major; prices in half ticks (exact for trades and mids)
        self.k1_ring = {f: np.zeros((self.k1_cap, n), dtype=np.int32) for f in ("o", "h", "l", "c", "n")}
        self.k1_ring.update({f: np.zeros((self.k1_cap, n), dtype=np.float32) for f in ("v", "q", "V", "Q")})
        self._k1_pre: dict[int, dict[str, np.ndarray]] = {}
        self._k1_fac: tuple[np.ndarray, np.ndarray] | None = None
        self._k1_initial = self.regime
        self._k1_start_px = self._last_px().copy()      # the pre-start path ends here (lazy generation)
        self._k1_new(self.k1_start, self._last_px())

    def _k1_new(self, t0: int, px: np.ndarray) -> None:
        n = self.n
        self.k1_open_t = t0
        self.k1o = {"o": px.copy(), "h": px.copy(), "l": px.copy(), "c": px.copy(),
                    "v": np.zeros(n), "q": np.zeros(n), "V": np.zeros(n), "Q": np.zeros(n),
                    "n": np.zeros(n, dtype=np.int64)}

    def _k1_store(self) -> None:
        pos = self.k1_count % self.k1_cap
        half = 2.0 / self.tick_size
        for f in ("o", "h", "l", "c"):
            self.k1_ring[f][pos] = np.rint(self.k1o[f] * half)
        for f in ("v", "q", "V", "Q", "n"):
            self.k1_ring[f][pos] = self.k1o[f]
        self.k1_count += 1
        self._k1_new(self.k1_open_t + 1000, self.k1o["c"])

    def _k1_prestart(self, i: int) -> dict[str, np.ndarray] | None:
        """Return (and cache) the ``k1_cap`` pre-start 1s klines of symbol ``i`` (None under replay)."""
        if self.driver is not None:
            return None
        got = self._k1_pre.get(i)
        if got is not None:
            return got
        h = self.k1_cap
        if self._k1_fac is None:
            fr = np.random.default_rng(np.random.SeedSequence([self.seed, 11]))
            self._k1_fac = (fr.standard_normal(h), fr.standard_normal((h, len(SECTORS))))
        f_m, f_s = self._k1_fac
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 12, i]))
        p = PARAMS[self._k1_initial]
        sig = BASE_SIGMA_TICK * math.sqrt(1000 / TICK_MS) * self.vol_scale[i] * p.vol_mult
        idio = max(0.0, 1.0 - p.market_share - p.sector_share)
        r = sig * (math.sqrt(p.market_share) * self.beta[i] * f_m
                   + math.sqrt(p.sector_share) * f_s[:, self.sector[i]] + math.sqrt(idio) * rng.standard_normal(h))
        ticks_per_s = 1000 // TICK_MS
        if self._k1_initial == "stress":
            r -= ticks_per_s * 0.03 * sig / math.sqrt(ticks_per_s)
        log_start = math.log(float(self._k1_start_px[i]))
        tail = np.cumsum(r[::-1])[::-1]
        mid = np.exp(log_start - tail + r)                 # mid at the end of each pre-start second
        tick = float(self.tick_size[i])
        spread = np.maximum(1, np.round(self.base_spread[i] * p.spread_mult * (1.0 + 0.3 * rng.random(h))))
        bid = np.maximum(np.floor(mid / tick - spread / 2.0), 1)
        lam = min(p.trade_rate * math.sqrt(self.liquidity[i]), 0.95)
        trades = rng.binomial(ticks_per_s, lam, h)
        buy = rng.random(h) < p.buy_prob
        px_half = np.where(buy, bid + spread, bid) * 2
        traded = trades > 0
        # close = last trade; a second without trades repeats the previous close
        idx = np.where(traded, np.arange(h), -1)
        idx = np.maximum.accumulate(idx)
        first_half = np.rint(mid[0] / tick * 2)
        c = np.where(idx >= 0, px_half[np.maximum(idx, 0)], first_half)
        o = np.concatenate(([first_half], c[:-1]))
        fills = trades + rng.poisson(1.5 * trades)
        qty = self.depth_usd[i] / mid * 0.025 * rng.lognormal(0.0, 1.0, h) * fills
        st = float(self.step_size[i])
        qty = np.where(fills > 0, np.maximum(np.round(qty / st), 1) * st, 0.0)
        q = qty * c * tick / 2
        bshare = np.where(buy, 0.7, 0.3)
        got = {"o": o.astype(np.int32), "c": c.astype(np.int32), "h": np.maximum(o, c).astype(np.int32),
               "l": np.minimum(o, c).astype(np.int32), "n": fills.astype(np.int32),
               "v": qty.astype(np.float32), "q": q.astype(np.float32),
               "V": (qty * bshare).astype(np.float32), "Q": (q * bshare).astype(np.float32)}
        self._k1_pre[i] = got
        return got

    def klines_1s(self, i: int, start_ms: int | None, end_ms: int | None, limit: int
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Return (open_times, fields) of up to ``limit`` 1s klines of symbol ``i`` (prices in units).

        Served window: the last ``k1_cap`` seconds before the open second, plus the open second.
        With ``start_ms`` the oldest ``limit`` rows from it, else the newest ``limit`` rows up to ``end_ms``.
        """
        if not self.k1_cap:
            raise ValueError("1s klines are disabled")
        lo = self.k1_open_t - self.k1_cap * 1000
        if self.driver is not None:
            lo = max(lo, self.k1_start)
        hi = self.k1_open_t
        if end_ms is not None:
            hi = min(hi, end_ms - end_ms % 1000)
        if start_ms is not None:
            lo = max(lo, -(-start_ms // 1000) * 1000)
            hi = min(hi, lo + (limit - 1) * 1000)
        else:
            lo = max(lo, hi - (limit - 1) * 1000)
        if hi < lo:
            return np.zeros(0, dtype=np.int64), {f: np.zeros(0) for f in ("o", "h", "l", "c", "v", "q", "V", "Q", "n")}
        times = np.arange(lo, hi + 1000, 1000, dtype=np.int64)
        out = {f: np.zeros(times.size) for f in ("o", "h", "l", "c", "v", "q", "V", "Q", "n")}
        tick_half = float(self.tick_size[i]) / 2.0
        pre = times < self.k1_start
        if pre.any():
            pd = self._k1_prestart(i)
            j = (times[pre] - (self.k1_start - self.k1_cap * 1000)) // 1000
            for f in out:
                out[f][pre] = pd[f][j] * (tick_half if f in "ohlc" else 1.0)
        live = (times >= self.k1_start) & (times < self.k1_open_t)
        if live.any():
            pos = ((times[live] - self.k1_start) // 1000) % self.k1_cap
            for f in out:
                out[f][live] = self.k1_ring[f][pos, i] * (tick_half if f in "ohlc" else 1.0)
        cur = times == self.k1_open_t
        if cur.any():
            for f in out:
                out[f][cur] = self.k1o[f][i]
        return times, out

    # ------------------------------------------------------------------ taker ratio
    def _init_taker(self, rng: np.random.Generator) -> None:
        n = self.n
        five = 300_000
        self.taker_times = np.zeros(TAKER_CAP, dtype=np.int64)
        self.taker_buy = np.zeros((n, TAKER_CAP))
        self.taker_sell = np.zeros((n, TAKER_CAP))
        self.taker_count = 0
        cur = self.t_ms - self.t_ms % five
        base = self.depth_usd / self.mid * 3.0
        for j in range(TAKER_CAP):
            t0 = cur - (TAKER_CAP - j) * five
            ratio = np.clip(rng.normal(1.0, 0.12, n), 0.5, 2.0)
            tot = base * rng.lognormal(0, 0.4, n)
            self._store_taker(t0, tot * ratio / (1 + ratio), tot / (1 + ratio))
        self.taker_open_t = cur
        self.taker_buy_cur = np.zeros(n)
        self.taker_sell_cur = np.zeros(n)

    def _store_taker(self, t0: int, buy: np.ndarray, sell: np.ndarray) -> None:
        pos = self.taker_count % TAKER_CAP
        self.taker_times[pos] = t0
        self.taker_buy[:, pos] = buy
        self.taker_sell[:, pos] = sell
        self.taker_count += 1

    def _taker_minute(self) -> None:
        if self.t_ms >= self.taker_open_t + 300_000:
            self._store_taker(self.taker_open_t, self.taker_buy_cur, self.taker_sell_cur)
            self.taker_open_t = self.t_ms - self.t_ms % 300_000
            self.taker_buy_cur = np.zeros(self.n)
            self.taker_sell_cur = np.zeros(self.n)

    def taker_buckets(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (bucket_open_times, buy_vol, sell_vol) of 5m buckets for symbol ``i`` (incl. open one)."""
        cnt = min(self.taker_count, TAKER_CAP)
        pos = np.arange(self.taker_count - cnt, self.taker_count) % TAKER_CAP
        return (np.append(self.taker_times[pos], self.taker_open_t),
                np.append(self.taker_buy[i, pos], self.taker_buy_cur[i]),
                np.append(self.taker_sell[i, pos], self.taker_sell_cur[i]))

    # ------------------------------------------------------------------ indicators
    def _init_indicator_history(self, rng: np.random.Generator) -> None:
        # DVOL per minute for 24 h before start; then appended every market minute.
        self.dvol_hist: dict[str, list[tuple[int, float]]] = {}
        minute = 60_000
        t_end = self.t_ms - self.t_ms % minute
        for cur, lvl in self.dvol.items():
            x = lvl + np.cumsum(rng.normal(0, 0.15, 1440))[::-1] * 0.5
            self.dvol_hist[cur] = [(int(t_end - (1440 - j) * minute), float(x[j])) for j in range(1440)]
        # fear & greed: 60 daily values before today
        day = 86_400_000
        d0 = self.t_ms - self.t_ms % day
        vals = np.clip(self.fng + np.cumsum(rng.normal(0, 4, 60))[::-1], 5, 95)
        self.fng_hist = [(int(d0 - (60 - j) * day), int(round(vals[j]))) for j in range(60)]
        self._last_dvol_min = t_end

    def record_indicators(self) -> None:
        """Append the current DVOL to its per-minute history when a new market minute starts."""
        m = self.t_ms - self.t_ms % 60_000
        if m > self._last_dvol_min:
            for cur, v in self.dvol.items():
                self.dvol_hist[cur].append((m, float(v)))
                if len(self.dvol_hist[cur]) > 20_000:
                    del self.dvol_hist[cur][:1000]
            self._last_dvol_min = m

    # ------------------------------------------------------------------ helpers
    def next_funding_ms(self) -> int:
        """Return the next 8-hourly funding time (00/08/16 UTC) after market time."""
        eight = 8 * 3_600_000
        return (self.t_ms // eight + 1) * eight

    def mark_price(self) -> np.ndarray:
        return self.mid * (1.0 + self.basis)

    def index_price(self) -> np.ndarray:
        return self.mid

    def set_crossed(self, i: int, on: bool) -> None:
        """Mark symbol ``i`` as having a crossed book (fault injection); applied by the serialisers."""
        (self.crossed.add if on else self.crossed.discard)(i)
