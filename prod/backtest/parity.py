"""Live == replay (bible ALGO-3, tolerance 1e-10): replay a trader recording and compare it with the live journal.

Design notes: ``docs/design/prod.backtest.md``.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from prod.trading.journal import read_events
from prod.trading.recording import CONFIG_FILE, Recording, RecordingError, load_recording
from prod.trading.replay import TOL, TRADE_KINDS, UnusableRecording, replay

log = logging.getLogger("dolphin.parity")
EXIT_OK, EXIT_DIFF, EXIT_CORRUPT, EXIT_UNUSABLE = 0, 1, 2, 3


def live_events(rec: Recording, journal_path: Path) -> tuple[list[dict], float | None]:
    """The live journal's trade rows of this run and its final capital (None when not known)."""
    if not Path(journal_path).is_file():
        raise UnusableRecording(f"{journal_path}: live journal not found (pass --journal)")
    start = int(rec.config["journal_start_id"])
    end = rec.end.get("journal_end_id") if rec.end else None
    rows = read_events(journal_path, after_id=start)
    if end is not None:
        rows = [r for r in rows if r["id"] <= int(end)]
    else:   # no end.json (the run was killed): the run ends where the next run's TRADER_START begins
        starts = [r["id"] for r in rows if r["kind"] == "TRADER_START"]
        if len(starts) > 1:
            rows = [r for r in rows if r["id"] < starts[1]]
    evs = [{"id": r["id"], "kind": r["kind"], "scan_number": r["scan_number"], "payload": r["payload"]} for r in rows]
    trade_rows = [e for e in evs if e["kind"] in TRADE_KINDS]
    stops = [e for e in evs if e["kind"] == "TRADER_STOP"]
    if rec.end is not None and isinstance(rec.end.get("capital"), (int, float)):
        return trade_rows, float(rec.end["capital"])
    if not rec.partial:
        return trade_rows, (float(stops[0]["payload"]["capital"]) if stops else None)
    # a partial run: only the decisions on recorded scans can be replayed; rows of scans the live trader decided
    # after its recording ended (the writer's lag at a kill, the rest of a run whose recording failed) are left out
    recorded = {s["scan_number"] for s in rec.scans}
    kept = [e for e in trade_rows if e["scan_number"] in recorded]
    rec.live_not_recorded = len(trade_rows) - len(kept)
    if not rec.live_not_recorded and stops:
        return kept, float(stops[0]["payload"]["capital"])
    starts = [e for e in evs if e["kind"] == "TRADER_START"]
    start = starts[0]["payload"].get("capital") if starts else None
    return kept, _capital_after(kept, float(start) if isinstance(start, (int, float)) else None)


def _capital_after(rows: list[dict], start: float | None) -> float | None:
    """The account's capital after ``rows`` from ``start`` (the run's TRADER_START): each EXIT's (FUNDING's) ``capital_after``,
    less each later entry's fee (the same operations the account made, so exact); None when not known."""
    cap = start
    for e in rows:
        p = e["payload"]
        if e["kind"] == "EXIT":
            cap = p.get("capital_after") if isinstance(p.get("capital_after"), (int, float)) else None
        elif e["kind"] == "FUNDING":
            cap = p.get("capital_after") if isinstance(p.get("capital_after"), (int, float)) else None
        elif e["kind"] == "ENTRY" and cap is not None:
            cap = cap - p["fee"] if isinstance(p.get("fee"), (int, float)) else None
    return None if cap is None else float(cap)


def _diff(a: Any, b: Any, path: str, tol: float, out: list[tuple[str, Any, Any]]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            _diff(a.get(k), b.get(k), f"{path}.{k}" if path else k, tol, out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}[{i}]", tol, out)
    elif (isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool)
          and not isinstance(b, bool)):
        if not (abs(a - b) <= tol or (math.isnan(a) and math.isnan(b))):
            out.append((path, a, b))
    elif a != b:
        out.append((path, a, b))


def compare(live: list[dict], rep: list[dict], live_cap: float | None, rep_cap: float,
            tol: float = TOL, raced_scans: set | None = None) -> list[str]:
    """Return one line per difference (empty = parity); rows are paired in journal order.

    A difference on a scan during which an input raced the decision thread is marked ``[raced input]``.
    """
    lines: list[str] = []
    raced_scans = raced_scans or set()
    for i in range(max(len(live), len(rep))):
        a = live[i] if i < len(live) else None
        b = rep[i] if i < len(rep) else None
        if a is None or b is None:
            e = a or b
            assert e is not None
            lines.append(f"row {i + 1}: {e['kind']} trade {e['payload'].get('trade_id')} scan {e['scan_number']} "
                         f"only in the {'live journal' if b is None else 'replay'}")
            continue
        d: list[tuple[str, Any, Any]] = []
        _diff({"kind": a["kind"], "scan_number": a["scan_number"], **a["payload"]},
              {"kind": b["kind"], "scan_number": b["scan_number"], **b["payload"]}, "", tol, d)
        for p, x, y in d:
            delta = f" (Δ {y - x:+.3e})" if isinstance(x, (int, float)) and isinstance(y, (int, float)) else ""
            mark = " [raced input]" if a["scan_number"] in raced_scans else ""
            lines.append(f"row {i + 1}: {a['kind']} trade {a['payload'].get('trade_id')} scan {a['scan_number']}: "
                         f"{p} live={x!r} replay={y!r}{delta}{mark}")
    if live_cap is not None and not abs(live_cap - rep_cap) <= tol:
        lines.append(f"final capital: live={live_cap!r} replay={rep_cap!r} (Δ {rep_cap - live_cap:+.3e})")
    return lines


def trade_table(rows: list[dict]) -> list[str]:
    """One line per ENTRY/EXIT: time, asset, side, price, notional, fee, net."""
    out = []
    for e in rows:
        p = e["payload"]
        if e["kind"] in ("ENTRY", "EXIT"):
            out.append(f"  {e['kind']:<5} #{p.get('trade_id')} scan {e['scan_number']} t={p.get('ts')} "
                       f"{p.get('symbol')} {p.get('side')} price={p.get('price')} notional={p.get('notional')} "
                       f"fee={p.get('fee')}" + (f" net={p.get('net')}" if e["kind"] == "EXIT" else ""))
    return out


def run_parity(run_dir: Path, journal: Path | None = None, tol: float = TOL) -> tuple[int, list[str], dict]:
    """Replay and compare; return (exit code, difference lines, summary)."""
    rec = load_recording(run_dir)
    jpath = Path(journal) if journal else Path(rec.config.get("journal", ""))
    live, live_cap = live_events(rec, jpath)
    with tempfile.TemporaryDirectory(prefix="dolphin_parity_") as tmp:
        res = replay(rec, Path(tmp))
    diffs = compare(live, res.events, live_cap, res.capital, tol, res.raced_scans)
    summary = {"recording": str(run_dir), "scans": res.scans, "events": len(rec.events), "raced": res.raced,
               "live_rows": len(live), "replay_rows": len(res.events),
               "trades": sum(1 for e in live if e["kind"] == "EXIT"),
               "live_capital": live_cap, "replay_capital": res.capital, "differences": len(diffs), "tol": tol,
               "partial": rec.partial, "torn_bytes": rec.torn_bytes, "live_not_recorded": rec.live_not_recorded,
               "live_table": trade_table(live)}
    return (EXIT_DIFF if diffs else EXIT_OK), diffs, summary


def runs_in(parent: Path) -> list[Path]:
    """The run directories (those with a ``config.json``) directly under ``parent``, oldest first."""
    return sorted(p for p in Path(parent).iterdir() if (p / CONFIG_FILE).is_file()) if Path(parent).is_dir() else []


def _check(run_dir: Path, journal: Path | None, tol: float) -> int:
    """Replay one run and print its verdict; return its exit code."""
    try:
        code, diffs, s = run_parity(run_dir, journal, tol)
    except RecordingError as exc:
        print(f"parity: corrupt recording: {exc}", file=sys.stderr)
        return EXIT_CORRUPT
    except UnusableRecording as exc:
        print(f"parity: cannot replay: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    print(f"recording {s['recording']}: {s['scans']} scans, {s['events']} input events ({s['raced']} raced), "
          f"{s['live_rows']} live journal rows, {s['trades']} closed trades")
    if s["partial"]:
        print(f"partial run (no end.json: killed, or its recording stopped): replayed up to its last recorded scan; "
              f"torn tail dropped: {s['torn_bytes']} bytes; live rows on scans not recorded: {s['live_not_recorded']}")
    for line in s["live_table"]:
        print(line)
    for line in diffs:
        print("DIFF " + line)
    print(f"final capital live={s['live_capital']!r} replay={s['replay_capital']!r}"
          + (" (not compared: no end.json, TRADER_STOP or EXIT to take it from)" if s["live_capital"] is None else ""))
    print(f"PARITY {'OK' if code == EXIT_OK else 'FAILED'}: {s['differences']} difference(s) above {s['tol']:g}")
    return code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prod.backtest.parity",
                                 description="Replay a trader recording and compare it with the live journal.")
    ap.add_argument("--recording", required=True, type=Path,
                    help="a run directory under <data>/recordings/, or that parent directory (every run in it)")
    ap.add_argument("--journal", type=Path, help="live journal.sqlite (default: the path in config.json)")
    ap.add_argument("--tol", type=float, default=TOL, help="absolute tolerance per number (default 1e-10)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("event_trader").setLevel(logging.ERROR)   # the replayed core's warnings, not the live trader's
    if (a.recording / CONFIG_FILE).exists() or not a.recording.is_dir():
        return _check(a.recording, a.journal, a.tol)
    runs = runs_in(a.recording)
    if not runs:
        print(f"parity: corrupt recording: {a.recording}: no {CONFIG_FILE} in it or in any directory under it",
              file=sys.stderr)
        return EXIT_CORRUPT
    codes = []
    for run in runs:
        codes.append(_check(run, a.journal, a.tol))
        print(flush=True)
    names = {EXIT_OK: "ok", EXIT_DIFF: "differ", EXIT_CORRUPT: "corrupt", EXIT_UNUSABLE: "not replayable"}
    print(f"{len(runs)} runs: " + ", ".join(f"{codes.count(c)} {n}" for c, n in names.items()))
    return max(codes)


if __name__ == "__main__":
    raise SystemExit(main())
