"""The single home of every map name, key format and typed topic on the DOLPHIN bus.

Values on the bus are UTF-8 JSON strings, one payload type per key (shared/ARCHITECTURE.md §4). A
:class:`Topic` binds a map (and a fixed key, or a key chosen per write) to its frozen payload type
(:mod:`prod.bus.payloads`), the one field that holds the writer's timestamp, and a schema version.
Writers publish through a topic (:meth:`Topic.encode`, or :class:`prod.runtime.Bus.publish`), readers
decode through it (:meth:`Topic.decode`), which validates every declared field and rejects a payload
of another major version with a :class:`PayloadError` naming the map, the key and the problem.
Nothing else in the project types a map name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generic, Mapping, TypeVar

from prod.bus import payloads as pl
from prod.bus.payloads import Payload, PayloadError

T = TypeVar("T", bound=Payload)

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
KEY_OB_MACRO = "ob_macro_latest"               # the §9.2 market-wide OB macro, one per bar
KEY_MC_FOREWARNER = "mc_forewarner_latest"
KEY_LATEST = "latest"
KEY_KILL_SWITCH = "kill_switch"                 # DOLPHIN_SAFETY: the trader kill switch

SCHEMA_VERSION = "5.0.0"


def shard_index(symbol: str) -> int:
    """Return the stable shard of ``symbol`` (bible §15.2: sum of ord, not ``hash()``)."""
    return sum(ord(c) for c in symbol) % SHARD_COUNT


def shard_map(symbol: str) -> str:
    """Return the name of the feature shard map that holds ``symbol``."""
    return SHARD_MAPS[shard_index(symbol)]


def state_key(strategy: str, date: str) -> str:
    return f"state_{strategy}_{date}"


# keys the Prefect flows write (never the live trader's keys: prod/flows/bus_io.py says why)
FLOW_NAMES = ("paper_flow", "backtest_flow")
KEY_STATE_BACKTEST_LATEST = "latest_backtest"


def flow_pnl_key(flow: str, date: str) -> str:
    """Return the PnL-map key of ``flow``'s result for ``date`` (``paper_flow_2026-01-01``)."""
    if flow not in FLOW_NAMES:
        raise ValueError(f"unknown flow {flow!r}")
    return f"{flow}_{date}"


def paper_flow_state_key(strategy: str, date_or_latest: str) -> str:
    """Return the STATE_BLUE key of the paper flow's snapshot (``paper_flow_blue_<date>`` or ``_latest``)."""
    return f"paper_flow_{strategy}_{date_or_latest}"


def _reject_nonfinite(token: str):
    raise ValueError(f"non-finite number {token}")


def _loads(raw: Any, source: str) -> Any:
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
        return json.loads(raw, parse_constant=_reject_nonfinite)
    except ValueError as exc:
        raise PayloadError(f"{source}: malformed JSON ({exc})") from exc
    except RecursionError:        # fuzzing: "[[[[..." leaked RecursionError
        raise PayloadError(f"{source}: JSON nested too deeply") from None


def dumps(obj: Any, source: str = "payload") -> str:
    """Serialise a JSON object for the bus (compact; NaN and infinity refused)."""
    try:
        return json.dumps(obj, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"{source}: cannot encode ({exc})") from exc


@dataclass(frozen=True)
class Topic(Generic[T]):
    """One kind of value on the bus: map, key (None = chosen per write), type, writer-timestamp field.

    ``version`` is the payload's schema version, written as ``_v``; a reader refuses a payload whose
    major version differs (an older payload without ``_v`` is read as this version).
    """

    map: str
    key: str | None
    type: type[T]
    ts_field: str
    version: str = "1.0"

    def source(self, key: str | None = None) -> str:
        return f"{self.map}[{(key if key is not None else self.key)!r}]"

    def key_for(self, key: str | None) -> str:
        k = self.key if key is None else key
        if k is None:
            raise ValueError(f"{self.map}: this topic needs a key per write")
        if self.key is not None and k != self.key:
            raise ValueError(f"{self.map}: topic key is {self.key!r}, not {k!r}")
        return k

    def build(self, key: str | None = None, **fields: Any) -> T:
        """Construct and validate a payload of this topic from keyword fields (extras kept)."""
        return self.coerce(fields, key)

    def coerce(self, payload: T | Mapping[str, Any], key: str | None = None) -> T:
        """Return ``payload`` as this topic's validated type (a dict is validated field by field)."""
        src = self.source(key)
        if isinstance(payload, self.type):
            payload.validate(src)
            return payload
        if isinstance(payload, Payload):
            raise PayloadError(f"{src}: expected {self.type.__name__}, got {type(payload).__name__}")
        return self.type.from_dict(dict(payload), src)

    def encode(self, payload: T | Mapping[str, Any], key: str | None = None) -> str:
        """Validate ``payload`` and serialise it with the topic's ``_v``."""
        obj = self.coerce(payload, key).to_dict()
        obj["_v"] = self.version
        return dumps(obj, self.source(key))

    def decode(self, raw: Any, key: str | None = None) -> T:
        """Parse and validate a raw map value; raise :class:`PayloadError` when it is bad."""
        src = self.source(key)
        obj = _loads(raw, src)
        if isinstance(obj, dict):
            v = obj.pop("_v", None)
            if v is not None and (not isinstance(v, str) or v.split(".")[0] != self.version.split(".")[0]):
                raise PayloadError(f"{src}: schema version {v!r} is not compatible with {self.version}")
        try:
            return self.type.from_dict(obj, src)
        except RecursionError:    # JSON just under json's own depth limit, checked recursively
            raise PayloadError(f"{src}: value nested too deeply") from None

    def written_at(self, payload: T) -> float | None:
        """Return the writer's timestamp of ``payload`` (epoch seconds), None when absent."""
        v = getattr(payload, self.ts_field, None)
        if v is None:
            v = payload.extra.get(self.ts_field)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# ── topics ───────────────────────────────────────────────────────────────────────────────────
EIGEN_SCAN = Topic(FEATURES, KEY_EIGEN_SCAN, pl.EigenScan, "bridge_ts", SCHEMA_VERSION)
ACB_BOOST = Topic(FEATURES, KEY_ACB_BOOST, pl.AcbBoost, "computed_at")
ACB_STATE = Topic(FEATURES, KEY_ACB_STATE, pl.AcbState, "computed_at")
EXF = Topic(FEATURES, KEY_EXF, pl.Exf, "_pushed_at")
OBF_UNIVERSE = Topic(FEATURES, KEY_OBF_UNIVERSE, pl.ObfUniverse, "_snapshot_utc")
OB_MACRO = Topic(FEATURES, KEY_OB_MACRO, pl.ObMacro, "ts")
MC_FOREWARNER = Topic(FEATURES, KEY_MC_FOREWARNER, pl.McForewarner, "ts")
SAFETY_LATEST = Topic(SAFETY, KEY_LATEST, pl.Safety, "ts")
KILL_SWITCH = Topic(SAFETY, KEY_KILL_SWITCH, pl.KillSwitchState, "ts")
META_HEALTH_LATEST = Topic(META_HEALTH, KEY_LATEST, pl.MetaHealth, "timestamp")
# 1.1: EngineState gains date/pnl/trades/drawdown, Pnl gains stale_state (§15.1); both have defaults, so
# a 1.0 value still decodes (same major) and a 1.0 reader keeps the new fields in ``extra``
STATE_LATEST = Topic(STATE_BLUE, KEY_LATEST, pl.EngineState, "updated_at", "1.1")
STATE_DAY = Topic(STATE_BLUE, None, pl.EngineState, "updated_at", "1.1")   # key: state_key(strategy, date)
PNL_BLUE_DAY = Topic(PNL_BLUE, None, pl.Pnl, "updated_at", "1.1")          # key: YYYY-MM-DD
PNL_GREEN_DAY = Topic(PNL_GREEN, None, pl.Pnl, "updated_at", "1.1")
HEARTBEATS = Topic(HEARTBEAT, None, pl.Heartbeat, "ts")                    # key: service name
FLOW_PNL_BLUE = Topic(PNL_BLUE, None, pl.FlowResult, "updated_at")         # key: flow_pnl_key(flow, date)
FLOW_PNL_GREEN = Topic(PNL_GREEN, None, pl.FlowResult, "updated_at")
OB_SHARDS = tuple(Topic(m, None, pl.ObFeatures, "ts") for m in SHARD_MAPS)  # key: symbol

_TOPIC_BY_KEY: dict[tuple[str, str], Topic] = {
    (t.map, t.key): t for t in (EIGEN_SCAN, ACB_BOOST, ACB_STATE, EXF, OBF_UNIVERSE, OB_MACRO, MC_FOREWARNER,
                                SAFETY_LATEST, META_HEALTH_LATEST, STATE_LATEST, KILL_SWITCH) if t.key is not None}
_TOPIC_BY_MAP: dict[str, Topic] = {STATE_BLUE: STATE_DAY, PNL_BLUE: PNL_BLUE_DAY, PNL_GREEN: PNL_GREEN_DAY,
                             HEARTBEAT: HEARTBEATS}
_TOPIC_BY_MAP.update({t.map: t for t in OB_SHARDS})


def ob_topic(symbol: str) -> Topic:
    """Return the feature-shard topic that holds ``symbol``."""
    return OB_SHARDS[shard_index(symbol)]


_FLOW_PNL = {PNL_BLUE: FLOW_PNL_BLUE, PNL_GREEN: FLOW_PNL_GREEN}


def topic_for(map_name: str, key: str) -> Topic | None:
    """Return the topic of ``map_name[key]``, or None when the key carries free-form JSON."""
    if map_name in _FLOW_PNL and isinstance(key, str) and key.startswith(tuple(f + "_" for f in FLOW_NAMES)):
        return _FLOW_PNL[map_name]
    return _TOPIC_BY_KEY.get((map_name, key)) or _TOPIC_BY_MAP.get(map_name)


def decode(map_name: str, key: str, raw: Any) -> Any:
    """Decode ``map_name[key]``: its topic's typed payload, or a plain dict for a free-form key.

    Raises :class:`PayloadError` naming the map and key when the value is malformed.
    """
    t = topic_for(map_name, key)
    if t is not None:
        return t.decode(raw, key)
    obj = _loads(raw, f"{map_name}[{key!r}]")
    if not isinstance(obj, dict):
        raise PayloadError(f"{map_name}[{key!r}]: expected a JSON object, got {type(obj).__name__}")
    return obj


def encode(map_name: str, key: str, payload: Any) -> str:
    """Encode ``payload`` for ``map_name[key]`` through its topic (a free-form key: plain JSON)."""
    t = topic_for(map_name, key)
    if t is not None:
        return t.encode(payload, key)
    if isinstance(payload, Payload):
        payload = payload.to_dict()
    return dumps(dict(payload), f"{map_name}[{key!r}]")


__all__ = ["Topic", "Payload", "PayloadError", "topic_for", "ob_topic", "decode", "encode", "dumps",
           "shard_index", "shard_map", "state_key"]
