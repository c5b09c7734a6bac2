"""Pure state model of the observability terminal: latest payload per panel, ages, colours, lines.

Design notes: ``docs/design/observability.md``.
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from observability.views import posture_view, readable
from prod.bus import maps
from prod.bus.payloads import AccountState, Payload

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
STATE_SRC = f"{maps.STATE_BLUE}[{maps.KEY_LATEST}]"   # where the account state is read from

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
REPLAY_BACK_NS = 300e9      # a scan this much older than the last plotted one restarts the sparkline


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
    spark_n: int = 120          # scans kept for the vel_div sparkline (10 min at 5 s)
    trades_n: int = 20          # closed trades in the trades table (as many as fit are drawn)

    def __post_init__(self) -> None:
        if not (0 < self.hb_warn_s <= self.hb_stale_s):
            raise ValueError(f"TuiConfig: need 0 < hb_warn_s <= hb_stale_s, got {self.hb_warn_s}, {self.hb_stale_s}")
        if self.panel_stale_s <= 0 or self.obf_worst_n < 1:
            raise ValueError("TuiConfig: panel_stale_s must be > 0 and obf_worst_n >= 1")
        if self.spark_n < 2 or self.trades_n < 1:
            raise ValueError(f"TuiConfig: need spark_n >= 2 and trades_n >= 1, got {self.spark_n}, {self.trades_n}")


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
        self.vel_divs: deque[float] = deque(maxlen=self.cfg.spark_n)
        self._spark_ts: float | None = None

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
            if panel == SCAN:
                self._record_scan(d.payload)
        return panel

    def _record_scan(self, scan: Any) -> None:
        ts, vd = _num(getattr(scan, "timestamp_ns", None)), _num(getattr(scan, "vel_div", None))
        if vd is None or ts is None:
            return
        if self._spark_ts is not None and ts <= self._spark_ts:
            if self._spark_ts - ts < REPLAY_BACK_NS:
                return                  # a late or repeated delivery (initial read, refresh) of a plotted scan
            self.vel_divs.clear()       # the writer's clock went far back (a replay): start over
        self._spark_ts = ts
        self.vel_divs.append(vd)

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

    # ── overview (80×24) ─────────────────────────────────────────────────────────────────────
    def last_price(self, symbol: Any) -> float | None:
        """Return ``symbol``'s price in the latest scan (None when the scan or the symbol is missing)."""
        s = self.payload(SCAN, maps.KEY_EIGEN_SCAN)
        if s is None or not isinstance(symbol, str):
            return None
        try:
            i = list(s.assets).index(symbol)
        except ValueError:
            return None
        p = _num(s.asset_prices[i]) if i < len(s.asset_prices) else None
        return p if p is not None and p > 0 else None

    def open_position(self) -> dict | None:
        """Return the trader's open position (``STATE_BLUE.account.position``), None when flat or unknown."""
        s = self.payload(POSITION, maps.KEY_LATEST)
        if s is None:
            return None
        acct, _err = AccountState.read(s, STATE_SRC)
        pos = acct.position if "position" in s.account else s.extra.get("open_position")
        return pos if isinstance(pos, dict) else None

    def unrealised(self, pos: dict | None = None) -> tuple[float | None, float | None]:
        """Return (last price, unrealised PnL before fees) of the open position; Nones when unknown."""
        pos = self.open_position() if pos is None else pos
        if pos is None:
            return None, None
        last = self.last_price(pos.get("symbol"))
        d, entry, notional = _num(pos.get("direction")), _num(pos.get("entry_price")), _num(pos.get("notional"))
        if last is None or d is None or entry is None or notional is None or entry <= 0:
            return last, None
        return last, d * (last - entry) / entry * notional

    def trade_rows(self, n: int | None = None) -> list[tuple[str, str, str, str, str, str, str]]:
        """Return the last ``n`` closed trades, newest first: (time UTC, asset, side, entry, exit, pnl, reason)."""
        try:
            return self._trade_rows(self.cfg.trades_n if n is None else n)
        except Exception as exc:  # noqa: BLE001 - an odd but schema-valid payload must not crash the UI
            return [("ERROR", "", "", "", "", "", f"{exc!r}"[:40])]

    def _trade_rows(self, n: int) -> list[tuple[str, str, str, str, str, str, str]]:
        s = self.payload(POSITION, maps.KEY_LATEST)
        hist: Any = AccountState.read(s, STATE_SRC)[0].history if s is not None else None
        if not isinstance(hist, list) or not hist:
            pnl = self._today_pnl()
            hist = pnl.last_trades if pnl is not None else []
        rows = []
        for rec in reversed(hist):
            if len(rows) >= n:
                break
            if not isinstance(rec, dict):
                continue
            ts, entry, exit_, net = (_num(rec.get(k)) for k in ("ts", "entry_price", "price", "net"))
            sym, close_side = rec.get("symbol"), rec.get("side")
            if ts is None or entry is None or exit_ is None or not isinstance(sym, str):
                continue
            side = {"BUY": "SHORT", "SELL": "LONG"}.get(str(close_side), str(close_side))
            rows.append((time.strftime("%m-%d %H:%M", time.gmtime(ts)), sym[:12], side, f"{entry:.6g}",
                         f"{exit_:.6g}", _fmt(net, "+,.2f"), str(rec.get("reason", "?"))[:10]))
        return rows

    def _today_pnl(self) -> Any:
        entries = self.panels[PNL].entries
        return entries[max(entries)].payload if entries else None

    def holds(self) -> dict[str, dict]:
        """Return MHS maintenance holds ``{program: {reason, since, until}}`` (empty when none or absent)."""
        m = self.payload(META, maps.KEY_LATEST)
        if m is None:
            return {}
        h = getattr(m, "holds", None)
        if h is None:
            h = m.extra.get("holds")
        return {str(k): (v if isinstance(v, dict) else {"reason": str(v)}) for k, v in h.items()} \
            if isinstance(h, dict) else {}

    def hold_lines(self, now: float) -> list[Line]:
        """One line per MHS hold (nothing when there is none)."""
        out = []
        for prog, h in sorted(self.holds().items()):
            since, until = _num(h.get("since")), _num(h.get("until"))
            when = "" if since is None else f" {_age_text(now - since)[4:]}"
            end = "" if until is None else f", {max(0.0, until - now):.0f}s left"
            out.append(Line(f"HOLD {prog}: {h.get('reason') or '?'}{when}{end}", WARN))
        return out

    def overview(self, now: float) -> list[list[Line]]:
        """The compact status rows (each a list of styled segments, every row under 80 columns)."""
        try:
            return self._overview(now)
        except Exception as exc:  # noqa: BLE001 - an odd but schema-valid payload must not crash the UI
            return [[Line(f"ERROR cannot render the overview: {exc!r}", BAD)]]

    def _overview(self, now: float) -> list[list[Line]]:
        s, _, sst = self._single(SAFETY, maps.KEY_LATEST, now)
        if s is None:
            posture = Line("posture ?", DIM)
        elif s.warming_up:       # the watchdog's placeholder (HIBERNATE, Rm 0) is not a computed posture
            posture = Line("warming up", WARN)
        else:
            pst = {"APEX": OK, "STALKER": WARN, "TURTLE": WARN, "HIBERNATE": BAD}.get(s.posture, WARN)
            posture = Line(f"{s.posture} Rm {_fmt(s.Rm, '.3f')}", pst if sst == OK else WARN)
        m, _, mst = self._single(META, maps.KEY_LATEST, now)
        mhs = Line("MHS ?", DIM) if m is None else Line(
            f"MHS {m.status} {_fmt(m.rm_meta, '.3f')}",
            ({"GREEN": OK, "YELLOW": WARN, "ORANGE": WARN}.get(m.status, BAD)) if mst == OK else WARN)
        sc, sage, scst = self._single(SCAN, maps.KEY_EIGEN_SCAN, now)
        scan = Line("scan ?", DIM) if sc is None else Line(f"scan #{sc.scan_number} {_age_text(sage)}",
                                                           OK if sage is not None and sage <= 30 else WARN)
        rows = [[posture, mhs, scan]]
        st = self.payload(POSITION, maps.KEY_LATEST)
        pnl = self._today_pnl()
        money = [Line("capital ?", DIM) if st is None else Line(f"capital {_fmt(st.capital, ',.2f')}")]
        if pnl is not None:
            dp = _num(pnl.pnl)
            money.append(Line(f"day {_fmt(dp, '+,.2f')} ({pnl.trades} trades)",
                              PLAIN if dp is None else OK if dp >= 0 else BAD))
        rows.append(money)
        pos = self.open_position()
        if pos is None:
            rows.append([Line("position flat" if st is not None else "position ?", DIM)])
        else:
            d = pos.get("direction")
            side = "SHORT" if d == -1 else "LONG" if d == 1 else str(d)
            last, upnl = self.unrealised(pos)
            notional = _num(pos.get("notional"))
            pct = None if upnl is None or not notional else upnl / notional * 100
            rows.append([Line(f"{side} {pos.get('symbol')} @ {_fmt(pos.get('entry_price'), '.6g')}", WARN),
                         Line(f"last {_fmt(last, '.6g')}"),
                         Line("uPnL ?" if upnl is None else f"uPnL {upnl:+,.2f} ({pct:+.2f}%)",
                              DIM if upnl is None else OK if upnl >= 0 else BAD)])
        holds = self.hold_lines(now)
        if holds:
            rows.append([Line(", ".join(h.text[5:] for h in holds), WARN)])
            rows[-1].insert(0, Line("HOLD", WARN))
        return rows

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
        view = posture_view(s.to_dict())
        pending = view.pending if view is not None else {}
        awaiting = ", ".join(view.awaiting) if view is not None else ""
        if s.warming_up:         # the watchdog's placeholder (HIBERNATE, Rm 0) is not a computed posture
            head = Line(f"warming up: no posture computed yet, waiting for {awaiting or 'the first readings'}", WARN)
        else:
            pstyle = {"APEX": OK, "STALKER": WARN, "TURTLE": WARN, "HIBERNATE": BAD}.get(posture, WARN)
            head = Line(f"posture {posture}  Rm {_fmt(s.Rm, '.3f')}"
                        + (f"  (no reading yet: {awaiting})" if awaiting else ""), pstyle)
        out = [head, Line(_age_text(age), st), *out]
        sensors = s.sensors or {}
        for k in sorted(sensors):
            v = sensors[k]
            out.append(Line(f"  {k:<22} {'no reading yet' if k in pending else readable(v)}", DIM if k in pending else PLAIN))
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
        out.extend(self.hold_lines(now))
        if st == WARN:
            out.append(Line("meta health report is stale", WARN))
        return out

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
        acct, err = AccountState.read(s, STATE_SRC)
        if err is not None:
            out.append(Line(f"account unreadable: {err}"[:120], BAD))
            return out
        pos = acct.position if "position" in s.account else s.extra.get("open_position")
        if not isinstance(pos, dict):
            out.append(Line("position: flat", DIM))
            return out
        d = pos.get("direction")
        side = "SHORT" if d == -1 else "LONG" if d == 1 else str(d)
        held = _num(pos.get("entry_ts"))
        out.append(Line(f"position: {side} {pos.get('symbol')} @ {_fmt(pos.get('entry_price'), '.6g')}"
                        f"  notional {_fmt(pos.get('notional'), ',.2f')}"
                        + ("" if held is None else f"  held {_age_text(now - held)[4:]}"), WARN))
        last, upnl = self.unrealised(pos)
        out.append(Line(f"last {_fmt(last, '.6g')}  unrealised {_fmt(upnl, '+,.2f')} (before fees)",
                        DIM if upnl is None else OK if upnl >= 0 else BAD))
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
