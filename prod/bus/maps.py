"""The single home of every map name, key format and JSON payload schema on the DOLPHIN bus.

Values on the bus are UTF-8 JSON strings, one schema per key (shared/ARCHITECTURE.md §4). Writers
build payloads with :func:`encode`, readers decode with :func:`decode`, which rejects malformed
payloads with a :class:`PayloadError` naming the map, the key and the problem. Nothing else in the
project types a map name.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

# ── map names ────────────────────────────────────────────────────────────────────────────────
FEATURES = "DOLPHIN_FEATURES"
SAFETY = "DOLPHIN_SAFETY"
PNL_BLUE = "DOLPHIN_PNL_BLUE"
PNL_GREEN = "DOLPHIN_PNL_GREEN"
STATE_BLUE = "DOLPHIN_STATE_BLUE"
HEARTBEAT = "DOLPHIN_HEARTBEAT"
META_HEALTH = "DOLPHIN_META_HEALTH"
SHARD_COUNT = 10
SHARD_MAPS = tuple(f"DOLPHIN_FEATURES_SHARD_{i:02d}" for i in range(SHARD_COUNT))

# CP structures
SAFETY_ATOMIC_REF = "DOLPHIN_SAFETY"
ACB_LOCK = "DOLPHIN_ACB_LOCK"

# ── keys ─────────────────────────────────────────────────────────────────────────────────────
KEY_EIGEN_SCAN = "latest_eigen_scan"
KEY_ACB_BOOST = "acb_boost"
KEY_ACB_STATE = "acb_state_latest"
KEY_EXF = "exf_latest"
KEY_OBF_UNIVERSE = "obf_universe_latest"
KEY_MC_FOREWARNER = "mc_forewarner_latest"
KEY_LATEST = "latest"

SCHEMA_VERSION = "5.0.0"


def shard_index(symbol: str) -> int:
    """Return the stable shard of ``symbol`` (bible §15.2: sum of ord, not ``hash()``)."""
    return sum(ord(c) for c in symbol) % SHARD_COUNT


def shard_map(symbol: str) -> str:
    """Return the name of the feature shard map that holds ``symbol``."""
    return SHARD_MAPS[shard_index(symbol)]


def state_key(strategy: str, date: str) -> str:
    return f"state_{strategy}_{date}"


class PayloadError(ValueError):
    """A map value does not match its schema; the message names map, key and the problem."""


_NUM = (int, float)


@dataclass(frozen=True)
class Field:
    name: str
    types: tuple
    required: bool = True
    nullable: bool = False
    finite: bool = True


@dataclass(frozen=True)
class Schema:
    """Required and optional fields of one payload kind. Unknown extra fields are allowed."""

    name: str
    fields: tuple[Field, ...]

    def validate(self, obj: Any, source: str) -> dict:
        if not isinstance(obj, dict):
            raise PayloadError(f"{source}: expected a JSON object for {self.name}, got {type(obj).__name__}")
        for f in self.fields:
            if f.name not in obj:
                if f.required:
                    raise PayloadError(f"{source}: {self.name} is missing field {f.name!r}")
                continue
            v = obj[f.name]
            if v is None:
                if f.nullable or not f.required:
                    continue
                raise PayloadError(f"{source}: {self.name}.{f.name} is null")
            if isinstance(v, bool) and bool not in f.types:
                raise PayloadError(f"{source}: {self.name}.{f.name} must be {_tnames(f.types)}, got bool")
            if not isinstance(v, f.types):
                raise PayloadError(
                    f"{source}: {self.name}.{f.name} must be {_tnames(f.types)}, got {type(v).__name__}")
            if f.finite and isinstance(v, float) and not math.isfinite(v):
                raise PayloadError(f"{source}: {self.name}.{f.name} is not finite ({v})")
        return obj


def _tnames(types: tuple) -> str:
    return "/".join(t.__name__ for t in types)


def _f(name, *types, required=True, nullable=False):
    return Field(name, tuple(types), required, nullable)


EIGEN_SCAN = Schema("eigen_scan", (
    _f("scan_number", int), _f("timestamp_ns", int), _f("timestamp", str), _f("bridge_ts", *_NUM),
    _f("vel_div", *_NUM, nullable=True),
    _f("w50_velocity", *_NUM, nullable=True), _f("w150_velocity", *_NUM, nullable=True),
    _f("w300_velocity", *_NUM, nullable=True), _f("w750_velocity", *_NUM, nullable=True),
    _f("instability_50", *_NUM, nullable=True), _f("instability_150", *_NUM, nullable=True),
    _f("assets", list), _f("asset_prices", list),
    _f("warm_windows", list, required=False),
    _f("schema_version", str, required=False),
    _f("regime_signal", *_NUM, required=False, nullable=True),
    _f("instability_composite", *_NUM, required=False, nullable=True),
    _f("eigenvalue_gradients", dict, required=False), _f("multi_window_results", dict, required=False),
))
ACB_BOOST = Schema("acb_boost", (
    _f("boost", *_NUM), _f("beta", *_NUM), _f("computed_at", *_NUM, required=False),
    _f("signals", *_NUM, required=False), _f("inputs", dict, required=False),
))
ACB_STATE = Schema("acb_state", (_f("boost", *_NUM), _f("beta", *_NUM), _f("computed_at", *_NUM)))
EXF = Schema("exf_latest", (_f("_pushed_at", *_NUM), _f("indicators", dict, required=False)))
OBF_UNIVERSE = Schema("obf_universe", (_f("_snapshot_utc", *_NUM), _f("_n_assets", int), _f("assets", dict)))
OB_FEATURES = Schema("ob_features", (
    _f("symbol", str), _f("ts", *_NUM), _f("imbalance", *_NUM), _f("fill_probability", *_NUM),
    _f("depth_quality", *_NUM), _f("spread_bps", *_NUM), _f("best_bid", *_NUM), _f("best_ask", *_NUM),
))
SAFETY_STATE = Schema("safety", (_f("posture", str), _f("Rm", *_NUM), _f("ts", *_NUM, required=False),
                                 _f("sensors", dict, required=False)))
HEARTBEAT_SCHEMA = Schema("heartbeat", (_f("service", str), _f("ts", *_NUM), _f("pid", int, required=False)))
META_HEALTH_SCHEMA = Schema("meta_health", (_f("rm_meta", *_NUM), _f("status", str), _f("timestamp", *_NUM)))
PNL = Schema("pnl", (_f("capital", *_NUM), _f("pnl", *_NUM), _f("trades", int)))
ENGINE_STATE = Schema("engine_state", (_f("strategy", str), _f("capital", *_NUM), _f("updated_at", *_NUM)))
MC_FOREWARNER = Schema("mc_forewarner", (_f("status", str), _f("ts", *_NUM, required=False)))

_BY_KEY: dict[tuple[str, str], Schema] = {
    (FEATURES, KEY_EIGEN_SCAN): EIGEN_SCAN,
    (FEATURES, KEY_ACB_BOOST): ACB_BOOST,
    (FEATURES, KEY_ACB_STATE): ACB_STATE,
    (FEATURES, KEY_EXF): EXF,
    (FEATURES, KEY_OBF_UNIVERSE): OBF_UNIVERSE,
    (FEATURES, KEY_MC_FOREWARNER): MC_FOREWARNER,
    (SAFETY, KEY_LATEST): SAFETY_STATE,
    (META_HEALTH, KEY_LATEST): META_HEALTH_SCHEMA,
    (STATE_BLUE, KEY_LATEST): ENGINE_STATE,
}
_BY_MAP: dict[str, Schema] = {HEARTBEAT: HEARTBEAT_SCHEMA, PNL_BLUE: PNL, PNL_GREEN: PNL}
_BY_MAP.update({m: OB_FEATURES for m in SHARD_MAPS})


def schema_for(map_name: str, key: str) -> Schema | None:
    """Return the schema of ``map_name[key]``, or None when the key carries free-form JSON."""
    return _BY_KEY.get((map_name, key)) or _BY_MAP.get(map_name)


def _reject_nonfinite(token: str):
    raise ValueError(f"non-finite number {token}")


def decode(map_name: str, key: str, raw: Any) -> dict:
    """Parse and validate the JSON value of ``map_name[key]``; raise :class:`PayloadError` if bad."""
    source = f"{map_name}[{key!r}]"
    if raw is None:
        raise PayloadError(f"{source}: no value")
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError(f"{source}: value is not UTF-8 ({exc})") from exc
    if not isinstance(raw, str):
        raise PayloadError(f"{source}: expected a JSON string, got {type(raw).__name__}")
    try:
        obj = json.loads(raw, parse_constant=_reject_nonfinite)
    except ValueError as exc:
        raise PayloadError(f"{source}: malformed JSON ({exc})") from exc
    schema = schema_for(map_name, key)
    if schema is None:
        if not isinstance(obj, dict):
            raise PayloadError(f"{source}: expected a JSON object, got {type(obj).__name__}")
        return obj
    return schema.validate(obj, source)


def encode(map_name: str, key: str, payload: Mapping[str, Any]) -> str:
    """Validate ``payload`` against its schema and serialise it (NaN/inf are refused)."""
    obj = dict(payload)
    schema = schema_for(map_name, key)
    if schema is not None:
        schema.validate(obj, f"{map_name}[{key!r}]")
    try:
        return json.dumps(obj, allow_nan=False, separators=(",", ":"))
    except ValueError as exc:
        raise PayloadError(f"{map_name}[{key!r}]: cannot encode ({exc})") from exc
