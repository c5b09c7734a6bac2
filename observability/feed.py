"""Bus side of the observability terminal: keep a Hazelcast client alive and push every map change.

:class:`BusFeed` owns one background thread that connects a client (``prod.bus.client.make_client``),
registers entry listeners on every source the TUI shows, reads each key once (at start, after a
reconnect, and on :meth:`BusFeed.request_refresh`) and reports the connection state. Values are
decoded on the client's event threads (:func:`observability.state.decode_value`) and handed to
``deliver``, which must not block; nothing here polls a map in a loop.

Recovery: the client reconnects by itself for ``connect_timeout`` seconds after losing its member;
when it gives up (its lifecycle reaches SHUTDOWN) or the first connect fails, the feed thread waits
``retry_s`` and builds a new client, so a restarted member is picked up without operator action.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from hazelcast.lifecycle import LifecycleState

from observability.state import KEY_ROUTES, MAP_ROUTES, Decoded, decode_value
from prod.bus.client import make_client
from prod.settings import Settings

log = logging.getLogger(__name__)

Deliver = Callable[[Decoded], None]
OnStatus = Callable[[bool, str], None]

# map -> keys listened one by one (only what the TUI shows); whole maps listened in MAP_ROUTES
KEYS_BY_MAP: dict[str, tuple[str, ...]] = {}
for _m, _k in KEY_ROUTES:
    KEYS_BY_MAP[_m] = KEYS_BY_MAP.get(_m, ()) + (_k,)


class BusFeed:
    """Background connection to the bus that streams decoded values of every TUI source."""

    def __init__(self, settings: Settings, deliver: Deliver, on_status: OnStatus, *,
                 connect_timeout: float = 3.0, retry_s: float = 1.0, client_name: str = "dolphin-tui"):
        self.settings = settings
        self.deliver, self.on_status = deliver, on_status
        self.connect_timeout, self.retry_s, self.client_name = connect_timeout, retry_s, client_name
        self.members = ",".join(settings.hz_members)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._refresh = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self.connects = 0
        self.reads = 0

    # ── control ──────────────────────────────────────────────────────────────────────────────
    def start(self) -> "BusFeed":
        """Start the feed thread (returns at once; the connection is made in the background)."""
        self._thread = threading.Thread(target=self._run, name="tui-bus-feed", daemon=True)
        self._thread.start()
        return self

    def request_refresh(self) -> None:
        """Ask for one read of every key (runs on the feed thread, never on the caller's)."""
        self._refresh.set()
        self._wake.set()

    def stop(self) -> None:
        """Signal the feed to shut its client down and exit (does not wait)."""
        self._stop.set()
        self._wake.set()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # ── feed thread ──────────────────────────────────────────────────────────────────────────
    def _run(self) -> None:
        while not self._stop.is_set():
            self.on_status(False, f"connecting to {self.members}")
            try:
                client = make_client(self.settings, name=self.client_name,
                                     cluster_connect_timeout=self.connect_timeout)
            except Exception as exc:  # noqa: BLE001 - any connect failure: report and retry
                self.on_status(False, f"{self.members} unreachable ({type(exc).__name__})")
                self._stop.wait(self.retry_s)
                continue
            self._client = client
            self.connects += 1
            try:
                self._serve(client)
            except Exception as exc:  # noqa: BLE001 - a lost member mid-setup: rebuild the client
                log.warning("bus feed: %s; rebuilding the client", exc)
                self.on_status(False, f"{self.members}: {type(exc).__name__}")
            finally:
                self._client = None
                try:
                    client.shutdown()
                except Exception:  # noqa: BLE001
                    log.debug("client shutdown failed", exc_info=True)
            if not self._stop.is_set():
                self._stop.wait(self.retry_s)

    def _serve(self, client: Any) -> None:
        lost = threading.Event()

        def on_lifecycle(state: str) -> None:
            if state == LifecycleState.DISCONNECTED:
                self.on_status(False, f"lost {self.members}")
            elif state == LifecycleState.CONNECTED:
                self.on_status(True, self.members)
                self.request_refresh()          # the member may have restarted empty or changed
            elif state in (LifecycleState.SHUTTING_DOWN, LifecycleState.SHUTDOWN):
                lost.set()
                self._wake.set()

        client.lifecycle_service.add_listener(on_lifecycle)
        self._listen(client)
        self.on_status(True, self.members)
        self._read_all(client)
        self._refresh.clear()
        while not self._stop.is_set() and not lost.is_set():
            self._wake.wait(1.0)   # wakes on refresh/stop/shutdown; the timeout only re-checks the flags
            self._wake.clear()
            if self._refresh.is_set() and not lost.is_set() and client.lifecycle_service.is_running():
                self._refresh.clear()
                try:
                    self._read_all(client)
                except Exception as exc:  # noqa: BLE001 - disconnected mid-read: the lifecycle reports it
                    log.warning("bus feed: refresh failed: %s", exc)

    def _callback(self, map_name: str) -> Callable[[Any], None]:
        def cb(event: Any) -> None:
            try:
                self.deliver(decode_value(map_name, event.key, event.value))
            except Exception:  # noqa: BLE001 - never raise into the client's event thread
                log.exception("bus feed: deliver failed for %s[%r]", map_name, getattr(event, "key", None))
        return cb

    def _removed(self, map_name: str) -> Callable[[Any], None]:
        def cb(event: Any) -> None:
            try:
                self.deliver(Decoded(map_name, event.key, None, None))
            except Exception:  # noqa: BLE001
                log.exception("bus feed: deliver failed for removal of %s[%r]", map_name, event.key)
        return cb

    def _listen(self, client: Any) -> None:
        futures = []
        for map_name, keys in KEYS_BY_MAP.items():
            m = client.get_map(map_name)
            cb = self._callback(map_name)
            for key in keys:
                futures.append(m.add_entry_listener(include_value=True, key=key, added_func=cb, updated_func=cb))
        for map_name in MAP_ROUTES:
            m = client.get_map(map_name)
            cb, gone = self._callback(map_name), self._removed(map_name)
            futures.append(m.add_entry_listener(include_value=True, added_func=cb, updated_func=cb,
                                                removed_func=gone, evicted_func=gone, expired_func=gone))
        for f in futures:
            f.result()

    def _read_all(self, client: Any) -> None:
        """Read every key the TUI shows once and deliver it (start, reconnect, ``r``)."""
        for map_name, keys in KEYS_BY_MAP.items():
            values = client.get_map(map_name).get_all(list(keys)).result()
            for key, raw in values.items():
                self.deliver(decode_value(map_name, key, raw))
        for map_name in MAP_ROUTES:
            for key, raw in client.get_map(map_name).entry_set().result():
                self.deliver(decode_value(map_name, key, raw))
        self.reads += 1

