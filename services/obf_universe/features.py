"""Pure order-book feature math for obf_universe: depth5 parsing, per-asset and market-wide features.

Design notes: ``docs/design/services.obf_universe.md``.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Mapping


class BookError(ValueError):
    """A depth frame is unusable; ``kind`` is ``garbage`` (malformed) or ``crossed`` (ask ≤ bid)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class FeatureParams:
    """Constants of the feature definitions above (frozen; defaults are the production values)."""

    depth_ref_usd: float = 250_000.0
    rel_window_bars: int = 720
    rel_depth_frac: float = 0.5
    rel_spread_mult: float = 2.0
    spread_ref_bps: float = 10.0
    ma_bars: int = 5
    persistence_bars: int = 10
    withdrawal_bars: int = 5
    baseline_bars: int = 120
    warm_bars: int = 10
    thin_ratio: float = 0.6
    cascade_depth_ratio: float = 0.5
    cascade_imbalance: float = 0.4
    dark_streak_bars: int = 12
    stress_fraction: float = 0.25
    calm_fraction: float = 0.05
    calm_spread_ratio: float = 1.1
    cascade_min_assets: int = 3
    cascade_min_fraction: float = 0.02


@dataclass(frozen=True)
class Book:
    """One validated depth snapshot: levels as (price, qty) tuples, best first."""

    symbol: str
    event_ms: int
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]


def _levels(raw: Any, side: str, symbol: str) -> tuple[tuple[float, float], ...]:
    if not isinstance(raw, list):
        raise BookError("garbage", f"{symbol}: {side} levels are not a list")
    out = []
    for lvl in raw:
        if not isinstance(lvl, (list, tuple)) or len(lvl) < 2:
            raise BookError("garbage", f"{symbol}: malformed {side} level {lvl!r:.60}")
        try:
            p, q = float(lvl[0]), float(lvl[1])
        except (TypeError, ValueError):
            raise BookError("garbage", f"{symbol}: non-numeric {side} level {lvl!r:.60}") from None
        if not (math.isfinite(p) and math.isfinite(q)) or p <= 0.0 or q < 0.0:
            raise BookError("garbage", f"{symbol}: out-of-range {side} level {lvl!r:.60}")
        if q > 0.0:
            out.append((p, q))
    return tuple(out)


def parse_depth(msg: Any) -> Book:
    """Validate one decoded depth5 message (raw or combined-stream envelope) and return a Book.

    Raises :class:`BookError` with kind ``garbage`` for a malformed or one-sided book and kind
    ``crossed`` when best ask ≤ best bid.
    """
    if isinstance(msg, dict) and "stream" in msg and "data" in msg:
        msg = msg["data"]
    if not isinstance(msg, dict):
        raise BookError("garbage", f"expected a JSON object, got {type(msg).__name__}")
    symbol = msg.get("s")
    if not isinstance(symbol, str) or not symbol:
        raise BookError("garbage", "depth frame without a symbol ('s')")
    bids_raw = msg.get("b", msg.get("bids"))
    asks_raw = msg.get("a", msg.get("asks"))
    bids = tuple(sorted(_levels(bids_raw, "bid", symbol), key=lambda x: -x[0]))
    asks = tuple(sorted(_levels(asks_raw, "ask", symbol), key=lambda x: x[0]))
    if not bids or not asks:
        raise BookError("garbage", f"{symbol}: one-sided or empty book")
    if asks[0][0] <= bids[0][0]:
        raise BookError("crossed", f"{symbol}: crossed book (ask {asks[0][0]} <= bid {bids[0][0]})")
    ev = msg.get("E", msg.get("T", 0))
    event_ms = int(ev) if isinstance(ev, (int, float)) and not isinstance(ev, bool) else 0
    return Book(symbol, event_ms, bids, asks)


def book_features(book: Book, params: FeatureParams = FeatureParams()) -> dict[str, float | int]:
    """Return the §26.2 per-snapshot features of ``book`` (see the module docstring)."""
    bb, ba = book.bids[0][0], book.asks[0][0]
    mid = (bb + ba) / 2.0
    spread_bps = (ba - bb) / mid * 10_000.0
    lo, hi = mid * 0.99, mid * 1.01
    depth = sum(p * q for p, q in book.bids if p >= lo) + sum(p * q for p, q in book.asks if p <= hi)
    bid_q = sum(q for _, q in book.bids)
    ask_q = sum(q for _, q in book.asks)
    tot = bid_q + ask_q
    return {
        "best_bid": bb, "best_ask": ba, "mid": mid,
        "spread_bps": spread_bps,
        "depth_1pct_usd": depth,
        "depth_quality": min(1.0, depth / params.depth_ref_usd),
        "fill_probability": math.exp(-spread_bps / params.spread_ref_bps),
        "imbalance": (bid_q - ask_q) / tot if tot > 0 else 0.0,
        "n_bid_levels": len(book.bids), "n_ask_levels": len(book.asks),
    }


def _median(xs: Iterable[float]) -> float:
    srt = sorted(xs)
    k = len(srt)
    return srt[k // 2] if k % 2 else 0.5 * (srt[k // 2 - 1] + srt[k // 2])


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


class AssetRolling:
    """Per-asset bar history: rolling §9.1 features, baselines, dark streak (mutable, not shared)."""

    __slots__ = ("p", "imb", "depth", "bars", "depth_base", "spread_base", "dark_streak", "stale",
                 "last", "thinning", "cascade", "spread_ratio", "depth_hist", "spread_hist", "depth_ref",
                 "spread_ref")

    def __init__(self, params: FeatureParams = FeatureParams()):
        self.p = params
        self.imb: deque[float] = deque(maxlen=max(params.ma_bars, params.persistence_bars))
        self.depth: deque[float] = deque(maxlen=params.withdrawal_bars + 1)
        self.bars = 0
        self.depth_base: float | None = None
        self.spread_base: float | None = None
        self.dark_streak = 0
        self.stale = False
        self.last: dict[str, float] = {"imbalance_ma5": 0.0, "imbalance_persistence": 0.0,
                                       "withdrawal_velocity": 0.0}
        self.thinning = False
        self.cascade = False
        self.spread_ratio = 1.0
        self.depth_hist: deque[float] = deque(maxlen=params.rel_window_bars)
        self.spread_hist: deque[float] = deque(maxlen=params.rel_window_bars)
        self.depth_ref: float | None = None    # rolling median depth_1pct_usd (None: no live bar yet)
        self.spread_ref: float | None = None   # rolling median spread_bps

    def relative(self, feats: Mapping[str, float]) -> dict[str, float]:
        """Cat3's scores of one book against this asset's own rolling medians (docs/cat3.md).

        ``depth_quality_rel`` = min(1, depth / (rel_depth_frac × median depth)); ``fill_probability_rel`` =
        exp(−max(0, spread − rel_spread_mult × median spread) / spread_ref_bps): the §26.2 fill probability
        of the spread in excess of twice the asset's own normal spread. Before the first live bar the book
        itself is the reference (1.0, 1.0).
        """
        p = self.p
        depth, spread = float(feats["depth_1pct_usd"]), float(feats["spread_bps"])
        dref = self.depth_ref if self.depth_ref else depth
        sref = self.spread_ref if self.spread_ref else spread
        dq = min(1.0, max(0.0, depth) / (p.rel_depth_frac * dref)) if dref > 0 else 0.0
        fq = math.exp(-max(0.0, spread - p.rel_spread_mult * sref) / p.spread_ref_bps)
        return {"depth_quality_rel": dq, "fill_probability_rel": fq,
                "depth_ref_usd": dref, "spread_ref_bps": sref}

    @property
    def warm(self) -> bool:
        return self.bars >= self.p.warm_bars

    def step(self, feats: Mapping[str, float] | None, fresh: bool) -> tuple[bool, bool]:
        """Advance one bar with the asset's latest features; return (became_stale, recovered).

        ``fresh`` says whether a valid book update arrived since the previous bar.
        """
        p = self.p
        dark = (not fresh) or feats is None or feats.get("depth_1pct_usd", 0.0) <= 0.0
        became_stale = recovered = False
        if dark:
            self.dark_streak += 1
            if self.dark_streak >= p.dark_streak_bars and not self.stale:
                self.stale = became_stale = True
        else:
            if self.stale:
                recovered = True
            self.dark_streak = 0
            self.stale = False
        if feats is None:
            return became_stale, recovered
        imb, depth, spread = feats["imbalance"], feats["depth_1pct_usd"], feats["spread_bps"]
        self.imb.append(imb)
        self.depth.append(depth)
        self.bars += 1
        if not dark:
            self.depth_hist.append(depth)
            self.spread_hist.append(spread)
            self.depth_ref = _median(self.depth_hist) or None
            self.spread_ref = _median(self.spread_hist) or None
        last_imb = list(self.imb)
        ma = sum(last_imb[-p.ma_bars:]) / len(last_imb[-p.ma_bars:])
        s = _sign(ma)
        window = last_imb[-p.persistence_bars:]
        persistence = (sum(1 for x in window if _sign(x) == s) / len(window)) if s != 0 else 0.0
        if len(self.depth) == p.withdrawal_bars + 1 and self.depth[0] > 0:
            wv = (self.depth[-1] / self.depth[0] - 1.0) / p.withdrawal_bars
        else:
            wv = 0.0
        self.last = {"imbalance_ma5": ma, "imbalance_persistence": persistence, "withdrawal_velocity": wv}
        if self.depth_base is None:
            self.depth_base, self.spread_base = depth, spread
        warm = self.bars > p.warm_bars  # baseline built from >= warm_bars earlier bars
        self.spread_ratio = spread / self.spread_base if self.spread_base and self.spread_base > 0 else 1.0
        if warm and not dark:
            self.thinning = depth < p.thin_ratio * self.depth_base
            self.cascade = (depth <= p.cascade_depth_ratio * self.depth_base
                            and abs(imb) >= p.cascade_imbalance)
        else:
            self.thinning = self.cascade = False
        a = 1.0 / p.baseline_bars if self.bars > p.warm_bars else 1.0 / self.bars
        self.depth_base += a * (depth - self.depth_base)
        self.spread_base += a * (spread - self.spread_base)
        return became_stale, recovered


@dataclass(frozen=True)
class Macro:
    """Market-wide OB state (§9.2) at one bar."""

    cascade_count: int
    regime_signal: int
    withdrawal_stress: float
    n_assets: int
    median_spread_ratio: float
    market_imbalance: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {"cascade_count": self.cascade_count, "regime_signal": self.regime_signal,
                "withdrawal_stress": self.withdrawal_stress, "n_macro_assets": self.n_assets,
                "median_spread_ratio": self.median_spread_ratio, "market_imbalance": self.market_imbalance}


def macro(assets: Iterable[AssetRolling], params: FeatureParams = FeatureParams()) -> Macro:
    """Aggregate the per-asset flags of warm, non-stale assets into the §9.2 macro state."""
    live = [a for a in assets if a.bars > params.warm_bars and not a.stale]
    n = len(live)
    if n == 0:
        return Macro(0, 0, 0.0, 0, 1.0)
    cascades = sum(1 for a in live if a.cascade)
    stress = sum(1 for a in live if a.thinning) / n
    ratios = sorted(a.spread_ratio for a in live)
    med = ratios[n // 2] if n % 2 else 0.5 * (ratios[n // 2 - 1] + ratios[n // 2])
    imb = min(1.0, max(-1.0, sum(a.last["imbalance_ma5"] for a in live) / n))
    if stress >= params.stress_fraction or cascades >= max(params.cascade_min_assets,
                                                           params.cascade_min_fraction * n):
        regime = 1
    elif stress <= params.calm_fraction and cascades == 0 and med <= params.calm_spread_ratio:
        regime = -1
    else:
        regime = 0
    return Macro(cascades, regime, stress, n, med, imb)
