"""The service skeleton every supervised DOLPHIN process is built on.

Design notes: ``docs/design/prod.runtime.md``.
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
