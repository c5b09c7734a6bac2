"""MC-forewarner service: assess the active config with the forewarner model and publish ``mc_forewarner_latest``.

Design notes: ``docs/design/services.mc_forewarner.md``.
"""
from __future__ import annotations

import logging
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from prod.bus import maps
from prod.configs import BLUE_PATH, load_config
from prod.mc.assess import assess, assess_error, default_model_path
from prod.runtime import Bus, Clock, RateLog, Service, result_within
from prod.settings import Settings

log = logging.getLogger("mc_forewarner")
SERVICE_NAME = "mc_forewarner"


@dataclass(frozen=True)
class ForewarnerConfig:
    ENV_PREFIX: ClassVar[str] = "DOLPHIN_MC_FOREWARNER_"
    settings: Settings
    config_path: Path = field(default=BLUE_PATH, metadata={"flags": ("--config",), "help": "strategy config to assess"})
    model_path: Path | None = field(default=None, metadata={
        "flags": ("--model",), "help": "forewarner model file (default <data_dir>/mc_models/<strategy>_forewarner.zip)"})
    interval_s: float = field(default=14_400.0, metadata={"help": "seconds between assessments (bible: 4 h)"})
    heartbeat_s: float = 15.0
    hz_timeout_s: float = 5.0
    once: bool = field(default=False, metadata={"help": "assess once, publish and exit (rc 1 when nothing was published)"})

    def __post_init__(self) -> None:
        if not 1.0 <= self.interval_s <= 7 * 86_400:
            raise ValueError(f"--interval-s {self.interval_s}: must be in [1, 604800] s")
        if self.heartbeat_s <= 0 or self.hz_timeout_s <= 0:
            raise ValueError("heartbeat_s and hz_timeout_s must be > 0")

    def model_for(self, strategy: str) -> Path:
        return self.model_path if self.model_path is not None else default_model_path(self.settings.data_dir, strategy)


def read_day_boost(bus: Bus, timeout: float = 5.0) -> float:
    """Return today's ACB boost from the bus, 1.0 when absent, malformed (dropped by the bus) or unreachable."""
    try:
        acb = bus.get(maps.ACB_BOOST, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - BusUnavailable / timeout: assess at boost 1.0
        log.warning("could not read %s (%r); day boost 1.0", maps.KEY_ACB_BOOST, exc)
        return 1.0
    if acb is None:
        return 1.0
    b = float(acb.boost)
    return b if math.isfinite(b) and b > 0 else 1.0


def assessment(fc: ForewarnerConfig, boost: float, now: float | None = None) -> dict[str, Any]:
    """Return this cycle's payload: the model's assessment, or FALLBACK_NO_DATA / FALLBACK_ERROR (never raises)."""
    try:
        cfg = load_config(fc.config_path)
    except Exception as exc:  # noqa: BLE001 - a bad config is published as FALLBACK_ERROR, named
        return assess_error(f"{type(exc).__name__}: {exc}", now)
    return assess(cfg, fc.model_for(cfg.strategy), boost, now)


def run_once(fc: ForewarnerConfig, bus: Bus, boost: float | None = None) -> dict[str, Any] | None:
    """One cycle: assess and publish. Return the payload, or None when it could not be published."""
    t0 = time.perf_counter()
    boost = read_day_boost(bus, fc.hz_timeout_s) if boost is None else boost
    payload = assessment(fc, boost)
    try:
        bus.publish(maps.MC_FOREWARNER, payload, timeout=fc.hz_timeout_s)
    except Exception as exc:  # noqa: BLE001 - BusUnavailable / timeout: logged, retried next cycle
        log.error("could not publish %s (%r)", maps.KEY_MC_FOREWARNER, exc)
        return None
    level = logging.INFO if payload["source"] == "REAL_MODEL" else logging.WARNING
    log.log(level, "mc_forewarner: status=%s source=%s prob=%s envelope=%s boost=%.3f%s in %.2fs",
            payload["status"], payload["source"], payload["catastrophic_prob"], payload["envelope_score"], boost,
            f" ({payload['reason']})" if payload.get("reason") else "", time.perf_counter() - t0)
    return payload


# ---------------------------------------------------------------- supervised loop
def _model_stamp(fc: ForewarnerConfig) -> tuple[str, float, int] | None:
    """(path, mtime, size) of the model file the next cycle would read; None when there is none."""
    try:
        cfg_strategy = load_config(fc.config_path).strategy
        path = fc.model_for(cfg_strategy)
        st = path.stat()
    except Exception:  # noqa: BLE001 - no config or no file: nothing to watch
        return None
    return str(path), st.st_mtime, st.st_size


class _Beats:
    """Heartbeats of the loop: fire and forget, except the last one before exiting, which is waited for."""

    def __init__(self, bus: Bus, timeout: float):
        self.bus, self.timeout = bus, timeout
        self.rl = RateLog(log, 60.0)
        self.failed = 0

    def beat(self, wait: bool = False, **fields: Any) -> bool:
        try:
            fut = self.bus.heartbeat(**fields)
            if wait:      # the last heartbeat before exiting must reach the member
                result_within(fut, self.timeout)
            return True
        except Exception as exc:  # noqa: BLE001 - BusUnavailable / timeout: counted, logged rate-limited
            self.failed += 1
            self.rl.warning("hb", "heartbeat failed (%r); %d failed so far", exc, self.failed)
            return False


def run(fc: ForewarnerConfig, bus: Bus, clock: Clock, stop: threading.Event) -> int:
    """Wait for the bus, assess every ``fc.interval_s`` and when the day boost changes, until ``stop``.

    With ``fc.once``: one assessment, its heartbeat waited for, exit 0 (1 when nothing could be published
    or no member answers within ``settings.hz_connect_timeout_s``).
    """
    if fc.once:
        if not bus.wait_connected(fc.settings.hz_connect_timeout_s):
            log.error("no Hazelcast member at %s within %.0fs", ",".join(fc.settings.hz_members),
                      fc.settings.hz_connect_timeout_s)
            return 1
    else:
        while not stop.is_set() and not bus.wait_connected(1.0):
            pass
    beats = _Beats(bus, fc.hz_timeout_s)
    while not stop.is_set():
        boost = read_day_boost(bus, fc.hz_timeout_s)
        stamp = _model_stamp(fc)
        payload = run_once(fc, bus, boost)
        last = ({"last_status": payload["status"], "last_source": payload["source"], "last_run": payload["ts"]}
                if payload else {"last_error": True})
        beats.beat(wait=fc.once, **last)
        if fc.once:
            return 0 if payload else 1
        deadline = clock.monotonic() + fc.interval_s
        while not stop.is_set() and clock.monotonic() < deadline:
            clock.wait(stop, min(fc.heartbeat_s, max(0.0, deadline - clock.monotonic())))
            if stop.is_set():
                break
            beats.beat(**last)
            now_boost = read_day_boost(bus, fc.hz_timeout_s)
            if payload is None:
                break        # not published: try again now
            if abs(now_boost - boost) > 1e-9:
                log.info("day boost %.4f -> %.4f: assessing again (§12: max_leverage x boost)", boost, now_boost)
                break
            if _model_stamp(fc) != stamp:
                log.info("model file changed: assessing again")
                break
    return 0


def main(argv: list[str] | None = None) -> int:
    return Service.main(SERVICE_NAME, ForewarnerConfig, run, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
