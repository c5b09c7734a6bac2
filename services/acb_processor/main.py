"""acb_processor: ACB v6 boost and beta from ExF, scans and OB macro → ``acb_boost`` (bible §10, §15.5, §16.4).

Design notes: ``docs/design/services.acb_processor.md``.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from prod.alpha import acb
from prod.alpha.acb_live import LiveAcb
from prod.bus import maps
from prod.bus.payloads import AcbBoost, EigenScan, Exf, ObfUniverse
from prod.runtime import Bus, BusUnavailable, Clock, RateLog, Service, result_within
from prod.settings import Settings

SERVICE = "acb_processor"
log = logging.getLogger(SERVICE)


@dataclass(frozen=True)
class AcbConfig:
    """Effective configuration of acb_processor (frozen; each field a flag and a DOLPHIN_ACB_* variable)."""

    ENV_PREFIX: ClassVar[str] = "DOLPHIN_ACB_"
    settings: Settings
    exf_window: int = 10
    scan_history: int = 17_280
    min_scans: int = 50
    w750_recent: int = 10
    lock_timeout_s: float = 30.0
    hold_s: float = 0.0          # extra time the lock is held per write (tests make overlaps visible)
    heartbeat_s: float = 5.0
    bus_timeout_s: float = 5.0   # longest wait for one read or acknowledged write (SIGTERM waits at most this)

    def __post_init__(self) -> None:
        if self.exf_window < 1 or self.scan_history < 1 or self.min_scans < 1 or self.w750_recent < 1:
            raise ValueError("acb_processor config: windows must be >= 1")
        if self.lock_timeout_s <= 0 or self.hold_s < 0 or self.heartbeat_s <= 0 or self.bus_timeout_s <= 0:
            raise ValueError("acb_processor config: lock_timeout_s > 0, hold_s >= 0, heartbeat_s > 0, "
                             "bus_timeout_s > 0")


FACTOR_KEYS = acb.FACTOR_NAMES


class AcbInputs:
    """Live input state of the processor (owned by its main thread): the typed bus payloads into
    :class:`prod.alpha.acb_live.LiveAcb`, the pure state machine the backtest replays too."""

    def __init__(self, cfg: AcbConfig):
        self.cfg = cfg
        self.live = LiveAcb(exf_window=cfg.exf_window, scan_history=cfg.scan_history, min_scans=cfg.min_scans,
                            w750_recent=cfg.w750_recent)

    @property
    def exf(self):
        return self.live.exf

    @property
    def w750(self):
        return self.live.w750

    def add_exf(self, payload: Exf) -> bool:
        return self.live.add_exf(payload.pushed_at, {k: payload.value(k) for k in FACTOR_KEYS})

    def add_scan(self, payload: EigenScan) -> bool:
        return self.live.add_scan(payload.scan_number, payload.w750_velocity)

    def add_obf(self, payload: ObfUniverse) -> bool:
        return self.live.add_regime(payload.stats.get("regime_signal", payload.extra.get("regime_signal")))

    def seed_exf_history(self, exf_dir: Path, now: float) -> int:
        """Load today's rows of the exf Parquet history (newest ``exf_window``) into the window."""
        d = exf_dir / f"date={time.strftime('%Y-%m-%d', time.gmtime(now))}"
        if not d.is_dir():
            return 0
        import pyarrow.parquet as pq
        rows: list[dict] = []
        for p in sorted(d.glob("part-*.parquet")):
            try:
                # ParquetFile, not read_table: read_table imports pandas (~50 MB held for the process's life)
                rows.extend(pq.ParquetFile(p).read().to_pylist())
            except Exception as exc:  # noqa: BLE001 - a truncated file is skipped, named
                log.warning("exf history %s unreadable, skipped: %r", p, exc)
        rows.sort(key=lambda r: r.get("ts") or 0)
        return self.live.seed_exf(rows)

    def compute(self) -> tuple[acb.AcbResult, dict]:
        """Return the ACB result of the current inputs and the inputs as recorded in the payload."""
        return self.live.compute()


def _same(a: AcbBoost | None, res: acb.AcbResult) -> bool:
    return a is not None and a.boost == res.boost and a.beta == res.beta and a.signals == res.signals


_CONNECTED = object()      # queue marker: the bus (re)connected; re-read the current inputs
_INPUT_TOPICS = (maps.EXF, maps.EIGEN_SCAN, maps.OBF_UNIVERSE)


class Processor:
    """Listens, recomputes, writes under the CP lock; all bus I/O on the thread that calls :meth:`run`."""

    def __init__(self, cfg: AcbConfig, bus: Bus, clock: Clock):
        self.cfg = cfg
        self.bus = bus
        self.clock = clock
        self.inputs = AcbInputs(cfg)
        self.events: queue.Queue = queue.Queue()
        self.last_written: AcbBoost | None = None
        self.writes = 0
        self.skips = 0
        self.bus_failures = 0
        self.rl = RateLog(log, 30.0)
        self.stop = threading.Event()

    def listen(self) -> None:
        """Typed listeners on the three inputs (the bus keeps them across reconnections)."""
        for topic in _INPUT_TOPICS:
            self.bus.listen(topic, lambda k, p, t=topic: self.events.put((t, p)))
        self.bus.on_connect(lambda _bus: self.events.put((_CONNECTED, None)))

    def load_current(self) -> bool:
        """Read the current value of every input; return whether any changed the inputs."""
        changed = False
        for topic in _INPUT_TOPICS:
            p = self.bus.get(topic)          # a malformed value is logged by the bus and read as None
            if p is not None:
                changed |= self.apply(topic, p)
        return changed

    def apply(self, topic: Any, payload: Any) -> bool:
        if topic is maps.EXF:
            return self.inputs.add_exf(payload)
        if topic is maps.EIGEN_SCAN:
            return self.inputs.add_scan(payload)
        if topic is maps.OBF_UNIVERSE:
            return self.inputs.add_obf(payload)
        return False

    def recompute_and_write(self) -> bool:
        """Compute; write acb_boost + acb_state_latest under the FencedLock if changed. True if written."""
        res, inputs = self.inputs.compute()
        if _same(self.last_written, res):
            self.skips += 1
            log.info("ACB unchanged (boost=%.6f beta=%.4f): write skipped, skips=%d", res.boost, res.beta, self.skips)
            return False
        bus, cfg = self.bus, self.cfg
        lock = bus.cp.get_lock(maps.ACB_LOCK)
        fence = result_within(lock.try_lock(cfg.lock_timeout_s), cfg.lock_timeout_s + bus.timeout_s)
        if not fence:
            log.warning("ACB lock %s not acquired within %.1fs; will retry on the next change",
                        maps.ACB_LOCK, cfg.lock_timeout_s)
            return False
        t_acq = self.clock.time()
        log.info("ACB lock acquired fence=%d t=%.6f pid=%d", fence, t_acq, os.getpid())
        wrote = False
        try:
            cur = bus.get(maps.ACB_BOOST)    # a malformed current value is logged and overwritten
            if _same(cur, res):
                self.skips += 1
                self.last_written = cur
            else:
                now = self.clock.time()
                boost = maps.ACB_BOOST.build(boost=res.boost, beta=res.beta, signals=res.signals, inputs=inputs,
                                             factor_weights=res.factor_weights, computed_at=now, fence=fence,
                                             writer_pid=os.getpid())
                bus.publish(maps.ACB_BOOST, boost)
                bus.publish(maps.ACB_STATE, dict(boost=res.boost, beta=res.beta, signals=res.signals,
                                                 computed_at=now, fence=fence, inputs=inputs))
                if cfg.hold_s:
                    self.clock.wait(self.stop, cfg.hold_s)   # test knob: widen the critical section
                self.last_written = boost
                self.writes += 1
                wrote = True
                log.info("ACB write boost=%.6f beta=%.4f signals=%.2f fence=%d", res.boost, res.beta,
                         res.signals, fence)
        finally:
            t_rel = self.clock.time()
            try:
                result_within(lock.unlock(), bus.timeout_s)
            finally:
                log.info("ACB lock released fence=%d t=%.6f wrote=%s", fence, t_rel, wrote)
        return wrote

    def _bus_failed(self, what: str, exc: Exception) -> None:
        self.bus_failures += 1
        why = "not connected" if isinstance(exc, BusUnavailable) else repr(exc)
        self.rl.warning(f"bus:{what}", "%s failed (%s); retrying on the next change or heartbeat "
                        "(bus failures so far: %d)", what, why, self.bus_failures)

    def _safe_recompute(self) -> None:
        try:
            self.recompute_and_write()
        except Exception as exc:  # noqa: BLE001 - member away / lock lost: retry on the next change
            self.last_written = None
            if isinstance(exc, (BusUnavailable, TimeoutError)):
                self._bus_failed("ACB recompute/write", exc)
            else:
                log.error("ACB recompute/write failed: %r", exc)

    def _drain(self, first: tuple) -> tuple[bool, bool]:
        """Apply ``first`` and every queued event (one recompute per burst); return (changed, connected)."""
        changed = connected = False
        item: tuple | None = first
        while item is not None:
            topic, payload = item
            if topic is _CONNECTED:
                connected = True
            else:
                changed |= self.apply(topic, payload)
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                item = None
        return changed, connected

    def _heartbeat(self, now: float) -> None:
        try:
            self.bus.heartbeat(now=now, writes=self.writes, skips=self.skips, bus_failures=self.bus_failures)
            if self.last_written is not None and not result_within(
                    self.bus.map(maps.FEATURES).contains_key(maps.KEY_ACB_BOOST), self.bus.timeout_s):
                log.warning("acb_boost vanished from the bus (member restarted?): rewriting")
                self.last_written = None
                self._safe_recompute()
        except Exception as exc:  # noqa: BLE001 - member away: the bus reconnects by itself
            self._bus_failed("heartbeat", exc)

    def run(self, stop: threading.Event) -> None:
        self.stop = stop
        n = self.inputs.seed_exf_history(self.cfg.settings.data_dir / "exf", self.clock.time())
        if n:
            log.info("seeded the exf window with %d row(s) of today's history", n)
        self.listen()
        last_hb = -1e18
        while not stop.is_set():
            try:
                item = self.events.get(timeout=0.25)    # short: SIGTERM is seen within a quarter second
            except queue.Empty:
                item = None
            if item is not None:
                changed, connected = self._drain(item)
                if connected:
                    try:
                        changed |= self.load_current()
                    except Exception as exc:  # noqa: BLE001 - lost again at once: the next connect re-reads
                        self._bus_failed("reading the current inputs", exc)
                    changed = True            # first result, or a (possibly fresh) member to bring up to date
                if changed:
                    self._safe_recompute()
            now = self.clock.time()
            if now - last_hb >= self.cfg.heartbeat_s and self.bus.connected:
                last_hb = now
                self._heartbeat(now)


def run(cfg: AcbConfig, bus: Bus, clock: Clock, stop: threading.Event) -> int:
    """Process until SIGTERM/SIGINT; the bus connects in the background meanwhile."""
    Processor(cfg, bus, clock).run(stop)
    log.info("stopped cleanly")
    return 0


def _bus(cfg: AcbConfig) -> Bus:
    return Bus(cfg.settings, SERVICE, timeout_s=cfg.bus_timeout_s)


def main(argv: list[str] | None = None) -> int:
    return Service.main(SERVICE, AcbConfig, run, argv, description=__doc__.splitlines()[0], bus_factory=_bus)
