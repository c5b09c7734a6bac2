"""The replay: a recorded run fed through a fresh TraderCore (replay clock, recorded venue fills).

Design notes: ``docs/design/prod.trading.md``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prod.alpha.params import EngineParams, ParamError
from prod.bus.payloads import ObFeatures, ObMacro, PayloadError
from prod.execution.funding import apply_funding
from prod.trading.accounts import Costs, PaperAccount, PaperAccounts, Position
from prod.trading.core import CoreLimits, TraderCore
from prod.trading.journal import Journal, JournalIntegrityError
from prod.trading.recording import CONFIG_FILE, EVENTS_FILE, SCANS_FILE, Recording, RecordingError

TOL = 1e-10
TRADE_KINDS = ("ENTRY", "EXIT", "ENTRY_NOT_TAKEN", "EXIT_FAILED", "GATE", "DAY_END", "FUNDING")


class UnusableRecording(ValueError):
    """The recording is intact but cannot be replayed (unknown execution mode, no live journal)."""


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
