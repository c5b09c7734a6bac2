"""Safety watchdog: run the survival stack (bible §11) on live sensors and publish the posture.

Every ``interval_s`` it gathers the five sensor categories from the bus, feeds them to
:class:`prod.alpha.survival.SurvivalStack` and writes the result to the CP AtomicReference
``DOLPHIN_SAFETY`` (linearizable; what the trader reads first, §14.6) and to the map
``DOLPHIN_SAFETY["latest"]`` (fallback). The stack's state rides in the payload, so a restarted
watchdog resumes its Rm and hysteresis instead of jumping.

Sensors (decisions of ours where the bible leaves the source open):

- Cat1: ``hz_nodes`` = member count when a bus read succeeds, else 0; ``heartbeat_age_s`` = age of
  the freshest heartbeat in ``DOLPHIN_HEARTBEAT`` written by any *other* service.
- Cat2: ``mc_forewarner_latest`` status (GREEN→OK, ORANGE, RED) and its age; when the key is
  absent the bible's FALLBACK_NO_DATA applies: ORANGE with staleness 0 (§28.6).
- Cat3: mean ``depth_quality`` / ``fill_probability`` over the priority symbols present in
  ``obf_universe_latest``; stale when that snapshot is absent or older than ``ob_stale_s``.
- Cat4: a DVOL spike is ``dvol_btc`` ≥ ``dvol_spike_level`` (80, ACB "extreme") or a rise of
  ≥ ``dvol_spike_jump`` (15) points between two readings; minutes since the last spike feed the impulse.
- Cat5: drawdown = 1 − capital / peak_capital from ``DOLPHIN_STATE_BLUE["latest"]`` (0 if absent).
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

from prod.alpha.survival import SensorReadings, SurvivalStack
from prod.bus import maps
from services.lifecycle import serve, setup_logging
from prod.settings import PRIORITY_SYMBOLS, Settings, load_settings

log = logging.getLogger("safety_watchdog")
SERVICE_NAME = "safety_watchdog"
MC_STATUS_MAP = {"GREEN": "OK", "OK": "OK", "ORANGE": "ORANGE", "RED": "RED"}


@dataclass(frozen=True)
class WatchdogConfig:
    settings: Settings
    interval_s: float = 5.0
    ob_stale_s: float = 180.0
    dvol_spike_level: float = 80.0
    dvol_spike_jump: float = 15.0
    hz_timeout_s: float = 3.0
    warmup_max_s: float = 90.0

    def __post_init__(self) -> None:
        if not 0.05 <= self.interval_s <= 300:
            raise ValueError(f"--interval {self.interval_s}: must be in [0.05, 300] s")


def result_within(fut: Any, timeout: float) -> Any:
    """Wait for a hazelcast Future at most ``timeout`` seconds (TimeoutError otherwise)."""
    done = threading.Event()
    fut.add_done_callback(lambda _f: done.set())
    if not done.wait(timeout):
        raise TimeoutError("hazelcast call timed out")
    return fut.result()


def _ts(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        if isinstance(v, str):
            from services.meta_health.main import parse_timestamp
            return parse_timestamp(v)
        return None
    return float(v)


def mc_reading(mc: Mapping[str, Any] | None, now: float) -> tuple[str, float, str]:
    """Return (survival MC status, staleness hours, source label); absent → ORANGE fallback."""
    if mc is None:
        return "ORANGE", 0.0, "FALLBACK_NO_DATA"
    status = MC_STATUS_MAP.get(str(mc.get("status", "")).upper(), "ORANGE")
    ts = _ts(mc.get("ts")) or _ts(mc.get("timestamp"))
    stale_h = 0.0 if ts is None else max(0.0, (now - ts) / 3600.0)
    return status, stale_h, str(mc.get("source", "HZ"))


def ob_reading(obf: Mapping[str, Any] | None, now: float, stale_s: float,
               symbols=PRIORITY_SYMBOLS) -> tuple[bool, float, float]:
    """Return (ob_stale, depth_quality, fill_prob) from the OBF universe snapshot."""
    if obf is None:
        return True, math.nan, math.nan
    ts = _ts(obf.get("_snapshot_utc"))
    assets = obf.get("assets") if isinstance(obf.get("assets"), dict) else {}
    dq, fp = [], []
    for s in symbols:
        a = assets.get(s)
        if not isinstance(a, dict):
            continue
        d, f = a.get("depth_quality"), a.get("fill_probability")
        if isinstance(d, (int, float)) and isinstance(f, (int, float)) and math.isfinite(d) and math.isfinite(f):
            dq.append(min(1.0, max(0.0, float(d))))
            fp.append(min(1.0, max(0.0, float(f))))
    if ts is None or now - ts > stale_s or not dq:
        return True, math.nan, math.nan
    return False, sum(dq) / len(dq), sum(fp) / len(fp)


def drawdown_from_state(state: Mapping[str, Any] | None) -> float:
    if not state:
        return 0.0
    try:
        cap, peak = float(state.get("capital")), float(state.get("peak_capital", state.get("capital")))
    except (TypeError, ValueError):
        return 0.0
    if not (math.isfinite(cap) and math.isfinite(peak)) or peak <= 0:
        return 0.0
    return min(1.0, max(0.0, 1.0 - cap / peak))


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


class SafetyWatchdog:
    """Gather sensors, update the survival stack, publish; one :meth:`tick` per interval."""

    def __init__(self, cfg: WatchdogConfig, client: Any, clock: Callable[[], float] = time.time):
        self.cfg, self.client, self.clock = cfg, client, clock
        self.stack = SurvivalStack()
        self.dvol = DvolSpikeTracker(cfg.dvol_spike_level, cfg.dvol_spike_jump)
        self.last_ts: float | None = None
        self.started = clock()
        self.warm = False
        self._restore()

    def _get(self, map_name: str, key: str) -> dict | None:
        raw = result_within(self.client.get_map(map_name).get(key), self.cfg.hz_timeout_s)
        if raw is None:
            return None
        try:
            return maps.decode(map_name, key, raw)
        except maps.PayloadError as exc:
            log.warning("ignored bad payload: %s", exc)
            return None

    def _restore(self) -> None:
        try:
            prev = self._get(maps.SAFETY, maps.KEY_LATEST)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not read previous safety state (%r); starting fresh", exc)
            return
        if prev and isinstance(prev.get("stack_state"), dict):
            try:
                self.stack = SurvivalStack.from_state(prev["stack_state"])
                self.last_ts = _ts(prev.get("ts"))
                self.warm = self.stack.rm is not None
                log.info("resumed survival stack: %s", prev["stack_state"])
            except ValueError as exc:
                log.warning("previous stack state unusable (%s); starting fresh", exc)

    def gather(self, now: float) -> tuple[SensorReadings, dict]:
        """Read every sensor from the bus; a dead bus gives hz_nodes=0 (Cat1 kill)."""
        extra: dict[str, Any] = {}
        try:
            entries = result_within(self.client.get_map(maps.HEARTBEAT).entry_set(), self.cfg.hz_timeout_s)
            hz_nodes = max(1, len(self.client.cluster_service.get_members()))
        except Exception as exc:  # noqa: BLE001
            log.warning("bus unreachable (%r): Cat1 kill", exc)
            return SensorReadings(hz_nodes=0, heartbeat_age_s=math.inf), {"bus": "down"}
        ages = []
        for k, v in entries:
            if k == SERVICE_NAME:
                continue
            try:
                ages.append(now - float(maps.decode(maps.HEARTBEAT, k, v)["ts"]))
            except (maps.PayloadError, TypeError, ValueError):
                continue
        hb_age = max(0.0, min(ages)) if ages else math.inf
        try:
            mc = self._get(maps.FEATURES, maps.KEY_MC_FOREWARNER)
            obf = self._get(maps.FEATURES, maps.KEY_OBF_UNIVERSE)
            exf = self._get(maps.FEATURES, maps.KEY_EXF)
            st = self._get(maps.STATE_BLUE, maps.KEY_LATEST)
        except Exception as exc:  # noqa: BLE001
            log.warning("bus read failed (%r): Cat1 kill", exc)
            return SensorReadings(hz_nodes=0, heartbeat_age_s=math.inf), {"bus": "down"}
        mc_status, stale_h, mc_source = mc_reading(mc, now)
        ob_stale, dq, fp = ob_reading(obf, now, self.cfg.ob_stale_s)
        dvol = None
        if exf is not None:   # flat top-level value; else indicators.dvol_btc.value
            dvol = exf.get("dvol_btc")
            ind = exf.get("indicators") if isinstance(exf.get("indicators"), dict) else {}
            if dvol is None and isinstance(ind.get("dvol_btc"), dict):
                dvol = ind["dvol_btc"].get("value")
        mins = self.dvol.update(dvol, now)
        dd = drawdown_from_state(st)
        extra.update(obf_present=obf is not None, mc_source=mc_source, dvol_btc=dvol if isinstance(dvol, (int, float)) else None,
                     n_heartbeats=len(ages))
        return SensorReadings(hz_nodes=hz_nodes, heartbeat_age_s=hb_age, mc_status=mc_status,
                              staleness_hours=stale_h, ob_stale=ob_stale, depth_quality=dq, fill_prob=fp,
                              minutes_since_dvol_spike=mins, drawdown=dd), extra

    def tick(self) -> dict:
        """Run one survival update and publish it; return the payload."""
        now = self.clock()
        readings, extra = self.gather(now)
        if not self.warm:
            ready = (readings.hz_nodes >= 1 and math.isfinite(readings.heartbeat_age_s)
                     and readings.heartbeat_age_s <= 30.0 and extra.get("obf_present"))
            if not ready and now - self.started < self.cfg.warmup_max_s:
                payload = {"posture": "HIBERNATE", "Rm": 0.0, "ts": now, "warming_up": True,
                           "sensors": {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                       for k, v in asdict(readings).items()} | extra}
                self.publish(payload)
                return payload
            self.warm = True
            log.info("warm-up done after %.1fs: the survival stack starts from this reading", now - self.started)
        dt_min = 0.0 if self.last_ts is None else max(0.0, (now - self.last_ts) / 60.0)
        self.last_ts = now
        res = self.stack.update(readings, dt_min)
        sensors = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                   for k, v in asdict(readings).items()}
        payload = {"posture": res.posture.value, "Rm": res.rm, "ts": now, "r_target": res.r_target,
                   "candidate": res.candidate.value, "categories": res.categories, "degraded": res.degraded,
                   "sensors": {**sensors, **extra}, "stack_state": self.stack.state()}
        if res.changed:
            log.warning("posture -> %s (Rm=%.3f, target=%.3f, cats=%s)", res.posture.value, res.rm, res.r_target,
                        res.categories)
        self.publish(payload)
        return payload

    def publish(self, payload: dict) -> None:
        try:
            text = maps.encode(maps.SAFETY, maps.KEY_LATEST, payload)
            result_within(self.client.cp_subsystem.get_atomic_reference(maps.SAFETY_ATOMIC_REF).set(text),
                          self.cfg.hz_timeout_s)
            self.client.get_map(maps.SAFETY).set(maps.KEY_LATEST, text)
            from prod.bus.client import write_heartbeat
            write_heartbeat(self.client, SERVICE_NAME, now=payload["ts"], posture=payload["posture"])
        except Exception as exc:  # noqa: BLE001
            log.warning("publish failed (%r); will retry next tick", exc)


def run(cfg: WatchdogConfig, stop: threading.Event) -> None:
    """Connect and tick every ``cfg.interval_s`` until ``stop`` is set."""
    from prod.bus.client import make_client
    client = None
    while client is None and not stop.is_set():
        try:
            client = make_client(cfg.settings, name=SERVICE_NAME)
        except Exception as exc:  # noqa: BLE001
            log.warning("Hazelcast not reachable (%r); retrying", exc)
            stop.wait(2.0)
    if client is None:
        return
    wd = SafetyWatchdog(cfg, client)
    try:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                p = wd.tick()
                log.info("posture=%s Rm=%.3f cats=%s", p["posture"], p["Rm"],
                         {k: round(v, 3) for k, v in p["categories"].items()})
            except Exception:  # noqa: BLE001
                log.exception("watchdog tick failed")
            stop.wait(max(0.0, cfg.interval_s - (time.monotonic() - t0)))
    finally:
        client.shutdown()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="DOLPHIN safety watchdog (survival stack)")
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--ob-stale-s", type=float, default=180.0)
    ap.add_argument("--hz-members", default=None)
    args = ap.parse_args(argv)
    setup_logging()
    settings = load_settings(hz_members=tuple(args.hz_members.split(",")) if args.hz_members else None)
    cfg = WatchdogConfig(settings=settings, interval_s=args.interval, ob_stale_s=args.ob_stale_s)
    return serve("safety_watchdog", cfg, run)


if __name__ == "__main__":
    sys.exit(main())
