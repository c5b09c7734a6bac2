"""The chaos soak's invariant checkers: pure functions over a trader journal, scan times and samples.

Each checker returns a list of violation strings (empty = the invariant holds), so the soak can run
them continuously on the live instance and the unit tests on synthetic journals written with the
real :class:`prod.trading.journal.Journal`.

Decisions:

* the journal is read read-only through SQLite (``mode=ro``) and the audit chain through the
  trader's own verifier (:func:`prod.trading.journal.parse_audit`) plus the anchor check
  :meth:`Journal.open` does, so the soak judges the chain by the trader's rules, not its own;
* "no trade on a stale or invalid input": every ENTRY's scan number must be one the live scanner
  wrote to its Arrow archive (``scan_NNNNNN_HHMMSS.arrow``; the file name carries the scan's UTC
  second), never a number the soak injected as garbage or as a stale scan, and the entry's journal
  time minus the scan's time must stay within the trader's ``max_scan_age_s`` (+1 s for the file
  name's one-second resolution);
* "no double entry": walking ENTRY/EXIT in journal order, a symbol is never entered while open, a
  trade id never twice, and never more than ``max_positions`` open at once;
* "capital == journal replay": the first TRADER_START's capital plus every EXIT's ``net`` minus the
  entry fee of a position still open equals ``DOLPHIN_STATE_BLUE[latest].capital`` (relative 1e-9);
* recovery within 30 s and RSS slope: over the samples the soak collected;
* "live == replay": after the mesh is down, every trader run's recording (one per start: each kill -9 leaves
  a partial one) is replayed by :mod:`prod.backtest.parity` against the live journal, tolerance 1e-10.
"""
from __future__ import annotations

import json
import logging
import re
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from prod.trading.journal import JournalIntegrityError, parse_audit

SCAN_FILE = re.compile(r"^scan_(\d+)_(\d{6})\.arrow$")


def read_events(journal: Path) -> list[dict]:
    """Return the journal's events (id, ts, kind, scan_number, payload dict) in order; [] if absent."""
    if not Path(journal).exists():
        return []
    con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("SELECT id, ts, kind, scan_number, payload FROM events ORDER BY id").fetchall()
    finally:
        con.close()
    out = []
    for i, ts, kind, sn, body in rows:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {"_unparsable": body}
        out.append({"id": i, "ts": ts, "kind": kind, "scan_number": sn, "payload": payload})
    return out


def check_chain(journal: Path, audit: Path) -> list[str]:
    """The trader's own chain verification plus the anchor (last committed line) check."""
    try:
        lines = parse_audit(Path(audit))
    except JournalIntegrityError as exc:
        return [f"audit chain broken: {exc}"]
    if not Path(journal).exists():
        return [] if not lines else [f"{audit}: {len(lines)} audit lines but no journal"]
    con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
    try:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    finally:
        con.close()
    if "anchor_hash" not in meta:
        return [f"{journal}: no anchor but {len(lines)} audit lines"] if lines else []
    seq = int(meta["anchor_seq"])
    if len(lines) < seq:
        return [f"{audit}: {len(lines)} lines, journal anchor is line {seq} (truncated)"]
    if lines[seq - 1].hash != meta["anchor_hash"]:
        return [f"{audit}: line {seq} does not match the journal anchor"]
    if len(lines) - seq > 1:
        return [f"{audit}: {len(lines) - seq} lines beyond the anchor (journal rolled back?)"]
    return []


def scan_times(arrow_dir: Path) -> dict[int, float]:
    """Scan number → UTC epoch second from the scanner's archive file names (``YYYY-MM-DD/scan_N_HHMMSS``)."""
    out: dict[int, float] = {}
    for p in Path(arrow_dir).glob("*/scan_*.arrow"):
        m = SCAN_FILE.match(p.name)
        if not m:
            continue
        try:
            t = datetime.strptime(f"{p.parent.name} {m.group(2)}", "%Y-%m-%d %H%M%S").replace(tzinfo=timezone.utc)
        except ValueError:
            continue
        out[int(m.group(1))] = t.timestamp()
    return out


def check_entries_inputs(events: Sequence[Mapping], scans: Mapping[int, float], injected: Iterable[int],
                         max_scan_age_s: float) -> list[str]:
    """Every ENTRY on a scan the scanner wrote, fresh when decided, never on an injected scan number."""
    bad = set(injected)
    out = []
    for e in events:
        if e["kind"] != "ENTRY":
            continue
        sn = e["scan_number"]
        if sn in bad:
            out.append(f"ENTRY id={e['id']} on injected (garbage/stale) scan {sn}")
        elif sn not in scans:
            out.append(f"ENTRY id={e['id']} on scan {sn}, which the scanner never wrote")
        elif e["ts"] - scans[sn] > max_scan_age_s + 1.0:
            out.append(f"ENTRY id={e['id']} on scan {sn} {e['ts'] - scans[sn]:.1f}s after the scan "
                       f"(> max_scan_age_s {max_scan_age_s:g})")
    return out


def open_positions(events: Sequence[Mapping]) -> dict:
    """trade_id → ENTRY payload of the positions open after the last event."""
    open_: dict = {}
    for e in events:
        p = e["payload"]
        if e["kind"] == "ENTRY":
            open_[p.get("trade_id")] = p
        elif e["kind"] == "EXIT":
            open_.pop(p.get("trade_id"), None)
    return open_


def check_no_double_entry(events: Sequence[Mapping], max_positions: int = 1) -> list[str]:
    out = []
    open_: dict = {}
    seen: set = set()
    for e in events:
        p = e["payload"]
        tid = p.get("trade_id")
        if e["kind"] == "ENTRY":
            sym = p.get("symbol")
            if tid in seen:
                out.append(f"ENTRY id={e['id']}: trade_id {tid} entered twice")
            if any(q.get("symbol") == sym for q in open_.values()):
                out.append(f"ENTRY id={e['id']}: {sym} entered while already open")
            seen.add(tid)
            open_[tid] = p
            if len(open_) > max_positions:
                out.append(f"ENTRY id={e['id']}: {len(open_)} positions open (max {max_positions})")
        elif e["kind"] == "EXIT":
            open_.pop(tid, None)
    return out


def replay_capital(events: Sequence[Mapping]) -> float | None:
    """Capital by replaying the journal: first TRADER_START capital + Σ EXIT net − open entry fees."""
    start = next((e["payload"].get("capital") for e in events if e["kind"] == "TRADER_START"), None)
    if start is None:
        return None
    cap = float(start)
    for e in events:
        if e["kind"] == "EXIT":
            cap += float(e["payload"].get("net", 0.0) or 0.0)
    for p in open_positions(events).values():
        cap -= float(p.get("fee", 0.0) or 0.0)
    return cap


def check_capital(events: Sequence[Mapping], state_capital: float | None, rel_tol: float = 1e-9) -> list[str]:
    replay = replay_capital(events)
    if replay is None or state_capital is None:
        return []
    if abs(replay - state_capital) > rel_tol * max(1.0, abs(replay)):
        return [f"capital in DOLPHIN_STATE_BLUE {state_capital!r} != journal replay {replay!r} "
                f"(diff {state_capital - replay:+.6g})"]
    return []


def check_recoveries(recoveries: Sequence[Mapping], limit_s: float = 30.0) -> list[str]:
    out = []
    for r in recoveries:
        s = r.get("recovery_s")
        if s is None:
            out.append(f"{r['program']} not back RUNNING after kill at {r['t']:.0f} (waited {limit_s:g}s+)")
        elif s > limit_s:
            out.append(f"{r['program']} back RUNNING after {s:.1f}s (> {limit_s:g}s)")
    return out


def slope_per_hour(samples: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t, value) in value units per hour; None with < 3 samples or no spread."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    if den <= 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in samples) / den * 3600.0


def rss_slopes(samples: Mapping[str, Sequence[tuple[float, int, float]]], warmup_s: float = 420.0,
               min_span_s: float = 180.0) -> dict[str, dict]:
    """Per program: RSS slope (MB/h) over its longest-lived pid, after ``warmup_s`` of that pid's life.

    ``samples[program]`` = [(t, pid, rss_mb)]; a kill starts a new pid, so each lifetime is fitted on
    its own. Lifetimes shorter than ``min_span_s`` after warm-up give no slope (too noisy to judge).
    The warm-up is 7 min: a program's RSS steps up once when its first periodic job loads a big
    library (obf_universe's first Parquet flush imports pyarrow, +60 MB 4–5 min after start, flat
    after; measured by the soak), which is growth of a start, not of a run.
    """
    out = {}
    for prog, rows in samples.items():
        by_pid: dict[int, list[tuple[float, float]]] = {}
        for t, pid, mb in rows:
            by_pid.setdefault(pid, []).append((t, mb))
        best: list[tuple[float, float]] = []
        for pts in by_pid.values():
            t0 = pts[0][0]
            kept = [(t, mb) for t, mb in pts if t - t0 >= warmup_s]
            if kept and kept[-1][0] - kept[0][0] > (best[-1][0] - best[0][0] if best else -1):
                best = kept
        span = best[-1][0] - best[0][0] if best else 0.0
        slope = slope_per_hour(best) if span >= min_span_s else None
        out[prog] = {"slope_mb_per_h": slope, "span_s": round(span, 1), "pids": len(by_pid),
                     "rss_mb_last": rows[-1][2] if rows else None}
    return out


def check_rss(slopes: Mapping[str, Mapping], limit_mb_per_h: float) -> list[str]:
    return [f"{p}: RSS grows {s['slope_mb_per_h']:.1f} MB/h over {s['span_s']:.0f}s (> {limit_mb_per_h:g})"
            for p, s in slopes.items() if s["slope_mb_per_h"] is not None and s["slope_mb_per_h"] > limit_mb_per_h]


def check_parity(recordings: Path) -> tuple[dict, list[str]]:
    """Replay every run under ``recordings`` (``prod.backtest.parity``); return (summary, violations)."""
    from prod.backtest import parity

    runs = parity.runs_in(recordings)
    quiet = logging.getLogger("event_trader")     # the replayed core's own warnings are not the live trader's
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return _check_parity(runs, Path(recordings))
    finally:
        quiet.setLevel(level)


def _check_parity(runs: list[Path], recordings: Path) -> tuple[dict, list[str]]:
    from prod.backtest import parity

    out: list[str] = []
    summary: dict = {"runs": len(runs), "ok": 0, "partial": 0, "trades": 0, "scans": 0, "live_rows_not_recorded": 0,
                     "per_run": []}
    for run in runs:
        try:
            code, diffs, s = parity.run_parity(run)
        except (parity.RecordingError, parity.UnusableRecording) as exc:
            out.append(f"{run.name}: {type(exc).__name__}: {exc}")
            summary["per_run"].append({"run": run.name, "error": str(exc)})
            continue
        summary["ok"] += code == parity.EXIT_OK
        summary["partial"] += bool(s["partial"])
        summary["trades"] += s["trades"]
        summary["scans"] += s["scans"]
        summary["live_rows_not_recorded"] += s["live_not_recorded"]
        summary["per_run"].append({k: s[k] for k in ("scans", "events", "trades", "partial", "torn_bytes",
                                                     "live_not_recorded", "differences", "live_capital",
                                                     "replay_capital")} | {"run": run.name})
        out += [f"{run.name}: {d}" for d in diffs[:20]]
    if not runs:
        out.append(f"{recordings}: no trader recording to replay")
    return summary, out
