"""Views of bus values that both front-ends show (web console, terminal): services, posture warm-up, values.

Design notes: ``docs/design/observability.md``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping


# ── services ─────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class ServiceRow:
    """One service: its supervisord program and state, its heartbeat's writer time, its MHS hold."""

    name: str
    program: str | None          # ``group:name`` as MHS reports it, None when MHS does not watch it
    supervisor: str | None       # supervisord state (RUNNING, STOPPED, FATAL, ...), None when not reported
    heartbeat_ts: float | None   # writer timestamp of DOLPHIN_HEARTBEAT[name], None when there is none
    hold: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "program": self.program, "supervisor": self.supervisor,
                "heartbeat_ts": self.heartbeat_ts, "hold": None if self.hold is None else dict(self.hold)}


def service_name(program: str) -> str:
    """Return the service name of a supervisord program (``dolphin_data:scanner`` → ``scanner``)."""
    return str(program).rsplit(":", 1)[-1]


def join_services(services: Mapping[str, Any] | None, heartbeats: Mapping[str, float | None] | None,
                  holds: Mapping[str, Any] | None = None) -> list[ServiceRow]:
    """Join supervisor states (``{group:name: state}``), heartbeats (``{name: ts}``) and holds into rows.

    Returns one row per service, sorted by name.
    """
    services = services if isinstance(services, Mapping) else {}
    heartbeats = heartbeats if isinstance(heartbeats, Mapping) else {}
    holds = holds if isinstance(holds, Mapping) else {}
    short: dict[str, list[str]] = {}
    for prog in services:
        short.setdefault(service_name(prog), []).append(str(prog))
    rows: dict[str, dict[str, Any]] = {}
    for name, progs in short.items():
        for prog in progs:
            key = name if len(progs) == 1 else prog
            rows[key] = {"program": prog, "supervisor": str(services[prog])}
    for hb_name, ts in heartbeats.items():
        key = str(hb_name)
        if key not in rows and len(short.get(service_name(key), ())) == 1:
            key = service_name(key)
        rows.setdefault(key, {"program": None, "supervisor": None})["heartbeat_ts"] = _finite(ts)
    for prog, hold in holds.items():
        key = service_name(prog) if len(short.get(service_name(prog), ())) <= 1 else str(prog)
        row = rows.setdefault(key, {"program": str(prog), "supervisor": None})
        row["hold"] = hold if isinstance(hold, Mapping) else {"reason": readable(hold)}
    return [ServiceRow(name, r.get("program"), r.get("supervisor"), r.get("heartbeat_ts"), r.get("hold"))
            for name, r in sorted(rows.items())]


# ── posture warm-up ──────────────────────────────────────────────────────────────────────────
# (what is awaited, the safety sensors it feeds, "no first reading yet" test on the sensors dict)
_AWAITED: tuple[tuple[str, tuple[str, ...], Any], ...] = (
    ("Hazelcast members (Cat1)", ("hz_nodes",), lambda s: not _pos(s.get("hz_nodes"))),
    ("heartbeats of the other services (Cat1)", ("heartbeat_age_s", "n_heartbeats"),
     lambda s: not _pos(s.get("n_heartbeats")) and _finite(s.get("heartbeat_age_s")) is None),
    ("MC-Forewarner (Cat2)", ("staleness_hours", "mc_status", "mc_source", "mc_reported"),
     lambda s: s.get("mc_source") == "FALLBACK_NO_DATA"),
    ("order books, obf_universe_latest (Cat3)", ("ob_stale", "depth_quality", "fill_prob", "obf_present"),
     lambda s: s.get("obf_present") is False),
    ("DVOL, exf_latest (Cat4)", ("dvol_btc", "minutes_since_dvol_spike"), lambda s: s.get("dvol_btc", 0) is None),
)


@dataclass(frozen=True)
class PostureView:
    """What the posture panel says: warming up or not, what is awaited, and per sensor key its label."""

    warming_up: bool
    awaiting: tuple[str, ...]              # labels of the sources with no first reading yet
    pending: Mapping[str, str]             # sensor key -> label of the source it waits for

    def to_dict(self) -> dict[str, Any]:
        return {"warming_up": self.warming_up, "awaiting": list(self.awaiting), "pending": dict(self.pending)}


def posture_view(safety: Mapping[str, Any] | None) -> PostureView | None:
    """Read a ``DOLPHIN_SAFETY[latest]`` payload dict: is it a warm-up placeholder, what has no reading yet."""
    if not isinstance(safety, Mapping):
        return None
    sensors = safety.get("sensors") if isinstance(safety.get("sensors"), Mapping) else {}
    awaiting, pending = [], {}
    if sensors:
        for label, keys, missing in _AWAITED:
            if missing(sensors):
                awaiting.append(label)
                pending.update({k: label for k in keys if k in sensors})
    return PostureView(bool(safety.get("warming_up")), tuple(awaiting), pending)


# ── values ───────────────────────────────────────────────────────────────────────────────────
def readable(v: Any, digits: int = 4) -> str:
    """Write any JSON value for a person: numbers to ``digits`` significant digits, nested as ``key value``."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return format(v, f".{digits}g") if math.isfinite(v) else "—"
    if isinstance(v, Mapping):
        return ", ".join(f"{k} {_nested(x, digits)}" for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))) \
            or "none"
    if isinstance(v, (list, tuple)):
        return ", ".join(_nested(x, digits) for x in v) or "none"
    return str(v)


def _nested(v: Any, digits: int) -> str:
    text = readable(v, digits)
    return f"({text})" if isinstance(v, (Mapping, list, tuple)) and v else text


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _pos(v: Any) -> bool:
    x = _finite(v)
    return x is not None and x > 0
