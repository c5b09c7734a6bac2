"""Safety watchdog: run the survival stack (bible §11) on live sensors and publish the posture.

Design notes: ``docs/design/services.safety_watchdog.md``.
"""
from __future__ import annotations

import logging
import math
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from prod.alpha.survival import SensorReadings, SurvivalStack
from prod import metrics
from prod.bus import maps
from prod.bus.payloads import EngineState, Exf, McForewarner, ObfUniverse, PayloadError
from prod.runtime import Bus, Clock, RateLog, Service, SystemClock, result_within
from prod.settings import PRIORITY_SYMBOLS, Settings
from prod.timeparse import parse_timestamp

log = logging.getLogger("safety_watchdog")
SERVICE_NAME = "safety_watchdog"
MC_STATUS_MAP = {"GREEN": "OK", "OK": "OK", "ORANGE": "ORANGE", "RED": "RED"}


@dataclass(frozen=True)
class WatchdogConfig:
    ENV_PREFIX: ClassVar[str] = "DOLPHIN_SAFETY_WATCHDOG_"
    settings: Settings
    interval_s: float = field(default=5.0, metadata={"flags": ("--interval",), "help": "seconds between ticks"})
    ob_stale_s: float = field(default=180.0, metadata={"help": "OBF snapshot older than this is stale (Cat3)"})
    dvol_spike_level: float = 80.0
    dvol_spike_jump: float = 15.0
    hz_timeout_s: float = field(default=3.0, metadata={"help": "wait for one bus read or write"})
    warmup_max_s: float = 90.0

    def __post_init__(self) -> None:
        if not 0.05 <= self.interval_s <= 300:
            raise ValueError(f"--interval {self.interval_s}: must be in [0.05, 300] s")
        if self.ob_stale_s <= 0 or self.hz_timeout_s <= 0 or self.warmup_max_s < 0:
            raise ValueError("ob_stale_s and hz_timeout_s must be > 0, warmup_max_s >= 0")


def _ts(v: Any) -> float | None:
    return parse_timestamp(v) if isinstance(v, (int, float, str)) else None


def mc_reading(mc: McForewarner | None, now: float) -> tuple[str, float, str]:
    """Return (survival MC status, staleness hours, source label); absent → ORANGE fallback."""
    if mc is None:
        return "ORANGE", 0.0, "FALLBACK_NO_DATA"
    status = MC_STATUS_MAP.get(mc.status.upper(), "ORANGE")
    ts = _ts(maps.MC_FOREWARNER.written_at(mc))
    stale_h = 0.0 if ts is None else max(0.0, (now - ts) / 3600.0)
    return status, stale_h, mc.source or "HZ"


def ob_reading(obf: ObfUniverse | None, now: float, stale_s: float,
               symbols=PRIORITY_SYMBOLS) -> tuple[bool, float, float]:
    """Return (ob_stale, depth_quality, fill_prob) from the OBF universe snapshot."""
    if obf is None:
        return True, math.nan, math.nan
    ts = _ts(maps.OBF_UNIVERSE.written_at(obf))
    assets = obf.assets if isinstance(obf.assets, dict) else {}
    dq, fp = [], []
    for s in symbols:
        a = assets.get(s)
        if not isinstance(a, dict):
            continue
        d = a.get("depth_quality_rel", a.get("depth_quality"))
        f = a.get("fill_probability_rel", a.get("fill_probability"))
        if isinstance(d, (int, float)) and isinstance(f, (int, float)) and math.isfinite(d) and math.isfinite(f):
            dq.append(min(1.0, max(0.0, float(d))))
            fp.append(min(1.0, max(0.0, float(f))))
    if ts is None or now - ts > stale_s or not dq:
        return True, math.nan, math.nan
    return False, sum(dq) / len(dq), sum(fp) / len(fp)


def drawdown_from_state(state: EngineState | None) -> float:
    """Return 1 − capital / peak_capital of the trader's state in [0, 1] (0 when absent or unusable)."""
    if state is None:
        return 0.0
    cap = state.capital
    peak = state.peak_capital if state.peak_capital is not None else cap
    if not (math.isfinite(cap) and math.isfinite(peak)) or peak <= 0:
        return 0.0
    return min(1.0, max(0.0, 1.0 - cap / peak))


def dvol_from_exf(exf: Exf | None) -> Any:
    """Return BTC DVOL from the ExF payload: the flat ``dvol_btc`` value, else ``indicators.dvol_btc.value``."""
    if exf is None:
        return None
    dvol = exf.value("dvol_btc")
    ind = exf.indicators.get("dvol_btc")
    if dvol is None and isinstance(ind, dict):
        dvol = ind.get("value")
    return dvol


class DvolSpikeTracker:
    """Remember when the last DVOL spike was seen (level or jump rule)."""

    def __init__(self, level: float, jump: float):
        self.level, self.jump = level, jump
        self.last_value: float | None = None
        self.last_spike_ts: float | None = None

    def update(self, dvol: Any, now: float) -> float | None:
        """Feed a DVOL reading (None/garbage ignored); return minutes since the last spike or None."""
        if isinstance(dvol, (int, float)) and not isinstance(dvol, bool) and math.isfinite(dvol):
            v = float(dvol)
            if v >= self.level or (self.last_value is not None and v - self.last_value >= self.jump):
                self.last_spike_ts = now
            self.last_value = v
        if self.last_spike_ts is None:
            return None
        return max(0.0, (now - self.last_spike_ts) / 60.0)


def _finite_or_none(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


class SafetyWatchdog:
    """Gather sensors, update the survival stack, publish; one :meth:`tick` per interval."""

    def __init__(self, cfg: WatchdogConfig, bus: Bus, clock: Clock | None = None):
        self.cfg, self.bus, self.clock = cfg, bus, clock or SystemClock()
        self.stack = SurvivalStack()
        self.dvol = DvolSpikeTracker(cfg.dvol_spike_level, cfg.dvol_spike_jump)
        self.last_ts: float | None = None
        self.started = self.clock.time()
        self.warm = False
        self.publish_failures = 0
        self.rl = RateLog(log, 30.0)
        self.kept: dict[str, Any] = {}       # the last valid reading of each sensor map (see the docstring)
        self.kept_used: dict[str, int] = {}  # ticks that fell back on it
        self._restore()

    def _valid(self, name: str, value: Any) -> Any:
        """``value`` if the read gave one (and keep it), else the last valid reading of ``name`` (or None)."""
        if value is not None:
            self.kept[name] = value
            return value
        kept = self.kept.get(name)
        if kept is not None:
            self.kept_used[name] = self.kept_used.get(name, 0) + 1
        return kept

    def _restore(self) -> None:
        try:
            prev = self.bus.get(maps.SAFETY_LATEST, timeout=self.cfg.hz_timeout_s)
        except Exception as exc:  # noqa: BLE001 - no previous state is a fresh start, never a crash
            log.warning("could not read previous safety state (%r); starting fresh", exc)
            return
        if prev is not None and prev.stack_state:
            try:
                self.stack = SurvivalStack.from_state(prev.stack_state)
                self.last_ts = _ts(maps.SAFETY_LATEST.written_at(prev))
                self.warm = self.stack.rm is not None
                log.info("resumed survival stack: %s", prev.stack_state)
            except ValueError as exc:
                log.warning("previous stack state unusable (%s); starting fresh", exc)

    def _heartbeat_ages(self, now: float) -> list[float]:
        entries = result_within(self.bus.map(maps.HEARTBEAT).entry_set(), self.cfg.hz_timeout_s)
        ages = []
        for k, v in entries:
            if k == self.bus.service:
                continue
            try:
                ts = maps.HEARTBEATS.written_at(maps.HEARTBEATS.decode(v, k))
            except PayloadError:
                continue
            if ts is not None:
                ages.append(now - ts)
        return ages

    def gather(self, now: float) -> tuple[SensorReadings, dict]:
        """Read every sensor from the bus; a dead bus gives hz_nodes=0 (Cat1 kill)."""
        t = self.cfg.hz_timeout_s
        try:
            ages = self._heartbeat_ages(now)
            hz_nodes = max(1, len(self.bus.client.cluster_service.get_members()))
            mc = self._valid("mc", self.bus.get(maps.MC_FOREWARNER, timeout=t))
            obf = self._valid("obf", self.bus.get(maps.OBF_UNIVERSE, timeout=t))
            exf = self.bus.get(maps.EXF, timeout=t)
            st = self._valid("state", self.bus.get(maps.STATE_LATEST, timeout=t))
        except Exception as exc:  # noqa: BLE001 - BusUnavailable, a timeout or a lost member: all Cat1
            self.rl.warning("bus-down", "bus unreachable (%r): Cat1 kill", exc)
            return SensorReadings(hz_nodes=0, heartbeat_age_s=math.inf), {"bus": "down"}
        hb_age = max(0.0, min(ages)) if ages else math.inf
        mc_status, stale_h, mc_source = mc_reading(mc, now)
        ob_stale, dq, fp = ob_reading(obf, now, self.cfg.ob_stale_s)
        dvol = dvol_from_exf(exf)
        mins = self.dvol.update(dvol, now)
        extra = dict(obf_present=obf is not None, mc_source=mc_source,
                     dvol_btc=dvol if isinstance(dvol, (int, float)) and not isinstance(dvol, bool) else None,
                     n_heartbeats=len(ages), kept_readings=dict(self.kept_used))
        extra["mc_reported"] = mc_status    # reported only; §12's effect is the trader's (see the docstring)
        return SensorReadings(hz_nodes=hz_nodes, heartbeat_age_s=hb_age, mc_status="OK",
                              staleness_hours=stale_h, ob_stale=ob_stale, depth_quality=dq, fill_prob=fp,
                              minutes_since_dvol_spike=mins, drawdown=drawdown_from_state(st)), extra

    def tick(self) -> dict:
        """Run one survival update and publish it; return the payload."""
        now = self.clock.time()
        readings, extra = self.gather(now)
        if not self.warm:
            ready = (readings.hz_nodes >= 1 and math.isfinite(readings.heartbeat_age_s)
                     and readings.heartbeat_age_s <= 30.0 and extra.get("obf_present"))
            if not ready and now - self.started < self.cfg.warmup_max_s:
                payload = {"posture": "HIBERNATE", "Rm": 0.0, "ts": now, "warming_up": True,
                           "sensors": _finite_or_none(asdict(readings)) | extra}
                self.publish(payload)
                return payload
            self.warm = True
            log.info("warm-up done after %.1fs: the survival stack starts from this reading", now - self.started)
        dt_min = 0.0 if self.last_ts is None else max(0.0, (now - self.last_ts) / 60.0)
        self.last_ts = now
        res = self.stack.update(readings, dt_min)
        payload = {"posture": res.posture.value, "Rm": res.rm, "ts": now, "r_target": res.r_target,
                   "candidate": res.candidate.value, "categories": res.categories, "degraded": res.degraded,
                   "sensors": {**_finite_or_none(asdict(readings)), **extra}, "stack_state": self.stack.state()}
        if res.changed:
            log.warning("posture -> %s (Rm=%.3f, target=%.3f, cats=%s)", res.posture.value, res.rm, res.r_target,
                        res.categories)
        self.publish(payload)
        return payload

    def publish(self, payload: dict) -> bool:
        """Encode ``payload`` once and write it to the AtomicReference and the map; heartbeat. False if skipped."""
        try:
            text = maps.SAFETY_LATEST.encode(payload)
        except PayloadError as exc:
            log.error("not published: %s", exc)
            return False
        try:
            result_within(self.bus.cp.get_atomic_reference(maps.SAFETY_ATOMIC_REF).set(text), self.cfg.hz_timeout_s)
            self.bus.map(maps.SAFETY).set(maps.KEY_LATEST, text)
            self.bus.heartbeat(now=payload["ts"], posture=payload["posture"])
            metrics.record_safety(payload)
        except Exception as exc:  # noqa: BLE001 - BusUnavailable / timeout: skip this tick, retry the next
            self.publish_failures += 1
            self.rl.warning("publish", "publish failed (%r); %d skipped so far, will retry next tick",
                            exc, self.publish_failures)
            return False
        return True


def run(cfg: WatchdogConfig, bus: Bus, clock: Clock, stop: threading.Event) -> int:
    """Wait for the bus, then tick every ``cfg.interval_s`` until ``stop`` is set."""
    while not stop.is_set() and not bus.wait_connected(1.0):
        pass
    if stop.is_set():
        return 0
    wd = SafetyWatchdog(cfg, bus, clock)
    while not stop.is_set():
        t0 = clock.monotonic()
        try:
            p = wd.tick()
            log.info("posture=%s Rm=%.3f cats=%s", p["posture"], p["Rm"],
                     {k: round(v, 3) for k, v in p.get("categories", {}).items()})
        except Exception:  # noqa: BLE001 - one bad tick must not stop the watchdog
            log.exception("watchdog tick failed")
        clock.wait(stop, max(0.0, cfg.interval_s - (clock.monotonic() - t0)))
    return 0


def main(argv: list[str] | None = None) -> int:
    return Service.main(SERVICE_NAME, WatchdogConfig, run, argv, description=__doc__.splitlines()[0])


__all__ = ["WatchdogConfig", "SafetyWatchdog", "run", "main", "mc_reading", "ob_reading", "drawdown_from_state",
           "DvolSpikeTracker", "dvol_from_exf"]
