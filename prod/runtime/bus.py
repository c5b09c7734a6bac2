"""The one Hazelcast connection of a DOLPHIN process, typed by the topics of :mod:`prod.bus.maps`.

Design notes: ``docs/design/prod.runtime.md``.
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from prod import metrics
from prod.bus import maps
from prod.bus.payloads import Payload, PayloadError
from prod.ratelog import RateLog
from prod.settings import Settings

log = logging.getLogger("dolphin.bus")


class BusUnavailable(ConnectionError):
    """No live connection to the cluster right now (the bus keeps reconnecting in the background)."""


def result_within(fut: Any, timeout: float) -> Any:
    """Wait up to ``timeout`` s for a hazelcast future and return its result (or raise its error).

    A hazelcast future's ``result()`` takes no timeout; a call to a member that went away would
    otherwise block until the client's invocation timeout.
    """
    done = threading.Event()
    fut.add_done_callback(lambda _f: done.set())
    if not done.wait(timeout):
        raise TimeoutError(f"bus call not answered within {timeout:g}s")
    return fut.result()


def all_within(futures: list, timeout: float) -> None:
    """Wait for every future in ``futures`` within ``timeout`` s in total; raise the first error."""
    if not futures:
        return
    from hazelcast.future import combine_futures
    result_within(combine_futures(futures), timeout)


@dataclass
class _Listener:
    map: str
    key: str | None
    callback: Callable[[Any], None]
    registration: Any = None


class Bus:
    """Background-connecting Hazelcast client with typed topics, heartbeats and listener replay.

    Parameters
    ----------
    settings : Settings
        Members, cluster name and timeouts.
    service : str
        Name of the process: the client name and the heartbeat key.
    timeout_s : float, optional
        Default wait for a read or an acknowledged write (default: ``hz_invocation_timeout_s``).
    backoff_s : tuple of float
        First and largest pause between connection attempts.
    near_cache : dict, optional
        hazelcast ``near_caches`` configuration.
    """

    def __init__(self, settings: Settings, service: str, *, timeout_s: float | None = None,
                 backoff_s: tuple[float, float] = (0.5, 10.0), near_cache: dict | None = None,
                 connect_timeout_s: float | None = None, invocation_timeout_s: float | None = None,
                 rng: random.Random | None = None):
        self.settings = settings
        self.service = service
        self.timeout_s = float(timeout_s if timeout_s is not None else min(settings.hz_invocation_timeout_s, 10.0))
        self.backoff_s = backoff_s
        self.near_cache = near_cache
        self.connect_timeout_s = settings.hz_connect_timeout_s if connect_timeout_s is None else connect_timeout_s
        self.invocation_timeout_s = (settings.hz_invocation_timeout_s if invocation_timeout_s is None
                                     else invocation_timeout_s)
        self.rl = RateLog(log, 30.0)
        self._rng = rng or random.Random()
        self._client: Any = None
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[_Listener] = []
        self._on_connect: list[Callable[["Bus"], None]] = []
        self.connects = 0
        self.attempts = 0
        self.bad_payloads: dict[str, int] = {}

    # ── connection ───────────────────────────────────────────────────────────────────────────
    def start(self) -> "Bus":
        """Start connecting in the background (idempotent); return self."""
        with self._lock:
            if self._closed.is_set():
                raise RuntimeError("bus is closed")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._connect_loop, name=f"bus-{self.service}", daemon=True)
                self._thread.start()
        return self

    def _make_client(self):
        from prod.bus.client import make_client
        return make_client(self.settings, name=f"{self.service}-{os.getpid()}",
                           cluster_connect_timeout=self.connect_timeout_s,
                           invocation_timeout=self.invocation_timeout_s,
                           near_cache=self.near_cache)

    def _connect_loop(self) -> None:
        delay = self.backoff_s[0]
        members = ",".join(self.settings.hz_members)
        while not self._closed.is_set():
            if self._connected.is_set():
                self._wake.wait(1.0)
                self._wake.clear()
                c = self._client
                if c is not None and not c.lifecycle_service.is_running() and not self._closed.is_set():
                    log.warning("bus: client to %s shut down (cluster lost); reconnecting", members)
                    self._drop_client()
                continue
            self.attempts += 1
            try:
                client = self._make_client()
            except Exception as exc:  # noqa: BLE001 - any failure to connect is retried the same way
                pause = self._rng.uniform(0, delay)
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("bus: cannot reach Hazelcast %s (cluster %r): %s; attempt %d, retry in %.1fs",
                            members, self.settings.hz_cluster, why, self.attempts, pause)
                delay = min(self.backoff_s[1], delay * 2)
                self._closed.wait(pause)
                continue
            if self._closed.is_set():
                _shutdown_quietly(client)
                return
            delay = self.backoff_s[0]
            client.lifecycle_service.add_listener(lambda _state: self._wake.set())
            with self._lock:
                self._client = client
                listeners = list(self._listeners)
            for ln in listeners:
                self._register(client, ln)
            self.connects += 1
            self._connected.set()
            log.info("bus: connected to %s (cluster %r) as %s-%d%s", members, self.settings.hz_cluster,
                     self.service, os.getpid(), "" if self.connects == 1 else f" (reconnect #{self.connects - 1})")
            for hook in list(self._on_connect):
                try:
                    hook(self)
                except Exception:  # noqa: BLE001 - a hook bug must not stop the bus
                    log.exception("bus: on_connect hook failed")

    def _drop_client(self) -> None:
        with self._lock:
            c, self._client = self._client, None
            self._connected.clear()
            for ln in self._listeners:
                ln.registration = None
        if c is not None:
            _shutdown_quietly(c)

    def on_connect(self, hook: Callable[["Bus"], None]) -> None:
        """Call ``hook(bus)`` after every (re)connection, and now if connected."""
        self._on_connect.append(hook)
        if self._connected.is_set():
            hook(self)

    @property
    def connected(self) -> bool:
        c = self._client
        return self._connected.is_set() and c is not None and c.lifecycle_service.is_running()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until connected (True) or ``timeout`` / close (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return self.connected
            if self._connected.wait(0.2 if left is None else min(0.2, left)):
                return True
        return False

    @property
    def client(self) -> Any:
        """The live hazelcast client; raises :class:`BusUnavailable` while (re)connecting."""
        c = self._client
        if c is None or not self._connected.is_set():
            raise BusUnavailable(f"no connection to Hazelcast {','.join(self.settings.hz_members)} yet")
        return c

    def map(self, name: str) -> Any:
        """Return the raw (non-blocking) IMap proxy ``name`` for operations topics do not cover."""
        return self.client.get_map(name)

    @property
    def cp(self) -> Any:
        """The client's CP subsystem (FencedLock, AtomicReference)."""
        return self.client.cp_subsystem

    def close(self, timeout: float = 5.0) -> None:
        """Stop reconnecting and shut the client down."""
        self._closed.set()
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            # While connecting, the thread is inside the client's constructor, which cannot be
            # interrupted (up to hz_connect_timeout_s); it shuts that client down itself when the
            # constructor returns (it sees the bus closed) and it is a daemon: do not wait for it.
            t.join(timeout if self._connected.is_set() else min(timeout, 0.2))
        self._drop_client()

    # ── typed access ─────────────────────────────────────────────────────────────────────────
    def _dropped(self, source: str, exc: Exception, map_name: str = "", key: str | None = None) -> None:
        self.bad_payloads[source] = self.bad_payloads.get(source, 0) + 1
        metrics.bad_payload(metrics.payload_source(map_name, key) if map_name else source)
        self.rl.error(f"bad:{source}:{str(exc)[:80]}", "dropped bad payload: %s", exc)

    def get(self, topic: maps.Topic, key: str | None = None, timeout: float | None = None) -> Payload | None:
        """Read and validate ``topic`` (at ``key``); None when absent or malformed (logged)."""
        k = topic.key_for(key)
        with metrics.bus_op("get", topic.map):
            raw = result_within(self.client.get_map(topic.map).get(k), self.timeout_s if timeout is None else timeout)
        if raw is None:
            return None
        try:
            return topic.decode(raw, k)
        except PayloadError as exc:
            self._dropped(topic.source(k), exc, topic.map, k)
            return None

    def publish(self, topic: maps.Topic, payload: Payload | dict, key: str | None = None, *,
                wait: bool = True, timeout: float | None = None) -> Any:
        """Validate and write ``payload`` to ``topic``; wait for the member's ack unless ``wait=False``.

        Returns the write's future when not waiting. Raises :class:`PayloadError` for a payload that
        does not match its topic (nothing is written), :class:`BusUnavailable` when disconnected and
        ``TimeoutError`` when the ack does not come within ``timeout``.
        """
        k = topic.key_for(key)
        text = topic.encode(payload, k)
        fut = self.client.get_map(topic.map).set(k, text)
        if not wait:
            return fut
        with metrics.bus_op("set", topic.map):
            return result_within(fut, self.timeout_s if timeout is None else timeout)

    def heartbeat(self, now: float | None = None, **fields: Any) -> Any:
        """Write ``DOLPHIN_HEARTBEAT[service]`` without waiting; return the write's future.

        A process about to exit waits on it (``result_within(fut, t)``) so its last beat is not
        lost with the connection.
        """
        hb = maps.HEARTBEATS.build(self.service, service=self.service, ts=time.time() if now is None else now,
                                   pid=os.getpid(), **fields)
        return self.publish(maps.HEARTBEATS, hb, self.service, wait=False)

    def listen(self, topic: maps.Topic, on_value: Callable[[str, Any], None], key: str | None = None,
               on_error: Callable[[str, Exception], None] | None = None) -> None:
        """Call ``on_value(key, payload)`` for every add/update of ``topic`` (at ``key``, or any key).

        Malformed values are logged with their source, counted and dropped. The listener survives
        reconnections: the bus registers it again on every new client.
        """
        k = key if key is not None else topic.key

        def _cb(event: Any) -> None:
            ek = event.key
            try:
                payload = topic.decode(event.value, ek)
            except PayloadError as exc:
                if on_error is not None:
                    on_error(ek, exc)
                self._dropped(topic.source(ek), exc, topic.map, ek)
                return
            metrics.listener_lag(topic.map, topic.written_at(payload))
            try:
                on_value(ek, payload)
            except Exception:  # noqa: BLE001 - a consumer bug must not kill the client's event thread
                log.exception("listener on %s failed", topic.source(ek))

        ln = _Listener(topic.map, k, _cb)
        with self._lock:
            self._listeners.append(ln)
            client = self._client if self._connected.is_set() else None
        if client is not None:
            self._register(client, ln)

    def _register(self, client: Any, ln: _Listener) -> None:
        kw: dict[str, Any] = dict(include_value=True, added_func=ln.callback, updated_func=ln.callback)
        if ln.key is not None:
            kw["key"] = ln.key
        try:
            ln.registration = result_within(client.get_map(ln.map).add_entry_listener(**kw), self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - retried on the next connection
            log.warning("bus: listener on %s[%r] not registered: %r", ln.map, ln.key, exc)


def _shutdown_quietly(client: Any) -> None:
    try:
        client.shutdown()
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass
