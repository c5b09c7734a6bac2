"""Event-driven paper trader (blue): the bus adapter around the decision core (``core.py``).

Design notes: ``docs/design/services.event_trader.md``.
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import os
import queue
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from prod.alpha.params import EngineParams
from prod import metrics
from prod.bus import maps
from prod.bus.payloads import (AcbBoost, EigenScan, EngineState, McForewarner, ObFeatures, ObMacro, PayloadError, Pnl,
                               Safety)
from prod.runtime import Bus, Clock, RateLog, Service, result_within
from prod.settings import ConfigError, Settings
from prod.trading.core import STRATEGY, CoreLimits, Snapshot, TraderCore
from prod.trading.journal import Journal, JournalIntegrityError
from services.event_trader.lock import InstanceLock, LockBusy
from prod.trading.accounts import DEFAULT_COSTS, Costs, PaperAccounts
from prod.trading.recording import Recorder
from prod.trading.safety import SafetyConfig
from prod.execution.killswitch import KillSwitch
from prod.execution import ExecConfig, ExecutionError
from prod.binance.signing import ENV_KEY, ENV_SECRET, Credentials, MissingCredentials

log = logging.getLogger("event_trader")
SERVICE_NAME = "event_trader"
EXIT_LOCKED = 3
EXIT_INTEGRITY = 4
EXIT_CONFIG = 5


class DecisionLog:
    """One INFO line every ``every_s`` with the latest decision, so a quiet trader is visibly alive.

    ``decision: scan 1234 vel_div=-0.0123 posture=APEX vol_ok=True note=no_signal | 12 scans, 1 signal held
    back since the last line`` — what operators ask between posture changes: is it deciding, and why no trade.
    """

    def __init__(self, every_s: float, logger: logging.Logger):
        self.every_s, self.log = every_s, logger
        self._last_t: float | None = None
        self._n = 0
        self._held0 = 0

    def offer(self, decision: dict | None, now: float, signals_not_taken: int) -> str | None:
        """Count ``decision``; log (and return) the line when ``every_s`` has passed since the last one."""
        if not decision or "latency_ms" not in decision:
            return None
        self._n += 1
        if self._last_t is None:
            self._last_t, self._held0 = now, signals_not_taken
        if now - self._last_t < self.every_s:
            return None
        vd = decision.get("vel_div")
        held = signals_not_taken - self._held0
        line = (f"decision: scan {decision['scan_number']} vel_div={'n/a' if vd is None else format(vd, '.4f')} "
                f"posture={decision.get('posture')} vol_ok={decision.get('vol_ok')} note={decision.get('note')} | "
                f"{self._n} scans, {held} signal{'s' if held != 1 else ''} held back since the last line")
        self.log.info("%s", line)
        self._last_t, self._n, self._held0 = now, 0, signals_not_taken
        return line


def _record(decision: dict | None) -> None:
    """Scan-to-decision latency and fills into the process's metrics."""
    if not decision:
        return
    if isinstance(decision.get("latency_ms"), (int, float)):
        metrics.SCAN_TO_DECISION.observe(max(0.0, decision["latency_ms"] / 1e3))
    for kind in ("entered", "exited"):
        fill = decision.get(kind)
        if isinstance(fill, dict) and "side" in fill:
            metrics.record_trade(STRATEGY, fill["side"])


@dataclass(frozen=True)
class TraderConfig:
    """Settings of the trader (``DOLPHIN_EVENT_TRADER_<FIELD>`` or ``--<field>``)."""

    ENV_PREFIX: ClassVar[str] = "DOLPHIN_EVENT_TRADER_"
    settings: Settings
    max_scan_age_s: float = field(default=10.0, metadata={"flags": ("--max-scan-age",),
                                                          "help": "skip a scan older than this"})
    max_book_age_s: float = field(default=30.0, metadata={"help": "a book older than this is not filled against"})
    posture_poll_s: float = 0.5
    heartbeat_s: float = 2.0
    snapshot_every_s: float = 5.0
    gil_switch_interval_s: float = 0.0005
    hz_timeout_s: float = 2.0
    decision_log_s: float = field(default=60.0, metadata={"help": "one INFO line with the latest decision this often"})
    execution: str = field(default="auto", metadata={
        "help": "venue (order API at DOLPHIN_VENUE_REST), paper (in process) or auto (venue when keys are set)"})
    fill_timeout_s: float = field(default=10.0, metadata={"help": "an order not final after this is cancelled"})
    venue_connect_s: float = field(default=60.0, metadata={"help": "retry the venue at start this long"})
    record: bool = field(default=True, metadata={
        "help": "record scans and inputs for python -m prod.backtest.parity (prod/trading/recording.py)"})
    record_dir: str = field(default="", metadata={"help": "parent of the recordings (default <data>/recordings)"})
    max_macro_age_s: float = field(default=15.0, metadata={"help": "an OB macro older than this is dropped (neutral)"})
    reconcile_s: float = field(default=60.0, metadata={
        "help": "compare positions, open orders and balance with the venue this often (venue execution)"})
    protective_stop_pct: float = field(default=0.12, metadata={
        "help": "exchange-side stop this far against each entry (0 = none; docs/execution.md says why 12%)"})
    preflight_retry_s: float = field(default=30.0, metadata={
        "help": "while the venue preflight refuses every entry, run it again this often"})

    def __post_init__(self) -> None:
        for name in ("max_scan_age_s", "max_book_age_s", "posture_poll_s", "heartbeat_s", "snapshot_every_s",
                     "gil_switch_interval_s", "hz_timeout_s", "decision_log_s", "fill_timeout_s", "venue_connect_s",
                     "max_macro_age_s", "preflight_retry_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be > 0")
        if self.execution not in ("auto", "venue", "paper"):
            raise ConfigError(f"execution={self.execution!r}: must be venue, paper or auto")
        try:
            _ = self.safety            # validates reconcile_s and protective_stop_pct
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def execution_mode(self, env: Any = None) -> str:
        """``venue`` or ``paper`` (``auto``: venue when both key variables are set)."""
        env = os.environ if env is None else env
        if self.execution != "auto":
            return self.execution
        return "venue" if env.get(ENV_KEY) and env.get(ENV_SECRET) else "paper"

    @property
    def kill_switch(self) -> KillSwitch:
        return KillSwitch(self.trader_dir / "KILL")

    @property
    def trader_dir(self) -> Path:
        return Path(self.settings.data_dir) / "trader"

    @property
    def safety(self) -> SafetyConfig:
        return SafetyConfig(reconcile_s=self.reconcile_s, stop_pct=self.protective_stop_pct)

    @property
    def limits(self) -> CoreLimits:
        return CoreLimits(self.max_scan_age_s, self.max_book_age_s, self.snapshot_every_s, self.max_macro_age_s)


def load_engine_params() -> EngineParams:
    """Load the frozen blue champion (drift refused) and switch to paper friction (§8.3)."""
    from prod.configs import load_blue
    cfg = load_blue()
    return dataclasses.replace(cfg.engine, use_sp_fees=False, use_sp_slippage=False)


class BusOutputs:
    """The core's outputs onto the bus: fire-and-forget typed writes, skipped while disconnected."""

    def __init__(self, bus: Bus, persist_q: "queue.Queue[Snapshot]"):
        self.bus = bus
        self.persist_q = persist_q
        self.rl = RateLog(log, 30.0)
        self.skipped_writes = 0
        self._pub_lock = threading.Lock()
        self._published_scan: int | None = None

    def _write(self, topic: maps.Topic, payload: Any, key: str | None = None) -> bool:
        try:
            self.bus.publish(topic, payload, key, wait=False)
            return True
        except Exception as exc:  # noqa: BLE001 - a write must never break a decision (BusUnavailable mostly)
            self.skipped_writes += 1
            self.rl.warning(f"write:{topic.map}", "%s not written (%d skipped so far): %s",
                            topic.source(key), self.skipped_writes, exc)
            return False

    def pnl(self, day: str, payload: Pnl) -> None:
        metrics.record_pnl(payload.strategy, payload.to_dict())
        self._write(maps.PNL_BLUE_DAY, payload, day)

    def state(self, payload: EngineState) -> None:
        """Publish STATE_BLUE[latest]; never an older snapshot after a newer one (two threads publish)."""
        with self._pub_lock:
            sn = payload.last_scan_number
            if sn is not None and self._published_scan is not None and sn < self._published_scan:
                return
            self._published_scan = sn
            self._write(maps.STATE_LATEST, payload)

    def day_state(self, day: str, payload: EngineState) -> None:
        self._write(maps.STATE_DAY, payload, maps.state_key(STRATEGY, day))

    def snapshot(self, snap: Snapshot) -> None:
        self.persist_q.put(snap)


@dataclasses.dataclass(frozen=True)
class _Input:
    """An input for the core, queued by a listener and applied on the decision thread."""
    fn: Callable[..., Any]

    def __str__(self) -> str:
        return f"input {getattr(self.fn, '__name__', self.fn)}"


class TraderService:
    """Listeners, the posture poller, the heartbeat and persist threads around one :class:`TraderCore`."""

    def __init__(self, cfg: TraderConfig, core: TraderCore, bus: Bus, clock: Clock, outputs: BusOutputs,
                 recorder: Recorder | None = None):
        self.cfg, self.core, self.bus, self.clock, self.out = cfg, core, bus, clock, outputs
        self.recorder = recorder
        self.decision_log = DecisionLog(cfg.decision_log_s, log)
        self.scans_seen = 0
        self._q: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._warm = False          # the first decision ran (and what it loaded was frozen)

    # ── listeners (client threads: hand over at once) ────────────────────────────────────────
    # Every input reaches the core through the decision queue, in arrival order with the scans: the
    # decision thread is the only one that touches the engine and the books, so a recording replays
    # the live order exactly and no input changes under a decision. The kill switch is the
    # exception: it acts on the account at once, even while a decision waits on the venue.
    def _input(self, fn: Callable[..., Any], *args: Any) -> None:
        self._q.put((_Input(fn), args))

    def on_scan(self, _key: str, scan: EigenScan) -> None:
        self.scans_seen += 1
        self._q.put((scan, self.clock.time()))

    def on_acb(self, _key: str, p: AcbBoost) -> None:
        self._input(self.core.on_acb, p.boost, p.beta)

    def on_safety(self, _key: str, p: Safety) -> None:
        self._input(self.core.set_posture, p.posture, "map-listener")

    def on_mc(self, _key: str, p: McForewarner) -> None:
        self._input(self.core.set_mc_status, p.status, "mc-listener")

    def on_shard(self, _key: str, p: ObFeatures) -> None:
        self._input(self.core.on_book, p)

    def on_ob_macro(self, _key: str, p: ObMacro) -> None:
        self._input(self.core.on_ob_macro, p)

    def on_ob_macro_invalid(self, _key: str, exc: Exception) -> None:
        self._input(self.core.on_ob_macro_invalid, exc)

    def read_posture(self) -> tuple[str, str] | None:
        """Poll the CP AtomicReference, then the map; APEX when neither answers (§14.6).

        Returns ``(posture, source)`` for the decision thread to apply, or None: a malformed value is not
        an answer that can open trading, so when the reference or the map holds one (and nothing valid
        answers) the last good posture stays.
        """
        t = self.cfg.hz_timeout_s
        malformed = False
        try:
            raw = result_within(self.bus.cp.get_atomic_reference(maps.SAFETY_ATOMIC_REF).get(), t)
            if raw is not None:
                try:
                    return maps.SAFETY_LATEST.decode(raw, maps.KEY_LATEST).posture, "cp-atomic-ref"
                except PayloadError as exc:
                    malformed = True
                    self.core.rl.error("posture:cp", "posture from the CP AtomicReference ignored: %s", exc)
        except Exception as exc:  # noqa: BLE001 - any failure falls back to the map, then APEX
            log.debug("AtomicReference read failed: %r", exc)
        src = maps.SAFETY_LATEST.source()
        try:
            bad_before = self.bus.bad_payloads.get(src, 0)
            p = self.bus.get(maps.SAFETY_LATEST, timeout=t)
            if p is not None:
                return p.posture, "map-fallback"
            malformed = malformed or self.bus.bad_payloads.get(src, 0) > bad_before
        except Exception as exc:  # noqa: BLE001
            log.debug("safety map read failed: %r", exc)
        return None if malformed else ("APEX", "default")

    def on_kill_switch(self, _key: str, p: Any) -> None:
        """``DOLPHIN_SAFETY[kill_switch]``: engage or clear the account's kill switch (its watcher acts)."""
        ks = getattr(self.core.account, "kill_switch", None)
        if ks is None:
            self.core.rl.warning("kill:paper", "kill switch %s on the bus: the paper account has no venue orders",
                                 "engaged" if p.engaged else "cleared")
            return
        if p.engaged and not ks.active():
            log.critical("KILL SWITCH engaged from %s: %s", maps.KILL_SWITCH.source(), p.reason)
            ks.engage(p.reason, p.by or None)
        elif not p.engaged and ks.active():
            log.warning("kill switch cleared from %s", maps.KILL_SWITCH.source())
            ks.clear()

    def _on_connect(self, bus: Bus) -> None:
        """After every (re)connection: seed the latest scan, ACB, MC status and kill switch from the maps,
        publish the state.

        The scan on the map may have been written while no listener was registered; the core drops it
        if it was already processed (dedup) or is too old.
        """
        seeds = ((maps.EIGEN_SCAN, maps.KEY_EIGEN_SCAN, self.on_scan), (maps.ACB_BOOST, maps.KEY_ACB_BOOST, self.on_acb),
                 (maps.MC_FOREWARNER, maps.KEY_MC_FOREWARNER, self.on_mc),
                 (maps.OB_MACRO, maps.KEY_OB_MACRO, self.on_ob_macro),
                 (maps.KILL_SWITCH, maps.KEY_KILL_SWITCH, self.on_kill_switch))
        for topic, key, handler in seeds:
            try:
                value = bus.get(topic, timeout=self.cfg.hz_timeout_s)
                if value is not None:
                    handler(key, value)
            except Exception as exc:  # noqa: BLE001 - not on the hot path; the listener brings the next one
                log.warning("initial %s read failed: %r", key, exc)
        self._q.put((None, None))   # the decision thread publishes the state (it owns the engine)

    # ── threads ──────────────────────────────────────────────────────────────────────────────
    def start(self) -> None:
        """Register listeners (kept across reconnections) and start the four threads."""
        b = self.bus
        b.listen(maps.EIGEN_SCAN, self.on_scan)
        b.listen(maps.ACB_BOOST, self.on_acb)
        b.listen(maps.SAFETY_LATEST, self.on_safety)
        b.listen(maps.MC_FOREWARNER, self.on_mc, key=maps.KEY_MC_FOREWARNER)
        b.listen(maps.OB_MACRO, self.on_ob_macro, key=maps.KEY_OB_MACRO, on_error=self.on_ob_macro_invalid)
        b.listen(maps.KILL_SWITCH, self.on_kill_switch)
        for sym in self.core.symbols:   # one key listener per engine symbol: no event for the rest
            b.listen(maps.ob_topic(sym), self.on_shard, key=sym)
        b.on_connect(self._on_connect)
        for target, name in ((self._decision_loop, "decisions"), (self._posture_loop, "posture"),
                             (self._heartbeat_loop, "heartbeat"), (self._persist_loop, "persist")):
            t = threading.Thread(target=target, name=f"trader-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        log.info("trader listening on %s", maps.EIGEN_SCAN.source())

    def _decision_loop(self) -> None:
        while not self._stop.is_set():
            try:
                scan, t_recv = self._q.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                if scan is None:
                    self.out.state(self.core.state_payload())
                    continue
                if isinstance(scan, _Input):
                    scan.fn(*t_recv)
                    continue
                rec = self.recorder
                if rec is not None:
                    rec.begin_scan(scan, t_recv)
                try:
                    decision = self.core.process(scan, t_recv)
                finally:
                    if rec is not None:
                        rec.end_scan()
                _record(decision)
                self.decision_log.offer(decision, self.clock.monotonic(), self.core.signals_not_taken)
                if not self._warm and decision and "latency_ms" in decision:
                    # what the first decision loaded (numba's kernels, the engine's buffers) joins the frozen
                    # start-up heap; no collection here, so this decision's latency is not paid twice
                    self._warm = True
                    gc.freeze()
            except Exception:  # noqa: BLE001 - one bad scan (or input) must not kill the trader
                log.exception("%s failed", scan if isinstance(scan, _Input) else
                              f"scan {getattr(scan, 'scan_number', '?')}")

    def _persist_loop(self) -> None:
        q = self.out.persist_q
        while not self._stop.is_set() or not q.empty():
            try:
                snap = q.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                if self.core.journal.save_snapshot(*snap):   # False: a trade snapshot is newer
                    self.out.state(self.core.state_payload(snap))
            except Exception:  # noqa: BLE001
                log.exception("periodic snapshot failed")

    def _posture_loop(self) -> None:
        while not self.clock.wait(self._stop, self.cfg.posture_poll_s):
            answer = self.read_posture()
            if answer is not None:
                self._input(self.core.set_posture, *answer)

    def flush_latency_log(self) -> None:
        """Append the buffered latency lines to ``<data>/trader/latency.csv``."""
        buf = self.core.drain_latency_lines()
        if buf:
            with open(self.cfg.trader_dir / "latency.csv", "a") as fh:
                fh.writelines(buf)

    def heartbeat(self) -> Any:
        return self.bus.heartbeat(now=self.clock.time(), skipped_writes=self.out.skipped_writes,
                                  **self.core.heartbeat_fields())

    def _heartbeat_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.flush_latency_log()
            except OSError as exc:
                self.core.rl.warning("latency-log", "latency log: %r", exc)
            try:
                self.heartbeat()
            except Exception as exc:  # noqa: BLE001 - BusUnavailable while reconnecting; the next beat retries
                log.debug("heartbeat skipped: %r", exc)
            self.clock.wait(self._stop, self.cfg.heartbeat_s)

    def stop(self) -> None:
        """Stop threads, write a final snapshot and publish the last state and PnL (waiting briefly)."""
        self._stop.set()
        for t in self._threads:
            t.join(5)
        core = self.core
        try:
            core.journal.save_snapshot(*core.snapshot_now())
        except Exception:  # noqa: BLE001
            log.exception("final snapshot failed")
        try:
            self.flush_latency_log()
        except OSError:
            pass
        if not self.bus.connected:
            return
        try:
            futs = [self.bus.publish(maps.STATE_LATEST, core.state_payload(), wait=False)]
            if core.account.day:
                futs.append(self.bus.publish(maps.PNL_BLUE_DAY, core.pnl_payload(core.account.day),
                                             core.account.day, wait=False))
            futs.append(self.heartbeat())
            for f in futs:
                result_within(f, self.cfg.hz_timeout_s)
        except Exception as exc:  # noqa: BLE001 - best effort on the way out
            log.warning("final state not published: %r", exc)


def run(cfg: TraderConfig, bus: Bus, clock: Clock, stop: threading.Event) -> int:
    """Lock, verify the journal, restore, trade until ``stop``; return an exit code (0, 3, 4, 5)."""
    # a short GIL switch interval lets the decision thread preempt the persist/listener threads sooner
    sys.setswitchinterval(cfg.gil_switch_interval_s)
    cfg.trader_dir.mkdir(parents=True, exist_ok=True)
    lock = InstanceLock(cfg.trader_dir / "event_trader.lock")
    try:
        lock.acquire()
    except LockBusy as exc:
        log.error("%s", exc)
        print(f"event_trader: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    try:
        persist_q: queue.Queue = queue.Queue()
        outputs = BusOutputs(bus, persist_q)
        try:
            journal = Journal.open(cfg.trader_dir / "journal.sqlite", cfg.trader_dir / "audit.log")
            params = load_engine_params()
            mode = cfg.execution_mode()
            account_type: Any = (PaperAccounts(Costs.of(params)) if mode == "paper"
                                 else VenueAccounts(cfg, journal, params))
            log.info("execution: %s%s", mode, f" via {cfg.settings.venue_rest}" if mode == "venue" else "")
            recorder = open_recorder(cfg, clock.time) if cfg.record else None
            core = TraderCore(cfg.limits, journal, params, tuple(cfg.settings.symbols), clock.time,
                              account_type=account_type, outputs=outputs, recorder=recorder)
        except JournalIntegrityError as exc:
            log.critical("REFUSING TO TRADE: trade journal integrity check failed: %s", exc)
            print(f"event_trader: REFUSING TO TRADE: {exc}", file=sys.stderr)
            return EXIT_INTEGRITY
        except (ValueError, OSError, MissingCredentials) as exc:
            log.critical("REFUSING TO TRADE: configuration error: %s", exc)
            return EXIT_CONFIG
        except ExecutionError as exc:
            log.critical("REFUSING TO TRADE: venue not usable at start (reconcile failed): %s", exc)
            return EXIT_CONFIG
        if recorder is not None and not begin_recording(recorder, cfg, core, journal, params, mode):
            recorder = None
        core.journal_event("TRADER_START", {"capital": core.account.capital, "last_scan": core.last_scan,
                                            "open_position": core.account.position is not None})
        svc = TraderService(cfg, core, bus, clock, outputs, recorder)
        freeze_heap()
        svc.start()
        # a timed wait: a SIGTERM delivered to another thread runs its Python handler only when this (main)
        # thread is back in the interpreter, which an untimed wait delays until something else wakes it
        while not stop.wait(0.5):
            pass
        svc.stop()
        core.journal_event("TRADER_STOP", {"capital": core.account.capital, "last_scan": core.last_scan})
        if recorder is not None:
            recorder.close({"journal_end_id": journal.last_event_id(), "capital": core.account.capital,
                            "last_scan": core.last_scan})
        if isinstance(account_type, VenueAccounts) and account_type.preflight is not None:
            account_type.preflight.stop()
        if hasattr(core.account, "runtime"):
            core.account.stop()
        journal.close()
        return 0
    finally:
        lock.release()


def freeze_heap() -> None:
    """Move the start-up heap (the engine, numba's and the libraries' objects) out of the collector's reach.

    A full (generation 2) collection walks every tracked object: with the start-up heap in it, one took
    100-190 ms on the trader's reactor or decision thread under load (the mesh bench's tail). Frozen, the
    collector only walks what was allocated since; the frozen objects are never freed, which is what they
    were going to be anyway (they live as long as the process).
    """
    gc.collect()
    gc.freeze()
    log.info("start-up heap frozen: %d objects out of the collector's reach", gc.get_freeze_count())


def open_recorder(cfg: TraderConfig, clock: Callable[[], float]) -> Recorder | None:
    """Open the run's recording directory (prod/trading/recording.py) for the core; None (logged) on error."""
    parent = Path(cfg.record_dir) if cfg.record_dir else Path(cfg.settings.data_dir) / "recordings"
    try:
        return Recorder.open(parent, clock)
    except (OSError, ValueError) as exc:
        log.error("recording not started (%s): this run cannot be replayed by prod.backtest.parity", exc)
        return None


def begin_recording(rec: Recorder, cfg: TraderConfig, core: TraderCore, journal: Journal, params: EngineParams,
                    mode: str) -> bool:
    """Write the recording's config (the snapshot the core restored from); False (logged, recording stopped)
    on error."""
    try:
        rec.write_config({
            "execution": mode, "symbols": list(core.symbols), "params": params.to_dict(),
            "limits": dataclasses.asdict(cfg.limits), "journal": str(Path(journal.db_path).resolve()),
            "journal_start_id": journal.last_event_id(), "initial_snapshot": list(core.snapshot_now())})
    except (OSError, ValueError, TypeError) as exc:
        rec.stop_recording(f"config not written: {exc}")
        log.error("recording not started (%s): this run cannot be replayed by prod.backtest.parity", exc)
        return False
    return True


def start_recorder(cfg: TraderConfig, core_args: dict, journal: Journal, params: EngineParams,
                   mode: str) -> tuple[TraderCore, Recorder | None]:
    """A core built with a recorder (``TraderCore(**core_args, recorder=...)``) whose config is written: what
    :func:`run` does, for tests and benches that drive a recorded core without the bus."""
    rec = open_recorder(cfg, core_args["clock"])
    core = TraderCore(journal=journal, params=params, recorder=rec, **core_args)
    if rec is not None and not begin_recording(rec, cfg, core, journal, params, mode):
        rec = None
    return core, rec


class VenueAccounts:
    """The account factory for ``execution=venue``: ``new``/``from_dict`` connect a :class:`VenueAccount`, then
    run the preflight (prod/execution/preflight.py) on its REST client: entries it refuses are refused by the
    account (:class:`~prod.execution.preflight.EntryGate`), a fresh account's capital is min(the wallet's
    available USDT, the allocation), and while every entry is refused the preflight runs again every
    ``preflight_retry_s``."""

    def __init__(self, cfg: TraderConfig, journal: Journal, params: EngineParams | None = None,
                 creds: Credentials | None = None):
        self.cfg, self.journal, self.params = cfg, journal, params
        self.costs = Costs.of(params) if params is not None else DEFAULT_COSTS
        self.creds = creds or Credentials.from_env()  # MissingCredentials names the variables; never logged
        self.preflight: Any = None                   # the PreflightRunner, once connected

    def new(self, capital: float) -> Any:
        return self.from_dict(None, capital)

    def from_dict(self, d: Any, capital: float | None = None) -> Any:
        from prod.trading.venue_account import VenueAccount
        import time as _time
        ec = ExecConfig.from_settings(self.cfg.settings, fill_timeout_s=self.cfg.fill_timeout_s)
        cap = float(d["capital"]) if d else float(capital or 0.0)
        deadline = _time.monotonic() + self.cfg.venue_connect_s
        while True:                       # the venue (simulator) may still be starting: retry, then give up
            try:
                acct = VenueAccount.connect(ec, self.journal, cap, state=d, creds=self.creds,
                                            kill_switch=self.cfg.kill_switch, safety=self.cfg.safety,
                                            start_safety=False, costs=self.costs)
                break
            except (ExecutionError, OSError) as exc:
                if _time.monotonic() >= deadline:
                    self.explain(ec)
                    raise
                log.warning("venue at %s not ready (%s); retrying", ec.rest_base, exc)
                _time.sleep(1.0)
        self.run_preflight(acct, fresh=d is None)
        acct.rebase()              # the reconcile's baseline: the account as the preflight left it
        acct.start_safety()
        return acct

    def explain(self, ec: ExecConfig) -> None:
        """The venue could not be used at all: log the preflight's lines (which check, which endpoint and code)."""
        import asyncio
        from prod.execution.preflight import PreflightConfig, run_preflight
        from prod.execution.rest import OrderRestClient
        params = getattr(self, "params", None) or load_engine_params()
        pcfg = PreflightConfig.from_settings(self.cfg.settings, params, recv_window_ms=ec.recv_window_ms)

        async def go() -> Any:
            async with OrderRestClient(ec.rest_base, self.creds, timeout_s=ec.timeout_s, retries=1) as rest:
                return await run_preflight(rest, pcfg)
        try:
            for line in asyncio.run(go()).lines():
                (log.info if line.startswith(("PASS", "SKIP")) else log.critical)("preflight: %s", line)
        except Exception as exc:  # noqa: BLE001 - best effort: the caller reports the connect error anyway
            log.error("preflight not run: %s", exc)

    def run_preflight(self, acct: Any, fresh: bool) -> Any:
        """Run the preflight on ``acct``'s runtime, gate its entries, take a fresh account's capital from the wallet."""
        from prod.execution.preflight import EntryGate, PreflightConfig, PreflightRunner
        params = getattr(self, "params", None) or load_engine_params()
        pcfg = PreflightConfig.from_settings(self.cfg.settings, params, recv_window_ms=acct.runtime.cfg.recv_window_ms)
        gate = EntryGate()
        acct.gate = gate
        def on_report(r: Any) -> None:
            acct.held.append("PREFLIGHT", r.to_dict())       # the journal's audit chain keeps every run
            if r.fees is not None:                           # non-USDT commissions are booked at these rates
                acct.client.fee_rates = r.fees
        runner = PreflightRunner(acct.runtime, pcfg, gate, self.cfg.preflight_retry_s, on_report=on_report)
        self.preflight = runner
        try:
            report = runner.run_once()
        except Exception as exc:  # noqa: BLE001 - the venue went away again: refuse entries, retry in the thread
            log.error("preflight not run (%s: %s): every entry refused until it passes", type(exc).__name__, exc)
            gate.close(f"preflight not run: {exc}")
            report = None
        wallet = None if report is None else report.capital
        if wallet is None:
            runner.capital_from_wallet = not fresh      # a restored account keeps its journaled capital
            if fresh:
                gate.close("the wallet could not be read at start, so the capital is unknown: restart the trader")
        elif fresh:
            acct.capital = acct.peak_capital = acct.day_start_capital = wallet
            log.warning("capital %.2f USDT = min(wallet available %.2f, allocation %.2f)", wallet,
                        report.wallet_available, report.allocation)
        elif acct.position is None and acct.capital > (report.wallet_available or 0.0):
            log.warning("journaled capital %.2f exceeds the wallet's available %.2f USDT: capital set to the wallet",
                        acct.capital, report.wallet_available)
            acct.capital = float(report.wallet_available or 0.0)
        else:
            log.warning("capital %.2f USDT from the journal (wallet available %.2f, allocation %.2f)", acct.capital,
                        report.wallet_available, report.allocation)
        if not gate.open:
            log.critical("REFUSING ENTRIES: %s", gate.refusal(""))
            runner.start_retry()
        return report


def main(argv: list[str] | None = None) -> int:
    return Service.main(SERVICE_NAME, TraderConfig, run, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
