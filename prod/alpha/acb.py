"""ACB v6, the Adaptive Circuit Breaker (bible §10, §19.2): turn a day's external factors, the
w750 eigenvalue velocity and the OB macro stress into the ``(boost, beta)`` pair the engine uses.

Design notes: ``docs/design/prod.alpha.md``.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from prod.alpha.params import AcbParams

__all__ = [
    "AcbParams", "ExternalFactors", "AcbResult", "factor_signals", "base_boost",
    "w750_threshold", "dynamic_beta", "ob_stress_from_regime", "ob_beta_modulation",
    "compute_acb", "meta_boost", "daily_factors", "daily_factors_by_date", "daily_w750",
    "AdaptiveCircuitBreaker",
]

FACTOR_NAMES: tuple[str, ...] = ("funding_btc", "dvol_btc", "fng", "taker")


#: a date's factors are aggregated over its first N scans (§10.2)
DAILY_FIRST_N_SCANS = 10

DEFAULT_PARAMS = AcbParams()


def _finite(x: object) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class ExternalFactors:
    """One date's (or one scan's) external factors; ``None`` = not available."""

    funding_btc: float | None = None
    dvol_btc: float | None = None
    fng: float | None = None
    taker: float | None = None

    def __post_init__(self) -> None:
        for name in FACTOR_NAMES:  # non-finite / non-numeric inputs become "absent"
            object.__setattr__(self, name, _finite(getattr(self, name)))

    @classmethod
    def from_mapping(cls, m: Mapping[str, object]) -> "ExternalFactors":
        """Build from a dict such as the exf payload; unknown keys are ignored, bad values are absent."""
        return cls(**{k: m.get(k) for k in FACTOR_NAMES})  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


@dataclass(frozen=True)
class AcbResult:
    """The ACB decision for one date (or one sub-day recomputation)."""

    boost: float
    beta: float
    signals: float
    factor_weights: dict[str, float] = field(default_factory=dict)
    w750_vel: float | None = None
    w750_threshold: float | None = None
    ob_stress: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict (``boost`` and ``beta`` are what the engine consumes)."""
        return asdict(self)

    def boost_payload(self, computed_at: float) -> dict[str, object]:
        """Return the ``DOLPHIN_FEATURES[acb_boost]`` body (the prod.bus.maps.ACB_BOOST topic); time comes in."""
        return {
            "boost": self.boost, "beta": self.beta, "signals": self.signals,
            "computed_at": float(computed_at),
            "inputs": {"factor_weights": dict(self.factor_weights), "w750_vel": self.w750_vel,
                       "w750_threshold": self.w750_threshold, "ob_stress": self.ob_stress},
        }


def factor_signals(f: ExternalFactors, p: AcbParams = DEFAULT_PARAMS) -> dict[str, float]:
    """Return the weighted bearish signal of each factor (0, 0.5 or 1.0), fng after confirmation."""
    w = {name: 0.0 for name in FACTOR_NAMES}
    if f.funding_btc is not None:
        if f.funding_btc < p.funding_very_bearish:
            w["funding_btc"] = 1.0
        elif f.funding_btc < p.funding_mild_bearish:
            w["funding_btc"] = 0.5
    if f.dvol_btc is not None:
        if f.dvol_btc > p.dvol_extreme:
            w["dvol_btc"] = 1.0
        elif f.dvol_btc > p.dvol_elevated:
            w["dvol_btc"] = 0.5
    if f.taker is not None:
        if f.taker < p.taker_selling:
            w["taker"] = 1.0
        elif f.taker < p.taker_mild_selling:
            w["taker"] = 0.5
    if f.fng is not None:
        others = w["funding_btc"] + w["dvol_btc"] + w["taker"]
        if f.fng < p.fng_extreme_fear:
            raw = 1.0
        elif f.fng < p.fng_fear:
            raw = 0.5
        else:
            raw = 0.0
        # confirmation: the other factors must already carry at least the same weight;
        # extreme fear with only mild confirmation still counts as plain fear.
        if raw > 0.0 and others >= raw:
            w["fng"] = raw
        elif raw > 0.0 and others >= 0.5:
            w["fng"] = 0.5
    return w


def base_boost(signals: float) -> float:
    """Return the scale-1 boost: ``1 + 0.5·log1p(signals)`` for signals ≥ 1, else 1.0."""
    s = _finite(signals)
    if s is None or s < 1.0:
        return 1.0
    return 1.0 + 0.5 * math.log1p(s)


def w750_threshold(w750_vels: Iterable[float], p: AcbParams = DEFAULT_PARAMS) -> float | None:
    """Return the percentile (default 60th) of the finite reference w750 velocities, or None if none."""
    arr = np.asarray([v for v in (_finite(x) for x in w750_vels) if v is not None], dtype=np.float64)
    if arr.size == 0:
        return None
    return float(np.percentile(arr, p.w750_threshold_pct))


def dynamic_beta(w750_vel: float | None, threshold: float | None, p: AcbParams = DEFAULT_PARAMS) -> float:
    """Return BETA_HIGH when ``w750_vel >= threshold``, else BETA_LOW (also when either is unknown)."""
    v, t = _finite(w750_vel), _finite(threshold)
    if v is None or t is None:
        return p.beta_low
    return p.beta_high if v >= t else p.beta_low


def ob_stress_from_regime(regime_signal: float | None) -> float:
    """Map the OB macro ``regime_signal`` (−1 calm, 0 neutral, +1 withdrawal) to a stress in [0, 1]."""
    r = _finite(regime_signal)
    if r is None:
        return 0.0
    return min(1.0, max(0.0, r))


def ob_beta_modulation(beta: float, ob_stress: float, p: AcbParams = DEFAULT_PARAMS) -> float:
    """Return beta raised by OB sub-4 withdrawal stress: ``beta·(1 + 0.25·clamp(stress, 0, 1))``."""
    s = _finite(ob_stress)
    s = 0.0 if s is None else min(1.0, max(0.0, s))
    return beta * (1.0 + p.ob_beta_max_boost * s)


def compute_acb(
    factors: ExternalFactors | Mapping[str, object] | None,
    w750_vel: float | None = None,
    w750_thresh: float | None = None,
    ob_stress: float = 0.0,
    params: AcbParams = DEFAULT_PARAMS,
) -> AcbResult:
    """Compute the day's ACB ``(boost, beta)``.

    Parameters
    ----------
    factors
        The date's external factors (see :func:`daily_factors`); ``None`` means none available.
    w750_vel
        The date's w750 lambda-max velocity (see :func:`daily_w750`).
    w750_thresh
        The reference percentile from :func:`w750_threshold`.
    ob_stress
        OB macro withdrawal stress in [0, 1] (:func:`ob_stress_from_regime`); 0 without an OB feed.
    """
    if factors is None:
        f = ExternalFactors()
    elif isinstance(factors, ExternalFactors):
        f = factors
    else:
        f = ExternalFactors.from_mapping(factors)
    weights = factor_signals(f, params)
    signals = float(sum(weights.values()))
    beta = ob_beta_modulation(dynamic_beta(w750_vel, w750_thresh, params), ob_stress, params)
    s = _finite(ob_stress)
    return AcbResult(
        boost=base_boost(signals), beta=beta, signals=signals, factor_weights=weights,
        w750_vel=_finite(w750_vel), w750_threshold=_finite(w750_thresh),
        ob_stress=0.0 if s is None else min(1.0, max(0.0, s)),
    )


def meta_boost(base: float, beta: float, vel_div: float, threshold: float = -0.02,
               extreme: float = -0.05, convexity: float = 3.0, mc_scale: float = 1.0) -> float:
    """Return the scale-2 per-bar size multiplier (§10.4): ``base·(1 + beta·strength³)·mc_scale``."""
    if beta > 0.0:
        strength = (threshold - vel_div) / (threshold - extreme)
        strength = min(1.0, max(0.0, strength)) ** convexity
        return base * (1.0 + beta * strength) * mc_scale
    return base * mc_scale


def _median_or_none(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.median(vals)) if vals else None


def daily_factors(scans: Sequence[ExternalFactors | Mapping[str, object]],
                  params: AcbParams = DEFAULT_PARAMS) -> ExternalFactors:
    """Aggregate one date's scans (in time order): per-factor median of the first 10 scans.

    Missing values inside those scans are ignored; a factor missing from all of them stays ``None``.
    """
    first = [s if isinstance(s, ExternalFactors) else ExternalFactors.from_mapping(s)
             for s in list(scans)[: DAILY_FIRST_N_SCANS]]
    return ExternalFactors(**{n: _median_or_none([getattr(s, n) for s in first]) for n in FACTOR_NAMES})


def daily_factors_by_date(records: Iterable[tuple[str, float, ExternalFactors | Mapping[str, object]]],
                          params: AcbParams = DEFAULT_PARAMS) -> dict[str, ExternalFactors]:
    """Group ``(date 'YYYY-MM-DD', timestamp, factors)`` records by date and aggregate each date.

    Records may arrive in any order; within a date they are sorted by timestamp before the
    first-10 rule is applied.
    """
    by_date: dict[str, list[tuple[float, ExternalFactors | Mapping[str, object]]]] = defaultdict(list)
    for date, ts, f in records:
        by_date[date].append((float(ts), f))
    out: dict[str, ExternalFactors] = {}
    for date in sorted(by_date):
        rows = sorted(by_date[date], key=lambda r: r[0])
        out[date] = daily_factors([f for _, f in rows], params)
    return out


def daily_w750(w750_vels: Sequence[float], params: AcbParams = DEFAULT_PARAMS) -> float | None:
    """Return a date's w750 velocity: the median of its first 10 scans, non-finite ones ignored."""
    return _median_or_none([_finite(x) for x in list(w750_vels)[: DAILY_FIRST_N_SCANS]])


class AdaptiveCircuitBreaker:
    """Preloaded per-date ACB (§13.1): the object the engine's ``set_acb`` expects.

    ``factors_by_date`` maps 'YYYY-MM-DD' to that date's aggregated factors (see
    :func:`daily_factors_by_date`); ``w750_by_date`` maps dates to their w750 velocity (see
    :func:`daily_w750`). The 60th-percentile threshold is taken over all ``w750_by_date`` values
    (the bible preloads it over the whole data set). A date without factors gets signals 0 →
    boost 1.0; a date without a w750 value gets BETA_LOW.
    """

    def __init__(self, factors_by_date: Mapping[str, ExternalFactors | Mapping[str, object]] | None = None,
                 w750_by_date: Mapping[str, float | None] | None = None,
                 params: AcbParams = DEFAULT_PARAMS) -> None:
        self.params = params
        self._factors = {str(d): (f if isinstance(f, ExternalFactors) else ExternalFactors.from_mapping(f))
                         for d, f in (factors_by_date or {}).items()}
        self._w750 = {str(d): _finite(v) for d, v in (w750_by_date or {}).items()}
        self.w750_threshold = w750_threshold([v for v in self._w750.values() if v is not None], params)
        self.last: AcbResult | None = None

    def result_for_date(self, date: str, ob_stress: float = 0.0) -> AcbResult:
        """Return the full :class:`AcbResult` for ``date``."""
        self.last = compute_acb(self._factors.get(str(date)), self._w750.get(str(date)),
                                self.w750_threshold, ob_stress, self.params)
        return self.last

    def get_dynamic_boost_for_date(self, date: str, ob_engine: object = None) -> dict[str, float]:
        """Return ``{'boost', 'beta', 'signals'}`` for ``date``; OB sub-4 stress from ``ob_engine``."""
        stress = 0.0
        if ob_engine is not None and hasattr(ob_engine, "get_macro"):
            from prod.alpha.ob import macro_stress  # local: keeps acb importable on its own
            stress = float(macro_stress(ob_engine.get_macro()))
        r = self.result_for_date(date, stress)
        return {"boost": r.boost, "beta": r.beta, "signals": r.signals}
