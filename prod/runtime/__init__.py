"""The service skeleton every supervised DOLPHIN process is built on.

* :class:`Bus` — the one Hazelcast connection of a process: connects in the background with backoff
  and jitter, typed ``get`` / ``publish`` / ``listen`` on :mod:`prod.bus.maps` topics, ``heartbeat``.
* :func:`result_within` — wait on a hazelcast future with a timeout (its ``result()`` takes none).
* :class:`RateLog` — rate-limited warnings, so a bad feed cannot flood a log.
* :func:`atomic_write` / :func:`atomic_write_json` — temp file + fsync + rename.
* :class:`Clock` — wall time, monotonic time and interruptible waits behind one object.
* :class:`Service` — ``Service.main(name, ConfigCls, run)``: flags and ``DOLPHIN_*`` variables onto a
  frozen config, logging, the effective config logged, SIGTERM/SIGINT installed before connecting,
  and ``run(cfg, bus, clock, stop) -> int``'s exit code returned.
"""
from prod.runtime.bus import Bus, BusUnavailable, result_within
from prod.runtime.clock import Clock, ManualClock, SystemClock
from prod.runtime.config import ConfigError, build_config, config_log_dict
from prod.runtime.files import atomic_write, atomic_write_json
from prod.ratelog import RateLog   # (lives below prod/runtime: prod/trading uses it without the bus)
from prod.runtime.service import EXIT_CONFIG, Service

__all__ = ["Bus", "BusUnavailable", "result_within", "Clock", "ManualClock", "SystemClock", "ConfigError",
           "build_config", "config_log_dict", "atomic_write", "atomic_write_json", "RateLog", "Service",
           "EXIT_CONFIG"]
