"""Bus side of the observability terminal: one :class:`prod.runtime.Bus` that pushes every map change.

Design notes: ``docs/design/observability.md``.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from hazelcast.lifecycle import LifecycleState

from observability.state import KEY_ROUTES, MAP_ROUTES, Decoded, decode_value
from prod.bus import maps
from prod.runtime import Bus, result_within
from prod.settings import Settings

log = logging.getLogger(__name__)

Deliver = Callable[[Decoded], None]
OnStatus = Callable[[bool, str], None]

# map -> keys listened one by one (only what the TUI shows); whole maps listened in MAP_ROUTES
KEYS_BY_MAP: dict[str, tuple[str, ...]] = {}
for _m, _k in KEY_ROUTES:
    KEYS_BY_MAP[_m] = KEYS_BY_MAP.get(_m, ()) + (_k,)


def _topics() -> list[tuple[maps.Topic, str | None]]:
    """(topic, key) of every TUI source; key None = the whole map."""
    out: list[tuple[maps.Topic, str | None]] = []
    for (map_name, key) in KEY_ROUTES:
        t = maps.topic_for(map_name, key)
        if t is None:
            raise ValueError(f"TUI source {map_name}[{key!r}] has no topic in prod.bus.maps")
        out.append((t, key))
    for map_name in MAP_ROUTES:
        t = maps.topic_for(map_name, "")
        if t is None or t.key is not None:
            raise ValueError(f"TUI source {map_name} has no per-key topic in prod.bus.maps")
        out.append((t, None))
    return out


class BusFeed:
    """Background connection to the bus that streams decoded values of every TUI source."""

    def __init__(self, settings: Settings, deliver: Deliver, on_status: OnStatus, *,
                 connect_timeout: float = 3.0, retry_s: float = 1.0, client_name: str = "dolphin-tui"):
        self.settings = settings
        self.deliver, self.on_status = deliver, on_status
        self.connect_timeout, self.retry_s, self.client_name = connect_timeout, retry_s, client_name
        self.members = ",".join(settings.hz_members)
        self.bus = Bus(settings, client_name, connect_timeout_s=connect_timeout,
                       backoff_s=(retry_s, max(retry_s, 5.0)))
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._refresh = threading.Event()
        self._thread: threading.Thread | None = None
        self.reads = 0
        for topic, key in _topics():
            self.bus.listen(topic, self._on_value(topic.map), key, on_error=self._on_error(topic.map))
        self.bus.on_connect(self._on_connect)

    @property
    def connects(self) -> int:
        """How many clients the bus has connected (1 + reconnections that needed a new client)."""
        return self.bus.connects

    # ── control ──────────────────────────────────────────────────────────────────────────────
    def start(self) -> "BusFeed":
        """Start the bus and the feed thread (returns at once; the connection is made in the background)."""
        self.bus.start()
        self._thread = threading.Thread(target=self._run, name="tui-bus-feed", daemon=True)
        self._thread.start()
        return self

    def request_refresh(self) -> None:
        """Ask for one read of every key (runs on the feed thread, never on the caller's)."""
        self._refresh.set()
        self._wake.set()

    def stop(self) -> None:
        """Signal the feed to close its bus and exit (does not wait)."""
        self._stop.set()
        self._wake.set()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # ── bus callbacks (client threads) ───────────────────────────────────────────────────────
    def _on_value(self, map_name: str) -> Callable[[str, Any], None]:
        def cb(key: str, payload: Any) -> None:
            self.deliver(Decoded(map_name, key, payload, None))
        return cb

    def _on_error(self, map_name: str) -> Callable[[str, Exception], None]:
        def cb(key: str, exc: Exception) -> None:
            try:
                self.deliver(Decoded(map_name, key, None, str(exc)))
            except Exception:  # noqa: BLE001 - never raise into the client's event thread
                log.exception("bus feed: deliver failed for %s[%r]", map_name, key)
        return cb

    def _removed(self, map_name: str) -> Callable[[Any], None]:
        def cb(event: Any) -> None:
            try:
                self.deliver(Decoded(map_name, event.key, None, None))
            except Exception:  # noqa: BLE001
                log.exception("bus feed: deliver failed for removal of %s[%r]", map_name, event.key)
        return cb

    def _on_connect(self, bus: Bus) -> None:
        """On every new client: follow its connection state, listen to removals, read everything once."""
        client = bus.client

        def on_lifecycle(state: str) -> None:
            if state == LifecycleState.DISCONNECTED:
                self.on_status(False, f"lost {self.members}")
            elif state == LifecycleState.CONNECTED:
                self.on_status(True, self.members)
                self.request_refresh()          # the member may have restarted empty or changed
            elif state in (LifecycleState.SHUTTING_DOWN, LifecycleState.SHUTDOWN) and not self._stop.is_set():
                self.on_status(False, f"lost {self.members}; reconnecting")

        client.lifecycle_service.add_listener(on_lifecycle)
        futures = []
        for map_name in MAP_ROUTES:     # removals are not part of a topic listener: one per map per client
            gone = self._removed(map_name)
            futures.append(client.get_map(map_name).add_entry_listener(
                include_value=False, removed_func=gone, evicted_func=gone, expired_func=gone))
        for f in futures:
            try:
                result_within(f, bus.timeout_s)
            except Exception as exc:  # noqa: BLE001 - the next client registers them again
                log.warning("bus feed: removal listener not registered: %r", exc)
        self.on_status(True, self.members)
        self.request_refresh()

    # ── feed thread ──────────────────────────────────────────────────────────────────────────
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self.bus.connected:
                    failed = self.bus.attempts - 1     # the current attempt has not failed (yet)
                    self.on_status(False, f"{self.members} unreachable ({failed} attempts failed)" if failed > 0
                                   else f"connecting to {self.members}")
                self._wake.wait(self.retry_s)   # wakes on refresh/stop; the timeout re-checks the connection
                self._wake.clear()
                if self._refresh.is_set() and self.bus.connected and not self._stop.is_set():
                    self._refresh.clear()
                    try:
                        self._read_all()
                    except Exception as exc:  # noqa: BLE001 - disconnected mid-read: refreshed on reconnect
                        log.warning("bus feed: refresh failed: %s", exc)
        finally:
            self.bus.close()

    def _read_all(self) -> None:
        """Read every key the TUI shows once and deliver it (start, reconnect, ``r``)."""
        t = self.bus.timeout_s
        for map_name, keys in KEYS_BY_MAP.items():
            values = result_within(self.bus.map(map_name).get_all(list(keys)), t)
            for key, raw in values.items():
                self.deliver(decode_value(map_name, key, raw))
        for map_name in MAP_ROUTES:
            for key, raw in result_within(self.bus.map(map_name).entry_set(), t):
                self.deliver(decode_value(map_name, key, raw))
        self.reads += 1
