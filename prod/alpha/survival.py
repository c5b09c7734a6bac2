"""Survival stack (bible §11, §19.3): fold five sensor categories into one risk multiplier
``Rm ∈ [0, 1]`` and map it, with hysteresis, to a posture {APEX, STALKER, TURTLE, HIBERNATE}.

Design notes: ``docs/design/prod.alpha.md``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Mapping

__all__ = [
    "Posture", "SurvivalParams", "SensorReadings", "SurvivalResult", "SurvivalStack",
    "cat1_invariant", "cat2_structural", "cat3_microstructure", "cat4_environmental",
    "cat5_capital", "combine", "bounded_recovery", "posture_for",
]


class Posture(str, Enum):
    """Trading posture, from least to most severe."""

    APEX = "APEX"
    STALKER = "STALKER"
    TURTLE = "TURTLE"
    HIBERNATE = "HIBERNATE"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Posture.APEX: 0, Posture.STALKER: 1, Posture.TURTLE: 2, Posture.HIBERNATE: 3}


@dataclass(frozen=True)
class SurvivalParams:
    """Frozen survival-stack constants (§11, §19.3)."""

    heartbeat_max_age_s: float = 30.0
    mc_base: tuple[tuple[str, float], ...] = (("OK", 1.0), ("ORANGE", 0.5), ("RED", 0.1))
    mc_unknown_base: float = 0.5
    staleness_grace_h: float = 6.0
    staleness_tau_h: float = 3.0
    ob_stale_score: float = 0.5
    micro_floor: float = 0.3
    dvol_floor: float = 0.3
    dvol_tau_min: float = 60.0
    dd_steepness: float = 30.0
    dd_midpoint: float = 0.12
    degraded_below: float = 0.8
    degraded_count: int = 2
    collapse_penalty: float = 0.5
    recovery_alpha_per_min: float = 0.02
    recovery_max_per_min: float = 0.05
    apex_min: float = 0.90
    stalker_min: float = 0.75
    turtle_min: float = 0.50
    hysteresis_down: int = 2
    hysteresis_up: int = 5

    def __post_init__(self) -> None:
        if not (0.0 < self.turtle_min < self.stalker_min < self.apex_min <= 1.0):
            raise ValueError("SurvivalParams: expected 0 < turtle_min < stalker_min < apex_min <= 1")
        if self.hysteresis_down < 1 or self.hysteresis_up < 1:
            raise ValueError("SurvivalParams: hysteresis counts must be >= 1")


DEFAULT_PARAMS = SurvivalParams()


def _num(x: object, default: float) -> float:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return v if not math.isnan(v) else default


def _clamp01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def cat1_invariant(hz_nodes: int, heartbeat_age_s: float, p: SurvivalParams = DEFAULT_PARAMS) -> float:
    """Return 0.0 on total failure (no HZ node, or heartbeat older than 30 s / unknown), else 1.0."""
    age = _num(heartbeat_age_s, math.inf)
    if _num(hz_nodes, 0.0) < 1 or not age <= p.heartbeat_max_age_s:
        return 0.0
    return 1.0


def cat2_structural(mc_status: str | None, staleness_hours: float,
                    p: SurvivalParams = DEFAULT_PARAMS) -> float:
    """Return the MC-status base times exp decay once data is more than 6 h stale."""
    base = dict(p.mc_base).get(str(mc_status).upper() if mc_status is not None else "", p.mc_unknown_base)
    stale = _num(staleness_hours, math.inf)
    decay = math.exp(-max(0.0, stale - p.staleness_grace_h) / p.staleness_tau_h)
    return _clamp01(base * decay)


def cat3_microstructure(ob_stale: bool, depth_quality: float, fill_prob: float,
                        p: SurvivalParams = DEFAULT_PARAMS) -> float:
    """Return 0.5 for a stale OB feed, else clamp(0.3 + 0.7·min(depth, fill), 0.3, 1.0)."""
    d, f = _num(depth_quality, math.nan), _num(fill_prob, math.nan)
    if ob_stale or math.isnan(d) or math.isnan(f):
        return p.ob_stale_score
    score = min(d, f)
    return min(1.0, max(p.micro_floor, p.micro_floor + (1.0 - p.micro_floor) * score))


def cat4_environmental(minutes_since_dvol_spike: float | None,
                       p: SurvivalParams = DEFAULT_PARAMS) -> float:
    """Return the DVOL-spike impulse: 1.0 with no spike, 0.3 at the spike, 60-min recovery tau."""
    if minutes_since_dvol_spike is None:
        return 1.0
    t = max(0.0, _num(minutes_since_dvol_spike, 0.0))
    if t == 0.0:
        return p.dvol_floor
    return p.dvol_floor + (1.0 - p.dvol_floor) * (1.0 - math.exp(-t / p.dvol_tau_min))


def cat5_capital(drawdown: float, p: SurvivalParams = DEFAULT_PARAMS) -> float:
    """Return the drawdown sigmoid 1/(1 + exp(30·(dd − 0.12))); dd is a fraction (0.12 = 12 %)."""
    dd = _num(drawdown, 1.0)
    z = p.dd_steepness * (dd - p.dd_midpoint)
    if z > 700.0:
        return 0.0
    return 1.0 / (1.0 + math.exp(z))


@dataclass(frozen=True)
class SensorReadings:
    """One snapshot of the survival sensors (what the watchdog gathers)."""

    hz_nodes: int = 1
    heartbeat_age_s: float = 0.0
    mc_status: str | None = "OK"
    staleness_hours: float = 0.0
    ob_stale: bool = False
    depth_quality: float = 1.0
    fill_prob: float = 1.0
    minutes_since_dvol_spike: float | None = None
    drawdown: float = 0.0

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> "SensorReadings":
        """Build from a dict, ignoring unknown keys (missing keys take the healthy default)."""
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: m[k] for k in names if k in m})


@dataclass(frozen=True)
class Combined:
    """Categories and the combined target of one reading."""

    cat1: float
    cat2: float
    cat3: float
    cat4: float
    cat5: float
    degraded: int
    r_target: float


def combine(s: SensorReadings, p: SurvivalParams = DEFAULT_PARAMS) -> Combined:
    """Compute the five categories and the hierarchical target with the collapse penalty."""
    c1 = cat1_invariant(s.hz_nodes, s.heartbeat_age_s, p)
    c2 = cat2_structural(s.mc_status, s.staleness_hours, p)
    c3 = cat3_microstructure(s.ob_stale, s.depth_quality, s.fill_prob, p)
    c4 = cat4_environmental(s.minutes_since_dvol_spike, p)
    c5 = cat5_capital(s.drawdown, p)
    r = c1 * c5 * min(c2, c4) * c3
    degraded = sum(1 for c in (c2, c3, c4) if c < p.degraded_below)
    if degraded >= p.degraded_count:
        r *= p.collapse_penalty
    return Combined(c1, c2, c3, c4, c5, degraded, _clamp01(r))


def bounded_recovery(r_target: float, last_r: float, dt_min: float,
                     p: SurvivalParams = DEFAULT_PARAMS) -> float:
    """Return the next Rm: drop at once to a lower target, recover at most 5 %/minute otherwise."""
    if r_target < last_r:
        return r_target
    dt = max(0.0, _num(dt_min, 0.0))
    alpha = min(1.0, p.recovery_alpha_per_min * dt)
    step = min(alpha * (r_target - last_r), p.recovery_max_per_min * dt)
    return _clamp01(last_r + step)


def posture_for(rm: float, p: SurvivalParams = DEFAULT_PARAMS) -> Posture:
    """Map Rm to the posture by the tightened thresholds (0.90 / 0.75 / 0.50)."""
    r = _num(rm, 0.0)
    if r >= p.apex_min:
        return Posture.APEX
    if r >= p.stalker_min:
        return Posture.STALKER
    if r >= p.turtle_min:
        return Posture.TURTLE
    return Posture.HIBERNATE


@dataclass(frozen=True)
class SurvivalResult:
    """The outcome of one update."""

    rm: float
    r_target: float
    posture: Posture
    candidate: Posture
    categories: dict[str, float] = field(default_factory=dict)
    degraded: int = 0
    changed: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["posture"] = self.posture.value
        d["candidate"] = self.candidate.value
        return d

    def safety_payload(self, ts: float) -> dict[str, Any]:
        """Return the ``DOLPHIN_SAFETY[latest]`` body (the prod.bus.maps.SAFETY_LATEST topic); time comes in."""
        return {"posture": self.posture.value, "Rm": self.rm, "ts": float(ts),
                "sensors": {**self.categories, "r_target": self.r_target, "degraded": self.degraded,
                            "candidate": self.candidate.value}}


class SurvivalStack:
    """Stateful Rm dynamics and posture hysteresis; feed it readings with the elapsed minutes."""

    def __init__(self, params: SurvivalParams = DEFAULT_PARAMS) -> None:
        self.params = params
        self.rm: float | None = None
        self.posture: Posture = Posture.APEX
        self._streak_dir: int = 0          # +1 candidates less severe, −1 more severe, 0 none
        self._streak_len: int = 0
        self._streak_worst: Posture | None = None

    def update(self, readings: SensorReadings, dt_min: float) -> SurvivalResult:
        """Apply one reading taken ``dt_min`` minutes after the previous one and return the result."""
        p = self.params
        comb = combine(readings, p)
        first = self.rm is None
        rm = comb.r_target if first else bounded_recovery(comb.r_target, self.rm, dt_min, p)  # type: ignore[arg-type]
        self.rm = rm
        candidate = posture_for(rm, p)
        before = self.posture
        if first or comb.cat1 == 0.0:
            self._set(candidate)
        else:
            self._hysteresis(candidate)
        cats = {"cat1": comb.cat1, "cat2": comb.cat2, "cat3": comb.cat3, "cat4": comb.cat4, "cat5": comb.cat5}
        return SurvivalResult(rm=rm, r_target=comb.r_target, posture=self.posture, candidate=candidate,
                              categories=cats, degraded=comb.degraded, changed=self.posture != before)

    def _set(self, posture: Posture) -> None:
        self.posture = posture
        self._streak_dir, self._streak_len, self._streak_worst = 0, 0, None

    def _hysteresis(self, candidate: Posture) -> None:
        diff = candidate.severity - self.posture.severity
        if diff == 0:
            self._streak_dir, self._streak_len, self._streak_worst = 0, 0, None
            return
        direction = -1 if diff > 0 else 1
        if direction != self._streak_dir:
            self._streak_dir, self._streak_len, self._streak_worst = direction, 0, None
        self._streak_len += 1
        if self._streak_worst is None or candidate.severity > self._streak_worst.severity:
            self._streak_worst = candidate
        if direction < 0 and self._streak_len >= self.params.hysteresis_down:
            self._set(candidate)
        elif direction > 0 and self._streak_len >= self.params.hysteresis_up:
            self._set(self._streak_worst)

    def state(self) -> dict[str, Any]:
        """Return the JSON-ready state (round-trips through :meth:`from_state`)."""
        return {
            "rm": self.rm, "posture": self.posture.value, "streak_dir": self._streak_dir,
            "streak_len": self._streak_len,
            "streak_worst": self._streak_worst.value if self._streak_worst is not None else None,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], params: SurvivalParams = DEFAULT_PARAMS) -> "SurvivalStack":
        """Rebuild a stack from :meth:`state`; raises ValueError naming the bad field."""
        st = cls(params)
        try:
            rm = state.get("rm")
            st.rm = None if rm is None else _clamp01(float(rm))
            st.posture = Posture(state.get("posture", "APEX"))
            st._streak_dir = int(state.get("streak_dir", 0))
            st._streak_len = int(state.get("streak_len", 0))
            w = state.get("streak_worst")
            st._streak_worst = None if w is None else Posture(w)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"SurvivalStack state invalid: {exc}") from exc
        if st._streak_dir not in (-1, 0, 1) or st._streak_len < 0:
            raise ValueError("SurvivalStack state invalid: streak_dir/streak_len out of range")
        return st
