"""Pure state model of the observability terminal: latest payload per panel, ages, colours, lines.

Nothing here touches Hazelcast, Textual or the wall clock: values arrive as
``(map_name, key, raw JSON)`` or already-decoded typed payloads (:mod:`prod.bus.payloads`, decoded
through the topics of :mod:`prod.bus.maps`), time arrives as ``now`` (Unix seconds),
and each panel renders to a list of :class:`Line` (text + a severity style). The Textual app
(:mod:`observability.tui`) only copies these lines into widgets, so every decision the operator
sees (what is stale, what is red, what was malformed) is unit-testable here.

Decisions (the bible §28 leaves them open):
- A payload's age is measured from its topic's writer timestamp (``Topic.ts_field``: the scan's
  ``bridge_ts``, as MHS reads it; ``computed_at``, ``_pushed_at``, ``_snapshot_utc``, ``ts``,
  ``timestamp``, ``updated_at``), falling back to the time it was received.
- Heartbeat colour: ``ok`` up to ``hb_warn_s`` (15 s), ``warn`` up to ``hb_stale_s`` (60 s), ``bad`` beyond.
  Every other panel turns ``warn`` when its payload is older than ``panel_stale_s`` (120 s).
- A malformed payload never replaces the last good one: the panel keeps showing the last good
  values under an error line that names the source (map and key) and the problem.
- ``DOLPHIN_PNL_BLUE`` shows today's UTC date key; before the first write of the day it says so and
  shows the most recent day it has.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from prod.bus import maps
from prod.bus.payloads import Payload

# ── panels ───────────────────────────────────────────────────────────────────────────────────
SCAN = "scan"
ACB = "acb"
EXF = "exf"
OBF = "obf"
SAFETY = "safety"
META = "meta"
HEARTBEAT = "heartbeat"
PNL = "pnl"
POSITION = "position"

PANELS: tuple[str, ...] = (SCAN, ACB, EXF, OBF, SAFETY, META, HEARTBEAT, PNL, POSITION)
TITLES: dict[str, str] = {
    SCAN: "Eigen scan", ACB: "ACB", EXF: "External factors", OBF: "OBF universe",
    SAFETY: "Safety (survival stack)", META: "Meta health (MHS)", HEARTBEAT: "Heartbeats",
    PNL: "PnL blue (today)", POSITION: "Trader state blue",
}

# (map, key) -> panel for single-key sources; whole-map sources below.
KEY_ROUTES: dict[tuple[str, str], str] = {
    (maps.FEATURES, maps.KEY_EIGEN_SCAN): SCAN,
    (maps.FEATURES, maps.KEY_ACB_BOOST): ACB,
    (maps.FEATURES, maps.KEY_EXF): EXF,
    (maps.FEATURES, maps.KEY_OBF_UNIVERSE): OBF,
    (maps.SAFETY, maps.KEY_LATEST): SAFETY,
    (maps.FEATURES, maps.KEY_MC_FOREWARNER): SAFETY,      # MC-Forewarner line under the posture (§28.6)
    (maps.META_HEALTH, maps.KEY_LATEST): META,
    (maps.STATE_BLUE, maps.KEY_LATEST): POSITION,
}
MAP_ROUTES: dict[str, str] = {maps.HEARTBEAT: HEARTBEAT, maps.PNL_BLUE: PNL}

# styles: the widget layer maps them to colours
OK, WARN, BAD, DIM, PLAIN = "ok", "warn", "bad", "dim", ""
WINDOWS = (50, 150, 300, 750)


@dataclass(frozen=True)
class Line:
    """One rendered line of a panel."""

    text: str
    style: str = PLAIN


@dataclass(frozen=True)
class TuiConfig:
    """Thresholds of the state model (seconds)."""

    hb_warn_s: float = 15.0
    hb_stale_s: float = 60.0
    panel_stale_s: float = 120.0
    obf_worst_n: int = 5

    def __post_init__(self) -> None:
        if not (0 < self.hb_warn_s <= self.hb_stale_s):
            raise ValueError(f"TuiConfig: need 0 < hb_warn_s <= hb_stale_s, got {self.hb_warn_s}, {self.hb_stale_s}")
        if self.panel_stale_s <= 0 or self.obf_worst_n < 1:
            raise ValueError("TuiConfig: panel_stale_s must be > 0 and obf_worst_n >= 1")


@dataclass(frozen=True)
class Decoded:
    """Result of decoding one map value: a payload, or the error naming the source (both None = removed)."""

    map_name: str
    key: str
    payload: Payload | None
    error: str | None


def route(map_name: str, key: str) -> str | None:
    """Return the panel fed by ``map_name[key]``, or None when the TUI does not show it."""
    return KEY_ROUTES.get((map_name, key)) or MAP_ROUTES.get(map_name)


def decode_value(map_name: str, key: str, raw: Any) -> Decoded:
    """Decode and validate ``raw`` through its topic (:func:`prod.bus.maps.decode`); never raises."""
    try:
        return Decoded(map_name, key, maps.decode(map_name, key, raw), None)
    except maps.PayloadError as exc:
        return Decoded(map_name, key, None, str(exc))
    except Exception as exc:  # noqa: BLE001 - a decoder bug must not crash the terminal
        return Decoded(map_name, key, None, f"{map_name}[{key!r}]: undecodable value ({exc!r})")


@dataclass
class _Entry:
    payload: Payload
    received: float
    written: float | None = None        # the topic's writer timestamp (Topic.written_at)


@dataclass
class _Panel:
    entries: dict[str, _Entry] = field(default_factory=dict)   # key -> last good payload
    errors: dict[str, tuple[str, float]] = field(default_factory=dict)  # key -> (message, when)


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _fmt(v: Any, spec: str = ".4f") -> str:
    x = _num(v)
    return "—" if x is None else format(x, spec)


def _age_text(age: float | None) -> str:
    if age is None:
        return "age ?"
    if age < 0:
        return "age 0s"
    if age < 120:
        return f"age {age:.0f}s"
    if age < 7200:
        return f"age {age / 60:.0f}m"
    return f"age {age / 3600:.1f}h"


class TuiState:
    """Latest payload per panel plus bus status; renders each panel to lines at a given ``now``."""

    def __init__(self, cfg: TuiConfig | None = None):
        self.cfg = cfg or TuiConfig()
        self.panels: dict[str, _Panel] = {p: _Panel() for p in PANELS}
        self.bus_connected = False
        self.bus_detail = "connecting"
        self.bus_since: float | None = None
        self.updates = 0
        self.errors = 0

    # ── input ────────────────────────────────────────────────────────────────────────────────
    def ingest(self, map_name: str, key: str, raw: Any, now: float) -> str | None:
        """Decode ``raw`` and apply it; return the panel touched (None if not shown)."""
        if route(map_name, key) is None:
            return None
        return self.apply(decode_value(map_name, key, raw), now)

    def apply(self, d: Decoded, now: float) -> str | None:
        """Apply a decoded value (payload or error); return the panel touched (None if not shown)."""
        panel = route(d.map_name, d.key)
        if panel is None:
            return None
        p = self.panels[panel]
        if d.payload is None and d.error is None:      # entry removed / evicted on the bus
            return self.remove(d.map_name, d.key)
        if d.payload is None:
            self.errors += 1
            p.errors[d.key] = (str(d.error), now)
        else:
            self.updates += 1
            topic = maps.topic_for(d.map_name, d.key)
            written = topic.written_at(d.payload) if topic is not None and isinstance(d.payload, Payload) else None
            p.entries[d.key] = _Entry(d.payload, now, written)
            p.errors.pop(d.key, None)
        return panel

    def remove(self, map_name: str, key: str) -> str | None:
        """Forget ``map_name[key]`` (entry removed or evicted on the bus)."""
        panel = route(map_name, key)
        if panel is not None:
            self.panels[panel].entries.pop(key, None)
            self.panels[panel].errors.pop(key, None)
        return panel

    def set_bus(self, connected: bool, detail: str, now: float) -> None:
        """Record the bus connection state shown in the header."""
        if connected != self.bus_connected or self.bus_since is None:
            self.bus_since = now
        self.bus_connected, self.bus_detail = connected, detail

    # ── queries ──────────────────────────────────────────────────────────────────────────────
    def payload(self, panel: str, key: str | None = None) -> Payload | None:
        """Return the last good payload of ``panel`` (for single-key panels ``key`` is optional)."""
        entries = self.panels[panel].entries
        if key is None:
            if len(entries) != 1:
                return None
            return next(iter(entries.values())).payload
        e = entries.get(key)
        return None if e is None else e.payload

    def age(self, panel: str, key: str, now: float) -> float | None:
        """Age in seconds of ``panel``'s ``key`` from its topic's writer timestamp (else receive time)."""
        e = self.panels[panel].entries.get(key)
        if e is None:
            return None
        ts = _num(e.written)
        if ts is not None:
            if ts > 1e14:      # nanoseconds / milliseconds written by mistake: normalise
                ts = ts / 1e9 if ts > 1e17 else ts / 1e3
            return now - ts
        return now - e.received

    def heartbeat_style(self, age: float | None) -> str:
        """Colour of a heartbeat of the given age: ok / warn / bad (unknown age is bad)."""
        if age is None:
            return BAD
        if age <= self.cfg.hb_warn_s:
            return OK
        if age <= self.cfg.hb_stale_s:
            return WARN
        return BAD

    def header(self, now: float) -> Line:
        """The bus status line."""
        if self.bus_connected:
            return Line(f"bus: connected ({self.bus_detail})  updates {self.updates}  bad payloads {self.errors}", OK)
        since = "" if self.bus_since is None else f" for {max(0.0, now - self.bus_since):.0f}s"
        return Line(f"bus: disconnected{since} ({self.bus_detail}) - reconnecting by itself", BAD)

    def lines(self, panel: str, now: float) -> list[Line]:
        """Render ``panel`` at ``now``: error lines first, then the last good values."""
        p = self.panels[panel]
        out = [Line(f"ERROR {msg}", BAD) for _, (msg, _) in sorted(p.errors.items())]
        try:
            out.extend(_RENDER[panel](self, now))
        except Exception as exc:  # noqa: BLE001 - an odd but schema-valid payload must not crash the UI
            out.append(Line(f"ERROR cannot render {panel}: {exc!r}", BAD))
        return out

    def text(self, panel: str, now: float) -> str:
        """Plain text of ``panel`` (what an operator reads; used by tests)."""
        return "\n".join(line.text for line in self.lines(panel, now))

    # ── renderers ────────────────────────────────────────────────────────────────────────────
    def _single(self, panel: str, key: str, now: float) -> tuple[Any, float | None, str]:
        payload = self.payload(panel, key)
        if payload is None:
            return None, None, DIM
        age = self.age(panel, key, now)
        style = OK if age is not None and age <= self.cfg.panel_stale_s else WARN
        return payload, age, style

    def _r_scan(self, now: float) -> list[Line]:
        s, age, st = self._single(SCAN, maps.KEY_EIGEN_SCAN, now)
        if s is None:
            return [Line("waiting for latest_eigen_scan", DIM)]
        nested = s.extra.get("result")                                      # NG7 nested / NG8 flat (§28.5)
        mwr = nested.get("multi_window_results") if isinstance(nested, dict) else s.multi_window_results
        mwr = mwr if isinstance(mwr, dict) else {}
        lams = []
        for w in WINDOWS:
            row = mwr.get(f"w{w}") or mwr.get(str(w)) or mwr.get(w) or {}
            lam = row.get("lambda_max") if isinstance(row, dict) else None
            lams.append(f"w{w} {_fmt(lam)}")
        warm = s.warm_windows
        warm_txt = ",".join(str(w) for w in warm) if isinstance(warm, list) else "?"
        vd = _num(s.vel_div)
        vel = "  ".join(f"w{w} {_fmt(getattr(s, f'w{w}_velocity', None), '+.5f')}" for w in WINDOWS)
        n_assets = s.n_assets if s.n_assets is not None else len(s.assets or [])
        return [
            Line(f"scan #{s.scan_number}  {_age_text(age)}  {s.timestamp}", st),
            Line(f"vel_div {_fmt(vd, '+.6f')}", BAD if vd is not None and vd <= -0.02 else PLAIN),
            Line("lambda " + "  ".join(lams)),
            Line("velocity " + vel),
            Line(f"warm windows {warm_txt} ({len(warm) if isinstance(warm, list) else '?'}/{len(WINDOWS)})"
                 f"  assets {n_assets}"
                 f"  regime {_fmt(s.regime_signal, '+.0f')}",
                 OK if isinstance(warm, list) and len(warm) == len(WINDOWS) else WARN),
        ]

    def _r_acb(self, now: float) -> list[Line]:
        a, age, st = self._single(ACB, maps.KEY_ACB_BOOST, now)
        if a is None:
            return [Line("waiting for acb_boost", DIM)]
        sig = _num(a.signals)
        return [
            Line(f"boost {_fmt(a.boost)}  beta {_fmt(a.beta)}  signals {_fmt(sig, '.2f')}",
                 WARN if sig is not None and sig >= 2 else PLAIN),
            Line(_age_text(age), st),
        ]

    def _r_exf(self, now: float) -> list[Line]:
        e, age, st = self._single(EXF, maps.KEY_EXF, now)
        if e is None:
            return [Line("waiting for exf_latest", DIM)]
        out = [Line(f"pushed {_age_text(age)}", st)]
        inds = e.indicators or {}
        if not isinstance(inds, dict) or not inds:
            out.append(Line("no indicators in payload", WARN))
            return out
        for name in sorted(inds):
            ind = inds[name]
            if not isinstance(ind, dict):
                out.append(Line(f"{name:<14} {ind!r}"))
                continue
            status = str(ind.get("status", "?"))
            style = OK if status == "OK" else (WARN if status in ("DEGRADED", "STALE") else BAD)
            ia = _num(ind.get("age_s"))
            out.append(Line(f"{name:<14} {_fmt(ind.get('value'), '.4f'):>12}  {status:<8}"
                            f" {'' if ia is None else _age_text(ia)}", style))
        return out

    def _r_obf(self, now: float) -> list[Line]:
        o, age, st = self._single(OBF, maps.KEY_OBF_UNIVERSE, now)
        if o is None:
            return [Line("waiting for obf_universe_latest", DIM)]
        assets = o.assets or {}
        spreads = []
        for sym, a in assets.items():
            sp = _num(a.get("spread_bps")) if isinstance(a, dict) else None
            if sp is not None:
                spreads.append((sp, sym))
        spreads.sort(reverse=True)
        out = [Line(f"assets {o.n_assets}  snapshot {_age_text(age)}", st)]
        if not spreads:
            out.append(Line("no spreads yet", DIM))
        for sp, sym in spreads[: self.cfg.obf_worst_n]:
            out.append(Line(f"{sym:<14} spread {sp:8.2f} bps", WARN if sp > 10 else PLAIN))
        return out

    def _r_safety(self, now: float) -> list[Line]:
        out = self._r_mc(now)
        s, age, st = self._single(SAFETY, maps.KEY_LATEST, now)
        if s is None:
            return [Line("waiting for DOLPHIN_SAFETY latest", DIM), *out]
        posture = s.posture
        pstyle = {"APEX": OK, "STALKER": WARN, "TURTLE": WARN, "HIBERNATE": BAD}.get(posture, WARN)
        out = [Line(f"posture {posture}  Rm {_fmt(s.Rm, '.3f')}", pstyle), Line(_age_text(age), st), *out]
        sensors = s.sensors or {}
        for k in sorted(sensors):
            v = sensors[k]
            out.append(Line(f"  {k:<22} {_fmt(v, '.4g') if _num(v) is not None else v}"))
        return out

    def _r_mc(self, now: float) -> list[Line]:
        mc = self.payload(SAFETY, maps.KEY_MC_FOREWARNER)
        if mc is None:
            return [Line("MC-Forewarner: awaiting HZ data (runs every 4h via Prefect)", WARN)]
        status = mc.status
        return [Line(f"MC-Forewarner: {status}  prob {_fmt(mc.catastrophic_prob, '.2f')}"
                     f"  envelope {_fmt(mc.envelope_score, '.2f')}  {mc.source or ''}",
                     {"GREEN": OK, "OK": OK, "ORANGE": WARN}.get(status, BAD))]

    def _r_meta(self, now: float) -> list[Line]:
        m, age, st = self._single(META, maps.KEY_LATEST, now)
        if m is None:
            return [Line("waiting for DOLPHIN_META_HEALTH latest", DIM)]
        status = m.status
        sstyle = {"GREEN": OK, "YELLOW": WARN, "ORANGE": WARN}.get(status, BAD)
        out = [Line(f"rm_meta {_fmt(m.rm_meta, '.3f')}  [{status}]  {_age_text(age)}", sstyle)]
        sensors = m.sensors if isinstance(m.sensors, dict) else {}
        for k in sorted(sensors):
            v = _num(sensors[k])
            style = PLAIN if v is None else (OK if v >= 0.9 else WARN if v >= 0.5 else BAD)
            out.append(Line(f"  {k.upper().replace('_', ' ', 1):<24} {_fmt(v, '.3f')}", style))
        services = m.services if isinstance(m.services, dict) else {}
        if services:
            out.append(Line("services:", DIM))
        for name in sorted(services):
            state = services[name]
            out.append(Line(f"  {name:<22} {state}", OK if state == "RUNNING" else BAD))
        for name, hold in sorted(self.meta_holds().items()):
            reason = hold.get("reason") if isinstance(hold, dict) else None
            out.append(Line(f"  HELD {name.split(':')[-1]}: {reason or 'maintenance'} (MHS leaves it stopped)", WARN))
        if st == WARN:
            out.append(Line("meta health report is stale", WARN))
        return out

    def meta_holds(self) -> dict[str, dict]:
        """Return the maintenance holds of the latest MHS report (``program -> {since, until, reason, by}``)."""
        m = self.payload(META, maps.KEY_LATEST)
        holds = getattr(m, "holds", None) if m is not None else None
        return {k: v for k, v in holds.items() if isinstance(v, dict)} if isinstance(holds, dict) else {}

    def _r_heartbeat(self, now: float) -> list[Line]:
        entries = self.panels[HEARTBEAT].entries
        if not entries:
            return [Line("no heartbeats yet", DIM)]
        out = []
        for name in sorted(entries):
            age = self.age(HEARTBEAT, name, now)
            out.append(Line(f"{name:<20} {_age_text(age)}", self.heartbeat_style(age)))
        return out

    def _r_pnl(self, now: float) -> list[Line]:
        entries = self.panels[PNL].entries
        today = time.strftime("%Y-%m-%d", time.gmtime(now))
        if today in entries:
            day, note = today, ""
        elif entries:
            day, note = max(entries), f"  (no entry for {today} yet)"
        else:
            return [Line(f"no PnL for {today} yet", DIM)]
        p = entries[day].payload
        pnl = _num(p.pnl)
        return [
            Line(f"{day}{note}", PLAIN if not note else WARN),
            Line(f"capital {_fmt(p.capital, ',.2f')}  pnl {_fmt(pnl, '+,.2f')}  trades {p.trades}",
                 PLAIN if pnl is None else (OK if pnl >= 0 else BAD)),
        ]

    def _r_position(self, now: float) -> list[Line]:
        s, age, st = self._single(POSITION, maps.KEY_LATEST, now)
        if s is None:
            return [Line("waiting for DOLPHIN_STATE_BLUE latest", DIM)]
        out = [Line(f"{s.strategy}  capital {_fmt(s.capital, ',.2f')}  posture {s.posture or '?'}"
                    f"  {_age_text(age)}", st)]
        paper = s.paper if isinstance(s.paper, dict) else {}
        pos = paper.get("position", s.extra.get("open_position"))
        if not isinstance(pos, dict):
            out.append(Line("position: flat", DIM))
            return out
        d = pos.get("direction")
        side = "SHORT" if d == -1 else "LONG" if d == 1 else str(d)
        held = _num(pos.get("entry_ts"))
        out.append(Line(f"position: {side} {pos.get('symbol')} @ {_fmt(pos.get('entry_price'), '.6g')}"
                        f"  notional {_fmt(pos.get('notional'), ',.2f')}"
                        + ("" if held is None else f"  held {_age_text(now - held)[4:]}"), WARN))
        return out


_RENDER: dict[str, Callable[[TuiState, float], list[Line]]] = {
    SCAN: TuiState._r_scan, ACB: TuiState._r_acb, EXF: TuiState._r_exf, OBF: TuiState._r_obf,
    SAFETY: TuiState._r_safety, META: TuiState._r_meta, HEARTBEAT: TuiState._r_heartbeat,
    PNL: TuiState._r_pnl, POSITION: TuiState._r_position,
}


# ── test-results footer (bible §28.4) ────────────────────────────────────────────────────────
def _iso_ts(text: Any) -> float | None:
    from datetime import datetime, timezone
    if not isinstance(text, str):
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def results_footer(doc: dict | None, error: str | None, now: float) -> Line:
    """One footer line for the last test run: red on any FAIL or an unreadable file, green when all passed."""
    if error is not None:
        return Line(f"tests: {error}", BAD)
    if doc is None:
        return Line("tests: no results yet (make test writes run_logs/test_results_latest.json)", DIM)
    parts, failed, passed_any = [], False, False
    for name, cat in doc.items():
        if name.startswith("_") or not isinstance(cat, dict):
            continue
        status = cat.get("status")
        if status == "N/A":
            parts.append(f"{name} N/A")
            continue
        failed |= status == "FAIL"
        passed_any |= status == "PASS"
        skipped = cat.get("skipped")
        parts.append(f"{name} {cat.get('passed')}/{cat.get('total')} {status}"
                     + (f" ({skipped} skipped)" if isinstance(skipped, int) and skipped else ""))
    ts = _iso_ts(doc.get("_run_at"))
    when = f"{doc.get('_run_at')} ({_age_text(None if ts is None else now - ts)[4:]} ago)"
    style = BAD if failed else (OK if passed_any else WARN)
    return Line(f"tests {when}: " + (" · ".join(parts) if parts else "no categories"), style)
