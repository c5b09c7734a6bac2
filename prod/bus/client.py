"""Hazelcast client factory from :class:`prod.settings.Settings`, heartbeat and listener helpers.

Every service obtains its client here, so members, cluster name, timeouts and reconnect policy are
set in one place and switching to a real cluster is a configuration change only.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable

import hazelcast
from hazelcast.config import ReconnectMode

from prod.bus import maps
from prod.settings import Settings

log = logging.getLogger(__name__)


def make_client(settings: Settings, *, name: str | None = None, near_cache: dict | None = None,
                cluster_connect_timeout: float | None = None, **extra: Any) -> hazelcast.HazelcastClient:
    """Connect a Hazelcast client to the members in ``settings`` and return it.

    The client reconnects by itself (async reconnect mode, unbounded cluster-connect retries unless
    ``cluster_connect_timeout`` is given), so a restarted member is picked up without a restart.
    """
    kwargs: dict[str, Any] = dict(
        cluster_members=list(settings.hz_members),
        cluster_name=settings.hz_cluster,
        client_name=name or f"dolphin-{os.getpid()}",
        reconnect_mode=ReconnectMode.ON,
        cluster_connect_timeout=(settings.hz_connect_timeout_s if cluster_connect_timeout is None
                                 else cluster_connect_timeout),
        invocation_timeout=settings.hz_invocation_timeout_s,
        connection_timeout=5.0,
        retry_initial_backoff=0.2,
        retry_max_backoff=2.0,
        retry_jitter=0.2,
    )
    if near_cache:
        kwargs["near_caches"] = near_cache
    kwargs.update(extra)
    return hazelcast.HazelcastClient(**kwargs)


def write_heartbeat(client: hazelcast.HazelcastClient, service: str, now: float | None = None,
                    **fields: Any):
    """Write ``DOLPHIN_HEARTBEAT[service]`` = {service, ts, pid, ...} without waiting.

    Returns the write's future: a process about to exit waits on it (``.result(timeout)``) so its
    last heartbeat is not lost with the connection (the invocation timeout bounds the wait).
    ``.result()`` of a hazelcast future takes no timeout argument.
    """
    payload = {"service": service, "ts": time.time() if now is None else now, "pid": os.getpid(), **fields}
    return client.get_map(maps.HEARTBEAT).set(service, maps.encode(maps.HEARTBEAT, service, payload))


def decoding_listener(map_name: str, on_value: Callable[[str, dict], None],
                      on_error: Callable[[str, Exception], None] | None = None) -> Callable[[Any], None]:
    """Wrap ``on_value(key, payload)`` as an entry-listener callback that validates each value.

    A malformed value is logged (once per key and message) and dropped; it never reaches
    ``on_value`` and never raises into the client's event thread.
    """
    seen: set[tuple[str, str]] = set()

    def _cb(event: Any) -> None:
        key = event.key
        try:
            payload = maps.decode(map_name, key, event.value)
        except maps.PayloadError as exc:
            if on_error is not None:
                on_error(key, exc)
            sig = (key, str(exc)[:200])
            if sig not in seen:
                seen.add(sig)
                log.error("dropped bad payload: %s", exc)
            return
        try:
            on_value(key, payload)
        except Exception:  # noqa: BLE001 - a consumer bug must not kill the event thread
            log.exception("listener callback failed for %s[%r]", map_name, key)

    return _cb


def read_json(client: hazelcast.HazelcastClient, map_name: str, key: str) -> dict | None:
    """Blocking read of one validated payload; None if absent. Not for hot paths (§22.2)."""
    raw = client.get_map(map_name).blocking().get(key)
    if raw is None:
        return None
    return maps.decode(map_name, key, raw)


def dumps(obj: Any) -> str:
    return json.dumps(obj, allow_nan=False, separators=(",", ":"))
