"""Live == replay (bible ALGO-3, tolerance 1e-10): replay a trader recording and compare it with the live journal.

    python -m prod.backtest.parity --recording data/recordings/<run> [--journal PATH] [--tol 1e-10]

The recording (``prod/trading/recording.py``) holds every scan the live trader handed to its core,
the clock values the core read while deciding it, and the ACB / posture / MC / order-book inputs with one
sequence number over all of them. The replay builds a fresh :class:`~prod.trading.core.TraderCore`
from the recorded start snapshot and engine parameters (a temporary journal, the paper account) and feeds it
the same inputs in the same order; then it compares, event by event, the trade rows of the live journal
recorded during the run (``ENTRY``, ``EXIT``, ``ENTRY_NOT_TAKEN``, ``EXIT_FAILED``, ``GATE``, ``DAY_END``:
entry/exit time, asset, side, price, notional, fees, gross/net PnL, …) and the final capital.

Decision: the replay drives the same per-scan path the trader runs (``TraderCore.process`` → the one
``NDAlphaEngine.step_bar`` that ``prod.backtest.runner`` also steps), not the runner's daily-Parquet loop:
the runner has no fills, books or sub-day ACB/posture feed, so it could not reproduce the live fees and
fill prices to 1e-10; the engine is the same object type in both.

Venue execution: the venue is an outside system, so a recording of ``execution=venue`` carries every
``open``/``close`` the core made and the venue's answer (fill or error); the replay takes those answers as
inputs (:class:`RecordedFills`): it checks the decisions (when, which asset, side, requested size, exit
reason) and the account's bookkeeping, not the venue's prices. A kill-switch flattening the venue account
did on its own thread (``kill_exits``, also a protective stop that fired) is a recorded ``kill_exit`` call of the
scan at which the core booked it; the replay books the same fill at that scan. Funding fees (issue 29) the venue
account took from ``/fapi/v1/income`` are booked by the core at a scan and recorded as that scan's ``funding``
calls; the replay books the same fee there (:func:`prod.execution.funding.apply_funding`, the one
bookkeeping both use), and the live and replayed ``FUNDING`` rows are compared like the trade rows.

Order: the trader applies every input on its decision thread, between scans, in arrival order
(``services/event_trader/main.py``), so the recorded sequence is the order the core saw. ``raced`` counts
inputs recorded while a scan was being decided — none from a current trader; a recording that has some
(an older trader) replays them after that scan and marks a difference next to one ``[raced input]``.
The §9.2 OB macro is an input like the others (``ob_macro``, with the clock value its age check read).

Partial runs: a run without ``end.json`` was killed (kill -9, OOM, power) or its recording stopped (a disk
full for too long). Everything it wrote up to then replays: a write the kill cut short (the last Arrow message
of ``scans.arrow``, the last line of ``events.jsonl``) is a torn tail, dropped and counted; inputs after the last
recorded scan are left out; live trade rows on scans the recording does not hold (decided after it ended) are
left out and counted; the final capital compared is the live account's after the last compared row (the run's
TRADER_START capital, then each EXIT's ``capital_after`` less later entry fees). Damage anywhere but the tail
is still corruption (exit 2), and a run with ``end.json`` must be complete.

    python -m prod.backtest.parity --recording data/recordings     # every run under it, one verdict each

Exit codes: 0 all within tolerance, 1 differences above it, 2 the recording is corrupt or truncated (the
message names the file), 3 the recording cannot be replayed (unknown execution mode, journal missing).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sqlite3
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from prod.alpha.params import EngineParams, ParamError
from prod.bus.payloads import ObFeatures, ObMacro, PayloadError
from prod.trading.core import CoreLimits, TraderCore
from prod.trading.journal import Journal, JournalIntegrityError
from prod.trading.accounts import Costs, PaperAccount, PaperAccounts, Position
from prod.execution.funding import apply_funding
from prod.trading.recording import (CONFIG_FILE, END_FILE, EVENTS_FILE, RECORDING_KIND, RECORDING_VERSION,
                                            SCAN_SCHEMA, SCANS_FILE)

log = logging.getLogger("dolphin.parity")
TOL = 1e-10
EVENT_KINDS = ("acb", "posture", "mc", "ob", "ob_macro", "ob_macro_invalid")
TRADE_KINDS = ("ENTRY", "EXIT", "ENTRY_NOT_TAKEN", "EXIT_FAILED", "GATE", "DAY_END", "FUNDING")
EXIT_OK, EXIT_DIFF, EXIT_CORRUPT, EXIT_UNUSABLE = 0, 1, 2, 3


class RecordingError(ValueError):
    """A recording file is missing, corrupt or truncated; the message names the file."""


class UnusableRecording(ValueError):
    """The recording is intact but cannot be replayed (unknown execution mode, no live journal)."""


@dataclass
class Recording:
    dir: Path
    config: dict
    scans: list[dict]
    events: list[dict]
    end: dict | None
    torn_bytes: int = 0     # bytes of a write a kill cut short, dropped (runs without end.json only)
    live_not_recorded: int = 0   # live trade rows on scans the recording does not hold (partial runs)

    @property
    def partial(self) -> bool:
        """No ``end.json``: the run was killed or its recording stopped; it replays up to its last scan."""
        return self.end is None


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordingError(f"{path}: missing") from None
    except (OSError, ValueError) as exc:
        raise RecordingError(f"{path}: unreadable JSON ({exc})") from None


def load_recording(run_dir: Path) -> Recording:
    """Read and validate a recording; raise :class:`RecordingError` naming the file at the first fault."""
    run_dir = Path(run_dir)
    cfg = _json_file(run_dir / CONFIG_FILE)
    if not isinstance(cfg, dict) or cfg.get("kind") != RECORDING_KIND or cfg.get("version") != RECORDING_VERSION:
        raise RecordingError(f"{run_dir / CONFIG_FILE}: not a version-{RECORDING_VERSION} trader recording")
    for k in ("params", "symbols", "limits", "initial_snapshot", "journal_start_id"):
        if k not in cfg:
            raise RecordingError(f"{run_dir / CONFIG_FILE}: missing {k!r}")
    end_path = run_dir / END_FILE
    end = _json_file(end_path) if end_path.exists() else None
    # no end.json: the run was killed (or its recording stopped on a write error); what it wrote up to then is
    # replayable, and a write the kill cut short (the last Arrow message, the last JSON line) is its torn tail
    scans, torn = _read_scans(run_dir / SCANS_FILE, torn_tail_ok=end is None)
    events, torn_ev = _read_events(run_dir / EVENTS_FILE, torn_tail_ok=end is None)
    if end is not None and isinstance(end.get("scans"), int) and end["scans"] != len(scans):
        raise RecordingError(f"{run_dir / SCANS_FILE}: {len(scans)} scans, {end_path} says {end['scans']} "
                             "(truncated)")
    if end is not None and isinstance(end.get("events"), int) and end["events"] != len(events):
        raise RecordingError(f"{run_dir / EVENTS_FILE}: {len(events)} events, {end_path} says {end['events']} "
                             "(truncated)")
    if end is None:
        # inputs after the last recorded scan never reached a recorded decision: left out of the replay
        last = max((s["seq_end"] for s in scans), default=0)
        events = [e for e in events if e["seq"] < last]
    return Recording(run_dir, cfg, scans, events, end, torn_bytes=torn + torn_ev)


# a short read at the end of the file (what a kill -9 in the middle of a write leaves), as pyarrow words it
_SHORT_READ = ("bytes available", "but only read", "for message body, got")
_MAX_META = 1 << 20     # a recorded-scan batch's metadata is < 1 kB; a larger declared length is garbage


def _torn_tail(path: Path, good_end: int, exc: BaseException) -> int:
    """Bytes after the last complete message if the stream ends in one cut-short message, else 0."""
    size = path.stat().st_size
    if not any(m in str(exc) for m in _SHORT_READ) or size <= good_end:
        return 0
    with open(path, "rb") as fh:
        fh.seek(good_end)
        head = fh.read(8)
    if len(head) == 8 and head[:4] == b"\xff\xff\xff\xff" and int.from_bytes(head[4:], "little") > _MAX_META:
        return 0
    return size - good_end


def _read_scans(path: Path, torn_tail_ok: bool = False) -> tuple[list[dict], int]:
    """The recorded scans and the size of a torn tail (0: none); a torn tail is accepted only if ``torn_tail_ok``."""
    out: list[dict] = []
    good_end = 0
    try:
        with pa.OSFile(str(path), "rb") as src:
            if torn_tail_ok and src.size() == 0:
                return out, 0       # killed before the first scan was written
            try:
                reader = ipc.open_stream(src)
                if not reader.schema.equals(SCAN_SCHEMA, check_metadata=False):
                    raise RecordingError(f"{path}: schema {reader.schema} is not the recorded-scan schema")
                good_end = src.tell()
                while True:
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        break
                    for row in batch.to_pylist():
                        try:
                            row["scan"] = json.loads(row["scan"])
                        except ValueError as exc:
                            raise RecordingError(f"{path}: scan {len(out) + 1} (seq {row['seq']}) is not JSON "
                                                 f"({exc})") from None
                        out.append(row)
                    good_end = src.tell()
            except (OSError, pa.ArrowException) as exc:
                torn = _torn_tail(path, good_end, exc) if torn_tail_ok else 0
                if not torn:
                    raise RecordingError(f"{path}: corrupt or truncated Arrow IPC stream after {len(out)} scans "
                                         f"({exc})") from None
                return out, torn
    except FileNotFoundError:
        raise RecordingError(f"{path}: missing") from None
    except OSError as exc:
        raise RecordingError(f"{path}: unreadable ({exc})") from None
    return out, 0


def _read_events(path: Path, torn_tail_ok: bool = False) -> tuple[list[dict], int]:
    """The recorded input events and the size of a torn last line (accepted only if ``torn_tail_ok``)."""
    out: list[dict] = []
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise RecordingError(f"{path}: missing") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.endswith("\n"):
                if torn_tail_ok:
                    return out, len(line.encode("utf-8"))
                raise RecordingError(f"{path}:{n}: partial last line (truncated)")
            try:
                ev = json.loads(line)
            except ValueError as exc:
                raise RecordingError(f"{path}:{n}: not JSON ({exc})") from None
            if (not isinstance(ev, dict) or ev.get("v") != RECORDING_VERSION or not isinstance(ev.get("seq"), int)
                    or ev.get("kind") not in EVENT_KINDS or not isinstance(ev.get("data"), dict)):
                raise RecordingError(f"{path}:{n}: not a version-{RECORDING_VERSION} event line")
            out.append(ev)
    return out, 0


class ReplayDiverged(RuntimeError):
    """The replay asked the account for something the live trader did not (venue recordings)."""


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= TOL
    return a == b


@dataclass(eq=False)
class RecordedFills(PaperAccount):
    """The account of a venue recording: ``open``/``close`` return the venue's recorded fill (or raise its error),
    booked by the one ledger as the venue account books them; a call the live trader did not make with these
    arguments raises :class:`ReplayDiverged` (journaled, so it shows as a difference). ``calls`` is the recorded
    calls of the scan being replayed (the :class:`RecordedFillsFactory`'s list, loaded per scan)."""

    calls: list = field(default_factory=list)

    def _take(self, op: str, args: dict) -> dict:
        if not self.calls:
            raise ReplayDiverged(f"replay {op} {args}: the live trader made no such call at this scan")
        c = self.calls.pop(0)
        if c.get("op") != op or any(not _same(c.get("args", {}).get(k), v) for k, v in args.items()):
            raise ReplayDiverged(f"replay {op} {args}: live made {c.get('op')} {c.get('args')}")
        if c.get("error"):
            raise type(str(c["error"]), (RuntimeError,), {})(c.get("detail") or "")
        return dict(c["fill"])

    @property
    def kill_exits(self) -> list[dict]:
        """The kill-switch exits the core booked at this scan: the venue account had flattened and booked them on
        its own thread before the core looked (capital += gross - fee, position gone), so they are applied now."""
        out = []
        while self.calls and self.calls[0].get("op") == "kill_exit":
            out.append(self._book_recorded_exit(dict(self.calls.pop(0)["fill"])))
        return out

    @property
    def funding_due(self) -> list[dict]:
        """The funding fees the core booked at this scan (recorded ``funding`` calls after its kill exits)."""
        out = []
        while self.calls and self.calls[0].get("op") == "funding":
            out.append(dict(self.calls.pop(0)["fill"]))
        return out

    def book_funding(self, row: dict) -> dict:
        """The venue account's bookkeeping of a funding fee (the same function)."""
        return apply_funding(self, row)

    def _book_recorded_exit(self, f: dict) -> dict:
        """Book a recorded exit fill with the ledger (its recorded ``capital_after`` kept as the live one)."""
        live_after = f.get("capital_after")
        rec = self.book_exit(f)
        if live_after is not None:
            rec["capital_after"] = live_after
        return rec

    def open(self, trade_id: int, symbol: str, direction: int, notional: float, book: Any, ref_price: float,
             now: float, scan: int, max_book_age_s: float = 30.0) -> dict:
        f = self._take("open", {"trade_id": trade_id, "symbol": symbol, "direction": direction, "notional": notional})
        self.book_entry(Position(trade_id, symbol, direction, f["price"], f["notional"], f["fee"], now, scan,
                                 f.get("source", "venue")))
        return f

    def close(self, reason: str, book: Any, ref_price: float, now: float, scan: int,
              max_book_age_s: float = 30.0) -> dict:
        return self._book_recorded_exit(self._take("close", {"reason": reason}))


@dataclass
class RecordedFillsFactory:
    """Builds the replay's :class:`RecordedFills`, all sharing ``calls`` (the replay loads it per scan)."""

    costs: Costs
    calls: list = field(default_factory=list)

    def new(self, capital: float) -> RecordedFills:
        return RecordedFills(capital=capital, peak_capital=capital, day_start_capital=capital, costs=self.costs,
                             calls=self.calls)

    def from_dict(self, d: dict) -> RecordedFills:
        acct = RecordedFills(capital=0.0, peak_capital=0.0, costs=self.costs, calls=self.calls)
        acct.load_ledger(d)
        return acct


class ReplayClock:
    """Returns the clock values recorded for the scan being replayed, then keeps the last one."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.last = 0.0

    def load(self, values: list[float]) -> None:
        self.values = list(values)

    def __call__(self) -> float:
        if self.values:
            self.last = self.values.pop(0)
        return self.last


@dataclass
class ReplayResult:
    events: list[dict]
    capital: float
    scans: int
    raced: int
    raced_scans: set = field(default_factory=set)
    core: Any = field(repr=False, default=None)


def replay(rec: Recording, work_dir: Path) -> ReplayResult:
    """Feed the recording through a fresh TraderCore; return its journal's trade rows and capital."""
    cfg = rec.config
    src = rec.dir / CONFIG_FILE
    mode = cfg.get("execution", "paper")
    if mode not in ("paper", "venue"):
        raise UnusableRecording(f"{src}: execution={mode!r} is neither paper nor venue")
    try:
        params = EngineParams.from_dict(cfg["params"], str(src))
        limits = CoreLimits(**cfg["limits"])
        last_scan, engine_state, trader_state = cfg["initial_snapshot"]
    except (ParamError, TypeError, ValueError) as exc:
        raise RecordingError(f"{src}: bad parameters/limits/snapshot ({exc})") from None
    costs = Costs.of(params)
    account_type: Any = PaperAccounts(costs) if mode == "paper" else RecordedFillsFactory(costs)
    journal = Journal.open(Path(work_dir) / "journal.sqlite", Path(work_dir) / "audit.log")
    if engine_state is not None:
        journal.save_snapshot(last_scan, engine_state, trader_state)
    clock = ReplayClock()
    try:
        core = TraderCore(limits, journal, params, tuple(cfg["symbols"]), clock, account_type=account_type)
    except JournalIntegrityError as exc:
        journal.close()
        raise RecordingError(f"{src}: the start snapshot does not restore with the recorded parameters ({exc})") \
            from None
    ev_path = rec.dir / EVENTS_FILE
    items = sorted([(s["seq"], 1, s) for s in rec.scans] + [(e["seq"], 0, e) for e in rec.events],
                   key=lambda x: (x[0], x[1]))
    seq_end, cur_scan = 0, None
    raced = 0
    raced_scans: set = set()
    for seq, is_scan, it in items:
        if is_scan:
            clock.load(it["clock"] or [])
            if mode == "venue":
                try:
                    account_type.calls[:] = json.loads(it["account"])
                except ValueError as exc:
                    raise RecordingError(f"{rec.dir / SCANS_FILE}: scan seq {seq}: account calls not JSON ({exc})") \
                        from None
            core.process(it["scan"], it["t_recv"])
            clock.values = []
            seq_end, cur_scan = it["seq_end"], it["scan_number"]
            continue
        if seq < seq_end:
            raced += 1
            raced_scans.add(cur_scan)
        d, kind = it["data"], it["kind"]
        if kind == "acb":
            core.on_acb(d.get("boost"), d.get("beta"))
        elif kind == "posture":
            core.set_posture(d.get("posture"), str(d.get("source", "replay")))
        elif kind == "mc":
            core.set_mc_status(d.get("status"), str(d.get("source", "replay")))
        elif kind == "ob_macro":
            try:
                macro = ObMacro.from_dict(d.get("macro"), f"{ev_path} seq {seq}")
                clock.load([float(d["now"])])
            except (PayloadError, KeyError, TypeError, ValueError) as exc:
                raise RecordingError(f"{ev_path} seq {seq}: bad ob_macro event ({exc})") from None
            core.on_ob_macro(macro)
            clock.values = []
        elif kind == "ob_macro_invalid":
            core.on_ob_macro_invalid(ValueError(str(d.get("error"))))
        else:
            try:
                core.on_book(ObFeatures.from_dict(d, f"{ev_path} seq {seq}"))
            except PayloadError as exc:
                raise RecordingError(str(exc)) from None
    out = [e for e in journal.events() if e["kind"] in TRADE_KINDS]
    journal.close()
    return ReplayResult(out, core.account.capital, len(rec.scans), raced, raced_scans, core)


def live_events(rec: Recording, journal_path: Path) -> tuple[list[dict], float | None]:
    """The live journal's trade rows of this run and its final capital (None when not known)."""
    if not Path(journal_path).is_file():
        raise UnusableRecording(f"{journal_path}: live journal not found (pass --journal)")
    start = int(rec.config["journal_start_id"])
    end = rec.end.get("journal_end_id") if rec.end else None
    con = sqlite3.connect(f"file:{Path(journal_path).resolve()}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT id, ts, kind, scan_number, payload FROM events WHERE id > ? ORDER BY id",
                           (start,)).fetchall()
    finally:
        con.close()
    if end is not None:
        rows = [r for r in rows if r[0] <= int(end)]
    else:   # no end.json (the run was killed): the run ends where the next run's TRADER_START begins
        starts = [r[0] for r in rows if r[2] == "TRADER_START"]
        if len(starts) > 1:
            rows = [r for r in rows if r[0] < starts[1]]
    evs = [{"id": r[0], "kind": r[2], "scan_number": r[3], "payload": json.loads(r[4])} for r in rows]
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
