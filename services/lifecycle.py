"""Start-up and shutdown shared by the supervised services: log format, start line, SIGTERM/SIGINT."""
from __future__ import annotations

import json
import logging
import signal
import threading
from dataclasses import asdict
from typing import Any, Callable

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: int = logging.INFO) -> None:
    """Configure the root logger with the format every DOLPHIN service uses."""
    logging.basicConfig(level=level, format=LOG_FORMAT)


def serve(name: str, cfg: Any, run: Callable[[Any, threading.Event], Any]) -> int:
    """Log the effective config, run ``run(cfg, stop)`` until SIGTERM/SIGINT sets ``stop``, return 0."""
    log = logging.getLogger(name)
    settings = getattr(cfg, "settings", None)
    info = {**asdict(cfg), "settings": settings.as_log_dict()} if settings is not None else asdict(cfg)
    log.info("%s starting: %s", name, json.dumps(info, default=str))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(cfg, stop)
    log.info("%s stopped", name)
    return 0
