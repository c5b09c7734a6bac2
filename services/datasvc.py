"""Plumbing shared by the data services (obf_universe, exf_fetcher, acb_processor).

Rate-limited warnings, a self-healing Hazelcast client handle, waiting on hazelcast futures with a
timeout, atomic file writes and the common command-line flags that override ``DOLPHIN_*`` settings.
"""
from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from prod.settings import Settings, load_settings

log = logging.getLogger("dolphin.datasvc")


class RateLog:
    """Log a message at most once per ``interval_s`` per key; count what was suppressed."""

    def __init__(self, interval_s: float = 10.0, logger: logging.Logger | None = None):
        self.interval = interval_s
        self.log = logger or log
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e18) >= self.interval:
            n = self._suppressed.pop(key, 0)
            self._last[key] = now
            self.log.warning(msg + (f" (+{n} similar suppressed)" if n else ""), *args)
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1


class BusHandle:
    """Hazelcast client, recreated when it died (member gone past its reconnect window).

    With ``background=True`` (obf_universe) a missing client is created on a helper thread and
    :meth:`get` raises :class:`ConnectionError` meanwhile, so a dead member costs the caller nothing
    but a fast failure (the breaker counts it); otherwise :meth:`get` connects inline.
    """

    def __init__(self, cfg: Any, background: bool = False, name: str = "dolphin"):
        self.cfg = cfg
        self.name = name
        self.background = background
        self.client = None
        self._lock = threading.Lock()
        self._creating: threading.Thread | None = None

    def _make(self):
        from prod.bus.client import make_client
        return make_client(self.cfg.settings, name=f"{self.name}-{os.getpid()}",
                           cluster_connect_timeout=self.cfg.hz_connect_timeout_s,
                           invocation_timeout=max(self.cfg.write_timeout_s * 2, 3.0))

    def _create(self) -> None:
        old, self.client = self.client, None
        if old is not None:
            try:
                old.shutdown()
            except Exception:  # noqa: BLE001
                pass
        try:
            self.client = self._make()
        except Exception as exc:  # noqa: BLE001 - member still away: the next probe retries
            log.warning("bus: cannot connect to %s: %r", ",".join(self.cfg.settings.hz_members), exc)

    def start(self) -> None:
        """Begin connecting in the background (no-op when not in background mode)."""
        if self.background:
            with self._lock:
                if self._creating is None or not self._creating.is_alive():
                    self._creating = threading.Thread(target=self._create, name="bus-connect", daemon=True)
                    self._creating.start()

    def get(self):
        c = self.client
        if c is not None and c.lifecycle_service.is_running():
            return c
        if self.background:
            self.start()
            raise ConnectionError("bus client not connected (connecting in the background)")
        self._create()
        if self.client is None:
            raise ConnectionError("bus client not connected")
        return self.client

    def close(self) -> None:
        if self._creating is not None:
            self._creating.join(10)
        if self.client is not None:
            try:
                self.client.shutdown()
            except Exception:  # noqa: BLE001
                pass
            self.client = None


def wait_futures(futures: list, timeout: float) -> None:
    """Wait for hazelcast futures (which have no result timeout) and raise the first error."""
    if not futures:
        return
    from hazelcast.future import combine_futures
    combined = combine_futures(futures)
    done = threading.Event()
    combined.add_done_callback(lambda _f: done.set())
    if not done.wait(timeout):
        raise TimeoutError(f"bus write not acknowledged within {timeout}s")
    combined.result()


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def add_common_flags(ap: argparse.ArgumentParser) -> None:
    """Flags shared by the data services: they override the ``DOLPHIN_*`` settings."""
    ap.add_argument("--hz-members", help="comma-separated host:port list")
    ap.add_argument("--hz-cluster")
    ap.add_argument("--venue-ws")
    ap.add_argument("--venue-rest")
    ap.add_argument("--data-dir")
    ap.add_argument("--run-logs")


def settings_from_args(a: argparse.Namespace) -> Settings:
    members = tuple(x.strip() for x in a.hz_members.split(",")) if a.hz_members else None
    return load_settings(hz_members=members, hz_cluster=a.hz_cluster, venue_ws=a.venue_ws,
                         venue_rest=a.venue_rest, data_dir=a.data_dir, run_logs=a.run_logs)


