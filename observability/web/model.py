"""The web console's model of the bus: maps, keys, latest values, trader views; no I/O, time passed in.

Design notes: ``docs/design/observability.md``.
"""
from __future__ import annotations

import json
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from observability.views import join_services, posture_view
from prod.bus import maps
from prod.bus.payloads import AccountState

VALUE_MAPS: tuple[str, ...] = (maps.FEATURES, maps.SAFETY, maps.PNL_BLUE, maps.PNL_GREEN, maps.STATE_BLUE,
                               maps.HEARTBEAT, maps.META_HEALTH)
KEY_ONLY_MAPS: tuple[str, ...] = maps.SHARD_MAPS
KNOWN_MAPS: tuple[str, ...] = VALUE_MAPS + KEY_ONLY_MAPS
PUSH_LIMIT = 32_000
EQUITY_POINTS = 2000
MAX_KEYS_LISTED = 5000


@dataclass
class Entry:
    """The latest value of one key: raw text, decoded payload or the decode error."""

    raw: str
    payload: dict | None
    error: str | None
    received: float


def _raw_text(raw: Any) -> str:
    if isinstance(raw, (bytes, bytearray)):
        return raw.decode("utf-8", errors="replace")
    return raw if isinstance(raw, str) else repr(raw)


def decode_entry(map_name: str, key: str, raw: Any, now: float) -> Entry:
    """Validate ``raw`` with the bus schemas; never raises (a bad value becomes an error entry)."""
    try:
        payload = maps.decode(map_name, key, raw)
        if isinstance(payload, maps.Payload):
            payload = payload.to_dict()      # the console shows (and diffs) plain JSON objects
        return Entry(_raw_text(raw), payload, None, now)
    except maps.PayloadError as exc:
        return Entry(_raw_text(raw), None, str(exc), now)
    except Exception as exc:  # noqa: BLE001 - a decoder bug must not stop the console
        return Entry(_raw_text(raw), None, f"{map_name}[{key!r}]: undecodable value ({exc!r})", now)


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def utc_day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


class ConsoleModel:
    """Everything the page shows, kept current by :meth:`apply`."""

    def __init__(self) -> None:
        self.keys: dict[str, set[str]] = {m: set() for m in KNOWN_MAPS}
        self.values: dict[str, dict[str, Entry]] = {m: {} for m in VALUE_MAPS}
        self.live_capital: deque[tuple[float, float]] = deque(maxlen=EQUITY_POINTS)
        self.bus = {"connected": False, "detail": "connecting", "since": None}
        self.meta_file: dict | None = None     # run_logs/meta_health.json when the map has none
        self.updates = 0
        self.bad = 0

    # ── input ────────────────────────────────────────────────────────────────────────────────
    def ensure_map(self, map_name: str, with_values: bool) -> None:
        """Start tracking ``map_name`` (maps discovered on the cluster at connect)."""
        self.keys.setdefault(map_name, set())
        if with_values:
            self.values.setdefault(map_name, {})

    def apply(self, map_name: str, key: str | None, raw: Any, removed: bool, now: float) -> dict | None:
        """Apply one change and return its message for the page (None when nothing visible changed).

        ``key`` None with ``removed`` means the whole map was cleared.
        """
        if map_name not in self.keys:
            self.ensure_map(map_name, with_values=True)
        ks = self.keys[map_name]
        vals = self.values.get(map_name)
        if key is None:
            if not removed:
                return None
            ks.clear()
            if vals is not None:
                vals.clear()
            return {"map": map_name, "cleared": True}
        key = str(key)
        if removed:
            ks.discard(key)
            if vals is not None:
                vals.pop(key, None)
            return {"map": map_name, "key": key, "removed": True}
        ks.add(key)
        if vals is None:         # key-only map: size changed, no value
            return {"map": map_name, "key": key}
        entry = decode_entry(map_name, key, raw, now)
        vals[key] = entry
        self.updates += 1
        if entry.error is not None:
            self.bad += 1
        else:
            self._note_capital(map_name, key, entry.payload)
        return self.entry_message(map_name, key, entry)

    def _note_capital(self, map_name: str, key: str, p: dict | None) -> None:
        if p is None:
            return
        if (map_name == maps.STATE_BLUE and key == maps.KEY_LATEST) or map_name == maps.PNL_BLUE:
            cap = _num(p.get("capital"))
            ts = _num(p.get("updated_at"))
            if cap is not None and ts is not None:
                if not self.live_capital or ts >= self.live_capital[-1][0]:
                    self.live_capital.append((ts, cap))

    def set_bus(self, connected: bool, detail: str, now: float) -> dict:
        """Record the connection state; return its message."""
        if connected != self.bus["connected"] or self.bus["since"] is None:
            self.bus["since"] = now
        self.bus.update(connected=connected, detail=detail)
        return dict(self.bus)

    # ── queries ──────────────────────────────────────────────────────────────────────────────
    def sizes(self) -> dict[str, int]:
        return {m: len(k) for m, k in sorted(self.keys.items())}

    def entry(self, map_name: str, key: str) -> Entry | None:
        return self.values.get(map_name, {}).get(key)

    def payload(self, map_name: str, key: str) -> dict | None:
        e = self.entry(map_name, key)
        return None if e is None else e.payload

    def entry_message(self, map_name: str, key: str, e: Entry) -> dict:
        big = len(e.raw) > PUSH_LIMIT
        return {"map": map_name, "key": key, "value": None if big else e.payload,
                "raw": None if big or e.payload is not None else e.raw[:2000], "error": e.error, "big": big,
                "received": e.received}

    def meta_health(self) -> tuple[dict | None, str]:
        """The latest MHS report and where it came from (map, file, none)."""
        p = self.payload(maps.META_HEALTH, maps.KEY_LATEST)
        if p is not None:
            return p, "map"
        if self.meta_file is not None:
            return self.meta_file, "file"
        return None, "none"

    def trader(self, now: float) -> dict:
        """Position, today's trades and the equity curve of the blue trader."""
        state = self.payload(maps.STATE_BLUE, maps.KEY_LATEST) or {}
        acct, err = AccountState.read(state, f"{maps.STATE_BLUE}[{maps.KEY_LATEST}]")
        closes = [t for t in acct.closed_trades if _num(t.get("ts")) is not None]
        today = utc_day(now)
        trades_today = [t for t in closes if utc_day(float(t["ts"])) == today][::-1]
        points = {(float(t["ts"]), float(c)) for t in closes if (c := _num(t.get("capital_after"))) is not None}
        points.update(self.live_capital)
        equity = sorted(points)[-EQUITY_POINTS:]
        pnl_today = self.payload(maps.PNL_BLUE, today)
        return {"state": state or None, "position": acct.position, "account_error": err, "trades_today": trades_today,
                "equity": equity, "pnl_today": pnl_today, "today": today}

    def services(self) -> list[dict]:
        """One row per service: MHS's supervisor state (``group:name``) joined to its heartbeat and hold."""
        meta, _ = self.meta_health()
        meta = meta or {}
        hbs = {k: (p.get("ts") if isinstance(p, dict) else None) for k, p in self.heartbeats().items()}
        return [r.to_dict() for r in join_services(_programs(meta), hbs, meta.get("holds"))]

    def posture(self) -> dict | None:
        """The latest safety payload read for the page: warming up or not, and which sensors await a reading."""
        view = posture_view(self.payload(maps.SAFETY, maps.KEY_LATEST))
        return None if view is None else view.to_dict()

    def heartbeats(self) -> dict[str, dict]:
        return {k: e.payload for k, e in sorted(self.values.get(maps.HEARTBEAT, {}).items())
                if e.payload is not None}

    def snapshot(self, now: float) -> dict:
        """The first message a page gets: everything it shows."""
        meta, meta_src = self.meta_health()
        return {"t": "snapshot", "now": now, "bus": dict(self.bus), "sizes": self.sizes(),
                "safety": self.payload(maps.SAFETY, maps.KEY_LATEST), "meta": meta, "meta_source": meta_src,
                "posture": self.posture(), "services": self.services(), "trader": self.trader(now),
                "counts": {"updates": self.updates, "bad": self.bad}}

    def key_list(self, map_name: str) -> list[str]:
        return sorted(self.keys.get(map_name, ()))[:MAX_KEYS_LISTED]


def pretty(value: Any) -> str:
    """Format a decoded payload (or raw text that is JSON) as indented JSON."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _programs(meta: dict) -> dict:
    """Supervisor states of every program MHS saw (``programs``), the scored ``services`` winning on overlap."""
    progs = meta.get("programs")
    out = dict(progs) if isinstance(progs, dict) else {}
    services = meta.get("services")
    out.update(services if isinstance(services, dict) else {})
    return out
