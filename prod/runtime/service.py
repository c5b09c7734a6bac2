"""``Service.main``: the one way a supervised DOLPHIN process starts, runs and stops.

Design notes: ``docs/design/prod.runtime.md``.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import logging
import os
import signal
import sys
import threading
from typing import Any, Callable, Mapping, Sequence

from prod.runtime.bus import Bus
from prod.runtime.clock import Clock, SystemClock
from prod.runtime.config import build_config, config_log_dict
from prod.settings import ConfigError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
EXIT_CONFIG = 2

RunFn = Callable[[Any, Bus, Clock, threading.Event], int | None]



def signal_stopper(stop: threading.Event, log: logging.Logger, name: str) -> Callable[[int, Any], None]:
    """A SIGTERM/SIGINT handler that sets ``stop`` from a helper thread.

    The handler runs in the main thread between two bytecodes, possibly while that thread, inside
    ``stop.wait()``, holds the event's (non-reentrant) lock: ``stop.set()`` called here would then wait
    for itself forever (a service that never stopped on SIGTERM, once, under load).
    """
    def _on_signal(signum: int, _frame: Any) -> None:
        if not stop.is_set():
            log.info("%s: %s received, stopping", name, signal.Signals(signum).name)
        threading.Thread(target=stop.set, name="signal-stop", daemon=True).start()
    return _on_signal

class _NoPandas(importlib.abc.MetaPathFinder):
    """A meta-path finder that answers ``import pandas`` as if pandas were not installed."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {fullname!r} (this DOLPHIN process runs without pandas)",
                                      name=fullname)
        return None


def without_pandas() -> None:
    """Run this process without pandas, which no DOLPHIN service uses: call it in a process entry.

    pyarrow imports pandas (about 55 MB resident) on its first array conversion whenever pandas is
    installed; with this finder first on ``sys.meta_path`` that import fails, which pyarrow treats as
    pandas not installed (its optional integration off, same files written). A process that already
    imported pandas keeps it. Never call it from a library or in a test process.
    """
    if "pandas" not in sys.modules and not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())


class _OneLineConnectionLog(logging.Filter):
    """Keep hazelcast's connection log to one line per attempt: no tracebacks, no duplicate line.

    The client logs "Error during initial connection to …" with a traceback *and* "Unable to get live
    cluster connection, retry in …" for every failed attempt; the second says it all.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Error during initial connection"):
            return False
        record.exc_info = None
        record.exc_text = None
        return True


def setup_logging(level: str | int = "INFO") -> None:
    """Configure the root logger with the format every DOLPHIN service uses.

    hazelcast's connection manager logs at WARNING and above only, one line per attempt.
    """
    if isinstance(level, str):
        lvl = logging.getLevelName(level.upper())
        if not isinstance(lvl, int):
            raise ConfigError(f"--log-level={level!r}: expected DEBUG, INFO, WARNING or ERROR")
        level = lvl
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)
    conn = logging.getLogger("hazelcast.connection")
    conn.setLevel(max(logging.WARNING, level))
    if not any(isinstance(f, _OneLineConnectionLog) for f in conn.filters):
        conn.addFilter(_OneLineConnectionLog())


class Service:
    """Namespace of the service entry point (see the module docstring)."""

    @staticmethod
    def main(name: str, config_cls: type, run: RunFn, argv: Sequence[str] | None = None, *,
             description: str | None = None, env: Mapping[str, str] | None = None,
             connect: bool | Callable[[Any], bool] = True, bus_factory: Callable[[Any], Bus] | None = None,
             clock: Clock | None = None) -> int:
        """Parse, log, install signals, connect in the background, run; return ``run``'s exit code.

        Parameters
        ----------
        name : str
            Service name: logger, heartbeat key, ``DOLPHIN_<NAME>_*`` variable prefix by default.
        config_cls : type
            Frozen dataclass with ``settings: Settings`` first (see :mod:`prod.runtime.config`).
        run : callable
            ``run(cfg, bus, clock, stop) -> int | None`` (None counts as 0).
        connect : bool or callable
            False (or ``connect(cfg) -> False``) for a process that does not talk to the bus this
            run; the bus is still passed, unstarted.
        bus_factory : callable, optional
            ``bus_factory(cfg) -> Bus`` for a bus with service-specific options (near cache, timeouts).
        """
        try:
            cfg, ns = build_config(config_cls, name, argv, env, description)
            setup_logging(ns.log_level or os.environ.get("DOLPHIN_LOG_LEVEL") or "INFO")
        except ConfigError as exc:
            print(f"{name}: configuration error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        log = logging.getLogger(name)
        stop = threading.Event()

        _on_signal = signal_stopper(stop, log, name)
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        log.info("%s starting (pid %d): %s", name, os.getpid(), json.dumps(config_log_dict(cfg), default=str))
        from prod import metrics
        if name in metrics.SERVICE_PORT_OFFSETS:
            metrics.start_metrics(name, cfg.settings)     # /metrics; a busy port is logged, never fatal
        bus = bus_factory(cfg) if bus_factory is not None else Bus(cfg.settings, name)
        if connect(cfg) if callable(connect) else connect:
            bus.start()
        rc: int | None = 1
        try:
            rc = run(cfg, bus, clock or SystemClock(), stop)
        except KeyboardInterrupt:
            rc = 0
        finally:
            bus.close()
        rc = 0 if rc is None else int(rc)
        log.info("%s stopped (exit %d)", name, rc)
        return rc
