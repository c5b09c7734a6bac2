"""The frozen type of every payload on the DOLPHIN bus, with full validation on decode.

Design notes: ``docs/design/prod.bus.md``.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, TypeVar


class PayloadError(ValueError):
    """A map value does not match its schema; the message names map, key and the problem."""


P = TypeVar("P", bound="Payload")
_HINTS: dict[type, dict[str, Any]] = {}
_FIELDS: dict[type, tuple[tuple[str, Any, bool], ...]] = {}


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


_SHAPES: dict[Any, tuple[Any, tuple]] = {}


def _shape(tp: Any) -> tuple[Any, tuple]:
    """``(get_origin(tp), get_args(tp))``, memoised: decoding is on the hot path of every listener."""
    s = _SHAPES.get(tp)
    if s is None:
        s = _SHAPES[tp] = (typing.get_origin(tp), typing.get_args(tp))
    return s


def _check(value: Any, tp: Any, where: str) -> Any:
    """Validate ``value`` against annotation ``tp``; return the value (ints widened for float)."""
    origin, targs = _shape(tp)
    if origin in (typing.Union, types.UnionType):
        args = targs
        if value is None:
            if type(None) in args:
                return None
            raise PayloadError(f"{where} is null")
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check(value, a, where)
            except PayloadError as exc:
                errors.append(str(exc))
        raise PayloadError(errors[0] if len(errors) == 1 else f"{where} must be {_type_name(tp)}")
    if tp is Any:
        _check_finite_deep(value, where)
        return value
    if value is None:
        raise PayloadError(f"{where} is null")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PayloadError(f"{where} must be a number, got {type(value).__name__}")
        try:
            finite = math.isfinite(value)
        except OverflowError:     # an int beyond the float range (fuzzing: it leaked OverflowError)
            raise PayloadError(f"{where} is out of the float range ({str(value)[:24]}...)") from None
        if not finite:
            raise PayloadError(f"{where} is not finite ({value})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise PayloadError(f"{where} must be an integer, got {type(value).__name__}")
        return value
    if tp is str or tp is bool:
        if not isinstance(value, tp):
            raise PayloadError(f"{where} must be {tp.__name__}, got {type(value).__name__}")
        return value
    if origin is list or tp is list:
        if not isinstance(value, list):
            raise PayloadError(f"{where} must be a list, got {type(value).__name__}")
        (item,) = targs or (Any,)
        for i, v in enumerate(value):
            _check(v, item, f"{where}[{i}]")
        return value
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise PayloadError(f"{where} must be an object, got {type(value).__name__}")
        item = targs[1] if len(targs) == 2 else Any
        for k, v in value.items():
            _check(v, item, f"{where}.{k}")
        return value
    raise PayloadError(f"{where}: unsupported schema type {_type_name(tp)}")


def _check_finite_deep(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError(f"{where} is not finite ({value})")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite_deep(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite_deep(v, f"{where}[{i}]")


@dataclass(frozen=True, kw_only=True)
class Payload:
    """Base of every bus payload: validated construction from a dict and back."""

    KIND: ClassVar[str] = "payload"
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def _hints(cls) -> dict[str, Any]:
        h = _HINTS.get(cls)
        if h is None:
            allh = typing.get_type_hints(cls)
            h = {f.name: allh[f.name] for f in dataclasses.fields(cls) if f.name != "extra"}
            _HINTS[cls] = h
        return h

    @classmethod
    def from_dict(cls: type[P], obj: Any, source: str = "payload") -> P:
        """Validate ``obj`` (a decoded JSON object) and return the typed payload."""
        if not isinstance(obj, dict):
            raise PayloadError(f"{source}: expected a JSON object for {cls.KIND}, got {type(obj).__name__}")
        hints = cls._hints()
        table = _FIELDS.get(cls)
        if table is None:     # (name, annotation, required), once per payload type
            by_name = {f.name: f for f in dataclasses.fields(cls)}
            table = _FIELDS[cls] = tuple(
                (n, tp, by_name[n].default is dataclasses.MISSING and by_name[n].default_factory is dataclasses.MISSING)
                for n, tp in hints.items())
        values: dict[str, Any] = {}
        for name, tp, required in table:
            if name not in obj:
                if required:
                    raise PayloadError(f"{source}: {cls.KIND} is missing field {name!r}")
                continue
            values[name] = _check(obj[name], tp, f"{source}: {cls.KIND}.{name}")
        extra = {k: v for k, v in obj.items() if k not in hints}
        _check_finite_deep(extra, f"{source}: {cls.KIND}")
        return cls(**values, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """Return the payload as a JSON-ready dict (declared fields win over ``extra``)."""
        out = dict(self.extra)
        for name in self._hints():
            out[name] = getattr(self, name)
        return out

    def validate(self, source: str = "payload") -> "Payload":
        """Re-check the declared fields of an instance built in code; return it."""
        type(self).from_dict(self.to_dict(), source)
        return self


Num = float   # ints are accepted wherever a float is declared


# ── payload kinds ────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True, kw_only=True)
class EigenScan(Payload):
    """``DOLPHIN_FEATURES[latest_eigen_scan]``: one NG8 scan (ARCHITECTURE §5, bible §27.5)."""

    KIND: ClassVar[str] = "eigen_scan"
    scan_number: int
    timestamp_ns: int
    timestamp: str
    bridge_ts: float                       # writer timestamp: when the scan was put on the bus
    vel_div: float | None
    w50_velocity: float | None
    w150_velocity: float | None
    w300_velocity: float | None
    w750_velocity: float | None
    instability_50: float | None
    instability_150: float | None
    assets: list[str]
    asset_prices: list[float | None]
    warm_windows: list[int] = field(default_factory=list)
    schema_version: str = "6.0.0"
    regime_signal: float | None = None
    instability_composite: float | None = None
    n_assets: int | None = None
    eigenvalue_gradients: dict[str, float | None] = field(default_factory=dict)
    multi_window_results: dict[str, Any] = field(default_factory=dict)
    gap_s: float = 0.0                     # missing input time before this scan (s)
    carried: int = 0                       # symbols priced from their last price
    gap_hold: bool = False                 # post-gap scan: windows not valid again yet, no entries

    def __post_init__(self) -> None:
        if len(self.assets) != len(self.asset_prices):
            raise PayloadError(f"eigen_scan {self.scan_number}: {len(self.assets)} assets but "
                               f"{len(self.asset_prices)} prices")


@dataclass(frozen=True, kw_only=True)
class AcbBoost(Payload):
    """``DOLPHIN_FEATURES[acb_boost]``: ACB v6 boost and beta (bible §10)."""

    KIND: ClassVar[str] = "acb_boost"
    boost: float
    beta: float
    computed_at: float
    signals: float | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    factor_weights: dict[str, Any] = field(default_factory=dict)
    fence: int | None = None
    writer_pid: int | None = None

    def __post_init__(self) -> None:
        if not self.boost > 0 or self.beta < 0:
            raise PayloadError(f"acb_boost out of range: boost={self.boost} beta={self.beta}")


@dataclass(frozen=True, kw_only=True)
class AcbState(Payload):
    """``DOLPHIN_FEATURES[acb_state_latest]``: the processor's state beside the boost."""

    KIND: ClassVar[str] = "acb_state"
    boost: float
    beta: float
    computed_at: float
    signals: float | None = None
    fence: int | None = None
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Exf(Payload):
    """``DOLPHIN_FEATURES[exf_latest]``: external factors, one value per indicator (None when stale)."""

    KIND: ClassVar[str] = "exf_latest"
    _pushed_at: float
    indicators: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_ok: int | None = None

    @property
    def pushed_at(self) -> float:
        return self._pushed_at

    def value(self, name: str) -> Any:
        """Return the published value of indicator ``name`` (None when absent or unusable)."""
        return self.extra.get(name)


@dataclass(frozen=True, kw_only=True)
class ObfUniverse(Payload):
    """``DOLPHIN_FEATURES[obf_universe_latest]``: the 60 s universe snapshot (bible §26.2)."""

    KIND: ClassVar[str] = "obf_universe"
    _snapshot_utc: float
    _n_assets: int
    assets: dict[str, dict[str, Any]]
    _stats: dict[str, Any] = field(default_factory=dict)

    @property
    def snapshot_utc(self) -> float:
        return self._snapshot_utc

    @property
    def n_assets(self) -> int:
        return self._n_assets

    @property
    def stats(self) -> dict[str, Any]:
        return self._stats


@dataclass(frozen=True, kw_only=True)
class ObFeatures(Payload):
    """``DOLPHIN_FEATURES_SHARD_nn[symbol]``: one asset's order-book features (bible §9)."""

    KIND: ClassVar[str] = "ob_features"
    symbol: str
    ts: float
    written_at: float | None = None
    imbalance: float
    fill_probability: float
    depth_quality: float
    spread_bps: float
    best_bid: float
    best_ask: float
    imbalance_ma5: float | None = None
    imbalance_persistence: float | None = None
    withdrawal_velocity: float | None = None
    stale: bool | None = None
    cascade_count: int | None = None
    regime_signal: float | None = None
    withdrawal_stress: float | None = None


@dataclass(frozen=True, kw_only=True)
class ObMacro(Payload):
    """``DOLPHIN_FEATURES[ob_macro_latest]``: the market-wide order-book macro of one bar (bible §9.2).

    Written by obf_universe once per bar from the warm, non-stale per-asset books
    (services/obf_universe/features.py defines every field); read by the trader for OB-3 (leverage
    multiplier from ``market_imbalance``) and OB-5 (cascade / withdrawal-stress exits).
    """

    KIND: ClassVar[str] = "ob_macro"
    ts: float                              # bar time (writer clock, epoch s)
    cascade_count: int
    regime_signal: int                     # -1 calm, 0 neutral, +1 withdrawal stress
    market_imbalance: float                # mean imbalance_ma5 over the macro assets, [-1, 1]
    withdrawal_stress: float               # fraction of the macro assets thinning, [0, 1]
    n_assets: int                          # assets the macro is computed over (0 = no macro)
    median_spread_ratio: float | None = None

    def __post_init__(self) -> None:
        bad = []
        if self.regime_signal not in (-1, 0, 1):
            bad.append(f"regime_signal={self.regime_signal}")
        if self.cascade_count < 0 or self.n_assets < 0 or self.cascade_count > max(self.n_assets, 0):
            bad.append(f"cascade_count={self.cascade_count} of n_assets={self.n_assets}")
        if not -1.0 <= self.market_imbalance <= 1.0:
            bad.append(f"market_imbalance={self.market_imbalance}")
        if not 0.0 <= self.withdrawal_stress <= 1.0:
            bad.append(f"withdrawal_stress={self.withdrawal_stress}")
        if bad:
            raise PayloadError(f"ob_macro out of range: {', '.join(bad)}")


@dataclass(frozen=True, kw_only=True)
class Safety(Payload):
    """``DOLPHIN_SAFETY[latest]`` (and the CP AtomicReference): posture and Rm (bible §11)."""

    KIND: ClassVar[str] = "safety"
    POSTURES: ClassVar[tuple[str, ...]] = ("APEX", "STALKER", "TURTLE", "HIBERNATE")
    posture: str
    Rm: float
    ts: float
    sensors: dict[str, Any] = field(default_factory=dict)
    warming_up: bool = False
    r_target: float | None = None
    candidate: str | None = None
    categories: dict[str, Any] = field(default_factory=dict)
    degraded: int = 0                      # how many of Cat2–Cat4 are below 0.8 (bible §11)
    stack_state: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.posture not in self.POSTURES:
            raise PayloadError(f"safety.posture {self.posture!r} is not one of {self.POSTURES}")


@dataclass(frozen=True, kw_only=True)
class Heartbeat(Payload):
    """``DOLPHIN_HEARTBEAT[service]``: liveness of one process; service fields ride in ``extra``."""

    KIND: ClassVar[str] = "heartbeat"
    service: str
    ts: float
    pid: int | None = None


@dataclass(frozen=True, kw_only=True)
class MetaHealth(Payload):
    """``DOLPHIN_META_HEALTH[latest]``: the MHS v3 report (bible §26.3)."""

    KIND: ClassVar[str] = "meta_health"
    rm_meta: float
    status: str
    timestamp: float
    sensors: dict[str, float] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)   # the programs MHS scores and revives
    data_sources: dict[str, Any] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    holds: dict[str, Any] = field(default_factory=dict)   # maintenance holds: program -> {since, until, reason, by}
    programs: dict[str, str] = field(default_factory=dict)   # every supervisord program's state (reported only)


@dataclass(frozen=True, kw_only=True)
class Pnl(Payload):
    """``DOLPHIN_PNL_BLUE/GREEN[YYYY-MM-DD]``: the day's result of one strategy."""

    KIND: ClassVar[str] = "pnl"
    date: str
    strategy: str
    capital: float
    pnl: float
    trades: int
    updated_at: float
    total_trades: int = 0
    peak_capital: float | None = None
    open_position: dict[str, Any] | None = None
    last_trades: list[dict[str, Any]] = field(default_factory=list)
    boost: float | None = None
    beta: float | None = None
    mc_status: str | None = None
    posture: str | None = None
    stale_state_events: int = 0
    fees_paid: float = 0.0
    day_end: bool = False
    stale_state: bool = False              # 1.1 (§15.1): the write's decision ran under changed gates


@dataclass(frozen=True, kw_only=True)
class FlowResult(Payload):
    """``DOLPHIN_PNL_*[paper_flow_<date>]`` / ``[backtest_flow_<date>]``: one day replayed by a Prefect flow."""

    KIND: ClassVar[str] = "flow_result"
    flow: str
    date: str
    strategy: str
    capital: float
    start_capital: float | None = None
    pnl: float
    trades: int
    updated_at: float
    posture: str | None = None


@dataclass(frozen=True, kw_only=True)
class EngineState(Payload):
    """``DOLPHIN_STATE_BLUE[latest]`` and ``[state_<strategy>_<date>]``: the trader's state."""

    KIND: ClassVar[str] = "engine_state"
    strategy: str
    capital: float
    updated_at: float
    peak_capital: float | None = None
    last_scan_number: int | None = None
    posture: str | None = None
    posture_source: str | None = None
    account: dict[str, Any] = field(default_factory=dict)   # the account's state: read it with AccountState.read
    engine_state: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    stale_state_events: int = 0
    # 1.1 (§15.1): the day the state belongs to, its PnL and trade count, drawdown from the peak
    date: str | None = None
    pnl: float | None = None
    trades: int | None = None
    drawdown: float | None = None


@dataclass(frozen=True, kw_only=True)
class AccountPosition(Payload):
    """``EngineState.account.position``: the trader's open position."""

    KIND: ClassVar[str] = "account_position"
    symbol: str
    direction: int
    entry_price: float
    notional: float
    trade_id: int | None = None
    entry_fee: float | None = None
    entry_ts: float | None = None
    entry_scan: int | None = None
    source: str | None = None


@dataclass(frozen=True, kw_only=True)
class AccountState(Payload):
    """``EngineState.account``: the trader's account (paper or venue), as ``prod.trading`` accounts write it.

    The one decoder of it (:meth:`read`) is shared by every reader (the TUI, the web console, the alerts).
    ``position`` and ``history`` stay JSON objects (validated: a position by :class:`AccountPosition`);
    ``safety`` and ``venue`` are the venue account's blocks (absent on paper).
    """

    KIND: ClassVar[str] = "account_state"
    capital: float | None = None
    peak_capital: float | None = None
    position: dict[str, Any] | None = None
    trades: int = 0
    day: str | None = None
    day_start_capital: float | None = None
    day_trades: int = 0
    fees_paid: float = 0.0
    history: list[Any] = field(default_factory=list)
    safety: dict[str, Any] | None = None
    venue: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, obj: Any, source: str = "payload") -> "AccountState":
        acct = super().from_dict(obj, source)
        if acct.position is not None:
            AccountPosition.from_dict(acct.position, f"{source}: account_state.position")
        return acct

    @property
    def closed_trades(self) -> list[dict[str, Any]]:
        """The closed-trade records of ``history`` (oldest first; anything not an object is skipped)."""
        return [t for t in self.history if isinstance(t, dict)]

    @classmethod
    def read(cls, state: Any, source: str = "engine_state") -> tuple["AccountState", str | None]:
        """Decode the account of an engine state (an :class:`EngineState` or its dict); an absent account is
        empty. Garbage gives an empty account and the error, naming ``source`` (never an exception)."""
        acct = state.account if isinstance(state, EngineState) else (
            state.get("account") if isinstance(state, Mapping) else None)
        if acct is None or acct == {}:
            return cls(), None
        try:
            return cls.from_dict(acct, f"{source}.account"), None
        except PayloadError as exc:
            return cls(), str(exc)


@dataclass(frozen=True, kw_only=True)
class McForewarner(Payload):
    """``DOLPHIN_FEATURES[mc_forewarner_latest]``: envelope assessment of the active config (§12, §28.6).

    One writer: services/mc_forewarner. ``status`` is GREEN | ORANGE | RED (§28.6's names; readers also take
    §12's "OK" for GREEN). ``source`` is REAL_MODEL (a trained model assessed the config), FALLBACK_NO_DATA
    (no model: ORANGE, prob 0.20, envelope 0.80) or FALLBACK_ERROR (the model was refused or failed:
    ORANGE, numbers null, ``reason`` says why); test fixtures may write their own label.
    """

    KIND: ClassVar[str] = "mc_forewarner"
    STATUSES: ClassVar[tuple[str, ...]] = ("GREEN", "OK", "ORANGE", "RED")   # OK: §12's name for GREEN
    SOURCES: ClassVar[tuple[str, ...]] = ("REAL_MODEL", "FALLBACK_NO_DATA", "FALLBACK_ERROR")
    status: str
    ts: float
    catastrophic_prob: float | None = None
    envelope_score: float | None = None
    source: str | None = None
    timestamp: str | None = None          # ISO form of ts (§28.6)
    reason: str | None = None             # why a FALLBACK_* was published
    config_hash: str | None = None        # the assessed config
    day_boost: float | None = None        # assessed at max_leverage = base × day_boost (§12)
    max_leverage: float | None = None

    @property
    def is_fallback(self) -> bool:
        """True for FALLBACK_NO_DATA / FALLBACK_ERROR (the status is ORANGE by rule, not by a model)."""
        return self.source in ("FALLBACK_NO_DATA", "FALLBACK_ERROR")

    def __post_init__(self) -> None:
        if self.status not in self.STATUSES:
            raise PayloadError(f"mc_forewarner.status {self.status!r} is not one of {self.STATUSES}")


@dataclass(frozen=True, kw_only=True)
class KillSwitchState(Payload):
    """``DOLPHIN_SAFETY[kill_switch]``: the trader's kill switch (engaged → cancel, flatten, halt entries)."""

    KIND: ClassVar[str] = "kill_switch"
    engaged: bool
    reason: str
    ts: float
    by: str = ""


__all__ = ["PayloadError", "Payload", "EigenScan", "AcbBoost", "AcbState", "Exf", "ObfUniverse", "ObFeatures", "ObMacro",
           "Safety", "Heartbeat", "MetaHealth", "Pnl", "FlowResult", "EngineState", "AccountPosition",
           "AccountState", "McForewarner",
           "KillSwitchState"]
