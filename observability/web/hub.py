"""Bus side of the web console: one client, entry listeners on every map, changes batched to the loop.

Design notes: ``docs/design/observability.md``.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Callable

from hazelcast.lifecycle import LifecycleState

from observability.web.model import KNOWN_MAPS, VALUE_MAPS, ConsoleModel
from prod import metrics
from prod.bus.client import make_client
from prod.settings import Settings

log = logging.getLogger(__name__)

MAP_SERVICE = "hz:impl:mapService"
MAX_PENDING = 100_000
_REMOVED = object()
_CLEARED = object()

# consumer(map, key, message, entry_payload_or_None, now) on the loop thread
Consumer = Callable[[str, str | None, dict, dict | None, float], None]


class BusHub:
    """Keeps :attr:`model` current from entry listeners and notifies consumers on the event loop."""

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop | None, *, connect_timeout: float = 3.0,
                 retry_s: float = 1.0, flush_s: float = 0.1, client_name: str = "dolphin-web-console"):
        self.settings, self.loop = settings, loop
        self.connect_timeout, self.retry_s, self.flush_s, self.client_name = connect_timeout, retry_s, flush_s, client_name
        self.model = ConsoleModel()
        self.consumers: list[Consumer] = []
        self.bus_consumers: list[Callable[[dict], None]] = []
        self.members = ",".join(settings.hz_members)
        self._lock = threading.Lock()
        self._pending: list[tuple[str, str | None, Any]] = []
        self.dropped = 0
        self._status: tuple[bool, str] | None = None
        self._scheduled = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.client: Any = None
        self.connects = 0
        self.events = 0

    # ── control ──────────────────────────────────────────────────────────────────────────────
    def start(self) -> "BusHub":
        """Start the bus thread; :attr:`loop` (the event loop that applies changes) must be set."""
        assert self.loop is not None, "BusHub.loop must be set before start()"
        self._thread = threading.Thread(target=self._run, name="web-bus-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # ── thread side ──────────────────────────────────────────────────────────────────────────
    def _push(self, map_name: str, key: str | None, change: Any) -> None:
        with self._lock:
            self.events += 1
            if len(self._pending) >= MAX_PENDING:     # the loop is stuck: keep the newest changes
                del self._pending[: MAX_PENDING // 10]
                self.dropped += MAX_PENDING // 10
                log.error("web console bus: event loop behind, dropped %d old changes", MAX_PENDING // 10)
            self._pending.append((map_name, key, change))
            wake = not self._scheduled
            self._scheduled = True
        if wake:
            try:
                self.loop.call_soon_threadsafe(self._schedule)
            except RuntimeError:        # loop closed: the console is exiting
                pass

    def _set_status(self, connected: bool, detail: str) -> None:
        with self._lock:
            self._status = (connected, detail)
            wake = not self._scheduled
            self._scheduled = True
        if wake:
            try:
                self.loop.call_soon_threadsafe(self._schedule)
            except RuntimeError:
                pass

    def _run(self) -> None:
        while not self._stop.is_set():
            self._set_status(False, f"connecting to {self.members}")
            try:
                client = make_client(self.settings, name=self.client_name, cluster_connect_timeout=self.connect_timeout)
            except Exception as exc:  # noqa: BLE001 - any connect failure: report and retry
                self._set_status(False, f"{self.members} unreachable ({type(exc).__name__})")
                self._stop.wait(self.retry_s)
                continue
            self.client = client
            self.connects += 1
            try:
                self._serve(client)
            except Exception as exc:  # noqa: BLE001 - member lost mid-setup: rebuild the client
                log.warning("web console bus: %s; rebuilding the client", exc)
                self._set_status(False, f"{self.members}: {type(exc).__name__}")
            finally:
                self.client = None
                try:
                    client.shutdown()
                except Exception:  # noqa: BLE001
                    log.debug("client shutdown failed", exc_info=True)
            if not self._stop.is_set():
                self._stop.wait(self.retry_s)

    def _serve(self, client: Any) -> None:
        lost = threading.Event()
        reread = threading.Event()

        def on_lifecycle(state: str) -> None:
            if state == LifecycleState.DISCONNECTED:
                self._set_status(False, f"lost {self.members}")
            elif state == LifecycleState.CONNECTED:
                self._set_status(True, self.members)
                reread.set()              # the member may have restarted empty
            elif state in (LifecycleState.SHUTTING_DOWN, LifecycleState.SHUTDOWN):
                lost.set()

        client.lifecycle_service.add_listener(on_lifecycle)
        names = self._map_names(client)
        self._listen(client, names)
        self._set_status(True, self.members)
        n = self._read_all(client, names)
        log.info("bus hub: listening on %d maps, read %d entries", len(names), n)
        while not self._stop.is_set() and not lost.is_set():
            if reread.wait(0.5):
                reread.clear()
                try:
                    self._read_all(client, names)
                except Exception as exc:  # noqa: BLE001 - disconnected mid-read: lifecycle reports it
                    log.warning("web console bus: re-read failed: %s", exc)

    def _map_names(self, client: Any) -> dict[str, bool]:
        """Every map to listen: the known DOLPHIN maps plus any other map on the cluster (name -> with values)."""
        names = {m: m in VALUE_MAPS for m in KNOWN_MAPS}
        try:
            for o in client.get_distributed_objects():
                if o.service_name == MAP_SERVICE and o.name not in names:
                    names[o.name] = True
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot list the cluster's maps: %s", exc)
        return names

    def _listen(self, client: Any, names: dict[str, bool]) -> None:
        futures = []
        for name, with_values in names.items():
            self.loop.call_soon_threadsafe(self.model.ensure_map, name, with_values)
            put = self._on_put(name)
            gone = self._on_removed(name)
            cleared = self._on_cleared(name)
            kw: dict[str, Any] = dict(added_func=put, removed_func=gone, evicted_func=gone, expired_func=gone,
                                      clear_all_func=cleared, evict_all_func=cleared)
            if with_values:
                kw["updated_func"] = put
            futures.append(client.get_map(name).add_entry_listener(include_value=with_values, **kw))
        for f in futures:
            f.result()

    def _read_all(self, client: Any, names: dict[str, bool]) -> int:
        n = 0
        for name, with_values in names.items():
            m = client.get_map(name)
            self._push(name, None, _CLEARED)      # a restarted member may have lost keys: start over
            if with_values:
                for key, raw in m.entry_set().result():
                    self._push(name, key, raw)
                    n += 1
            else:
                for key in m.key_set().result():
                    self._push(name, key, None)
                    n += 1
        return n

    def _on_put(self, map_name: str) -> Callable[[Any], None]:
        def cb(event: Any) -> None:
            self._push(map_name, event.key, event.value)
        return cb

    def _on_removed(self, map_name: str) -> Callable[[Any], None]:
        def cb(event: Any) -> None:
            self._push(map_name, event.key, _REMOVED)
        return cb

    def _on_cleared(self, map_name: str) -> Callable[[Any], None]:
        def cb(event: Any) -> None:
            self._push(map_name, None, _CLEARED)
        return cb

    # ── loop side ────────────────────────────────────────────────────────────────────────────
    def _schedule(self) -> None:
        self.loop.call_later(self.flush_s, self.flush)

    def flush(self) -> None:
        """Apply every pending change to the model and notify consumers (event loop only)."""
        with self._lock:
            pending, self._pending = self._pending, []
            status, self._status = self._status, None
            self._scheduled = False
        now = time.time()
        if status is not None:
            bus = self.model.set_bus(status[0], status[1], now)
            for c in self.bus_consumers:
                _safe(c, bus)
        for map_name, key, change in pending:
            removed = change is _REMOVED or change is _CLEARED
            msg = self.model.apply(map_name, key, None if removed else change, removed, now)
            if msg is None:
                continue
            entry = None if key is None else self.model.entry(map_name, key)
            payload = None if entry is None else entry.payload
            if entry is not None and entry.error is not None and not removed:
                metrics.bad_payload(metrics.payload_source(map_name, key))
            for c in self.consumers:
                _safe(c, map_name, key, msg, payload, now)

    def read_entry(self, map_name: str, key: str) -> Any:
        """One blocking read of ``map_name[key]`` (for a shard entry the operator opened); run in an executor."""
        client = self.client
        if client is None:
            raise ConnectionError(f"not connected to {self.members}")
        return client.get_map(map_name).get(key).result()


def _safe(fn: Callable, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - one consumer's bug must not stop the others
        log.exception("web console consumer %r failed", fn)
